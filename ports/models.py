"""Typed, immutable models of the order contract.

Requests are imperatives (``SubmitOrder``, ``AmendOrder``, ...); what the venue says back is an
``Acknowledgement`` (or a ``Rejection``) to the requester and ``ExecutionReport`` events on the
strategy's stream. Prices and quantities are ``Decimal``; timestamps are timezone-aware.
Constructing an invalid request raises ``pydantic.ValidationError`` at the caller, before anything
is sent.
"""

from __future__ import annotations

import re
from collections.abc import Generator
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Final, Self, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    Strict,
    StringConstraints,
    model_validator,
)
from pydantic_core import core_schema

from ports.enums import (
    AckAction,
    CancelReason,
    ErrorReason,
    ExecType,
    OrderStatus,
    OrderType,
    Outcome,
    PortEventKind,
    Side,
    TimeInForce,
)

Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:/\-]+$")
]
"""Client order ids, strategy ids and instruments: 1-64 chars of ``A-Z a-z 0-9 . _ : / -``."""


class _Choice:
    """Validates a member of the enumeration, or its value as a string, in pydantic-core (no
    Python call); pydantic's lax enum check would also take bytes."""

    def __get_pydantic_core_schema__(
        self, source: type[StrEnum], handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        members = list(source.__members__.values())
        value = core_schema.enum_schema(source, members, sub_type="str", strict=False)
        member = core_schema.enum_schema(source, members, sub_type="str", strict=True)
        text = core_schema.chain_schema([core_schema.str_schema(strict=True), value])
        expected = " or ".join(repr(m.value) for m in members)
        return core_schema.union_schema(
            [text, member],
            mode="left_to_right",
            custom_error_type="choice",
            custom_error_message=f"Input should be {expected}",
        )


_E = TypeVar("_E", bound=StrEnum)
Choice = Annotated[_E, _Choice()]
"""One of an enumeration's members, or its value as a string."""

_DECIMAL_TEXT: Final = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def _decimal(value: object) -> object:
    # Decimal() itself takes "1_0", " 10" and full-width digits, and a float is not exact: a
    # decimal is a Decimal, an int, or its plain ASCII text (on the wire: text, or an int).
    if type(value) is str:
        if _DECIMAL_TEXT.fullmatch(value):
            return value
    elif type(value) is Decimal or type(value) is int:
        return value
    elif type(value) is float:
        raise ValueError("a float is not exact: give a decimal as a Decimal or as text")
    raise ValueError("expected a decimal as a string of ASCII digits, like '10.25' or '1e2'")


_TEXT_OR_DECIMAL = BeforeValidator(_decimal)
_Many = Strict(False)  # a tuple field also takes a list

# Bounded so that every venue computation (lots, ticks, notionals) stays exact in Decimal's
# default 28-digit context: a trillion units at a trillion, to twelve decimal places.
MAX_AMOUNT = Decimal("1e12")
"""The largest quantity or price there is."""
# The constraints come first, so that pydantic-core checks them on the decimal itself (after the
# text check, they would each be a Python call).
_AMOUNT = Field(gt=0, le=MAX_AMOUNT, decimal_places=12, allow_inf_nan=False, strict=False)
Quantity = Annotated[Decimal, _AMOUNT, _TEXT_OR_DECIMAL]
Price = Annotated[Decimal, _AMOUNT, _TEXT_OR_DECIMAL]
NonNegative = Annotated[Decimal, Field(ge=0, allow_inf_nan=False, strict=False), _TEXT_OR_DECIMAL]
AveragePrice = Annotated[Decimal, Field(gt=0, allow_inf_nan=False, strict=False), _TEXT_OR_DECIMAL]
"""A quantity-weighted average: as many decimals as the division gives."""
Signed = Annotated[Decimal, Field(allow_inf_nan=False, strict=False), _TEXT_OR_DECIMAL]
"""A decimal of either sign: a net position, a P&L."""


def _in_utc_range(value: datetime) -> datetime:
    # On the wire an instant is a UTC timestamp, read back as a UTC datetime: one whose UTC
    # date falls outside years 1-9999 could be accepted and then never read back by anyone.
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the instant in UTC falls outside years 1-9999") from None
    return value


Instant = Annotated[AwareDatetime, AfterValidator(_in_utc_range)]
"""A timezone-aware time whose UTC date is within years 1-9999 (what every peer can read)."""


class _Model(BaseModel):
    # Strict: no coercion ("5" is not 5, bytes are not a string, an int is not an instant);
    # choices, decimals and tuples say how they relax it.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


# --- requests ---------------------------------------------------------------------------------


class SubmitOrder(_Model):
    """Place a new order. ``client_order_id`` is unique per strategy, for ever."""

    client_order_id: Identifier
    strategy_id: Identifier
    instrument: Identifier
    side: Choice[Side]
    quantity: Quantity
    order_type: Choice[OrderType]
    limit_price: Price | None = None
    time_in_force: Choice[TimeInForce] = TimeInForce.DAY
    expire_at: Instant | None = Field(
        default=None, description="The venue never executes the order after this instant."
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.order_type is OrderType.LIMIT and self.limit_price is None:
            raise ValueError("a LIMIT order needs a limit_price")
        if self.order_type is OrderType.MARKET and self.limit_price is not None:
            raise ValueError("a MARKET order takes no limit_price")
        if self.expire_at is not None and self.time_in_force in (TimeInForce.IOC, TimeInForce.FOK):
            raise ValueError(f"{self.time_in_force.name} orders never rest, so take no expire_at")
        return self


class AmendOrder(_Model):
    """Change a working order's quantity and/or limit price. The order keeps its client order id."""

    client_order_id: Identifier
    strategy_id: Identifier
    quantity: Quantity | None = None
    limit_price: Price | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> Self:
        if self.quantity is None and self.limit_price is None:
            raise ValueError("an amend needs a new quantity and/or a new limit_price")
        return self


class CancelOrder(_Model):
    """Cancel a working order."""

    client_order_id: Identifier
    strategy_id: Identifier


class CancelAllOrders(_Model):
    """Cancel every open order of the strategy, optionally only one instrument and/or side.
    ``reason`` is what the reports say: ``cancel_all`` for a strategy's own; a server's
    controls (kill switch, cancel on disconnect) set theirs, and a gateway passes it on."""

    strategy_id: Identifier
    instrument: Identifier | None = None
    side: Choice[Side] | None = None
    reason: Choice[CancelReason] = CancelReason.CANCEL_ALL


class QueryOrder(_Model):
    """Ask for one order's current state."""

    client_order_id: Identifier
    strategy_id: Identifier


class ListOpenOrders(_Model):
    """Ask for the strategy's open orders, optionally of one instrument: from the oldest, or
    from the cursor ``after`` a previous page's ``next_after`` gave."""

    strategy_id: Identifier
    instrument: Identifier | None = None
    after: int = Field(default=0, ge=0)


Request = SubmitOrder | AmendOrder | CancelOrder | CancelAllOrders | QueryOrder | ListOpenOrders
OrderRequest = SubmitOrder | AmendOrder | CancelOrder


# --- replies ----------------------------------------------------------------------------------


class OrderSnapshot(_Model):
    """An order as the venue holds it at ``updated_at``.

    ``last_seq`` is the stream sequence number of the latest event about this order (0 if none):
    events with a higher number are newer than this snapshot.
    """

    strategy_id: Identifier
    client_order_id: Identifier
    venue_order_id: str
    instrument: Identifier
    side: Choice[Side]
    order_type: Choice[OrderType]
    time_in_force: Choice[TimeInForce]
    quantity: NonNegative
    limit_price: Price | None
    expire_at: Instant | None
    status: Choice[OrderStatus]
    cum_qty: NonNegative
    leaves_qty: NonNegative
    avg_px: AveragePrice | None
    last_seq: int = Field(ge=0)
    created_at: Instant
    updated_at: Instant


class Acknowledgement(_Model):
    """The venue accepted a submit, amend or cancel; ``order`` is the order right after it."""

    action: Choice[AckAction]
    order: OrderSnapshot


class CancelAllAcknowledgement(_Model):
    """The venue canceled (or began to cancel) these orders."""

    strategy_id: Identifier
    client_order_ids: Annotated[tuple[Identifier, ...], _Many]


class OpenOrders(_Model):
    """Reply to ``ListOpenOrders``, oldest order first. A venue may answer a page at a time:
    ``next_after`` set means more follow (ask again with ``after`` = it). The ports do."""

    strategy_id: Identifier
    orders: Annotated[tuple[OrderSnapshot, ...], _Many]
    next_after: int | None = Field(default=None, ge=0)


def paged_open_orders(
    strategy_id: str, instrument: str | None
) -> Generator[ListOpenOrders, OpenOrders, tuple[OrderSnapshot, ...]]:
    """The requests for all of a strategy's open orders, page by page: send each answer back;
    the last ``send`` returns (``StopIteration.value``) every order, oldest first. A cursor that
    does not move on raises ``ConnectivityError`` (reason ``protocol_error``)."""
    orders: list[OrderSnapshot] = []
    after = 0
    while True:
        page = yield ListOpenOrders(strategy_id=strategy_id, instrument=instrument, after=after)
        orders += page.orders
        if page.next_after is None:
            return tuple(orders)
        if page.next_after <= after:  # a cursor that does not move would ask for ever
            from ports.errors import ConnectivityError  # it needs this module: imported late

            raise ConnectivityError(
                f"the venue's open orders page says next_after {page.next_after}, which does "
                f"not follow after {after}",
                reason=ErrorReason.PROTOCOL_ERROR,
                outcome=Outcome.DEFINITE,
            )
        after = page.next_after


class Rejection(_Model):
    """A failed request, as data: what travels instead of a reply. ``ports.errors`` turns it into
    the matching ``PortError``."""

    reason: Choice[ErrorReason]
    message: str
    outcome: Choice[Outcome] = Outcome.DEFINITE
    retry_after: float | None = Field(default=None, ge=0)
    client_order_id: Identifier | None = None


Reply = Acknowledgement | CancelAllAcknowledgement | OrderSnapshot | OpenOrders


# --- events -----------------------------------------------------------------------------------


class Fill(_Model):
    """One execution. ``fill_id`` is unique at the venue: use it to drop a duplicate."""

    fill_id: str
    strategy_id: Identifier
    client_order_id: Identifier
    instrument: Identifier
    side: Choice[Side]
    quantity: Quantity
    price: Price
    venue_time: Instant


class ExecutionReport(_Model):
    """Something happened to an order (FIX ExecutionReport).

    ``seq`` numbers the strategy's stream without gaps from 1; ``venue_seq`` numbers the venue's
    all-events stream. Fill fields (``last_qty``, ``last_px``, ``fill_id``) are set on ``TRADE``.
    """

    seq: int = Field(ge=1)
    venue_seq: int = Field(ge=1)
    exec_type: Choice[ExecType]
    status: Choice[OrderStatus]
    strategy_id: Identifier
    client_order_id: Identifier
    venue_order_id: str
    instrument: Identifier
    side: Choice[Side]
    order_type: Choice[OrderType]
    limit_price: Price | None
    quantity: NonNegative
    cum_qty: NonNegative
    leaves_qty: NonNegative
    avg_px: AveragePrice | None
    last_qty: NonNegative = Decimal(0)
    last_px: Price | None = None
    fill_id: str | None = None
    reject_reason: Choice[ErrorReason] | None = None
    cancel_reason: Choice[CancelReason] | None = None
    text: str = ""
    venue_time: Instant

    @property
    def fill(self) -> Fill | None:
        """The fill this report carries, or None."""
        if self.fill_id is None or self.last_px is None:
            return None
        return Fill(
            fill_id=self.fill_id,
            strategy_id=self.strategy_id,
            client_order_id=self.client_order_id,
            instrument=self.instrument,
            side=self.side,
            quantity=self.last_qty,
            price=self.last_px,
            venue_time=self.venue_time,
        )


class PortEvent(_Model):
    """Something that happened to the port rather than to an order at the venue: its connection
    was lost or restored, the venue restarted or was reset, an order went in doubt or was settled.

    Delivered, in order with the execution reports, on update streams opened with
    ``updates(port_events=True)``. ``time`` is when the port noticed (the port's clock: wall time
    for the ZeroMQ ports, the venue's logical clock for the in-process mock).
    """

    kind: Choice[PortEventKind]
    time: Instant
    detail: str = ""
    client_order_id: Identifier | None = Field(
        default=None, description="The order concerned (ORDER_IN_DOUBT, ORDER_SETTLED)."
    )
    snapshot: OrderSnapshot | None = Field(
        default=None,
        description="ORDER_SETTLED: the order as the venue holds it; None if the venue does not "
        "know it (an in-doubt submit that was never placed, or an order a venue reset lost).",
    )


Update = ExecutionReport | PortEvent
"""What an update stream opened with ``port_events=True`` yields."""
