"""The venue engine: pure, deterministic order-matching logic. Requests in, outputs out.

No I/O, no threads, no global state. Time comes from an injected clock, randomness from an injected
``random.Random``; the same configuration, seed and sequence of (time, request) gives the same
outputs. Semantics follow docs/state-machine.md (FIX 4.4):

- a second amend or cancel while one is pending is rejected with REQUEST_PENDING;
- amends and cancels of an order whose submit is not yet acknowledged are rejected with
  REQUEST_PENDING (reply only: the order has not appeared on the stream yet);
- rejections that concern no order the venue has taken in (unknown order or instrument, duplicate
  client order id, throttled) are replies only; every other outcome is also published as an
  execution report on the strategy's stream.

``VenueEngine`` takes the requests in and coordinates the parts, one concern each:
``mock_venue.orders`` (order state and its transitions), ``mock_venue.matching`` (fill models,
price paths), ``mock_venue.fault_book`` (the faults in force, shared with the venue process),
``mock_venue.timers`` (timers and the trading day) and ``mock_venue.outputs`` (what is emitted).
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Iterator
from datetime import datetime
from decimal import Decimal

from mock_venue.clock import Clock
from mock_venue.config import VenueConfig
from mock_venue.control import VenueControlError, checked_amount
from mock_venue.fault_book import FaultBook
from mock_venue.faults import DelayAcks, DropReplies, RejectOrders
from mock_venue.matching import Matcher, price_path_rngs
from mock_venue.orders import (
    Order,
    OrderBook,
    PendingChange,
    Problem,
    Terms,
    amend_problem,
    change_kind,
    terms_problem,
)
from mock_venue.outputs import (
    Outbox,
    Output,
    Publish,
    Respond,
    Undelivered,
    acknowledgement,
    rejection,
    snapshot,
    submit_answer,
)
from mock_venue.timers import Timers, TradingDay
from ports.enums import AckAction, CancelReason, ErrorReason, ExecType, OrderStatus, TimeInForce
from ports.models import (
    AmendOrder,
    CancelAllAcknowledgement,
    CancelAllOrders,
    CancelOrder,
    ListOpenOrders,
    OpenOrders,
    OrderSnapshot,
    QueryOrder,
    Rejection,
    Reply,
    Request,
    SubmitOrder,
)

__all__ = ["Output", "Publish", "Respond", "VenueControlError", "VenueEngine"]


class VenueEngine:
    """A deterministic mock venue. Feed it requests with ``handle``; call ``advance`` whenever the
    clock may have moved; publish and answer exactly the outputs it returns, in order. The faults
    in force are in ``faults``. Order and fill ids are ``<venue_id>-<n>`` and
    ``<venue_id>-F<n>``, or with ``id_tag`` ``<venue_id>-<id_tag>-<n>`` (a served venue tags them
    with its session, so that they stay unique across sessions). ``step_timers``: the most timers
    one call runs before its own work and after it (None: all that are due)."""

    def __init__(
        self,
        config: VenueConfig,
        *,
        clock: Clock,
        rng: random.Random,
        id_tag: str | None = None,
        step_timers: int | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._step_timers = step_timers
        now = clock.now()
        if now.utcoffset() is None:  # every time the engine reports is taken as it comes
            raise ValueError("the engine's clock must give timezone-aware times")
        self._instruments = {i.symbol: i for i in config.instruments}
        self._timers = Timers(now)
        self._out = Outbox(self._timers)
        prefix = config.venue_id if id_tag is None else f"{config.venue_id}-{id_tag}"
        self._book = OrderBook(prefix, outbox=self._out, timers=self._timers)
        price_rngs = price_path_rngs(self._instruments, rng)
        # Drawn after the price paths, so adding it left every seeded price path as it was.
        self.faults = FaultBook(random.Random(rng.getrandbits(64)))
        self._matching = Matcher(
            self._instruments, price_rngs, book=self._book, timers=self._timers, faults=self.faults
        )
        self._day = TradingDay(config.trading_day_end, self._timers, self._book.expire)

    # --- public API ----------------------------------------------------------------------------

    def handle(self, request: Request, token: Hashable) -> list[Output]:
        """Process one request; ``token`` comes back on its ``Respond``."""
        self._run_due()
        match request:
            case QueryOrder() | ListOpenOrders():
                self._out.respond(token, self.read(request))
            case _:
                self._order_request(request, token)
        return self._drain()

    def read(self, request: QueryOrder | ListOpenOrders) -> OrderSnapshot | OpenOrders | Rejection:
        """The answer to a read-only request, as things stand: nothing changes, no timer runs."""
        if isinstance(request, ListOpenOrders):
            page = self.config.open_orders_page
            return self.open_orders(
                request.strategy_id, request.instrument, after=request.after, limit=page
            )
        order = self._book.get(request.strategy_id, request.client_order_id)
        if order is None:
            return rejection(ErrorReason.UNKNOWN_ORDER, request.client_order_id)
        return snapshot(order)

    def advance(self) -> list[Output]:
        """Run what is due by the clock's current time (at most ``step_timers`` timers)."""
        self._run_due()
        return self._out.drain()

    @property
    def time(self) -> datetime:
        """The engine's own time: the clock's at the last step, or the last timer it ran."""
        return self._timers.now

    def next_timer_at(self) -> datetime | None:
        """When ``advance`` next has work to do, if ever."""
        return self._timers.next_at()

    def order(self, strategy_id: str, client_order_id: str) -> OrderSnapshot | None:
        """One order as it stands, or None."""
        order = self._book.get(strategy_id, client_order_id)
        return None if order is None else snapshot(order)

    def open_orders(
        self,
        strategy_id: str,
        instrument: str | None = None,
        *,
        after: int = 0,
        limit: int | None = None,
    ) -> OpenOrders:
        """A strategy's open orders, oldest first: all, or (``limit``) a page of them after the
        cursor ``after``, with ``next_after`` set when more follow."""
        orders, more = self._book.open_orders(strategy_id, instrument, after, limit)
        return OpenOrders(
            strategy_id=strategy_id, orders=tuple(snapshot(o) for o in orders), next_after=more
        )

    def orders(self) -> Iterator[OrderSnapshot]:
        """Every order the venue knows, oldest first."""
        return (snapshot(o) for o in self._book.all())

    def submit_result(self, strategy_id: str, client_order_id: str) -> Reply | Rejection | None:
        """The answer the venue gave (and gives again to a resend) to the submit of this order."""
        order = self._book.get(strategy_id, client_order_id)
        return None if order is None else submit_answer(order)

    def reference_price(self, instrument: str) -> Decimal:
        """The instrument's current reference price."""
        return self._matching.reference_price(instrument)

    def stream_seq(self, strategy_id: str) -> int:
        """The latest sequence number on ``strategy_id``'s stream (0 before any event)."""
        return self._out.stream_seq(strategy_id)

    @property
    def venue_seq(self) -> int:
        """The latest sequence number on the all-events stream."""
        return self._out.venue_seq

    # --- control (the test harness's side, not the strategy's) --------------------------------

    def fill(
        self,
        strategy_id: str,
        client_order_id: str,
        quantity: Decimal | None = None,
        price: Decimal | None = None,
    ) -> list[Output]:
        """Scripted fill, now: ``quantity`` (default: all that is left) at ``price`` (default: the
        limit price, else the reference price)."""
        self._run_due()
        order = self._book.working(strategy_id, client_order_id)
        qty = order.leaves_qty if quantity is None else checked_amount(quantity, "fill quantity")
        if not 0 < qty <= order.leaves_qty:
            raise VenueControlError(f"fill quantity {qty} not in (0, {order.leaves_qty}]")
        if price is None:
            px = self._matching.natural_price(order)
        else:
            px = checked_amount(price, "fill price")
        self._book.fill(order, qty, px)
        return self._drain()

    def cancel_unsolicited(self, strategy_id: str, client_order_id: str) -> list[Output]:
        """The venue cancels a working order on its own."""
        self._run_due()
        order = self._book.working(strategy_id, client_order_id)
        self._book.end(order, CancelReason.UNSOLICITED)
        return self._drain()

    def restate(self, strategy_id: str, client_order_id: str, quantity: Decimal) -> list[Output]:
        """The venue reduces a working order's quantity on its own."""
        self._run_due()
        order = self._book.working(strategy_id, client_order_id)
        quantity = checked_amount(quantity, "restatement quantity")
        if not quantity < order.quantity:
            raise VenueControlError(f"a restatement reduces the quantity below {order.quantity}")
        self._book.set_quantity(order, quantity, ExecType.RESTATED)
        return self._drain()

    # --- requests -----------------------------------------------------------------------------

    def _run_due(self) -> None:
        self._timers.run_until(self._clock.now(), self._step_timers)

    def _drain(self) -> list[Output]:
        """The call's outputs, with the first of the work it spread (the rest: ``advance``)."""
        self._run_due()
        return self._out.drain()

    def _order_request(
        self, request: SubmitOrder | AmendOrder | CancelOrder | CancelAllOrders, token: Hashable
    ) -> None:
        strategy = request.strategy_id
        if isinstance(request, SubmitOrder | CancelAllOrders):
            instrument = request.instrument
        else:
            known = self._book.get(strategy, request.client_order_id)
            instrument = known.instrument.symbol if known else None
        cl_ord_id = None if isinstance(request, CancelAllOrders) else request.client_order_id
        retry_after = self.faults.throttled(strategy, instrument, cl_ord_id, self._timers.now)
        if retry_after is not None:
            self._out.respond(
                token,
                Rejection(
                    reason=ErrorReason.THROTTLED,
                    message=f"rate limit: retry after {retry_after:.3f} s",
                    retry_after=retry_after,
                    client_order_id=cl_ord_id,
                ),
            )
            return
        if self.faults.fire(DropReplies, strategy, instrument, cl_ord_id):
            token = Undelivered(token)
        match request:
            case SubmitOrder():
                self._submit(request, token)
            case AmendOrder() | CancelOrder():
                self._change(request, token)
            case CancelAllOrders():
                delay = self._ack_delay(strategy, instrument, None)
                if delay:
                    self._timers.after(delay, lambda: self._cancel_all(request, token))
                else:
                    self._cancel_all(request, token)

    def _ack_delay(
        self, strategy_id: str, instrument: str | None, client_order_id: str | None
    ) -> float:
        fault = self.faults.fire(DelayAcks, strategy_id, instrument, client_order_id)
        return fault.delay if fault else 0.0

    def _submit(self, request: SubmitOrder, token: Hashable) -> None:
        existing = self._book.get(request.strategy_id, request.client_order_id)
        if existing is not None:
            if existing.terms != Terms.of(request, request.instrument):
                self._out.reject(
                    token, ErrorReason.DUPLICATE_CLIENT_ORDER_ID, request.client_order_id
                )
            elif (answer := submit_answer(existing)) is None:  # the first is still pending
                existing.submit_waiters += (token,)
            else:  # a resend of the very same request: the original answer again
                self._out.respond(token, answer)
            return
        instrument = self._instruments.get(request.instrument)
        if instrument is None:
            self._out.reject(token, ErrorReason.UNKNOWN_INSTRUMENT, request.client_order_id)
            return
        order = self._book.add(Terms.of(request, instrument.symbol), instrument, token)
        delay = self._ack_delay(request.strategy_id, instrument.symbol, request.client_order_id)
        if delay:
            self._timers.after(delay, lambda: self._accept(order))
        else:
            self._accept(order)

    def _accept(self, order: Order) -> None:
        terms, instrument = order.terms, order.instrument
        problem = terms_problem(instrument, terms.quantity, terms.limit_price)
        if problem is None and terms.expire_at is not None and terms.expire_at <= self._timers.now:
            problem = (ErrorReason.STALE_ORDER, f"expire_at {terms.expire_at} has passed")
        if problem is None:
            fault = self.faults.fire(
                RejectOrders, terms.strategy_id, instrument.symbol, terms.client_order_id
            )
            if fault is not None:
                problem = (fault.reason, fault.message)
        if problem is not None:
            self._book.reject(order, problem)
            self._answer_submit(
                order,
                Rejection(
                    reason=problem[0], message=problem[1], client_order_id=terms.client_order_id
                ),
            )
            return
        self._book.accept(order)
        self._answer_submit(
            order, acknowledgement(AckAction.SUBMIT, snapshot(order, accepted=True))
        )
        if order.cancel_on_accept is not None:
            self._book.end(order, order.cancel_on_accept)
            return
        if terms.expire_at is not None:
            self._timers.at(terms.expire_at, lambda: self._book.expire(order))
        if terms.time_in_force is TimeInForce.DAY:
            self._day.add(order)
        self._matching.start(order)

    def _answer_submit(self, order: Order, result: Reply | Rejection) -> None:
        if isinstance(result, Rejection):
            order.rejection = result
        waiters, order.submit_waiters = order.submit_waiters, ()
        for token in waiters:
            self._out.respond(token, result)

    def _change(self, request: AmendOrder | CancelOrder, token: Hashable) -> None:
        order = self._book.get(request.strategy_id, request.client_order_id)
        if order is None:
            self._out.reject(token, ErrorReason.UNKNOWN_ORDER, request.client_order_id)
            return
        if order.base is OrderStatus.PENDING_NEW:
            self._out.reject(
                token,
                ErrorReason.REQUEST_PENDING,
                request.client_order_id,
                "the order is not acknowledged yet",
            )
            return
        if order.working and order.pending_change is None:
            self._matching.fill_before_change(order, request)
        kind = change_kind(request)
        problem: Problem | None = None
        if not order.working:
            problem = (ErrorReason.TOO_LATE, f"the order is {order.base.value}")
        elif order.pending_change is not None:
            problem = (ErrorReason.REQUEST_PENDING, "a cancel or amend is already pending")
        elif isinstance(request, AmendOrder):
            problem = amend_problem(order, request)
        if problem is not None:
            self._book.refuse(order, kind, problem)
            self._out.reject(token, problem[0], request.client_order_id, problem[1])
            return
        change = PendingChange(request, token, kind)
        delay = self._ack_delay(
            request.strategy_id, order.instrument.symbol, request.client_order_id
        )
        if delay:
            self._book.hold(order, change)
            self._timers.after(delay, lambda: self._apply_change(order, change))
        else:
            self._apply_change(order, change)

    def _apply_change(self, order: Order, change: PendingChange) -> None:
        if not self._book.apply(order, change):
            return
        self._out.respond(change.token, acknowledgement(change.kind.done, snapshot(order)))
        if isinstance(change.request, AmendOrder):
            self._matching.amended(order)

    def _cancel_all(self, request: CancelAllOrders, token: Hashable) -> None:
        """Every order the request covers now, one at a time (spread over steps: there may be
        many), then the acknowledgement naming those it canceled."""
        canceled, covered = self._book.cancel_all(request)

        def work() -> Iterator[None]:
            for order in covered:
                if self._book.cancel_covered(order, request.reason):
                    canceled.append(order.terms.client_order_id)
                yield
            acknowledged = CancelAllAcknowledgement(
                strategy_id=request.strategy_id, client_order_ids=tuple(canceled)
            )
            self._out.respond(token, acknowledged)

        self._timers.spread(work())
