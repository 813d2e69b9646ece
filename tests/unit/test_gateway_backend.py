"""The gateway's backend in process, without sockets: requests go to hosted ports, whose answers,
typed errors, reports and port events come back as the server's outputs. The hosted ports are
real in-process mock venue ports; the host is a recorder standing in for the server."""

from __future__ import annotations

import asyncio
import select
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel

from bus.backend import Answer, GetStatus, Output, Report, SecurityStatus
from bus.codec import Sync, SyncReply
from bus.gateway import GatewayStatus, PortBackend, load_factory
from bus.venue_protocol import VenueProtocol
from mock_venue.clock import ManualClock
from mock_venue.port import MockVenue
from ports import (
    Acknowledgement,
    CancelOrder,
    ErrorReason,
    ExecutionReport,
    OpenOrders,
    OrderExecutionPort,
    Outcome,
    QueryOrder,
    Rejection,
)
from ports.models import ListOpenOrders, paged_open_orders
from tests.contract.helpers import limit
from tests.contract.venue_setup import CONTRACT_VENUE, START

WAIT = 5.0


class Recorder:
    """A ``bus.backend.Host`` that keeps what it is given."""

    def __init__(self) -> None:
        self.protocol = VenueProtocol(session="s", instance="i")
        self.unroutable_replies = 0
        self.security = SecurityStatus(mode="plaintext, loopback only")
        self.limits = VenueProtocol(session="s", instance="i").limits_status(0)
        self.outputs: list[Output] = []

    def deliver(
        self,
        outputs: Sequence[Output],
        *,
        before_send: Callable[[list[bytes]], None] | None = None,
        send: bool = True,
    ) -> None:
        self.outputs += outputs

    def flush(self) -> None:
        pass

    def rebind(self) -> None:
        raise AssertionError("a gateway never rebinds")


class Gateway:
    """A started ``PortBackend`` and the server's side of it: poll when its fd says so."""

    def __init__(
        self, factory: Callable[[str, Mapping[str, Any]], Any], open_orders_page: int = 1000
    ) -> None:
        self.host = Recorder()
        self.backend = PortBackend(factory, {"answer": 42}, open_orders_page=open_orders_page)
        self.backend.start(self.host)
        self._next_id = 0

    def ask(self, request: BaseModel, client: str = "c1") -> tuple[str, int]:
        self._next_id += 1
        key = (client, self._next_id)
        self.backend.execute(key, request, b"")  # type: ignore[arg-type]
        return key

    def until(self, found: Callable[[list[Output]], bool]) -> list[Output]:
        deadline = time.monotonic() + WAIT
        fd = self.backend.fileno()
        assert fd is not None
        while not found(self.host.outputs):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"not in time; got {self.host.outputs}"
            select.select([fd], [], [], remaining)
            self.backend.poll(time.monotonic())
        return self.host.outputs

    def answer(self, key: tuple[str, int]) -> BaseModel:
        def answered(outputs: list[Output]) -> bool:
            return any(isinstance(o, Answer) and o.key == key for o in outputs)

        outputs = self.until(answered)
        return next(o.result for o in outputs if isinstance(o, Answer) and o.key == key)

    def close(self) -> None:
        self.backend.close()


@pytest.fixture
def venue() -> MockVenue:
    return MockVenue(CONTRACT_VENUE, seed=7, clock=ManualClock(START))


@pytest.fixture
def gateway(venue: MockVenue) -> Any:
    made: list[str] = []

    def factory(strategy_id: str, config: Mapping[str, Any]) -> OrderExecutionPort:
        assert config == {"answer": 42}
        made.append(strategy_id)
        return venue.port(strategy_id)

    gateway = Gateway(factory)
    gateway.made = made  # type: ignore[attr-defined]
    yield gateway
    gateway.close()


def test_a_submit_reaches_the_hosted_port_and_its_ack_and_reports_come_back(
    gateway: Gateway,
) -> None:
    ack = gateway.answer(gateway.ask(limit("o1", "IMM", 10, "100.00")))
    assert isinstance(ack, Acknowledgement)
    assert ack.order.client_order_id == "o1"

    def two_reports(outputs: list[Output]) -> bool:
        return sum(isinstance(o, Report) for o in outputs) == 2

    reports = [o.report for o in gateway.until(two_reports) if isinstance(o, Report)]
    assert [r.exec_type.value for r in reports] == ["accepted", "trade"]
    assert all(isinstance(r, ExecutionReport) and r.strategy_id == "s1" for r in reports)


