"""Venue configuration: instruments, their reference prices and fill models."""

from __future__ import annotations

from datetime import UTC, time
from decimal import Decimal
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ports.models import Identifier, Price, Quantity


class _Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ImmediateFill(_Config):
    """Every order fills completely as soon as it is accepted (market at the reference price,
    limit at its limit price)."""

    kind: Literal["immediate"] = "immediate"


class SlicedFill(_Config):
    """An order fills in ``slices`` equal parts (rounded down to the lot size, the last part takes
    the rest; at least one lot), one every ``interval`` seconds of logical time after acceptance.
    IOC takes the first slice at once and cancels the rest; FOK fills only if the first slice
    covers the whole order, else it is killed."""

    kind: Literal["sliced"] = "sliced"
    slices: int = Field(default=4, ge=1, le=10_000)
    interval: float = Field(default=1.0, gt=0, le=86_400, allow_inf_nan=False)


class PricePathFill(_Config):
    """A seeded random walk of the reference price, one step every ``step_interval`` seconds of
    ±``max_ticks_per_step`` ticks. A marketable order fills at once at the reference price; a
    resting limit fills completely at its limit price when the path crosses it."""

    kind: Literal["price_path"] = "price_path"
    step_interval: float = Field(default=1.0, gt=0, le=86_400, allow_inf_nan=False)
    max_ticks_per_step: int = Field(default=3, ge=0)


class ManualFill(_Config):
    """Orders fill only by a scripted fill ("fill order X for Q at P"); IOC and FOK are killed."""

    kind: Literal["manual"] = "manual"


FillModel = Annotated[
    ImmediateFill | SlicedFill | PricePathFill | ManualFill, Field(discriminator="kind")
]


class InstrumentConfig(_Config):
    """One tradable instrument. Quantities must be whole lots, limit prices whole ticks."""

    symbol: Identifier
    reference_price: Price
    tick_size: Price = Decimal("0.01")
    lot_size: Quantity = Decimal(1)
    fill_model: FillModel = ImmediateFill()
    max_order_quantity: Quantity | None = None


class VenueConfig(_Config):
    """What the venue trades and how."""

    instruments: tuple[InstrumentConfig, ...]
    venue_id: Identifier = "MOCK"
    trading_day_end: time = Field(
        default=time(21, 0, tzinfo=UTC), description="DAY orders still working expire here."
    )
    open_orders_page: int = Field(
        default=1000, ge=1, le=10_000, description="Most open orders one answer carries."
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        symbols = [i.symbol for i in self.instruments]
        if len(set(symbols)) != len(symbols):
            raise ValueError("instrument symbols must be unique")
        if self.trading_day_end.tzinfo is None:
            raise ValueError("trading_day_end needs a timezone")
        return self

    def instrument(self, symbol: str) -> InstrumentConfig | None:
        """The instrument called ``symbol``, if the venue trades it."""
        return next((i for i in self.instruments if i.symbol == symbol), None)


DEFAULT_INSTRUMENTS = (
    InstrumentConfig(symbol="ACME", reference_price=Decimal("100.00"), fill_model=PricePathFill()),
    InstrumentConfig(symbol="GLOBEX", reference_price=Decimal("25.00"), fill_model=SlicedFill()),
    InstrumentConfig(
        symbol="INITECH", reference_price=Decimal("10.00"), fill_model=ImmediateFill()
    ),
    InstrumentConfig(symbol="HOOLI", reference_price=Decimal("50.00"), fill_model=ManualFill()),
)
"""One instrument per fill model: a venue's instruments when none are configured."""
