"""``BlockingOrderExecutionPort``: the port for code that is not asyncio (scripts, notebooks, the
CLI). Same models, same errors, same protocol (``bus.session``); calls block until answered.

It has no background thread: whichever call is waiting (for a reply, or for an update) reads the
sockets and files what arrives, replies and events alike, so nothing is lost between calls. Use it
from one thread.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Self, TypeVar

import zmq

from bus.client import SYNC_RETRY
from bus.codec import Replay, ReplayReply, Sync, SyncReply, WireError
from bus.session import ClientSession, Incoming
from bus.sockets import configure_dealer, configure_sub, recv, recv_multipart
from ports.base import DEFAULT_ACK_TIMEOUT
from ports.enums import Outcome, Side
from ports.errors import (
    AckTimeoutError,
    ConnectivityError,
    PortClosedError,
    check_strategy,
    settle,
)
from ports.models import (
    Acknowledgement,
    AmendOrder,
    CancelAllAcknowledgement,
    CancelAllOrders,
    CancelOrder,
    ExecutionReport,
    ListOpenOrders,
    OpenOrders,
    OrderRequest,
    OrderSnapshot,
    QueryOrder,
    Request,
    SubmitOrder,
)
from ports.order_execution_port import PortState
from ports.streams import Subscribers

_R = TypeVar("_R")
_UNANSWERED = object()


class BlockingUpdateStream:
    """Execution reports from the moment the stream was opened, in order, each exactly once."""

    def __init__(self, port: BlockingOrderExecutionPort, client_order_id: str | None) -> None:
        self._port = port
        self.client_order_id = client_order_id
        """The order this stream follows; None: every order of the strategy."""
        self._queue: collections.deque[ExecutionReport] = collections.deque()
        self._ended = False

    def get(self, timeout: float | None = None) -> ExecutionReport:
        """The next report, waiting up to ``timeout`` seconds (None: for ever). Raises
        ``TimeoutError``, or ``EOFError`` once the stream has ended and is drained."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._queue:
            if self._ended:
                raise EOFError("the update stream has ended")
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError("no update in time")
            self._port._pump(remaining)
        return self._queue.popleft()

    def __iter__(self) -> Iterator[ExecutionReport]:
        while True:
            try:
                yield self.get()
            except EOFError:
                return

    def close(self) -> None:
        """Stop receiving; what is queued can still be read."""
        self._ended = True
        self._port._forget(self)


class BlockingOrderHandle:
    """A request sent without waiting: ``acknowledged(timeout)`` waits later; ``events`` streams
    the order's reports from the moment it was sent."""

    def __init__(
        self,
        port: BlockingOrderExecutionPort,
        request: OrderRequest,
        request_id: int,
        events: BlockingUpdateStream,
    ) -> None:
        self._port = port
        self.request = request
        self._request_id = request_id
        self.events = events
        self._answer: object = _UNANSWERED

    @property
    def client_order_id(self) -> str:
        return self.request.client_order_id

    def done(self) -> bool:
        """True once the venue's answer has arrived (reads what is waiting, without blocking)."""
        if self._answer is _UNANSWERED:
            self._port._pump(0)
            return self._port._answered(self._request_id)
        return True

    def acknowledged(self, timeout: float | None = None) -> Acknowledgement:
        """The acknowledgement, or the request's typed error; ``AckTimeoutError`` after
        ``timeout`` seconds (a later call can still get a late answer)."""
        if self._answer is _UNANSWERED:
            self._answer = self._port._wait(self._request_id, timeout, self.client_order_id)
        return settle(self._answer, Acknowledgement)