def test_a_rejection_crosses_with_its_reason_outcome_and_order(gateway: Gateway) -> None:
    gateway.answer(gateway.ask(limit("o1")))
    refused = gateway.answer(gateway.ask(limit("o1", quantity=200)))  # its id, other terms
    assert isinstance(refused, Rejection)
    assert refused.reason is ErrorReason.DUPLICATE_CLIENT_ORDER_ID
    assert refused.outcome is Outcome.DEFINITE
    assert refused.client_order_id == "o1"
    unknown = gateway.answer(gateway.ask(QueryOrder(strategy_id="s1", client_order_id="nope")))
    assert isinstance(unknown, Rejection)
    assert unknown.reason is ErrorReason.UNKNOWN_ORDER


def test_a_sync_opens_the_strategys_port_once_and_answers_its_open_orders(
    gateway: Gateway,
) -> None:
    first = gateway.answer(gateway.ask(Sync(strategy_id="s1")))
    assert first == OpenOrders(strategy_id="s1", orders=())
    gateway.answer(gateway.ask(limit("o1")))  # MAN: rests
    again = gateway.answer(gateway.ask(Sync(strategy_id="s1")))
    assert isinstance(again, OpenOrders)
    assert [o.client_order_id for o in again.orders] == ["o1"]
    gateway.answer(gateway.ask(Sync(strategy_id="s2")))
    assert gateway.made == ["s1", "s2"]  # type: ignore[attr-defined]
    status = gateway.backend.control(GetStatus(), b"")
    assert isinstance(status, GatewayStatus)
    assert [(s.strategy_id, s.port_state) for s in status.strategies] == [
        ("s1", "connected"),
        ("s2", "connected"),
    ]


def test_open_orders_and_syncs_come_in_pages_and_the_ports_paging_gets_every_order(
    venue: MockVenue,
) -> None:
    reads = 0

    class Counted:
        """The hosted port, counting its reads of the open orders."""

        def __init__(self, port: OrderExecutionPort) -> None:
            self._port = port

        def __getattr__(self, name: str) -> Any:
            return getattr(self._port, name)

        async def open_orders(self, instrument: str | None = None, **_: Any) -> Any:
            nonlocal reads
            reads += 1
            return await self._port.open_orders(instrument)

    gateway = Gateway(lambda strategy_id, config: Counted(venue.port(strategy_id)), 2)
    try:
        for n in range(5):  # MAN: they rest
            assert isinstance(gateway.answer(gateway.ask(limit(f"o{n}"))), Acknowledgement)
        first = gateway.answer(gateway.ask(Sync(strategy_id="s1")))
        assert isinstance(first, OpenOrders)
        assert [o.client_order_id for o in first.orders] == ["o0", "o1"]
        assert first.next_after is not None
        reply = gateway.host.protocol.sync_reply(Sync(strategy_id="s1"), first)
        assert isinstance(reply, SyncReply)
        assert reply.next_after == first.next_after
        rest = gateway.answer(gateway.ask(ListOpenOrders(strategy_id="s1", after=first.next_after)))
        assert isinstance(rest, OpenOrders)
        assert [o.client_order_id for o in rest.orders] == ["o2", "o3"]
        assert reads == 1  # the sync's listing answered the page after it

        def every_order(instrument: str | None) -> tuple[list[str], int]:
            """What the ports' open_orders() does (ports.models.paged_open_orders), here."""
            pages = paged_open_orders("s1", instrument)
            request, asked = next(pages), 0
            while True:
                asked += 1
                answer = gateway.answer(gateway.ask(request))
                assert isinstance(answer, OpenOrders)
                try:
                    request = pages.send(answer)
                except StopIteration as done:
                    return [o.client_order_id for o in done.value], asked

        assert every_order(None) == (["o0", "o1", "o2", "o3", "o4"], 3)
        assert every_order("IMM") == ([], 1)
        assert reads == 3
        cancel = CancelOrder(strategy_id="s1", client_order_id="o0")
        assert isinstance(gateway.answer(gateway.ask(cancel)), Acknowledgement)
        assert every_order(None) == (["o1", "o2", "o3", "o4"], 2)
    finally:
        gateway.close()


def test_a_page_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1 order"):
        PortBackend(lambda strategy_id, config: None, open_orders_page=0)  # type: ignore[arg-type, return-value]


