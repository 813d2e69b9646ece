"""``ZmqOrderExecutionPort``: the asyncio port over ZeroMQ. Nothing of ZeroMQ shows through it.

A thin shell: the protocol lives in ``bus.client_protocol``, the sockets and what to do with the
protocol's events in ``bus.transport``, the port's bookkeeping in ``ports.core``, the asyncio
waiting every port shares in ``ports.base``. What is left here is when to read: whenever the
event loop sees a socket readable, and on the port's timer.
"""

from __future__ import annotations

import asyncio

import zmq

from bus.transport import TICK, ZmqTransport
from ports.base import PortBase
from ports.core import PortRequest


class ZmqOrderExecutionPort(ZmqTransport, PortBase):
    """``OrderExecutionPort`` of one strategy, talking to a venue process over ZeroMQ.

    ``ZmqOrderExecutionPort(strategy_id, *, command, events, ack_timeout=5.0,
    connect_timeout=10.0, heartbeat_interval=0.5, liveness=6, retry_throttled=True,
    deadlines=True, cancel_on_disconnect=None, client_id=None, keys=None)``: ``open()``
    connects and synchronises the event stream with the venue, retrying for
    ``connect_timeout`` seconds before raising ``ConnectivityError``. The venue's heartbeats are
    expected every ``heartbeat_interval`` seconds; after ``liveness`` missed ones the port
    reports RECONNECTING (and CONNECTION_LOST), and CONNECTED again (CONNECTION_RESTORED) once
    it hears the venue and has re-synced, catching up on missed events by replay.

    An unanswered request is resent with the same request id (0.2 s doubling to 2 s, ±25%) until
    its timeout. ``retry_throttled``: a THROTTLED refusal is retried after its ``retry_after``
    while the request's timeout allows, instead of raising ``ThrottleError`` at once (turn it off
    against a venue on a manual clock, whose ``retry_after`` is not real time). ``deadlines``:
    each request carries its deadline (now + its timeout, by this host's clock); a server that
    comes to it later refuses it (``stale_request``) instead of carrying it out (turn it off
    only if this host's clock cannot be kept close to the server's). ``cancel_on_disconnect``
    (seconds): the server cancels this strategy's open orders if it hears nothing from this
    port for that long (the process died, or its link); the port sends keepalives when it has
    nothing else to send, and reports ``CANCELED_ON_DISCONNECT`` when it comes back after one.
    """

    # Plain sockets, read when the event loop sees their ZMQ_FD become readable: no future per
    # message, which zmq.asyncio would cost on every send and receive.
    _fds: tuple[int, ...] = ()
    _drain_scheduled = False

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        sockets = self._open_sockets()
        fds = []
        for socket in sockets:
            fd = socket.getsockopt(zmq.FD)
            assert isinstance(fd, int)
            loop.add_reader(fd, self._drain)
            fds.append(fd)
        self._fds = tuple(fds)
        opening: asyncio.Future[None] = loop.create_future()
        try:
            now = loop.time()
            self._start_stream(opening, now)
            self._arm(self._next_tick(now))
            await opening
        except BaseException:
            await self._disconnect()
            raise

    async def _disconnect(self) -> None:
        loop = asyncio.get_running_loop()
        for fd in self._fds:
            loop.remove_reader(fd)
        self._fds = ()
        self._disarm()
        if isinstance(self._opening, asyncio.Future):
            self._opening.cancel()  # an open() still waiting for the first sync gives up
        self._close_sockets()

    def _transmit(self, request_id: int, request: PortRequest, timeout: float) -> None:
        super()._transmit(request_id, request, timeout)
        self._arm(self._protocol.next_timer())  # its deadline may come before the next tick

    def _try_send(self, frame: bytes) -> bool:
        if not super()._try_send(frame):
            return False
        # ZMQ_FD is edge-triggered, and a send can consume the edge that announced an incoming
        # message: look once more, soon, so such a message is not left waiting for the next one.
        if not self._drain_scheduled:
            self._drain_scheduled = True
            asyncio.get_running_loop().call_soon(self._drain)
        return True

    def _drain(self) -> None:
        """Take everything waiting on both sockets (called when their FD signals)."""
        self._drain_scheduled = False
        self._read(self._now())

    def _tick(self, now: float) -> None:
        self._read(now)  # also a safety net under the edge-triggered FD
        self._housekeeping(now)

    def _next_tick(self, now: float) -> float:
        # Never more than a TICK away: liveness and replays are looked at ten times a second.
        return self._next_work(now + TICK)
