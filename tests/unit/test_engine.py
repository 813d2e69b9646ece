"""The venue engine and the in-process venue, beyond the port contract."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from mock_venue.clock import ManualClock, WallClock
from mock_venue.config import InstrumentConfig, PricePathFill, SlicedFill, VenueConfig
from mock_venue.engine import Output, Publish, VenueControlError, VenueEngine
from mock_venue.port import MockVenue
from ports import (
    CancelOrder,
    ErrorReason,
    ExecType,
    ListOpenOrders,
    OpenOrders,
    OrderStatus,
    OrderType,
    Side,
    SubmitOrder,
)
from ports.errors import ConnectivityError
from ports.models import Acknowledgement, ExecutionReport, paged_open_orders

CONFIG = VenueConfig(
    instruments=(
        InstrumentConfig(symbol="A", reference_price=Decimal(100), fill_model=PricePathFill()),
        InstrumentConfig(symbol="B", reference_price=Decimal(50), fill_model=PricePathFill()),
        InstrumentConfig(symbol="S", reference_price=Decimal(10), fill_model=SlicedFill()),
    )
)


def order(n: int, instrument: str = "A", price: str = "99.90") -> SubmitOrder:
    return SubmitOrder(
        client_order_id=f"o{n}",
        strategy_id="s",
        instrument=instrument,
        side=Side.BUY if n % 2 else Side.SELL,
        quantity=Decimal(5),
        order_type=OrderType.LIMIT,
        limit_price=Decimal(price),
    )


def run(seed: int) -> list[Output]:
    clock = ManualClock()
    engine = VenueEngine(CONFIG, clock=clock, rng=random.Random(seed))
    outputs: list[Output] = []
    for n in range(40):
        outputs += engine.handle(order(n, "AB"[n % 2], "99.90" if n % 2 else "50.10"), n)
        clock.advance(0.7)
        outputs += engine.advance()
    return outputs


def test_same_seed_same_events_other_seed_other_path() -> None:
    first, again, other = run(1), run(1), run(2)
    assert first == again
    trades = [o for o in first if isinstance(o, Publish) and o.report.exec_type is ExecType.TRADE]
    assert trades, "the price walk should cross some limits in 28 s"
    assert first != other


def test_price_paths_are_independent_per_instrument() -> None:
    # Adding an instrument must not change the walk of the others.
    more = CONFIG.model_copy(
        update={
            "instruments": (
                *CONFIG.instruments,
                InstrumentConfig(
                    symbol="C", reference_price=Decimal(1), fill_model=PricePathFill()
                ),
            )
        }
    )
    prices = []
    for config in (CONFIG, more):
        clock = ManualClock()
        engine = VenueEngine(config, clock=clock, rng=random.Random(3))
        clock.advance(30)
        engine.advance()
        prices.append((engine.reference_price("A"), engine.reference_price("B")))
    assert prices[0] == prices[1]


def test_control_commands_refuse_what_does_not_fit() -> None:
    clock = ManualClock()
    engine = VenueEngine(CONFIG, clock=clock, rng=random.Random(0))
    with pytest.raises(VenueControlError, match="no order"):
        engine.fill("s", "nope")
    engine.handle(order(1, "S", "10.00"), "t")
    with pytest.raises(VenueControlError, match="fill quantity"):
        engine.fill("s", "o1", Decimal(6))
    with pytest.raises(VenueControlError, match="reduces"):
        engine.restate("s", "o1", Decimal(9))
    engine.fill("s", "o1")
    with pytest.raises(VenueControlError, match="filled"):
        engine.cancel_unsolicited("s", "o1")


@pytest.mark.parametrize(
    "price", [Decimal("50.0000000000001"), Decimal("2e12"), Decimal("Infinity"), Decimal(0), "x"]
)
def test_a_scripted_fill_at_a_price_no_report_can_carry_is_refused_before_anything_changes(
    price: object,
) -> None:
    # The engine builds its reports without validating them: what a control command brings in
    # is checked on the way in (over the wire, the control message's model does it too).
    engine = VenueEngine(CONFIG, clock=ManualClock(), rng=random.Random(0))
    engine.handle(order(1, "S", "10.00"), "t")
    before = engine.order("s", "o1")
    with pytest.raises(VenueControlError, match="fill price"):
        engine.fill("s", "o1", Decimal(1), price)  # type: ignore[arg-type]
    with pytest.raises(VenueControlError, match="fill"):
        engine.fill("s", "o1", Decimal("0.0000000000001"))
    with pytest.raises(VenueControlError, match="restatement quantity"):
        engine.restate("s", "o1", Decimal("-1"))
    assert engine.order("s", "o1") == before
    # A float is taken as the decimal it reads as, not its binary expansion.
    as_float: Any = 10.1
    (trade,) = [
        o.report for o in engine.fill("s", "o1", Decimal(1), as_float) if isinstance(o, Publish)
    ]
    assert trade.last_px == Decimal("10.1")
    ExecutionReport.model_validate(trade.model_dump())


def test_a_price_path_never_walks_above_the_largest_price_a_report_can_carry() -> None:
    top = Decimal("1e12")
    config = VenueConfig(
        instruments=(
            InstrumentConfig(
                symbol="TOP",
                reference_price=top,
                tick_size=Decimal(1),
                fill_model=PricePathFill(step_interval=1, max_ticks_per_step=5),
            ),
        )
    )
    clock = ManualClock()
    engine = VenueEngine(config, clock=clock, rng=random.Random(3))
    outputs: list[Output] = []
    for n in range(200):
        clock.advance(1)
        outputs += engine.advance()
        market = SubmitOrder(
            client_order_id=f"m{n}",
            strategy_id="s",
            instrument="TOP",
            side=Side.BUY,
            quantity=Decimal(1),
            order_type=OrderType.MARKET,
        )
        outputs += engine.handle(market, n)
        assert engine.reference_price("TOP") <= top
    trades = [o.report for o in outputs if isinstance(o, Publish) and o.report.last_px]
    assert trades
    assert max(t.last_px for t in trades if t.last_px) == top  # it did reach the top
    for report in trades:
        ExecutionReport.model_validate(report.model_dump())


def test_a_model_built_without_validation_has_the_state_of_a_validated_one() -> None:
    # The engine sets a model's instance state itself (see mock_venue.outputs.built): a pydantic
    # release that lays models out otherwise must fail here, not on the wire.
    engine = VenueEngine(CONFIG, clock=ManualClock(), rng=random.Random(0))
    outputs = engine.handle(order(1, "S", "10.00"), "t")
    built: list[BaseModel] = [o.report if isinstance(o, Publish) else o.result for o in outputs]
    assert {type(m) for m in built} == {ExecutionReport, Acknowledgement}
    for model in [*built, engine.order("s", "o1")]:
        assert model is not None
        validated = type(model).model_validate(model.model_dump())
        assert model.__getstate__() == validated.__getstate__()


def test_config_is_validated() -> None:
    with pytest.raises(ValidationError, match="unique"):
        VenueConfig(instruments=(CONFIG.instruments[0], CONFIG.instruments[0]))
    with pytest.raises(ValidationError):
        InstrumentConfig(symbol="X", reference_price=Decimal(0))
    with pytest.raises(ValidationError):
        SlicedFill(slices=0)


def test_manual_clock_only_moves_forward() -> None:
    clock = ManualClock()
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)


def test_an_engine_refuses_a_clock_without_a_timezone() -> None:
    class NaiveClock:
        def now(self) -> datetime:
            return datetime(2026, 1, 5, 9, 0)  # noqa: DTZ001 (naive on purpose)

    with pytest.raises(ValueError, match="timezone-aware"):
        VenueEngine(CONFIG, clock=NaiveClock(), rng=random.Random(0))


async def test_wall_clock_venue_runs_its_timers_by_itself() -> None:
    config = VenueConfig(
        instruments=(
            InstrumentConfig(
                symbol="S",
                reference_price=Decimal(10),
                fill_model=SlicedFill(slices=3, interval=0.02),
            ),
        )
    )
    venue = MockVenue(config, clock=WallClock())
    try:
        async with venue.port("s") as port:
            updates = port.updates()
            await port.submit_order(order(1, "S", "10.00"))
            statuses = [(await updates.get(timeout=5)).status for _ in range(4)]
            assert statuses[-1] is OrderStatus.FILLED
            with pytest.raises(TypeError, match="ManualClock"):
                await venue.advance(1)
    finally:
        await venue.aclose()
    assert venue._timer_task is None
    assert not [t for t in asyncio.all_tasks() if "_run_timers" in repr(t)]


async def test_closing_a_port_while_it_opens_leaves_it_closed() -> None:
    from ports import PortClosedError, PortState

    venue = MockVenue(CONFIG)
    port = venue.port("s")
    opening = asyncio.ensure_future(port.open())
    await port.close()
    with pytest.raises(PortClosedError):
        await opening
    assert port.state is PortState.CLOSED
    with pytest.raises(PortClosedError):
        await port.open()


async def test_dropped_handles_leave_nothing_behind_in_the_port() -> None:
    import gc

    venue = MockVenue(CONFIG)
    async with venue.port("s") as port:
        for n in range(50):
            await port.submit_order_nowait(order(n, "S", "10.00"))  # handle dropped at once
        gc.collect()
        assert port._subscribers.of("o1") == []
        assert port._subscribers._by_order == {}


def test_closing_one_stream_leaves_every_other_subscription_alone() -> None:
    from ports.streams import Subscribers

    class Stream:
        def __init__(self, client_order_id: str | None) -> None:
            self.client_order_id = client_order_id
            self.port_events = False

    subscribers: Subscribers[Stream] = Subscribers()
    every, a1, a2, b = Stream(None), Stream("a"), Stream("a"), Stream("b")
    for stream in (every, a1, a2, b):
        subscribers.add(stream)
    subscribers.discard(a1)
    assert set(subscribers.of("a")) == {every, a2}
    subscribers.discard(every)
    assert subscribers.of("a") == [a2]
    assert subscribers.of("b") == [b]
    subscribers.discard(a2)
    subscribers.discard(a2)  # twice is harmless
    assert subscribers.of("a") == []
    assert "a" not in subscribers._by_order
    assert subscribers.of("b") == [b]


def test_a_stream_nobody_holds_stops_receiving_and_leaves_no_entry() -> None:
    import gc

    from ports.streams import Subscribers

    class Stream:
        def __init__(self, client_order_id: str | None, port_events: bool = False) -> None:
            self.client_order_id = client_order_id
            self.port_events = port_events

    subscribers: Subscribers[Stream] = Subscribers()
    kept, watcher = Stream("a"), Stream(None, port_events=True)
    subscribers.add(kept)
    subscribers.add(watcher)
    subscribers.add(Stream("a"))  # dropped at once
    subscribers.add(Stream("b"))
    subscribers.add(Stream(None))
    gc.collect()
    assert set(subscribers.of("a")) == {kept, watcher}
    assert subscribers.of("b") == [watcher]
    assert "b" not in subscribers._by_order
    assert subscribers.port_events() == [watcher]
    # A stream discarded, then collected, does not take a newer entry with it.
    subscribers.discard(kept)
    del kept
    gc.collect()
    assert subscribers.of("a") == [watcher]
    assert set(subscribers.take_all()) == {watcher}
    assert subscribers.of("a") == []


def test_a_collection_while_reports_fan_out_does_not_break_the_fan_out() -> None:
    """A stream freed by the cyclic collector while ``of``, ``port_events`` or ``take_all`` runs
    must not break them (its callback deletes an entry): forced at every allocation count."""
    import gc

    from ports.streams import Subscribers

    class Stream:
        def __init__(self, client_order_id: str | None) -> None:
            self.client_order_id = client_order_id
            self.port_events = True
            self.cycle = self  # only the cyclic collector frees it

    threshold = gc.get_threshold()
    for size in (2, 16):
        for pad in range(80):
            subscribers: Subscribers[Stream] = Subscribers()
            live = [Stream(None) for _ in range(size)] + [Stream("o1")]
            for stream in live:
                subscribers.add(stream)
            gc.collect(0)  # a young collection resets the count: the same schedule, cheaply
            gc.disable()
            gc.set_threshold(60)
            try:
                padding: list[list[int]] = [[] for _ in range(pad)]  # moves where it collects
                for garbage in (Stream(None), Stream("o1")):
                    subscribers.add(garbage)
                del garbage, padding
                gc.enable()
                # (The garbage may or may not have been collected yet: the live ones are there.)
                assert set(live[:size]) <= set(subscribers.of("nobody"))
                assert set(live) <= set(subscribers.of("o1"))
                assert set(live[:size]) <= set(subscribers.port_events())
                assert set(live) <= set(subscribers.take_all())
            finally:
                gc.enable()
                gc.set_threshold(*threshold)


async def test_waiting_for_a_reply_times_out_with_the_typed_error() -> None:
    from ports import AckTimeoutError
    from ports.streams import wait_reply

    loop = asyncio.get_running_loop()
    reply: asyncio.Future[int] = loop.create_future()
    with pytest.raises(AckTimeoutError) as caught:
        await wait_reply(reply, 0.01, "o1")
    assert caught.value.client_order_id == "o1"
    assert not reply.cancelled()  # a late answer still lands: another wait succeeds
    loop.call_soon(reply.set_result, 7)
    assert await wait_reply(reply, 1, "o1") == 7
    failed: asyncio.Future[int] = loop.create_future()
    loop.call_soon(failed.set_exception, TimeoutError("the reply itself"))
    with pytest.raises(TimeoutError, match="the reply itself"):
        await wait_reply(failed, 1, "o2")


async def test_a_timed_out_call_leaves_nothing_pending_and_a_reset_does_not_revive_it() -> None:
    from mock_venue.faults import DropReplies
    from ports import AckTimeoutError, PortEvent, PortEventKind

    venue = MockVenue(CONFIG)
    async with venue.port("s") as port:
        events = port.updates(port_events=True)
        await venue.inject(DropReplies(count=1))
        with pytest.raises(AckTimeoutError):
            await port.submit_order(order(1), timeout=0.05)
        assert port._calls == {}
        kinds = []
        while port.in_doubt():  # the port settles it by itself
            update = await events.get(timeout=5)
            if isinstance(update, PortEvent):
                kinds.append(update.kind)
        while not kinds or kinds[-1] is not PortEventKind.ORDER_SETTLED:
            update = await events.get(timeout=5)
            if isinstance(update, PortEvent):
                kinds.append(update.kind)
        port._venue_reset("the venue was replaced", port._now())
        assert port.in_doubt() == frozenset()  # a settled order is not put back in doubt
        assert kinds == [PortEventKind.ORDER_IN_DOUBT, PortEventKind.ORDER_SETTLED]


def _pages(engine: VenueEngine, instrument: str | None = None) -> list[list[str]]:
    pages: list[list[str]] = []
    after: int | None = 0
    while after is not None:
        page = engine.read(ListOpenOrders(strategy_id="s", instrument=instrument, after=after))
        assert isinstance(page, OpenOrders)
        pages.append([o.client_order_id for o in page.orders])
        after = page.next_after
    return pages


def test_open_orders_come_a_page_at_a_time_and_an_order_closed_between_pages_skips_none() -> None:
    # One answer with 100k open orders once took 1.3 s of the venue's thread (issue 12, 3).
    engine = VenueEngine(
        CONFIG.model_copy(update={"open_orders_page": 3}), clock=ManualClock(), rng=random.Random(0)
    )
    ids = [f"o{n}" for n in range(1, 17, 2)]  # 8 resting buys, alternately on A and B
    for n in range(1, 17, 2):
        engine.handle(order(n, "A" if n % 4 == 1 else "B", "1.00"), n)
    assert _pages(engine) == [ids[0:3], ids[3:6], ids[6:8]]
    first = engine.read(ListOpenOrders(strategy_id="s"))
    assert isinstance(first, OpenOrders)
    engine.handle(CancelOrder(client_order_id="o1", strategy_id="s"), "c1")  # on the page read
    engine.handle(CancelOrder(client_order_id="o9", strategy_id="s"), "c2")  # on a later one
    rest: list[str] = []
    after = first.next_after
    while after is not None:
        page = engine.read(ListOpenOrders(strategy_id="s", after=after))
        assert isinstance(page, OpenOrders)
        rest += [o.client_order_id for o in page.orders]
        after = page.next_after
    assert rest == [i for i in ids[3:] if i != "o9"]  # none skipped, none twice
    # One instrument: a page looks at 3 of the strategy's orders, so it may hold fewer.
    assert [i for page in _pages(engine, "B") for i in page] == ["o3", "o7", "o11", "o15"]
    assert engine.read(ListOpenOrders(strategy_id="other")) == OpenOrders(
        strategy_id="other", orders=()
    )


def test_a_cursor_that_does_not_move_on_is_refused_not_followed_for_ever() -> None:
    pages = paged_open_orders("s", None)
    assert next(pages).after == 0
    assert pages.send(OpenOrders(strategy_id="s", orders=(), next_after=5)).after == 5
    with pytest.raises(ConnectivityError, match="does not follow") as refused:
        pages.send(OpenOrders(strategy_id="s", orders=(), next_after=5))
    assert refused.value.reason is ErrorReason.PROTOCOL_ERROR
