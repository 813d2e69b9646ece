"""A client that survives: lost replies, a frozen venue, throttling, a venue replaced by a new one.

Each test runs against a real venue process, with the asyncio client and with the blocking one
(through the contract suite's adapter, which adds no logic of its own). Waits have deadlines;
nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bus.blocking import BlockingOrderExecutionPort
from bus.client import ZmqOrderExecutionPort
from bus.codec import decode
from bus.server import Endpoints
from mock_venue.control_client import ControlClient
from mock_venue.faults import DropReplies, Throttle
from mock_venue.process import VenueProcess
from ports import (
    Acknowledgement,
    AckTimeoutError,
    ErrorReason,
    ExecType,
    ExecutionReport,
    OrderExecutionPort,
    OrderRejectedError,
    OrderStatus,
    PortEvent,
    PortEventKind,
    PortState,
    ThrottleError,
)
from tests.contract.blocking_adapter import BlockingAsAsync
from tests.contract.helpers import STRATEGY, limit, until_port_events
from tests.contract.venue_setup import CONTRACT_VENUE

WAIT = 10.0
HEARTBEAT = 0.05
LIVENESS = 4  # silent for 0.2 s: lost
CLIENTS = ["zmq", "zmq-blocking"]


@dataclass
class Losses:
    """Replies a lossy port let go of, as if the network had lost them."""

    acks_to_lose: int = 0
    lost: int = 0

    def lose(self, frame: bytes) -> bool:
        if self.lost < self.acks_to_lose:
            envelope = decode(frame, max_bytes=None)
            if isinstance(envelope.body, Acknowledgement):
                self.lost += 1
                return True
        return False


class LossyZmqPort(ZmqOrderExecutionPort):
    def __init__(self, *args: Any, losses: Losses, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.losses = losses

    def _on_reply_frame(self, frame: bytes, now: float) -> None:
        if not self.losses.lose(frame):
            super()._on_reply_frame(frame, now)


class LossyBlockingPort(BlockingOrderExecutionPort):
    def __init__(self, *args: Any, losses: Losses, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.losses = losses

    def _on_reply_frame(self, frame: bytes, now: float) -> None:
        if not self.losses.lose(frame):
            super()._on_reply_frame(frame, now)


@contextmanager
def venue_process(**options: Any) -> Iterator[VenueProcess]:
    venue = VenueProcess(CONTRACT_VENUE, heartbeat=HEARTBEAT, **options)
    venue.start()
    try:
        yield venue
    finally:
        if venue.process is not None and venue.process.poll() is None:
            venue.process.send_signal(signal.SIGCONT)  # a frozen venue cannot stop
        venue.stop()


@asynccontextmanager
async def client(
    kind: str,
    endpoints: Endpoints,
    *,
    ack_timeout: float = 5.0,
    retry_throttled: bool = True,
    losses: Losses | None = None,
) -> AsyncIterator[OrderExecutionPort]:
    options: dict[str, Any] = {
        "command": endpoints.command,
        "events": endpoints.events,
        "ack_timeout": ack_timeout,
        "heartbeat_interval": HEARTBEAT,
        "liveness": LIVENESS,
        "retry_throttled": retry_throttled,
    }
    port: OrderExecutionPort
    if kind == "zmq":
        if losses is None:
            port = ZmqOrderExecutionPort(STRATEGY, **options)
        else:
            port = LossyZmqPort(STRATEGY, losses=losses, **options)
    elif losses is None:
        port = BlockingAsAsync(BlockingOrderExecutionPort(STRATEGY, **options))
    else:
        port = BlockingAsAsync(LossyBlockingPort(STRATEGY, losses=losses, **options))
    async with port:
        yield port


def port_events(updates: list[ExecutionReport | PortEvent]) -> list[PortEvent]:
    return [u for u in updates if isinstance(u, PortEvent)]


def reports(updates: list[ExecutionReport | PortEvent]) -> list[ExecutionReport]:
    return [u for u in updates if isinstance(u, ExecutionReport)]


async def orders_at(control: ControlClient) -> int:
    return (await control.status()).orders


@pytest.mark.parametrize("kind", CLIENTS)
async def test_a_lost_reply_is_recovered_by_a_resend_and_the_venue_holds_one_order(
    kind: str,
) -> None:
    losses = Losses(acks_to_lose=1)
    with venue_process() as venue:
        assert venue.endpoints is not None
        async with (
            ControlClient(venue.endpoints.control) as control,
            client(kind, venue.endpoints, losses=losses) as port,
        ):
            ack = await port.submit_order(limit("o1"))  # the first answer is lost on the way
            assert losses.lost == 1
            assert (ack.order.client_order_id, ack.order.status) == ("o1", OrderStatus.NEW)
            assert port.in_doubt() == frozenset()
            assert await orders_at(control) == 1  # the resend was answered from the store


@pytest.mark.parametrize("kind", CLIENTS)
async def test_a_dropped_reply_is_answered_by_a_resend_and_the_venue_holds_one_order(
    kind: str,
) -> None:
    with venue_process() as venue:
        assert venue.endpoints is not None
        async with (
            ControlClient(venue.endpoints.control) as control,
            client(kind, venue.endpoints, ack_timeout=1.0) as port,
        ):
            await control.inject(DropReplies(count=1))
            ack = await port.submit_order(
                limit("o1")
            )  # answered by a resend, from the venue's store
            assert ack.order.status is OrderStatus.NEW
            assert port.in_doubt() == frozenset()
            assert await orders_at(control) == 1


@pytest.mark.parametrize("kind", CLIENTS)
async def test_a_dropped_reply_leaves_the_order_in_doubt_until_the_port_settles_it(
    kind: str,
) -> None:
    with venue_process() as venue:
        assert venue.endpoints is not None
        async with (
            ControlClient(venue.endpoints.control) as control,
            # Shorter than the first resend (0.15 s at the earliest): no copy can be answered.
            client(kind, venue.endpoints, ack_timeout=0.1) as port,
        ):
            updates = port.updates(port_events=True)
            await control.inject(DropReplies(count=1))
            with pytest.raises(AckTimeoutError) as caught:
                await port.submit_order(limit("o1"))
            assert caught.value.client_order_id == "o1"
            assert port.in_doubt() == {"o1"}
            seen = await until_port_events(updates, PortEventKind.ORDER_SETTLED, wait=WAIT)
            doubt, settled = port_events(seen)
            assert doubt.kind is PortEventKind.ORDER_IN_DOUBT
            # The venue executed it: the port's status query says so.
            assert settled.snapshot is not None
            assert (settled.snapshot.client_order_id, settled.snapshot.status) == (
                "o1",
                OrderStatus.NEW,
            )
            assert port.in_doubt() == frozenset()
            assert await orders_at(control) == 1


@pytest.mark.parametrize("kind", CLIENTS)
async def test_a_frozen_venue_never_executes_what_the_client_gave_up_on_and_the_port_settles_it(
    kind: str,
) -> None:
    # Issue 13: submits queued while the venue was stopped were executed after the thaw, long
    # after the client had given up. Each request now carries its deadline; the thawed venue
    # refuses it (stale_request), and the port's in-doubt settling finds nothing to guess.
    with venue_process() as venue:
        assert venue.endpoints is not None
        assert venue.process is not None
        async with (
            ControlClient(venue.endpoints.control) as control,
            client(kind, venue.endpoints, ack_timeout=0.6) as port,
        ):
            updates = port.updates(port_events=True)
            states = aiter(port.state_changes())
            venue.process.send_signal(signal.SIGSTOP)
            try:
                await until_port_events(updates, PortEventKind.CONNECTION_LOST, wait=WAIT)
                assert await asyncio.wait_for(anext(states), WAIT) is PortState.RECONNECTING
                with pytest.raises(AckTimeoutError):
                    await port.submit_order(limit("frozen"))
                assert port.in_doubt() == {"frozen"}
            finally:
                venue.process.send_signal(signal.SIGCONT)
            seen = await until_port_events(
                updates, PortEventKind.CONNECTION_RESTORED, PortEventKind.ORDER_SETTLED, wait=WAIT
            )
            events = port_events(seen)
            assert [e.kind for e in events[:1]] == [PortEventKind.ORDER_IN_DOUBT]
            assert {e.kind for e in events[1:]} == {
                PortEventKind.CONNECTION_RESTORED,
                PortEventKind.ORDER_SETTLED,
            }
            (settled,) = [e for e in events if e.kind is PortEventKind.ORDER_SETTLED]
            assert settled.client_order_id == "frozen"
            assert settled.snapshot is None  # the venue does not know it: never placed
            assert port.in_doubt() == frozenset()
            assert await asyncio.wait_for(anext(states), WAIT) is PortState.CONNECTED
            assert port.state is PortState.CONNECTED
            assert await orders_at(control) == 0
            assert not reports(seen)
            assert (await port.submit_order(limit("after"))).order.status is OrderStatus.NEW
            assert await orders_at(control) == 1


@pytest.mark.parametrize("kind", CLIENTS)
async def test_throttled_submits_are_retried_after_retry_after(kind: str) -> None:
    with venue_process() as venue:
        assert venue.endpoints is not None
        async with (
            ControlClient(venue.endpoints.control) as control,
            client(kind, venue.endpoints) as port,
        ):
            await control.inject(Throttle(max_requests=1, interval=0.5))
            started = time.monotonic()
            first = await port.submit_order(limit("o1"))
            second = await port.submit_order(limit("o2"))  # throttled, then retried: accepted
            assert time.monotonic() - started >= 0.3  # it did wait for the window
            assert [first.order.client_order_id, second.order.client_order_id] == ["o1", "o2"]
            assert await orders_at(control) == 2


@pytest.mark.parametrize("kind", CLIENTS)
async def test_without_throttle_retries_a_throttled_submit_raises(kind: str) -> None:
    with venue_process() as venue:
        assert venue.endpoints is not None
        async with (
            ControlClient(venue.endpoints.control) as control,
            client(kind, venue.endpoints, retry_throttled=False) as port,
        ):
            await control.inject(Throttle(max_requests=1, interval=5.0))
            await port.submit_order(limit("o1"))
            with pytest.raises(ThrottleError) as caught:
                await port.submit_order(limit("o2"))
            assert 4.0 < caught.value.retry_after <= 5.0
            assert port.in_doubt() == frozenset()  # nothing was done: nothing in doubt


@pytest.mark.parametrize("kind", CLIENTS)
async def test_a_venue_replaced_by_a_fresh_one_resets_the_port(kind: str) -> None:
    with venue_process() as venue:
        assert venue.endpoints is not None
        assert venue.process is not None
        endpoints = venue.endpoints
        async with client(kind, endpoints, ack_timeout=0.6) as port:
            updates = port.updates(port_events=True)
            await port.submit_order(limit("o1"))
            # Frozen, then killed with an order in doubt; a new venue starts in its place.
            venue.process.send_signal(signal.SIGSTOP)
            await until_port_events(updates, PortEventKind.CONNECTION_LOST, wait=WAIT)
            with pytest.raises(AckTimeoutError):
                await port.submit_order(limit("o2"))
            venue.kill()
            venue.restart()  # the same endpoints; no journal: a new session
            seen = await until_port_events(updates, PortEventKind.ORDER_SETTLED, wait=WAIT)
            assert [e.kind for e in port_events(seen)] == [
                PortEventKind.ORDER_IN_DOUBT,
                PortEventKind.VENUE_RESET,
                PortEventKind.CONNECTION_RESTORED,
                PortEventKind.ORDER_SETTLED,
            ]
            settled = port_events(seen)[-1]
            # The new venue never heard of o2: it was not placed there.
            assert (settled.client_order_id, settled.snapshot) == ("o2", None)
            assert port.in_doubt() == frozenset()
            # The stream now carries the new venue's events, numbered from 1 again.
            await port.submit_order(limit("o3"))
            while not reports(seen) or reports(seen)[-1].client_order_id != "o3":
                seen.append(await updates.get(timeout=WAIT))
            accepted = reports(seen)[-1]
            assert (accepted.exec_type, accepted.seq) == (ExecType.ACCEPTED, 1)
            with pytest.raises(OrderRejectedError) as caught:
                await port.order_status("o1")
            assert caught.value.reason is ErrorReason.UNKNOWN_ORDER


@pytest.mark.parametrize("kind", CLIENTS)
async def test_a_venue_restarted_on_its_journal_carries_on(kind: str, tmp_path: Path) -> None:
    with venue_process(journal=tmp_path / "venue.journal") as venue:
        assert venue.endpoints is not None
        async with client(kind, venue.endpoints) as port:
            updates = port.updates(port_events=True)
            await port.submit_order(limit("o1"))
            venue.kill()
            # Restarted once the port has seen it go (a quicker restart shows as
            # VENUE_RESTARTED alone: the session unit tests cover that).
            before = await until_port_events(updates, PortEventKind.CONNECTION_LOST, wait=WAIT)
            venue.restart()  # recovers orders, numbers and stored answers from the journal
            seen = await until_port_events(updates, PortEventKind.CONNECTION_RESTORED, wait=WAIT)
            assert [e.kind for e in port_events(seen)] == [
                PortEventKind.VENUE_RESTARTED,
                PortEventKind.CONNECTION_RESTORED,
            ]
            seen = before + seen
            assert (await port.order_status("o1")).status is OrderStatus.NEW
            await port.submit_order(limit("o2"))
            while not reports(seen) or reports(seen)[-1].client_order_id != "o2":
                seen.append(await updates.get(timeout=WAIT))
            # The stream carries on where it was: o1's report once (live, or replayed after the
            # restart), then o2's.
            assert [(r.seq, r.client_order_id) for r in reports(seen)] == [(1, "o1"), (2, "o2")]


def test_blocking_handles_dropped_unread_leave_nothing_behind() -> None:
    import gc

    with venue_process() as venue:
        assert venue.endpoints is not None
        with BlockingOrderExecutionPort(
            STRATEGY, command=venue.endpoints.command, events=venue.endpoints.events
        ) as port:
            for n in range(100):
                port.submit_order_nowait(limit(f"o{n}"))  # never asked for its answer
            gc.collect()
            assert port.order_status("o99").client_order_id == "o99"  # every answer is in
            assert port._calls == {}  # every answer went to its handle: the port keeps none
