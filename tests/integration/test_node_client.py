"""The Node.js client (clients/node), written from docs/protocol.md alone, against a venue process.

Runs only where ``node`` and ``npm`` are on PATH; elsewhere the tests are skipped with that reason.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bus.server import Endpoints
from mock_venue.config import ImmediateFill, InstrumentConfig, ManualFill, VenueConfig
from mock_venue.control_client import BlockingControlClient
from mock_venue.process import VenueProcess
from tests.npm import node_with_packages

CLIENT_DIR = Path(__file__).resolve().parents[2] / "clients" / "node"
PROTOCOL_DOC = CLIENT_DIR.parents[1] / "docs" / "protocol.md"
RUN_TIMEOUT = 60.0  # demo.js has its own deadlines (below); this one only guards against a hang

NODE_VENUE = VenueConfig(
    instruments=(
        # Fills in full on acceptance, at the limit price.
        InstrumentConfig(symbol="IMM", reference_price=Decimal(100), fill_model=ImmediateFill()),
        # Rests until the control channel fills it; lots of 10.
        InstrumentConfig(
            symbol="MAN",
            reference_price=Decimal(10),
            lot_size=Decimal(10),
            fill_model=ManualFill(),
        ),
    )
)


@pytest.fixture(scope="session")
def node() -> str:
    """The node executable, with the client's dependencies installed (`npm ci`, once)."""
    return node_with_packages(CLIENT_DIR, "the Node.js client cannot be installed and run")


@pytest.fixture
def venue() -> Iterator[Endpoints]:
    with VenueProcess(NODE_VENUE, heartbeat=0.1) as process:
        assert process.endpoints is not None
        yield process.endpoints


def _demo(node: str, endpoints: Endpoints, strategy: str, *options: str) -> tuple[int, str, str]:
    done = subprocess.run(
        [
            node, "demo.js",
            "--command", endpoints.command,
            "--events", endpoints.events,
            "--strategy", strategy,
            "--timeout", "10",
            "--deadline", "40",
            *options,
        ],
        cwd=CLIENT_DIR,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )  # fmt: skip
    return done.returncode, done.stdout, done.stderr


def _summary(stdout: str) -> dict[str, Any]:
    lines = stdout.strip().splitlines()
    assert len(lines) == 1, stdout
    summary: dict[str, Any] = json.loads(lines[0])
    return summary


def test_node_codec_round_trips_the_worked_examples_of_the_protocol(node: str) -> None:
    done = subprocess.run(
        [node, "selftest.js", str(PROTOCOL_DOC)],
        cwd=CLIENT_DIR,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    result = _summary(done.stdout)
    assert done.returncode == 0, (result, done.stderr)
    assert result["ok"] is True
    assert result["frames"] >= 20  # every hex example of section 7
    assert result["replayed_frames"] >= 1


def test_node_client_submits_sees_its_fills_and_cancels(node: str, venue: Endpoints) -> None:
    code, stdout, stderr = _demo(
        node, venue, "node-1",
        "--fill-instrument", "IMM", "--fill-qty", "7", "--fill-price", "100.25",
        "--rest-instrument", "MAN", "--rest-qty", "20", "--rest-price", "9.95",
    )  # fmt: skip
    assert code == 0, (stdout, stderr)
    summary = _summary(stdout)
    assert summary["ok"] is True
    assert summary["strategy"] == "node-1"
    assert summary["baseline_seq"] == 0  # a fresh venue

    orders = summary["orders"]
    assert len(orders) == 2
    (fill,) = (o for o in orders.values() if o["role"] == "fill")
    (rest,) = (o for o in orders.values() if o["role"] == "cancel")

    # The immediately-filled order: acknowledged, then accepted and filled on the stream.
    assert [a["action"] for a in fill["acks"]] == ["submit"]
    assert fill["exec_types"][0] == "accepted"
    assert set(fill["exec_types"][1:]) == {"trade"}
    assert fill["status"] == "filled"
    assert Decimal(fill["cum_qty"]) == 7
    assert Decimal(fill["leaves_qty"]) == 0
    assert Decimal(fill["avg_px"]) == Decimal("100.25")
    assert len(set(fill["fill_ids"])) == len(fill["exec_types"]) - 1

    # The resting order: acknowledged as working, canceled on request.
    assert [a["action"] for a in rest["acks"]] == ["submit", "cancel"]
    assert rest["acks"][0]["status"] == "new"
    assert rest["exec_types"][0] == "accepted"
    assert rest["exec_types"][-1] == "canceled"
    assert "trade" not in rest["exec_types"]
    assert rest["status"] == "canceled"
    assert Decimal(rest["cum_qty"]) == 0

    # Every event of the strategy, each once and in order, whether it came live or by replay.
    seqs = fill["seqs"] + rest["seqs"]
    assert seqs == list(range(1, len(seqs) + 1))
    assert summary["delivered_seq"] == summary["latest_seq"] == len(seqs)
    assert summary["events"]["live"] + summary["events"]["replayed"] == len(seqs)

    # The venue's own view.
    with BlockingControlClient(venue.control, timeout=10.0) as control:
        status = control.status()
    assert status.clients == 1  # one client id for all of the demo's requests
    (strategy,) = (s for s in status.strategies if s.strategy_id == "node-1")
    assert strategy.orders == 2
    assert strategy.open_orders == 0
    assert strategy.filled_qty == Decimal(7)
    assert strategy.seq == summary["delivered_seq"]
    assert status.session == summary["session"]


def test_node_client_fails_clearly_on_a_refused_order(node: str, venue: Endpoints) -> None:
    code, stdout, stderr = _demo(node, venue, "node-2", "--fill-instrument", "NOPE")
    assert code == 1
    summary = _summary(stdout)
    assert summary["ok"] is False
    assert "unknown_instrument" in summary["error"]
    assert "unknown_instrument" in stderr
