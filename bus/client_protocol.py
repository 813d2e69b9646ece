"""``ClientProtocol``: the client side of the wire protocol, with no sockets in it (sans-io).

Like h11's ``Connection``, it takes frames and the time as arguments and returns typed events for
the port to act on. It never reads a clock (``now`` is monotonic seconds; port events are stamped
by the clock it is given) and draws every jitter from the RNG it is given.

It owns every request in flight (``bus.outstanding``): the port's, which include the status
queries of orders in doubt, each resent with the same request id on a backoff schedule until
answered or past its one deadline (the venue answers a copy from its store and never executes it
twice), and its own syncs and replays. It delivers the event stream exactly once and in order
(``bus.sequencing``), drops a fill seen before, follows the venue's liveness and identity (its
session and instance), re-syncs when the venue was lost or changed, and reports what it notices
as ``PortEvent``s.

Four calls drive it: ``send`` (a request: its frame), ``receive_reply``, ``receive_event`` and
``poll`` (at ``next_timer`` at the latest, and now and then for liveness). ``start`` begins with
the first sync.
"""

from __future__ import annotations

import itertools
import math
import random
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from pydantic import BaseModel

from bus.client_events import (
    ClientEvent,
    FramesToSend,
    PortEventRaised,
    PortEventRelayed,
    ReplyReceived,
    ReplyUnreadable,
    ReportsReady,
    RequestExpired,
    StartFailed,
    StreamStarted,
)
from bus.client_frames import Framer, KeepaliveTimer, canceled_detail, canceled_event
from bus.codec import (
    EVENTS_PREFIX,
    HEARTBEAT_TOPIC,
    Heartbeat,
    KeepaliveReply,
    Replay,
    ReplayReply,
    Sync,
    SyncReply,
    WireError,
    decode,
    strategy_topic,
)
from bus.outstanding import Kind, Outstanding
from bus.sequencing import FillFilter, Replays, Sequencer
from ports.enums import ErrorReason, PortEventKind
from ports.models import ExecutionReport, PortEvent, Rejection
from ports.recovery import RESEND, Backoff

REPLAY_RETRY = 1.0  # seconds before a replay that got no answer is asked for again
SYNC_RETRY = 0.25  # seconds between copies of the first sync, while the venue is not there yet
UNSENT_RETRY = 0.05  # seconds before a first sync that found no connection goes again
OPENING = Backoff(initial=SYNC_RETRY, cap=SYNC_RETRY, factor=1.0, jitter=0.0)
_RESET = (
    "the venue started afresh (session {}): the orders and events of the one before are gone; "
    "the stream starts again from its first event"
)
_RESTARTED = "the venue restarted (instance {}) with its state: missed events are replayed"
ALL_EVENTS_SYNC = "_all"  # any strategy id will do for the all-events stream's sync (venue_seq)

__all__ = [
    "REPLAY_RETRY",
    "SYNC_RETRY",
    "UNSENT_RETRY",
    "ClientProtocol",
]  # events: bus.client_events


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _refused(body: BaseModel) -> bool:
    return isinstance(body, Rejection) and body.reason is ErrorReason.NOT_AUTHORIZED


