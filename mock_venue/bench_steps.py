"""How long the venue's loop is held by one engine call when a piece of work concerns many orders
at once: ``python -m mock_venue.bench_steps [ORDERS]``. Each line is the longest single call (a
request, or one bounded ``advance`` step of a served venue, ``STEP_TIMERS`` timers) and how many
calls the work took; see docs/benchmarks.md#bounded-steps."""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

from mock_venue.backend import STEP_TIMERS
from mock_venue.clock import ManualClock
from mock_venue.config import InstrumentConfig, PricePathFill, SlicedFill, VenueConfig
from mock_venue.engine import VenueEngine
from ports import CancelAllOrders, CancelOrder, OrderType, Side, SubmitOrder, TimeInForce

_RESTING = InstrumentConfig(
    symbol="R", reference_price=Decimal(10), fill_model=SlicedFill(slices=2, interval=86_400)
)
_PATH = InstrumentConfig(
    symbol="P", reference_price=Decimal(100), fill_model=PricePathFill(step_interval=0.1)
)


def _venue(
    instrument: InstrumentConfig, orders: int, **terms: Any
) -> tuple[VenueEngine, ManualClock]:
    clock = ManualClock()
    config = VenueConfig(instruments=(instrument,))
    engine = VenueEngine(config, clock=clock, rng=random.Random(1), step_timers=STEP_TIMERS)
    for n in range(orders):
        fields: dict[str, Any] = {
            "client_order_id": f"o{n}",
            "strategy_id": "s",
            "instrument": instrument.symbol,
            "side": Side.BUY,
            "quantity": Decimal(1),
            "order_type": OrderType.LIMIT,
            "limit_price": Decimal(10),
            "time_in_force": TimeInForce.GTC,
        }
        engine.handle(SubmitOrder.model_validate({**fields, **terms}), n)
    return engine, clock


def _longest(
    engine: VenueEngine, clock: ManualClock, first: Callable[[], object] | None = None
) -> str:
    """Run ``first``, then every bounded step due: the longest call and how many there were."""
    took: list[float] = []
    if first is not None:
        start = time.perf_counter()
        first()
        took.append(time.perf_counter() - start)
    while (due := engine.next_timer_at()) is not None and due <= clock.now():
        start = time.perf_counter()
        engine.advance()
        took.append(time.perf_counter() - start)
    return f"longest call {max(took) * 1e3:.1f} ms, {len(took)} calls"


def run(orders: int) -> list[str]:
    """One line per piece of work, over ``orders`` resting orders of one strategy."""
    lines = []
    engine, clock = _venue(
        _RESTING, orders // 5, expire_at=ManualClock().now() + timedelta(minutes=1)
    )
    clock.advance(61)
    lines.append(f"{orders // 5} orders expiring at one instant: {_longest(engine, clock)}")
    engine, clock = _venue(_RESTING, orders, time_in_force=TimeInForce.DAY)
    clock.advance(timedelta(hours=13))
    lines.append(f"end of day, {orders} DAY orders: {_longest(engine, clock)}")
    engine, clock = _venue(_RESTING, orders)
    cancel_all = CancelAllOrders(strategy_id="s")
    lines.append(
        f"cancel-all of {orders}: {_longest(engine, clock, lambda: engine.handle(cancel_all, 0))}"
    )
    engine, clock = _venue(_RESTING, orders)
    start = time.perf_counter()
    for n in range(orders):
        engine.handle(CancelOrder(client_order_id=f"o{n}", strategy_id="s"), n)
    lines.append(f"{orders} cancels one by one: {time.perf_counter() - start:.2f} s")
    engine, clock = _venue(_PATH, orders, limit_price=Decimal(50))
    clock.advance(10)
    lines.append(f"100 price steps, {orders} bids far below: {_longest(engine, clock)}")
    return lines


def main(argv: list[str]) -> None:
    for line in run(int(argv[0]) if argv else 100_000):
        sys.stdout.write(line + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
