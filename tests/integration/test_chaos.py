"""Chaos: strategy processes trade while the test injects a seeded random mix of every fault into
the venue process, crashes it once (when 40% of the orders are in) and restarts it on its journal.
Nothing may be lost or doubled.

``ORDERBUS_SOAK=1`` runs ten times as many orders (and faults).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest

from mock_venue.config import ImmediateFill, InstrumentConfig, ManualFill, SlicedFill, VenueConfig
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
ORDERS = 500 * (10 if os.environ.get("ORDERBUS_SOAK") else 1)  # per strategy
SEED = 20261124

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
        control = BlockingControlClient(self.venue.endpoints.control, timeout=5.0)
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
        return BlockingControlClient(self.venue.endpoints.control, timeout=5.0)


def _strategy_command(command: str, events: str, k: int) -> list[str]:
    return [
        sys.executable, "-m", "tests.integration.chaos_strategy",
        "--command", command, "--events", events,
        "--strategy", f"s{k}", "--orders", str(ORDERS), "--seed", str(SEED + k),
    ]  # fmt: skip


def test_chaos_loses_nothing_and_doubles_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(SEED)
    venue = VenueProcess(CHAOS_VENUE, seed=SEED, heartbeat=0.05, journal=tmp_path / "j")
    endpoints = venue.start()
    started = time.monotonic()
    strategies = [
        subprocess.Popen(
            _strategy_command(endpoints.command, endpoints.events, k),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(STRATEGIES)
    ]
    chaos = Chaos(venue, rng)
    crash_at = STRATEGIES * ORDERS * 2 // 5
    thread = threading.Thread(target=chaos.run, args=(crash_at,), daemon=True)
    thread.start()
    try:
        outputs = [p.communicate(timeout=150) for p in strategies]
        chaos.stop.set()
        thread.join(30)
        assert chaos.error is None, chaos.error
        for process, (_, stderr) in zip(strategies, outputs, strict=True):
            assert process.returncode == 0, stderr
        results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
        assert venue.endpoints is not None
        with BlockingControlClient(venue.endpoints.control) as control:
            status = control.status()
    finally:
        chaos.stop.set()
        for process in strategies:
            process.kill()
        venue.stop()
    elapsed = time.monotonic() - started
    by_strategy = {s.strategy_id: s for s in status.strategies}
    totals = {
        "orders": sum(r["submitted"] for r in results),
        "orders_at_venue": sum(r["orders_at_venue"] for r in results),
        "fills": sum(r["fills"] for r in results),
        "in_doubt": sum(r["in_doubt"] for r in results),
        "rejected": sum(r["rejected"] for r in results),
        "faults": chaos.injected,
        "seconds": round(elapsed, 1),
    }
    with capsys.disabled():  # the figures are part of the result: always shown
        print(f"\nchaos: {json.dumps(totals)}")
        for result in results:
            print(f"  {json.dumps(result)}")
    assert chaos.crashed
    assert totals["orders"] >= 2000
    for result in results:
        name = result["strategy"]
        assert result["orders_differing"] == []  # same final state at the client and the venue
        assert result["duplicates_refused"] == 0  # no retry ever made a second order
        assert result["fills_counted_twice"] == 0
        assert result["seq_gaps"] == 0
        assert result["seq_repeats"] == 0
        # the venue's own totals agree with what the strategy knows of its orders
        assert by_strategy[name].orders == result["orders_at_venue"]
        assert by_strategy[name].filled_qty == Decimal(result["filled_qty"])
