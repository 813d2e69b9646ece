"""Resting limit orders of a price path by price priority, so that a price step touches only the
orders it crosses, not every order on the book."""

from __future__ import annotations

import heapq
from decimal import Decimal
from typing import TYPE_CHECKING

from ports.enums import Side

if TYPE_CHECKING:
    from mock_venue.orders import Order

_Entry = tuple[Decimal, int, Decimal, "Order"]  # (priority, arrival number, limit, order)


class RestingLimits:
    """One instrument's resting limit orders: bids best (highest) first, asks best (lowest)
    first, each side in arrival order at a price. Entries go stale when an order ends or its
    price changes; they are skipped when met and swept out once they outnumber the live ones."""

    def __init__(self) -> None:
        self._sides: dict[Side, list[_Entry]] = {Side.BUY: [], Side.SELL: []}
        self._swept_at = {Side.BUY: 0, Side.SELL: 0}

    def add(self, order: Order) -> None:
        """``order`` rests at its current limit price (again, after an amend)."""
        limit = order.limit_price
        assert limit is not None, "a market order does not rest"
        side = order.terms.side
        heap = self._sides[side]
        heapq.heappush(heap, (-limit if side is Side.BUY else limit, order.number, limit, order))
        if len(heap) > 2 * self._swept_at[side] + 64:
            self._sweep(side)

    def pop_crossing(self, price: Decimal) -> Order | None:
        """The best resting order that ``price`` crosses (taken off), or None."""
        for side, heap in self._sides.items():
            while heap:
                _, _, limit, order = heap[0]
                if not _live(limit, order):
                    heapq.heappop(heap)
                    continue
                if (price <= limit) if side is Side.BUY else (price >= limit):
                    heapq.heappop(heap)
                    return order
                break
        return None

    def __len__(self) -> int:
        return sum(len(heap) for heap in self._sides.values())

    def _sweep(self, side: Side) -> None:
        latest: dict[int, _Entry] = {}
        for entry in self._sides[side]:
            if _live(entry[2], entry[3]):
                latest[entry[1]] = entry  # an order rests once, however often it was added
        heap = list(latest.values())
        heapq.heapify(heap)
        self._sides[side] = heap
        self._swept_at[side] = len(heap)


def _live(limit: Decimal, order: Order) -> bool:
    """The entry still stands for an order that can trade at that price."""
    return order.working and order.limit_price == limit and order.leaves_qty > order.inflight_qty
