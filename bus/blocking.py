"""``BlockingOrderExecutionPort``: the port for code that is not asyncio (scripts, notebooks, the
CLI). Same models, errors, protocol and bookkeeping as the asyncio port (``bus.transport`` over
``ports.core``); calls block until answered.

It has no background thread (but one that sends keepalives, with cancel on disconnect,
``bus.keepalive_thread``): whichever call is waiting (for a reply, an update or a state change)
reads the sockets and files what arrives, replies and events alike, so nothing is lost between
calls. That call also does the port's own work: resends, re-syncs, liveness, settling orders in
doubt. So the port notices a lost venue, and settles orders in doubt, only while some call blocks
(an ``updates().get()`` will do). Use it from one thread.
"""

from __future__ import annotations

import contextlib
import math
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar, overload

import zmq

from bus.codec import WireError
from bus.keepalive_thread import KeepaliveThread
from bus.transport import TICK, ZmqTransport
from ports.blocking import (
    Answer,
    BlockingOrderHandle,
    BlockingStateChanges,
    BlockingUpdateStream,
    wait_for,
)
from ports.core import PortRequest
from ports.enums import Side
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
    SubmitOrder,
    paged_open_orders,
)
from ports.order_execution_port import PortState
from ports.positions import Position, PositionsSnapshot, QueryPositions

if TYPE_CHECKING:
    from ports.blocking import BlockingOrderExecutionPortProtocol

__all__ = ["BlockingOrderExecutionPort", "BlockingOrderHandle", "BlockingUpdateStream"]

_R = TypeVar("_R")


class BlockingOrderExecutionPort(ZmqTransport):
    """Submit, amend and cancel orders of one strategy over ZeroMQ, blocking.

    Mirrors ``OrderExecutionPort`` method for method, without ``await``
    (``ports.BlockingOrderExecutionPortProtocol``): ``submit_order`` waits for the
    acknowledgement, ``submit_order_nowait`` returns a handle, ``updates()`` streams reports,
    ``state_changes()`` the port's states, ``in_doubt()`` names the orders whose outcome is not
    known yet. Options as for ``ZmqOrderExecutionPort``.
    """

    _OPEN_HINT = "the port is not open: use 'with port' or 'open()'"
    _poller: zmq.Poller | None = None
    _next_housekeeping = 0.0
    _keepalive: KeepaliveThread | None = None

    def _now(self) -> float:
        return time.monotonic()

    # --- lifecycle ----------------------------------------------------------------------------

    def open(self) -> None:
        """Connect and synchronise with the venue; ``ConnectivityError`` if none answers."""
        if not self._begin_open():
            return
        try:
            poller = zmq.Poller()
            for socket in self._open_sockets():
                poller.register(socket, zmq.POLLIN)
            self._poller = poller
            opening: Answer[None] = Answer()
            self._start_stream(opening, time.monotonic())
            wait_for(opening, None, self._pump, None)
            opening.result()
            timeout = self._protocol.keepalive.timeout
            if timeout is not None and self._context is not None:
                self._keepalive = KeepaliveThread(
                    self._context, self.command_endpoint, self.keys, self.strategy_id,
                    self.client_id, timeout,
                )  # fmt: skip
                self._keepalive.start()
        except BaseException as error:
            self._release()
            self._open_failed(error)
            raise
        self._set_state(PortState.CONNECTED)

    def close(self) -> None:
        """Close for good; streams end after what they hold. Idempotent."""
        if self._begin_close():
            self._close_out()
            self._release()

    def _release(self) -> None:
        if self._keepalive is not None:
            self._keepalive.stop()  # its socket closed before the context is
            self._keepalive = None
        self._close_sockets()
        self._poller = None

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

    def state_changes(self) -> BlockingStateChanges:
        """Each change of ``state`` from now on (connection lost, restored, closed); ends after
        CLOSED. Waiting for the next one does the port's work, as any blocking call does."""
        changes = BlockingStateChanges(self._pump, self._unwatch_states)
        self._watch_states(changes._put)
        return changes

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
        pages = paged_open_orders(self.strategy_id, instrument)  # each page its own timeout
        request = next(pages)
        while True:
            try:
                request = pages.send(self._call(request, OpenOrders, timeout))
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    def positions(self, *, timeout: float | None = None) -> tuple[Position, ...]:
        """This strategy's positions from its fills, one per instrument it traded (the
        server's count, from every fill it published)."""
        request = QueryPositions(strategy_id=self.strategy_id)
        return self._call(request, PositionsSnapshot, timeout).positions

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
        self._check_updates(client_order_id, port_events)
        return self._open_stream(client_order_id, port_events=port_events)

    # --- waiting ------------------------------------------------------------------------------

    def _call(self, request: PortRequest, expected: type[_R], timeout: float | None) -> _R:
        # One deadline: the core fails the answer with AckTimeoutError when it passes.
        answer: Answer[_R] = Answer()
        self._request(request, expected, answer, self.ack_timeout if timeout is None else timeout)
        wait_for(answer, None, self._pump, None)
        return answer.result()

    def _send_nowait(self, request: OrderRequest) -> BlockingOrderHandle:
        events = self._open_stream(request.client_order_id)  # before sending: nothing missed
        answer: Answer[Acknowledgement] = Answer()
        try:
            self._request(request, Acknowledgement, answer, self.ack_timeout, detached=True)
        except BaseException:
            events.close()
            raise
        return BlockingOrderHandle(self._pump, request, answer, events)

    def _open_stream(
        self, client_order_id: str | None, *, port_events: bool = False
    ) -> BlockingUpdateStream[Any]:
        stream: BlockingUpdateStream[Any] = BlockingUpdateStream(
            self._pump, self._subscribers.discard, client_order_id, port_events=port_events
        )
        self._subscribers.add(stream)
        return stream

    def _pump(self, timeout: float | None, until: Answer[Any] | None = None) -> None:
        """Wait up to ``timeout`` seconds (None: until the port's next piece of work) for
        anything, and file what has arrived. Waiting for ``until``, return as soon as it is
        filed: events queued meanwhile stay in the socket, in order, for the next call."""
        poller = self._poller
        if poller is None:
            return
        now = time.monotonic()
        if self._keepalive is not None:
            for frame in self._keepalive.replies():  # e.g. the watch fired while cut off
                with contextlib.suppress(WireError):
                    self._act(self._protocol.receive_reply(frame, now), now)
        if now >= self._next_work(self._next_housekeeping):
            self._next_housekeeping = now + TICK
            self._housekeeping(now)
            if until is not None and until.done():
                return  # it expired
        # Never wait past the port's next work: resends, expiries and liveness run while a call
        # blocks. (Rounded up: a wait rounded down to 0 ms would spin until then.)
        wait = self._next_work(self._next_housekeeping) - now
        if timeout is not None:
            wait = min(wait, timeout)
        if poller.poll(max(0, math.ceil(wait * 1000))):
            self._read(time.monotonic(), until)


if TYPE_CHECKING:
    # mypy checks the blocking port against the Protocol that mirrors OrderExecutionPort.
    _CONFORMS: type[BlockingOrderExecutionPortProtocol] = BlockingOrderExecutionPort
