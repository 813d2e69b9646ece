"""The blocking face of the port: ``BlockingOrderExecutionPortProtocol``, ``OrderExecutionPort``
method for method without ``await``, and the streams and handles a blocking port hands out.

None of them holds a socket or a thread: each waits by letting its port pump (wait a little for
what arrives, file it, and do the port's own work) until what it waits for is there.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, Generic, Literal, Protocol, Self, cast, overload

from typing_extensions import TypeVar

from ports.enums import Side
from ports.errors import AckTimeoutError
from ports.models import (
    Acknowledgement,
    AmendOrder,
    CancelAllAcknowledgement,
    CancelOrder,
    ExecutionReport,
    OrderRequest,
    OrderSnapshot,
    PortEvent,
    SubmitOrder,
)
from ports.order_execution_port import PortState

_T = TypeVar("_T")
_U = TypeVar("_U", covariant=True, default=ExecutionReport)


class Answer(Generic[_T]):
    """Where a blocking port files the answer to one request (a ``ports.core.Waiter``)."""

    __slots__ = ("_done", "_error", "_result")

    def __init__(self) -> None:
        self._done = False
        self._result: _T | None = None
        self._error: BaseException | None = None

    def done(self) -> bool:
        return self._done

    def set_result(self, result: _T, /) -> None:
        self._result, self._done = result, True

    def set_exception(self, exception: BaseException, /) -> None:
        self._error, self._done = exception, True

    def result(self) -> _T:
        """The answer, or raise the error it stands for."""
        if self._error is not None:
            raise self._error
        return cast(_T, self._result)


Pump = Callable[[float | None, "Answer[Any] | None"], None]
"""A blocking port's ``_pump(timeout, until)``: wait up to ``timeout`` seconds (None: a while)
and file what arrived, returning early once ``until`` is answered."""


def wait_for(
    answer: Answer[Any], timeout: float | None, pump: Pump, client_order_id: str | None
) -> None:
    """Pump until ``answer`` is in; ``AckTimeoutError`` after ``timeout`` s (None: no limit)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not answer.done():
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            assert timeout is not None
            raise AckTimeoutError(timeout=timeout, client_order_id=client_order_id)
        pump(remaining, answer)


