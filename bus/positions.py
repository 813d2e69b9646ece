"""What the server knows of every strategy's orders and fills, from the execution reports it
publishes: positions (quantity, average price, realized P&L) per strategy and in total, per
instrument, and each strategy's working orders with what they could still add to a position.

Pure data in, data out (no sockets, no clock): ``bus.risk`` checks requests against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from ports.enums import ExecType, OrderStatus, Side
from ports.models import ExecutionReport
from ports.positions import ZERO, Position, apply_fill

_OPEN = frozenset(
    {
        OrderStatus.PENDING_NEW,
        OrderStatus.NEW,
        OrderStatus.PARTIALLY_FILLED,
        OrderStatus.PENDING_CANCEL,
        OrderStatus.PENDING_AMEND,
    }
)


@dataclass(slots=True)
class WorkingOrder:
    """An order that can still fill: enough of it to check limits against."""

    instrument: str
    side: Side
    leaves: Decimal
    price: Decimal | None
    quantity: Decimal  # the order's total: an amend names its new total


@dataclass(slots=True)
class _Book:
    """One strategy's (or the whole venue's) working orders and positions."""

    orders: dict[str, WorkingOrder] = field(default_factory=dict)
    positions: dict[str, Position] = field(default_factory=dict)
    # Per instrument and side: the leaves of working orders, kept as orders change.
    exposure: dict[tuple[str, Side], Decimal] = field(default_factory=dict)

    working: int = 0  # the total's count: it keeps no orders of its own (each is a strategy's)

    def set(self, key: str, order: WorkingOrder | None) -> WorkingOrder | None:
        """Order ``key`` is ``order`` now (None: no longer working); returns what it was."""
        old = self.orders.pop(key, None)
        if order is not None:
            self.orders[key] = order
        self.swap(old, order)
        return old

    def swap(self, old: WorkingOrder | None, new: WorkingOrder | None) -> None:
        """An order that was ``old`` is ``new`` now: exposure and count follow."""
        if old is not None:
            self._expose(old, -old.leaves)
            self.working -= 1
        if new is not None:
            self._expose(new, new.leaves)
            self.working += 1

    def _expose(self, order: WorkingOrder, leaves: Decimal) -> None:
        side = (order.instrument, order.side)
        total = self.exposure.get(side, ZERO) + leaves
        if total:
            self.exposure[side] = total
        else:
            self.exposure.pop(side, None)

    def fill(self, instrument: str, side: Side, quantity: Decimal, price: Decimal) -> None:
        position = self.positions.get(instrument) or Position(instrument=instrument)
        self.positions[instrument] = apply_fill(position, side, quantity, price)

    def worst_case(self, instrument: str, side: Side, more: Decimal) -> Decimal:
        """The net position if every working order on ``side`` (and ``more``) filled."""
        held = self.positions[instrument].quantity if instrument in self.positions else ZERO
        working = self.exposure.get((instrument, side), ZERO) + more
        return held + working if side is Side.BUY else held - working


class Ledger:
    """Positions and working orders of every strategy, and of the venue in total, kept from the
    reports (``observe``) and from what was let through but not yet reported (``hold``)."""

    def __init__(self) -> None:
        self._strategies: dict[str, _Book] = {}
        self._total = _Book()
        self.last_price: dict[str, Decimal] = {}  # the latest fill price by instrument

    def observe(self, report: ExecutionReport) -> None:
        """Take one published report in: its order's working state, and its fill."""
        strategy = self._strategies.setdefault(report.strategy_id, _Book())
        key = report.client_order_id
        if report.status in _OPEN and report.leaves_qty > 0:
            order = WorkingOrder(
                report.instrument,
                report.side,
                report.leaves_qty,
                report.limit_price,
                report.quantity,
            )
        else:
            order = None
        self._total.swap(strategy.set(key, order), order)
        if report.exec_type is ExecType.TRADE and report.last_px is not None:
            for book in (strategy, self._total):
                book.fill(report.instrument, report.side, report.last_qty, report.last_px)
            self.last_price[report.instrument] = report.last_px

    def hold(self, strategy_id: str, client_order_id: str, order: WorkingOrder | None) -> None:
        """An order as a request let through will leave it (a submit: working in full; an
        amend: its new leaves), until a report says how it stands; None: forget it."""
        book = self._strategies.setdefault(strategy_id, _Book())
        self._total.swap(book.set(client_order_id, order), order)

    def working(self, strategy_id: str, client_order_id: str) -> WorkingOrder | None:
        book = self._strategies.get(strategy_id)
        return None if book is None else book.orders.get(client_order_id)

    def open_orders(self, strategy_id: str | None = None) -> int:
        """Working orders of ``strategy_id``, or of every strategy."""
        if strategy_id is None:
            return self._total.working
        book = self._strategies.get(strategy_id)
        return 0 if book is None else len(book.orders)

    def worst_case(
        self, strategy_id: str | None, instrument: str, side: Side, more: Decimal
    ) -> Decimal:
        """The net position of ``strategy_id`` (None: in total) in ``instrument`` if all its
        working orders on ``side``, and ``more``, filled."""
        book = self._total if strategy_id is None else self._strategies.get(strategy_id)
        return (book or _Book()).worst_case(instrument, side, more)

    def strategies(self) -> list[str]:
        """Every strategy the ledger has seen, sorted."""
        return sorted(self._strategies)

    def positions(self, strategy_id: str | None = None) -> tuple[Position, ...]:
        """Positions of ``strategy_id`` (None: in total), by instrument."""
        book = self._total if strategy_id is None else self._strategies.get(strategy_id)
        return () if book is None else tuple(book.positions[i] for i in sorted(book.positions))
