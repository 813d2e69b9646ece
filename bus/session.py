"""The client side of the protocol, with no sockets in it (sans-io).

``ClientSession`` turns requests into frames and frames into replies and events; its
``Sequencer`` delivers a numbered stream exactly once and in order, buffers what arrives early and
says which range to replay when something is missing. The asyncio and blocking clients are thin
I/O shells over it, so both behave the same.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel

from bus.codec import (
    EVENTS_PREFIX,
    HEARTBEAT_TOPIC,
    MAX_REPLAY,
    Envelope,
    Heartbeat,
    Replay,
    ReplayReply,
    SyncReply,
    WireError,
    decode,
    encode,
    strategy_topic,
)
from ports.models import ExecutionReport

REPLAY_RETRY = 1.0  # seconds before a replay that got no answer is asked for again


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


@dataclass(frozen=True, slots=True)
class Incoming:
    """What one received frame meant."""

    reports: list[ExecutionReport]
    replay: Replay | None = None


class ClientSession:
    """Protocol state of one client: a strategy's stream, or all events (``strategy_id`` None)."""

    def __init__(self, strategy_id: str | None, *, client_id: str | None = None) -> None:
        self.strategy_id = strategy_id
        self.client_id = client_id or uuid.uuid4().hex
        if strategy_id is None:
            self.stream = Sequencer(lambda r: r.venue_seq)
            self.topics = [EVENTS_PREFIX, HEARTBEAT_TOPIC]
        else:
            self.stream = Sequencer(lambda r: r.seq)
            self.topics = [strategy_topic(strategy_id), HEARTBEAT_TOPIC]
        self.synced = False

    def request(self, request_id: int, body: BaseModel) -> bytes:
        """The frame that carries ``body`` as request ``request_id``."""
        return encode(body, request_id=request_id, client_id=self.client_id)

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
        self.synced = True

    def synced_at(self, reply: SyncReply, now: float) -> Replay | None:
        """Take a sync answer: the first starts the stream, later ones (reconnects) reveal gaps."""
        seq = reply.venue_seq if self.strategy_id is None else reply.seq
        if self.synced:
            self.stream.saw(seq)
        else:
            self.stream.start(seq)
            self.synced = True
        return self._replay(now)

    def event(self, topic: bytes, frame: bytes, now: float) -> Incoming:
        """Take a frame from the event channel."""
        envelope = decode(frame, max_bytes=None)
        body = envelope.body
        if isinstance(body, Heartbeat):
            if self.synced:
                latest = (
                    body.venue_seq
                    if self.strategy_id is None
                    else body.seqs.get(self.strategy_id, 0)
                )
                self.stream.saw(latest)
            return Incoming([], self._replay(now))
        if not isinstance(body, ExecutionReport):
            raise WireError(f"unexpected {envelope.type} on the event channel")
        if not self.synced:
            return Incoming([])  # before the baseline: the sync answer covers it
        return Incoming(self.stream.offer(body), self._replay(now))

    def replayed(self, reply: ReplayReply, now: float) -> Incoming:
        """Take a replay answer."""
        self.stream.replayed()
        reports: list[ExecutionReport] = []
        for frame in reply.events:
            body = decode(frame, max_bytes=None).body
            if isinstance(body, ExecutionReport):
                reports += self.stream.offer(body)
        return Incoming(reports, self._replay(now))

    def poll(self, now: float) -> Replay | None:
        """Called now and then: a replay to ask for again, if one went unanswered."""
        return self._replay(now)

    def _replay(self, now: float) -> Replay | None:
        missing = self.stream.missing(now) if self.synced else None
        if missing is None:
            return None
        return Replay(strategy_id=self.strategy_id, from_seq=missing[0], to_seq=missing[1])
