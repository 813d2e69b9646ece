"""Each strategy's open orders in arrival order, so that one page of them costs a page, not all."""

from __future__ import annotations

from bisect import bisect_right
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mock_venue.orders import Order


class OpenIndex:
    """Open orders by strategy, ordered by their arrival number (``Order.number``). A closed
    order's number stays in its strategy's list until closed ones are the larger part (then the
    list is rebuilt), so that closing an order costs O(1), not a shift of the whole list."""

    def __init__(self) -> None:
        self._numbers: dict[str, list[int]] = {}
        self._closed: dict[str, int] = {}  # numbers in the list that are no longer open
        self._orders: dict[int, Order] = {}

    def add(self, order: Order) -> None:
        if order.number in self._orders:
            return
        self._orders[order.number] = order
        numbers = self._numbers.setdefault(order.terms.strategy_id, [])
        if numbers and numbers[-1] > order.number:  # arrivals are accepted out of order
            numbers.insert(bisect_right(numbers, order.number), order.number)
        else:
            numbers.append(order.number)

    def remove(self, order: Order) -> None:
        if self._orders.pop(order.number, None) is None:
            return
        strategy = order.terms.strategy_id
        closed = self._closed[strategy] = self._closed.get(strategy, 0) + 1
        if 2 * closed >= len(self._numbers[strategy]):
            self._sweep(strategy)

    def page(
        self, strategy_id: str, instrument: str | None, after: int, limit: int | None
    ) -> tuple[list[Order], int | None]:
        """The strategy's open orders (on ``instrument``, or all) that arrived after number
        ``after``, oldest first, from at most ``limit`` of its open orders (so a page on one
        instrument may hold fewer); and the number to ask after for the rest (None: no rest)."""
        numbers = self._numbers.get(strategy_id, [])
        orders: list[Order] = []
        looked, skipped, last, more = 0, 0, None, False
        for i in range(bisect_right(numbers, after), len(numbers)):
            order = self._orders.get(numbers[i])
            if order is None:
                skipped += 1
                continue
            if looked == limit:
                more = True  # an open order follows
                break
            looked, last = looked + 1, numbers[i]
            if instrument is None or order.instrument.symbol == instrument:
                orders.append(order)
        if skipped > 64 + looked:  # closed ones crowd the pages: each is swept out once
            self._sweep(strategy_id)
        return orders, last if more else None

    def _sweep(self, strategy: str) -> None:
        self._closed.pop(strategy, None)
        numbers = self._numbers[strategy]
        numbers[:] = [n for n in numbers if n in self._orders]
        if not numbers:
            del self._numbers[strategy]
