"""The example strategies, each run as its own process against a venue process.

Each test asserts on the strategy's summary line and on the venue's own account of the strategy
(its control endpoint's status), with faults injected where the example claims to handle them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from examples import market_maker, twap
from mock_venue.config import InstrumentConfig, PricePathFill, SlicedFill, VenueConfig
from mock_venue.control import StrategyStatus
from mock_venue.control_client import BlockingControlClient
from mock_venue.faults import DelayAcks, Fault, FillBeforeChange, Throttle
from mock_venue.process import VenueProcess

ROOT = Path(__file__).resolve().parents[2]

VENUE = VenueConfig(
    instruments=(
        # A fast price walk: resting quotes get crossed within a second or two.
        InstrumentConfig(
            symbol="ACME",
            reference_price=Decimal("100.00"),
            fill_model=PricePathFill(step_interval=0.05, max_ticks_per_step=2),
        ),
        # A child fills over 1 s, longer than a TWAP slice below: children get replaced.
        InstrumentConfig(
            symbol="GLOBEX",
            reference_price=Decimal("25.00"),
            fill_model=SlicedFill(slices=4, interval=0.25),
        ),
    )
)

TWAP_ARGS = (
    "--instrument", "GLOBEX", "--side", "buy", "--quantity", "1000",
    "--arrival-price", "25.00", "--limit", "25.10", "--slices", "4", "--interval", "0.4",
)  # fmt: skip


@pytest.fixture
def venue() -> Iterator[VenueProcess]:
    with VenueProcess(VENUE, seed=3) as process:
        yield process


def inject(venue: VenueProcess, *faults: Fault) -> None:
    assert venue.endpoints is not None
    control = BlockingControlClient(venue.endpoints.control)
    try:
        for fault in faults:
            control.inject(fault)
    finally:
        control.close()


def venue_view(venue: VenueProcess, strategy: str) -> StrategyStatus:
    """What the venue itself holds for ``strategy``."""
    assert venue.endpoints is not None
    control = BlockingControlClient(venue.endpoints.control)
    try:
        status = control.status()
    finally:
        control.close()
    assert status.protocol_errors == 0
    (mine,) = [s for s in status.strategies if s.strategy_id == strategy]
    return mine


def run(
    example: ModuleType, venue: VenueProcess, strategy: str, *args: str, exit_code: int = 0
) -> dict[str, Any]:
    """Run ``python -m <example>`` to its end; its summary line."""
    assert venue.endpoints is not None
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            example.__name__,
            "--command",
            venue.endpoints.command,
            "--events",
            venue.endpoints.events,
            "--strategy",
            strategy,
            *args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == exit_code, done.stderr + done.stdout
    summary: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["strategy"] == strategy
    return summary


def test_market_maker_quotes_trades_and_leaves_nothing_working(venue: VenueProcess) -> None:
    summary = run(market_maker, venue, "mm-1", "--instrument", "ACME", "--fair-value", "100.00",
                  "--duration", "2")  # fmt: skip

    assert summary["ok"], summary
    assert summary["stopped_by"] == "duration"
    assert summary["fills"] >= 1
    assert summary["amends"] >= 1  # quotes follow the fair value
    assert abs(Decimal(summary["position"])) <= 50  # --max-position
    assert summary["reconciled"]
    mine = venue_view(venue, "mm-1")
    assert mine.orders == summary["quotes"]
    assert mine.open_orders == summary["open_at_end"] == 0
    assert mine.filled_qty == Decimal(summary["bought"]) + Decimal(summary["sold"])


def test_market_maker_settles_a_lost_ack_and_rides_out_throttling(venue: VenueProcess) -> None:
    inject(
        venue,
        # The first quote's acknowledgement comes after the strategy's 0.3 s timeout.
        DelayAcks(delay=1.0, count=1, client_order_id="r1-q1"),
        # Two order requests a second: the second quote is already refused.
        Throttle(max_requests=2, interval=1.0, strategy_id="mm-2"),
    )
    summary = run(market_maker, venue, "mm-2", "--instrument", "ACME", "--fair-value", "100.00",
                  "--duration", "2.5", "--ack-timeout", "0.3", "--run-id", "r1")  # fmt: skip

    assert summary["ok"], summary
    assert summary["in_doubt"] >= 1
    assert summary["settled"] >= 1
    assert summary["throttled"] >= 1
    assert summary["reconciled"]
    mine = venue_view(venue, "mm-2")
    assert mine.orders == summary["quotes"]  # settled, not submitted twice
    assert mine.open_orders == 0
    assert mine.filled_qty == Decimal(summary["bought"]) + Decimal(summary["sold"])


def test_market_maker_stops_on_a_configuration_error(venue: VenueProcess) -> None:
    summary = run(market_maker, venue, "mm-3", "--instrument", "NOPE", "--fair-value", "1.00",
                  exit_code=1)  # fmt: skip

    assert not summary["ok"]
    assert "unknown_instrument" in summary["error"]
    assert summary["rejected"] == {"unknown_instrument": 1}


def test_twap_works_the_parent_to_the_end_replacing_a_child_that_falls_behind(
    venue: VenueProcess,
) -> None:
    summary = run(twap, venue, "twap-1", *TWAP_ARGS)

    assert summary["ok"], summary
    assert summary["stopped_by"] == "filled"
    assert summary["completed"]
    assert summary["filled"] == "1000"
    assert summary["replaces"] >= 1
    assert Decimal("24.99") <= Decimal(summary["avg_px"]) <= Decimal("25.10")
    mine = venue_view(venue, "twap-1")
    assert mine.orders == summary["children"]
    assert mine.filled_qty == 1000
    assert mine.open_orders == 0


def test_twap_settles_a_child_in_doubt_and_replaces_one_that_filled_first(
    venue: VenueProcess,
) -> None:
    inject(
        venue,
        # The first child's acknowledgement comes after the strategy's 0.3 s timeout ...
        DelayAcks(delay=0.8, count=1, client_order_id="t2-c1"),
        # ... and it fills completely just before its first replace arrives: TOO_LATE.
        FillBeforeChange(count=1, strategy_id="twap-2"),
    )
    summary = run(twap, venue, "twap-2", *TWAP_ARGS, "--ack-timeout", "0.3", "--run-id", "t2",
                  "--grace", "3")  # fmt: skip

    assert summary["ok"], summary
    assert summary["in_doubt"] == 1
    assert summary["settled"] == 1
    assert summary["rejected"] == {"too_late": 1}
    assert summary["children"] >= 2
    assert summary["filled"] == "1000"  # all of it, and not a lot more
    mine = venue_view(venue, "twap-2")
    assert mine.orders == summary["children"]
    assert mine.filled_qty == 1000
    assert mine.open_orders == 0
