"""Amending and canceling orders, including the races with fills."""

from __future__ import annotations

from decimal import Decimal

import pytest

from mock_venue.faults import DelayAcks
from mock_venue.port import VenueControl
from ports import (
    AckAction,
    AmendOrder,
    CancelOrder,
    CancelReason,
    ErrorReason,
    ExecType,
    OrderExecutionPort,
    OrderRejectedError,
    OrderStatus,
    Side,
)
from tests.contract.helpers import kinds, limit, take

A, F = ExecType.ACCEPTED, ExecType.TRADE


def amend(
    client_order_id: str, quantity: int | None = None, price: str | None = None
) -> AmendOrder:
    return AmendOrder(
        client_order_id=client_order_id,
        strategy_id="s1",
        quantity=None if quantity is None else Decimal(quantity),
        limit_price=None if price is None else Decimal(price),
    )


def cancel(client_order_id: str) -> CancelOrder:
    return CancelOrder(client_order_id=client_order_id, strategy_id="s1")


async def test_amend_quantity_up_and_down_and_price(port: OrderExecutionPort) -> None:
    updates = port.updates()
    await port.submit_order(limit("o1", quantity=100))
    up = await port.amend_order(amend("o1", quantity=150))
    assert up.action is AckAction.AMEND
    assert (up.order.quantity, up.order.leaves_qty, up.order.status) == (150, 150, OrderStatus.NEW)
    down = await port.amend_order(amend("o1", quantity=50, price="9.90"))
    assert (down.order.quantity, down.order.limit_price) == (50, Decimal("9.90"))
    events = await take(updates, 3)
    assert kinds(events) == [(A, "new"), (ExecType.AMENDED, "new"), (ExecType.AMENDED, "new")]
    assert events[2].leaves_qty == 50


async def test_amend_of_a_part_filled_order_keeps_cum_qty(
    port: OrderExecutionPort, venue: VenueControl
) -> None:
    await port.submit_order(limit("o1", quantity=100))
    await venue.fill("s1", "o1", Decimal(30))
    ack = await port.amend_order(amend("o1", quantity=200))
    assert (ack.order.cum_qty, ack.order.leaves_qty) == (30, 170)
    assert ack.order.status is OrderStatus.PARTIALLY_FILLED


async def test_amend_at_or_below_cum_qty_leaves_the_order_filled(
    port: OrderExecutionPort, venue: VenueControl
) -> None:
    updates = port.updates()
    await port.submit_order(limit("o1", quantity=100))
    await venue.fill("s1", "o1", Decimal(60))
    ack = await port.amend_order(amend("o1", quantity=50))
    assert (ack.order.status, ack.order.quantity, ack.order.leaves_qty) == (
        OrderStatus.FILLED,
        60,
        0,
    )
    events = await take(updates, 3)
    assert kinds(events)[2] == (ExecType.AMENDED, "filled")


async def test_cancel_a_working_order(port: OrderExecutionPort) -> None:
    updates = port.updates()
    await port.submit_order(limit("o1"))
    ack = await port.cancel_order(cancel("o1"))
    assert (ack.action, ack.order.status, ack.order.leaves_qty) == (
        AckAction.CANCEL,
        OrderStatus.CANCELED,
        0,
    )
    _, canceled = await take(updates, 2)
    assert (canceled.exec_type, canceled.cancel_reason) == (
        ExecType.CANCELED,
        CancelReason.REQUESTED,
    )
    assert await port.open_orders() == ()


async def test_cancel_a_part_filled_order(port: OrderExecutionPort, venue: VenueControl) -> None:
    await port.submit_order(limit("o1", quantity=100))
    await venue.fill("s1", "o1", Decimal(40))
    ack = await port.cancel_order(cancel("o1"))
    assert (ack.order.status, ack.order.cum_qty, ack.order.leaves_qty) == (
        OrderStatus.CANCELED,
        40,
        0,
    )