class BlockingOrderExecutionPort:
    """Submit, amend and cancel orders of one strategy over ZeroMQ, blocking.

    Mirrors ``OrderExecutionPort`` method for method, without ``await``: ``submit`` waits for the
    acknowledgement, ``submit_nowait`` returns a handle, ``updates()`` streams reports.
    """

    def __init__(
        self,
        strategy_id: str,
        *,
        command: str,
        events: str,
        ack_timeout: float = DEFAULT_ACK_TIMEOUT,
        connect_timeout: float = 10.0,
        client_id: str | None = None,
    ) -> None:
        self.strategy_id = strategy_id
        self.command_endpoint = command
        self.events_endpoint = events
        self.ack_timeout = ack_timeout
        self.connect_timeout = connect_timeout
        self.state = PortState.IDLE
        self._session = ClientSession(strategy_id, client_id=client_id)
        self._ids = itertools.count(1)
        self._context: zmq.Context[zmq.Socket[bytes]] | None = None
        self._dealer: zmq.Socket[bytes] | None = None
        self._sub: zmq.Socket[bytes] | None = None
        self._poller = zmq.Poller()
        self._waiting: dict[int, str | None] = {}  # request id -> client order id
        self._answers: dict[int, object] = {}
        self._internal: set[int] = set()
        self._subscribers: Subscribers[BlockingUpdateStream] = Subscribers()

    @property
    def client_id(self) -> str:
        return self._session.client_id

    # --- lifecycle ----------------------------------------------------------------------------

    def open(self) -> None:
        """Connect and synchronise with the venue; ``ConnectivityError`` if none answers."""
        if self.state is PortState.CLOSED:
            raise PortClosedError("the port is closed and cannot be reopened; create a new one")
        if self.state is not PortState.IDLE:
            return
        self.state = PortState.CONNECTING
        self._context = zmq.Context()
        self._dealer = self._context.socket(zmq.DEALER)
        self._sub = self._context.socket(zmq.SUB)
        configure_dealer(self._dealer)
        configure_sub(self._sub, self._session.topics)
        self._poller.register(self._dealer, zmq.POLLIN)
        self._poller.register(self._sub, zmq.POLLIN)
        try:
            self._dealer.connect(self.command_endpoint)
            self._sub.connect(self.events_endpoint)
            self._sync()
        except BaseException as exc:
            self._release()
            self.state = PortState.IDLE
            if isinstance(exc, zmq.ZMQError):
                raise ConnectivityError(f"cannot connect: {exc}", outcome=Outcome.DEFINITE) from exc
            raise
        self.state = PortState.CONNECTED

    def _sync(self) -> None:
        deadline = time.monotonic() + self.connect_timeout
        while time.monotonic() < deadline:
            try:
                request_id = self._send(Sync(strategy_id=self.strategy_id), internal=True)
            except ConnectivityError:
                self._pump(SYNC_RETRY)
                continue
            stop = min(deadline, time.monotonic() + SYNC_RETRY)
            while request_id not in self._answers and time.monotonic() < stop:
                self._pump(stop - time.monotonic())
            reply = self._answers.pop(request_id, None)
            self._internal.discard(request_id)  # a late answer to this attempt is dropped
            if isinstance(reply, SyncReply):
                self._request_replay(self._session.synced_at(reply, time.monotonic()))
                return
        raise ConnectivityError(
            f"no venue answered at {self.command_endpoint} within {self.connect_timeout} s",
            outcome=Outcome.DEFINITE,
        )

    def close(self) -> None:
        """Close for good; streams end after what they hold. Idempotent."""
        if self.state is PortState.CLOSED:
            return
        self.state = PortState.CLOSED
        for stream in self._subscribers.take_all():
            stream._ended = True
        self._release()

    def _release(self) -> None:
        if self._context is not None:
            self._context.destroy(linger=0)
            self._context = None
            self._dealer = self._sub = None
            self._poller = zmq.Poller()

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- requests -----------------------------------------------------------------------------

    def submit(self, order: SubmitOrder, *, timeout: float | None = None) -> Acknowledgement:
        """Place an order; return once the venue accepted it (or raise the typed error)."""
        return self._call(order, Acknowledgement, timeout)

    def submit_nowait(self, order: SubmitOrder) -> BlockingOrderHandle:
        """Place an order; return once it is sent."""
        return self._send_nowait(order)

    def amend(self, amend: AmendOrder, *, timeout: float | None = None) -> Acknowledgement:
        """Change a working order; return once the venue applied it."""
        return self._call(amend, Acknowledgement, timeout)

    def amend_nowait(self, amend: AmendOrder) -> BlockingOrderHandle:
        """Change a working order; return once the request is sent."""
        return self._send_nowait(amend)

    def cancel(self, cancel: CancelOrder, *, timeout: float | None = None) -> Acknowledgement:
        """Cancel a working order; return once it is canceled."""
        return self._call(cancel, Acknowledgement, timeout)

    def cancel_nowait(self, cancel: CancelOrder) -> BlockingOrderHandle:
        """Cancel a working order; return once the request is sent."""
        return self._send_nowait(cancel)

    def cancel_all(
        self,
        instrument: str | None = None,
        side: Side | None = None,
        *,
        timeout: float | None = None,
    ) -> CancelAllAcknowledgement:
        """Cancel every open order of this strategy (optionally one instrument and/or side)."""
        request = CancelAllOrders(strategy_id=self.strategy_id, instrument=instrument, side=side)
        return self._call(request, CancelAllAcknowledgement, timeout)

    def order_status(self, client_order_id: str, *, timeout: float | None = None) -> OrderSnapshot:
        """The order as the venue holds it now."""
        request = QueryOrder(strategy_id=self.strategy_id, client_order_id=client_order_id)
        return self._call(request, OrderSnapshot, timeout)

    def open_orders(
        self, instrument: str | None = None, *, timeout: float | None = None
    ) -> tuple[OrderSnapshot, ...]:
        """This strategy's open orders, oldest first."""
        request = ListOpenOrders(strategy_id=self.strategy_id, instrument=instrument)
        return self._call(request, OpenOrders, timeout).orders

    def updates(self, client_order_id: str | None = None) -> BlockingUpdateStream:
        """Reports of this strategy (or one order) from now on."""
        self._check_usable()
        return self._open_stream(client_order_id)

    # --- machinery ----------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self.state is PortState.CLOSED:
            raise PortClosedError()
        if self.state is not PortState.CONNECTED:
            raise PortClosedError("the port is not open: use 'with port' or 'open()'")

    def _call(self, request: Request, expected: type[_R], timeout: float | None) -> _R:
        request_id = self._send_checked(request)
        try:
            answer = self._wait(request_id, timeout, getattr(request, "client_order_id", None))
        except AckTimeoutError:
            self._waiting.pop(request_id, None)  # nobody will ask again: drop a late answer
            raise
        return settle(answer, expected)

    def _send_nowait(self, request: OrderRequest) -> BlockingOrderHandle:
        events = self._open_stream(request.client_order_id)  # before sending: nothing missed
        try:
            request_id = self._send_checked(request)
        except BaseException:
            events.close()
            raise
        return BlockingOrderHandle(self, request, request_id, events)

    def _send_checked(self, request: Request) -> int:
        self._check_usable()
        check_strategy(self.strategy_id, request)
        request_id = self._send(request)
        self._waiting[request_id] = getattr(request, "client_order_id", None)
        return request_id

    def _send(self, body: Any, *, internal: bool = False) -> int:
        assert self._dealer is not None
        request_id = next(self._ids)
        try:
            self._dealer.send(self._session.request(request_id, body), zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            raise ConnectivityError(
                f"venue at {self.command_endpoint} is not connected; nothing was sent",
                outcome=Outcome.DEFINITE,
            ) from exc
        if internal:
            self._internal.add(request_id)
        return request_id

    def _answered(self, request_id: int) -> bool:
        return request_id in self._answers

    def _wait(self, request_id: int, timeout: float | None, client_order_id: str | None) -> object:
        """The venue's answer to ``request_id``, as it came."""
        timeout = self.ack_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while request_id not in self._answers:
            if self.state is PortState.CLOSED:
                raise PortClosedError(
                    "the port closed before the venue answered; outcome unknown",
                    outcome=Outcome.UNKNOWN,
                    client_order_id=client_order_id,
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AckTimeoutError(
                    f"no acknowledgement within {timeout} s; the request may have been executed",
                    timeout=timeout,
                    client_order_id=client_order_id,
                )
            self._pump(remaining, until=request_id)
        self._waiting.pop(request_id, None)
        return self._answers.pop(request_id)

    def _pump(self, timeout: float | None, until: int | None = None) -> None:
        """Wait up to ``timeout`` seconds for anything, then file what has arrived. Waiting for
        reply ``until``, return as soon as it is filed: events queued meanwhile stay in the
        socket, in order, for the next call (they are not lost, only read a moment later)."""
        if self._dealer is None or self._sub is None:
            return
        ms = None if timeout is None else max(0, int(timeout * 1000))
        if not self._poller.poll(ms):
            self._request_replay(self._session.poll(time.monotonic()))
            return
        now = time.monotonic()
        while (frame := recv(self._dealer)) is not None:
            self._on_reply_frame(frame, now)
        if until is not None and until in self._answers:
            return
        while (frames := recv_multipart(self._sub)) is not None:
            if len(frames) != 2:
                continue
            try:
                self._deliver(self._session.event(frames[0], frames[1], now))
            except WireError:
                continue  # the gap a garbled event leaves is replayed

    def _on_reply_frame(self, frame: bytes, now: float) -> None:
        try:
            envelope = self._session.reply(frame)
        except WireError:
            return
        request_id = envelope.request_id
        assert request_id is not None
        if request_id in self._internal:
            self._internal.discard(request_id)
            if isinstance(envelope.body, ReplayReply):
                self._deliver(self._session.replayed(envelope.body, now))
                return
            if not isinstance(envelope.body, SyncReply):
                return
        elif request_id not in self._waiting:
            return  # a duplicate, or an answer nobody waits for any more
        self._answers[request_id] = envelope.body

    def _deliver(self, incoming: Incoming) -> None:
        for report in incoming.reports:
            for stream in self._subscribers.of(report.client_order_id):
                stream._queue.append(report)
        self._request_replay(incoming.replay)

    def _request_replay(self, replay: Replay | None) -> None:
        if replay is not None:
            with contextlib.suppress(ConnectivityError):  # asked again on the next heartbeat
                self._send(replay, internal=True)

    def _open_stream(self, client_order_id: str | None) -> BlockingUpdateStream:
        stream = BlockingUpdateStream(self, client_order_id)
        self._subscribers.add(stream)
        return stream

    def _forget(self, stream: BlockingUpdateStream) -> None:
        self._subscribers.discard(stream)
