"""Update streams, strategy isolation, the port's lifecycle and validation at the caller."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from mock_venue.port import VenueControl
from ports import (
    AmendOrder,
    CancelOrder,
    ErrorReason,
    ExecType,
    OrderExecutionPort,
    OrderRejectedError,
    OrderStatus,
    OrderType,
    PortClosedError,
    PortState,
    Side,
    SubmitOrder,
    TimeInForce,
)
from tests.contract.conftest import PortFactory
from tests.contract.helpers import WAIT, limit, market, take


async def test_update_stream_is_complete_and_in_order(
    port: OrderExecutionPort, venue: VenueControl
) -> None:
    updates = port.updates()
    await port.submit_order(limit("a", "IMM", 10, "100.00"))  # accepted, filled
    await port.submit_order(limit("b", "SLC", 4, "50.00"))  # accepted, then 4 slices
    await port.submit_order(limit("c"))  # accepted
    await port.cancel_order(CancelOrder(client_order_id="c", strategy_id="s1"))  # canceled
    for _ in range(4):
        await venue.advance(1)
    events = await take(updates, 9)
    assert [e.seq for e in events] == list(range(1, 10))
    assert [e.venue_seq for e in events] == sorted(e.venue_seq for e in events)
    by_order: dict[str, list[ExecType]] = {}
    for event in events:
        by_order.setdefault(event.client_order_id, []).append(event.exec_type)
    assert by_order == {
        "a": [ExecType.ACCEPTED, ExecType.TRADE],
        "b": [ExecType.ACCEPTED] + [ExecType.TRADE] * 4,
        "c": [ExecType.ACCEPTED, ExecType.CANCELED],
    }


async def test_order_stream_sees_only_its_order(port: OrderExecutionPort) -> None:
    only_b = port.updates("b")
    await port.submit_order(limit("a", "IMM", 10, "100.00"))
    await port.submit_order(limit("b", "IMM", 10, "100.00"))
    events = await take(only_b, 2)
    assert {e.client_order_id for e in events} == {"b"}


async def test_strategies_see_only_their_own_orders(
    port: OrderExecutionPort, port_factory: PortFactory
) -> None:
    mine = port.updates()
    async with port_factory("s2") as other:
        theirs = other.updates()
        await other.submit_order(limit("x", "IMM", 10, "100.00", strategy_id="s2"))
        await port.submit_order(limit("x", "IMM", 10, "100.00"))  # same id, other strategy: fine
        mine_events = await take(mine, 2)
        their_events = await take(theirs, 2)
        assert {e.strategy_id for e in mine_events} == {"s1"}
        assert {e.strategy_id for e in their_events} == {"s2"}
        assert [e.seq for e in mine_events] == [e.seq for e in their_events] == [1, 2]
        with pytest.raises(OrderRejectedError) as caught:
            await other.cancel_order(CancelOrder(client_order_id="x", strategy_id="s2"))
        assert caught.value.reason is ErrorReason.TOO_LATE  # its own x, filled
        assert [o.client_order_id for o in await other.open_orders()] == []


async def test_open_orders_lists_working_orders_oldest_first(port: OrderExecutionPort) -> None:
    await port.submit_order(limit("first"))
    await port.submit_order(limit("filled", "IMM", 10, "100.00"))
    await port.submit_order(limit("second", "SLC", 4, "50.00"))
    await port.submit_order(limit("third"))
    assert [o.client_order_id for o in await port.open_orders()] == ["first", "second", "third"]
    assert [o.client_order_id for o in await port.open_orders("MAN")] == ["first", "third"]


async def test_request_for_another_strategy_is_refused_before_sending(
    port: OrderExecutionPort,
) -> None:
    with pytest.raises(OrderRejectedError) as caught:
        await port.submit_order(limit("o1", strategy_id="someone-else"))
    assert caught.value.reason is ErrorReason.INVALID_REQUEST
    with pytest.raises(OrderRejectedError):
        await port.order_status("o1")  # nothing reached the venue


CALLS: dict[str, Callable[[OrderExecutionPort], Awaitable[Any]]] = {
    "submit_order": lambda p: p.submit_order(limit("z")),
    "submit_order_nowait": lambda p: p.submit_order_nowait(limit("z")),
    "amend_order": lambda p: p.amend_order(
        AmendOrder(client_order_id="z", strategy_id="s1", quantity=Decimal(1))
    ),
    "amend_order_nowait": lambda p: p.amend_order_nowait(
        AmendOrder(client_order_id="z", strategy_id="s1", quantity=Decimal(1))
    ),
    "cancel_order": lambda p: p.cancel_order(CancelOrder(client_order_id="z", strategy_id="s1")),
    "cancel_order_nowait": lambda p: p.cancel_order_nowait(
        CancelOrder(client_order_id="z", strategy_id="s1")
    ),
    "cancel_all_orders": lambda p: p.cancel_all_orders(),
    "order_status": lambda p: p.order_status("z"),
    "open_orders": lambda p: p.open_orders(),
}


@pytest.mark.parametrize("call", CALLS)
async def test_closed_port_refuses_every_call(port_factory: PortFactory, call: str) -> None:
    port = port_factory()
    assert port.state is PortState.IDLE
    with pytest.raises(PortClosedError):
        await CALLS[call](port)  # not opened yet
    async with port:
        assert port.state is PortState.CONNECTED
    assert port.state is PortState.CLOSED
    with pytest.raises(PortClosedError) as caught:
        await CALLS[call](port)
    assert (caught.value.reason, caught.value.retryable) == (ErrorReason.PORT_CLOSED, False)
    with pytest.raises(PortClosedError):
        port.updates()
    with pytest.raises(PortClosedError):
        await port.open()
    await port.close()  # idempotent


async def test_state_changes_follow_the_lifecycle_and_end_after_closed(
    port_factory: PortFactory,
) -> None:
    port = port_factory()
    with pytest.raises(PortClosedError):
        port.state_changes()  # not open yet
    await port.open()
    changes = port.state_changes()
    waiting = port.state_changes()
    await port.submit_order(limit("o1"))  # ordinary work changes no state
    assert port.state is PortState.CONNECTED
    next_change = asyncio.ensure_future(anext(aiter(waiting)))
    await port.close()
    assert await asyncio.wait_for(next_change, WAIT) is PortState.CLOSED  # woken by the close
    assert [state async for state in waiting] == []  # and it has ended
    assert [state async for state in changes] == [PortState.CLOSED]
    with pytest.raises(PortClosedError):
        port.state_changes()


async def test_closing_ends_streams_after_what_they_hold(port_factory: PortFactory) -> None:
    async with port_factory() as port:
        updates = port.updates()
        handle = await port.submit_order_nowait(limit("o1", "IMM", 10, "100.00"))
        await take(handle.events, 2)  # both events have arrived; nobody read `updates` yet
    assert [e.exec_type async for e in updates] == [ExecType.ACCEPTED, ExecType.TRADE]
    assert [e async for e in handle.events] == []  # read already, and now ended
    with pytest.raises(EOFError):
        await updates.get(timeout=1)


async def test_unanswered_requests_fail_when_the_port_closes(
    port_factory: PortFactory, venue: VenueControl
) -> None:
    from mock_venue.faults import DelayAcks

    port = port_factory()
    await port.open()
    await venue.inject(DelayAcks(delay=5.0))
    handle = await port.submit_order_nowait(limit("o1"))
    await port.close()
    with pytest.raises(PortClosedError) as caught:
        await handle.acknowledged(timeout=5)
    assert caught.value.outcome.value == "unknown"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"quantity": 0}, "greater than 0"),
        ({"quantity": -5}, "greater than 0"),
        ({"limit_price": None}, "needs a limit_price"),
        ({"order_type": OrderType.MARKET}, "takes no limit_price"),
        ({"time_in_force": TimeInForce.IOC, "expire_at": "2026-01-05T10:00:00Z"}, "expire_at"),
        ({"expire_at": datetime(2026, 1, 5, 10)}, "timezone"),  # noqa: DTZ001 - naive on purpose
        ({"client_order_id": ""}, "at least 1 character"),
        ({"side": "sideways"}, "'buy' or 'sell'"),
        ({"limit_price": Decimal("NaN")}, "finite number"),
        ({"limit_price": "NaN"}, "ASCII digits"),
        ({"limit_price": "1_0"}, "ASCII digits"),
        ({"quantity": "1"}, None),  # a decimal's text is fine in Python too
        ({"strategy_id": b"s1"}, "valid string"),
        ({"side": b"buy"}, "'buy' or 'sell'"),
        ({"quantity": 1.5}, "a float is not exact"),
        ({"surprise": 1}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_orders_fail_at_construction(fields: dict[str, Any], message: str | None) -> None:
    base: dict[str, Any] = {
        "client_order_id": "o1",
        "strategy_id": "s1",
        "instrument": "IMM",
        "side": Side.BUY,
        "quantity": Decimal(1),
        "order_type": OrderType.LIMIT,
        "limit_price": Decimal(1),
    }
    if message is None:
        SubmitOrder(**(base | fields))
        return
    with pytest.raises(ValidationError, match=message):
        SubmitOrder(**(base | fields))


def test_amend_must_change_something() -> None:
    with pytest.raises(ValidationError, match="needs a new quantity"):
        AmendOrder(client_order_id="o1", strategy_id="s1")


async def test_market_order_in_a_manual_book_waits_for_its_fill(
    port: OrderExecutionPort, venue: VenueControl
) -> None:
    await port.submit_order(market("m", "MAN", 20))
    assert (await port.order_status("m")).status is OrderStatus.NEW
    await venue.fill("s1", "m", price=Decimal("10.05"))
    assert (await port.order_status("m")).avg_px == Decimal("10.05")
