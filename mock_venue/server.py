"""The venue process: the engine behind ZeroMQ sockets, in one single-threaded poll loop.

- command ROUTER: requests from strategies (DEALER, or plain REQ with its empty delimiter);
- event PUB: every execution report on its strategy's topic, and heartbeats;
- control ROUTER: what a test harness tells the venue (scripted fills, faults, logical time).

Every request is idempotent by (client id, request id): the reply to a state-changing request is
kept and sent again for a retry, which is never executed twice.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import uuid
from array import array
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from decimal import Decimal

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
from bus.sockets import readable
from mock_venue.clock import Clock, ManualClock
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
from mock_venue.engine import Output, Publish, VenueControlError, VenueEngine
from ports.enums import ErrorReason
from ports.models import (
    Acknowledgement,
    AmendOrder,
    CancelAllOrders,
    CancelOrder,
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


class VenueServer:
    """Serves one engine on three sockets. ``bind()``, then ``serve()`` until ``stop()``."""

    def __init__(
        self,
        engine: VenueEngine,
        clock: Clock,
        endpoints: Endpoints,
        *,
        heartbeat_interval: float = 0.5,
        reply_cache_size: int = 200_000,
        session: str | None = None,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self._wanted = endpoints
        self._heartbeat_interval = heartbeat_interval
        self._reply_cache_size = reply_cache_size
        self._context = zmq.Context()
        self._command = self._context.socket(zmq.ROUTER)
        self._events = self._context.socket(zmq.PUB)
        self._control = self._context.socket(zmq.ROUTER)
        for router in (self._command, self._control):
            # An unroutable reply raises instead of vanishing; the reply stays cached for a retry.
            router.setsockopt(zmq.ROUTER_MANDATORY, 1)
            # Oversized garbage disconnects the peer before it costs memory; up to this size we
            # read the frame and answer it with a typed error.
            router.setsockopt(zmq.MAXMSGSIZE, 16 * MAX_FRAME_BYTES)
            router.setsockopt(zmq.RCVHWM, 100_000)
            router.setsockopt(zmq.SNDHWM, 100_000)
        # Loss at the PUB high-water mark is recovered by replay, but should be rare.
        self._events.setsockopt(zmq.SNDHWM, 1_000_000)
        for socket in (self._command, self._events, self._control):
            socket.setsockopt(zmq.LINGER, 2000)  # flush replies on shutdown, never hang
        # No ZMTP heartbeats (HEARTBEAT_IVL): with them, libzmq 4.3.5 can abort the whole process
        # (assertion in stream_engine_base.cpp) when peers vanish mid-burst. Liveness is the
        # venue's own heartbeat on the event channel.
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._stopping = False
        self._routes: dict[Hashable, _Route] = {}
        self._uncached: set[Hashable] = set()
        # A submit's reply is kept as (strategy, client order id): the engine holds the result
        # itself, so a retry re-encodes it (byte for byte the same) instead of a stored copy.
        self._submits: dict[Hashable, tuple[str, str]] = {}
        self._replies: OrderedDict[Hashable, bytes | tuple[str, str]] = OrderedDict()
        self._frames: list[bytes] = []  # every published event, by venue_seq - 1
        self._stream_index: dict[str, array[int]] = {}  # strategy -> venue_seq of its events
        self._clients: set[str] = set()
        self.requests = 0
        self.protocol_errors = 0
        self.unroutable_replies = 0
        self.endpoints: Endpoints | None = None
        self.instance = uuid.uuid4().hex
        self.session = session or uuid.uuid4().hex

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

    def serve(self) -> None:
        """Run the poll loop until ``stop()``; then answer what already arrived and return."""
        poller = zmq.Poller()
        poller.register(self._command, zmq.POLLIN)
        poller.register(self._control, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        next_heartbeat = time.monotonic()
        while not self._stopping:
            now = time.monotonic()
            if now >= next_heartbeat:
                self._heartbeat()
                next_heartbeat = now + self._heartbeat_interval
            ready = dict(poller.poll(self._poll_timeout_ms(next_heartbeat - now)))
            if self._command in ready:
                self._drain(self._command, self._serve_command)
            if self._control in ready:
                self._drain(self._control, self._serve_control)
            if self._wake_r in ready:
                os.read(self._wake_r, 4096)
            if not isinstance(self.clock, ManualClock):
                self._dispatch(self.engine.advance())
        # Requests that arrived before the stop still get their answer; a peer that keeps
        # sending cannot hold the shutdown up for more than a moment.
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and self._command.poll(0):
            self._drain(self._command, self._serve_command)
        self._heartbeat()

    def _poll_timeout_ms(self, until_heartbeat: float) -> int:
        wait = until_heartbeat
        due = self.engine.next_timer_at()
        if due is not None and not isinstance(self.clock, ManualClock):
            wait = min(wait, (due - self.clock.now()).total_seconds())
        return max(0, int(wait * 1000) + 1)

    def _drain(
        self,
        socket: zmq.Socket[bytes],
        serve: Callable[[list[bytes]], None],
        limit: int | None = _BATCH,
    ) -> None:
        count = 0
        while limit is None or count < limit:
            if not readable(socket):
                return
            frames = socket.recv_multipart(zmq.NOBLOCK)
            serve(frames)
            count += 1

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
        self._clients.add(client)
        key = (client, envelope.request_id)
        cached = self._replies.get(key)
        if cached is not None:  # a retry: the stored answer, the work is not done again
            self._send(self._command, route, self._stored_reply(key, cached))
            return
        known = key in self._routes
        self._routes[key] = route  # answer the latest connection of this client
        if known:
            return  # still being worked on (a delayed ack): one answer, when it is ready
        request = envelope.body
        if isinstance(request, _ENGINE_REQUESTS):
            if isinstance(request, _QUERIES):
                self._uncached.add(key)
            elif isinstance(request, SubmitOrder):
                self._submits[key] = (request.strategy_id, request.client_order_id)
            self._dispatch(self.engine.handle(request, key))
        elif isinstance(request, Sync):
            self._answer(key, self._sync(request), cache=False)
        elif isinstance(request, Replay):
            self._answer(key, self._replay(request), cache=False)
        else:
            del self._routes[key]
            self._refuse(
                self._command,
                route,
                WireError(f"{envelope.type} is not a request", request_id=envelope.request_id),
            )

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

    def _dispatch(self, outputs: Iterable[Output]) -> None:
        # Replies first: the requester is waiting on them, and nothing orders a reply against the
        # events on the other socket anyway. Events keep their own order.
        events = []
        for output in outputs:
            if isinstance(output, Publish):
                events.append(output.report)
            else:
                key = output.token
                cache = key not in self._uncached
                self._uncached.discard(key)
                self._answer(key, output.result, cache=cache)
        for report in events:
            frame = encode(report)
            self._frames.append(frame)
            self._stream_index.setdefault(report.strategy_id, array("Q")).append(report.venue_seq)
            self._events.send(strategy_topic(report.strategy_id), zmq.SNDMORE)
            self._events.send(frame)

    def _answer(self, key: Hashable, result: BaseModel, *, cache: bool) -> None:
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
        route = self._routes.pop(key, None)
        if route is not None:
            self._send(self._command, route, frame)

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
            socket.send(route.identity, zmq.NOBLOCK | zmq.SNDMORE)
            if route.req_peer:
                socket.send(b"", zmq.NOBLOCK | zmq.SNDMORE)
            socket.send(frame, zmq.NOBLOCK)
        except zmq.ZMQError:
            # The peer is gone (or hopelessly behind). Its reply is cached: a retry gets it.
            self.unroutable_replies += 1

    def _heartbeat(self) -> None:
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
            result = self._control_command(envelope.body)
        except WireError as error:
            self._refuse(self._control, route, error)
            return
        except (VenueControlError, TypeError, ArithmeticError, ValueError) as error:
            result = Rejection(reason=ErrorReason.INVALID_REQUEST, message=str(error))
        frame = encode(result, request_id=envelope.request_id, types=CONTROL_TYPES)
        self._send(self._control, route, frame)

    def _control_command(self, command: BaseModel) -> BaseModel:
        engine = self.engine
        match command:
            case Advance():
                if not isinstance(self.clock, ManualClock):
                    raise TypeError("this venue runs on real time: there is no clock to advance")
                self.clock.advance(command.seconds)
                self._dispatch(engine.advance())
            case FillOrder():
                self._dispatch(
                    engine.fill(
                        command.strategy_id,
                        command.client_order_id,
                        command.quantity,
                        command.price,
                    )
                )
            case CancelUnsolicited():
                self._dispatch(
                    engine.cancel_unsolicited(command.strategy_id, command.client_order_id)
                )
            case Restate():
                self._dispatch(
                    engine.restate(command.strategy_id, command.client_order_id, command.quantity)
                )
            case InjectFault():
                return Faults(faults=(engine.inject(command.fault),))
            case ClearFaults():
                engine.clear_faults(command.fault_id)
            case ListFaults():
                return Faults(faults=tuple(engine.active_faults()))
            case GetStatus():
                return self.status()
            case _:
                raise TypeError(f"{type(command).__name__} is not a control command")
        return Done()

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
            clock=type(self.clock).__name__,
            venue_time=self.clock.now().isoformat(),
            venue_seq=self.engine.venue_seq,
            orders=len(orders),
            open_orders=sum(1 for o in orders if o.status.is_open),
            clients=len(self._clients),
            requests=self.requests,
            protocol_errors=self.protocol_errors,
            unroutable_replies=self.unroutable_replies,
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
            faults=tuple(self.engine.active_faults()),
        )
