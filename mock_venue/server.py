"""The venue process: the engine behind ZeroMQ sockets, in one single-threaded poll loop.

- command ROUTER: requests from strategies (DEALER, or plain REQ with its empty delimiter);
- event PUB: every execution report on its strategy's topic, and heartbeats;
- control ROUTER: what a test harness tells the venue (scripted fills, faults, logical time).

Every request is idempotent by (client id, request id): the reply to a state-changing request is
kept and sent again for a retry, which is never executed twice.

With a journal (mock_venue/journal.py) every engine step is written down, with the time the engine
saw and the frames it produced, before any of those frames leaves; a venue restarted on the
journal replays it and carries on with the same orders, sequence numbers and stored replies.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sys
import time
import uuid
from array import array
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import zmq
from pydantic import BaseModel

from bus.codec import (
    HEARTBEAT_TOPIC,
    MAX_FRAME_BYTES,
    MAX_REPLAY,
    TYPES,
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
from bus.sockets import NOBLOCK, NOBLOCK_SNDMORE, SNDMORE, readable
from mock_venue.clock import Clock, ManualClock, PinnedClock, WallClock
from mock_venue.config import VenueConfig
from mock_venue.control import (
    CONTROL_MODELS,
    CONTROL_TYPES,
    Advance,
    CancelUnsolicited,
    ClearFaults,
    Done,
    Faults,
    FillOrder,
    GetStatus,
    InjectFault,
    ListFaults,
    Restate,
    StrategyStatus,
    VenueStatus,
)
from mock_venue.engine import Output, Publish, Respond, VenueControlError, VenueEngine
from mock_venue.faults import (
    ActiveFault,
    Crash,
    Disconnect,
    DropEvents,
    DuplicateEvents,
    Fault,
    PausePublishing,
    ReorderEvents,
    TransportFault,
)
from mock_venue.journal import FsyncPolicy, Journal, JournalError, Recovered
from mock_venue.journal import read as journal_read
from ports.enums import ErrorReason
from ports.models import (
    Acknowledgement,
    AmendOrder,
    CancelAllOrders,
    CancelOrder,
    ExecutionReport,
    ListOpenOrders,
    QueryOrder,
    Rejection,
    SubmitOrder,
)

_ENGINE_REQUESTS = (
    SubmitOrder,
    AmendOrder,
    CancelOrder,
    CancelAllOrders,
    QueryOrder,
    ListOpenOrders,
)
_QUERIES = (QueryOrder, ListOpenOrders)  # safe to run again: their replies are not kept
_BATCH = 256  # messages taken from one socket before the others get a turn
# Outputs of this many requests go out together. Each send that finds libzmq's I/O thread asleep
# wakes it (a syscall, and on a busy machine a context switch); sent as a burst, the replies to
# a pipelining client cost one wake-up rather than one each. A lone request is flushed at once.
_FLUSH_EVERY = 16


@dataclass(frozen=True)
class Endpoints:
    """Where a running venue listens (ports resolved)."""

    command: str
    events: str
    control: str


@dataclass(slots=True)
class _Route:
    identity: bytes
    req_peer: bool  # a REQ socket: its replies need the empty delimiter frame


@dataclass(slots=True)  # not frozen: its __init__ is on every event's path
class _Event:
    """One encoded execution report, with what transport faults target it by."""

    strategy_id: str
    instrument: str
    client_order_id: str
    frame: bytes


_Reply = tuple[_Route | None, bytes]  # where an answer goes (None: nobody waits), and the answer


class VenueServer:
    """Serves one engine on three sockets. ``bind()``, then ``serve()`` until ``stop()``.

    ``journal``: a file to write every engine step to, and to recover from when it exists already
    (``config`` and ``seed`` must be those it was written with). ``scenario``: faults put in
    force when the venue starts afresh (a recovered venue has its faults from the journal).
    """

    def __init__(
        self,
        config: VenueConfig,
        endpoints: Endpoints,
        *,
        seed: int = 0,
        clock: Clock | None = None,
        heartbeat_interval: float = 0.5,
        reply_cache_size: int = 200_000,
        journal: Path | None = None,
        fsync: FsyncPolicy = FsyncPolicy.INTERVAL,
        scenario: Sequence[Fault] = (),
    ) -> None:
        self.clock: Clock = clock if clock is not None else WallClock()
        recovered = journal_read(journal) if journal is not None and journal.exists() else None
        # A recovered engine starts at the time the original did: it must see what that one saw.
        start = self.clock.now() if recovered is None else recovered.header["start"]
        self._pinned = PinnedClock(start)
        self.engine = VenueEngine(config, clock=self._pinned, rng=random.Random(seed))
        self._wanted = endpoints
        self._heartbeat_interval = heartbeat_interval
        self._reply_cache_size = reply_cache_size
        self._context = zmq.Context()
        self._command, self._events = self._command_socket(), self._events_socket()
        self._control = self._context.socket(zmq.ROUTER)
        self._configure_router(self._control)
        self._control.setsockopt(zmq.LINGER, 2000)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._poller = zmq.Poller()
        self._stopping = False
        self._crash_at: float | None = None
        self._routes: dict[Hashable, _Route | None] = {}
        self._uncached: set[Hashable] = set()
        # A submit's reply is kept as (strategy, client order id): the engine holds the result
        # itself, so a retry re-encodes it (byte for byte the same) instead of a stored copy.
        self._submits: dict[Hashable, tuple[str, str]] = {}
        self._replies: OrderedDict[Hashable, bytes | tuple[str, str]] = OrderedDict()
        self._frames: list[bytes] = []  # every published event, by venue_seq - 1
        self._stream_index: dict[str, array[int]] = {}  # strategy -> venue_seq of its events
        self._clients: set[str] = set()
        self._held: list[_Event] = []  # events a PausePublishing fault holds back
        self._reordered: list[_Event] = []  # events a ReorderEvents fault sends late
        self._pause_until: dict[int, float] = {}
        self._out_replies: list[_Reply] = []  # outputs of steps taken, until ``_flush``
        self._out_events: list[_Event] = []
        self._out_reports: list[ExecutionReport] = []  # events not encoded yet (no journal)
        self._flushing = False
        self.requests = 0
        self.protocol_errors = 0
        self.unroutable_replies = 0
        self.endpoints: Endpoints | None = None
        self.instance = uuid.uuid4().hex
        self.session = uuid.uuid4().hex
        self._journal: Journal | None = None
        self._replaying: list[bytes] | None = None  # a recovery's expected frames, else None
        self.recovered_records = 0
        self.torn_bytes = 0
        if recovered is not None:
            assert journal is not None
            self._recover(journal, recovered, config, seed, fsync)
            return
        if journal is not None:
            header = {
                "session": self.session,
                "start": start,
                "seed": seed,
                "config": _config_dump(config),
            }
            self._journal = Journal.create(journal, header, fsync)
        for fault in scenario:
            self._control_command(InjectFault(fault=fault))

    # --- sockets ------------------------------------------------------------------------------

    @staticmethod
    def _configure_router(router: zmq.Socket[bytes]) -> None:
        # An unroutable reply raises instead of vanishing; the reply stays cached for a retry.
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        # Oversized garbage disconnects the peer before it costs memory; up to this size we
        # read the frame and answer it with a typed error.
        router.setsockopt(zmq.MAXMSGSIZE, 16 * MAX_FRAME_BYTES)
        router.setsockopt(zmq.RCVHWM, 100_000)
        router.setsockopt(zmq.SNDHWM, 100_000)
        # No ZMTP heartbeats (HEARTBEAT_IVL): with them, libzmq 4.3.5 can abort the whole process
        # (assertion in stream_engine_base.cpp) when peers vanish mid-burst. Liveness is the
        # venue's own heartbeat on the event channel.

    def _command_socket(self) -> zmq.Socket[bytes]:
        socket = self._context.socket(zmq.ROUTER)
        self._configure_router(socket)
        socket.setsockopt(zmq.LINGER, 2000)  # flush replies on shutdown, never hang
        return socket

    def _events_socket(self) -> zmq.Socket[bytes]:
        socket = self._context.socket(zmq.PUB)
        # Loss at the PUB high-water mark is recovered by replay, but should be rare.
        socket.setsockopt(zmq.SNDHWM, 1_000_000)
        socket.setsockopt(zmq.LINGER, 2000)
        return socket

    # --- lifecycle ----------------------------------------------------------------------------

    def bind(self) -> Endpoints:
        """Bind the three sockets; port 0 picks a free port. Returns the endpoints bound."""
        bound = []
        for socket, endpoint in (
            (self._command, self._wanted.command),
            (self._events, self._wanted.events),
            (self._control, self._wanted.control),
        ):
            socket.bind(endpoint)
            bound.append(socket.getsockopt_string(zmq.LAST_ENDPOINT))
        self.endpoints = Endpoints(*bound)
        return self.endpoints

    def stop(self) -> None:
        """Ask ``serve`` to return. Safe from a signal handler or another thread."""
        self._stopping = True
        with contextlib.suppress(BlockingIOError):  # the pipe is full of wake-ups already
            os.write(self._wake_w, b"x")

    def close(self) -> None:
        for socket in (self._command, self._events, self._control):
            socket.close()
        self._context.term()
        os.close(self._wake_r)
        os.close(self._wake_w)
        if self._journal is not None:
            self._journal.close()

    def serve(self) -> None:
        """Run the poll loop until ``stop()``; then answer what already arrived and return."""
        for socket in (self._command, self._control, self._wake_r):
            self._poller.register(socket, zmq.POLLIN)
        next_heartbeat = time.monotonic()
        while not self._stopping:
            now = time.monotonic()
            if self._crash_at is not None and now >= self._crash_at:
                os.kill(os.getpid(), signal.SIGKILL)  # a Crash fault: as abrupt as it gets
            if now >= next_heartbeat:
                self._heartbeat()
                next_heartbeat = now + self._heartbeat_interval
            ready = dict(self._poller.poll(self._poll_timeout_ms(next_heartbeat - now)))
            if self._command in ready:
                self._drain(self._command, self._serve_command)
            if self._control in ready:
                self._drain(self._control, self._serve_control)
            if self._wake_r in ready:
                os.read(self._wake_r, 4096)
            if not isinstance(self.clock, ManualClock):
                self._advance()
            self._flush()
            if self._pause_until and min(self._pause_until.values()) <= time.monotonic():
                self._release_held()  # a timed pause ends on time, not at the next heartbeat
            if self._journal is not None:
                self._journal.tick()
        # Requests that arrived before the stop still get their answer; a peer that keeps
        # sending cannot hold the shutdown up for more than a moment.
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and self._command.poll(0):
            self._drain(self._command, self._serve_command)
        self._release_held(force=True)
        self._heartbeat()

    def _poll_timeout_ms(self, until_heartbeat: float) -> int:
        wait = until_heartbeat
        due = self.engine.next_timer_at()
        if due is not None and not isinstance(self.clock, ManualClock):
            wait = min(wait, (due - self.clock.now()).total_seconds())
        if self._crash_at is not None:
            wait = min(wait, max(self._crash_at - time.monotonic(), 0.001))
        if self._pause_until:
            wait = min(wait, min(self._pause_until.values()) - time.monotonic())
        if self._journal is not None and (sync := self._journal.sync_due_in()) is not None:
            wait = min(wait, sync)  # the interval policy's bound holds on a quiet venue too
        return max(0, int(wait * 1000) + 1)

    def _drain(
        self,
        socket: zmq.Socket[bytes],
        serve: Callable[[list[bytes]], None],
        limit: int | None = _BATCH,
    ) -> None:
        count = 0
        try:
            while limit is None or count < limit:
                if not readable(socket):
                    return
                serve(socket.recv_multipart(NOBLOCK))
                count += 1
                if count % _FLUSH_EVERY == 0:
                    self._flush()
        finally:
            self._flush()

    def _rebind(self) -> None:
        """A Disconnect fault: new command and event sockets on the same endpoints. What the old
        ones held is dropped, and every peer sees its connection go."""
        assert self.endpoints is not None
        # What was done before the fault goes to the old sockets, which drop it like the rest
        # of what they hold: replies are kept for the resends, events for replay.
        self._flush()
        self._poller.unregister(self._command)
        for socket in (self._command, self._events):
            socket.close(linger=0)
        self._command, self._events = self._command_socket(), self._events_socket()
        for socket, endpoint in (
            (self._command, self.endpoints.command),
            (self._events, self.endpoints.events),
        ):
            deadline = time.monotonic() + 5.0
            while True:
                try:
                    socket.bind(endpoint)
                    break
                except zmq.ZMQError:  # the old socket lets go of the port asynchronously
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
        self._poller.register(self._command, zmq.POLLIN)

    # --- engine steps: each one pinned in time, journaled, then sent ----------------------------

    def _step_time(self) -> datetime:
        if self._replaying is None:
            self._pinned.pin(self.clock.now())
        return self._pinned.now()

    def _advance(self, *, always: bool = False) -> None:
        """Run the engine's timers that are due (journaled only if one was, or ``always``)."""
        due = self.engine.next_timer_at()
        if not always and due is None:
            return
        at = self._step_time()
        if not always and due is not None and due > at:
            return
        self._step(self.engine.advance(), {"k": "a", "t": at})

    def _record(self, record: dict[str, Any], events: list[_Event], replies: list[_Reply]) -> None:
        """Write one step to the journal before anything of it leaves; in a recovery, check the
        step produced exactly what the journal says it did."""
        if self._replaying is None and self._journal is None:
            return
        out = [e.frame for e in events] + [frame for _, frame in replies]
        if self._replaying is not None:
            if out != self._replaying:
                raise JournalError(
                    f"recovery diverged at record {self.recovered_records + 1}: the engine "
                    "produced other frames than the journal holds"
                )
        elif self._journal is not None:
            self._journal.append({**record, "out": out})

    def _recover(
        self, path: Path, recovered: Recovered, config: VenueConfig, seed: int, fsync: FsyncPolicy
    ) -> None:
        header = recovered.header
        if header.get("seed") != seed or header.get("config") != _config_dump(config):
            raise JournalError(
                f"{path} was written by a venue with another config or seed; start with the "
                "same ones, or with a new journal"
            )
        self.session = header["session"]
        self.torn_bytes = recovered.torn_bytes
        last = None
        for record in recovered.records:
            self._replaying = record.get("out", [])
            last = record["t"]
            self._pinned.pin(last)
            match record["k"]:
                case "a":
                    self._advance(always=True)
                case "r":
                    body = decode(record["b"], max_bytes=None).body
                    self._execute((record["c"], record["id"]), body, record["b"])
                case "c":
                    self._control_command(decode(record["b"], models=CONTROL_MODELS).body)
                case "f":
                    kind = _TRANSPORT_FAULTS[record["kind"]]
                    self.engine.faults.fire(kind, record["s"], record["i"], record["o"])
                case other:
                    raise JournalError(f"{path}: unknown record kind {other!r}")
            self.recovered_records += 1
        self._replaying = None
        if last is not None and isinstance(self.clock, ManualClock):
            self.clock.advance_to(last)
        self._journal = Journal.reopen(path, fsync)

    # --- command channel ----------------------------------------------------------------------

    def _serve_command(self, frames: list[bytes]) -> None:
        try:
            self._serve_command_frames(frames)
        except Exception as error:  # one message must never take the venue down
            self._last_resort(self._command, frames, error)

    def _last_resort(
        self, socket: zmq.Socket[bytes], frames: list[bytes], error: Exception
    ) -> None:
        self.protocol_errors += 1
        sys.stderr.write(f"venue: request failed: {type(error).__name__}: {error}\n")
        if frames:
            route = _Route(frames[0], len(frames) > 2 and frames[1] == b"")
            self._refuse(socket, route, WireError(f"the venue could not process this: {error}"))

    def _serve_command_frames(self, frames: list[bytes]) -> None:
        self.requests += 1
        route, body = self._split(frames)
        if route is None:
            return
        try:
            envelope = decode(body)
        except WireError as error:
            self._refuse(self._command, route, error)
            return
        if envelope.request_id is None:
            self._refuse(self._command, route, WireError("a request needs an 'id'"))
            return
        client = envelope.client_id or "peer:" + route.identity.hex()
        key = (client, envelope.request_id)
        cached = self._replies.get(key)
        if cached is not None:  # a retry: the stored answer, the work is not done again
            self._send(self._command, route, self._stored_reply(key, cached))
            return
        if key in self._routes:  # still being worked on (a delayed ack): one answer, when ready
            self._routes[key] = route  # to the latest connection of this client
            return
        request = envelope.body
        if isinstance(request, _ENGINE_REQUESTS):
            self._advance()  # timers due run first, as their own journaled step
            self._execute(key, request, body, route)
        elif isinstance(request, Sync):
            self._flush()  # what it counts is published (and replayable) first
            self._clients.add(client)
            self._send(self._command, route, encode(self._sync(request), request_id=key[1]))
        elif isinstance(request, Replay):
            self._flush()
            self._send(self._command, route, encode(self._replay(request), request_id=key[1]))
        else:
            self._refuse(
                self._command,
                route,
                WireError(f"{envelope.type} is not a request", request_id=envelope.request_id),
            )

    def _execute(
        self, key: tuple[str, int], request: BaseModel, frame: bytes, route: _Route | None = None
    ) -> None:
        """One request through the engine: the same code live and in a recovery."""
        at = self._step_time()
        self._clients.add(key[0])
        self._routes[key] = route
        if isinstance(request, _QUERIES):
            self._uncached.add(key)
        elif isinstance(request, SubmitOrder):
            self._submits[key] = (request.strategy_id, request.client_order_id)
        assert isinstance(request, _ENGINE_REQUESTS)
        record = {"k": "r", "t": at, "c": key[0], "id": key[1], "b": frame}
        self._step(self.engine.handle(request, key), record)

    def _split(self, frames: list[bytes]) -> tuple[_Route | None, bytes]:
        if len(frames) == 2:
            return _Route(frames[0], False), frames[1]
        if len(frames) == 3 and frames[1] == b"":
            return _Route(frames[0], True), frames[2]
        message = f"a request is one frame (after a REQ's empty delimiter), not {len(frames) - 1}"
        req_peer = len(frames) > 2 and frames[1] == b""  # a REQ only reads delimited replies
        self._refuse(self._command, _Route(frames[0], req_peer), WireError(message))
        return None, b""

    def _refuse(self, socket: zmq.Socket[bytes], route: _Route, error: WireError) -> None:
        self.protocol_errors += 1
        types = CONTROL_TYPES if socket is self._control else TYPES
        self._send(
            socket, route, encode(error.to_rejection(), request_id=error.request_id, types=types)
        )

    def _sync(self, request: Sync) -> SyncReply:
        return SyncReply(
            session=self.session,
            instance=self.instance,
            strategy_id=request.strategy_id,
            seq=self.engine.stream_seq(request.strategy_id),
            venue_seq=self.engine.venue_seq,
            open_orders=self.engine.open_orders(request.strategy_id).orders,
        )

    def _replay(self, request: Replay) -> ReplayReply:
        if request.strategy_id is None:
            last = min(request.to_seq, len(self._frames), request.from_seq + MAX_REPLAY - 1)
            events = tuple(self._frames[request.from_seq - 1 : last])
        else:
            index = self._stream_index.get(request.strategy_id, array("Q"))
            last = min(request.to_seq, len(index), request.from_seq + MAX_REPLAY - 1)
            events = tuple(self._frames[v - 1] for v in index[request.from_seq - 1 : last])
        return ReplayReply(strategy_id=request.strategy_id, events=events)

    # --- outputs ------------------------------------------------------------------------------

    def _step(self, outputs: list[Output], record: dict[str, Any]) -> None:
        """One engine step's outputs: kept (events for replay, replies for resends) and journaled,
        then queued to be sent by ``_flush``, which the serve loop calls after every few
        requests and whenever it has nothing more to read. Without a journal, events are encoded
        only then, after the replies have left."""
        replies = [self._reply(o) for o in outputs if isinstance(o, Respond)]
        reports = [o.report for o in outputs if isinstance(o, Publish)]
        if self._replaying is None and self._journal is None:
            self._out_replies += replies
            self._out_reports += reports
        else:
            events = self._keep_events(reports)
            self._record(record, events, replies)  # before anything of the step leaves
            if self._replaying is not None:
                return
            self._out_replies += replies
            self._out_events += events
        if self.engine.faults.any_in_force():
            # Transport faults draw from the seeded fault RNG as events are published: publish
            # each step's at once, so that the draws follow the requests, not how they batched.
            self._flush()

    def _flush(self) -> None:
        """Send what the steps taken produced: replies first (the requesters wait on them, and
        nothing orders a reply against the events on the other socket), then the events, in
        order. Publishing can end a timed pause, whose clearing may run timers and queue more:
        those are sent after what is being sent (not from within it), until nothing is left."""
        if self._flushing:
            return
        self._flushing = True
        try:
            self._flush_all()
        finally:
            self._flushing = False

    def _flush_all(self) -> None:
        while self._out_replies or self._out_reports or self._out_events:
            try:
                if self._out_replies:
                    replies, self._out_replies = self._out_replies, []
                    self._send_replies(replies)
                if self._out_reports:
                    reports, self._out_reports = self._out_reports, []
                    self._out_events += self._keep_events(reports)
                if self._out_events:
                    events, self._out_events = self._out_events, []
                    self._publish_events(events)
            except Exception as error:  # the venue keeps serving; the loss is reported
                self.protocol_errors += 1
                sys.stderr.write(f"venue: sending a step's outputs failed: {error!r}\n")

    def _keep_events(self, reports: list[ExecutionReport]) -> list[_Event]:
        """Encode events and keep them for replay."""
        events = []
        for report in reports:
            frame = encode(report)
            self._frames.append(frame)
            index = self._stream_index.setdefault(report.strategy_id, array("Q"))
            index.append(report.venue_seq)
            events.append(
                _Event(report.strategy_id, report.instrument, report.client_order_id, frame)
            )
        return events

    def _reply(self, output: Respond) -> _Reply:
        key = output.token
        cache = key not in self._uncached
        self._uncached.discard(key)
        route, frame = self._answer(key, output.result, cache=cache)
        # A dropped reply is kept like any other (a resend gets it), never sent.
        return (route if output.delivered else None, frame)

    def _answer(self, key: Hashable, result: BaseModel, *, cache: bool) -> _Reply:
        assert isinstance(key, tuple)
        frame = encode(result, request_id=key[1])
        order = self._submits.pop(key, None)
        if isinstance(result, Rejection) and result.reason is ErrorReason.THROTTLED:
            # Nothing was done: a retry with the same request id after retry_after must be
            # tried afresh, not told "throttled" again for ever.
            cache = False
        if cache:
            # An Acknowledgement to a submit is, by construction, the engine's stored answer
            # (a new acceptance, or the original one for an identical resend): keep a reference.
            if order is not None and isinstance(result, Acknowledgement):
                self._replies[key] = order
            else:
                self._replies[key] = frame
            if len(self._replies) > self._reply_cache_size:
                self._replies.popitem(last=False)
        return self._routes.pop(key, None), frame

    def _send_replies(self, replies: list[_Reply]) -> None:
        for route, frame in replies:
            if route is not None:
                self._send(self._command, route, frame)

    def _publish_events(self, events: list[_Event]) -> None:
        """Publish a step's events, in order, through the transport faults in force."""
        if not self.engine.faults.any_in_force():  # the common case: no fault to look for
            if self._held:
                self._release_held()
            for event in events:
                self._publish(event.strategy_id, event.frame)
            return
        if self._paused():
            self._held += events
            return
        self._release_held()
        for event in events:
            self._publish_with_faults(event)

    def _publish_with_faults(self, event: _Event) -> None:
        if self._take(DropEvents, event):
            return
        if self._take(ReorderEvents, event):
            self._reordered.append(event)
            return
        self._publish(event.strategy_id, event.frame)
        if self._take(DuplicateEvents, event):
            self._publish(event.strategy_id, event.frame)
        late, self._reordered = self._reordered, []
        for held in late:
            self._publish(held.strategy_id, held.frame)

    def _take(self, kind: type[TransportFault], event: _Event) -> bool:
        """Does a transport fault of ``kind`` fire for this event? Journaled when one could."""
        if self.engine.faults.in_force(kind) is None:
            return False
        at = self._pinned.now()
        args = (event.strategy_id, event.instrument, event.client_order_id)
        fired = self.engine.faults.fire(kind, *args) is not None
        if self._journal is not None:
            self._journal.append(
                {"k": "f", "t": at, "kind": kind.__name__, "s": args[0], "i": args[1], "o": args[2]}
            )
        return fired

    def _publish(self, strategy_id: str, frame: bytes) -> None:
        self._events.send(strategy_topic(strategy_id), SNDMORE)
        self._events.send(frame)

    def _paused(self) -> bool:
        """A PausePublishing fault holds events back; once its time is up it is cleared."""
        active = self.engine.faults.in_force(PausePublishing)
        if active is None:
            self._pause_until.clear()
            return False
        seconds = active.fault.seconds if isinstance(active.fault, PausePublishing) else None
        if seconds is None:
            return True
        until = self._pause_until.setdefault(active.fault_id, time.monotonic() + seconds)
        if time.monotonic() < until:
            return True
        del self._pause_until[active.fault_id]
        self._control_command(ClearFaults(fault_id=active.fault_id))
        return self._paused()

    def _release_held(self, *, force: bool = False) -> None:
        if self._paused() and not force:
            return
        if not self._held:
            return
        held, self._held = self._held, []
        for event in held:
            self._publish_with_faults(event)

    def _stored_reply(self, key: Hashable, stored: bytes | tuple[str, str]) -> bytes:
        if isinstance(stored, bytes):
            return stored
        assert isinstance(key, tuple)
        result = self.engine.submit_result(*stored)
        assert result is not None
        return encode(result, request_id=key[1])

    def _send(self, socket: zmq.Socket[bytes], route: _Route, frame: bytes) -> None:
        # Frame by frame rather than send_multipart: the same sends, without its per-call checks
        # (this is on every reply's path).
        try:
            socket.send(route.identity, NOBLOCK_SNDMORE)
            if route.req_peer:
                socket.send(b"", NOBLOCK_SNDMORE)
            socket.send(frame, NOBLOCK)
        except zmq.ZMQError:
            # The peer is gone (or hopelessly behind). Its reply is cached: a retry gets it.
            self.unroutable_replies += 1

    def _heartbeat(self) -> None:
        self._flush()  # the seqs it announces are published before it
        if self._paused():
            return
        self._release_held()
        late, self._reordered = self._reordered, []
        for held in late:
            self._publish(held.strategy_id, held.frame)
        self._flush()  # anything the pause's end released or ran: before the seqs it counts
        beat = Heartbeat(
            session=self.session,
            instance=self.instance,
            venue_seq=self.engine.venue_seq,
            seqs={s: len(index) for s, index in self._stream_index.items()},
            venue_time=self.clock.now(),
        )
        self._events.send_multipart([HEARTBEAT_TOPIC, encode(beat)])

    # --- control channel ----------------------------------------------------------------------

    def _serve_control(self, frames: list[bytes]) -> None:
        try:
            self._serve_control_frames(frames)
        except Exception as error:  # one message must never take the venue down
            self._last_resort(self._control, frames, error)

    def _serve_control_frames(self, frames: list[bytes]) -> None:
        if len(frames) != 2:
            self.protocol_errors += 1
            return
        route = _Route(frames[0], False)
        try:
            envelope = decode(frames[1], models=CONTROL_MODELS)
            result = self._control_command(envelope.body, frames[1])
        except WireError as error:
            self._refuse(self._control, route, error)
            return
        except (VenueControlError, TypeError, ArithmeticError, ValueError) as error:
            result = Rejection(reason=ErrorReason.INVALID_REQUEST, message=str(error))
        frame = encode(result, request_id=envelope.request_id, types=CONTROL_TYPES)
        self._flush()  # a command's effects are out before its answer
        self._send(self._control, route, frame)

    def _control_command(self, command: BaseModel, frame: bytes | None = None) -> BaseModel:
        """Carry out a control command. Those that change the engine are journaled (``frame``:
        the command as it came, else it is encoded here)."""
        engine = self.engine
        match command:
            case InjectFault(fault=Disconnect() | Crash() as fault):
                # Acts now, once, and is never in force: reported as used up (id 0).
                if isinstance(fault, Crash):
                    # Not before CRASH_GRACE: the answer to this command leaves first.
                    self._crash_at = time.monotonic() + max(fault.after, CRASH_GRACE)
                else:
                    self._rebind()
                return Faults(faults=(ActiveFault(fault_id=0, fault=fault, fired=1, remaining=0),))
            case GetStatus():
                return self.status()
            case ListFaults():
                return Faults(faults=tuple(engine.faults.active()))
            case Advance():
                if not isinstance(self.clock, ManualClock):
                    raise TypeError("this venue runs on real time: there is no clock to advance")
                self.clock.advance(command.seconds)
                self._advance(always=True)
                return Done()
        if not isinstance(command, _ENGINE_CONTROLS):
            raise TypeError(f"{type(command).__name__} is not a control command")
        if self._replaying is None:
            self._advance()  # timers due run first, as their own journaled step
        at = self._step_time()
        result: BaseModel = Done()
        outputs: list[Output] = []
        match command:
            case FillOrder():
                outputs = engine.fill(
                    command.strategy_id, command.client_order_id, command.quantity, command.price
                )
            case CancelUnsolicited():
                outputs = engine.cancel_unsolicited(command.strategy_id, command.client_order_id)
            case Restate():
                outputs = engine.restate(
                    command.strategy_id, command.client_order_id, command.quantity
                )
            case InjectFault():
                result = Faults(faults=(engine.faults.inject(command.fault),))
            case ClearFaults():
                engine.faults.clear(command.fault_id)
        if frame is None:
            frame = encode(command, types=CONTROL_TYPES)
        self._step(outputs, {"k": "c", "t": at, "b": frame})
        return result

    def status(self) -> VenueStatus:
        """What the venue holds now."""
        orders = list(self.engine.orders())
        count: Counter[str] = Counter(o.strategy_id for o in orders)
        working: Counter[str] = Counter(o.strategy_id for o in orders if o.status.is_open)
        filled: dict[str, Decimal] = {}
        for order in orders:
            filled[order.strategy_id] = filled.get(order.strategy_id, Decimal(0)) + order.cum_qty
        return VenueStatus(
            venue_id=self.engine.config.venue_id,
            session=self.session,
            instance=self.instance,
            clock=type(self.clock).__name__,
            venue_time=self.clock.now().isoformat(),
            venue_seq=self.engine.venue_seq,
            orders=len(orders),
            open_orders=sum(1 for o in orders if o.status.is_open),
            clients=len(self._clients),
            requests=self.requests,
            protocol_errors=self.protocol_errors,
            unroutable_replies=self.unroutable_replies,
            journal=None if self._journal is None else str(self._journal.path),
            journal_records=0 if self._journal is None else self._journal.records,
            recovered_records=self.recovered_records,
            strategies=tuple(
                StrategyStatus(
                    strategy_id=s,
                    seq=self.engine.stream_seq(s),
                    orders=count[s],
                    open_orders=working[s],
                    filled_qty=filled[s],
                )
                for s in sorted(count)
            ),
            faults=tuple(self.engine.faults.active()),
        )


def _config_dump(config: VenueConfig) -> dict[str, Any]:
    dumped: dict[str, Any] = config.model_dump(mode="json")
    return dumped


CRASH_GRACE = 0.05  # seconds for the answer to a Crash command to leave the process

_ENGINE_CONTROLS = (FillOrder, CancelUnsolicited, Restate, InjectFault, ClearFaults)
_TRANSPORT_FAULTS: dict[str, type[TransportFault]] = {
    kind.__name__: kind for kind in (DropEvents, DuplicateEvents, ReorderEvents, PausePublishing)
}
