"""The venue misbehaves on purpose: rejections, throttling, late and missing answers."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from mock_venue.faults import DelayAcks, DelayFills, DropReplies, RejectOrders, Throttle
from mock_venue.port import VenueControl
from ports import (
    AckTimeoutError,
    ConnectivityError,
    ErrorReason,
    ExecType,
    OrderExecutionPort,
    OrderRejectedError,
    OrderStatus,
    Outcome,
    ThrottleError,
)
from tests.contract.conftest import PortFactory
from tests.contract.helpers import kinds, limit, take
from tests.contract.venue_setup import START


async def test_injected_rejection_hits_the_next_orders_only(
    port: OrderExecutionPort, venue: VenueControl
) -> None:
    updates = port.updates()
    await venue.inject(RejectOrders(count=2, reason=ErrorReason.VENUE_REJECTED, message="halted"))
    for client_order_id in ("r1", "r2"):
        with pytest.raises(OrderRejectedError) as caught:
            await port.submit_order(limit(client_order_id))
        assert (caught.value.reason, caught.value.message) == (ErrorReason.VENUE_REJECTED, "halted")
    assert (await port.submit_order(limit("ok"))).order.status is OrderStatus.NEW
    events = await take(updates, 3)
    assert kinds(events) == [
        (ExecType.REJECTED, "rejected"),
        (ExecType.REJECTED, "rejected"),
        (ExecType.ACCEPTED, "new"),
    ]
    assert await venue.active_faults() == []


async def test_injected_rejection_can_target_one_strategy(
    port: OrderExecutionPort, port_factory: PortFactory, venue: VenueControl
) -> None:
    await venue.inject(RejectOrders(strategy_id="s2"))
    assert (await port.submit_order(limit("mine"))).order.status is OrderStatus.NEW
    async with port_factory("s2") as other:
        with pytest.raises(OrderRejectedError):
            await other.submit_order(limit("theirs", strategy_id="s2"))


async def test_throttle_refuses_with_retry_after_then_recovers(
    port: OrderExecutionPort, venue: VenueControl
) -> None:
    await venue.inject(Throttle(max_requests=2, interval=1.0))
    await port.submit_order(limit("o1"))
    await venue.advance(0.25)
    await port.submit_order(limit("o2"))
    with pytest.raises(ThrottleError) as caught:
        await port.submit_order(limit("o3"))
    error = caught.value
    assert (error.reason, error.retryable, error.outcome) == (
        ErrorReason.THROTTLED,
        True,
        Outcome.DEFINITE,
    )
    assert error.retry_after == pytest.approx(0.75)
    await venue.advance(error.retry_after)
    # The throttled order was never taken in: the same id goes through now.
    assert (await port.submit_order(limit("o3"))).order.client_order_id == "o3"


async def test_ack_timeout_has_unknown_outcome_and_a_status_query_settles_it(
    port_factory: PortFactory, venue: VenueControl
) -> None:
    # Shorter than a wire port's first resend (0.15 s at the earliest): no copy is answered.
    async with port_factory(ack_timeout=0.1) as port:
        await venue.inject(DropReplies(count=1))
        with pytest.raises(AckTimeoutError) as caught:
            await port.submit_order(limit("o1"))
        error = caught.value
        assert isinstance(error, TimeoutError)
        assert isinstance(error, ConnectivityError)
        assert (error.reason, error.outcome, error.retryable) == (
            ErrorReason.ACK_TIMEOUT,
            Outcome.UNKNOWN,
            True,
        )
        assert error.client_order_id == "o1"
        # The venue did execute it: the query says so.
        assert (await port.order_status("o1")).status is OrderStatus.NEW
        # Retrying the very same order is safe: the original answer comes back.
        assert (await port.submit_order(limit("o1"))).order.status is OrderStatus.NEW


async def test_handle_timeout_leaves_the_door_open_for_a_late_ack(
    port: OrderExecutionPort, venue: VenueControl
) -> None:
    await venue.inject(DelayAcks(delay=2.0, count=1))
    handle = await port.submit_order_nowait(limit("o1"))
    with pytest.raises(AckTimeoutError):
        await handle.acknowledged(timeout=0.05)
    assert not handle.done()
    assert (await port.order_status("o1")).status is OrderStatus.PENDING_NEW
    await venue.advance(2)
    assert (await handle.acknowledged(timeout=5)).order.status is OrderStatus.NEW
    (event,) = await take(handle.events, 1)
    assert (event.exec_type, event.venue_time) == (ExecType.ACCEPTED, START + timedelta(seconds=2))


async def test_delayed_fills_arrive_late(port: OrderExecutionPort, venue: VenueControl) -> None:
    updates = port.updates()
    await venue.inject(DelayFills(delay=3.0, count=1))
    await port.submit_order(limit("o1", "IMM", 10, "100.00"))
    assert (await take(updates, 1))[0].exec_type is ExecType.ACCEPTED
    assert (await port.order_status("o1")).cum_qty == 0
    await venue.advance(3)
    fill = (await take(updates, 1))[0]
    assert (fill.exec_type, fill.cum_qty, fill.last_px) == (ExecType.TRADE, 10, Decimal("100.00"))


async def test_faults_are_listed_and_cleared(venue: VenueControl) -> None:
    await venue.inject(Throttle(max_requests=5, interval=1.0))
    await venue.inject(DelayAcks(delay=1.0))
    assert [f.fault.kind for f in await venue.active_faults()] == ["throttle", "delay_acks"]
    await venue.clear_faults()
    assert await venue.active_faults() == []
