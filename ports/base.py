"""``PortBase``: the asyncio logic every port shares, over a transport it does not know.

It owns the lifecycle, request ids and their reply futures, both acknowledgement patterns, ack
timeouts and the fan-out of execution reports to update streams. A concrete port implements
``_connect``, ``_disconnect`` and ``_transmit``, and calls ``_on_reply`` / ``_on_report`` as answers
and events arrive, in stream order.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from ports.enums import Outcome, Side
from ports.errors import PortClosedError, PortError, check_strategy, settle
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
    Reply,
    Request,
    SubmitOrder,
)
from ports.order_execution_port import OrderExecutionPort, PortState
from ports.streams import OrderHandle, Subscribers, UpdateStream, wait_reply

_R = TypeVar("_R", bound=Reply)

DEFAULT_ACK_TIMEOUT = 5.0


def _retrieve(future: asyncio.Future[Any]) -> None:
    # A reply nobody awaits any more (its caller timed out) must not log "exception never
    # retrieved": the error is reported on the update stream or to whoever still awaits it.
    if not future.cancelled():
        future.exception()


class PortBase(OrderExecutionPort):
    """Shared implementation of ``OrderExecutionPort`` for asyncio transports."""

    def __init__(self, strategy_id: str, *, ack_timeout: float = DEFAULT_ACK_TIMEOUT) -> None:
        self._strategy_id = strategy_id
        self.ack_timeout = ack_timeout
        self._state = PortState.IDLE
        self._next_request_id = 0
        self._pending: dict[int, tuple[asyncio.Future[Any], type[Any], str | None]] = {}
        self._subscribers: Subscribers[UpdateStream] = Subscribers()
        self._state_watchers: list[asyncio.Queue[PortState]] = []

    # --- transport hooks ---------------------------------------------------------------------

    @abstractmethod
    async def _connect(self) -> None:
        """Establish the transport. Raise ConnectivityError if the venue cannot be reached."""

    @abstractmethod
    async def _disconnect(self) -> None:
        """Release the transport."""

    @abstractmethod
    async def _transmit(self, request_id: int, request: Request) -> None:
        """Send one request. Raise ConnectivityError if it cannot be sent."""

    def _new_request_id(self) -> int:
        """A request id no other request of this port uses (for a transport's own requests)."""
        self._next_request_id += 1
        return self._next_request_id

    def _on_reply(self, request_id: int, result: object) -> None:
        """Deliver the venue's answer to request ``request_id``. Late or repeated answers are
        ignored (the first one counts)."""
        entry = self._pending.pop(request_id, None)
        if entry is None:
            return
        future, expected, _ = entry
        if future.done():
            return
        try:
            future.set_result(settle(result, expected))
        except PortError as error:
            future.set_exception(error)

    def _on_report(self, report: ExecutionReport) -> None:
        """Deliver one execution report to every interested stream."""
        for stream in self._subscribers.of(report.client_order_id):
            stream._put(report)

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
            await self._disconnect()
        finally:
            pending, self._pending = self._pending, {}
            for future, _, client_order_id in pending.values():
                if not future.done():
                    future.set_exception(
                        PortClosedError(
                            "the port closed before the venue answered; outcome unknown",
                            outcome=Outcome.UNKNOWN,
                            client_order_id=client_order_id,
                        )
                    )
            for stream in self._subscribers.take_all():
                stream._end()

    # --- requests ----------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._state is PortState.CLOSED:
            raise PortClosedError()
        if self._state in (PortState.IDLE, PortState.CONNECTING):
            raise PortClosedError("the port is not open: use 'async with port' or 'await open()'")

    async def _request(self, request: Request, expected: type[_R]) -> asyncio.Future[_R]:
        self._check_usable()
        check_strategy(self._strategy_id, request)
        request_id = self._new_request_id()
        future: asyncio.Future[_R] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)
        self._pending[request_id] = (future, expected, getattr(request, "client_order_id", None))
        try:
            await self._transmit(request_id, request)
        except BaseException:
            self._pending.pop(request_id, None)
            future.cancel()
            raise
        return future

    async def _call(self, request: Request, expected: type[_R], timeout: float | None) -> _R:
        future = await self._request(request, expected)
        return await wait_reply(
            future,
            self.ack_timeout if timeout is None else timeout,
            getattr(request, "client_order_id", None),
        )

    async def _send_nowait(self, request: OrderRequest) -> OrderHandle:
        # Subscribe before sending, so the handle sees every event the request causes.
        events = self._open_stream(request.client_order_id)
        try:
            future = await self._request(request, Acknowledgement)
        except BaseException:
            await events.aclose()
            raise
        return OrderHandle(request, future, events)

    async def submit(self, order: SubmitOrder, *, timeout: float | None = None) -> Acknowledgement:
        return await self._call(order, Acknowledgement, timeout)

    async def submit_nowait(self, order: SubmitOrder) -> OrderHandle:
        return await self._send_nowait(order)

    async def amend(self, amend: AmendOrder, *, timeout: float | None = None) -> Acknowledgement:
        return await self._call(amend, Acknowledgement, timeout)

    async def amend_nowait(self, amend: AmendOrder) -> OrderHandle:
        return await self._send_nowait(amend)

    async def cancel(self, cancel: CancelOrder, *, timeout: float | None = None) -> Acknowledgement:
        return await self._call(cancel, Acknowledgement, timeout)

    async def cancel_nowait(self, cancel: CancelOrder) -> OrderHandle:
        return await self._send_nowait(cancel)

    async def cancel_all(
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

    def updates(self, client_order_id: str | None = None) -> UpdateStream:
        self._check_usable()
        return self._open_stream(client_order_id)

    def _open_stream(self, client_order_id: str | None) -> UpdateStream:
        stream = UpdateStream(self._subscribers.discard, client_order_id)
        self._subscribers.add(stream)
        return stream
