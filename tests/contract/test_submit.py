"""Submitting orders: acceptance, fills, rejection, both acknowledgement patterns."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from mock_venue.port import VenueControl
from ports import (
    AckAction,
    CancelReason,
    ErrorReason,
    ExecType,
    OrderExecutionPort,
    OrderRejectedError,
    OrderStatus,
    Outcome,
    Side,
    SubmitOrder,
    TimeInForce,
)
from tests.contract.helpers import kinds, limit, market, take, until
from tests.contract.venue_setup import START

A, F, C = ExecType.ACCEPTED, ExecType.TRADE, ExecType.CANCELED


async def test_submit_is_accepted_then_filled(port: OrderExecutionPort) -> None:
    updates = port.updates()
    ack = await port.submit_order(limit("o1", "IMM", 10, "99.50"))
    assert ack.action is AckAction.SUBMIT
    assert ack.order.status is OrderStatus.NEW
    assert (ack.order.client_order_id, ack.order.quantity, ack.order.leaves_qty) == ("o1", 10, 10)
    accepted, fill = await take(updates, 2)
    assert kinds([accepted, fill]) == [(A, "new"), (F, "filled")]
    assert accepted.venue_order_id == fill.venue_order_id == ack.order.venue_order_id
    assert (fill.last_qty, fill.last_px, fill.cum_qty, fill.leaves_qty) == (
        10,
        Decimal("99.50"),
        10,
        0,
    )
    assert fill.avg_px == Decimal("99.50")
    assert fill.fill is not None
    assert fill.fill.fill_id == fill.fill_id
    status = await port.order_status("o1")
    assert status.status is OrderStatus.FILLED
    assert status.last_seq == fill.seq


async def test_market_order_fills_at_the_reference_price(port: OrderExecutionPort) -> None:
    updates = port.updates()
    await port.submit_order(market("m1", "IMM", 5, side=Side.SELL))
    fill = (await until(updates, F))[-1]
    assert (fill.last_px, fill.status) == (Decimal(100), OrderStatus.FILLED)


async def test_sliced_fills_keep_cum_leaves_and_average_right(
    port: OrderExecutionPort, venue: VenueControl
) -> None:
    updates = port.updates()
    await port.submit_order(limit("o1", "SLC", 10, "49.00"))
    assert (await take(updates, 1))[0].exec_type is A
    fills = []
    for _ in range(4):
        await venue.advance(1)
        fills.append((await take(updates, 1))[0])
    assert [f.last_qty for f in fills] == [2, 2, 3, 3]
    assert [f.cum_qty for f in fills] == [2, 4, 7, 10]
    assert [f.leaves_qty for f in fills] == [8, 6, 3, 0]
    assert [f.status for f in fills] == [OrderStatus.PARTIALLY_FILLED] * 3 + [OrderStatus.FILLED]
    assert len({f.fill_id for f in fills}) == 4


async def test_average_price_is_quantity_weighted(
    port: OrderExecutionPort, venue: VenueControl
) -> None:
    updates = port.updates()
    await port.submit_order(limit("o1", "MAN", 100, "10.20"))
    await venue.fill("s1", "o1", Decimal(40), Decimal("10.00"))
    await venue.fill("s1", "o1", Decimal(60), Decimal("10.10"))
    _, first, second = await take(updates, 3)
    assert (first.status, first.cum_qty, first.leaves_qty) == (OrderStatus.PARTIALLY_FILLED, 40, 60)
    assert first.avg_px == Decimal("10.00")
    assert (second.status, second.cum_qty, second.leaves_qty) == (OrderStatus.FILLED, 100, 0)
    assert second.avg_px == Decimal("10.06")


async def test_positions_are_the_sum_of_the_fills(
    port: OrderExecutionPort, venue: VenueControl
) -> None:
    updates = port.updates()
    assert await port.positions() == ()
    await port.submit_order(limit("o1", "MAN", 100, "10.20"))
    await port.submit_order(limit("o2", "MAN", 30, "10.50", side=Side.SELL))
    await venue.fill("s1", "o1", Decimal(40), Decimal("10.00"))
    await venue.fill("s1", "o1", Decimal(60), Decimal("10.10"))
    await venue.fill("s1", "o2", Decimal(30), Decimal("10.50"))
    await take(updates, 5)  # two accepted, three fills: every fill published, so counted
    (position,) = await port.positions()
    assert (position.instrument, position.quantity, position.fills) == ("MAN", 70, 3)
    assert position.average_price == Decimal("10.06")  # bought 100 at 10.06 on average
    assert position.realized_pnl == Decimal(30) * (Decimal("10.50") - Decimal("10.06"))
    assert (position.bought, position.sold) == (100, 30)


async def test_price_path_fills_a_resting_limit_when_crossed(
    port: OrderExecutionPort, venue: VenueControl
) -> None:
    updates = port.updates()
    # Marketable on arrival: fills at once at the reference price, not the limit.
    await port.submit_order(limit("now", "PXP", 5, "25.00"))
    fill = (await until(updates, F))[-1]
    assert fill.last_px == Decimal(20)
    # A limit just below the path: rests, then fills at its own price once the walk crosses it.
    await port.submit_order(limit("later", "PXP", 5, "19.98"))
    assert (await take(updates, 1))[0].exec_type is A
    for _ in range(600):
        status = await port.order_status("later")
        if status.status is OrderStatus.FILLED:
            break
        await venue.advance(1)
    fill = (await until(updates, F))[-1]
    assert (fill.client_order_id, fill.last_px) == ("later", Decimal("19.98"))


async def test_async_ack_returns_a_handle_with_its_events(port: OrderExecutionPort) -> None:
    handle = await port.submit_order_nowait(limit("o1", "IMM", 10, "100.00"))
    ack = await handle.acknowledged(timeout=5)
    assert handle.done()
    assert ack.order.client_order_id == "o1"
    events = await take(handle.events, 2)
    assert kinds(events) == [(A, "new"), (F, "filled")]


async def test_async_ack_surfaces_a_rejection_and_publishes_it(
    port: OrderExecutionPort,
) -> None:
    updates = port.updates()
    handle = await port.submit_order_nowait(limit("big", "IMM", 5000, "100.00"))
    with pytest.raises(OrderRejectedError) as caught:
        await handle.acknowledged(timeout=5)
    assert caught.value.reason is ErrorReason.LIMIT_EXCEEDED
    assert caught.value.client_order_id == "big"
    (event,) = await take(handle.events, 1)
    assert (event.exec_type, event.status) == (ExecType.REJECTED, OrderStatus.REJECTED)
    assert event.reject_reason is ErrorReason.LIMIT_EXCEEDED
    assert (await take(updates, 1))[0] == event


@pytest.mark.parametrize(
    ("order", "reason"),
    [
        (limit("x", "NOPE", 10, "1.00"), ErrorReason.UNKNOWN_INSTRUMENT),
        (limit("x", "MAN", 15, "10.00"), ErrorReason.INVALID_REQUEST),  # lots of 10
        (limit("x", "IMM", 10, "100.001"), ErrorReason.INVALID_REQUEST),  # ticks of 0.01
        (limit("x", "IMM", 1001, "100.00"), ErrorReason.LIMIT_EXCEEDED),
    ],
)
async def test_venue_checks_reject_with_a_reason(
    port: OrderExecutionPort, order: SubmitOrder, reason: ErrorReason
) -> None:
    with pytest.raises(OrderRejectedError) as caught:
        await port.submit_order(order)
    error = caught.value
    assert (error.reason, error.outcome, error.retryable) == (reason, Outcome.DEFINITE, False)


async def test_duplicate_client_order_id_is_rejected(port: OrderExecutionPort) -> None:
    await port.submit_order(limit("o1"))
    with pytest.raises(OrderRejectedError) as caught:
        await port.submit_order(limit("o1", price="10.10"))
    assert caught.value.reason is ErrorReason.DUPLICATE_CLIENT_ORDER_ID
    assert (await port.order_status("o1")).limit_price == Decimal("10.00")


async def test_resending_the_same_order_returns_the_original_answer(
    port: OrderExecutionPort,
) -> None:
    first = await port.submit_order(limit("o1"))
    again = await port.submit_order(limit("o1"))
    assert again == first
    assert [o.client_order_id for o in await port.open_orders()] == ["o1"]


async def test_ioc_that_cannot_trade_is_killed(port: OrderExecutionPort) -> None:
    updates = port.updates()
    await port.submit_order(limit("ioc", "MAN", 100, tif=TimeInForce.IOC))
    events = await take(updates, 2)
    assert kinds(events) == [(A, "new"), (C, "canceled")]
    assert events[1].cancel_reason is CancelReason.IOC_UNFILLED
    assert events[1].leaves_qty == 0


async def test_ioc_trades_what_it_can_and_cancels_the_rest(port: OrderExecutionPort) -> None:
    updates = port.updates()
    await port.submit_order(limit("ioc", "SLC", 8, "50.00", tif=TimeInForce.IOC))
    events = await take(updates, 3)
    assert kinds(events) == [(A, "new"), (F, "partially_filled"), (C, "canceled")]
    assert (events[2].cum_qty, events[2].leaves_qty) == (2, 0)


async def test_fok_fills_completely_or_not_at_all(port: OrderExecutionPort) -> None:
    updates = port.updates()
    await port.submit_order(limit("fok-sliced", "SLC", 8, "50.00", tif=TimeInForce.FOK))
    killed = await take(updates, 2)
    assert kinds(killed) == [(A, "new"), (C, "canceled")]
    assert killed[1].cancel_reason is CancelReason.FOK_UNFILLED
    assert killed[1].cum_qty == 0
    await port.submit_order(limit("fok-full", "IMM", 8, "100.00", tif=TimeInForce.FOK))
    assert kinds(await take(updates, 2)) == [(A, "new"), (F, "filled")]


async def test_order_expires_at_its_expiry(port: OrderExecutionPort, venue: VenueControl) -> None:
    updates = port.updates()
    order = limit("o1", tif=TimeInForce.GTC).model_copy(
        update={"expire_at": START + timedelta(seconds=30)}
    )
    await port.submit_order(order)
    await venue.advance(29)
    await venue.advance(1)
    _, expired = await take(updates, 2)
    assert (expired.exec_type, expired.status) == (ExecType.EXPIRED, OrderStatus.EXPIRED)
    assert expired.venue_time == START + timedelta(seconds=30)
    assert expired.leaves_qty == 0


async def test_day_order_expires_at_the_end_of_the_trading_day(
    port: OrderExecutionPort, venue: VenueControl
) -> None:
    updates = port.updates()
    await port.submit_order(limit("day"))
    await port.submit_order(limit("gtc", tif=TimeInForce.GTC))
    await venue.advance(12 * 3600)  # 09:00 + 12 h passes the 21:00 close
    events = await take(updates, 3)
    assert kinds(events)[2] == (ExecType.EXPIRED, "expired")
    assert events[2].client_order_id == "day"
    assert [o.client_order_id for o in await port.open_orders()] == ["gtc"]


async def test_an_order_past_its_expiry_is_never_executed(port: OrderExecutionPort) -> None:
    stale = limit("old").model_copy(update={"expire_at": START - timedelta(seconds=1)})
    with pytest.raises(OrderRejectedError) as caught:
        await port.submit_order(stale)
    assert caught.value.reason is ErrorReason.STALE_ORDER
