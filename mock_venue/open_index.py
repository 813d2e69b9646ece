"""Each strategy's open orders in arrival order, so that one page of them costs a page, not all."""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mock_venue.orders import Order


class OpenIndex:
    """Open orders by strategy, ordered by their arrival number (``Order.number``)."""

    def __init__(self) -> None:
        self._numbers: dict[str, list[int]] = {}
        self._orders: dict[int, Order] = {}

    def add(self, order: Order) -> None:
        if order.number in self._orders:
            return
        self._orders[order.number] = order
        insort(self._numbers.setdefault(order.terms.strategy_id, []), order.number)

    def remove(self, order: Order) -> None:
        if self._orders.pop(order.number, None) is None:
            return
        strategy = order.terms.strategy_id
        numbers = self._numbers[strategy]
        del numbers[bisect_left(numbers, order.number)]
        if not numbers:
            del self._numbers[strategy]

    def page(
        self, strategy_id: str, instrument: str | None, after: int, limit: int | None
    ) -> tuple[list[Order], int | None]:
        """The strategy's open orders (on ``instrument``, or all) that arrived after number
        ``after``, oldest first, from at most ``limit`` of its open orders (so a page on one
        instrument may hold fewer); and the number to ask after for the rest (None: no rest)."""
        numbers = self._numbers.get(strategy_id, [])
        start = bisect_right(numbers, after)
        end = len(numbers) if limit is None else min(len(numbers), start + limit)
        orders = [self._orders[n] for n in numbers[start:end]]
        if instrument is not None:
            orders = [o for o in orders if o.instrument.symbol == instrument]
        return orders, (numbers[end - 1] if end < len(numbers) else None)
