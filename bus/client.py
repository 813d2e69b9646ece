"""``ZmqOrderExecutionPort``: the asyncio port over ZeroMQ. Nothing of ZeroMQ shows through it.

Commands go out on a DEALER to the venue's ROUTER; events come in on a SUB from the venue's PUB.
The protocol itself (framing, sequence numbers, replay) lives in ``bus.session``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import zmq

from bus.codec import Replay, ReplayReply, Sync, SyncReply, WireError
from bus.session import ClientSession, Incoming
from bus.sockets import configure_dealer, configure_sub, recv, recv_multipart
from ports.base import DEFAULT_ACK_TIMEOUT, PortBase
from ports.enums import Outcome
from ports.errors import ConnectivityError
from ports.models import Request
from ports.order_execution_port import PortState

SYNC_RETRY = 0.25  # seconds between sync attempts while the venue is not there yet


class ZmqOrderExecutionPort(PortBase):
    """``OrderExecutionPort`` of one strategy, talking to a venue process over ZeroMQ.

    ``open()`` connects and synchronises the event stream with the venue, retrying for
    ``connect_timeout`` seconds before raising ``ConnectivityError``. The venue's heartbeats are
    expected every ``heartbeat_interval`` seconds; after ``liveness`` missed ones the port reports
    RECONNECTING, and CONNECTED again (after catching up on missed events) once they resume.
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
        client_id: str | None = None,
    ) -> None:
        super().__init__(strategy_id, ack_timeout=ack_timeout)
        self.command_endpoint = command
        self.events_endpoint = events
        self.connect_timeout = connect_timeout
        self._silence_limit = heartbeat_interval * liveness
        self._session = ClientSession(strategy_id, client_id=client_id)
        # Plain sockets, read when the event loop sees their ZMQ_FD become readable: no future
        # per message, which zmq.asyncio would cost on every send and receive.
        self._context: zmq.Context[zmq.Socket[bytes]] | None = None
        self._dealer: zmq.Socket[bytes] | None = None
        self._sub: zmq.Socket[bytes] | None = None
        self._fds: list[int] = []
        self._ticker: asyncio.Task[None] | None = None
        self._drain_scheduled = False
        self._internal: dict[int, asyncio.Future[object]] = {}
        self._last_heard = 0.0

    @property
    def client_id(self) -> str:
        """Identifies this port's requests at the venue (retries are deduplicated by it)."""
        return self._session.client_id

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
        for future in self._internal.values():
            future.cancel()
        self._internal.clear()
        if self._context is not None:
            self._context.destroy(linger=0)
            self._context = None
            self._dealer = self._sub = None

    async def _transmit(self, request_id: int, request: Request) -> None:
        self._send(self._session.request(request_id, request))

    def _send(self, frame: bytes) -> None:
        if self._dealer is None:
            raise ConnectivityError("the port's sockets are closed", outcome=Outcome.DEFINITE)
        try:
            self._dealer.send(frame, zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            # EAGAIN with IMMEDIATE: no connection to the venue; nothing was sent.
            raise ConnectivityError(
                f"venue at {self.command_endpoint} is not connected; nothing was sent",
                outcome=Outcome.DEFINITE,
            ) from exc
        # ZMQ_FD is edge-triggered, and a send can consume the edge that announced an incoming
        # message: look once more, soon, so such a message is not left waiting for the next one.
        if not self._drain_scheduled:
            self._drain_scheduled = True
            asyncio.get_running_loop().call_soon(self._drain)

    def _ask(self, body: Sync | Replay) -> asyncio.Future[object]:
        request_id = self._new_request_id()
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._internal[request_id] = future
        try:
            self._send(self._session.request(request_id, body))
        except ConnectivityError:
            del self._internal[request_id]
            raise
        return future

    async def _sync(self, timeout: float) -> None:
        """Ask the venue where the stream stands, until it answers or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(ConnectivityError, TimeoutError):
                future = self._ask(Sync(strategy_id=self.strategy_id))
                async with asyncio.timeout(SYNC_RETRY):
                    reply = await future
                assert isinstance(reply, SyncReply)
                self._last_heard = time.monotonic()
                self._request_replay(self._session.synced_at(reply, time.monotonic()))
                return
            if time.monotonic() >= deadline:
                raise ConnectivityError(
                    f"no venue answered at {self.command_endpoint} within {timeout} s",
                    outcome=Outcome.DEFINITE,
                )
            await asyncio.sleep(SYNC_RETRY / 5)  # the socket is not connected yet: retry soon

    def _request_replay(self, replay: Replay | None) -> None:
        if replay is None:
            return
        with contextlib.suppress(ConnectivityError):  # asked again on the next heartbeat
            self._ask(replay)

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
            self._last_heard = now
            if len(frames) != 2:
                continue  # not from a venue
            try:
                self._deliver(self._session.event(frames[0], frames[1], now))
            except WireError:
                continue  # a garbled event: the gap it leaves is replayed

    async def _tick(self) -> None:
        """Ten times a second: replays to ask again, liveness, and a safety drain."""
        while True:
            await asyncio.sleep(0.1)
            self._drain()
            self._check_liveness(time.monotonic())

    def _on_reply_frame(self, frame: bytes, now: float) -> None:
        try:
            envelope = self._session.reply(frame)
        except WireError:
            return  # unreadable: the request it answered times out (outcome unknown)
        assert envelope.request_id is not None
        internal = self._internal.pop(envelope.request_id, None)
        if internal is not None:
            if isinstance(envelope.body, ReplayReply):
                self._deliver(self._session.replayed(envelope.body, now))
            if not internal.done():
                internal.set_result(envelope.body)
            return
        self._on_reply(envelope.request_id, envelope.body)

    def _check_liveness(self, now: float) -> None:
        self._request_replay(self._session.poll(now))
        silent = now - self._last_heard > self._silence_limit
        if silent and self.state is PortState.CONNECTED:
            self._set_state(PortState.RECONNECTING)
        elif not silent and self.state is PortState.RECONNECTING:
            # Heard from the venue again: catch up on what was missed, then carry on.
            self._set_state(PortState.CONNECTED)
            with contextlib.suppress(ConnectivityError):
                self._ask(Sync(strategy_id=self.strategy_id)).add_done_callback(self._resynced)

    def _resynced(self, future: asyncio.Future[object]) -> None:
        if not future.cancelled() and isinstance(future.result(), SyncReply):
            reply = future.result()
            assert isinstance(reply, SyncReply)
            self._request_replay(self._session.synced_at(reply, time.monotonic()))