@pytest.mark.parametrize("change", [cancel("o1"), amend("o1", quantity=200)])
async def test_cancel_or_amend_after_the_fill_is_too_late(
    port: OrderExecutionPort, venue: VenueControl, change: CancelOrder | AmendOrder
) -> None:
    updates = port.updates()
    await port.submit_order(limit("o1"))
    await venue.fill("s1", "o1")
    with pytest.raises(OrderRejectedError) as caught:
        await (
            port.cancel_order(change)
            if isinstance(change, CancelOrder)
            else port.amend_order(change)
        )
    assert caught.value.reason is ErrorReason.TOO_LATE
    rejected = (await take(updates, 3))[2]
    expected = (
        ExecType.CANCEL_REJECTED if isinstance(change, CancelOrder) else ExecType.AMEND_REJECTED
    )
    assert (rejected.exec_type, rejected.status) == (expected, OrderStatus.FILLED)
    assert rejected.reject_reason is ErrorReason.TOO_LATE


async def test_cancel_racing_a_fill_loses(port: OrderExecutionPort, venue: VenueControl) -> None:
    updates = port.updates()
    await port.submit_order(limit("o1"))
    await venue.inject(DelayAcks(delay=1.0, count=1))
    handle = await port.cancel_order_nowait(cancel("o1"))
    # The cancel and the scripted fill travel on different channels: only once the stream shows
    # the cancel pending is it sure to be at the venue before the fill.
    events = await take(updates, 2)
    await venue.fill("s1", "o1")  # the fill reaches the book before the cancel is applied
    with pytest.raises(OrderRejectedError) as caught:
        await handle.acknowledged(timeout=5)
    assert caught.value.reason is ErrorReason.TOO_LATE
    events += await take(updates, 2)
    assert kinds(events) == [
        (A, "new"),
        (ExecType.PENDING_CANCEL, "pending_cancel"),
        (F, "filled"),  # the order ended: the pending cancel is moot
        (ExecType.CANCEL_REJECTED, "filled"),
    ]
    assert events[2].leaves_qty == 0
    await venue.advance(1)  # the cancel's delay runs out: nothing more may happen
    assert (await port.order_status("o1")).last_seq == events[3].seq


async def test_fills_while_an_amend_is_pending_use_the_old_terms(
    port: OrderExecutionPort, venue: VenueControl
) -> None:
    updates = port.updates()
    await port.submit_order(limit("o1", quantity=100, price="10.00"))
    await venue.inject(DelayAcks(delay=1.0, count=1))
    handle = await port.amend_order_nowait(amend("o1", quantity=200, price="10.50"))
    events = await take(updates, 2)  # the amend is pending at the venue (see the cancel race)
    await venue.fill("s1", "o1", Decimal(30))
    await venue.advance(1)
    ack = await handle.acknowledged(timeout=5)
    assert (ack.order.quantity, ack.order.limit_price, ack.order.cum_qty) == (
        200,
        Decimal("10.50"),
        30,
    )
    events += await take(updates, 2)
    assert kinds(events) == [
        (A, "new"),
        (ExecType.PENDING_AMEND, "pending_amend"),
        (F, "pending_amend"),
        (ExecType.AMENDED, "partially_filled"),
    ]
    during = events[2]
    assert (during.quantity, during.limit_price, during.leaves_qty, during.last_px) == (
        100,
        Decimal("10.00"),
        70,
        Decimal("10.00"),
    )


async def test_a_second_change_while_one_is_pending_is_rejected(
    port: OrderExecutionPort, venue: VenueControl
) -> None:
    await port.submit_order(limit("o1"))
    await venue.inject(DelayAcks(delay=1.0, count=1))
    first = await port.amend_order_nowait(amend("o1", quantity=200))
    for second in (amend("o1", quantity=300), cancel("o1")):
        with pytest.raises(OrderRejectedError) as caught:
            await (
                port.cancel_order(second)
                if isinstance(second, CancelOrder)
                else port.amend_order(second)
            )
        assert caught.value.reason is ErrorReason.REQUEST_PENDING
    await venue.advance(1)
    assert (await first.acknowledged(timeout=5)).order.quantity == 200


