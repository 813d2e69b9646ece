"""A server's three sockets, secured and bound, and who sent each message.

- command ROUTER: requests from strategies (DEALER, or plain REQ with its empty delimiter);
- event XPUB: execution reports on their strategy's topic, and heartbeats. ``XPUB_MANUAL``: each
  subscription is read with its sender's identity and applied only if ``Access`` allows it, so a
  peer receives only the streams it is entitled to;
- control ROUTER: commands for the backend (admins only on a server with a key).

With a ``ServerKey`` every socket is a CURVE server and the authenticator admits the keys the
entitlements list; without one (development mode) only loopback addresses may be bound unless
``insecure``.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import zmq

from bus.access import Access
from bus.backend import SecurityStatus
from bus.codec import MAX_FRAME_BYTES, strategy_of_topic
from bus.curve import ServerKey, ServerSecurity
from bus.limits import ServerLimits
from bus.sockets import NOBLOCK, readable


@dataclass(frozen=True)
class Endpoints:
    """Where a running server listens (ports resolved)."""

    command: str
    events: str
    control: str


class InsecureBind(ValueError):
    """A plaintext server asked to listen beyond loopback."""


def check_loopback(endpoint: str) -> None:
    """Raise ``InsecureBind`` unless ``endpoint`` is reachable from this host only."""
    transport = endpoint.split("://", 1)[0]
    if transport in ("ipc", "inproc"):
        return
    host = urlsplit(endpoint).hostname or ""
    loopback = host == "localhost"
    if not loopback:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
    if not loopback:
        raise InsecureBind(
            f"refusing to bind {endpoint} without a key: any host could act as any strategy. "
            "Give --server-key and --entitlements (docs/security.md), or --insecure to bind "
            "it plaintext anyway"
        )


class Channels:
    """The sockets of one server on a Context of their own."""

    def __init__(
        self,
        wanted: Endpoints,
        access: Access,
        *,
        key: ServerKey | None = None,
        insecure: bool = False,
        limits: ServerLimits | None = None,
    ) -> None:
        if key is None and access.secure:
            raise ValueError("entitlements need a server key")
        if key is not None and not access.secure:
            raise ValueError("a server key needs entitlements (who may connect)")
        self.wanted = wanted
        self.access = access
        self.insecure = insecure
        self.limits = limits if limits is not None else ServerLimits()
        self.context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.security = None if key is None else ServerSecurity(self.context, key, access)
        self.command, self.events = self._command_socket(), self._events_socket()
        self.control = self._router()
        self.control.setsockopt(zmq.LINGER, 2000)
        self.endpoints: Endpoints | None = None
        # Strategy topics with an entitled subscriber: each gets its own heartbeat. Kept in
        # order of the latest subscription, so that the bound drops the longest quiet.
        self.subscribed: dict[str, None] = {}
        self.subscriptions_refused = 0

    @property
    def mode(self) -> str:
        """What protects the channels, as the ready line and ``status`` say it."""
        if self.security is not None:
            return "curve"
        return "plaintext, insecure" if self.insecure else "plaintext, loopback only"

    # --- sockets ------------------------------------------------------------------------------

    def _secure(self, socket: zmq.Socket[bytes]) -> zmq.Socket[bytes]:
        if self.security is not None:
            self.security.apply(socket)
        return socket

    def _router(self) -> zmq.Socket[bytes]:
        router = self._secure(self.context.socket(zmq.ROUTER))
        # An unroutable reply raises instead of vanishing; the reply stays kept for a retry.
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        # Oversized garbage disconnects the peer before it costs memory; up to this size we
        # read the frame and answer it with a typed error.
        router.setsockopt(zmq.MAXMSGSIZE, 16 * MAX_FRAME_BYTES)
        router.setsockopt(zmq.RCVHWM, 100_000)
        # Bounds what a peer that does not read its replies can pin: at the mark a send fails
        # at once (EAGAIN, with ROUTER_MANDATORY) and the server drops and counts the reply.
        router.setsockopt(zmq.SNDHWM, self.limits.reply_queue)
        # No ZMTP heartbeats (HEARTBEAT_IVL): with them, libzmq 4.3.5 can abort the whole
        # process (assertion in stream_engine_base.cpp) when peers vanish mid-burst. Liveness
        # is the server's own heartbeat on the event channel.
        return router

    def _command_socket(self) -> zmq.Socket[bytes]:
        socket = self._router()
        socket.setsockopt(zmq.LINGER, 2000)  # flush replies on shutdown, never hang
        return socket

    def _events_socket(self) -> zmq.Socket[bytes]:
        socket = self._secure(self.context.socket(zmq.XPUB))
        socket.setsockopt(zmq.XPUB_MANUAL, 1)
        # Loss at the high-water mark is recovered by replay; the mark bounds what one
        # subscriber that stopped reading can pin.
        socket.setsockopt(zmq.SNDHWM, self.limits.event_queue)
        socket.setsockopt(zmq.LINGER, 2000)
        return socket

    def bind(self) -> Endpoints:
        """Bind the three sockets; port 0 picks a free port. Returns the endpoints bound.
        Raises ``InsecureBind`` for a plaintext server beyond loopback."""
        wanted = (self.wanted.command, self.wanted.events, self.wanted.control)
        if self.security is None and not self.insecure:
            for endpoint in wanted:
                check_loopback(endpoint)
        bound = []
        for socket, endpoint in zip((self.command, self.events, self.control), wanted, strict=True):
            socket.bind(endpoint)
            bound.append(socket.getsockopt_string(zmq.LAST_ENDPOINT))
        self.endpoints = Endpoints(*bound)
        return self.endpoints

    def rebind(self, *, command: bool = True) -> None:
        """New event (and command) sockets on the same endpoints: every peer reconnects, and
        subscribes again under the entitlements in force."""
        assert self.endpoints is not None
        old = [self.events] + ([self.command] if command else [])
        for socket in old:
            socket.close(linger=0)
        self.events = self._events_socket()
        self.subscribed.clear()
        pairs = [(self.events, self.endpoints.events)]
        if command:
            self.command = self._command_socket()
            pairs.append((self.command, self.endpoints.command))
        for socket, endpoint in pairs:
            deadline = time.monotonic() + 5.0
            while True:
                try:
                    socket.bind(endpoint)
                    break
                except zmq.ZMQError:  # the old socket lets go of the port asynchronously
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)

    def security_status(self, access: Access) -> SecurityStatus:
        """What protects the channels, and what was refused."""
        return SecurityStatus(
            mode=self.mode,
            keys=access.keys,
            refused=access.refused,
            handshakes_denied=0 if self.security is None else self.security.denied,
            subscribed_streams=len(self.subscribed),
        )

    def close(self) -> None:
        for socket in (self.command, self.events, self.control):
            socket.close()
        if self.security is not None:
            self.security.stop()
        self.context.term()

    # --- receiving ----------------------------------------------------------------------------

    def receive(self, socket: zmq.Socket[bytes]) -> tuple[list[bytes], str | None] | None:
        """The next message waiting on a ROUTER and its sender's authenticated key (None in
        development mode), or None if none is waiting."""
        if not readable(socket):
            return None
        if self.security is None:
            return socket.recv_multipart(NOBLOCK), None
        frames = socket.recv_multipart(NOBLOCK, copy=False)
        return [f.bytes for f in frames], _user(frames[-1])

    def take_subscriptions(self, limit: int = 1024) -> None:
        """Apply the entitled subscriptions waiting on the event socket; drop the others."""
        socket = self.events
        for _ in range(limit):
            if not readable(socket):
                return
            frame = socket.recv(NOBLOCK, copy=False)
            data = frame.bytes
            if not data or data[0] not in (0, 1):
                continue  # a subscriber's message that is not a subscription: ignored
            topic = data[1:]
            if data[0] == 0:
                # Comes for refused topics too and on every disconnect: it says nothing about
                # other subscribers of the topic, so heartbeats go on.
                socket.setsockopt(zmq.UNSUBSCRIBE, topic)
                continue
            who = self.access.principal(_user(frame) if self.security is not None else None)
            if not self.access.may_subscribe(who, topic):
                self.subscriptions_refused += 1
                self.access.refused += 1
                continue
            socket.setsockopt(zmq.SUBSCRIBE, topic)  # applies to that subscriber only
            strategy = strategy_of_topic(topic)
            if strategy is not None:
                self.subscribed.pop(strategy, None)
                self.subscribed[strategy] = None
                if len(self.subscribed) > self.limits.heartbeat_streams:
                    del self.subscribed[next(iter(self.subscribed))]


def _user(frame: zmq.Frame) -> str | None:
    try:
        user = frame.get("User-Id")
    except zmq.ZMQError:
        return None
    return user if isinstance(user, str) else None
