"""The server: one single-threaded poll loop that owns the sockets and time, hosting a backend.

- command ROUTER: requests from strategies (DEALER, or plain REQ with its empty delimiter);
- event PUB: every execution report on its strategy's topic, and heartbeats;
- control ROUTER: commands for the backend (scripted fills and faults for the mock venue).

What the bus promises (idempotent retries, numbered streams, replay, sync, heartbeats) is the
protocol's (``bus.venue_protocol``); what an order does is the backend's (``bus.backend``). This
module moves frames between them and the sockets, and batches what it sends.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import zmq

from bus.backend import Backend, Output, failed
from bus.codec import MAX_FRAME_BYTES, Sync, WireError, decode, encode
from bus.outbox import Outbox
from bus.sockets import NOBLOCK, NOBLOCK_SNDMORE, SNDMORE, readable
from bus.venue_protocol import Event, Execute, ReplayWanted, Reply, Route, VenueProtocol
from ports.enums import ErrorReason, Outcome
from ports.models import Rejection, Request

_BATCH = 256  # messages taken from one socket before the others get a turn
# Outputs of this many requests go out together: each send that finds libzmq's I/O thread asleep
# wakes it, so a burst of replies to a pipelining client costs one wake-up rather than one each.
# A lone request is flushed at once.
_FLUSH_EVERY = 16
_STOP_DRAIN = 1.0  # seconds a stopping server keeps answering requests that already arrived


@dataclass(frozen=True)
class Endpoints:
    """Where a running server listens (ports resolved)."""

    command: str
    events: str
    control: str


class Server:
    """Serves one backend on three sockets. ``bind()``, then ``serve()`` until ``stop()``."""

    def __init__(
        self,
        backend: Backend,
        endpoints: Endpoints,
        *,
        heartbeat_interval: float = 0.5,
        reply_cache_size: int = 200_000,
    ) -> None:
        self.backend = backend
        self._wanted = endpoints
        self._heartbeat_interval = heartbeat_interval
        self.instance = uuid.uuid4().hex
        self._protocol = VenueProtocol(
            session=backend.session or uuid.uuid4().hex,
            instance=self.instance,
            recall=backend.recall,
            reply_cache_size=reply_cache_size,
        )
        self._control_types = {m: n for n, m in backend.control_models.items()}
        self._context = zmq.Context()
        self._command, self._events = self._command_socket(), self._events_socket()
        self._control = self._context.socket(zmq.ROUTER)
        _configure_router(self._control)
        self._control.setsockopt(zmq.LINGER, 2000)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._poller = zmq.Poller()
        self._stopping = False
        # Looked up at each call: a rebind replaces the sockets.
        self._outbox = Outbox(
            self._protocol,
            lambda route, frame: self._send(self._command, route, frame),
            lambda events: self._publish(events),
            backend.events,
        )
        self.unroutable_replies = 0
        self.endpoints: Endpoints | None = None
        backend.start(self)

    @property
    def protocol(self) -> VenueProtocol:
        return self._protocol

    @property
    def session(self) -> str:
        return self._protocol.session

    # --- sockets ------------------------------------------------------------------------------

    def _command_socket(self) -> zmq.Socket[bytes]:
        socket = self._context.socket(zmq.ROUTER)
        _configure_router(socket)
        socket.setsockopt(zmq.LINGER, 2000)  # flush replies on shutdown, never hang
        return socket

    def _events_socket(self) -> zmq.Socket[bytes]:
        socket = self._context.socket(zmq.PUB)
        # Loss at the PUB high-water mark is recovered by replay, but should be rare.
        socket.setsockopt(zmq.SNDHWM, 1_000_000)
        socket.setsockopt(zmq.LINGER, 2000)
        return socket

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

    def rebind(self) -> None:
        assert self.endpoints is not None
        # What was done before goes to the old sockets, which drop it like the rest of what
        # they hold: replies are kept for the resends, events for replay.
        self.flush()
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

    # --- lifecycle ----------------------------------------------------------------------------

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
        self.backend.close()

    def serve(self) -> None:
        """Run the poll loop until ``stop()``; then answer what already arrived and return."""
        backend_fd = self.backend.fileno()
        for source in (self._command, self._control, self._wake_r):
            self._poller.register(source, zmq.POLLIN)
        if backend_fd is not None:
            self._poller.register(backend_fd, zmq.POLLIN)
        next_heartbeat = time.monotonic()
        while not self._stopping:
            now = time.monotonic()
            self.backend.poll(now)
            self.flush()
            if now >= next_heartbeat:
                self._heartbeat()
                next_heartbeat = now + self._heartbeat_interval
            ready = dict(self._poller.poll(self._poll_timeout_ms(next_heartbeat)))
            if self._command in ready:
                self._drain(self._command, self._serve_command)
            if self._control in ready:
                self._drain(self._control, self._serve_control)
            if self._wake_r in ready:
                os.read(self._wake_r, 4096)
            self._release_due()
        deadline = time.monotonic() + _STOP_DRAIN
        while time.monotonic() < deadline and self._command.poll(0):
            self._drain(self._command, self._serve_command)
        self.backend.poll(time.monotonic())
        self.flush()
        if self.backend.events is not None:
            self._publish(self.backend.events.release())
        self._heartbeat()

    def _release_due(self) -> None:
        """A timed pause ends on time, not at the next heartbeat."""
        filter_ = self.backend.events
        due = None if filter_ is None else filter_.next_due()
        if filter_ is not None and due is not None and due <= time.monotonic():
            self._publish(filter_.route([]))
            self.flush()  # what ending the pause ran

    def _poll_timeout_ms(self, next_heartbeat: float) -> int:
        now = time.monotonic()
        due = [next_heartbeat, self.backend.next_due(now)]
        if self.backend.events is not None:
            due.append(self.backend.events.next_due())
        wait = min(d for d in due if d is not None) - now
        return max(0, int(wait * 1000) + 1)

    def _drain(self, socket: zmq.Socket[bytes], serve: Callable[[list[bytes]], None]) -> None:
        count = 0
        try:
            while count < _BATCH:
                if not readable(socket):
                    return
                serve(socket.recv_multipart(NOBLOCK))
                count += 1
                if count % _FLUSH_EVERY == 0:
                    self.flush()
        finally:
            self.flush()

    # --- command channel ----------------------------------------------------------------------

    def _serve_command(self, frames: list[bytes]) -> None:
        try:
            self._serve_command_frames(frames)
        except Exception as error:  # one message must never take the server down
            self._last_resort(self._command, frames, error)

    def _serve_command_frames(self, frames: list[bytes]) -> None:
        if len(frames) == 2:
            route, body = Route(frames[0], False), frames[1]
        elif len(frames) == 3 and frames[1] == b"":
            route, body = Route(frames[0], True), frames[2]
        else:
            self._protocol.requests += 1
            req_peer = len(frames) > 2 and frames[1] == b""  # a REQ only reads delimited replies
            n = len(frames) - 1
            error = WireError(f"a request is one frame (after a REQ's empty delimiter), not {n}")
            self._send(self._command, Route(frames[0], req_peer), self._protocol.refuse(error))
            return
        effect = self._protocol.receive(route, body)
        if type(effect) is Execute:
            try:
                self.backend.execute(effect.key, effect.request, effect.frame)
            except Exception as error:  # answered, so that its resends are not left waiting
                to, frame = self._protocol.answer(effect.key, _failed(effect.request, error))
                if to is not None:
                    self._send(self._command, to, frame)
        elif type(effect) is Reply:
            self._send(self._command, effect.route, effect.frame)
        elif type(effect) is ReplayWanted:
            self.flush()  # what it asks for is in the store first
            reply = self._protocol.replay_reply(effect.request_id, effect.request)
            self._send(self._command, effect.route, reply)

    def _last_resort(
        self, socket: zmq.Socket[bytes], frames: list[bytes], error: Exception
    ) -> None:
        sys.stderr.write(f"server: request failed: {type(error).__name__}: {error}\n")
        if frames:
            route = Route(frames[0], len(frames) > 2 and frames[1] == b"")
            refusal = WireError(f"the venue could not process this: {error}")
            self._send(socket, route, self._protocol.refuse(refusal))
        else:
            self._protocol.protocol_errors += 1

    # --- control channel ----------------------------------------------------------------------

    def _serve_control(self, frames: list[bytes]) -> None:
        try:
            self._serve_control_frames(frames)
        except Exception as error:  # one message must never take the server down
            self._last_resort(self._control, frames, error)

    def _serve_control_frames(self, frames: list[bytes]) -> None:
        if len(frames) != 2:
            self._protocol.protocol_errors += 1
            return
        route = Route(frames[0], False)
        try:
            envelope = decode(frames[1], models=self.backend.control_models)
        except WireError as error:
            self._send(self._control, route, self._protocol.refuse(error))
            return
        try:
            result = self.backend.control(envelope.body, frames[1])
        except (TypeError, ArithmeticError, ValueError) as error:
            result = Rejection(reason=ErrorReason.INVALID_REQUEST, message=str(error))
        frame = encode(result, request_id=envelope.request_id, types=self._control_types)
        self.flush()  # a command's effects are out before its answer
        self._send(self._control, route, frame)

    # --- outputs ------------------------------------------------------------------------------

    def deliver(
        self,
        outputs: Sequence[Output],
        *,
        before_send: Callable[[list[bytes]], None] | None = None,
        send: bool = True,
    ) -> None:
        self._outbox.deliver(outputs, before_send=before_send, send=send)

    def flush(self) -> None:
        """Send what the steps taken produced (see ``bus.outbox.Outbox.flush``)."""
        self._outbox.flush()

    def _publish(self, events: list[Event]) -> None:
        socket = self._events
        for event in events:
            socket.send(event.topic, SNDMORE)
            socket.send(event.frame)

    def _send(self, socket: zmq.Socket[bytes], route: Route, frame: bytes) -> None:
        # Frame by frame rather than send_multipart: the same sends, without its per-call checks
        # (this is on every reply's path).
        try:
            socket.send(route.identity, NOBLOCK_SNDMORE)
            if route.req_peer:
                socket.send(b"", NOBLOCK_SNDMORE)
            socket.send(frame, NOBLOCK)
        except zmq.ZMQError:
            # The peer is gone (or hopelessly behind). Its reply is kept: a retry gets it.
            self.unroutable_replies += 1

    def _heartbeat(self) -> None:
        self.flush()  # the numbers it announces are published before it
        filter_ = self.backend.events
        if filter_ is not None:
            late = filter_.before_heartbeat()
            if late is None:
                return  # publishing is paused, heartbeats included
            self._publish(late)
            self.flush()  # anything the pause's end released or ran: before the numbers
        topic, frame = self._protocol.heartbeat(self.backend.venue_time())
        self._events.send_multipart([topic, frame])


def _configure_router(router: zmq.Socket[bytes]) -> None:
    # An unroutable reply raises instead of vanishing; the reply stays kept for a retry.
    router.setsockopt(zmq.ROUTER_MANDATORY, 1)
    # Oversized garbage disconnects the peer before it costs memory; up to this size we read the
    # frame and answer it with a typed error.
    router.setsockopt(zmq.MAXMSGSIZE, 16 * MAX_FRAME_BYTES)
    router.setsockopt(zmq.RCVHWM, 100_000)
    router.setsockopt(zmq.SNDHWM, 100_000)
    # No ZMTP heartbeats (HEARTBEAT_IVL): with them, libzmq 4.3.5 can abort the whole process
    # (assertion in stream_engine_base.cpp) when peers vanish mid-burst. Liveness is the
    # server's own heartbeat on the event channel.


def _failed(request: Request | Sync, error: Exception) -> Rejection:
    """The answer to a request the backend raised on: it may have acted before it did."""
    sys.stderr.write(f"server: request failed: {type(error).__name__}: {error}\n")
    return failed(request, f"the venue could not process this: {error}", Outcome.UNKNOWN)
