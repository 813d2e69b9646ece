"""``PortBase``: the asyncio logic every port shares, over a transport it does not know.

It owns the lifecycle, request ids and their reply futures, both acknowledgement patterns, ack
timeouts, the orders in doubt (``ports.recovery.InDoubt``, settled by a background task) and the
fan-out of execution reports and port events to update streams. A concrete port implements
``_connect``, ``_disconnect`` and ``_transmit``, and calls ``_on_reply`` / ``_on_report`` as answers
and events arrive, in stream order; a transport that can lose its venue also calls ``_set_state``,
``_emit`` and ``_venue_reset``.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar, overload

from ports.enums import Outcome, Side
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
    Reply,
    Request,
    SubmitOrder,
)
from ports.order_execution_port import OrderExecutionPort, PortState
from ports.recovery import InDoubt
from ports.streams import OrderHandle, Subscribers, UpdateStream, wait_reply

_R = TypeVar("_R", bound=Reply)

DEFAULT_ACK_TIMEOUT = 5.0


def _retrieve(future: asyncio.Future[Any]) -> None:
    future.exception()


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    """Fail a reply future. One nobody awaits any more (its caller timed out) must not log
    "exception never retrieved": the error is reported on the update stream or to whoever still
    awaits it. (Only failures take the callback: each costs a turn of the event loop.)"""
    future.set_exception(error)
    future.add_done_callback(_retrieve)


def unanswered_detail(request: Request, timeout: float) -> str:
    """What an ORDER_IN_DOUBT event says about the request that went unanswered."""
    action = type(request).__name__.removesuffix("Order").lower()
    return f"no answer to the {action} within {timeout} s"


@dataclass(slots=True)
class _Pending:
    future: asyncio.Future[Any]
    expected: type[Any]
    request: Request
    expiry: asyncio.TimerHandle | None = None  # when a *_nowait request goes in doubt
    expired: bool = False  # its timeout passed: its order went in doubt then, if it names one


class PortBase(OrderExecutionPort):
    """Shared implementation of ``OrderExecutionPort`` for asyncio transports."""

    def __init__(self, strategy_id: str, *, ack_timeout: float = DEFAULT_ACK_TIMEOUT) -> None:
        self._strategy_id = strategy_id
        self.ack_timeout = ack_timeout
        self._state = PortState.IDLE
        self._next_request_id = 0
        self._pending: dict[int, _Pending] = {}
        self._subscribers: Subscribers[UpdateStream[Any]] = Subscribers()
        self._state_watchers: list[asyncio.Queue[PortState]] = []
        self._doubts = InDoubt(clock=self._event_time)
        self._settler: asyncio.Task[None] | None = None
        self._settler_wakeup = asyncio.Event()

    # --- transport hooks ---------------------------------------------------------------------

    @abstractmethod
    async def _connect(self) -> None:
        """Establish the transport. Raise ConnectivityError if the venue cannot be reached."""

    @abstractmethod
    async def _disconnect(self) -> None:
        """Release the transport."""

    @abstractmethod
    async def _transmit(self, request_id: int, request: Request, timeout: float) -> None:
        """Send one request. Raise ConnectivityError if it cannot be sent. The caller waits
        ``timeout`` seconds for the answer: a transport may resend it until then."""

    def _event_time(self) -> datetime:
        """The time stamped on port events (a transport may have a clock of its own)."""
        return datetime.now(UTC)

    def _new_request_id(self) -> int:
        """A request id no other request of this port uses (for a transport's own requests)."""
        self._next_request_id += 1
        return self._next_request_id

    def _on_reply(self, request_id: int, result: object) -> None:
        """Deliver the venue's answer to request ``request_id``. Repeated answers are ignored
        (the first one counts); a late one still settles its order if it is in doubt."""
        if self._doubts:
            self._emit(self._doubts.answered(request_id, result, self._loop_time()))
            self._wake_settler()
        entry = self._pending.pop(request_id, None)
        if entry is None:
            return
        if entry.expiry is not None:
            entry.expiry.cancel()
        future = entry.future
        if future.done():
            return
        try:
            future.set_result(settle(result, entry.expected))
        except PortError as error:
            _fail(future, error)

    def _on_report(self, report: ExecutionReport) -> None:
        """Deliver one execution report to every interested stream."""
        for stream in self._subscribers.of(report.client_order_id):
            stream._put(report)
        if report.client_order_id in self._doubts:
            self._doubts.reported(report.client_order_id, self._loop_time())
            self._wake_settler()

    def _emit(self, event: PortEvent | None) -> None:
        """Deliver a port event to the streams that asked for them."""
        if event is not None:
            for stream in self._subscribers.port_events():
                stream._put(event)

    def _venue_reset(self, detail: str) -> None:
        """The venue lost its state (a transport saw a new venue session): no pending request
        will be answered. Each fails with outcome UNKNOWN (a resend may have reached the new
        venue) and its order goes in doubt; every order in doubt is settled at the new venue."""
        now = self._loop_time()
        self._doubts.reset(now)
        pending, self._pending = self._pending, {}
        for request_id, entry in pending.items():
            if entry.expiry is not None:
                entry.expiry.cancel()
            request = entry.request
            client_order_id = getattr(request, "client_order_id", None)
            # An expired one went in doubt when it expired: settled since, or reset above.
            if isinstance(request, OrderRequest) and not entry.expired:
                self._emit(self._doubts.add(request.client_order_id, request_id, now, detail))
            if not entry.future.done():
                _fail(
                    entry.future,
                    ConnectivityError(
                        f"{detail}; outcome unknown", client_order_id=client_order_id
                    ),
                )
        self._wake_settler()

    # --- orders in doubt ---------------------------------------------------------------------

    def in_doubt(self) -> frozenset[str]:
        return self._doubts.ids()

    @staticmethod
    def _loop_time() -> float:
        return asyncio.get_running_loop().time()

    def _doubt(self, request_id: int, timeout: float) -> None:
        """Request ``request_id`` got no answer within ``timeout``: its order is in doubt."""
        entry = self._pending.get(request_id)
        if entry is None or entry.future.done():
            return
        entry.expired = True
        request = entry.request
        if not isinstance(request, OrderRequest):
            return  # a query or a cancel-all: nothing to settle (cancel-all names no order)
        now = self._loop_time()
        self._emit(
            self._doubts.add(
                request.client_order_id, request_id, now, unanswered_detail(request, timeout)
            )
        )
        self._wake_settler()

    def _wake_settler(self) -> None:
        if self._state is PortState.CLOSED or not self._doubts:
            return
        if self._settler is None or self._settler.done():
            self._settler = asyncio.get_running_loop().create_task(self._settle())
        else:
            self._settler_wakeup.set()

    async def _settle(self) -> None:
        """Runs while orders are in doubt: asks the venue about each when ``InDoubt`` says so,
        while connected, and reports what settles them."""
        loop = asyncio.get_running_loop()
        while self._doubts:
            self._settler_wakeup.clear()
            wait: float | None = None  # until woken: nothing to ask, or not connected
            if self._state is PortState.CONNECTED:
                due = self._doubts.due(loop.time())
                if due:
                    results = await asyncio.gather(*(self._status(c) for c in due))
                    for client_order_id, result in zip(due, results, strict=True):
                        self._emit(self._doubts.queried(client_order_id, result, loop.time()))
                    continue
                next_due = self._doubts.next_due()
                if next_due is not None:
                    wait = max(0.0, next_due - loop.time())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._settler_wakeup.wait()

    async def _status(self, client_order_id: str) -> OrderSnapshot | PortError:
        try:
            return await self.order_status(client_order_id)
        except PortError as error:
            return error

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def strategy_id(self) -> str:
        return self._strategy_id

    @property
    def state(self) -> PortState:
        return self._state

    def _set_state(self, state: PortState) -> None:
        if state is self._state:
            return
        self._state = state
        for queue in self._state_watchers:
            queue.put_nowait(state)
        if state is PortState.CONNECTED:
            self._wake_settler()  # orders in doubt are asked about once connected

    def state_changes(self) -> AsyncIterator[PortState]:
        self._check_usable()
        queue: asyncio.Queue[PortState] = asyncio.Queue()
        self._state_watchers.append(queue)  # now, not at the first iteration: nothing is missed

        async def changes() -> AsyncIterator[PortState]:
            try:
                while True:
                    state = await queue.get()
                    yield state
                    if state is PortState.CLOSED:
                        return
            finally:
                self._state_watchers.remove(queue)

        return changes()

    async def open(self) -> None:
        if self._state is PortState.CLOSED:
            raise PortClosedError("the port is closed and cannot be reopened; create a new one")
        if self._state is not PortState.IDLE:
            return
        self._set_state(PortState.CONNECTING)
        try:
            await self._connect()
        except BaseException as error:
            if self.state is PortState.CLOSED:  # closed while opening: closed it stays
                raise PortClosedError("the port was closed while it opened") from error
            self._set_state(PortState.IDLE)
            raise
        if self.state is PortState.CLOSED:  # close() ran while _connect() awaited
            await self._disconnect()
            raise PortClosedError("the port was closed while it opened")
        self._set_state(PortState.CONNECTED)

    async def close(self) -> None:
        if self._state is PortState.CLOSED:
            return
        self._set_state(PortState.CLOSED)
        try:
            if self._settler is not None:
                self._settler.cancel()
                await asyncio.gather(self._settler, return_exceptions=True)
            await self._disconnect()
        finally:
            pending, self._pending = self._pending, {}
            for entry in pending.values():
                if entry.expiry is not None:
                    entry.expiry.cancel()
                if not entry.future.done():
                    _fail(
                        entry.future,
                        PortClosedError(
                            "the port closed before the venue answered; outcome unknown",
                            outcome=Outcome.UNKNOWN,
                            client_order_id=getattr(entry.request, "client_order_id", None),
                        ),
                    )
            for stream in self._subscribers.take_all():
                stream._end()

    # --- requests ----------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._state is PortState.CLOSED:
            raise PortClosedError()
        if self._state in (PortState.IDLE, PortState.CONNECTING):
            raise PortClosedError("the port is not open: use 'async with port' or 'await open()'")

    async def _request(
        self, request: Request, expected: type[_R], timeout: float
    ) -> tuple[int, asyncio.Future[_R]]:
        self._check_usable()
        check_strategy(self._strategy_id, request)
        request_id = self._new_request_id()
        future: asyncio.Future[_R] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = _Pending(future, expected, request)
        try:
            await self._transmit(request_id, request, timeout)
        except BaseException:
            self._pending.pop(request_id, None)
            future.cancel()
            raise
        return request_id, future

    async def _call(self, request: Request, expected: type[_R], timeout: float | None) -> _R:
        timeout = self.ack_timeout if timeout is None else timeout
        request_id, future = await self._request(request, expected, timeout)
        try:
            return await wait_reply(future, timeout, getattr(request, "client_order_id", None))
        except AckTimeoutError:
            self._doubt(request_id, timeout)  # before the caller sees the error
            # Nobody awaits it any more; a late answer still settles the order (``_doubts``).
            self._pending.pop(request_id, None)
            raise

    async def _send_nowait(self, request: OrderRequest) -> OrderHandle:
        # Subscribe before sending, so the handle sees every event the request causes.
        events = self._open_stream(request.client_order_id)
        try:
            request_id, future = await self._request(request, Acknowledgement, self.ack_timeout)
        except BaseException:
            await events.aclose()
            raise
        entry = self._pending.get(request_id)
        if entry is not None:  # not answered already: in doubt if still unanswered in time
            entry.expiry = asyncio.get_running_loop().call_later(
                self.ack_timeout, self._doubt, request_id, self.ack_timeout
            )
        return OrderHandle(request, future, events)

    async def submit_order(
        self, order: SubmitOrder, *, timeout: float | None = None
    ) -> Acknowledgement:
        return await self._call(order, Acknowledgement, timeout)

    async def submit_order_nowait(self, order: SubmitOrder) -> OrderHandle:
        return await self._send_nowait(order)

    async def amend_order(
        self, amend: AmendOrder, *, timeout: float | None = None
    ) -> Acknowledgement:
        return await self._call(amend, Acknowledgement, timeout)

    async def amend_order_nowait(self, amend: AmendOrder) -> OrderHandle:
        return await self._send_nowait(amend)

    async def cancel_order(
        self, cancel: CancelOrder, *, timeout: float | None = None
    ) -> Acknowledgement:
        return await self._call(cancel, Acknowledgement, timeout)

    async def cancel_order_nowait(self, cancel: CancelOrder) -> OrderHandle:
        return await self._send_nowait(cancel)

    async def cancel_all_orders(
        self,
        instrument: str | None = None,
        side: Side | None = None,
        *,
        timeout: float | None = None,
    ) -> CancelAllAcknowledgement:
        request = CancelAllOrders(strategy_id=self._strategy_id, instrument=instrument, side=side)
        return await self._call(request, CancelAllAcknowledgement, timeout)

    async def order_status(
        self, client_order_id: str, *, timeout: float | None = None
    ) -> OrderSnapshot:
        request = QueryOrder(strategy_id=self._strategy_id, client_order_id=client_order_id)
        return await self._call(request, OrderSnapshot, timeout)

    async def open_orders(
        self, instrument: str | None = None, *, timeout: float | None = None
    ) -> tuple[OrderSnapshot, ...]:
        request = ListOpenOrders(strategy_id=self._strategy_id, instrument=instrument)
        return (await self._call(request, OpenOrders, timeout)).orders

    # --- streams -----------------------------------------------------------------------------

    @overload
    def updates(
        self, client_order_id: str | None = None, *, port_events: Literal[False] = False
    ) -> UpdateStream: ...

    @overload
    def updates(
        self, client_order_id: None = None, *, port_events: Literal[True]
    ) -> UpdateStream[ExecutionReport | PortEvent]: ...

    @overload
    def updates(
        self, client_order_id: str | None = None, *, port_events: bool
    ) -> UpdateStream[ExecutionReport | PortEvent]: ...

    def updates(
        self, client_order_id: str | None = None, *, port_events: bool = False
    ) -> UpdateStream[ExecutionReport | PortEvent]:
        self._check_usable()
        if port_events and client_order_id is not None:
            raise ValueError("port events go to strategy-wide streams: no client_order_id")
        return self._open_stream(client_order_id, port_events=port_events)

    def _open_stream(
        self, client_order_id: str | None, *, port_events: bool = False
    ) -> UpdateStream[Any]:
        stream: UpdateStream[Any] = UpdateStream(
            self._subscribers.discard, client_order_id, port_events=port_events
        )
        self._subscribers.add(stream)
        return stream
