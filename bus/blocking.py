"""``BlockingOrderExecutionPort``: the port for code that is not asyncio (scripts, notebooks, the
CLI). Same models, same errors, same protocol (``bus.session``) and the same recovery
(``ports.recovery``); calls block until answered.

It has no background thread: whichever call is waiting (for a reply, or for an update) reads the
sockets and files what arrives, replies and events alike, so nothing is lost between calls. That
call also does the port's own work: resends, re-syncs, liveness, settling orders in doubt. So the
port notices a lost venue, and settles orders in doubt, only while some call blocks (an
``updates().get()`` will do). Use it from one thread.
"""

from __future__ import annotations

import collections
import itertools
import time
import weakref
from collections.abc import Iterator
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Generic, Literal, Self, cast, overload

import zmq
from pydantic import BaseModel
from typing_extensions import TypeVar

from bus.client import SYNC_RETRY, TICK
from bus.codec import Replay, ReplayReply, SyncReply, WireError
from bus.session import ClientSession, Incoming
from bus.sockets import configure_dealer, configure_sub, recv, recv_multipart, try_send
from ports.base import DEFAULT_ACK_TIMEOUT, unanswered_detail
from ports.enums import ErrorReason, Outcome, PortEventKind, Side
from ports.errors import (
    AckTimeoutError,
    ConnectivityError,
    PortClosedError,
    PortError,
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
    PortEvent,
    QueryOrder,
    Rejection,
    Request,
    SubmitOrder,
)
from ports.order_execution_port import PortState
from ports.recovery import InDoubt
from ports.streams import Subscribers

_R = TypeVar("_R")
_U = TypeVar("_U", covariant=True, default=ExecutionReport)
_UNANSWERED = object()


