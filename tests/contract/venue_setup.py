"""The venue every contract test runs against, whatever implementation is behind the port."""

from __future__ import annotations

from decimal import Decimal

from mock_venue.clock import DEFAULT_START
from mock_venue.config import (
    ImmediateFill,
    InstrumentConfig,
    ManualFill,
    PricePathFill,
    SlicedFill,
    VenueConfig,
)

START = DEFAULT_START
SEED = 7

CONTRACT_VENUE = VenueConfig(
    open_orders_page=2,  # every open_orders() and sync of the suite crosses pages
    instruments=(
        # Fills in full on acceptance; rejects above 1,000.
        InstrumentConfig(
            symbol="IMM",
            reference_price=Decimal(100),
            fill_model=ImmediateFill(),
            max_order_quantity=Decimal(1000),
        ),
        # Four slices, one a second.
        InstrumentConfig(
            symbol="SLC",
            reference_price=Decimal(50),
            fill_model=SlicedFill(slices=4, interval=1.0),
        ),
        # A random walk of ±2 ticks a second.
        InstrumentConfig(
            symbol="PXP",
            reference_price=Decimal(20),
            fill_model=PricePathFill(step_interval=1.0, max_ticks_per_step=2),
        ),
        # Fills only when the test says so; lots of 10.
        InstrumentConfig(
            symbol="MAN",
            reference_price=Decimal(10),
            lot_size=Decimal(10),
            fill_model=ManualFill(),
        ),
    ),
)