class _Queued(Generic[_U]):
    """What a blocking iterator shares: a queue its port fills, read by pumping the port."""

    def __init__(self, pump: Pump) -> None:
        self._pump = pump
        self._queue: collections.deque[object] = collections.deque()
        self._ended = False

    def get(self, timeout: float | None = None) -> _U:
        """The next item, waiting up to ``timeout`` seconds (None: for ever). Raises
        ``TimeoutError``, or ``EOFError`` once ended and drained."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._queue:
            if self._ended:
                raise EOFError("the stream has ended")
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError("nothing came in time")
            self._pump(remaining, None)
        return cast(_U, self._queue.popleft())  # the port puts only what was asked for

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> _U:
        try:
            return self.get()
        except EOFError:
            raise StopIteration from None


class BlockingUpdateStream(_Queued[_U]):
    """Execution reports from the moment the stream was opened, in order, each exactly once (and
    the port's events too, for a stream opened with ``port_events=True``). Iterate it, or
    ``get(timeout)``; it ends after what it holds once closed or once its port closes."""

    def __init__(
        self,
        pump: Pump,
        on_close: Callable[[BlockingUpdateStream[Any]], None],
        client_order_id: str | None,
        *,
        port_events: bool = False,
    ) -> None:
        super().__init__(pump)
        self._on_close = on_close
        self.client_order_id = client_order_id
        """The order this stream follows; None: every order of the strategy."""
        self.port_events = port_events
        """Whether it also yields ``PortEvent``s."""

    def _put(self, update: ExecutionReport | PortEvent) -> None:
        if not self._ended:
            self._queue.append(update)

    def _end(self) -> None:
        self._ended = True

    def close(self) -> None:
        """Stop receiving; what is queued can still be read."""
        self._ended = True
        self._on_close(self)


class BlockingStateChanges(_Queued[PortState]):
    """Each change of a blocking port's state from the moment it was asked for; ends after
    CLOSED. Iterate it, or ``get(timeout)``."""

    def __init__(self, pump: Pump, on_close: Callable[[Callable[[PortState], None]], None]):
        super().__init__(pump)
        self._on_close = on_close

    def _put(self, state: PortState) -> None:
        self._queue.append(state)
        if state is PortState.CLOSED:
            self._ended = True

    def close(self) -> None:
        """Stop following the port's state; what is queued can still be read."""
        self._ended = True
        self._on_close(self._put)


class BlockingOrderHandle:
    """A request sent without waiting: ``acknowledged(timeout)`` waits later; ``events`` streams
    the order's reports from the moment it was sent."""

    def __init__(
        self,
        pump: Pump,
        request: OrderRequest,
        answer: Answer[Acknowledgement],
        events: BlockingUpdateStream,
    ) -> None:
        self._pump = pump
        self.request = request
        self._answer = answer
        self.events = events

    @property
    def client_order_id(self) -> str:
        return self.request.client_order_id

    def done(self) -> bool:
        """True once the venue's answer has arrived (reads what is waiting, without blocking)."""
        if not self._answer.done():
            self._pump(0, self._answer)
        return self._answer.done()

    def acknowledged(self, timeout: float | None = None) -> Acknowledgement:
        """The acknowledgement, or the request's typed error; ``AckTimeoutError`` after
        ``timeout`` seconds (None: waits indefinitely). A timeout keeps the answer to come, so a
        later call can still get it."""
        wait_for(self._answer, timeout, self._pump, self.client_order_id)
        return self._answer.result()

    def __repr__(self) -> str:
        state = "answered" if self._answer.done() else "pending"
        return f"<BlockingOrderHandle {type(self.request).__name__} {self.client_order_id} {state}>"


class BlockingOrderExecutionPortProtocol(Protocol):
    """``OrderExecutionPort`` without ``await``, method for method (``bus``'s
    ``BlockingOrderExecutionPort`` is checked against it). Each call blocks until done; the port
    does its own work (resends, liveness, settling orders in doubt) while some call blocks."""

    @property
    def strategy_id(self) -> str:
        """The strategy this port trades for."""
        ...

    @property
    def state(self) -> PortState:
        """Where the port is in its lifecycle."""
        ...

    def state_changes(self) -> Iterator[PortState]:
        """Each change of ``state`` from now on; ends after CLOSED."""
        ...

    def open(self) -> None:
        """Connect to the venue. Idempotent while open; raises PortClosedError once closed."""
        ...

    def close(self) -> None:
        """Close for good: end every update stream, fail unanswered requests. Idempotent."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def submit_order(self, order: SubmitOrder, *, timeout: float | None = None) -> Acknowledgement:
        """Place an order and wait until the venue accepts it."""
        ...

    def submit_order_nowait(self, order: SubmitOrder) -> BlockingOrderHandle:
        """Place an order; return once it is sent."""
        ...

    def amend_order(self, amend: AmendOrder, *, timeout: float | None = None) -> Acknowledgement:
        """Change a working order and wait until the venue has applied the change."""
        ...

    def amend_order_nowait(self, amend: AmendOrder) -> BlockingOrderHandle:
        """Change a working order; return once the request is sent."""
        ...

    def cancel_order(self, cancel: CancelOrder, *, timeout: float | None = None) -> Acknowledgement:
        """Cancel a working order and wait until it is canceled."""
        ...

    def cancel_order_nowait(self, cancel: CancelOrder) -> BlockingOrderHandle:
        """Cancel a working order; return once the request is sent."""
        ...

    def cancel_all_orders(
        self,
        instrument: str | None = None,
        side: Side | None = None,
        *,
        timeout: float | None = None,
    ) -> CancelAllAcknowledgement:
        """Cancel every open order of this strategy (optionally one instrument and/or side)."""
        ...

    def order_status(self, client_order_id: str, *, timeout: float | None = None) -> OrderSnapshot:
        """The order as the venue holds it now. Raises OrderRejectedError(UNKNOWN_ORDER)."""
        ...

    def open_orders(
        self, instrument: str | None = None, *, timeout: float | None = None
    ) -> tuple[OrderSnapshot, ...]:
        """This strategy's open orders at the venue, oldest first."""
        ...

    def in_doubt(self) -> frozenset[str]:
        """Client order ids of the orders in doubt (see ``OrderExecutionPort.in_doubt``)."""
        ...

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
        """Execution reports of this strategy (or of one order) from now on, in stream order;
        ``port_events=True`` (strategy-wide only) adds the port's ``PortEvent``s."""
        ...