class ClientProtocol:
    """Protocol state of one client: a strategy's stream, or all events (``strategy_id`` None).

    ``silence_limit``: seconds without any message on the event channel after which the venue
    counts as lost (None: never; the all-events monitor does not judge liveness).
    ``retry_throttled``: a THROTTLED refusal is sent again after its ``retry_after`` while the
    request's deadline allows, instead of delivered. ``deadlines``: each request carries its
    deadline (this clock's time), after which the server refuses it. ``clock`` stamps port
    events and deadlines; ``rng`` draws every jitter; ``request_ids`` numbers the protocol's
    own requests (share the port's, so that no two requests of a client have the same id)."""

    def __init__(
        self,
        strategy_id: str | None,
        *,
        client_id: str | None = None,
        silence_limit: float | None = None,
        retry_throttled: bool = True,
        deadlines: bool = True,
        cancel_on_disconnect: float | None = None,
        backoff: Backoff = RESEND,
        rng: random.Random | None = None,
        clock: Callable[[], datetime] = _utc_now,
        request_ids: Iterator[int] | None = None,
    ) -> None:
        self.strategy_id = strategy_id
        self.client_id = client_id or uuid.uuid4().hex
        if strategy_id is None:
            self.stream = Sequencer(lambda r: r.venue_seq)
            self.topics = [EVENTS_PREFIX, HEARTBEAT_TOPIC]
        else:
            self.stream = Sequencer(lambda r: r.seq)
            self.topics = [strategy_topic(strategy_id)]  # its heartbeats come on it too
        self.silence_limit = silence_limit
        self._backoff = backoff
        self._rng = rng if rng is not None else random.Random()
        self._clock = clock
        self._ids = request_ids if request_ids is not None else itertools.count(1)
        self.keepalive = KeepaliveTimer(strategy_id, cancel_on_disconnect)
        self._frames = Framer(self.client_id, self.keepalive, self._ids, clock, deadlines)
        self.requests = Outstanding(self._rng, retry_throttled=retry_throttled)
        self.fills = FillFilter()  # .dropped: fills seen before, not delivered again
        self.synced = False  # a baseline was taken: numbers above it are delivered
        self.in_sync = False  # the numbers of the venue heard now are those of the baseline's
        self.connected = False  # heard from lately, and in sync
        self.venue: tuple[str, str] | None = None  # (session, instance) of the venue synced with
        self._last_heard = 0.0
        self._start_timeout = 0.0
        self._syncing: int | None = None  # the sync in flight (one at a time)
        self._replays = Replays()

    # --- the four calls -----------------------------------------------------------------------

    def send(self, request_id: int, body: BaseModel, now: float, deadline: float) -> bytes:
        """The frame that carries ``body`` as request ``request_id``, resent until answered or
        ``deadline``. If it cannot be sent at all, ``forget`` it."""
        frame = self._frames.request(body, request_id, now, deadline)
        self.requests.add(request_id, Kind.CALL, frame, now, deadline, self._backoff)
        return frame

    def receive_reply(self, frame: bytes, now: float) -> list[ClientEvent]:
        """Take a frame from the command channel. One that cannot be read but names a request
        in flight answers it (``ReplyUnreadable``; the first sync: ``StartFailed``); otherwise
        it raises ``WireError`` (drop it: the request it answered is resent, or expires)."""
        try:
            envelope = decode(frame, max_bytes=None)
        except WireError as error:
            return self._unreadable(error)
        request_id = envelope.request_id
        if request_id is None:
            raise WireError(f"a {envelope.type} reply without a request id")
        body = envelope.body
        if isinstance(body, SyncReply):
            return self._take_sync(request_id, body, now)
        if isinstance(body, ReplayReply):
            return self._take_replay(request_id, body, now)
        if isinstance(body, KeepaliveReply):  # it re-armed the watch; did it fire meanwhile?
            told = canceled_event(body)
            return [] if told is None else [self._raise(*told)]
        if _refused(body) and request_id == self._syncing and not self.synced:
            assert isinstance(body, Rejection)  # retrying cannot help: say so now
            return self._start_failed(request_id, refused=body)
        if not self.requests.answered(request_id, body, now):
            return []
        return [ReplyReceived(request_id, body)]

    def receive_event(self, topic: bytes, frame: bytes, now: float) -> list[ClientEvent]:
        """Take a frame from the event channel. Raises ``WireError`` if it is not a valid
        event (drop it: the gap it leaves is replayed)."""
        self.heard(now)
        body = decode(frame, max_bytes=None).body
        events: list[ClientEvent] = []
        if isinstance(body, ExecutionReport):
            if not self.in_sync:
                return events  # before the baseline, or from a venue not synced with: replayed
            reports = self.fills.fresh(self.stream.offer(body))
            if reports:
                events.append(ReportsReady(reports))
        elif isinstance(body, Heartbeat):
            self._take_heartbeat(body, now)
        elif isinstance(body, PortEvent):
            return [PortEventRelayed(body)]  # not numbered, not replayed
        else:
            raise WireError(f"unexpected {type(body).__name__} on the event channel")
        return self._with_replay(events, now)

    def poll(self, now: float) -> list[ClientEvent]:
        """Liveness, resends, expiries, re-syncs and replays: call it at ``next_timer`` at the
        latest, and now and then (ten times a second) for liveness."""
        noticed: list[ClientEvent] = []
        if self.silence_limit is not None and self.synced:
            silent = self._silent(now)
            if silent and self.connected:
                self.connected = False
                detail = f"no message from the venue for {self.silence_limit:g} s"
                noticed.append(self._raise(PortEventKind.CONNECTION_LOST, detail))
                if self.in_sync:
                    self._out_of_sync(now)
            elif not silent and not self.connected and self.in_sync:
                noticed.append(self._restored())
        frames, expired = self.requests.due(now)
        events: list[ClientEvent] = []
        for request_id, kind in expired:
            if kind is Kind.CALL:
                events.append(RequestExpired(request_id))
            elif kind is Kind.SYNC and request_id == self._syncing:
                self._syncing = None
                if not self.synced:
                    events.append(StartFailed(self._start_timeout))
            elif kind is Kind.REPLAY:
                self._replays.lapsed(request_id)  # asked again below; a late answer still counts
        if (replay := self._ask_replay(now)) is not None:
            frames.append(replay)
        if frames:
            self.keepalive.sent(now)
        elif self.synced and (alive := self._frames.keepalive_due(now)) is not None:
            frames.append(alive)
        if frames:
            events.insert(0, FramesToSend(frames))
        return events + noticed

    def next_timer(self) -> float:
        """When ``poll`` next has a request to resend or expire, or a keepalive to send."""
        alive = self.keepalive.next_at() if self.synced else math.inf
        return min(self.requests.next_timer(), alive)

    # --- beginning, and what the shell reports ------------------------------------------------

    def start(self, now: float, timeout: float) -> list[ClientEvent]:
        """Begin with a sync, sent again every ``SYNC_RETRY`` s: ``StreamStarted`` once
        answered, ``StartFailed`` if no answer comes within ``timeout`` seconds."""
        if self._syncing is not None:
            self.requests.pop(self._syncing)
        self._start_timeout = timeout
        request_id, frame = self._sync_request(now, now + timeout, OPENING, sent=True)
        return [FramesToSend([(request_id, frame)])]

    def start_after(self, seq: int) -> None:
        """Deliver what comes after ``seq``, without a sync (a monitor that knows where)."""
        self.stream.start(seq)
        self.synced = self.in_sync = self.connected = True

    def goodbye(self) -> bytes | None:
        """The frame to send on a clean close: cancel on disconnect disarmed (None: nothing)."""
        return self._frames.goodbye() if self.synced else None

    def forget(self, request_id: int) -> None:
        """The frame ``send`` gave for request ``request_id`` could not be sent at all."""
        self.requests.pop(request_id)

    def unsent(self, request_id: int, now: float) -> None:
        """A frame of ``FramesToSend`` found no connection. A first sync goes again soon (the
        socket may still be connecting); a replay is asked again; anything else waits for its
        next resend."""
        kind = self.requests.kind(request_id)
        if kind is Kind.SYNC and not self.synced:
            self.requests.resend_at(request_id, now + UNSENT_RETRY)
        elif kind is Kind.REPLAY:
            self.requests.pop(request_id)
            self._replays.dropped(request_id)

    def heard(self, now: float) -> None:
        """A message (any message) arrived on the event channel: the venue is alive."""
        if self.synced and not self.in_sync and self._silent(now) and self._syncing is not None:
            # Heard again after a silence (a thawed or restarted venue): re-sync at once,
            # whatever the backoff of the syncs that went unanswered meanwhile says.
            self.requests.resend_at(self._syncing, now, restart=True)
        self._last_heard = now

    # --- answers of the protocol's own requests ----------------------------------------------

    def _unreadable(self, error: WireError) -> list[ClientEvent]:
        # Resending would only fetch the same stored answer: say so now rather than time out.
        request_id = error.request_id
        if request_id is not None and self.requests.kind(request_id) is Kind.CALL:
            self.requests.pop(request_id)
            return [ReplyUnreadable(request_id, error.message)]
        if request_id is not None and request_id == self._syncing and not self.synced:
            return self._start_failed(request_id, unreadable=error.message)
        raise error

    def _start_failed(
        self, request_id: int, *, unreadable: str | None = None, refused: Rejection | None = None
    ) -> list[ClientEvent]:
        self.requests.pop(request_id)
        self._syncing = None
        return [StartFailed(self._start_timeout, unreadable=unreadable, refused=refused)]

    def _take_sync(self, request_id: int, reply: SyncReply, now: float) -> list[ClientEvent]:
        # The first sync starts the stream; later ones reveal gaps, a restarted or reset venue.
        if request_id != self._syncing:
            return []  # a copy answered already
        self.requests.pop(request_id)
        self._syncing = None
        seq = reply.venue_seq if self.strategy_id is None else reply.seq
        events: list[ClientEvent] = []
        if not self.synced:
            self.stream.start(seq)
            self.synced = self.in_sync = self.connected = True
            self._last_heard = now
            events.append(StreamStarted())
        elif self.venue is not None and (
            reply.session != self.venue[0] or seq < self.stream.delivered
        ):
            # A venue with other state (or one whose numbers went back): what this stream
            # delivered and every request in flight belong to a venue that is gone.
            self.stream.reset()
            self.fills.clear()
            self.requests.clear()
            self._replays.clear()
            detail = _RESET.format(reply.session)
            events.append(self._raise(PortEventKind.VENUE_RESET, detail))
        elif self.venue is not None and reply.instance != self.venue[1]:
            detail = _RESTARTED.format(reply.instance)
            events.append(self._raise(PortEventKind.VENUE_RESTARTED, detail))
        self._frames.synced(reply.server_time)
        if reply.canceled_on_disconnect is not None:
            events.append(self._raise(*canceled_detail(reply.canceled_on_disconnect)))
        self.venue = (reply.session, reply.instance)
        self.stream.saw(seq)
        self.in_sync = True
        if not self.connected and not self._silent(now):
            events.append(self._restored())
        return self._with_replay(events, now)

    def _take_replay(self, request_id: int, reply: ReplayReply, now: float) -> list[ClientEvent]:
        if not self._replays.answered(request_id):
            return []  # asked of a venue that was reset since
        self.requests.pop(request_id)
        if not self.in_sync:
            return []  # asked of a venue that has changed since: asked again once in sync
        # Every frame read before any is offered: a bad one must not drop those before it.
        bodies = [decode(frame, max_bytes=None).body for frame in reply.events]
        fresh = self.fills.fresh(self.stream.offer_all(bodies))
        return self._with_replay([ReportsReady(fresh)] if fresh else [], now)

    def _take_heartbeat(self, heartbeat: Heartbeat, now: float) -> None:
        identity = (heartbeat.session, heartbeat.instance)
        if self.venue is None:
            self.venue = identity  # a monitor that started without a sync
        elif identity != self.venue and self.in_sync:
            # Another venue process: its numbers mean nothing until a sync says whether it
            # carries on the same state (replay) or started afresh (reset).
            self._out_of_sync(now)
        if self.in_sync:
            if self.strategy_id is None:
                self.stream.saw(heartbeat.venue_seq)
            else:
                self.stream.saw(heartbeat.seqs.get(self.strategy_id, 0))

    # --- the protocol's own requests ----------------------------------------------------------

    def _sync_request(
        self, now: float, deadline: float, backoff: Backoff, *, sent: bool
    ) -> tuple[int, bytes]:
        request_id = next(self._ids)
        body = Sync(
            strategy_id=self.strategy_id or ALL_EVENTS_SYNC,
            cancel_on_disconnect=self.keepalive.timeout,
        )
        frame = self._frames.plain(body, request_id)
        self.requests.add(request_id, Kind.SYNC, frame, now, deadline, backoff, sent=sent)
        self._syncing = request_id
        return request_id, frame

    def _out_of_sync(self, now: float) -> None:
        """Re-sync at the next poll, then on the backoff schedule, until a sync is answered."""
        self.in_sync = False
        if self._syncing is None:
            self._sync_request(now, math.inf, self._backoff, sent=False)
        else:
            self.requests.resend_at(self._syncing, now, restart=True)

    def _with_replay(self, events: list[ClientEvent], now: float) -> list[ClientEvent]:
        if (replay := self._ask_replay(now)) is not None:
            events.append(FramesToSend([replay]))
        return events

    def _ask_replay(self, now: float) -> tuple[int, bytes] | None:
        """A replay of what is missing, unless one is on its way already."""
        if not self.in_sync or self._replays.in_flight is not None:
            return None
        missing = self.stream.missing()
        if missing is None:
            return None
        request_id = next(self._ids)
        body = Replay(strategy_id=self.strategy_id, from_seq=missing[0], to_seq=missing[1])
        frame = self._frames.plain(body, request_id)
        self.requests.add(request_id, Kind.REPLAY, frame, now, now + REPLAY_RETRY, None)
        self._replays.asked(request_id)
        return request_id, frame

    # --- helpers ------------------------------------------------------------------------------

    def _silent(self, now: float) -> bool:
        return self.silence_limit is not None and now - self._last_heard > self.silence_limit

    def _restored(self) -> PortEventRaised:
        self.connected = True
        detail = "the venue is heard again and the stream re-synced"
        return self._raise(PortEventKind.CONNECTION_RESTORED, detail)

    def _raise(self, kind: PortEventKind, detail: str) -> PortEventRaised:
        return PortEventRaised(PortEvent(kind=kind, time=self._clock(), detail=detail))
