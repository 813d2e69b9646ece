"""The client side of the protocol, with no sockets in it (sans-io).

``ClientSession`` turns requests into frames and frames into replies and events. Its ``Sequencer``
delivers a numbered stream exactly once and in order, buffers what arrives early and says which
range to replay when something is missing; ``RecentIds`` drops a fill seen before. ``Requests``
resends an unanswered request with the same request id on a backoff schedule (the venue answers a
copy from its store and never executes it twice), and a throttled one after ``retry_after``. The
session also follows the venue's liveness and identity (its session and instance): it says when to
re-sync, and reports connectivity changes as ``PortEvent``s. The asyncio and blocking clients are
thin I/O shells over it, so both behave the same.

Nothing here reads a clock: every call takes ``now`` (monotonic seconds), and jitter comes from
the RNG the session is given.
"""

from __future__ import annotations

import math
import random
import uuid
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import BaseModel

from bus.codec import (
    EVENTS_PREFIX,
    HEARTBEAT_TOPIC,
    MAX_REPLAY,
    Envelope,
    Heartbeat,
    Replay,
    ReplayReply,
    Sync,
    SyncReply,
    WireError,
    decode,
    encode,
    strategy_topic,
)
from ports.enums import ErrorReason, PortEventKind
from ports.models import ExecutionReport, PortEvent, Rejection
from ports.recovery import RESEND, Backoff

REPLAY_RETRY = 1.0  # seconds before a replay that got no answer is asked for again
THROTTLE_JITTER = 0.1  # a throttled request waits retry_after plus up to this fraction (+5 ms)
RECENT_FILLS = 100_000  # fill ids remembered to drop a duplicate fill
ALL_EVENTS_SYNC = "_all"  # any strategy id will do for the all-events stream's sync (venue_seq)


class Sequencer:
    """Exactly-once, in-order delivery of a numbered stream, with gap detection."""

    def __init__(self, number: Callable[[ExecutionReport], int]) -> None:
        self._number = number
        self.delivered = 0  # the last number handed out
        self.latest = 0  # the highest number known to exist
        self.duplicates = 0
        self._ahead: dict[int, ExecutionReport] = {}
        self._replay_until: float | None = None

    def start(self, seq: int) -> None:
        """Deliver what comes after ``seq`` (a first connection: what came before is history)."""
        self.delivered = self.latest = seq
        self._ahead = {n: r for n, r in self._ahead.items() if n > seq}

    def reset(self) -> None:
        """Forget the stream (its venue lost it): deliver from number 1 again."""
        self.delivered = self.latest = 0
        self._ahead = {}
        self._replay_until = None

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

    def missing(self, now: float) -> tuple[int, int] | None:
        """The range to replay, if some is missing and no replay is already on its way."""
        if self.latest <= self.delivered:
            return None
        if self._replay_until is not None and now < self._replay_until:
            return None
        self._replay_until = now + REPLAY_RETRY
        end = min(self.latest, self.delivered + MAX_REPLAY)
        if self._ahead:  # no need to ask for what is already here
            end = min(end, min(self._ahead) - 1)
        return (self.delivered + 1, end)

    def replayed(self) -> None:
        """A replay answer arrived: a further gap may be asked for at once."""
        self._replay_until = None


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


@dataclass(slots=True)
class _Outstanding:
    frame: bytes
    deadline: float  # the caller stops waiting then: no resend after it
    due: float  # the next resend
    retry_throttled: bool
    attempt: int = 0
    unanswered: int = 1  # copies sent minus answers: see Requests.answered


