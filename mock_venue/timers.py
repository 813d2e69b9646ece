"""The engine's time: what falls due when, and the trading day whose end expires DAY orders."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mock_venue.orders import Order


_DONE = object()


@dataclass(order=True, slots=True)
class _Timer:
    when: datetime
    n: int  # ties run in the order they were set
    action: Callable[[], None] = field(compare=False)


class Timers:
    """The engine's current time (``now``) and the actions due at later times."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self._heap: list[_Timer] = []
        self._count = 0

    def after(self, seconds: float, action: Callable[[], None]) -> None:
        """Run ``action`` ``seconds`` from now."""
        self.at(self.now + timedelta(seconds=seconds), action)

    def at(self, when: datetime, action: Callable[[], None]) -> None:
        """Run ``action`` at ``when``."""
        self._count += 1
        heapq.heappush(self._heap, _Timer(when, self._count, action))

    def spread(self, work: Iterator[object]) -> None:
        """Run ``work`` one item at a time, each as a timer due now: a large piece of work (every
        DAY order at the day's end, a cancel-all of many orders) counts item by item against a
        bounded step's limit, so it is spread over steps instead of holding up the loop."""
        when = self.now

        def run() -> None:
            if next(work, _DONE) is not _DONE:
                self.at(when, run)

        self.at(when, run)

    def next_at(self) -> datetime | None:
        return self._heap[0].when if self._heap else None

    def run_until(self, now: datetime, limit: int | None = None) -> None:
        """Run every action due by ``now``, in time order; ``now`` is then the current time.
        With ``limit``, at most that many: if more are due, the current time is the last one
        run's (``next_at() <= now`` tells)."""
        heap = self._heap
        ran = 0
        while heap and heap[0].when <= now:
            if ran == limit:
                return
            timer = heapq.heappop(heap)
            # Timers act at their own time, so outputs do not depend on how often we are polled.
            self.now = max(self.now, timer.when)
            timer.action()
            ran += 1
        self.now = max(self.now, now)


class TradingDay:
    """DAY orders, and the one timer at the next end of the trading day that expires those still
    working (one timer for all of them, not one each: the venue holds many resting orders)."""

    def __init__(self, day_end: time, timers: Timers, expire: Callable[[Order], None]) -> None:
        self._day_end = day_end
        self._timers = timers
        self._expire = expire
        self._orders: list[Order] = []  # accepted DAY orders, until the day ends
        self._end_at: datetime | None = None

    def add(self, order: Order) -> None:
        """An accepted DAY order: it expires at the day's end if it still works then."""
        self._orders.append(order)
        if self._end_at is not None:
            return
        now, day_end = self._timers.now, self._day_end
        end = datetime.combine(now.astimezone(day_end.tzinfo).date(), day_end)
        self._end_at = end if end > now else end + timedelta(days=1)
        self._timers.at(self._end_at, self._end)

    def _end(self) -> None:
        self._end_at = None
        orders, self._orders = self._orders, []
        self._timers.spread(self._expire(order) for order in orders)
