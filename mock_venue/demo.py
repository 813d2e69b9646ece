"""The main job: a venue process and several strategy processes trading against it.

``python3 dev.py demo`` (or ``orderbus-demo``) starts ``mock-venue serve`` on free ports, starts
``--strategies`` trader processes (``mock_venue.trader``) that each place ``--orders`` orders with
amends and cancels, follows every event on the all-events stream meanwhile, and prints a summary:
orders, fills, submit->ack latency, and whether each strategy, the monitor and the venue agree.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from bus.monitor import BlockingMonitor
from mock_venue.config import (
    ImmediateFill,
    InstrumentConfig,
    PricePathFill,
    SlicedFill,
    VenueConfig,
)
from mock_venue.control_client import BlockingControlClient
from mock_venue.process import VenueProcess

DEMO_VENUE = VenueConfig(
    instruments=(
        InstrumentConfig(
            symbol="GLOBEX",
            reference_price=Decimal("25.00"),
            fill_model=SlicedFill(slices=3, interval=0.02),
        ),
        InstrumentConfig(
            symbol="INITECH", reference_price=Decimal("10.00"), fill_model=ImmediateFill()
        ),
        InstrumentConfig(
            symbol="ACME",
            reference_price=Decimal("100.00"),
            fill_model=PricePathFill(step_interval=0.01, max_ticks_per_step=2),
        ),
    )
)


def run_strategies(
    venue: VenueProcess, strategies: int, orders: int, seed: int, monitor: BlockingMonitor
) -> tuple[list[dict[str, Any]], Counter[str]]:
    """Run the trader processes to the end while the monitor follows every event."""
    assert venue.endpoints is not None
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mock_venue.trader",
                "--strategy",
                f"strategy-{n}",
                "--orders",
                str(orders),
                "--seed",
                str(seed + n),
                "--command",
                venue.endpoints.command,
                "--events",
                venue.endpoints.events,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(1, strategies + 1)
    ]
    seen: Counter[str] = Counter()
    while any(p.poll() is None for p in processes):
        for report in monitor.reports(timeout=0.05):
            seen[report.strategy_id] += 1
    results = []
    for process in processes:
        out, _ = process.communicate()
        if process.returncode != 0:
            raise click.ClickException(f"a strategy process failed (exit {process.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results, seen


def catch_up(monitor: BlockingMonitor, seen: Counter[str], venue_seq: int, timeout: float) -> None:
    """Let the monitor take every event up to ``venue_seq``."""
    deadline = time.monotonic() + timeout
    while sum(seen.values()) < venue_seq and time.monotonic() < deadline:
        for report in monitor.reports(timeout=0.05):
            seen[report.strategy_id] += 1


@click.command()
@click.option("--strategies", default=3, show_default=True, help="Strategy processes.")
@click.option("--orders", default=200, show_default=True, help="Orders per strategy.")
@click.option("--seed", default=1, show_default=True, help="Seed of venue and strategies.")
def main(strategies: int, orders: int, seed: int) -> None:
    """Run a venue and STRATEGIES strategy processes against it, then summarise."""
    # Piped output has no terminal to measure: fall back to a width the table fits in.
    console = Console(width=shutil.get_terminal_size((120, 24)).columns)
    started = time.perf_counter()
    with VenueProcess(DEMO_VENUE, seed=seed) as venue:
        assert venue.endpoints is not None
        console.print(
            f"venue up: command {venue.endpoints.command}, events {venue.endpoints.events}; "
            f"starting {strategies} strategy processes x {orders} orders"
        )
        with BlockingMonitor(
            command=venue.endpoints.command, events=venue.endpoints.events
        ) as monitor:
            results, seen = run_strategies(venue, strategies, orders, seed, monitor)
            control = BlockingControlClient(venue.endpoints.control)
            try:
                status = control.status()
            finally:
                control.close()
            catch_up(monitor, seen, status.venue_seq, timeout=10)
    elapsed = time.perf_counter() - started

    venue_side = {s.strategy_id: s for s in status.strategies}
    table = Table(
        title=f"{strategies} strategies against one venue in {elapsed:.1f} s "
        "(ack = submit->ack latency, microseconds)"
    )
    for column in (
        "strategy", "orders", "amends", "cancels", "fills", "filled",
        "ack p50", "ack p99", "events", "once", "venue",
    ):  # fmt: skip
        table.add_column(column, justify="right", no_wrap=True)
    problems = 0
    for r in results:
        mine = venue_side[r["strategy"]]
        once = r["in_order"] and r["seqs_complete"] and not r["foreign_events"]
        agrees = (
            mine.seq == r["last_seq"] == seen[r["strategy"]]
            and Decimal(r["filled_qty"]) == mine.filled_qty
            and mine.orders == r["orders"]["submitted"] + r["orders"]["rejected"]
            and r["open_at_end"] == 0
        )
        problems += (not once) + (not agrees)
        table.add_row(
            r["strategy"], str(r["orders"]["submitted"]), str(r["orders"]["amended"]),
            str(r["orders"]["canceled"]), str(r["fills"]), r["filled_qty"],
            str(r["ack_us"]["p50"]), str(r["ack_us"]["p99"]), str(r["events"]),
            "yes" if once else "NO", "agrees" if agrees else "DIFFERS",
        )  # fmt: skip
    console.print(table)
    console.print(
        f"venue: {status.orders} orders, {status.venue_seq} events; monitor saw "
        f"{sum(seen.values())} events; {status.protocol_errors} protocol errors"
    )
    if problems or sum(seen.values()) != status.venue_seq:
        raise click.ClickException("the strategies, the monitor and the venue disagree")
    console.print("every event delivered exactly once; strategies, monitor and venue agree")


if __name__ == "__main__":
    main()
