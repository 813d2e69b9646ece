"""``OrderExecutionPort``: the one way a strategy talks to a venue, whatever the venue is.

A port belongs to one strategy (``strategy_id``). Every request model passed to it must carry that
strategy id. Submit, amend and cancel come in two acknowledgement patterns:

- ``submit_order(order)`` waits for the venue's acknowledgement and returns it, or raises the
  typed error (rejected, throttled, timed out);
- ``submit_order_nowait(order)`` returns an ``OrderHandle`` as soon as the request is sent;
  await ``handle.acknowledged(timeout)`` later, iterate ``handle.events``.

Either way the venue's events also arrive on ``updates()``. Use the port as an async context
manager; a closed port raises ``PortClosedError`` on every call.

A request whose answer never came within its timeout leaves its order "in doubt" (``in_doubt()``)
until the port has settled it by itself; ``updates(port_events=True)`` reports that, and the
connection's ups and downs, as ``PortEvent``s in order with the execution reports.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from enum import StrEnum
from types import TracebackType
from typing import Literal, Self, overload

from ports.enums import Side
from ports.models import (
    Acknowledgement,
    AmendOrder,
    CancelAllAcknowledgement,
    CancelOrder,
    ExecutionReport,
    OrderSnapshot,
    PortEvent,
    SubmitOrder,
)
from ports.positions import Position
from ports.streams import OrderHandle, UpdateStream


class PortState(StrEnum):
    """Lifecycle of a port."""

    IDLE = "idle"  # created, not opened yet
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"  # connection lost; requests wait or fail, the port retries
    CLOSED = "closed"  # for good: every call raises PortClosedError


class OrderExecutionPort(ABC):
    """Submit, amend and cancel orders and follow their status and fills, asynchronously.

    ``timeout`` arguments are seconds to wait for the venue's answer (None: the port's default);
    past it the call raises ``AckTimeoutError`` and the request's outcome is unknown.
    """

    @property
    @abstractmethod
    def strategy_id(self) -> str:
        """The strategy this port trades for."""

    @property
    @abstractmethod
    def state(self) -> PortState:
        """Where the port is in its lifecycle."""

    @abstractmethod
    def state_changes(self) -> AsyncIterator[PortState]:
        """Each change of ``state`` from now on (connection lost, restored, closed); ends after
        CLOSED."""

    @abstractmethod
    async def open(self) -> None:
        """Connect to the venue. Idempotent while open; raises PortClosedError once closed."""

    @abstractmethod
    async def close(self) -> None:
        """Close for good: end every update stream, fail unanswered requests. Idempotent."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @abstractmethod
    async def submit_order(
        self, order: SubmitOrder, *, timeout: float | None = None
    ) -> Acknowledgement:
        """Place an order and wait until the venue accepts it."""

    @abstractmethod
    async def submit_order_nowait(self, order: SubmitOrder) -> OrderHandle:
        """Place an order; return once it is sent."""

    @abstractmethod
    async def amend_order(
        self, amend: AmendOrder, *, timeout: float | None = None
    ) -> Acknowledgement:
        """Change a working order and wait until the venue has applied the change."""

    @abstractmethod
    async def amend_order_nowait(self, amend: AmendOrder) -> OrderHandle:
        """Change a working order; return once the request is sent."""

    @abstractmethod
    async def cancel_order(
        self, cancel: CancelOrder, *, timeout: float | None = None
    ) -> Acknowledgement:
        """Cancel a working order and wait until it is canceled."""

    @abstractmethod
    async def cancel_order_nowait(self, cancel: CancelOrder) -> OrderHandle:
        """Cancel a working order; return once the request is sent."""

    @abstractmethod
    async def cancel_all_orders(
        self,
        instrument: str | None = None,
        side: Side | None = None,
        *,
        timeout: float | None = None,
    ) -> CancelAllAcknowledgement:
        """Cancel every open order of this strategy (optionally one instrument and/or side)."""

    @abstractmethod
    async def order_status(
        self, client_order_id: str, *, timeout: float | None = None
    ) -> OrderSnapshot:
        """The order as the venue holds it now. Raises OrderRejectedError(UNKNOWN_ORDER)."""

    @abstractmethod
    async def open_orders(
        self, instrument: str | None = None, *, timeout: float | None = None
    ) -> tuple[OrderSnapshot, ...]:
        """This strategy's open orders at the venue, oldest first."""

    async def positions(self, *, timeout: float | None = None) -> tuple[Position, ...]:
        """This strategy's positions from its fills, one per instrument it traded (net quantity,
        average price, realized P&L), as the bus server or mock venue keeps them. An adapter
        behind a gateway need not: the gateway answers from its own count."""
        raise NotImplementedError(f"{type(self).__name__} keeps no positions")

    @abstractmethod
    def in_doubt(self) -> frozenset[str]:
        """Client order ids of the orders in doubt: a submit, amend or cancel of each got no
        answer within its timeout, so what the venue holds for it is not known yet. The port
        settles each by itself (a late answer, or a status query once connected) and reports it
        as ORDER_SETTLED on ``updates(port_events=True)``."""

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

    @abstractmethod
    def updates(
        self, client_order_id: str | None = None, *, port_events: bool = False
    ) -> UpdateStream[ExecutionReport | PortEvent]:
        """Execution reports of this strategy (or of one order) from now on, in stream order.

        ``port_events=True`` (strategy-wide streams only) also yields the port's ``PortEvent``s:
        connection lost and restored, venue restarted or reset, orders in doubt and settled."""
