"""Order state and its transitions: everything that moves an order through the state machine of
docs/state-machine.md lives here, the rules as tables where they read better.

An order's status is derived, never stored: ``Order.base`` is where the order stands, and a change
(amend or cancel) held pending overrides it, as FIX precedence says. ``OrderBook`` makes every
transition and reports each one as it makes it; nothing else writes an order's status.
"""

from __future__ import annotations

import sys
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Final

from mock_venue.config import InstrumentConfig
from mock_venue.control import VenueControlError
from mock_venue.open_index import OpenIndex
from ports.enums import (
    AckAction,
    CancelReason,
    ErrorReason,
    ExecType,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)
from ports.models import AmendOrder, CancelAllOrders, CancelOrder, Rejection, SubmitOrder

if TYPE_CHECKING:
    from mock_venue.outputs import Outbox
    from mock_venue.timers import Timers

Problem = tuple[ErrorReason, str]
"""Why the venue refuses a request: the reason and the text that goes with it."""


@dataclass(frozen=True, slots=True)
class Terms:
    """A submit's terms, as the venue keeps them for the order's life. A slotted copy of the
    SubmitOrder rather than the model itself, which takes far more memory an order (see
    CHANGELOG.md, "Performance history")."""

    strategy_id: str
    client_order_id: str
    instrument: str
    side: Side
    order_type: OrderType
    quantity: Decimal
    limit_price: Decimal | None
    time_in_force: TimeInForce
    expire_at: datetime | None

    @classmethod
    def of(cls, request: SubmitOrder, instrument: str) -> Terms:
        # Strategy ids repeat on every order: one string each, not one per order.
        return cls(
            sys.intern(request.strategy_id),
            request.client_order_id,
            instrument,
            request.side,
            request.order_type,
            request.quantity,
            request.limit_price,
            request.time_in_force,
            request.expire_at,
        )


@dataclass(frozen=True, slots=True)
class ChangeKind:
    """What an amend or a cancel is reported as, at each step of its way."""

    status: OrderStatus  # the order's status while it is pending
    held: ExecType  # reported when it is held pending
    refused: ExecType  # reported when it is refused
    done: AckAction  # the acknowledgement once it is applied


AMEND: Final = ChangeKind(
    OrderStatus.PENDING_AMEND, ExecType.PENDING_AMEND, ExecType.AMEND_REJECTED, AckAction.AMEND
)
CANCEL: Final = ChangeKind(
    OrderStatus.PENDING_CANCEL, ExecType.PENDING_CANCEL, ExecType.CANCEL_REJECTED, AckAction.CANCEL
)


def change_kind(request: AmendOrder | CancelOrder) -> ChangeKind:
    return AMEND if isinstance(request, AmendOrder) else CANCEL


@dataclass(slots=True)
class PendingChange:
    """An amend or cancel the venue has received but not yet applied."""

    request: AmendOrder | CancelOrder
    token: Hashable
    kind: ChangeKind


_ENDINGS: Final[dict[CancelReason, tuple[OrderStatus, ExecType]]] = {
    CancelReason.REQUESTED: (OrderStatus.CANCELED, ExecType.CANCELED),
    CancelReason.CANCEL_ALL: (OrderStatus.CANCELED, ExecType.CANCELED),
    CancelReason.IOC_UNFILLED: (OrderStatus.CANCELED, ExecType.CANCELED),
    CancelReason.FOK_UNFILLED: (OrderStatus.CANCELED, ExecType.CANCELED),
    CancelReason.UNSOLICITED: (OrderStatus.CANCELED, ExecType.CANCELED),
    CancelReason.EXPIRED: (OrderStatus.EXPIRED, ExecType.EXPIRED),
    CancelReason.KILL: (OrderStatus.CANCELED, ExecType.CANCELED),
    CancelReason.CANCEL_ON_DISCONNECT: (OrderStatus.CANCELED, ExecType.CANCELED),
}
"""How a working order ends, by why: the status it ends in and what that is reported as."""


@dataclass(slots=True, eq=False)
class Order:
    terms: Terms
    key: tuple[str, str]
    number: int  # arrival order at the venue
    instrument: InstrumentConfig
    venue_order_id: str
    created_at: datetime
    quantity: Decimal
    limit_price: Decimal | None
    base: OrderStatus = OrderStatus.PENDING_NEW
    pending_change: PendingChange | None = None
    cum_qty: Decimal = Decimal(0)
    notional: Decimal = Decimal(0)
    inflight_qty: Decimal = Decimal(0)  # fills decided but delayed by a DelayFills fault
    slices_done: int = 0
    cancel_on_accept: CancelReason | None = None  # a cancel-all's, come while pending_new
    last_seq: int = 0
    updated_at: datetime | None = None
    # The submit's answer is kept small: a rejection as is; an acceptance as the time and stream
    # position it happened at, from which (with the terms) the very same Acknowledgement is
    # rebuilt for a resend, rather than kept.
    rejection: Rejection | None = None
    accepted_at: datetime | None = None
    accepted_seq: int = 0
    submit_waiters: tuple[Hashable, ...] = ()

    @property
    def status(self) -> OrderStatus:
        # FIX precedence: pending cancel > pending replace > everything else.
        if self.pending_change is not None:
            return self.pending_change.kind.status
        return self.base

    @property
    def working(self) -> bool:
        base = self.base  # identity, not enum equality: this is on every event's path
        return base is OrderStatus.NEW or base is OrderStatus.PARTIALLY_FILLED

    @property
    def leaves_qty(self) -> Decimal:
        return self.quantity - self.cum_qty if self.working else Decimal(0)

    @property
    def avg_px(self) -> Decimal | None:
        return self.notional / self.cum_qty if self.cum_qty else None