class Requests:
    """Requests sent and not answered yet, resent with the same request id until answered or
    past their deadline: a lost request or reply costs a resend, never a second execution, since
    the venue answers a copy of a request it knows from its store."""

    def __init__(self, backoff: Backoff, rng: random.Random) -> None:
        self._backoff = backoff
        self._rng = rng
        self._open: dict[int, _Outstanding] = {}

    def __len__(self) -> int:
        return len(self._open)

    def track(
        self, request_id: int, frame: bytes, now: float, deadline: float, *, retry_throttled: bool
    ) -> None:
        """``frame`` went out as request ``request_id``; its caller waits until ``deadline``."""
        due = now + self._backoff.delay(0, self._rng)
        self._open[request_id] = _Outstanding(frame, deadline, due, retry_throttled)

    def due(self, now: float) -> tuple[list[tuple[int, bytes]], list[int]]:
        """The frames to send again now, and the requests whose deadline has passed (forgotten
        here: their callers time out)."""
        resend: list[tuple[int, bytes]] = []
        expired: list[int] = []
        for request_id, entry in self._open.items():
            if now >= entry.deadline:
                expired.append(request_id)
            elif now >= entry.due:
                entry.attempt += 1
                entry.due = now + self._backoff.delay(entry.attempt, self._rng)
                # Counted as a copy out there even if the send then finds no connection: a
                # throttled answer is then held back (see answered), the safe side.
                entry.unanswered += 1
                resend.append((request_id, entry.frame))
        for request_id in expired:
            del self._open[request_id]
        return resend, expired

    def next_due(self) -> float | None:
        """When ``due`` next has something to say."""
        return min((min(e.due, e.deadline) for e in self._open.values()), default=None)

    def answered(self, request_id: int, body: BaseModel, now: float) -> bool:
        """An answer to request ``request_id`` arrived. True: deliver it. False: it is kept back,
        because the request is throttled and will be sent again after ``retry_after``, or
        because a copy sent earlier may still be executed (then the request times out, its
        outcome unknown, rather than report a refusal that may not be the last word)."""
        entry = self._open.pop(request_id, None)
        if entry is None:
            return True
        if not (isinstance(body, Rejection) and body.reason is ErrorReason.THROTTLED):
            return True
        # Throttled: nothing was done, and the venue does not store the answer, so the same
        # request id is tried afresh when sent again.
        entry.unanswered -= 1
        if entry.retry_throttled and body.retry_after is not None:
            wait = body.retry_after
            wait += self._rng.uniform(0, THROTTLE_JITTER * wait + 0.005)
            if now + wait < entry.deadline:
                entry.due = now + wait
                self._open[request_id] = entry
                return False
        if entry.unanswered > 0:
            entry.due = math.inf  # no more copies; wait for those out there, until the deadline
            self._open[request_id] = entry
            return False
        return True

    def forget(self, request_id: int) -> None:
        self._open.pop(request_id, None)

    def clear(self) -> None:
        """Resend nothing more (the venue that would have answered is gone)."""
        self._open.clear()


@dataclass(frozen=True, slots=True)
class Incoming:
    """What one received frame meant."""

    reports: list[ExecutionReport]
    replay: Replay | None = None


@dataclass(frozen=True, slots=True)
class Synced:
    """What a sync answer meant: a replay to ask for, and port events to report. After a
    VENUE_RESET no pending request will be answered: the client fails them (outcome unknown)."""

    replay: Replay | None
    events: list[PortEvent]


