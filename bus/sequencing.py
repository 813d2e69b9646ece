"""Exactly-once, in-order delivery of a numbered event stream, and recognising a repeated fill
(sans-io, for ``bus.client_protocol``)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable

from bus.codec import MAX_REPLAY
from ports.models import ExecutionReport

RECENT_FILLS = 100_000  # fill ids remembered to drop a duplicate fill


class Sequencer:
    """Delivers a numbered stream exactly once and in order: buffers what arrives early, drops
    what it has delivered, and says which range is missing."""

    def __init__(self, number: Callable[[ExecutionReport], int]) -> None:
        self._number = number
        self.delivered = 0  # the last number handed out
        self.latest = 0  # the highest number known to exist
        self.duplicates = 0
        self._ahead: dict[int, ExecutionReport] = {}

    def start(self, seq: int) -> None:
        """Deliver what comes after ``seq`` (a first connection: what came before is history)."""
        self.delivered = self.latest = seq
        self._ahead = {n: r for n, r in self._ahead.items() if n > seq}

    def reset(self) -> None:
        """Forget the stream (its venue lost it): deliver from number 1 again."""
        self.delivered = self.latest = 0
        self._ahead = {}

    def saw(self, latest: int) -> None:
        """Something (a heartbeat, a sync) says the stream has reached ``latest``."""
        self.latest = max(self.latest, latest)

    def offer(self, report: ExecutionReport) -> list[ExecutionReport]:
        """Take one report; return those now deliverable, in order."""
        n = self._number(report)
        if n <= self.delivered or n in self._ahead:
            self.duplicates += 1
            return []
        self._ahead[n] = report
        self.latest = max(self.latest, n)
        ready = []
        while self.delivered + 1 in self._ahead:
            self.delivered += 1
            ready.append(self._ahead.pop(self.delivered))
        return ready

    def offer_all(self, bodies: Iterable[object]) -> list[ExecutionReport]:
        """Take the reports among ``bodies`` (a replay's); return those now deliverable."""
        ready: list[ExecutionReport] = []
        for body in bodies:
            if isinstance(body, ExecutionReport):
                ready += self.offer(body)
        return ready

    def missing(self) -> tuple[int, int] | None:
        """The first range to replay (at most ``MAX_REPLAY`` numbers), if some is missing."""
        if self.latest <= self.delivered:
            return None
        end = min(self.latest, self.delivered + MAX_REPLAY)
        if self._ahead:  # no need to ask for what is already here
            end = min(end, min(self._ahead) - 1)
        return (self.delivered + 1, end)


class RecentIds:
    """The last ``capacity`` ids seen, to recognise a repeat in bounded memory."""

    def __init__(self, capacity: int = RECENT_FILLS) -> None:
        self.capacity = capacity
        self._seen: set[Hashable] = set()
        self._order: deque[Hashable] = deque()

    def seen(self, item: Hashable) -> bool:
        """True if ``item`` is among the last ``capacity`` ones; remembers it either way."""
        if item in self._seen:
            return True
        self._seen.add(item)
        self._order.append(item)
        if len(self._order) > self.capacity:
            self._seen.discard(self._order.popleft())
        return False

    def clear(self) -> None:
        self._seen.clear()
        self._order.clear()


class FillFilter:
    """Drops a fill delivered before (a venue that published one twice), by its fill id."""

    def __init__(self, capacity: int = RECENT_FILLS) -> None:
        self._recent = RecentIds(capacity)
        self.dropped = 0

    def fresh(self, reports: list[ExecutionReport]) -> list[ExecutionReport]:
        """``reports`` without the fills delivered before."""
        if not any(r.fill_id is not None for r in reports):
            return reports
        fresh = []
        for report in reports:
            if report.fill_id is not None and self._recent.seen(report.fill_id):
                self.dropped += 1
                continue
            fresh.append(report)
        return fresh

    def clear(self) -> None:
        """Forget every fill (its venue is gone, and with it its fill ids)."""
        self._recent.clear()


class Replays:
    """The replays asked of a stream: one in flight at a time, and the answer to any of them
    taken, late ones too, until the stream is reset (then they describe a venue that is gone)."""

    def __init__(self) -> None:
        self.in_flight: int | None = None
        self._asked: set[int] = set()

    def asked(self, request_id: int) -> None:
        self.in_flight = request_id
        self._asked.add(request_id)

    def answered(self, request_id: int) -> bool:
        """An answer to replay ``request_id`` arrived: True if it is to be taken."""
        if request_id not in self._asked:
            return False
        self.dropped(request_id)
        return True

    def lapsed(self, request_id: int) -> None:
        """Replay ``request_id`` went unanswered for a while: another may be asked."""
        if request_id == self.in_flight:
            self.in_flight = None

    def dropped(self, request_id: int) -> None:
        """Replay ``request_id`` is answered, or was never sent."""
        self._asked.discard(request_id)
        self.lapsed(request_id)

    def clear(self) -> None:
        self.in_flight = None
        self._asked.clear()
