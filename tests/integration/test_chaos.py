"""Chaos: strategy processes trade while the test injects a seeded random mix of every fault into
the venue process, crashes it once (when 40% of the orders are in) and restarts it on its journal.
Nothing may be lost or doubled.

``ORDERBUS_SOAK=1`` runs ten times as many orders (and faults), with deadlines scaled to match.

The test's deadlines come from its work: the strategies get ``STRATEGY_WAIT`` (a fixed start,
a per-order allowance, their settle wait), and the pytest timeout is that plus what stopping
everything can take, so a late run ends on the test's own deadline, which tells which strategy
was where (its figures so far and the tail of its stderr) and the venue's status. The figures
are printed before any assertion, passing or failing.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from mock_venue.config import ImmediateFill, InstrumentConfig, ManualFill, SlicedFill, VenueConfig
from mock_venue.control import VenueStatus
from mock_venue.control_client import BlockingControlClient
from mock_venue.engine import VenueControlError
from mock_venue.faults import (
    DelayAcks,
    DelayFills,
    DropEvents,
    DropReplies,
    DuplicateEvents,
    Fault,
    FillBeforeChange,
    PausePublishing,
    RejectOrders,
    ReorderEvents,
    Throttle,
)
from mock_venue.process import VenueProcess
from ports import ErrorReason

STRATEGIES = 4
SOAK = 10 if os.environ.get("ORDERBUS_SOAK") else 1
ORDERS = 500 * SOAK  # per strategy
SEED = 20261124

# Deadlines, from the work. Each strategy places its orders one after another (the four in
# parallel): measured 6-10 ms an order, normal and soak alike, and up to ~12 ms on a slow run
# (a soak of 57-61 s); the faults' cost is in that figure (delayed acks, acks timed out and
# settled by a status request, reconnects), and their number grows with the run's length, as the
# chaos thread injects one every few tens of ms. The allowance is twice the slowest. Then each
# checks all its orders with the venue until the streams agree (one status request an order a
# round): measured one round, 0.3-0.5 s normal, ~3 s soak.
START_SECONDS = 15.0  # the processes up (~1.5 s), the crash, the restart on the journal
ORDER_SECONDS = 0.025  # per order of one strategy
SETTLE_WAIT = 30.0 + ORDERS * 0.004  # the strategy's own deadline: catch-up time, and rounds
STRATEGY_WAIT = START_SECONDS + ORDERS * ORDER_SECONDS + SETTLE_WAIT  # normal ~60 s, soak ~190 s
# What ending it all may take past that, each step bounded: SIGTERM (the strategies print their
# figures so far), the chaos thread, a last venue status (send and reply), the venue stopped.
TERM_GRACE = 5.0
CHAOS_JOIN = 30.0
CONTROL_TIMEOUT = 5.0
STOP_SECONDS = 2 * 10.0  # VenueProcess.stop: its wait, then its stderr reader
TEST_TIMEOUT = (  # the pytest timeout: only if the test's own deadlines did not end it
    STRATEGY_WAIT + TERM_GRACE + CHAOS_JOIN + 2 * CONTROL_TIMEOUT + STOP_SECONDS + 10.0
)
TAIL_LINES = 15  # of a strategy's or the venue's stderr, when something went wrong

CHAOS_VENUE = VenueConfig(
    instruments=(
        InstrumentConfig(symbol="IMM", reference_price=Decimal(10), fill_model=ImmediateFill()),
        InstrumentConfig(symbol="MAN", reference_price=Decimal(10), fill_model=ManualFill()),
        InstrumentConfig(
            symbol="SLC",
            reference_price=Decimal(10),
            fill_model=SlicedFill(slices=3, interval=0.05),
        ),
    )
)


def _random_fault(rng: random.Random) -> Fault:
    strategy = rng.choice([None, *(f"s{k}" for k in range(STRATEGIES))])
    choices: list[Fault] = [
        RejectOrders(count=rng.randint(1, 3), strategy_id=strategy),
        RejectOrders(count=5, probability=0.3, reason=ErrorReason.LIMIT_EXCEEDED),
        Throttle(max_requests=rng.randint(5, 20), interval=0.2, strategy_id=strategy),
        DelayAcks(delay=rng.choice([0.05, 0.3, 1.5]), count=rng.randint(1, 3)),
        DelayFills(delay=0.2, count=rng.randint(1, 5)),
        DropReplies(count=rng.randint(1, 3), strategy_id=strategy),
        DropReplies(count=3, probability=0.2),
        DropEvents(count=rng.randint(1, 5), strategy_id=strategy),
        DuplicateEvents(count=rng.randint(1, 5)),
        ReorderEvents(count=rng.randint(1, 5)),
        PausePublishing(seconds=rng.choice([0.1, 0.3])),
        FillBeforeChange(count=rng.randint(1, 3), strategy_id=strategy),
    ]
    return rng.choice(choices)


class Chaos:
    """The test's side: injects faults until told to stop, and crashes the venue once."""

    def __init__(self, venue: VenueProcess, rng: random.Random) -> None:
        self.venue = venue
        self.rng = rng
        self.stop = threading.Event()
        self.injected: dict[str, int] = {}
        self.crashed = False
        self.error: BaseException | None = None

    def count(self, kind: str) -> None:
        self.injected[kind] = self.injected.get(kind, 0) + 1

    def run(self, crash_at_orders: int) -> None:
        try:
            self._run(crash_at_orders)
        except BaseException as error:  # reported by the test, not lost in a thread
            self.error = error

    def _run(self, crash_at_orders: int) -> None:
        assert self.venue.endpoints is not None
        control = BlockingControlClient(self.venue.endpoints.control, timeout=CONTROL_TIMEOUT)
        try:
            while not self.stop.wait(self.rng.uniform(0.01, 0.04)):
                # Mid-run, whatever the machine's speed: once that many orders reached the venue.
                if not self.crashed and control.status().orders >= crash_at_orders:
                    control = self._crash_and_restart(control)
                    continue
                self._one(control)
            control.clear_faults()
        finally:
            control.close()

    def _one(self, control: BlockingControlClient) -> None:
        roll = self.rng.random()
        if roll < 0.05:
            control.disconnect()
            self.count("disconnect")
        elif roll < 0.15:
            self._on_an_open_order(control)
        elif roll < 0.25:
            control.clear_faults()
        else:
            fault = _random_fault(self.rng)
            control.inject(fault)
            self.count(fault.kind)

    def _on_an_open_order(self, control: BlockingControlClient) -> None:
        """An unsolicited cancel or a restatement of some working order (if one is found)."""
        strategy = f"s{self.rng.randrange(STRATEGIES)}"
        coid = f"{strategy}-{self.rng.randrange(ORDERS)}"
        try:
            if self.rng.random() < 0.5:
                control.cancel_unsolicited(strategy, coid)
                self.count("cancel_unsolicited")
            else:
                control.restate(strategy, coid, Decimal(1))
                self.count("restate")
        except VenueControlError:
            pass  # not a working order (unknown, done, or already 1): the venue says so

    def _crash_and_restart(self, control: BlockingControlClient) -> BlockingControlClient:
        control.crash(after=0.0)
        control.close()
        assert self.venue.wait_exit(10.0) == -9
        self.count("crash")
        self.crashed = True
        self.venue.restart()
        assert self.venue.endpoints is not None
        return BlockingControlClient(self.venue.endpoints.control, timeout=CONTROL_TIMEOUT)


