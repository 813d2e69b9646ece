"""The requests a client has sent and not had answered yet, each with one deadline and one
schedule of resends (sans-io, for ``bus.client_protocol``).

A request is resent as the very same frame, with the same request id, on its backoff schedule,
until answered or past its deadline: a lost request or reply costs a resend, never a second
execution, since the venue answers a copy of a request it knows from its store. A throttled one
is sent again after ``retry_after``.
"""

from __future__ import annotations

import math
import random
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum

from pydantic import BaseModel

from ports.enums import ErrorReason
from ports.models import Rejection
from ports.recovery import Backoff

THROTTLE_JITTER = 0.1  # a throttled request waits retry_after plus up to this fraction (+5 ms)
LATE_ANSWERS = 4096  # expired requests whose late answer is still delivered, newest kept


class Kind(Enum):
    """Whose request it is, which says what its answer and its expiry mean."""

    CALL = "call"  # the port's: a caller's request or a status query; its answer is delivered
    SYNC = "sync"  # the protocol's: where does the stream stand?
    REPLAY = "replay"  # the protocol's: a missing range of the stream


@dataclass(slots=True)
class _Entry:
    kind: Kind
    frame: bytes
    deadline: float  # unanswered by then: expired, and never sent again
    due: float  # the next resend (inf: none)
    backoff: Backoff | None  # the resend schedule (None: never resent)
    attempt: int = 0  # copies sent after the first
    unanswered: int = 1  # copies sent minus answers: see Outstanding.answered


class Outstanding:
    """Requests in flight, by request id."""

    def __init__(self, rng: random.Random, *, retry_throttled: bool = True) -> None:
        self._rng = rng
        self.retry_throttled = retry_throttled
        self._open: dict[int, _Entry] = {}
        self._expired: OrderedDict[int, None] = OrderedDict()  # calls a late answer may settle
        self._next = math.inf  # no entry has anything to do before this (it may be earlier)

    def __len__(self) -> int:
        return len(self._open)

    def kind(self, request_id: int) -> Kind | None:
        entry = self._open.get(request_id)
        return None if entry is None else entry.kind

    def add(
        self,
        request_id: int,
        kind: Kind,
        frame: bytes,
        now: float,
        deadline: float,
        backoff: Backoff | None,
        *,
        sent: bool = True,
    ) -> None:
        """``frame`` went out as request ``request_id`` (``sent=False``: goes out at the next
        ``due``); no answer by ``deadline``, and it expires."""
        if not sent:
            entry = _Entry(kind, frame, deadline, now, backoff, attempt=-1, unanswered=0)
        elif backoff is None:
            entry = _Entry(kind, frame, deadline, math.inf, None)
        else:
            entry = _Entry(kind, frame, deadline, now + backoff.delay(0, self._rng), backoff)
        self._open[request_id] = entry
        self._next = min(self._next, entry.due, deadline)

    def due(self, now: float) -> tuple[list[tuple[int, bytes]], list[tuple[int, Kind]]]:
        """The frames to send now, and the requests whose deadline has passed (forgotten here)."""
        send: list[tuple[int, bytes]] = []
        expired: list[tuple[int, Kind]] = []
        next_at = math.inf
        rng = self._rng
        for request_id, entry in self._open.items():
            if now >= entry.deadline:
                expired.append((request_id, entry.kind))
                continue
            if now >= entry.due:
                entry.attempt += 1
                backoff = entry.backoff
                entry.due = math.inf if backoff is None else now + backoff.delay(entry.attempt, rng)
                # Counted as a copy out there even if the send then finds no connection: a
                # throttled answer is then held back (see answered), the safe side.
                entry.unanswered += 1
                send.append((request_id, entry.frame))
            next_at = min(next_at, entry.due, entry.deadline)
        for request_id, kind in expired:
            del self._open[request_id]
            if kind is Kind.CALL:
                self._expired[request_id] = None
                if len(self._expired) > LATE_ANSWERS:
                    self._expired.popitem(last=False)
        self._next = next_at
        return send, expired

    def next_timer(self) -> float:
        """When ``due`` next has something to say (inf: never); calling it earlier is harmless."""
        return self._next

    def answered(self, request_id: int, body: BaseModel, now: float) -> bool:
        """An answer to request ``request_id`` arrived. True: deliver it (once: the first answer,
        or the first late one after the request expired, which may settle an order in doubt).
        False: a repeat, or the answer to a request forgotten; or it is kept back, because the
        request is throttled and will be sent again after ``retry_after``, or because a copy
        sent earlier may still be executed (then the request times out, its outcome unknown,
        rather than report a refusal that may not be the last word), or because it refuses one
        of the protocol's own requests (resent, or asked again, on schedule)."""
        entry = self._open.get(request_id)
        if entry is None:
            late = request_id in self._expired
            if late:
                del self._expired[request_id]
            return late
        if entry.kind is not Kind.CALL:
            return False
        del self._open[request_id]
        if not (isinstance(body, Rejection) and body.reason is ErrorReason.THROTTLED):
            return True
        # Throttled: nothing was done, and the venue does not store the answer, so the same
        # request id is tried afresh when sent again.
        entry.unanswered -= 1
        if self.retry_throttled and body.retry_after is not None:
            wait = body.retry_after
            wait += self._rng.uniform(0, THROTTLE_JITTER * wait + 0.005)
            if now + wait < entry.deadline:
                self._reopen(request_id, entry, now + wait)
                return False
        if entry.unanswered > 0:
            # No more copies; wait for those out there, until the deadline.
            self._reopen(request_id, entry, math.inf)
            return False
        return True

    def resend_at(self, request_id: int, due: float, *, restart: bool = False) -> None:
        """Send request ``request_id`` again at ``due`` (``restart``: its schedule from the
        start, as if it had not been sent yet)."""
        entry = self._open.get(request_id)
        if entry is not None:
            if restart:
                entry.attempt = -1
            self._reopen(request_id, entry, due)

    def pop(self, request_id: int) -> None:
        self._open.pop(request_id, None)

    def clear(self) -> None:
        """Send nothing more (the venue that would have answered is gone)."""
        self._open.clear()

    def _reopen(self, request_id: int, entry: _Entry, due: float) -> None:
        entry.due = due
        self._open[request_id] = entry
        self._next = min(self._next, due)