def terms_problem(
    instrument: InstrumentConfig, quantity: Decimal | None, price: Decimal | None
) -> Problem | None:
    """What is wrong with these terms for ``instrument``, if anything."""
    try:
        return _terms_problem(instrument, quantity, price)
    except ArithmeticError:  # beyond what Decimal computes exactly: refuse, never crash
        return (ErrorReason.INVALID_REQUEST, "quantity or price out of range")


def _terms_problem(
    instrument: InstrumentConfig, quantity: Decimal | None, price: Decimal | None
) -> Problem | None:
    if quantity is not None and quantity % instrument.lot_size:
        return (
            ErrorReason.INVALID_REQUEST,
            f"quantity {quantity} is not a whole number of lots of {instrument.lot_size}",
        )
    if price is not None and price % instrument.tick_size:
        return (
            ErrorReason.INVALID_REQUEST,
            f"price {price} is not a whole number of ticks of {instrument.tick_size}",
        )
    limit = instrument.max_order_quantity
    if quantity is not None and limit is not None and quantity > limit:
        return (ErrorReason.LIMIT_EXCEEDED, f"quantity {quantity} above the limit of {limit}")
    return None


def amend_problem(order: Order, request: AmendOrder) -> Problem | None:
    """What is wrong with this amend of ``order``, if anything."""
    if request.limit_price is not None and order.terms.order_type is OrderType.MARKET:
        return (ErrorReason.INVALID_REQUEST, "a market order has no limit price to amend")
    return terms_problem(order.instrument, request.quantity, request.limit_price)