def _strategy_command(command: str, events: str, k: int) -> list[str]:
    return [
        sys.executable, "-m", "tests.integration.chaos_strategy",
        "--command", command, "--events", events,
        "--strategy", f"s{k}", "--orders", str(ORDERS), "--seed", str(SEED + k),
        "--settle-wait", str(SETTLE_WAIT),
    ]  # fmt: skip


def _tail(text: str, lines: int = TAIL_LINES) -> str:
    return "".join(text.splitlines(keepends=True)[-lines:])


@dataclass
class StrategyRun:
    """One strategy process, its stdout and stderr in files (read at any time, never a full
    pipe that blocks it)."""

    name: str
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path
    seconds: float | None = None  # until it exited by itself

    @classmethod
    def start(cls, command: str, events: str, k: int, directory: Path) -> StrategyRun:
        stdout, stderr = directory / f"s{k}.out", directory / f"s{k}.err"
        with stdout.open("wb") as out, stderr.open("wb") as err:
            process = subprocess.Popen(
                _strategy_command(command, events, k), stdout=out, stderr=err
            )
        return cls(f"s{k}", process, stdout, stderr)

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def output(self) -> str:
        return self.stdout.read_text(errors="replace")

    def errors(self) -> str:
        return self.stderr.read_text(errors="replace")

    def result(self) -> dict[str, Any] | None:
        """Its figures, the last line it printed (None: it printed none)."""
        lines = self.output().strip().splitlines()
        try:
            result: dict[str, Any] = json.loads(lines[-1])
        except (IndexError, ValueError):
            return None
        return result


def _end_all(runs: list[StrategyRun]) -> None:
    """Those still running: SIGTERM (each prints its figures so far to stderr), then SIGKILL."""
    running = [run.process for run in runs if run.process.poll() is None]
    for process in running:
        process.terminate()
    deadline = time.monotonic() + TERM_GRACE
    for process in running:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_all(runs: list[StrategyRun], started: float, deadline: float) -> list[str]:
    """Wait for every strategy to exit, until the deadline; the names of those still running."""
    for run in runs:
        try:
            run.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            continue
        run.seconds = time.monotonic() - started
    return [run.name for run in runs if run.returncode is None]


def _venue_status(venue: VenueProcess) -> tuple[VenueStatus | None, str]:
    """The venue's status, or why it could not be read."""
    if venue.endpoints is None:
        return None, "no endpoints"
    try:
        with BlockingControlClient(venue.endpoints.control, timeout=CONTROL_TIMEOUT) as control:
            return control.status(), ""
    except Exception as error:  # shown with the figures; asserted on by the test
        return None, f"{type(error).__name__}: {error}"


