"""The server: one single-threaded poll loop that owns the sockets and time, hosting a backend.

Its three channels (``bus.channels``): commands from strategies, events to subscribers, control
commands for the backend (scripted fills and faults for the mock venue); each message comes with
its sender's authenticated key, and ``bus.access`` decides what it may do.

What the bus promises (idempotent retries, numbered streams, replay, sync, heartbeats) is the
protocol's (``bus.venue_protocol``); what an order does is the backend's (``bus.backend``). This
module moves frames between them and the sockets, and batches what it sends.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import zmq

from bus.access import Access, EntitlementsError
from bus.backend import Backend, EntitlementsReloaded, Output, SecurityStatus, failed
from bus.channels import Channels, Endpoints
from bus.codec import Sync, WireError, ids_of
from bus.control_channel import ControlChannel
from bus.curve import ServerKey
from bus.disconnect import DisconnectWatch
from bus.limits import LimitsStatus, ServerLimits
from bus.metrics import RequestTiming
from bus.outbox import Outbox
from bus.risk import Risk
from bus.risk_control import RiskControl
from bus.risk_models import RiskConfig
from bus.sockets import NOBLOCK, NOBLOCK_SNDMORE, SNDMORE
from bus.venue_protocol import Event, Execute, ReplayWanted, Reply, Route, VenueProtocol
from ports.enums import Outcome
from ports.models import Rejection, Request

_BATCH = 256  # messages taken from one socket before the others get a turn
# Outputs of this many requests go out together: each send that finds libzmq's I/O thread asleep
# wakes it, so a burst of replies to a pipelining client costs one wake-up rather than one each.
# A lone request is flushed at once.
_FLUSH_EVERY = 16
_STOP_DRAIN = 1.0  # seconds a stopping server keeps answering requests that already arrived
_log = logging.getLogger("orderbus.server")  # bus.logs formats it


__all__ = ["Endpoints", "Server"]


class Server:
    """Serves one backend on three sockets (``bus.channels``). ``bind()``, then ``serve()``
    until ``stop()``. ``access`` and ``key``: who may connect and do what (docs/security.md);
    neither: development mode, loopback only unless ``insecure``. ``risk``: pre-trade limits
    (``bus.risk``); ``state``: the file that keeps halts and limits set at run time."""

    def __init__(
        self,
        backend: Backend,
        endpoints: Endpoints,
        *,
        heartbeat_interval: float = 0.5,
        limits: ServerLimits | None = None,
        access: Access | None = None,
        key: ServerKey | None = None,
        insecure: bool = False,
        risk: RiskConfig | None = None,
        state: Path | None = None,
    ) -> None:
        self.backend = backend
        self._heartbeat_interval = heartbeat_interval
        self.instance = uuid.uuid4().hex
        self.access = access if access is not None else Access()
        self._protocol = VenueProtocol(
            session=backend.session or uuid.uuid4().hex,
            instance=self.instance,
            recall=backend.recall,
            limits=limits,
            access=self.access,
            risk=Risk(risk),
            # Expired each heartbeat: a longer gap is the server's own stall, not a client's.
            watch=DisconnectWatch(stall=2 * heartbeat_interval),
            wall_clock=lambda: datetime.now(UTC),
        )
        self._channels = Channels(
            endpoints, self.access, key=key, insecure=insecure, limits=self._protocol.limits
        )
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._poller = zmq.Poller()
        self._stopping = False
        self._reload_wanted = False
        self.timing = RequestTiming()  # bus.metrics: arrival to answer sent
        # Looked up at each call: a rebind replaces the sockets.
        self._outbox = Outbox(
            self._protocol,
            lambda route, frame: self._send(self._channels.command, route, frame),
            lambda events: self._publish(events),
            backend.events,
            timing=self.timing,
        )
        self._control = ControlChannel(
            self, lambda route, frame: self._send(self._channels.control, route, frame)
        )
        self.unroutable_replies = 0
        self.reply_queue_drops = 0
        self._soon: deque[Callable[[], None]] = deque()  # call_soon, from any thread
        self.endpoints: Endpoints | None = None
        # Before the backend starts: the state file's halts hold from the first request.
        self.risk_control = RiskControl(self, state)
        backend.start(self)
        # The metrics count this process's traffic: not the answers a recovery replayed.
        self._protocol.rejections.clear()

    @property
    def protocol(self) -> VenueProtocol:
        return self._protocol

    @property
    def channels(self) -> Channels:
        """The sockets (a rebind replaces them); ``bus.logs`` watches the command socket's."""
        return self._channels

    @property
    def subscribed(self) -> list[str]:
        """The strategies whose streams have subscribers (the most recent ``heartbeat_streams``)."""
        return list(self._channels.subscribed)

    @property
    def session(self) -> str:
        return self._protocol.session

    @property
    def security(self) -> SecurityStatus:
        """What protects the channels, and what was refused."""
        return self._channels.security_status(self.access)

    @property
    def limits(self) -> LimitsStatus:
        """The limits in force, and how full each bound is."""
        status = self._protocol.limits_status(len(self._channels.subscribed))
        return status.model_copy(update={"reply_queue_drops": self.reply_queue_drops})

    # --- sockets ------------------------------------------------------------------------------

    def bind(self) -> Endpoints:
        """Bind the three sockets; port 0 picks a free port. Returns the endpoints bound.
        Raises ``bus.channels.InsecureBind`` for a plaintext server beyond loopback."""
        self.endpoints = self._channels.bind()
        return self.endpoints

    def rebind(self, *, command: bool = True) -> None:
        # What was done before goes to the old sockets, which drop it like the rest of what
        # they hold: replies are kept for the resends, events for replay.
        self.flush()
        channels = self._channels
        self._poller.unregister(channels.events)
        if command:
            self._poller.unregister(channels.command)
        channels.rebind(command=command)
        self._poller.register(channels.events, zmq.POLLIN)
        if command:
            self._poller.register(channels.command, zmq.POLLIN)

    def reload(self) -> EntitlementsReloaded:
        """Read the entitlements again (SIGHUP, or the admin command). A key that lost anything
        is refused from its next request on, and every subscriber subscribes again."""
        narrowed = self.access.reload()
        if narrowed:
            self.rebind(command=False)
        return EntitlementsReloaded(keys=self.access.keys, resubscribed=narrowed)

    def request_reload(self) -> None:
        """Ask the loop to ``reload()``. Safe from a signal handler or another thread."""
        self._reload_wanted = True
        self.stop_waiting()

    # --- lifecycle ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask ``serve`` to return. Safe from a signal handler or another thread."""
        self._stopping = True
        self.stop_waiting()

    def call_soon(self, call: Callable[[], None]) -> None:
        """Run ``call`` on the loop at its next turn (a metrics scrape). Safe from any thread."""
        self._soon.append(call)
        self.stop_waiting()

    def stop_waiting(self) -> None:
        with contextlib.suppress(BlockingIOError):  # the pipe is full of wake-ups already
            os.write(self._wake_w, b"x")

    def close(self) -> None:
        self._channels.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        self.backend.close()

    def serve(self) -> None:
        """Run the poll loop until ``stop()``; then answer what already arrived and return."""
        backend_fd = self.backend.fileno()
        channels = self._channels
        for source in (channels.command, channels.events, channels.control, self._wake_r):
            self._poller.register(source, zmq.POLLIN)
        if backend_fd is not None:
            self._poller.register(backend_fd, zmq.POLLIN)
        next_heartbeat = time.monotonic()
        expiring = False
        while not self._stopping:
            now = time.monotonic()
            self.backend.poll(now)
            self.flush()
            if now >= next_heartbeat:
                self._heartbeat()
                expiring = True
                next_heartbeat = now + self._heartbeat_interval
            ready = dict(self._poller.poll(self._poll_timeout_ms(next_heartbeat)))
            if channels.command in ready:
                self._drain(channels.command, self._serve_command)
            if expiring:  # after what came meanwhile: a keepalive read now is not silence
                expiring = False
                self.risk_control.disconnected(self._protocol.watch.expired(time.monotonic()))
            if channels.events in ready:
                channels.take_subscriptions()
            if channels.control in ready:
                self._drain(channels.control, self._serve_control)
            if self._wake_r in ready:
                os.read(self._wake_r, 4096)
            while self._soon:
                self._soon.popleft()()
            if self._reload_wanted:
                self._reload_wanted = False
                self._reload_logged()
            self._release_due()
        deadline = time.monotonic() + _STOP_DRAIN
        while time.monotonic() < deadline and channels.command.poll(0):
            self._drain(channels.command, self._serve_command)
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

    def _reload_logged(self) -> None:
        try:
            reloaded = self.reload()
        except EntitlementsError as error:
            _log.error("entitlements not reloaded, the old stay: %s", error,
                       extra={"event": "entitlements_reload_failed"})  # fmt: skip
            return
        _log.info("entitlements reloaded: %d keys", reloaded.keys,
                  extra={"event": "entitlements_reloaded", "keys": reloaded.keys})  # fmt: skip

    def _drain(
        self, socket: zmq.Socket[bytes], serve: Callable[[list[bytes], str | None], None]
    ) -> None:
        count = 0
        try:
            while count < _BATCH:
                message = self._channels.receive(socket)
                if message is None:
                    return
                serve(*message)
                count += 1
                if count % _FLUSH_EVERY == 0:
                    self.flush()
        finally:
            self.flush()

    # --- command channel ----------------------------------------------------------------------

    def _serve_command(self, frames: list[bytes], user: str | None) -> None:
        try:
            self._serve_command_frames(frames, user)
        except Exception as error:  # one message must never take the server down
            self._last_resort(self._channels.command, frames, error)

    def _serve_command_frames(self, frames: list[bytes], user: str | None) -> None:
        command = self._channels.command
        if len(frames) == 2:
            route, body = Route(frames[0], False), frames[1]
        elif len(frames) == 3 and frames[1] == b"":
            route, body = Route(frames[0], True), frames[2]
        else:
            self._protocol.requests += 1
            req_peer = len(frames) > 2 and frames[1] == b""  # a REQ only reads delimited replies
            n = len(frames) - 1
            error = WireError(f"a request is one frame (after a REQ's empty delimiter), not {n}")
            self._send(command, Route(frames[0], req_peer), self._protocol.refuse(error))
            return
        now = time.monotonic()
        effect = self._protocol.receive(route, body, user, now, datetime.now(UTC))
        if type(effect) is Execute:
            self.timing.arrived(effect.key, effect.request, now)
            try:
                self.backend.execute(effect.key, effect.request, effect.frame)
            except Exception as error:  # answered, so that its resends are not left waiting
                to, frame = self._protocol.answer(effect.key, _failed(effect.request, error))
                if to is not None:
                    self._send(command, to, frame)
        elif type(effect) is Reply:
            self._send(command, effect.route, effect.frame)
        elif type(effect) is ReplayWanted:
            self.flush()  # what it asks for is in the store first
            reply = self._protocol.replay_reply(effect.request_id, effect.request)
            self._send(command, effect.route, reply)

    def _last_resort(
        self, socket: zmq.Socket[bytes], frames: list[bytes], error: Exception
    ) -> None:
        _log.error("request failed: %s: %s", type(error).__name__, error,
                   extra={"event": "request_failed"})  # fmt: skip
        if frames:
            route = Route(frames[0], len(frames) > 2 and frames[1] == b"")
            request_id = ids_of(frames[-1])[0]  # the sender can match the answer
            refusal = WireError(f"the venue could not process this: {error}", request_id=request_id)
            self._send(socket, route, self._protocol.refuse(refusal))
        else:
            self._protocol.protocol_errors += 1

    def _serve_control(self, frames: list[bytes], user: str | None) -> None:
        try:
            self._control.serve(frames, user)
        except Exception as error:  # one message must never take the server down
            self._last_resort(self._channels.control, frames, error)

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
        socket = self._channels.events
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
        except zmq.Again:
            # The peer's queue is full (``reply_queue``): it does not read. Dropped, neither
            # waited for nor retried; a resend of the same request id gets the answer again.
            self.reply_queue_drops += 1
        except zmq.ZMQError:
            # The peer is gone (EHOSTUNREACH). Its reply is kept: a retry gets it.
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
        socket = self._channels.events
        beats = self._protocol.heartbeats(self.backend.venue_time(), self._channels.subscribed)
        for topic, frame in beats:
            socket.send(topic, SNDMORE)
            socket.send(frame)


def _failed(request: Request | Sync, error: Exception) -> Rejection:
    """The answer to a request the backend raised on: it may have acted before it did."""
    _log.error("request failed: %s: %s", type(error).__name__, error,
               extra={"event": "request_failed"})  # fmt: skip
    return failed(request, f"the venue could not process this: {error}", Outcome.UNKNOWN)