def test_a_factory_that_fails_is_a_definite_refusal_tried_again_next_time() -> None:
    calls = 0

    def factory(strategy_id: str, config: Mapping[str, Any]) -> OrderExecutionPort:
        nonlocal calls
        calls += 1
        raise RuntimeError("the broker's session is not configured")

    gateway = Gateway(factory)
    try:
        for _ in range(2):  # a failed open is tried again by the next request
            refused = gateway.answer(gateway.ask(limit("o1")))
            assert isinstance(refused, Rejection)
            assert refused.reason is ErrorReason.VENUE_REJECTED
            assert refused.outcome is Outcome.DEFINITE  # nothing reached any venue
            assert "not configured" in refused.message
        assert calls == 2
    finally:
        gateway.close()


class _Odd:
    """A hosted port that answers with what the wire cannot carry, or fails, or never answers."""

    def __init__(self, port: OrderExecutionPort) -> None:
        self._port = port

    def __getattr__(self, name: str) -> Any:
        return getattr(self._port, name)

    async def submit_order(self, order: Any, **_: Any) -> Any:
        if order.client_order_id == "none":
            return None
        if order.client_order_id == "dict":
            return {"ack": True}
        if order.client_order_id == "boom":
            raise RuntimeError("the broker dropped the session")
        raise asyncio.CancelledError  # the work is cancelled under the gateway


def test_an_adapter_answering_badly_gets_a_typed_unknown_outcome_and_the_gateway_carries_on(
    venue: MockVenue,
) -> None:
    gateway = Gateway(lambda strategy_id, config: _Odd(venue.port(strategy_id)))
    try:
        for order_id, says in [
            ("none", "returned NoneType, not Acknowledgement"),
            ("dict", "returned dict, not Acknowledgement"),
            ("boom", "the broker dropped the session"),
            ("cancelled", "stopped before the hosted port answered"),
        ]:
            refused = gateway.answer(gateway.ask(limit(order_id)))
            assert isinstance(refused, Rejection), order_id
            assert (refused.reason, refused.outcome) == (
                ErrorReason.VENUE_REJECTED,
                Outcome.UNKNOWN,
            )
            assert says in refused.message
            assert refused.client_order_id == order_id
        assert isinstance(gateway.answer(gateway.ask(Sync(strategy_id="s1"))), OpenOrders)
    finally:
        gateway.close()


def test_a_port_of_another_strategy_is_refused(venue: MockVenue) -> None:
    shared = venue.port("s1")
    gateway = Gateway(lambda strategy_id, config: shared)
    try:
        assert isinstance(gateway.answer(gateway.ask(Sync(strategy_id="s1"))), OpenOrders)
        refused = gateway.answer(gateway.ask(Sync(strategy_id="s2")))
        assert isinstance(refused, Rejection)
        assert refused.outcome is Outcome.DEFINITE
        assert "each strategy needs a port of its own" in refused.message
    finally:
        gateway.close()


def test_a_hosted_port_closed_under_the_gateway_is_replaced(venue: MockVenue) -> None:
    made: list[OrderExecutionPort] = []

    def factory(strategy_id: str, config: Mapping[str, Any]) -> OrderExecutionPort:
        made.append(venue.port(strategy_id))
        return made[-1]

    gateway = Gateway(factory)
    try:
        gateway.answer(gateway.ask(Sync(strategy_id="s1")))
        closing = asyncio.run_coroutine_threadsafe(made[0].close(), gateway.backend._loop)
        closing.result(WAIT)
        ack = gateway.answer(gateway.ask(limit("o1", "IMM", 5, "100.00")))
        assert isinstance(ack, Acknowledgement)
        assert len(made) == 2
    finally:
        gateway.close()


async def test_an_async_factory_is_awaited(venue: MockVenue) -> None:
    async def factory(strategy_id: str, config: Mapping[str, Any]) -> OrderExecutionPort:
        return venue.port(strategy_id)

    gateway = Gateway(factory)
    try:
        ack = gateway.answer(gateway.ask(limit("o1", "IMM", 5, "100.00")))
        assert isinstance(ack, Acknowledgement)
        assert ack.order.quantity == Decimal(5)
    finally:
        gateway.close()


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("no_colon", "expected package.module:callable"),
        ("no.such.module:f", "cannot import"),
        ("bus.gateway:nothing_here", "has no callable"),
    ],
)
def test_a_factory_spec_that_does_not_name_a_callable_is_refused(spec: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        load_factory(spec)
