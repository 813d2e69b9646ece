"""Positions from fills: net quantity, average price and realized P&L in one instrument."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, Strict

from ports.enums import Side
from ports.models import AveragePrice, Identifier, NonNegative, Signed

ZERO = Decimal(0)


class Position(BaseModel):
    """A net position in one instrument: ``quantity`` (positive long, negative short), the
    average price it was opened at (None when flat), the P&L realized by closing, and what
    traded."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    instrument: Identifier
    quantity: Signed = ZERO
    average_price: AveragePrice | None = None
    realized_pnl: Signed = ZERO
    bought: NonNegative = ZERO
    sold: NonNegative = ZERO
    fills: int = Field(default=0, ge=0)


class QueryPositions(BaseModel):
    """Ask for the strategy's own positions, as the server keeps them from its fills."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    strategy_id: Identifier


class PositionsSnapshot(BaseModel):
    """A strategy's positions, one per instrument it traded (flat ones included)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    strategy_id: Identifier
    positions: Annotated[tuple[Position, ...], Strict(False)]  # a msgpack array


def apply_fill(position: Position, side: Side, quantity: Decimal, price: Decimal) -> Position:
    """``position`` after a fill of ``quantity`` at ``price`` (average-cost accounting: a fill
    against the position realizes P&L on what it closes; what is left over opens the other way
    at the fill's price)."""
    signed = quantity if side is Side.BUY else -quantity
    held, average = position.quantity, position.average_price
    realized = position.realized_pnl
    if held == 0 or (held > 0) == (signed > 0):  # opening or adding
        new = held + signed
        assert average is not None or held == 0
        average = (abs(held) * (average or ZERO) + quantity * price) / abs(new)
    else:  # reducing, closing, perhaps flipping
        closed = min(abs(held), quantity)
        assert average is not None
        realized += closed * (price - average) * (1 if held > 0 else -1)
        new = held + signed
        if new == 0:
            average = None
        elif (new > 0) != (held > 0):
            average = price  # flipped: the rest opened at this fill
    return position.model_copy(
        update={
            "quantity": new,
            "average_price": average,
            "realized_pnl": realized,
            "bought": position.bought + (quantity if side is Side.BUY else ZERO),
            "sold": position.sold + (quantity if side is Side.SELL else ZERO),
            "fills": position.fills + 1,
        }
    )
