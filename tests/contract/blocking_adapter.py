"""Runs the contract suite against ``BlockingOrderExecutionPort``.

``BlockingAsAsync`` presents a blocking port as an ``OrderExecutionPort``: every call runs on one
worker thread that owns the blocking port (and so its sockets), and its handles and streams are
wrapped the same way. The adapter adds no logic of its own: what the tests see is what the blocking
client does.
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, Self, TypeVar, cast, overload

from bus.blocking import BlockingOrderExecutionPort, BlockingOrderHandle, BlockingUpdateStream
from ports import (
    Acknowledgement,
    AmendOrder,
    CancelAllAcknowledgement,
    CancelOrder,
    ExecutionReport,
    OrderExecutionPort,
    OrderHandle,
    OrderSnapshot,
    PortEvent,
    PortState,
    Side,
    SubmitOrder,
    UpdateStream,
)
from ports.blocking import BlockingStateChanges
from ports.positions import Position

_T = TypeVar("_T")
POLL = 0.05  # seconds a wait for an update blocks the worker before others get a turn


class _Worker:
    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blocking-port")

    async def run(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        call = functools.partial(fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def run_sync(self, fn: Callable[..., _T], *args: Any) -> _T:
        return self._executor.submit(fn, *args).result()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False)


class _AsyncStream:
    def __init__(self, worker: _Worker, stream: BlockingUpdateStream[Any] | BlockingStateChanges):
        self._worker = worker
        self._stream = stream

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Any:
        while True:
            try:
                return await self._worker.run(self._stream.get, POLL)
            except TimeoutError:
                continue
            except EOFError:
                raise StopAsyncIteration from None

    async def get(self, timeout: float | None = None) -> Any:
        return await self._worker.run(self._stream.get, timeout)

    async def aclose(self) -> None:
        await self._worker.run(self._stream.close)


class _AsyncHandle:
    def __init__(self, worker: _Worker, handle: BlockingOrderHandle) -> None:
        self._worker = worker
        self._handle = handle
        self.request = handle.request
        self.events = _AsyncStream(worker, handle.events)

    @property
    def client_order_id(self) -> str:
        return self._handle.client_order_id

    def done(self) -> bool:
        return self._worker.run_sync(self._handle.done)

    async def acknowledged(self, timeout: float | None = None) -> Acknowledgement:
        return await self._worker.run(self._handle.acknowledged, timeout)


class BlockingAsAsync(OrderExecutionPort):
    """An ``OrderExecutionPort`` over a ``BlockingOrderExecutionPort``, for the contract suite."""

    def __init__(self, port: BlockingOrderExecutionPort) -> None:
        self._port = port
        self._worker = _Worker()
        # A closed port must still answer (with PortClosedError): the worker outlives close().
        weakref.finalize(self, self._worker.shutdown)

    @property
    def strategy_id(self) -> str:
        return self._port.strategy_id

    @property
    def state(self) -> PortState:
        return self._port.state

    def state_changes(self) -> AsyncIterator[PortState]:
        changes = self._worker.run_sync(self._port.state_changes)
        return cast(AsyncIterator[PortState], _AsyncStream(self._worker, changes))

    async def open(self) -> None:
        await self._worker.run(self._port.open)

    async def close(self) -> None:
        await self._worker.run(self._port.close)

    async def submit_order(
        self, order: SubmitOrder, *, timeout: float | None = None
    ) -> Acknowledgement:
        return await self._worker.run(self._port.submit_order, order, timeout=timeout)

    async def submit_order_nowait(self, order: SubmitOrder) -> OrderHandle:
        return self._wrap(await self._worker.run(self._port.submit_order_nowait, order))

    async def amend_order(
        self, amend: AmendOrder, *, timeout: float | None = None
    ) -> Acknowledgement:
        return await self._worker.run(self._port.amend_order, amend, timeout=timeout)

    async def amend_order_nowait(self, amend: AmendOrder) -> OrderHandle:
        return self._wrap(await self._worker.run(self._port.amend_order_nowait, amend))

    async def cancel_order(
        self, cancel: CancelOrder, *, timeout: float | None = None
    ) -> Acknowledgement:
        return await self._worker.run(self._port.cancel_order, cancel, timeout=timeout)

    async def cancel_order_nowait(self, cancel: CancelOrder) -> OrderHandle:
        return self._wrap(await self._worker.run(self._port.cancel_order_nowait, cancel))

    async def cancel_all_orders(
        self,
        instrument: str | None = None,
        side: Side | None = None,
        *,
        timeout: float | None = None,
    ) -> CancelAllAcknowledgement:
        return await self._worker.run(
            self._port.cancel_all_orders, instrument, side, timeout=timeout
        )

    async def order_status(
        self, client_order_id: str, *, timeout: float | None = None
    ) -> OrderSnapshot:
        return await self._worker.run(self._port.order_status, client_order_id, timeout=timeout)

    async def open_orders(
        self, instrument: str | None = None, *, timeout: float | None = None
    ) -> tuple[OrderSnapshot, ...]:
        return await self._worker.run(self._port.open_orders, instrument, timeout=timeout)

    async def positions(self, *, timeout: float | None = None) -> tuple[Position, ...]:
        return await self._worker.run(self._port.positions, timeout=timeout)

    def in_doubt(self) -> frozenset[str]:
        return self._worker.run_sync(self._port.in_doubt)

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
        stream = self._worker.run_sync(
            functools.partial(self._port.updates, client_order_id, port_events=port_events)
        )
        return cast(UpdateStream[ExecutionReport | PortEvent], _AsyncStream(self._worker, stream))

    def _wrap(self, handle: BlockingOrderHandle) -> OrderHandle:
        return cast(OrderHandle, _AsyncHandle(self._worker, handle))