class BlockingUpdateStream(Generic[_U]):
    """Execution reports from the moment the stream was opened, in order, each exactly once (and
    the port's events too, for a stream opened with ``port_events=True``)."""

    def __init__(
        self,
        port: BlockingOrderExecutionPort,
        client_order_id: str | None,
        *,
        port_events: bool = False,
    ) -> None:
        self._port = port
        self.client_order_id = client_order_id
        """The order this stream follows; None: every order of the strategy."""
        self.port_events = port_events
        """Whether it also yields ``PortEvent``s."""
        self._queue: collections.deque[object] = collections.deque()
        self._ended = False

    def get(self, timeout: float | None = None) -> _U:
        """The next update, waiting up to ``timeout`` seconds (None: for ever). Raises
        ``TimeoutError``, or ``EOFError`` once the stream has ended and is drained."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._queue:
            if self._ended:
                raise EOFError("the update stream has ended")
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError("no update in time")
            self._port._pump(remaining)
        return cast(_U, self._queue.popleft())  # the port puts only what the stream asked for

    def __iter__(self) -> Iterator[_U]:
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


def _utc_now() -> datetime:
    return datetime.now(UTC)


class BlockingOrderExecutionPort:
    """Submit, amend and cancel orders of one strategy over ZeroMQ, blocking.

    Mirrors ``OrderExecutionPort`` method for method, without ``await``: ``submit_order`` waits
    for the acknowledgement, ``submit_order_nowait`` returns a handle, ``updates()`` streams
    reports, ``in_doubt()`` names the orders whose outcome is not known yet. Options as for
    ``ZmqOrderExecutionPort``.
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
        self.strategy_id = strategy_id
        self.command_endpoint = command
        self.events_endpoint = events
        self.ack_timeout = ack_timeout
        self.connect_timeout = connect_timeout
        self.retry_throttled = retry_throttled
        self.state = PortState.IDLE
        self._session = ClientSession(
            strategy_id, client_id=client_id, silence_limit=heartbeat_interval * liveness
        )
        self._doubts = InDoubt(clock=_utc_now)
        self._ids = itertools.count(1)
        self._context: zmq.Context[zmq.Socket[bytes]] | None = None
        self._dealer: zmq.Socket[bytes] | None = None
        self._sub: zmq.Socket[bytes] | None = None
        self._poller = zmq.Poller()
        # Requests a caller (or a handle) still waits on: request id -> (request, timeout).
        self._waiting: dict[int, tuple[Request, float]] = {}
        self._answers: dict[int, object] = {}
        self._internal: set[int] = set()  # sync and replay request ids
        self._queries: dict[int, str] = {}  # status queries of orders in doubt -> order
        self._subscribers: Subscribers[BlockingUpdateStream[Any]] = Subscribers()
        self._next_housekeeping = 0.0

    @property
    def client_id(self) -> str:
        return self._session.client_id

    @property
    def duplicate_fills(self) -> int:
        """Fills dropped because one with the same fill id was delivered before."""
        return self._session.duplicate_fills

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
            if not self._send_internal(self._session.sync_request()):
                self._pump(SYNC_RETRY)
                continue
            stop = min(deadline, time.monotonic() + SYNC_RETRY)
            while not self._session.synced and time.monotonic() < stop:
                self._pump(stop - time.monotonic())
            if self._session.synced:
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

    def submit_order(self, order: SubmitOrder, *, timeout: float | None = None) -> Acknowledgement:
        """Place an order; return once the venue accepted it (or raise the typed error)."""
        return self._call(order, Acknowledgement, timeout)

    def submit_order_nowait(self, order: SubmitOrder) -> BlockingOrderHandle:
        """Place an order; return once it is sent."""
        return self._send_nowait(order)

    def amend_order(self, amend: AmendOrder, *, timeout: float | None = None) -> Acknowledgement:
        """Change a working order; return once the venue applied it."""
        return self._call(amend, Acknowledgement, timeout)

    def amend_order_nowait(self, amend: AmendOrder) -> BlockingOrderHandle:
        """Change a working order; return once the request is sent."""
        return self._send_nowait(amend)

    def cancel_order(self, cancel: CancelOrder, *, timeout: float | None = None) -> Acknowledgement:
        """Cancel a working order; return once it is canceled."""
        return self._call(cancel, Acknowledgement, timeout)

    def cancel_order_nowait(self, cancel: CancelOrder) -> BlockingOrderHandle:
        """Cancel a working order; return once the request is sent."""
        return self._send_nowait(cancel)

    def cancel_all_orders(
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

    def in_doubt(self) -> frozenset[str]:
        """Client order ids of the orders whose submit, amend or cancel went unanswered in time:
        what the venue holds for them is not known yet (see ``OrderExecutionPort.in_doubt``)."""
        return self._doubts.ids()

    @overload
    def updates(
        self, client_order_id: str | None = None, *, port_events: Literal[False] = False
    ) -> BlockingUpdateStream: ...

    @overload
    def updates(
        self, client_order_id: None = None, *, port_events: Literal[True]
    ) -> BlockingUpdateStream[ExecutionReport | PortEvent]: ...

    @overload
    def updates(
        self, client_order_id: str | None = None, *, port_events: bool
    ) -> BlockingUpdateStream[ExecutionReport | PortEvent]: ...

    def updates(
        self, client_order_id: str | None = None, *, port_events: bool = False
    ) -> BlockingUpdateStream[ExecutionReport | PortEvent]:
        """Reports of this strategy (or one order) from now on; ``port_events=True``
        (strategy-wide only) adds the port's ``PortEvent``s."""
        self._check_usable()
        if port_events and client_order_id is not None:
            raise ValueError("port events go to strategy-wide streams: no client_order_id")
        return self._open_stream(client_order_id, port_events=port_events)

    # --- machinery ----------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self.state is PortState.CLOSED:
            raise PortClosedError()
        if self.state not in (PortState.CONNECTED, PortState.RECONNECTING):
            raise PortClosedError("the port is not open: use 'with port' or 'open()'")

    def _call(self, request: Request, expected: type[_R], timeout: float | None) -> _R:
        timeout = self.ack_timeout if timeout is None else timeout
        request_id = self._send_checked(request, timeout)
        try:
            answer = self._wait(request_id, timeout, getattr(request, "client_order_id", None))
        except AckTimeoutError:
            # Nobody will ask again: a late answer only settles the order, if it is in doubt.
            self._waiting.pop(request_id, None)
            self._doubt(request_id, request, timeout)
            raise
        return settle(answer, expected)

    def _send_nowait(self, request: OrderRequest) -> BlockingOrderHandle:
        events = self._open_stream(request.client_order_id)  # before sending: nothing missed
        try:
            request_id = self._send_checked(request, self.ack_timeout)
        except BaseException:
            events.close()
            raise
        handle = BlockingOrderHandle(self, request, request_id, events)
        # A handle dropped without asking for its answer must not leave the answer behind.
        weakref.finalize(handle, self._forget_request, request_id)
        return handle

    def _forget_request(self, request_id: int) -> None:
        self._waiting.pop(request_id, None)
        self._answers.pop(request_id, None)

    def _send_checked(self, request: Request, timeout: float) -> int:
        self._check_usable()
        check_strategy(self.strategy_id, request)
        request_id = next(self._ids)
        frame = self._session.request(request_id, request)
        if not self._try_send(frame):
            raise ConnectivityError(
                f"venue at {self.command_endpoint} is not connected; nothing was sent",
                outcome=Outcome.DEFINITE,
            )
        now = time.monotonic()
        self._session.requests.track(
            request_id, frame, now, now + timeout, retry_throttled=self.retry_throttled
        )
        self._waiting[request_id] = (request, timeout)
        return request_id

    def _try_send(self, frame: bytes) -> bool:
        """Send without blocking; False if nothing was sent (no connection to the venue)."""
        return try_send(self._dealer, frame)

    def _send_internal(self, body: BaseModel) -> bool:
        request_id = next(self._ids)
        if not self._try_send(self._session.request(request_id, body)):
            return False
        self._internal.add(request_id)
        return True

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
                raise AckTimeoutError(timeout=timeout, client_order_id=client_order_id)
            self._pump(remaining, until=request_id)
        self._waiting.pop(request_id, None)
        return self._answers.pop(request_id)

    def _pump(self, timeout: float | None, until: int | None = None) -> None:
        """Wait up to ``timeout`` seconds for anything, then file what has arrived. Waiting for
        reply ``until``, return as soon as it is filed: events queued meanwhile stay in the
        socket, in order, for the next call (they are not lost, only read a moment later)."""
        if self._dealer is None or self._sub is None:
            return
        now = time.monotonic()
        if now >= self._next_housekeeping:
            self._housekeeping(now)
        # Never wait past the next housekeeping: resends and liveness run while a call blocks.
        wait = self._next_housekeeping - now
        if timeout is not None:
            wait = min(wait, timeout)
        if not self._poller.poll(max(0, int(wait * 1000))):
            return
        now = time.monotonic()
        while (frame := recv(self._dealer)) is not None:
            self._on_reply_frame(frame, now)
        if until is not None and until in self._answers:
            return
        while (frames := recv_multipart(self._sub)) is not None:
            if len(frames) != 2:
                self._session.heard(now)
                continue
            try:
                self._deliver(self._session.event(frames[0], frames[1], now))
            except WireError:
                continue  # the gap a garbled event leaves is replayed

    def _housekeeping(self, now: float) -> None:
        """The port's own work, ten times a second while a call blocks."""
        self._next_housekeeping = now + TICK
        if not self._session.synced:
            return  # opening: the sync is all there is to do
        due = self._session.poll(now)
        for _, frame in due.resend:
            self._try_send(frame)  # not connected: tried again at the next resend
        for request_id in due.expired:
            self._expired(request_id, now)
        if due.sync:
            self._send_internal(self._session.sync_request())
        self._request_replay(due.replay)
        self._apply(due.events)
        if self.state is PortState.CONNECTED:
            for client_order_id in self._doubts.due(now):
                self._ask_status(client_order_id, now)

    def _expired(self, request_id: int, now: float) -> None:
        """Request ``request_id`` is past its deadline, unanswered."""
        client_order_id = self._queries.pop(request_id, None)
        if client_order_id is not None:
            self._emit(self._doubts.queried(client_order_id, self._no_answer(), now))
            return
        waiting = self._waiting.get(request_id)
        if waiting is not None and request_id not in self._answers:
            self._doubt(request_id, *waiting)  # a handle's request: its order is in doubt

    def _no_answer(self) -> AckTimeoutError:
        return AckTimeoutError("no answer to a status query", timeout=self.ack_timeout)

    def _doubt(self, request_id: int, request: Request, timeout: float) -> None:
        if isinstance(request, OrderRequest):
            now = time.monotonic()
            detail = unanswered_detail(request, timeout)
            self._emit(self._doubts.add(request.client_order_id, request_id, now, detail))

    def _ask_status(self, client_order_id: str, now: float) -> None:
        """Ask the venue about an order in doubt; the answer comes through ``_on_reply_frame``."""
        request_id = next(self._ids)
        query = QueryOrder(strategy_id=self.strategy_id, client_order_id=client_order_id)
        frame = self._session.request(request_id, query)
        if not self._try_send(frame):
            self._emit(self._doubts.queried(client_order_id, self._no_answer(), now))
            return
        self._session.requests.track(
            request_id, frame, now, now + self.ack_timeout, retry_throttled=False
        )
        self._queries[request_id] = client_order_id

    def _apply(self, events: list[PortEvent]) -> None:
        """Report what the session noticed, and act on it."""
        for event in events:
            self._emit(event)
            if event.kind is PortEventKind.CONNECTION_LOST:
                self.state = PortState.RECONNECTING
            elif event.kind is PortEventKind.CONNECTION_RESTORED:
                self.state = PortState.CONNECTED
            elif event.kind is PortEventKind.VENUE_RESET:
                self._venue_reset("the venue was reset before it answered")

    def _venue_reset(self, detail: str) -> None:
        """No pending request will be answered: each fails with outcome UNKNOWN (a resend may
        have reached the new venue) and its order goes in doubt, settled at the new venue."""
        now = time.monotonic()
        self._doubts.reset(now)
        for request_id, (request, _) in self._waiting.items():
            if request_id in self._answers:
                continue
            client_order_id = getattr(request, "client_order_id", None)
            if isinstance(request, OrderRequest):
                self._emit(self._doubts.add(request.client_order_id, request_id, now, detail))
            self._answers[request_id] = Rejection(
                reason=ErrorReason.DISCONNECTED,
                message=f"{detail}; outcome unknown",
                outcome=Outcome.UNKNOWN,
                client_order_id=client_order_id,
            )
        for client_order_id in self._queries.values():
            self._doubts.queried(client_order_id, self._no_answer(), now)  # asked again
        self._queries.clear()

    def _on_reply_frame(self, frame: bytes, now: float) -> None:
        try:
            envelope = self._session.reply(frame)
        except WireError:
            return
        request_id = envelope.request_id
        assert request_id is not None
        body = envelope.body
        if request_id in self._internal:
            self._internal.discard(request_id)
            if isinstance(body, SyncReply):
                synced = self._session.synced_at(body, now)
                self._apply(synced.events)
                self._request_replay(synced.replay)
            elif isinstance(body, ReplayReply):
                self._deliver(self._session.replayed(body, now))
            return
        if not self._session.requests.answered(request_id, body, now):
            return  # throttled: sent again after retry_after
        client_order_id = self._queries.pop(request_id, None)
        if client_order_id is not None:
            result: OrderSnapshot | PortError
            try:
                result = settle(body, OrderSnapshot)
            except PortError as error:
                result = error
            self._emit(self._doubts.queried(client_order_id, result, now))
            return
        if self._doubts:
            self._emit(self._doubts.answered(request_id, body, now))
        if request_id in self._waiting:
            self._answers[request_id] = body
        # else: a duplicate, or an answer nobody waits for any more

    def _deliver(self, incoming: Incoming) -> None:
        for report in incoming.reports:
            for stream in self._subscribers.of(report.client_order_id):
                stream._queue.append(report)
            if self._doubts:
                self._doubts.reported(report.client_order_id, time.monotonic())
        self._request_replay(incoming.replay)

    def _emit(self, event: PortEvent | None) -> None:
        if event is not None:
            for stream in self._subscribers.port_events():
                stream._queue.append(event)

    def _request_replay(self, replay: Replay | None) -> None:
        if replay is not None:
            self._send_internal(replay)  # if not sent, asked again on the next heartbeat

    def _open_stream(
        self, client_order_id: str | None, *, port_events: bool = False
    ) -> BlockingUpdateStream[Any]:
        stream: BlockingUpdateStream[Any] = BlockingUpdateStream(
            self, client_order_id, port_events=port_events
        )
        self._subscribers.add(stream)
        return stream

    def _forget(self, stream: BlockingUpdateStream[Any]) -> None:
        self._subscribers.discard(stream)