@dataclass(frozen=True, slots=True)
class Due:
    """What the session wants done now (``ClientSession.poll``)."""

    resend: list[tuple[int, bytes]] = field(default_factory=list)
    expired: list[int] = field(default_factory=list)
    sync: bool = False  # send ``ClientSession.sync_request()``
    replay: Replay | None = None
    events: list[PortEvent] = field(default_factory=list)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ClientSession:
    """Protocol state of one client: a strategy's stream, or all events (``strategy_id`` None).

    ``silence_limit``: seconds without any message on the event channel after which the venue
    counts as lost (None: never; the all-events monitor does not judge liveness). ``clock`` stamps
    port events; ``rng`` draws the jitter of every backoff."""

    def __init__(
        self,
        strategy_id: str | None,
        *,
        client_id: str | None = None,
        silence_limit: float | None = None,
        backoff: Backoff = RESEND,
        rng: random.Random | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.strategy_id = strategy_id
        self.client_id = client_id or uuid.uuid4().hex
        if strategy_id is None:
            self.stream = Sequencer(lambda r: r.venue_seq)
            self.topics = [EVENTS_PREFIX, HEARTBEAT_TOPIC]
        else:
            self.stream = Sequencer(lambda r: r.seq)
            self.topics = [strategy_topic(strategy_id), HEARTBEAT_TOPIC]
        self.silence_limit = silence_limit
        self._backoff = backoff
        self._rng = rng if rng is not None else random.Random()
        self._clock = clock
        self.requests = Requests(backoff, self._rng)
        self.fills = RecentIds()
        self.duplicate_fills = 0
        self.synced = False  # a baseline was taken: numbers above it are delivered
        self.in_sync = False  # the numbers of the venue heard now are those of the baseline's
        self.connected = False  # heard from lately, and in sync
        self.venue: tuple[str, str] | None = None  # (session, instance) of the venue synced with
        self._last_heard = 0.0
        self._resync_at = 0.0
        self._resync_attempt = 0

    def request(self, request_id: int, body: BaseModel) -> bytes:
        """The frame that carries ``body`` as request ``request_id``."""
        return encode(body, request_id=request_id, client_id=self.client_id)

    def sync_request(self) -> Sync:
        """The body of a sync."""
        return Sync(strategy_id=self.strategy_id or ALL_EVENTS_SYNC)

    @staticmethod
    def reply(frame: bytes) -> Envelope:
        """Decode a reply frame. Raises ``WireError`` if it is not a valid message."""
        envelope = decode(frame, max_bytes=None)
        if envelope.request_id is None:
            raise WireError(f"a {envelope.type} reply without a request id")
        return envelope

    def start_after(self, seq: int) -> None:
        """Deliver what comes after ``seq``, without asking the venue (a monitor that knows
        where it wants to start)."""
        self.stream.start(seq)
        self.synced = self.in_sync = self.connected = True

    def synced_at(self, reply: SyncReply, now: float) -> Synced:
        """Take a sync answer: the first starts the stream; later ones (after a reconnect, or
        a venue that changed) reveal gaps, a restarted venue or a reset one."""
        seq = reply.venue_seq if self.strategy_id is None else reply.seq
        identity = (reply.session, reply.instance)
        if not self.synced:
            self.stream.start(seq)
            self.synced = self.in_sync = self.connected = True
            self.venue = identity
            self._last_heard = now
            return Synced(self._replay(now), [])
        events: list[PortEvent] = []
        if self.venue is not None and (
            reply.session != self.venue[0] or seq < self.stream.delivered
        ):
            # A venue with other state (or one whose numbers went back): what this stream
            # delivered and every pending request belong to a venue that is gone.
            self.stream.reset()
            self.fills.clear()
            self.requests.clear()
            events.append(
                self._event(
                    PortEventKind.VENUE_RESET,
                    f"the venue started afresh (session {reply.session}): the orders and events "
                    "of the one before are gone; the stream starts again from its first event",
                )
            )
        elif self.venue is not None and reply.instance != self.venue[1]:
            events.append(
                self._event(
                    PortEventKind.VENUE_RESTARTED,
                    f"the venue restarted (instance {reply.instance}) with its state: missed "
                    "events are replayed",
                )
            )
        self.venue = identity
        self.stream.saw(seq)
        self.in_sync = True
        if not self.connected and not self._silent(now):
            events.append(self._restored())
        return Synced(self._replay(now), events)

    def heard(self, now: float) -> None:
        """A message (any message) arrived on the event channel: the venue is alive."""
        if not self.in_sync and self._silent(now):
            # Heard again after a silence (a thawed or restarted venue): re-sync at once,
            # whatever the backoff of the syncs that went unanswered meanwhile says.
            self._resync_at = now
            self._resync_attempt = 0
        self._last_heard = now

    def event(self, topic: bytes, frame: bytes, now: float) -> Incoming:
        """Take a frame from the event channel."""
        self.heard(now)
        envelope = decode(frame, max_bytes=None)
        body = envelope.body
        if isinstance(body, Heartbeat):
            identity = (body.session, body.instance)
            if self.venue is None:
                self.venue = identity  # a monitor that started without a sync
            elif identity != self.venue and self.in_sync:
                # Another venue process: its numbers mean nothing until a sync says whether it
                # carries on the same state (replay) or started afresh (reset).
                self._out_of_sync(now)
            if self.in_sync:
                latest = (
                    body.venue_seq
                    if self.strategy_id is None
                    else body.seqs.get(self.strategy_id, 0)
                )
                self.stream.saw(latest)
            return Incoming([], self._replay(now))
        if not isinstance(body, ExecutionReport):
            raise WireError(f"unexpected {envelope.type} on the event channel")
        if not self.in_sync:
            return Incoming([])  # before the baseline, or from a venue not synced with: replayed
        return Incoming(self._fresh(self.stream.offer(body)), self._replay(now))

    def replayed(self, reply: ReplayReply, now: float) -> Incoming:
        """Take a replay answer."""
        self.stream.replayed()
        if not self.in_sync:
            return Incoming([])  # asked of a venue that has changed since: asked again later
        reports: list[ExecutionReport] = []
        for frame in reply.events:
            body = decode(frame, max_bytes=None).body
            if isinstance(body, ExecutionReport):
                reports += self.stream.offer(body)
        return Incoming(self._fresh(reports), self._replay(now))

    def poll(self, now: float) -> Due:
        """Called now and then (ten times a second): liveness, re-syncs, resends, replays."""
        events: list[PortEvent] = []
        if self.silence_limit is not None and self.synced:
            silent = self._silent(now)
            if silent and self.connected:
                self.connected = False
                events.append(
                    self._event(
                        PortEventKind.CONNECTION_LOST,
                        f"no message from the venue for {self.silence_limit:g} s",
                    )
                )
                if self.in_sync:
                    self._out_of_sync(now)
            elif not silent and not self.connected and self.in_sync:
                events.append(self._restored())
        sync = False
        if self.synced and not self.in_sync and now >= self._resync_at:
            sync = True
            self._resync_at = now + self._backoff.delay(self._resync_attempt, self._rng)
            self._resync_attempt += 1
        resend, expired = self.requests.due(now) if self.requests else ([], [])
        return Due(resend, expired, sync, self._replay(now), events)

    def _silent(self, now: float) -> bool:
        return self.silence_limit is not None and now - self._last_heard > self.silence_limit

    def _out_of_sync(self, now: float) -> None:
        self.in_sync = False
        self._resync_at = now
        self._resync_attempt = 0

    def _restored(self) -> PortEvent:
        self.connected = True
        return self._event(
            PortEventKind.CONNECTION_RESTORED, "the venue is heard again and the stream re-synced"
        )

    def _fresh(self, reports: list[ExecutionReport]) -> list[ExecutionReport]:
        """``reports`` without a fill delivered before (a venue that published one twice)."""
        if not any(r.fill_id is not None for r in reports):
            return reports
        fresh = []
        for report in reports:
            if report.fill_id is not None and self.fills.seen(report.fill_id):
                self.duplicate_fills += 1
                continue
            fresh.append(report)
        return fresh

    def _event(self, kind: PortEventKind, detail: str) -> PortEvent:
        return PortEvent(kind=kind, time=self._clock(), detail=detail)

    def _replay(self, now: float) -> Replay | None:
        missing = self.stream.missing(now) if self.in_sync else None
        if missing is None:
            return None
        return Replay(strategy_id=self.strategy_id, from_seq=missing[0], to_seq=missing[1])
