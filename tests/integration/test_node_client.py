"""The Node.js client (clients/node), written from docs/protocol.md alone, against a venue process,
plaintext and with CURVE.

Runs only where ``node`` and ``npm`` are on PATH; elsewhere the tests are skipped with that reason.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bus.curve import CLIENT_KEY_ENV, SERVER_KEY_ENV, ClientKeys
from bus.keyring import Keyring
from bus.server import Endpoints
from mock_venue.config import ImmediateFill, InstrumentConfig, ManualFill, VenueConfig
from mock_venue.control_client import BlockingControlClient
from mock_venue.process import VenueProcess
from tests.npm import node_with_packages

CLIENT_DIR = Path(__file__).resolve().parents[2] / "clients" / "node"
PROTOCOL_DOC = CLIENT_DIR.parents[1] / "docs" / "protocol.md"
RUN_TIMEOUT = 60.0  # demo.js has its own deadlines (below); this one only guards against a hang
WAIT = 10.0  # demo.js --timeout: each of its waits, the first sync included
FAST = 3.0  # a refusal the client is told of fails well within WAIT

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


@pytest.fixture
def keyring(tmp_path: Path) -> Keyring:
    ring = Keyring(tmp_path / "keys")
    ring.add("alice", "strategy", ["alice"])
    ring.add("ops", "admin")  # reads the venue's own view on its control channel
    ring.add("mallory", entitled=False)
    return ring


@pytest.fixture
def curve_venue(keyring: Keyring) -> Iterator[Endpoints]:
    with VenueProcess(NODE_VENUE, heartbeat=0.1, extra_args=keyring.server_args()) as process:
        assert process.endpoints is not None
        yield process.endpoints


def _demo(
    node: str,
    endpoints: Endpoints,
    strategy: str,
    *options: str,
    env: Mapping[str, str] | None = None,
) -> tuple[int, str, str]:
    """Run demo.js; ``env``: its key variables (none by default, whatever the caller's are)."""
    inherited = {k: v for k, v in os.environ.items() if k not in (SERVER_KEY_ENV, CLIENT_KEY_ENV)}
    done = subprocess.run(
        [
            node, "demo.js",
            "--command", endpoints.command,
            "--events", endpoints.events,
            "--strategy", strategy,
            "--timeout", str(WAIT),
            "--deadline", "40",
            *options,
        ],
        cwd=CLIENT_DIR,
        env={**inherited, **(env or {})},
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


def _trades_and_agrees_with_the_venue(
    node: str,
    endpoints: Endpoints,
    strategy: str,
    *,
    env: Mapping[str, str] | None = None,
    control_keys: ClientKeys | None = None,
) -> None:
    """The demo's scenario: an order that fills, one that rests and is canceled; then two
    heartbeats. Checks what the client saw, and that the venue saw the same."""
    code, stdout, stderr = _demo(
        node, endpoints, strategy,
        "--fill-instrument", "IMM", "--fill-qty", "7", "--fill-price", "100.25",
        "--rest-instrument", "MAN", "--rest-qty", "20", "--rest-price", "9.95",
        "--heartbeats", "2",
        env=env,
    )  # fmt: skip
    assert code == 0, (stdout, stderr)
    summary = _summary(stdout)
    assert summary["ok"] is True
    assert summary["strategy"] == strategy
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
    # Heartbeats come on the strategy's own topic and number its stream only (the global "H"
    # ones, with no numbers, are for monitors: the client does not subscribe to them).
    heartbeats = summary["events"]["heartbeat_seqs"]
    assert [set(h) for h in heartbeats] == [{strategy}] * 2
    assert heartbeats[-1] == {strategy: len(seqs)}

    # The venue's own view.
    with BlockingControlClient(endpoints.control, timeout=10.0, keys=control_keys) as control:
        status = control.status()
    assert status.clients == 1  # one client id for all of the demo's requests
    (seen,) = (s for s in status.strategies if s.strategy_id == strategy)
    assert seen.orders == 2
    assert seen.open_orders == 0
    assert seen.filled_qty == Decimal(7)
    assert seen.seq == summary["delivered_seq"]
    assert status.session == summary["session"]


def test_node_client_submits_sees_its_fills_and_cancels(node: str, venue: Endpoints) -> None:
    _trades_and_agrees_with_the_venue(node, venue, "node-1")


def test_node_client_trades_over_curve(node: str, curve_venue: Endpoints, keyring: Keyring) -> None:
    # Keys from the environment, as the Python clients take them.
    _trades_and_agrees_with_the_venue(
        node, curve_venue, "alice", env=keyring.env("alice"), control_keys=keyring.keys("ops")
    )


def test_node_client_fails_clearly_on_a_refused_order(node: str, venue: Endpoints) -> None:
    code, stdout, stderr = _demo(node, venue, "node-2", "--fill-instrument", "NOPE")
    assert code == 1
    summary = _summary(stdout)
    assert summary["ok"] is False
    assert "unknown_instrument" in summary["error"]
    assert "unknown_instrument" in stderr


def _refused_key(ring: Keyring, tmp_path: Path) -> list[str]:
    return [
        "--server-public-key",
        str(ring.server_public),
        "--client-key",
        str(ring.secret("mallory")),
    ]


def _wrong_server_key(ring: Keyring, tmp_path: Path) -> list[str]:
    other = Keyring(tmp_path / "other").server_public
    return ["--server-key", str(other), "--client-key", str(ring.secret("alice"))]


def _no_keys(ring: Keyring, tmp_path: Path) -> list[str]:
    return []


@pytest.mark.parametrize(
    ("keys", "cause"),
    [
        (_refused_key, "the server refused this client's key (ZAP status 400)"),
        (_wrong_server_key, "the CURVE handshake failed: wrong server key"),
        (_no_keys, "the handshake failed: the server runs with CURVE"),
    ],
    ids=["unknown-client-key", "wrong-server-key", "plaintext-client"],
)
def test_node_client_fails_fast_naming_a_refused_handshake(
    node: str,
    curve_venue: Endpoints,
    keyring: Keyring,
    tmp_path: Path,
    keys: Callable[[Keyring, Path], list[str]],
    cause: str,
) -> None:
    code, stdout, stderr = _demo(node, curve_venue, "mallory", *keys(keyring, tmp_path))
    assert code == 1, (stdout, stderr)
    summary = _summary(stdout)
    assert summary["ok"] is False
    assert cause in summary["error"]
    assert cause in stderr
    assert summary["elapsed_ms"] < FAST * 1000  # told by the handshake, not a timed-out sync


def test_node_client_fails_fast_on_a_strategy_its_key_may_not_act_for(
    node: str, curve_venue: Endpoints, keyring: Keyring
) -> None:
    code, stdout, stderr = _demo(node, curve_venue, "bob", env=keyring.env("alice"))
    assert code == 1, (stdout, stderr)
    summary = _summary(stdout)
    assert summary["ok"] is False
    assert summary["error"].startswith("sync refused: not_authorized:")
    assert "not_authorized" in stderr
    assert summary["elapsed_ms"] < FAST * 1000
