"""``PortCore``: the bookkeeping every port shares, with no I/O and no waiting.

It holds the lifecycle (the state, its guards, the watchers of its changes), the request table
(each request the port made, and where its answer goes), the orders in doubt and the status
queries that settle them (``ports.recovery.InDoubt``), the fan-out of execution reports and port
events to update streams, and what a lost connection or a reset venue does to all of these.

The shells built on it only wait: ``PortBase`` on asyncio futures and timers (the in-process mock
and the asyncio ZeroMQ port), the blocking ZeroMQ port by polling its sockets. A shell implements
``_transmit``, ``_now`` (its monotonic clock) and the waiting, and tells the core what happens:
``_answer``, ``_deliver``, ``_expire``, ``_port_event``; ``_ask_due`` sends the status queries
that are due (``_next_query_at`` says when the next one is). Every call that depends on time
takes ``now`` (the shell's ``_now()``); the core reads no clock but the one that stamps port
events (``_event_time``).
"""

from __future__ import annotations

import contextlib
import itertools
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from ports.enums import ErrorReason, Outcome, PortEventKind
from ports.errors import (
    AckTimeoutError,
    ConnectivityError,
    PortClosedError,
    PortError,
    check_strategy,
    reply_or_raise,
)
from ports.models import (
    ExecutionReport,
    OrderRequest,
    OrderSnapshot,
    PortEvent,
    QueryOrder,
    Request,
)
from ports.order_execution_port import PortState
from ports.positions import QueryPositions
from ports.recovery import InDoubt
from ports.streams import Subscribers

DEFAULT_ACK_TIMEOUT = 5.0

_T_contra = TypeVar("_T_contra", contravariant=True)

PortRequest = Request | QueryPositions
"""What a port sends: the order requests, and the query of its positions (bus ports)."""


class Waiter(Protocol[_T_contra]):
    """Where the answer to a request lands: an ``asyncio.Future``, or a blocking ``Answer``."""

    def done(self) -> bool: ...

    def set_result(self, result: _T_contra, /) -> None: ...

    def set_exception(self, exception: BaseException, /) -> None: ...


class UpdateSink(Protocol):
    """An update stream, as the port sees it: where its reports and port events go."""

    client_order_id: str | None
    port_events: bool

    def _put(self, update: ExecutionReport | PortEvent) -> None: ...

    def _end(self) -> None: ...


@dataclass(slots=True)
class _Call:
    """A request of the port's that the venue has not answered yet."""

    request: PortRequest
    expected: type[Any]
    timeout: float
    waiter: Waiter[Any] | None  # None: a status query of an order in doubt (the port's own)
    detached: bool = False  # a *_nowait request: a handle waits for it, not the call that sent it
    expired: bool = False  # its timeout passed: its order went in doubt; a late answer still lands


def unanswered_detail(request: PortRequest, timeout: float) -> str:
    """What an ORDER_IN_DOUBT event says about the request that went unanswered."""
    action = type(request).__name__.removesuffix("Order").lower()
    return f"no answer to the {action} within {timeout} s"


def _order_of(request: PortRequest) -> str | None:
    return getattr(request, "client_order_id", None)


def _status(result: object) -> OrderSnapshot | PortError:
    try:
        return reply_or_raise(result, OrderSnapshot)
    except PortError as error:
        return error


