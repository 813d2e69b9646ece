"""The main job: a venue process and several strategy processes trading against it.

``python3 dev.py demo`` (or ``orderbus-demo``) starts ``mock-venue serve`` on free ports, starts
``--strategies`` trader processes (``mock_venue.trader``) that each place ``--orders`` orders with
amends and cancels, follows every event on the all-events stream meanwhile, and prints a summary:
orders, fills, submit->ack latency, and whether each strategy, the monitor and the venue agree.

``--curve`` runs the same with CURVE and entitlements: the venue's key, one key per strategy
(entitled to that strategy alone), the monitor's and an admin key for the closing status query are
made by ``bus.keyring.Keyring`` in a temporary folder, removed at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from bus.keyring import Keyring
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

MONITOR, ADMIN = "monitor", "admin"  # key names of a CURVE demo's other clients

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


def strategy_name(n: int) -> str:
    return f"strategy-{n}"


def demo_keyring(directory: Path, strategies: int) -> Keyring:
    """Keys for a CURVE venue and its clients: each strategy's entitled to that strategy only."""
    ring = Keyring(directory, "venue")
    for n in range(1, strategies + 1):
        ring.add(strategy_name(n), "strategy", [strategy_name(n)])
    ring.add(MONITOR, "monitor")
    ring.add(ADMIN, "admin")  # status is a control command: admins only
    return ring


def run_strategies(
    venue: VenueProcess,
    strategies: int,
    orders: int,
    seed: int,
    monitor: BlockingMonitor,
    ring: Keyring | None = None,
) -> tuple[list[dict[str, Any]], Counter[str]]:
    """Run the trader processes to the end while the monitor follows every event. With ``ring``,
    each trader connects with its strategy's key (given in its environment)."""
    assert venue.endpoints is not None
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mock_venue.trader",
                "--strategy",
                strategy_name(n),
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
            env=None if ring is None else {**os.environ, **ring.env(strategy_name(n))},
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
@click.option(
    "--curve",
    is_flag=True,
    help="CURVE and entitlements: the venue, each strategy and the monitor with their own keys.",
)
def main(strategies: int, orders: int, seed: int, curve: bool) -> None:
    """Run a venue and STRATEGIES strategy processes against it, then summarise."""
    # Piped output has no terminal to measure: fall back to a width the table fits in.
    console = Console(width=shutil.get_terminal_size((120, 24)).columns)
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        ring = None
        if curve:
            keys = stack.enter_context(tempfile.TemporaryDirectory(prefix="orderbus-demo-keys-"))
            ring = demo_keyring(Path(keys), strategies)
        server_args = () if ring is None else ring.server_args()
        venue = stack.enter_context(VenueProcess(DEMO_VENUE, seed=seed, extra_args=server_args))
        assert venue.endpoints is not None
        console.print(
            f"venue up: command {venue.endpoints.command}, events {venue.endpoints.events}; "
            f"starting {strategies} strategy processes x {orders} orders"
        )
        if ring is not None:
            console.print(
                f"CURVE: the venue's key and entitlements in {ring.directory}; {strategies} "
                "strategy keys (each entitled to its own strategy), a monitor key, an admin key "
                "(for the status query)"
            )
        with BlockingMonitor(
            command=venue.endpoints.command,
            events=venue.endpoints.events,
            keys=None if ring is None else ring.keys(MONITOR),
        ) as monitor:
            results, seen = run_strategies(venue, strategies, orders, seed, monitor, ring)
            control = BlockingControlClient(
                venue.endpoints.control, keys=None if ring is None else ring.keys(ADMIN)
            )
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
    if ring is not None:
        console.print(
            f"security: {status.security.mode}, {status.security.keys} keys entitled, "
            f"{status.security.refused} refused, "
            f"{status.security.handshakes_denied} handshakes denied"
        )
    if problems or sum(seen.values()) != status.venue_seq:
        raise click.ClickException("the strategies, the monitor and the venue disagree")
    console.print("every event delivered exactly once; strategies, monitor and venue agree")


if __name__ == "__main__":
    main()