class OrderBook:
    """Every order the venue knows, the open ones by strategy, and every transition of their
    state, each reported on the order's stream as it is made."""

    def __init__(self, venue_id: str, *, outbox: Outbox, timers: Timers) -> None:
        self._venue_id = venue_id
        self._out = outbox
        self._timers = timers
        self._orders: dict[tuple[str, str], Order] = {}
        self._by_strategy = OpenIndex()
        # Not yet accepted (a delayed acknowledgement), by strategy: what a cancel-all marks.
        self._pending_new: dict[str, dict[tuple[str, str], Order]] = {}
        self._order_ids = 0
        self._fill_ids = 0

    # --- looking up -----------------------------------------------------------------------------

    def get(self, strategy_id: str, client_order_id: str) -> Order | None:
        return self._orders.get((strategy_id, client_order_id))

    def all(self) -> Iterable[Order]:
        """Every order, oldest first."""
        return self._orders.values()

    def working(self, strategy_id: str, client_order_id: str) -> Order:
        """The working order a control command names; ``VenueControlError`` if there is none."""
        order = self._orders.get((strategy_id, client_order_id))
        if order is None:
            raise VenueControlError(f"no order {client_order_id!r} of strategy {strategy_id!r}")
        if not order.working:
            raise VenueControlError(f"order {client_order_id!r} is {order.status.value}")
        return order

    def open_orders(
        self, strategy_id: str, instrument: str | None, after: int = 0, limit: int | None = None
    ) -> tuple[list[Order], int | None]:
        """A strategy's open orders, oldest first, a page at a time (``OpenIndex.page``)."""
        return self._by_strategy.page(strategy_id, instrument, after, limit)

    # --- transitions ----------------------------------------------------------------------------

    def add(self, terms: Terms, instrument: InstrumentConfig, token: Hashable) -> Order:
        """A new order, PENDING_NEW (not reported: it is not on the stream until it is taken)."""
        self._order_ids += 1
        key = (terms.strategy_id, terms.client_order_id)
        order = Order(
            terms=terms,
            key=key,
            number=self._order_ids,
            instrument=instrument,
            venue_order_id=f"{self._venue_id}-{self._order_ids}",
            created_at=self._timers.now,
            quantity=terms.quantity,
            limit_price=terms.limit_price,
            submit_waiters=(token,),
        )
        self._orders[key] = order
        self._pending_new.setdefault(terms.strategy_id, {})[key] = order
        return order

    def reject(self, order: Order, problem: Problem) -> None:
        """PENDING_NEW -> REJECTED."""
        self._taken(order)
        order.base = OrderStatus.REJECTED
        self._out.report(order, ExecType.REJECTED, reject_reason=problem[0], text=problem[1])

    def accept(self, order: Order) -> None:
        """PENDING_NEW -> NEW: on the book."""
        self._taken(order)
        order.base = OrderStatus.NEW
        self._by_strategy.add(order)
        self._out.report(order, ExecType.ACCEPTED)
        order.accepted_at, order.accepted_seq = self._timers.now, order.last_seq

    def _taken(self, order: Order) -> None:
        pending = self._pending_new[order.terms.strategy_id]
        del pending[order.key]
        if not pending:
            del self._pending_new[order.terms.strategy_id]

    def hold(self, order: Order, change: PendingChange) -> None:
        """A change taken in but applied later: the order shows it pending meanwhile."""
        order.pending_change = change
        self._out.report(order, change.kind.held)

    def refuse(self, order: Order, kind: ChangeKind, problem: Problem) -> None:
        """A change refused: reported, the order as it was."""
        self._out.report(order, kind.refused, reject_reason=problem[0], text=problem[1])

    def apply(self, order: Order, change: PendingChange) -> bool:
        """Apply a change taken in (now, or after its delay); False if it is moot by now."""
        if order.pending_change not in (None, change) or not order.working:
            return False  # resolved already: the order ended while the change was pending
        order.pending_change = None
        request = change.request
        if isinstance(request, AmendOrder):
            if request.limit_price is not None:
                order.limit_price = request.limit_price
            quantity = request.quantity if request.quantity is not None else order.quantity
            self.set_quantity(order, quantity, ExecType.AMENDED)
        else:
            self.end(order, CancelReason.REQUESTED)
        return True

    def set_quantity(self, order: Order, quantity: Decimal, exec_type: ExecType) -> None:
        """An amend or a restatement of the quantity; to what has filled (or less) fills it."""
        if quantity <= order.cum_qty:
            order.quantity = order.cum_qty
            order.base = OrderStatus.FILLED
        else:
            order.quantity = quantity
        self._report_change(order, exec_type)

    def fill(self, order: Order, qty: Decimal, px: Decimal) -> None:
        """A trade of ``qty`` at ``px``, with a venue-unique fill id."""
        self._fill_ids += 1
        order.cum_qty += qty
        order.notional += qty * px
        order.base = (
            OrderStatus.FILLED if order.cum_qty >= order.quantity else OrderStatus.PARTIALLY_FILLED
        )
        self._report_change(
            order,
            ExecType.TRADE,
            last_qty=qty,
            last_px=px,
            fill_id=f"{self._venue_id}-F{self._fill_ids}",
        )

    def end(self, order: Order, reason: CancelReason) -> None:
        """A working order canceled or expired."""
        order.base, exec_type = _ENDINGS[reason]
        self._report_change(order, exec_type, cancel_reason=reason)

    def expire(self, order: Order) -> None:
        """Its time is up: expired if it still works."""
        if order.working:
            self.end(order, CancelReason.EXPIRED)

    def cancel_all(self, request: CancelAllOrders) -> tuple[list[str], Iterator[Order]]:
        """What a cancel-all covers: the client order ids of orders not yet accepted (canceled as
        soon as they are, marked now), and the orders open now, found a page at a time as they
        are taken (``cancel_covered`` ends each)."""

        def covers(terms: Terms) -> bool:
            side_ok = request.side in (None, terms.side)
            return side_ok and request.instrument in (None, terms.instrument)

        pending = []
        for order in self._pending_new.get(request.strategy_id, {}).values():
            if covers(order.terms):
                order.cancel_on_accept = request.reason
                pending.append(order.terms.client_order_id)

        def covered(last: int) -> Iterator[Order]:
            after: int | None = 0
            while after is not None:
                page, after = self.open_orders(request.strategy_id, request.instrument, after, 64)
                for order in page:
                    if order.number > last:
                        return  # came later: not covered (an earlier one pending is marked)
                    if covers(order.terms):
                        yield order

        return pending, covered(self._order_ids)

    def cancel_covered(self, order: Order, reason: CancelReason) -> bool:
        """End an order a cancel-all covered, if it still works and no cancel is on its way."""
        if not order.working or (
            order.pending_change is not None and order.pending_change.kind is CANCEL
        ):
            return False
        self.end(order, reason)
        return True

    def _report_change(
        self,
        order: Order,
        exec_type: ExecType,
        *,
        last_qty: Decimal = Decimal(0),
        last_px: Decimal | None = None,
        fill_id: str | None = None,
        cancel_reason: CancelReason | None = None,
    ) -> None:
        """Report a change of a working order. If it just ended, it leaves the book first, and a
        change still pending is moot: the report shows the terminal status, and the pending
        request is then refused as too late."""
        pending = None
        if not order.working:
            self._by_strategy.remove(order)
            pending, order.pending_change = order.pending_change, None
        self._out.report(
            order,
            exec_type,
            last_qty=last_qty,
            last_px=last_px,
            fill_id=fill_id,
            cancel_reason=cancel_reason,
        )
        if pending is not None:
            text = f"the order is {order.base.value}"
            self.refuse(order, pending.kind, (ErrorReason.TOO_LATE, text))
            self._out.reject(pending.token, ErrorReason.TOO_LATE, order.terms.client_order_id, text)