class PortCore(ABC):
    """What every port does that is neither I/O nor waiting (see the module docstring)."""

    _OPEN_HINT = "the port is not open"
    """The end of the ``PortClosedError`` a port not opened yet raises (each shell says how)."""

    def __init__(self, strategy_id: str, *, ack_timeout: float = DEFAULT_ACK_TIMEOUT) -> None:
        super().__init__()
        self._strategy_id = strategy_id
        self.ack_timeout = ack_timeout
        self._state = PortState.IDLE
        self._state_watchers: list[Callable[[PortState], None]] = []
        self._request_ids = itertools.count(1)  # one space for every request the port sends
        self._calls: dict[int, _Call] = {}
        self._subscribers: Subscribers[UpdateSink] = Subscribers()
        self._doubts = InDoubt(clock=self._event_time)

    # --- what a shell provides ---------------------------------------------------------------

    @abstractmethod
    def _transmit(self, request_id: int, request: PortRequest, timeout: float) -> None:
        """Send one request; raise ``ConnectivityError`` if nothing could be sent. Unless it is
        answered first, ``_expire(request_id, now)`` must run ``timeout`` seconds from now."""

    @abstractmethod
    def _now(self) -> float:
        """The shell's monotonic clock, in seconds: what every ``now`` argument is measured on."""

    def _event_time(self) -> datetime:
        """The time stamped on port events (a transport may have a clock of its own)."""
        return datetime.now(UTC)

    def _fail(self, waiter: Waiter[Any], error: BaseException) -> None:
        waiter.set_exception(error)

    def _wake(self) -> None:
        """A status query may now be due sooner than ``_next_query_at`` said. (A shell that looks
        at ``_ask_due`` often enough anyway needs to do nothing.)"""
        return

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def strategy_id(self) -> str:
        """The strategy this port trades for."""
        return self._strategy_id

    @property
    def state(self) -> PortState:
        """Where the port is in its lifecycle."""
        return self._state

    def in_doubt(self) -> frozenset[str]:
        """Client order ids of the orders whose submit, amend or cancel went unanswered in time:
        what the venue holds for them is not known yet. The port settles each by itself (a late
        answer, or a status query once connected) and reports ORDER_SETTLED."""
        return self._doubts.ids()

    def _set_state(self, state: PortState) -> None:
        if state is self._state or self._state is PortState.CLOSED:
            return
        self._state = state
        for watcher in self._state_watchers:
            watcher(state)
        if state is PortState.CONNECTED and self._doubts:
            self._wake()  # orders in doubt are asked about once connected

    def _watch_states(self, watcher: Callable[[PortState], None]) -> None:
        """Call ``watcher`` with each change of state from now on (CLOSED is the last)."""
        self._check_usable()
        self._state_watchers.append(watcher)

    def _unwatch_states(self, watcher: Callable[[PortState], None]) -> None:
        with contextlib.suppress(ValueError):  # the port forgot it when it closed
            self._state_watchers.remove(watcher)

    def _begin_open(self) -> bool:
        """IDLE -> CONNECTING; False if the port is open (or opening) already."""
        if self._state is PortState.CLOSED:
            raise PortClosedError("the port is closed and cannot be reopened; create a new one")
        if self._state is not PortState.IDLE:
            return False
        self._set_state(PortState.CONNECTING)
        return True

    def _open_failed(self, error: BaseException) -> None:
        """Opening raised ``error``: back to IDLE, or ``PortClosedError`` if it closed meanwhile."""
        if self._state is PortState.CLOSED:
            raise PortClosedError("the port was closed while it opened") from error
        self._set_state(PortState.IDLE)

    def _begin_close(self) -> bool:
        """-> CLOSED (watchers hear it); False if the port was closed already."""
        if self._state is PortState.CLOSED:
            return False
        self._set_state(PortState.CLOSED)
        return True

    def _close_out(self) -> None:
        """The port has closed: unanswered requests fail (outcome unknown), streams end after
        what they hold, and watchers of the state are let go (each has had CLOSED)."""
        calls, self._calls = self._calls, {}
        for call in calls.values():
            if call.waiter is not None and not call.waiter.done():
                error = PortClosedError(
                    "the port closed before the venue answered; outcome unknown",
                    outcome=Outcome.UNKNOWN,
                    client_order_id=_order_of(call.request),
                )
                self._fail(call.waiter, error)
        for stream in self._subscribers.take_all():
            stream._end()
        self._state_watchers.clear()

    def _check_usable(self) -> None:
        if self._state is PortState.CLOSED:
            raise PortClosedError()
        if self._state in (PortState.IDLE, PortState.CONNECTING):
            raise PortClosedError(self._OPEN_HINT)

    # --- requests ----------------------------------------------------------------------------

    def _request(
        self,
        request: PortRequest,
        expected: type[Any],
        waiter: Waiter[Any],
        timeout: float,
        *,
        detached: bool = False,
    ) -> int:
        """Send ``request``; its answer (``expected``, or the error it stands for) goes to
        ``waiter``. ``detached``: a handle waits for it; past ``timeout`` its order goes in doubt
        but a late answer still reaches the handle. Otherwise the waiter then gets
        ``AckTimeoutError``. Returns the request id."""
        self._check_usable()
        check_strategy(self._strategy_id, request)
        request_id = next(self._request_ids)
        self._calls[request_id] = _Call(request, expected, timeout, waiter, detached)
        try:
            self._transmit(request_id, request, timeout)
        except BaseException:
            self._calls.pop(request_id, None)
            raise
        return request_id

    def _awaiting(self, request_id: int) -> bool:
        """Whether request ``request_id`` still waits for its answer."""
        return request_id in self._calls

    def _answer(self, request_id: int, result: object, now: float) -> None:
        """The venue's answer to request ``request_id``. Repeated answers are ignored (the first
        one counts); a late one still settles its order if it is in doubt."""
        if self._doubts:
            self._emit(self._doubts.answered(request_id, result, now))
            self._wake()
        call = self._calls.pop(request_id, None)
        if call is None:
            return
        waiter = call.waiter
        if waiter is None:
            self._queried(call, _status(result), now)
        elif not waiter.done():
            try:
                waiter.set_result(reply_or_raise(result, call.expected))
            except PortError as error:
                self._fail(waiter, error)

    def _expire(self, request_id: int, now: float, unreadable: str | None = None) -> None:
        """Request ``request_id`` got no answer within its timeout (or, ``unreadable``, an
        answer that could not be read, for that reason): its order goes in doubt (before its
        caller hears of it), then a caller waiting gets ``AckTimeoutError`` (or a
        ``ConnectivityError`` saying what could not be read; its outcome is unknown)."""
        call = self._calls.get(request_id)
        if call is None or call.expired:
            return
        request, waiter = call.request, call.waiter
        error: ConnectivityError
        if unreadable is not None:
            error = ConnectivityError(
                f"the venue's answer to request {request_id} could not be read: {unreadable}",
                reason=ErrorReason.PROTOCOL_ERROR,
                outcome=Outcome.UNKNOWN,
                client_order_id=_order_of(request),
            )
        elif waiter is None:
            error = AckTimeoutError("no answer to a status query", timeout=call.timeout)
        else:
            error = AckTimeoutError(timeout=call.timeout, client_order_id=_order_of(request))
        if waiter is None:
            del self._calls[request_id]
            self._queried(call, error, now)
            return
        if isinstance(request, OrderRequest):  # queries and cancel-alls name no order to settle
            detail = unanswered_detail(request, call.timeout) if unreadable is None else unreadable
            self._emit(self._doubts.add(request.client_order_id, request_id, now, detail))
            self._wake()
        if call.detached and not waiter.done() and unreadable is None:
            call.expired = True  # its handle may still get a late answer
            return
        del self._calls[request_id]
        if not waiter.done():
            self._fail(waiter, error)

    # --- orders in doubt ---------------------------------------------------------------------

    def _ask_due(self, now: float) -> None:
        """Send the status queries of orders in doubt that are due (only while connected)."""
        if self._state is not PortState.CONNECTED or not self._doubts:
            return
        for client_order_id in self._doubts.due(now):
            query = QueryOrder(strategy_id=self._strategy_id, client_order_id=client_order_id)
            request_id = next(self._request_ids)
            call = self._calls[request_id] = _Call(query, OrderSnapshot, self.ack_timeout, None)
            try:
                self._transmit(request_id, query, self.ack_timeout)
            except PortError as error:  # not sent: asked again later
                self._calls.pop(request_id, None)
                self._queried(call, error, now)

    def _next_query_at(self) -> float | None:
        """When ``_ask_due`` next has a status query to send (None: none waits)."""
        if self._state is not PortState.CONNECTED or not self._doubts:
            return None
        return self._doubts.next_due()

    def _queried(self, call: _Call, result: OrderSnapshot | PortError, now: float) -> None:
        assert isinstance(call.request, QueryOrder)
        self._emit(self._doubts.queried(call.request.client_order_id, result, now))
        self._wake()

    # --- events ------------------------------------------------------------------------------

    def _deliver(self, report: ExecutionReport, now: float) -> None:
        """One execution report, in stream order, to every stream that wants it."""
        for stream in self._subscribers.of(report.client_order_id):
            stream._put(report)
        if report.client_order_id in self._doubts:
            self._doubts.reported(report.client_order_id, now)
            self._wake()

    def _emit(self, event: PortEvent | None) -> None:
        """Deliver a port event to the streams that asked for them."""
        if event is not None:
            for stream in self._subscribers.port_events():
                stream._put(event)

    def _port_event(self, event: PortEvent, now: float) -> None:
        """Report what the transport noticed about the venue, and act on it."""
        self._emit(event)
        if event.kind is PortEventKind.CONNECTION_LOST:
            self._set_state(PortState.RECONNECTING)
        elif event.kind is PortEventKind.CONNECTION_RESTORED:
            self._set_state(PortState.CONNECTED)
        elif event.kind is PortEventKind.VENUE_RESET:
            self._venue_reset("the venue was reset before it answered", now)

    def _venue_reset(self, detail: str, now: float) -> None:
        """The venue lost its state: no request will be answered. Each fails with outcome
        UNKNOWN (a resend may have reached the new venue) and its order goes in doubt; every
        order in doubt is asked about afresh, at the new venue."""
        self._doubts.reset(now)
        calls, self._calls = self._calls, {}
        for request_id, call in calls.items():
            request, waiter = call.request, call.waiter
            if waiter is None:
                self._queried(call, ConnectivityError(detail), now)  # asked again at once
                continue
            # An expired one went in doubt when it expired: settled since, or reset above.
            if isinstance(request, OrderRequest) and not call.expired:
                self._emit(self._doubts.add(request.client_order_id, request_id, now, detail))
            if not waiter.done():
                error = ConnectivityError(
                    f"{detail}; outcome unknown", client_order_id=_order_of(request)
                )
                self._fail(waiter, error)
        self._wake()

    # --- streams -----------------------------------------------------------------------------

    def _check_updates(self, client_order_id: str | None, port_events: bool) -> None:
        self._check_usable()
        if port_events and client_order_id is not None:
            raise ValueError("port events go to strategy-wide streams: no client_order_id")
