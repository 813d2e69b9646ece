"""``ZmqTransport``: what both ZeroMQ ports do that is not waiting.

A mixin over ``ports.core.PortCore`` (as pyzmq's asyncio sockets are a mixin over its sockets): it
owns the sockets and the ``ClientProtocol``, sends the port's requests, reads what has arrived
and hands it to the protocol, and acts on the events the protocol returns by telling the core.
``ZmqOrderExecutionPort`` (asyncio) and ``BlockingOrderExecutionPort`` add only the waiting: when
to read, when to call ``_housekeeping``, how a caller waits for its answer.
"""

from __future__ import annotations

import contextlib
from typing import Any

import zmq

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
from bus.client_protocol import ClientProtocol
from bus.codec import WireError
from bus.curve import ClientKeys, HandshakeWatch, resolve
from bus.sockets import configure_dealer, configure_sub, recv, recv_multipart, try_send
from ports.core import DEFAULT_ACK_TIMEOUT, PortCore, PortRequest, Waiter
from ports.enums import ErrorReason, Outcome, PortEventKind
from ports.errors import ConnectivityError
from ports.models import PortEvent

TICK = 0.1  # seconds between looks at liveness, re-syncs and replays
GOODBYE_LINGER_MS = 200  # at most, for the disarming keepalive of a clean close to leave