@pytest.mark.parametrize("change", [cancel("ghost"), amend("ghost", quantity=10)])
async def test_cancel_or_amend_of_an_unknown_order_is_rejected(
    port: OrderExecutionPort, change: CancelOrder | AmendOrder
) -> None:
    with pytest.raises(OrderRejectedError) as caught:
        await (
            port.cancel_order(change)
            if isinstance(change, CancelOrder)
            else port.amend_order(change)
        )
    assert (caught.value.reason, caught.value.client_order_id) == (
        ErrorReason.UNKNOWN_ORDER,
        "ghost",
    )
    with pytest.raises(OrderRejectedError):
        await port.order_status("ghost")


async def test_cancel_all_by_instrument_side_then_everything(port: OrderExecutionPort) -> None:
    await port.submit_order(limit("m-buy", "MAN"))
    await port.submit_order(limit("m-sell", "MAN", side=Side.SELL))
    await port.submit_order(limit("s-buy", "SLC", 10, "40.00"))
    first = await port.cancel_all_orders(instrument="MAN", side=Side.SELL)
    assert first.client_order_ids == ("m-sell",)
    rest = await port.cancel_all_orders()
    assert rest.client_order_ids == ("m-buy", "s-buy")
    assert await port.open_orders() == ()
    assert (await port.cancel_all_orders()).client_order_ids == ()


async def test_unsolicited_cancel_and_restatement_reach_the_stream(
    port: OrderExecutionPort, venue: VenueControl
) -> None:
    updates = port.updates()
    await port.submit_order(limit("o1", quantity=100))
    await port.submit_order(limit("o2", quantity=100))
    await venue.restate("s1", "o1", Decimal(60))
    await venue.cancel_unsolicited("s1", "o2")
    events = await take(updates, 4)
    assert kinds(events)[2:] == [(ExecType.RESTATED, "new"), (ExecType.CANCELED, "canceled")]
    assert (events[2].quantity, events[2].leaves_qty) == (60, 60)
    assert events[3].cancel_reason is CancelReason.UNSOLICITED


async def test_cancel_all_also_cancels_orders_not_yet_acknowledged(
    port: OrderExecutionPort, venue: VenueControl
) -> None:
    updates = port.updates()
    await venue.inject(DelayAcks(delay=1.0, count=1))
    handle = await port.submit_order_nowait(limit("slow"))
    assert (await port.cancel_all_orders()).client_order_ids == ("slow",)
    await venue.advance(1)
    assert (await handle.acknowledged(timeout=5)).order.client_order_id == "slow"
    events = await take(updates, 2)
    assert kinds(events) == [(A, "new"), (ExecType.CANCELED, "canceled")]
    assert events[1].cancel_reason is CancelReason.CANCEL_ALL


async def test_an_order_ending_while_an_amend_is_pending_rejects_the_amend(
    port: OrderExecutionPort, venue: VenueControl
) -> None:
    updates = port.updates()
    await port.submit_order(limit("o1"))
    await venue.inject(DelayAcks(delay=1.0, count=1))
    handle = await port.amend_order_nowait(amend("o1", quantity=200))
    await port.cancel_all_orders()
    with pytest.raises(OrderRejectedError) as caught:
        await handle.acknowledged(timeout=5)
    assert caught.value.reason is ErrorReason.TOO_LATE
    events = await take(updates, 4)
    assert kinds(events) == [
        (A, "new"),
        (ExecType.PENDING_AMEND, "pending_amend"),
        (ExecType.CANCELED, "canceled"),
        (ExecType.AMEND_REJECTED, "canceled"),
    ]
