"""Fill models and matching: when an accepted order trades, how much and at what price, the IOC
and FOK kill, the seeded reference price paths, and the fill faults (DelayFills, and the
FillBeforeChange race). See mock_venue/config.py for what each fill model promises."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from decimal import Decimal
from typing import Final

from mock_venue.config import (
    ImmediateFill,
    InstrumentConfig,
    PricePathFill,
    SlicedFill,
)
from mock_venue.fault_book import FaultBook
from mock_venue.faults import DelayFills, FillBeforeChange
from mock_venue.orders import Order, OrderBook
from mock_venue.resting import RestingLimits
from mock_venue.timers import Timers
from ports.enums import CancelReason, Side, TimeInForce
from ports.models import MAX_AMOUNT, AmendOrder, CancelOrder

_KILL_REASON: Final = {
    TimeInForce.IOC: CancelReason.IOC_UNFILLED,
    TimeInForce.FOK: CancelReason.FOK_UNFILLED,
}


def price_path_rngs(
    instruments: Mapping[str, InstrumentConfig], rng: random.Random
) -> dict[str, random.Random]:
    """One RNG per price path, drawn from ``rng`` in a fixed order, so that instruments do not
    perturb each other."""
    return {
        symbol: random.Random(rng.getrandbits(64))
        for symbol, instrument in sorted(instruments.items())
        if isinstance(instrument.fill_model, PricePathFill)
    }


class Matcher:
    """Trades accepted orders by their instrument's fill model, and walks the price paths."""

    def __init__(
        self,
        instruments: Mapping[str, InstrumentConfig],
        price_rngs: Mapping[str, random.Random],
        *,
        book: OrderBook,
        timers: Timers,
        faults: FaultBook,
    ) -> None:
        self._instruments = instruments
        self._book = book
        self._timers = timers
        self._faults = faults
        self._prices = {s: i.reference_price for s, i in instruments.items()}
        self._resting = {symbol: RestingLimits() for symbol in price_rngs}
        for symbol, rng in price_rngs.items():
            model = instruments[symbol].fill_model
            assert isinstance(model, PricePathFill)
            self._timers.after(model.step_interval, self._price_step(symbol, model, rng))

    def reference_price(self, symbol: str) -> Decimal:
        return self._prices[symbol]

    def natural_price(self, order: Order) -> Decimal:
        """Its limit price, else the reference price."""
        return (
            order.limit_price
            if order.limit_price is not None
            else self._prices[order.instrument.symbol]
        )

    def start(self, order: Order) -> None:
        """A newly accepted order: trade it as its fill model says."""
        model = order.instrument.fill_model
        if order.terms.time_in_force in (TimeInForce.IOC, TimeInForce.FOK):
            self._after_fill_delay(order, lambda: self._execute_now_or_kill(order))
        elif isinstance(model, ImmediateFill):
            self._fill_later(order, order.leaves_qty, self.natural_price(order))
        elif isinstance(model, SlicedFill):
            self._slice_at(order, model, 1)
        elif isinstance(model, PricePathFill):
            self._arrive(order)

    def amended(self, order: Order) -> None:
        """An amend may make a price-path order marketable, or rest it at another price."""
        if isinstance(order.instrument.fill_model, PricePathFill):
            self._arrive(order)

    def _arrive(self, order: Order) -> None:
        """A price-path order trades now if it can, else rests at its limit."""
        self._cross(order, resting=False)
        can_rest = order.working and order.leaves_qty > order.inflight_qty
        if order.limit_price is not None and can_rest:
            self._resting[order.instrument.symbol].add(order)

    def fill_before_change(self, order: Order, request: AmendOrder | CancelOrder) -> None:
        """A FillBeforeChange fault: the fill that lands just before the change does."""
        race = self._faults.fire(
            FillBeforeChange, request.strategy_id, order.instrument.symbol, request.client_order_id
        )
        if race is None:
            return
        available = order.leaves_qty - order.inflight_qty
        qty = available if race.quantity is None else min(race.quantity, available)
        if qty > 0:
            self._book.fill(order, qty, self.natural_price(order))

    def _marketable_price(self, order: Order) -> Decimal | None:
        """The price an order trades at right now on a price path, or None if it cannot."""
        ref = self._prices[order.instrument.symbol]
        if order.limit_price is None:
            return ref
        if order.terms.side is Side.BUY:
            return ref if ref <= order.limit_price else None
        return ref if ref >= order.limit_price else None

    def _execute_now_or_kill(self, order: Order) -> None:
        """IOC / FOK: trade what the fill model offers at once, cancel the rest."""
        if not order.working:
            return
        model, tif = order.instrument.fill_model, order.terms.time_in_force
        qty, px = Decimal(0), self.natural_price(order)
        if isinstance(model, ImmediateFill):
            qty = order.leaves_qty
        elif isinstance(model, SlicedFill):
            qty = self._slice_qty(order, model)
        elif isinstance(model, PricePathFill):
            price = self._marketable_price(order)
            if price is not None:
                qty, px = order.leaves_qty, price
        if tif is TimeInForce.FOK and qty < order.leaves_qty:
            qty = Decimal(0)
        if qty > 0:
            self._book.fill(order, qty, px)
        if order.working:
            self._book.end(order, _KILL_REASON[tif])

    def _slice_qty(self, order: Order, model: SlicedFill) -> Decimal:
        remaining_slices = model.slices - order.slices_done
        leaves = order.leaves_qty - order.inflight_qty
        if remaining_slices <= 1:
            return leaves
        lot = order.instrument.lot_size
        return min(leaves, max(lot, (leaves / remaining_slices // lot) * lot))

    def _slice_at(self, order: Order, model: SlicedFill, k: int) -> None:
        """Slice ``k`` at ``k`` intervals from acceptance: one timer at a time per order, each
        setting the next, instead of every slice's up front."""
        assert order.accepted_at is not None
        when = order.accepted_at + timedelta(seconds=model.interval * k)
        self._timers.at(when, lambda: self._fill_slice(order, model, k))

    def _fill_slice(self, order: Order, model: SlicedFill, k: int) -> None:
        if not order.working:
            return
        qty = self._slice_qty(order, model)
        order.slices_done += 1
        if k < model.slices:
            self._slice_at(order, model, k + 1)
        if qty > 0:
            self._fill_later(order, qty, self.natural_price(order))

    def _cross(self, order: Order, *, resting: bool) -> None:
        """Fill a price-path order if the reference price allows: at the reference price when it
        arrives (or is amended) marketable, at its limit when a resting limit is crossed."""
        price = self._marketable_price(order)
        if price is None or not order.working:
            return
        if resting and order.limit_price is not None:
            price = order.limit_price
        self._fill_later(order, order.leaves_qty, price)

    def _price_step(
        self, symbol: str, model: PricePathFill, rng: random.Random
    ) -> Callable[[], None]:
        tick = self._instruments[symbol].tick_size
        top = MAX_AMOUNT // tick * tick  # a price the reports can carry

        def step() -> None:
            move = rng.randint(-model.max_ticks_per_step, model.max_ticks_per_step)
            self._prices[symbol] = min(max(tick, self._prices[symbol] + move * tick), top)
            self._timers.spread(self._crossed(symbol))
            self._timers.after(model.step_interval, step)

        return step

    def _crossed(self, symbol: str) -> Iterator[None]:
        """The resting orders the price crosses, best first, one at a time (there may be
        many)."""
        resting = self._resting[symbol]
        while (order := resting.pop_crossing(self._prices[symbol])) is not None:
            self._cross(order, resting=True)
            yield

    def _after_fill_delay(self, order: Order, action: Callable[[], None]) -> None:
        terms = order.terms
        delay = self._faults.fire(
            DelayFills, terms.strategy_id, order.instrument.symbol, terms.client_order_id
        )
        if delay is None:
            action()
        else:
            self._timers.after(delay.delay, action)

    def _fill_later(self, order: Order, qty: Decimal, px: Decimal) -> None:
        """Fill now, or after a DelayFills fault's delay if the order still works then."""
        qty = min(qty, order.leaves_qty - order.inflight_qty)
        if qty <= 0:
            return
        order.inflight_qty += qty

        def fill() -> None:
            order.inflight_qty -= qty
            if order.working:
                self._book.fill(order, min(qty, order.leaves_qty), px)

        self._after_fill_delay(order, fill)
