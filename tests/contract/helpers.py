"""Small builders and waits for contract tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

from ports import (
    ExecType,
    ExecutionReport,
    OrderSnapshot,
    OrderStatus,
    OrderType,
    PortEvent,
    PortEventKind,
    Side,
    SubmitOrder,
    TimeInForce,
    UpdateStream,
)

STRATEGY = "s1"
WAIT = 5.0  # seconds: the deadline for something that should happen at once


def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Block until ``condition()`` holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.01)


def limit(
    client_order_id: str,
    instrument: str = "MAN",
    quantity: int | str = 100,
    price: str = "10.00",
    side: Side = Side.BUY,
    tif: TimeInForce = TimeInForce.DAY,
    strategy_id: str = STRATEGY,
) -> SubmitOrder:
    return SubmitOrder(
        client_order_id=client_order_id,
        strategy_id=strategy_id,
        instrument=instrument,
        side=side,
        quantity=Decimal(quantity),
        order_type=OrderType.LIMIT,
        limit_price=Decimal(price),
        time_in_force=tif,
    )


def market(
    client_order_id: str,
    instrument: str = "IMM",
    quantity: int | str = 100,
    side: Side = Side.BUY,
    tif: TimeInForce = TimeInForce.DAY,
    strategy_id: str = STRATEGY,
) -> SubmitOrder:
    return SubmitOrder(
        client_order_id=client_order_id,
        strategy_id=strategy_id,
        instrument=instrument,
        side=side,
        quantity=Decimal(quantity),
        order_type=OrderType.MARKET,
        time_in_force=tif,
    )


async def take(stream: UpdateStream, count: int) -> list[ExecutionReport]:
    """The next ``count`` reports, each within the deadline."""
    return [await stream.get(timeout=WAIT) for _ in range(count)]


async def until(stream: UpdateStream, exec_type: ExecType) -> list[ExecutionReport]:
    """Reports up to and including the first of ``exec_type``."""
    seen: list[ExecutionReport] = []
    while not seen or seen[-1].exec_type is not exec_type:
        seen.append(await stream.get(timeout=WAIT))
    return seen


def kinds(reports: list[ExecutionReport]) -> list[tuple[ExecType, str]]:
    """(exec type, status) pairs: the shape of a lifecycle, easy to compare."""
    return [(r.exec_type, r.status.value) for r in reports]


def snapshot(client_order_id: str = "o1", status: OrderStatus = OrderStatus.NEW) -> OrderSnapshot:
    """An order of ``STRATEGY`` as a venue would show it: a DAY limit buy of 100 MAN at 10."""
    at = datetime(2026, 1, 5, 9, tzinfo=UTC)
    return OrderSnapshot(
        strategy_id=STRATEGY,
        client_order_id=client_order_id,
        venue_order_id="MOCK-1",
        instrument="MAN",
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        time_in_force=TimeInForce.DAY,
        quantity=Decimal(100),
        limit_price=Decimal(10),
        expire_at=None,
        status=status,
        cum_qty=Decimal(0),
        leaves_qty=Decimal(100),
        avg_px=None,
        last_seq=1,
        created_at=at,
        updated_at=at,
    )


async def until_port_events(
    stream: UpdateStream[ExecutionReport | PortEvent], *kinds: PortEventKind, wait: float = WAIT
) -> list[ExecutionReport | PortEvent]:
    """Updates of a ``port_events=True`` stream up to the moment each of ``kinds`` has been
    seen (each within ``wait`` seconds)."""
    seen: list[ExecutionReport | PortEvent] = []
    while not set(kinds) <= {u.kind for u in seen if isinstance(u, PortEvent)}:
        seen.append(await stream.get(timeout=wait))
    return seen
