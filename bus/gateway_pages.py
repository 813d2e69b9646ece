"""The gateway's pages of open orders, sans-io: numbers that make a cursor, and the listings kept
between pages.

A hosted port answers ``open_orders(instrument)`` with the whole list; the wire pages it
(``after``, ``next_after``; docs/protocol.md). ``OpenOrderPages`` numbers each order of a
strategy the first time a listing shows it, and a page is the orders numbered above ``after``.
An order keeps its number while it is open, so one that closes between two pages moves no other
across the cursor; one that opens later is numbered above every number given so far (at the end)
unless a listing shows it between numbered ones, and then it may be on no page of a listing
under way. The listing read for a page is kept ``ttl`` seconds for the pages that follow it, so
paging through n orders reads them once, not n / page times. See docs/gateway.md.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ports.models import OpenOrders, OrderSnapshot

STEP = 1024
"""Numbers are given this far apart, so that an order a listing shows between two numbered ones
(listed first for another instrument, or not yet open at an earlier listing) can be numbered
between them: pages keep the hosted port's order (oldest first) as far as the gaps allow."""

_NONE: Mapping[str, int] = {}


@dataclass(slots=True)
class _Numbers:
    """One strategy's numbered orders, by instrument: client_order_id -> number."""

    by_instrument: dict[str, dict[str, int]] = field(default_factory=dict)
    taken: set[int] = field(default_factory=set)
    top: int = 0  # the highest number ever given, so that a new order goes after every cursor

    def give(self, low: int, high: int | None, count: int) -> list[int]:
        """``count`` new numbers, ascending: between ``low`` and ``high`` if they fit there
        without taking one in use, else above every number given."""
        if high is not None and high - low > count:
            between = [low + (high - low) * (k + 1) // (count + 1) for k in range(count)]
            if self.taken.isdisjoint(between):
                return between
        start, self.top = self.top, self.top + STEP * count
        return [start + STEP * (k + 1) for k in range(count)]


@dataclass(frozen=True, slots=True)
class _Listing:
    strategy_id: str
    read_at: float
    numbers: list[int]  # ascending; numbers[i] is orders[i]'s
    orders: list[OrderSnapshot]


class OpenOrderPages:
    """Pages of at most ``page`` open orders. ``cached`` answers a page from a kept listing;
    else the caller reads the hosted port's and gives it to ``listed``. At most ``listings``
    listings are kept per strategy (one per instrument asked for), each ``ttl`` seconds of
    ``clock`` (dropped at the next call after that). The numbers held are those of the orders
    the latest listing of their instrument (or of all) showed."""

    def __init__(
        self,
        page: int = 1000,
        *,
        ttl: float = 10.0,
        listings: int = 4,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if page < 1:
            raise ValueError(f"a page holds at least 1 order, not {page}")
        if ttl <= 0 or listings < 1:
            raise ValueError("ttl must be positive and listings at least 1")
        self.page, self.ttl, self.listings = page, ttl, listings
        self._clock = clock
        self._numbers: dict[str, _Numbers] = {}  # kept when empty: its top still counts
        self._kept: OrderedDict[tuple[str, str | None], _Listing] = OrderedDict()  # oldest first

    @property
    def kept(self) -> tuple[tuple[str, str | None], ...]:
        """(strategy_id, instrument) of the listings kept, oldest first."""
        self._expire()
        return tuple(self._kept)

    def numbered(self, strategy_id: str) -> int:
        """How many of the strategy's orders hold a number."""
        numbers = self._numbers.get(strategy_id)
        return 0 if numbers is None else len(numbers.taken)

    def cached(self, strategy_id: str, instrument: str | None, after: int) -> OpenOrders | None:
        """The page after ``after`` from the listing kept for it, or None: read the hosted
        port's and call ``listed``. Never for a first page (``after`` 0): that reads afresh."""
        self._expire()
        key = (strategy_id, instrument)
        listing = self._kept.get(key) if after else None
        if listing is None:
            return None
        page = self._page(listing, after)
        if page.next_after is None:
            del self._kept[key]  # paged to its end
        return page

    def listed(
        self, strategy_id: str, instrument: str | None, after: int, orders: Sequence[OrderSnapshot]
    ) -> OpenOrders:
        """The page after ``after`` of ``orders``, the hosted port's ``open_orders(instrument)``
        read just now: numbers the orders seen for the first time, forgets those it no longer
        shows, and keeps it for the next pages if more follow. A strategy's listings must come
        in the order they were read: an older one would forget orders that opened since."""
        self._expire()
        key = (strategy_id, instrument)
        listing = self._number(strategy_id, instrument, orders)
        self._kept.pop(key, None)
        page = self._page(listing, after)
        if page.next_after is not None:
            mine = [k for k in self._kept if k[0] == strategy_id]
            if len(mine) >= self.listings:
                del self._kept[mine[0]]
            self._kept[key] = listing
        return page

    def _number(
        self, strategy_id: str, instrument: str | None, orders: Sequence[OrderSnapshot]
    ) -> _Listing:
        book = self._numbers.setdefault(strategy_id, _Numbers())
        shown: dict[str, OrderSnapshot] = {}
        for order in orders:
            shown.setdefault(order.client_order_id, order)  # one number each, even if listed twice
        # What the listing does not show is no longer open: forgotten, so that the numbers held
        # stay as many as the open orders.
        for symbol in list(book.by_instrument) if instrument is None else [instrument]:
            held = book.by_instrument.get(symbol, {})
            gone = [i for i in held if (o := shown.get(i)) is None or o.instrument != symbol]
            for client_order_id in gone:
                book.taken.discard(held.pop(client_order_id))
            if not held:
                book.by_instrument.pop(symbol, None)
        listed = list(shown.values())
        numbers = [
            book.by_instrument.get(o.instrument, _NONE).get(o.client_order_id, 0) for o in listed
        ]
        i = 0
        while i < len(numbers):  # each run of orders seen first (0: no number yet)
            if numbers[i]:
                i += 1
                continue
            j = i
            while j < len(numbers) and not numbers[j]:
                j += 1
            high = numbers[j] if j < len(numbers) else None
            numbers[i:j] = book.give(numbers[i - 1] if i else 0, high, j - i)
            for order, number in zip(listed[i:j], numbers[i:j], strict=True):
                book.by_instrument.setdefault(order.instrument, {})[order.client_order_id] = number
                book.taken.add(number)
            i = j
        ranked = sorted(zip(numbers, listed, strict=True), key=lambda pair: pair[0])
        return _Listing(strategy_id, self._clock(), [n for n, _ in ranked], [o for _, o in ranked])

    def _page(self, listing: _Listing, after: int) -> OpenOrders:
        start = bisect_right(listing.numbers, after)
        end = start + self.page
        return OpenOrders(
            strategy_id=listing.strategy_id,
            orders=tuple(listing.orders[start:end]),
            next_after=listing.numbers[end - 1] if end < len(listing.numbers) else None,
        )

    def _expire(self) -> None:
        now = self._clock()
        while self._kept:
            key, listing = next(iter(self._kept.items()))
            if now - listing.read_at < self.ttl:
                break
            del self._kept[key]