class ZmqTransport(PortCore):
    """A port core over ZeroMQ: the constructor and the work of both ZeroMQ ports that is not
    waiting. Its options are documented on ``ZmqOrderExecutionPort``."""

    def __init__(
        self,
        strategy_id: str,
        *,
        command: str,
        events: str,
        ack_timeout: float = DEFAULT_ACK_TIMEOUT,
        connect_timeout: float = 10.0,
        heartbeat_interval: float = 0.5,
        liveness: int = 6,
        retry_throttled: bool = True,
        deadlines: bool = True,
        cancel_on_disconnect: float | None = None,
        client_id: str | None = None,
        keys: ClientKeys | None = None,
    ) -> None:
        super().__init__(strategy_id, ack_timeout=ack_timeout)
        self.keys = resolve(keys)
        self.command_endpoint = command
        self.events_endpoint = events
        self.connect_timeout = connect_timeout
        self.retry_throttled = retry_throttled
        self._protocol = ClientProtocol(
            strategy_id,
            client_id=client_id,
            silence_limit=heartbeat_interval * liveness,
            retry_throttled=retry_throttled,
            deadlines=deadlines,
            cancel_on_disconnect=cancel_on_disconnect,
            request_ids=self._request_ids,
        )
        self._context: zmq.Context[zmq.Socket[bytes]] | None = None
        self._dealer: zmq.Socket[bytes] | None = None
        self._sub: zmq.Socket[bytes] | None = None
        self._watch: HandshakeWatch | None = None
        self._opening: Waiter[None] | None = None
        self.canceled_on_disconnect: PortEvent | None = None
        """The last ``CANCELED_ON_DISCONNECT`` a sync told of, the first one (in ``open()``)
        included, which comes before any ``updates()`` can hear it."""

    @property
    def client_id(self) -> str:
        """Identifies this port's requests at the venue (retries are deduplicated by it)."""
        return self._protocol.client_id

    @property
    def duplicate_fills(self) -> int:
        """Fills dropped because one with the same fill id was delivered before."""
        return self._protocol.fills.dropped

    # --- sockets ------------------------------------------------------------------------------

    def _open_sockets(self) -> tuple[zmq.Socket[bytes], zmq.Socket[bytes]]:
        self._context = zmq.Context()
        dealer = self._dealer = self._context.socket(zmq.DEALER)
        sub = self._sub = self._context.socket(zmq.SUB)
        configure_dealer(dealer)
        configure_sub(sub, self._protocol.topics)
        if self.keys is not None:
            self.keys.apply(dealer)
            self.keys.apply(sub)
        self._watch = HandshakeWatch(dealer, secure=self.keys is not None)
        try:
            dealer.connect(self.command_endpoint)
            sub.connect(self.events_endpoint)
        except zmq.ZMQError as exc:
            self._close_sockets()
            raise ConnectivityError(
                f"cannot connect to {self.command_endpoint} / {self.events_endpoint}: {exc}",
                outcome=Outcome.DEFINITE,
            ) from exc
        return dealer, sub

    def _close_sockets(self) -> None:
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        goodbye = self._protocol.goodbye()
        if goodbye is not None and self._dealer is not None:
            # Cancel on disconnect disarmed, best effort: given a moment to leave (the context
            # waits for it), else the server's timeout runs out as for a crash.
            with contextlib.suppress(zmq.ZMQError):
                self._dealer.send(goodbye, zmq.NOBLOCK)
            self._dealer.close(linger=GOODBYE_LINGER_MS)
        if self._context is not None:
            self._context.destroy(linger=0)
            self._context = None
            self._dealer = self._sub = None

    def _start_stream(self, opening: Waiter[None], now: float) -> None:
        """Ask the venue where the stream stands; ``opening`` gets the outcome."""
        self._opening = opening
        self._act(self._protocol.start(now, self.connect_timeout), now)

    # --- sending ------------------------------------------------------------------------------

    def _transmit(self, request_id: int, request: PortRequest, timeout: float) -> None:
        now = self._now()
        frame = self._protocol.send(request_id, request, now, now + timeout)
        if not self._try_send(frame):
            self._protocol.forget(request_id)
            refused = None if self._watch is None else self._watch.poll()
            why = "" if refused is None else f" ({refused})"
            raise ConnectivityError(
                f"venue at {self.command_endpoint} is not connected{why}; nothing was sent",
                outcome=Outcome.DEFINITE,
            )

    def _try_send(self, frame: bytes) -> bool:
        """Send without blocking; False if nothing was sent (no connection to the venue)."""
        return try_send(self._dealer, frame)

    # --- receiving ----------------------------------------------------------------------------

    def _read(self, now: float, until: Waiter[Any] | None = None) -> None:
        """File everything waiting on both sockets: replies first (a caller waits on each),
        then events, in their own order. Once ``until`` is answered, events are left for the
        next read: they wait in the socket, in order."""
        dealer, sub = self._dealer, self._sub
        if dealer is None or sub is None:
            return
        while (frame := recv(dealer)) is not None:
            self._on_reply_frame(frame, now)
        if until is not None and until.done():
            return
        while (frames := recv_multipart(sub)) is not None:
            self._on_event_frames(frames, now)

    def _on_reply_frame(self, frame: bytes, now: float) -> None:
        try:
            events = self._protocol.receive_reply(frame, now)
        except WireError:
            return  # unreadable: the request it answered is resent, or expires
        self._act(events, now)

    def _on_event_frames(self, frames: list[bytes], now: float) -> None:
        if len(frames) != 2:
            self._protocol.heard(now)
            return  # not from a venue
        try:
            events = self._protocol.receive_event(frames[0], frames[1], now)
        except WireError:
            return  # a garbled event: the gap it leaves is replayed
        self._act(events, now)

    def _next_work(self, at: float) -> float:
        """The earliest of ``at`` (the shell's next look at liveness), the protocol's next resend
        or expiry and the next status query of an order in doubt."""
        due = min(at, self._protocol.next_timer())
        next_query = self._next_query_at()
        return due if next_query is None else min(due, next_query)

    def _housekeeping(self, now: float) -> None:
        """The port's own work: liveness, resends, expiries, re-syncs, replays, status queries;
        an open() the server refused fails at once, naming why."""
        opening = self._opening
        if opening is not None and not opening.done() and self._watch is not None:
            refused = self._watch.poll()
            if refused is not None:
                self._opened_stream(
                    ConnectivityError(
                        f"cannot connect to {self.command_endpoint}: {refused}",
                        outcome=Outcome.DEFINITE,
                    )
                )
        self._act(self._protocol.poll(now), now)
        self._ask_due(now)

    # --- acting on what the protocol says -----------------------------------------------------

    def _act(self, events: list[ClientEvent], now: float) -> None:
        for event in events:
            if isinstance(event, ReplyReceived):
                self._answer(event.request_id, event.body, now)
            elif isinstance(event, ReportsReady):
                for report in event.reports:
                    self._deliver(report, now)
            elif isinstance(event, FramesToSend):
                for request_id, frame in event.frames:
                    if not self._try_send(frame):
                        self._protocol.unsent(request_id, now)
            elif isinstance(event, RequestExpired):
                self._expire(event.request_id, now)
            elif isinstance(event, ReplyUnreadable):
                self._expire(event.request_id, now, unreadable=event.message)
            elif isinstance(event, PortEventRaised):
                if event.event.kind is PortEventKind.CANCELED_ON_DISCONNECT:
                    self.canceled_on_disconnect = event.event  # for a caller that just opened
                self._port_event(event.event, now)
            elif isinstance(event, PortEventRelayed):
                self._emit(event.event)  # the gateway's port: this port's state is unchanged
            elif isinstance(event, StreamStarted):
                self._opened_stream(None)
            elif isinstance(event, StartFailed):
                if event.refused is not None:
                    error = ConnectivityError(
                        f"the venue at {self.command_endpoint} refused the sync: "
                        f"{event.refused.message}",
                        reason=event.refused.reason,
                        outcome=Outcome.DEFINITE,
                    )
                elif event.unreadable is None:
                    error = ConnectivityError(
                        f"no venue answered at {self.command_endpoint} within {event.timeout} s",
                        outcome=Outcome.DEFINITE,
                    )
                else:
                    error = ConnectivityError(
                        f"the venue at {self.command_endpoint} answered the sync with a frame "
                        f"that could not be read: {event.unreadable}",
                        reason=ErrorReason.PROTOCOL_ERROR,
                        outcome=Outcome.DEFINITE,
                    )
                self._opened_stream(error)

    def _opened_stream(self, error: ConnectivityError | None) -> None:
        opening = self._opening
        if opening is None or opening.done():
            return
        if error is None:
            opening.set_result(None)
        else:
            self._fail(opening, error)
