"""``PortBase``: ``OrderExecutionPort`` for asyncio transports, over ``ports.core.PortCore``.

The core keeps the books; this shell waits, on asyncio: a future per request (the core fails it
when the request's timeout passes), a timer that runs the port's own work when it falls due
(status queries of orders in doubt; a transport adds its own, ``_tick``), and async iterators of
updates and state changes.

A concrete port implements ``_connect``, ``_disconnect`` and ``_transmit``. An in-process
transport calls ``_on_reply`` and ``_on_report`` as answers and events arrive, in stream order,
and ``_expire_after`` for a request it did not answer at once; a transport that can lose its venue
also calls ``_port_event``.
"""

from __future__ import annotations

import asyncio
import math
from abc import abstractmethod
from collections.abc import AsyncIterator
from typing import Any, Literal, TypeVar, overload

from ports.core import DEFAULT_ACK_TIMEOUT, PortCore, PortRequest, Waiter, unanswered_detail
from ports.enums import Side
from ports.errors import PortClosedError
from ports.models import (
    Acknowledgement,
    AmendOrder,
    CancelAllAcknowledgement,
    CancelAllOrders,
    CancelOrder,
    ExecutionReport,
    OpenOrders,
    OrderRequest,
    OrderSnapshot,
    PortEvent,
    QueryOrder,
    Reply,
    SubmitOrder,
    paged_open_orders,
)
from ports.order_execution_port import OrderExecutionPort, PortState
from ports.positions import Position, PositionsSnapshot, QueryPositions
from ports.streams import OrderHandle, UpdateStream

__all__ = ["DEFAULT_ACK_TIMEOUT", "PortBase", "unanswered_detail"]

_R = TypeVar("_R", bound=Reply | PositionsSnapshot)


def _retrieve(future: asyncio.Future[Any]) -> None:
    future.exception()


class PortBase(PortCore, OrderExecutionPort):
    """Shared implementation of ``OrderExecutionPort`` for asyncio transports."""

    _OPEN_HINT = "the port is not open: use 'async with port' or 'await open()'"

    def __init__(self, strategy_id: str, *, ack_timeout: float = DEFAULT_ACK_TIMEOUT) -> None:
        super().__init__(strategy_id, ack_timeout=ack_timeout)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    # --- transport hooks ---------------------------------------------------------------------

    @abstractmethod
    async def _connect(self) -> None:
        """Establish the transport. Raise ConnectivityError if the venue cannot be reached."""

    @abstractmethod
    async def _disconnect(self) -> None:
        """Release the transport."""

    def _on_reply(self, request_id: int, result: object) -> None:
        """Deliver the venue's answer to request ``request_id``."""
        self._answer(request_id, result, self._now())

    def _on_report(self, report: ExecutionReport) -> None:
        """Deliver one execution report to every interested stream."""
        self._deliver(report, self._now())

    def _expire_after(self, request_id: int, timeout: float) -> None:
        """Expire request ``request_id`` in ``timeout`` seconds, unless answered by then."""
        asyncio.get_running_loop().call_later(timeout, self._expire_now, request_id)

    def _expire_now(self, request_id: int) -> None:
        self._expire(request_id, self._now())

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _fail(self, waiter: Waiter[Any], error: BaseException) -> None:
        """Fail a reply future. One nobody awaits any more must not log "exception never
        retrieved": the error is reported on the update stream or to whoever still awaits it.
        (Only failures take the callback: each costs a turn of the event loop.)"""
        waiter.set_exception(error)
        if isinstance(waiter, asyncio.Future):
            waiter.add_done_callback(_retrieve)

    # --- the port's own work, on one timer ----------------------------------------------------

    def _tick(self, now: float) -> None:
        """The port's own work, when the timer fires (a transport adds its own)."""
        self._ask_due(now)

    def _next_tick(self, now: float) -> float | None:
        """When ``_tick`` next has something to do (None: nothing is waiting)."""
        return self._next_query_at()

    def _wake(self) -> None:
        if self._state is not PortState.CLOSED and self._doubts:
            self._arm(self._now())

    def _arm(self, when: float | None) -> None:
        """Have ``_tick`` run at ``when`` at the latest."""
        if when is None or when >= self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_at(when, self._on_timer)
        self._timer_at = when

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = None, math.inf

    def _on_timer(self) -> None:
        self._timer, self._timer_at = None, math.inf
        if self._state in (PortState.IDLE, PortState.CLOSED):
            return
        now = self._now()
        self._tick(now)
        self._arm(self._next_tick(now))

    # --- lifecycle ---------------------------------------------------------------------------

    def state_changes(self) -> AsyncIterator[PortState]:
        queue: asyncio.Queue[PortState] = asyncio.Queue()
        self._watch_states(queue.put_nowait)  # now, not at the first iteration: nothing missed

        async def changes() -> AsyncIterator[PortState]:
            try:
                while True:
                    state = await queue.get()
                    yield state
                    if state is PortState.CLOSED:
                        return
            finally:
                self._unwatch_states(queue.put_nowait)

        return changes()

    async def open(self) -> None:
        if not self._begin_open():
            return
        try:
            await self._connect()
        except BaseException as error:
            self._disarm()
            self._open_failed(error)
            raise
        if self._state is PortState.CLOSED:  # close() ran while _connect() awaited
            await self._disconnect()
            raise PortClosedError("the port was closed while it opened")
        self._set_state(PortState.CONNECTED)

    async def close(self) -> None:
        if not self._begin_close():
            return
        self._disarm()
        try:
            await self._disconnect()
        finally:
            self._close_out()

    # --- requests ----------------------------------------------------------------------------

    async def _call(self, request: PortRequest, expected: type[_R], timeout: float | None) -> _R:
        # One deadline: the core fails the future with AckTimeoutError when it passes.
        future: asyncio.Future[_R] = asyncio.get_running_loop().create_future()
        self._request(request, expected, future, self.ack_timeout if timeout is None else timeout)
        return await future

    async def _send_nowait(self, request: OrderRequest) -> OrderHandle:
        # Subscribe before sending, so the handle sees every event the request causes.
        events = self._open_stream(request.client_order_id)
        future: asyncio.Future[Acknowledgement] = asyncio.get_running_loop().create_future()
        try:
            self._request(request, Acknowledgement, future, self.ack_timeout, detached=True)
        except BaseException:
            await events.aclose()
            raise
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
        pages = paged_open_orders(self._strategy_id, instrument)  # each page its own timeout
        request = next(pages)
        while True:
            try:
                request = pages.send(await self._call(request, OpenOrders, timeout))
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    async def positions(self, *, timeout: float | None = None) -> tuple[Position, ...]:
        """This strategy's positions from its fills, one per instrument it traded: net
        quantity, average price, realized P&L (the venue's or gateway's count, not the port's)."""
        request = QueryPositions(strategy_id=self._strategy_id)
        return (await self._call(request, PositionsSnapshot, timeout)).positions

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
        self._check_updates(client_order_id, port_events)
        return self._open_stream(client_order_id, port_events=port_events)

    def _open_stream(
        self, client_order_id: str | None, *, port_events: bool = False
    ) -> UpdateStream[Any]:
        stream: UpdateStream[Any] = UpdateStream(
            self._subscribers.discard, client_order_id, port_events=port_events
        )
        self._subscribers.add(stream)
        return stream
