"""Bounded engine steps: no single call does unbounded work, however many orders one timer, one
price step or one request concerns (issue 12, section 3), and the order book's indexes give the
same answers as a plain scan."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import cast

import pytest

from mock_venue import bench_steps
from mock_venue.clock import ManualClock
from mock_venue.config import InstrumentConfig, PricePathFill, SlicedFill, VenueConfig
from mock_venue.engine import Output, Publish, Respond, VenueEngine
from mock_venue.open_index import OpenIndex
from mock_venue.orders import Order
from ports import (
    AmendOrder,
    CancelAllOrders,
    CancelOrder,
    ExecType,
    OrderStatus,
    OrderType,
    Side,
    SubmitOrder,
    TimeInForce,
)
from ports.models import CancelAllAcknowledgement, ExecutionReport

STEP = 8
# Rests until told otherwise: the first of two slices comes a day after acceptance.
RESTING = InstrumentConfig(
    symbol="R", reference_price=Decimal(10), fill_model=SlicedFill(slices=2, interval=86_400)
)
PRICE_PATH = InstrumentConfig(symbol="P", reference_price=Decimal(100), fill_model=PricePathFill())


def engine(
    step_timers: int | None = STEP, instrument: InstrumentConfig = RESTING
) -> tuple[VenueEngine, ManualClock]:
    clock, config = ManualClock(), VenueConfig(instruments=(instrument,))
    return VenueEngine(config, clock=clock, rng=random.Random(7), step_timers=step_timers), clock


def submit(n: int, **terms: object) -> SubmitOrder:
    fields: dict[str, object] = {
        "client_order_id": f"o{n}",
        "strategy_id": "s",
        "instrument": "R",
        "side": Side.BUY,
        "quantity": Decimal(1),
        "order_type": OrderType.LIMIT,
        "limit_price": Decimal(10),
        "time_in_force": TimeInForce.GTC,
    }
    return SubmitOrder.model_validate({**fields, **terms})


def reports(outputs: list[Output], exec_type: ExecType) -> list[ExecutionReport]:
    return [o.report for o in outputs if isinstance(o, Publish) and o.report.exec_type is exec_type]


def due(venue: VenueEngine, clock: ManualClock) -> bool:
    at = venue.next_timer_at()
    return at is not None and at <= clock.now()


def drain(venue: VenueEngine, clock: ManualClock, exec_type: ExecType) -> list[int]:
    """``advance`` until nothing is due: how many ``exec_type`` reports each call gave."""
    counts = []
    while due(venue, clock):
        counts.append(len(reports(venue.advance(), exec_type)))
    return counts


def test_timers_tied_at_one_instant_run_a_bounded_number_per_call() -> None:
    venue, clock = engine()
    expire_at = clock.now() + timedelta(seconds=60)
    for n in range(100):
        venue.handle(submit(n, expire_at=expire_at), n)
    clock.advance(61)
    first = reports(venue.advance(), ExecType.EXPIRED)
    assert len(first) == STEP
    # A request in the middle of the backlog does only its own work and a bounded share.
    answer = venue.handle(submit(500), 500)
    assert len(reports(answer, ExecType.EXPIRED)) <= 2 * STEP  # before its work, and after
    assert [o.token for o in answer if isinstance(o, Respond)] == [500]
    counts = drain(venue, clock, ExecType.EXPIRED)
    assert max(counts) <= STEP
    assert len(first) + sum(counts) + len(reports(answer, ExecType.EXPIRED)) == 100


def test_the_end_of_the_trading_day_expires_day_orders_in_bounded_steps() -> None:
    venue, clock = engine()
    for n in range(50):
        venue.handle(submit(n, time_in_force=TimeInForce.DAY), n)
    clock.advance(timedelta(days=1))
    counts = drain(venue, clock, ExecType.EXPIRED)
    assert max(counts) <= STEP
    assert sum(counts) == 50
    assert not venue.open_orders("s").orders


@pytest.mark.parametrize("step_timers", [STEP, None])
def test_a_cancel_all_of_many_orders_is_spread_and_acknowledged_once_all_are_canceled(
    step_timers: int | None,
) -> None:
    venue, clock = engine(step_timers)
    for n in range(40):
        venue.handle(submit(n), n)
    calls = [venue.handle(CancelAllOrders(strategy_id="s"), "all")]
    if step_timers is None:
        assert len(reports(calls[0], ExecType.CANCELED)) == 40  # in process, the call does all
    calls.append(venue.handle(submit(99), 99))  # after the cancel-all: not covered by it
    while due(venue, clock):
        calls.append(venue.advance())
    everything = [o for call in calls for o in call]
    assert max(len(reports(call, ExecType.CANCELED)) for call in calls) <= 2 * (step_timers or 20)
    (ack,) = [o.result for o in everything if isinstance(o, Respond) and o.token == "all"]
    assert isinstance(ack, CancelAllAcknowledgement)
    assert ack.client_order_ids == tuple(f"o{n}" for n in range(40))
    assert len(reports(everything, ExecType.CANCELED)) == 40
    assert [o.client_order_id for o in venue.open_orders("s").orders] == ["o99"]


def test_an_order_canceled_while_a_cancel_all_is_spread_is_not_canceled_twice() -> None:
    venue, clock = engine(step_timers=2)
    for n in range(10):
        venue.handle(submit(n), n)
    venue.handle(CancelAllOrders(strategy_id="s"), "all")
    venue.handle(CancelOrder(client_order_id="o9", strategy_id="s"), "one")
    outputs = []
    while due(venue, clock):
        outputs += venue.advance()
    (ack,) = [o.result for o in outputs if isinstance(o, Respond) and o.token == "all"]
    assert isinstance(ack, CancelAllAcknowledgement)
    assert "o9" not in ack.client_order_ids
    assert len(ack.client_order_ids) == 9


def test_a_price_step_fills_only_the_orders_it_crosses_best_price_first() -> None:
    """Against a plain scan of every working order after each step: nothing the reference price
    crosses is left resting, every resting fill is at the order's current limit, and amended or
    canceled orders are never filled at a price they no longer have."""
    venue, clock = engine(None, PRICE_PATH)
    rng = random.Random(3)
    for n in range(400):
        side = rng.choice([Side.BUY, Side.SELL])
        offset = Decimal(rng.randint(1, 300)) / 100
        price = Decimal(100) - offset if side is Side.BUY else Decimal(100) + offset
        venue.handle(submit(n, instrument="P", side=side, limit_price=price), n)
    fills: list[ExecutionReport] = []
    for step in range(200):
        n = rng.randrange(400)
        order = venue.order("s", f"o{n}")
        if order is not None and order.status is OrderStatus.NEW and step % 3 == 0:
            assert order.limit_price is not None
            if step % 2:
                venue.handle(CancelOrder(client_order_id=f"o{n}", strategy_id="s"), step)
            else:
                moved = order.limit_price + (Decimal("-0.5") if order.side is Side.BUY else 1)
                venue.handle(
                    AmendOrder(client_order_id=f"o{n}", strategy_id="s", limit_price=moved), step
                )
        clock.advance(1)
        fills += reports(venue.advance(), ExecType.TRADE)
        ref = venue.reference_price("P")
        for resting in venue.open_orders("s").orders:
            assert resting.limit_price is not None
            crossed = (
                ref <= resting.limit_price
                if resting.side is Side.BUY
                else ref >= resting.limit_price
            )
            assert not crossed, (step, resting.client_order_id, ref)
    assert fills, "the walk crossed nothing: the test proves nothing"
    for fill in fills:
        assert fill.last_px == fill.limit_price  # a resting limit fills at its (current) limit


def test_one_price_step_crossing_many_orders_is_spread() -> None:
    venue, clock = engine(STEP, PRICE_PATH)
    for n in range(60):  # one tick below the reference price: the first step down crosses all
        venue.handle(submit(n, instrument="P", limit_price=Decimal("99.99")), n)
    assert len(venue.open_orders("s").orders) == 60
    counts: list[int] = []
    for _ in range(1000):
        clock.advance(1)
        while due(venue, clock):
            counts.append(len(reports(venue.advance(), ExecType.TRADE)))
        if not venue.open_orders("s").orders:
            break
    assert sum(counts) == 60
    assert max(counts) == STEP  # one step crossed them all, and did it a bounded share a call


def test_the_open_index_pages_as_a_plain_scan_does_whatever_closes() -> None:
    index, live = OpenIndex(), dict[int, Order]()  # live: the reference
    rng = random.Random(11)

    def fake(number: int) -> Order:
        terms = SimpleNamespace(strategy_id="s")
        instrument = SimpleNamespace(symbol=rng.choice("XY"))
        return cast(Order, SimpleNamespace(number=number, terms=terms, instrument=instrument))

    for number in range(1, 3001):
        if live and rng.random() < 0.45:
            gone = live.pop(rng.choice(list(live)))
            index.remove(gone)
        order = fake(number)
        live[number] = order
        index.add(order)
        if number % 97 == 0:
            for instrument in (None, "X"):
                after, seen = 0, []
                while True:
                    page, after_next = index.page("s", instrument, after, 50)
                    seen += [o.number for o in page]
                    if after_next is None:
                        break
                    assert after_next > after
                    after = after_next
                expected = [
                    n for n in sorted(live) if instrument in (None, live[n].instrument.symbol)
                ]
                assert seen == expected


def test_the_bounded_steps_benchmark_runs() -> None:
    lines = bench_steps.run(500)
    assert len(lines) == 5
    assert sum("longest call" in line for line in lines) == 4
