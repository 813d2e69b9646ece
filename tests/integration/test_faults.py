"""Every fault of the catalogue, injected over the control channel from this process into a
separate venue process, with the exact outcome a strategy sees (docs/faults.md)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal

import msgpack
import pytest
import zmq

from bus.client import ZmqOrderExecutionPort
from bus.codec import decode
from mock_venue.control import CONTROL_MODELS
from mock_venue.control_client import ControlClient
from mock_venue.faults import (
    DropEvents,
    DuplicateEvents,
    Fault,
    FillBeforeChange,
    PausePublishing,
    RejectOrders,
    ReorderEvents,
    Throttle,
)
from mock_venue.process import VenueProcess
from ports import (
    CancelOrder,
    ConnectivityError,
    ErrorReason,
    ExecType,
    ExecutionReport,
    OrderRejectedError,
    OrderStatus,
    Rejection,
)
from tests.contract.helpers import WAIT, kinds, limit, market, take
from tests.contract.venue_setup import CONTRACT_VENUE


@contextlib.asynccontextmanager
async def venue_and_port(
    seed: int = 0,
) -> AsyncIterator[tuple[VenueProcess, ControlClient, ZmqOrderExecutionPort]]:
    with VenueProcess(CONTRACT_VENUE, seed=seed, heartbeat=0.05) as venue:
        assert venue.endpoints is not None
        port = ZmqOrderExecutionPort(
            "s1", command=venue.endpoints.command, events=venue.endpoints.events
        )
        async with ControlClient(venue.endpoints.control) as control, port:
            yield venue, control, port


async def test_a_fault_can_target_one_order() -> None:
    async with venue_and_port() as (_, control, port):
        await control.inject(RejectOrders(client_order_id="o2", reason=ErrorReason.LIMIT_EXCEEDED))
        await port.submit_order(limit("o1"))
        with pytest.raises(OrderRejectedError) as caught:
            await port.submit_order(limit("o2"))
        assert caught.value.reason is ErrorReason.LIMIT_EXCEEDED
        await port.submit_order(limit("o3"))
        assert await control.active_faults() == []  # used up by o2 alone


async def _rejected_pattern(seed: int) -> list[int]:
    async with venue_and_port(seed) as (_, control, port):
        await control.inject(RejectOrders(count=1000, probability=0.5))
        rejected = []
        for n in range(24):
            try:
                await port.submit_order(limit(f"o{n}"))
            except OrderRejectedError:
                rejected.append(n)
        (active,) = await control.active_faults()
        assert active.fired == len(rejected)
        return rejected


async def test_a_probability_is_drawn_from_the_venue_seed() -> None:
    first = await _rejected_pattern(seed=11)
    assert 0 < len(first) < 24
    assert await _rejected_pattern(seed=11) == first  # the same seed, the same faults


async def test_a_fill_that_lands_just_before_a_cancel_makes_it_too_late() -> None:
    async with venue_and_port() as (_, control, port):
        updates = port.updates()
        await port.submit_order(limit("o1", quantity=10))
        await control.inject(FillBeforeChange(client_order_id="o1"))
        with pytest.raises(OrderRejectedError) as caught:
            await port.cancel_order(CancelOrder(strategy_id="s1", client_order_id="o1"))
        assert caught.value.reason is ErrorReason.TOO_LATE
        assert kinds(await take(updates, 3)) == [
            (ExecType.ACCEPTED, "new"),
            (ExecType.TRADE, "filled"),
            (ExecType.CANCEL_REJECTED, "filled"),
        ]


async def test_a_partial_fill_before_a_cancel_leaves_the_cancel_to_take_the_rest() -> None:
    async with venue_and_port() as (_, control, port):
        updates = port.updates()
        await port.submit_order(limit("o1", quantity=10))
        await control.inject(FillBeforeChange(client_order_id="o1", quantity=Decimal(4)))
        ack = await port.cancel_order(CancelOrder(strategy_id="s1", client_order_id="o1"))
        assert ack.order.status is OrderStatus.CANCELED
        assert ack.order.cum_qty == 4
        reports = await take(updates, 3)
        assert kinds(reports) == [
            (ExecType.ACCEPTED, "new"),
            (ExecType.TRADE, "partially_filled"),
            (ExecType.CANCELED, "canceled"),
        ]


async def _stream_survives(inject: Fault, orders: int = 6) -> list[ExecutionReport]:
    """Submit immediately filled orders under a transport fault; the strategy's stream must
    still carry every event once, in order."""
    async with venue_and_port() as (_, control, port):
        updates = port.updates()
        await control.inject(inject)
        for n in range(orders):
            await port.submit_order(market(f"o{n}", quantity=5))
        reports = await take(updates, 2 * orders)
        assert [r.seq for r in reports] == list(range(1, 2 * orders + 1))
        assert [(r.client_order_id, r.exec_type) for r in reports] == [
            (f"o{n}", kind) for n in range(orders) for kind in (ExecType.ACCEPTED, ExecType.TRADE)
        ]
        assert await control.active_faults() == []  # every use of it fired
        with pytest.raises(TimeoutError):  # and nothing twice
            await updates.get(timeout=0.3)
        return reports


async def test_dropped_events_are_recovered_by_replay() -> None:
    await _stream_survives(DropEvents(count=3, strategy_id="s1"))


async def test_duplicated_events_are_delivered_once() -> None:
    await _stream_survives(DuplicateEvents(count=4))


async def test_reordered_events_are_put_back_in_order() -> None:
    await _stream_survives(ReorderEvents(count=3))


async def test_paused_publishing_holds_events_back_and_then_delivers_them_in_order() -> None:
    async with venue_and_port() as (_, control, port):
        updates = port.updates()
        pause = await control.inject(PausePublishing())
        await port.submit_order(market("o1", quantity=5))  # replies still flow
        await port.submit_order(market("o2", quantity=5))
        with pytest.raises(TimeoutError):
            await updates.get(timeout=0.3)  # no events while paused
        await control.clear_faults(pause.fault_id)
        assert [(r.seq, r.client_order_id) for r in await take(updates, 4)] == [
            (1, "o1"),
            (2, "o1"),
            (3, "o2"),
            (4, "o2"),
        ]


async def test_a_timed_pause_ends_by_itself() -> None:
    async with venue_and_port() as (_, control, port):
        updates = port.updates()
        await control.inject(PausePublishing(seconds=0.5))
        await port.submit_order(market("o1", quantity=5))
        with pytest.raises(TimeoutError):
            await updates.get(timeout=0.2)  # held back...
        assert [r.exec_type for r in await take(updates, 2)] == [ExecType.ACCEPTED, ExecType.TRADE]
        assert await control.active_faults() == []


async def test_a_disconnect_drops_every_connection_and_clients_come_back() -> None:
    async with venue_and_port() as (_, control, port):
        updates = port.updates()
        await port.submit_order(market("o1", quantity=5))
        await control.disconnect()
        deadline = asyncio.get_running_loop().time() + WAIT
        while True:  # the DEALER reconnects by itself; until then nothing can be sent
            try:
                await port.submit_order(market("o2", quantity=5))
                break
            except ConnectivityError:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.05)
        reports = await take(updates, 4)
        assert [(r.seq, r.client_order_id) for r in reports] == [
            (1, "o1"),
            (2, "o1"),
            (3, "o2"),
            (4, "o2"),
        ]
        assert (await control.status()).orders == 2


async def test_a_fault_that_cannot_honour_a_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="takes no strategy_id"):
        PausePublishing(strategy_id="s1")
    with pytest.raises(ValueError, match="takes no probability"):
        Throttle(max_requests=1, interval=1, probability=0.5)
    # Over the wire, from a client that does not validate: a typed error, and the venue serves on.
    async with venue_and_port() as (venue, control, _):
        assert venue.endpoints is not None
        context = zmq.Context()
        try:
            dealer = context.socket(zmq.DEALER)
            dealer.connect(venue.endpoints.control)
            body = {"fault": {"kind": "pause_publishing", "strategy_id": "s1"}}
            dealer.send(msgpack.packb({"v": 1, "t": "inject_fault", "id": 1, "b": body}))
            assert dealer.poll(int(WAIT * 1000))
            reply = decode(dealer.recv(), models=CONTROL_MODELS, max_bytes=None)
        finally:
            context.destroy(linger=0)
        assert isinstance(reply.body, Rejection)
        assert "takes no strategy_id" in reply.body.message
        assert await control.active_faults() == []