def _status_figures(status: VenueStatus) -> dict[str, Any]:
    return {
        "orders": status.orders,
        "open_orders": status.open_orders,
        "requests": status.requests,
        "clients": status.clients,
        "recovered_records": status.recovered_records,
        "strategies": {
            s.strategy_id: {"orders": s.orders, "open": s.open_orders, "filled": str(s.filled_qty)}
            for s in status.strategies
        },
        "faults_active": len(status.faults),
    }


@pytest.mark.timeout(TEST_TIMEOUT)
def test_chaos_loses_nothing_and_doubles_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(SEED)
    venue = VenueProcess(CHAOS_VENUE, seed=SEED, heartbeat=0.05, journal=tmp_path / "j")
    endpoints = venue.start()
    started = time.monotonic()
    runs = [
        StrategyRun.start(endpoints.command, endpoints.events, k, tmp_path)
        for k in range(STRATEGIES)
    ]
    chaos = Chaos(venue, rng)
    crash_at = STRATEGIES * ORDERS * 2 // 5
    thread = threading.Thread(target=chaos.run, args=(crash_at,), daemon=True)
    thread.start()
    late: list[str] = []
    status: VenueStatus | None = None
    status_error = "not read"
    results: list[dict[str, Any] | None] = []
    try:
        late = _wait_all(runs, started, started + STRATEGY_WAIT)
        chaos.stop.set()
        thread.join(CHAOS_JOIN)
        status, status_error = _venue_status(venue)
    finally:
        chaos.stop.set()
        _end_all(runs)
        results = [run.result() for run in runs]
        elapsed = time.monotonic() - started
        with capsys.disabled():  # the figures are part of the result: always shown, first
            _print_figures(runs, results, chaos, thread, late, status, status_error, elapsed)
            if late or any(run.returncode != 0 for run in runs) or chaos.error or not status:
                print(f"  venue stderr (tail):\n{_tail(venue.stderr)}")
        venue.stop()
    assert not late, (
        f"{late} still running after {STRATEGY_WAIT:.0f} s (the figures above: how far each got)"
    )
    assert chaos.error is None, chaos.error
    for run in runs:
        assert run.returncode == 0, run.errors()
    assert status is not None, status_error
    assert all(result is not None for result in results), [run.output() for run in runs]
    done = [result for result in results if result is not None]
    by_strategy = {s.strategy_id: s for s in status.strategies}
    assert chaos.crashed
    assert sum(r["submitted"] for r in done) >= 2000
    for result in done:
        name = result["strategy"]
        assert result["orders_differing"] == []  # same final state at the client and the venue
        assert result["duplicates_refused"] == 0  # no retry ever made a second order
        assert result["fills_counted_twice"] == 0
        assert result["seq_gaps"] == 0
        assert result["seq_repeats"] == 0
        # the venue's own totals agree with what the strategy knows of its orders
        assert by_strategy[name].orders == result["orders_at_venue"]
        assert by_strategy[name].filled_qty == Decimal(result["filled_qty"])


def _print_figures(
    runs: list[StrategyRun],
    results: list[dict[str, Any] | None],
    chaos: Chaos,
    thread: threading.Thread,
    late: list[str],
    status: VenueStatus | None,
    status_error: str,
    elapsed: float,
) -> None:
    done = [result for result in results if result is not None]
    totals = {
        "orders": sum(r["submitted"] for r in done),
        "orders_at_venue": sum(r["orders_at_venue"] for r in done),
        "fills": sum(r["fills"] for r in done),
        "in_doubt": sum(r["in_doubt"] for r in done),
        "rejected": sum(r["rejected"] for r in done),
        "connectivity_errors": sum(r["connectivity_errors"] for r in done),
        "faults": chaos.injected,
        "crashed": chaos.crashed,
        "seconds": round(elapsed, 1),
        "strategy_seconds": [None if r.seconds is None else round(r.seconds, 1) for r in runs],
        "deadlines": {"strategies": round(STRATEGY_WAIT), "test": round(TEST_TIMEOUT)},
    }
    print(f"\nchaos: {json.dumps(totals)}")
    for run, result in zip(runs, results, strict=True):
        if result is not None:
            print(f"  {json.dumps(result)}")
        else:
            print(f"  {run.name}: exit {run.returncode}, no figures; stderr (tail):")
            print(_tail(run.errors()))
    for run, result in zip(runs, results, strict=True):
        if result is not None and run.returncode != 0:
            print(f"  {run.name}: exit {run.returncode}; stderr (tail):\n{_tail(run.errors())}")
    if late:
        print(f"  past the deadline ({STRATEGY_WAIT:.0f} s): {late}")
    if chaos.error is not None or thread.is_alive():
        print(f"  chaos thread: error {chaos.error!r}, still running {thread.is_alive()}")
    if status is not None:
        print(f"  venue: {json.dumps(_status_figures(status))}")
    else:
        print(f"  venue status unreadable: {status_error}")
