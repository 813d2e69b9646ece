"""``ZmqOrderExecutionPort``: the asyncio port over ZeroMQ. Nothing of ZeroMQ shows through it.

Commands go out on a DEALER to the venue's ROUTER; events come in on a SUB from the venue's PUB.
The protocol itself (framing, sequence numbers, replay, resends, liveness, the venue's identity)
lives in ``bus.session``; what every port shares (timeouts, orders in doubt) in ``ports.base``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import zmq

from bus.codec import Replay, ReplayReply, Sync, SyncReply, WireError
from bus.session import ClientSession, Incoming
from bus.sockets import configure_dealer, configure_sub, recv, recv_multipart, try_send
from ports.base import DEFAULT_ACK_TIMEOUT, PortBase
from ports.enums import Outcome, PortEventKind
from ports.errors import ConnectivityError
from ports.models import PortEvent, Request
from ports.order_execution_port import PortState

SYNC_RETRY = 0.25  # seconds between sync attempts while the venue is not there yet
TICK = 0.1  # seconds between looks at liveness, resends and replays


class ZmqOrderExecutionPort(PortBase):
    """``OrderExecutionPort`` of one strategy, talking to a venue process over ZeroMQ.

    ``open()`` connects and synchronises the event stream with the venue, retrying for
    ``connect_timeout`` seconds before raising ``ConnectivityError``. The venue's heartbeats are
    expected every ``heartbeat_interval`` seconds; after ``liveness`` missed ones the port reports
    RECONNECTING (and CONNECTION_LOST), and CONNECTED again (CONNECTION_RESTORED) once it hears
    the venue and has re-synced, catching up on missed events by replay.

    An unanswered request is resent with the same request id (0.2 s doubling to 2 s, ±25%) until
    its timeout. ``retry_throttled``: a THROTTLED refusal is retried after its ``retry_after``
    while the request's timeout allows, instead of raising ``ThrottleError`` at once (turn it off
    against a venue on a manual clock, whose ``retry_after`` is not real time).
    """

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
        client_id: str | None = None,
    ) -> None:
        super().__init__(strategy_id, ack_timeout=ack_timeout)
        self.command_endpoint = command
        self.events_endpoint = events
        self.connect_timeout = connect_timeout
        self.retry_throttled = retry_throttled
        self._session = ClientSession(
            strategy_id, client_id=client_id, silence_limit=heartbeat_interval * liveness
        )
        # Plain sockets, read when the event loop sees their ZMQ_FD become readable: no future
        # per message, which zmq.asyncio would cost on every send and receive.
        self._context: zmq.Context[zmq.Socket[bytes]] | None = None
        self._dealer: zmq.Socket[bytes] | None = None
        self._sub: zmq.Socket[bytes] | None = None
        self._fds: list[int] = []
        self._ticker: asyncio.Task[None] | None = None
        self._drain_scheduled = False
        self._internal: set[int] = set()  # ids of the port's own requests (sync, replay)
        self._first_sync: asyncio.Future[None] | None = None

    @property
    def client_id(self) -> str:
        """Identifies this port's requests at the venue (retries are deduplicated by it)."""
        return self._session.client_id

    @property
    def duplicate_fills(self) -> int:
        """Fills dropped because one with the same fill id was delivered before."""
        return self._session.duplicate_fills

    async def _connect(self) -> None:
        self._context = zmq.Context()
        self._dealer = self._context.socket(zmq.DEALER)
        self._sub = self._context.socket(zmq.SUB)
        configure_dealer(self._dealer)
        configure_sub(self._sub, self._session.topics)
        try:
            self._dealer.connect(self.command_endpoint)
            self._sub.connect(self.events_endpoint)
        except zmq.ZMQError as exc:
            await self._disconnect()
            raise ConnectivityError(
                f"cannot connect to {self.command_endpoint} / {self.events_endpoint}: {exc}",
                outcome=Outcome.DEFINITE,
            ) from exc
        loop = asyncio.get_running_loop()
        for socket in (self._dealer, self._sub):
            fd = socket.getsockopt(zmq.FD)
            assert isinstance(fd, int)
            loop.add_reader(fd, self._drain)
            self._fds.append(fd)
        self._ticker = loop.create_task(self._tick())
        try:
            await self._sync(self.connect_timeout)
        except BaseException:
            await self._disconnect()
            raise

    async def _disconnect(self) -> None:
        loop = asyncio.get_running_loop()
        for fd in self._fds:
            loop.remove_reader(fd)
        self._fds.clear()
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
            self._ticker = None
        if self._first_sync is not None:
            self._first_sync.cancel()
        self._internal.clear()
        if self._context is not None:
            self._context.destroy(linger=0)
            self._context = None
            self._dealer = self._sub = None

    async def _transmit(self, request_id: int, request: Request, timeout: float) -> None:
        frame = self._session.request(request_id, request)
        self._send(frame)  # nothing could be sent at all: ConnectivityError, outcome definite
        now = time.monotonic()
        self._session.requests.track(
            request_id, frame, now, now + timeout, retry_throttled=self.retry_throttled
        )

    def _send(self, frame: bytes) -> None:
        if not self._try_send(frame):
            raise ConnectivityError(
                f"venue at {self.command_endpoint} is not connected; nothing was sent",
                outcome=Outcome.DEFINITE,
            )

    def _try_send(self, frame: bytes) -> bool:
        """Send without blocking; False if nothing was sent (no connection to the venue)."""
        if not try_send(self._dealer, frame):
            return False
        # ZMQ_FD is edge-triggered, and a send can consume the edge that announced an incoming
        # message: look once more, soon, so such a message is not left waiting for the next one.
        if not self._drain_scheduled:
            self._drain_scheduled = True
            asyncio.get_running_loop().call_soon(self._drain)
        return True

    def _ask(self, body: Sync | Replay) -> bool:
        """Send one of the port's own requests; False if nothing was sent (asked again later)."""
        request_id = self._new_request_id()
        if not self._try_send(self._session.request(request_id, body)):
            return False
        self._internal.add(request_id)
        return True

    async def _sync(self, timeout: float) -> None:
        """Ask the venue where the stream stands, until it answers or ``timeout`` passes."""
        first_sync = self._first_sync = asyncio.get_running_loop().create_future()
        deadline = time.monotonic() + timeout
        while True:
            if self._ask(self._session.sync_request()):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(first_sync), SYNC_RETRY)
                    return
            else:
                await asyncio.sleep(SYNC_RETRY / 5)  # the socket is not connected yet: soon
            if time.monotonic() >= deadline:
                raise ConnectivityError(
                    f"no venue answered at {self.command_endpoint} within {timeout} s",
                    outcome=Outcome.DEFINITE,
                )

    def _on_sync(self, reply: SyncReply, now: float) -> None:
        synced = self._session.synced_at(reply, now)
        if self._first_sync is not None and not self._first_sync.done():
            self._first_sync.set_result(None)
        self._apply(synced.events)
        self._request_replay(synced.replay)

    def _apply(self, events: list[PortEvent]) -> None:
        """Report what the session noticed, and act on it."""
        for event in events:
            self._emit(event)
            if event.kind is PortEventKind.CONNECTION_LOST:
                self._set_state(PortState.RECONNECTING)
            elif event.kind is PortEventKind.CONNECTION_RESTORED:
                self._set_state(PortState.CONNECTED)
            elif event.kind is PortEventKind.VENUE_RESET:
                self._venue_reset("the venue was reset before it answered")

    def _request_replay(self, replay: Replay | None) -> None:
        if replay is not None:
            self._ask(replay)  # if not sent, asked again on the next tick

    def _deliver(self, incoming: Incoming) -> None:
        for report in incoming.reports:
            self._on_report(report)
        self._request_replay(incoming.replay)

    def _drain(self) -> None:
        """Take everything waiting on both sockets (called when their FD signals)."""
        self._drain_scheduled = False
        dealer, sub = self._dealer, self._sub
        if dealer is None or sub is None:
            return
        now = time.monotonic()
        # Replies first: a caller waits on each. Events follow, in their own order.
        while (frame := recv(dealer)) is not None:
            self._on_reply_frame(frame, now)
        while (frames := recv_multipart(sub)) is not None:
            if len(frames) != 2:
                self._session.heard(now)
                continue  # not from a venue
            try:
                self._deliver(self._session.event(frames[0], frames[1], now))
            except WireError:
                continue  # a garbled event: the gap it leaves is replayed

    async def _tick(self) -> None:
        """Ten times a second: liveness, re-syncs, resends, replays, and a safety drain."""
        while True:
            await asyncio.sleep(TICK)
            self._drain()
            if self.state is not PortState.CONNECTING:
                self._housekeeping(time.monotonic())

    def _housekeeping(self, now: float) -> None:
        due = self._session.poll(now)
        for _, frame in due.resend:
            self._try_send(frame)  # not connected: tried again at the next resend
        if due.sync:
            self._ask(self._session.sync_request())
        self._request_replay(due.replay)
        self._apply(due.events)

    def _on_reply_frame(self, frame: bytes, now: float) -> None:
        try:
            envelope = self._session.reply(frame)
        except WireError:
            return  # unreadable: the request it answered is resent, or times out
        request_id = envelope.request_id
        assert request_id is not None
        body = envelope.body
        if request_id in self._internal:
            self._internal.discard(request_id)
            if isinstance(body, SyncReply):
                self._on_sync(body, now)
            elif isinstance(body, ReplayReply):
                self._deliver(self._session.replayed(body, now))
            return
        if self._session.requests.answered(request_id, body, now):
            self._on_reply(request_id, body)
