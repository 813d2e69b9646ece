"""Many hosts: the venue, two strategies and a monitor, each in a network namespace of its own,
talking over tcp with CURVE; one strategy host's cable is pulled mid-run and plugged back in.

Every process is a real command under ``ip netns exec``: ``mock-venue serve``, the demo's
strategy (``mock_venue.trader``), ``orderbus watch`` and ``mock-venue status`` (the admin's,
inside the venue's host: the control endpoint is on its loopback only), with keys made by
``orderbus keys new`` in one folder per host. Nothing waits by sleeping: each step waits for what
it needs (the monitor having printed an event, the venue's status) up to a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bus.curve import CLIENT_KEY_ENV, SERVER_KEY_ENV
from bus.server import Endpoints
from mock_venue.config import VenueConfig
from mock_venue.control import VenueStatus
from mock_venue.demo import DEMO_VENUE, strategy_name
from mock_venue.process import VenueProcess
from tests.netns import Host, Network, unavailable

STRATEGIES = 2
ORDERS = 150
PACE = 0.01  # the strategies' rhythm: they are still trading when the cable is pulled
SEED = 7
HEARTBEAT = 0.5  # the venue's, and what the strategies' ports expect
PROGRESS = 30  # events of strategy-1 the monitor must print before its cable is pulled
DEADLINE = 20.0  # for any one step; a healthy run takes a fraction of it
MONITOR, ADMIN = "monitor", "admin"

pytestmark = pytest.mark.timeout(120)


def _environment(keys: dict[str, str] | None = None) -> dict[str, str]:
    # Endpoints and keys come from the command line and ``keys`` only, never from the shell
    # that runs the tests.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERBUS_")}
    return {**env, "PYTHONUNBUFFERED": "1", **(keys or {})}


@pytest.fixture
def network() -> Iterator[Network]:
    reason = unavailable()
    if reason is not None:
        pytest.skip(f"network namespaces are needed: {reason}")
    net = Network()
    try:
        net.add("venue", 1)
        for n in range(1, STRATEGIES + 1):
            net.add(strategy_name(n), 10 + n)
        net.add(MONITOR, 20)
        yield net
    finally:
        net.close()


def make_keys(root: Path) -> dict[str, dict[str, str]]:
    """The venue's pair and entitlements in ``root/venue``; each client's pair and a copy of the
    venue's public key in a folder of its own, as separate machines would hold them. Returns
    each client's environment (what every orderbus client reads its keys from)."""
    venue = root / "venue"
    entitlements = venue / "entitlements.yaml"
    _orderbus("keys", "new", "venue", "--dir", str(venue))
    clients: dict[str, tuple[str, ...]] = {
        **{strategy_name(n): ("--strategy", strategy_name(n)) for n in range(1, STRATEGIES + 1)},
        MONITOR: ("--role", "monitor"),
        ADMIN: ("--role", "admin"),
    }
    envs = {}
    for name, entitled in clients.items():
        folder = root / name
        _orderbus(
            "keys", "new", name, "--dir", str(folder), "--entitlements", str(entitlements),
            *entitled,
        )  # fmt: skip
        shutil.copy(venue / "venue.key", folder / "venue.key")
        envs[name] = {
            SERVER_KEY_ENV: str(folder / "venue.key"),
            CLIENT_KEY_ENV: str(folder / f"{name}.key_secret"),
        }
    return envs


def _orderbus(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bus.cli", *args],
        capture_output=True,
        text=True,
        env=_environment(),
        timeout=DEADLINE,
    )
    assert done.returncode == 0, f"orderbus {' '.join(args)}: {done.stderr}"


class NamespacedVenue(VenueProcess):
    """``mock-venue serve`` inside ``host``: command and events on the host's address, control
    on the host's own loopback (as in docker-compose.yml), each on a free port."""

    def __init__(self, host: Host, config: VenueConfig, *, seed: int, extra_args: tuple[str, ...]):
        super().__init__(config, seed=seed, heartbeat=HEARTBEAT, extra_args=extra_args)
        self.host = host

    def _endpoint(self, name: str) -> str:
        return "tcp://127.0.0.1:0" if name == "control" else f"tcp://{self.host.address}:0"

    def _command(self, wanted: Endpoints) -> list[str]:
        return self.host.command(*super()._command(wanted))


def venue_status(host: Host, control: str, keys: dict[str, str]) -> VenueStatus:
    """``mock-venue status`` with the admin's key, run where the control endpoint is reachable."""
    argv = [
        sys.executable, "-m", "mock_venue.cli", "status", "--json",
        "--control", control, "--timeout", "5",
    ]  # fmt: skip
    done = subprocess.run(
        host.command(*argv),
        capture_output=True,
        text=True,
        env=_environment(keys),
        timeout=DEADLINE,
    )
    assert done.returncode == 0, f"mock-venue status: {done.stderr}"
    return VenueStatus.model_validate_json(done.stdout)


class Watch:
    """``orderbus watch --plain`` inside ``host``: the (venue_seq, strategy) of every event it
    printed, as they come."""

    def __init__(self, host: Host, endpoints: Endpoints, keys: dict[str, str], log: Path):
        self._log = log.open("w")
        argv = [
            sys.executable, "-m", "bus.cli", "watch", "--plain",
            "--command", endpoints.command, "--events", endpoints.events,
        ]  # fmt: skip
        self.process = subprocess.Popen(
            host.command(*argv),
            stdout=subprocess.PIPE,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
            text=True,
            env=_environment(keys),
        )
        self.events: list[tuple[int, str]] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            venue_seq, strategy = line.split()[:2]
            with self._changed:
                self.events.append((int(venue_seq), strategy))
                self._changed.notify_all()

    def count(self, strategy: str) -> int:
        with self._changed:
            return sum(1 for _, s in self.events if s == strategy)

    def until(self, what: str, condition: Callable[[], bool], timeout: float = DEADLINE) -> None:
        """Wait for ``condition`` (looked at on every event, and every 50 ms for conditions on
        time); fail saying ``what`` was awaited if it does not hold within ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"not within {timeout} s: {what}")
                if self.process.poll() is not None:
                    raise AssertionError(f"the monitor exited waiting for: {what}")
                self._changed.wait(min(left, 0.05))

    def stop(self) -> None:
        """SIGTERM: ``watch`` ends as on Ctrl-C; everything it printed is read."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(DEADLINE)
        finally:
            _kill(self.process)
            self._reader.join(DEADLINE)
            if self.process.stdout is not None:
                self.process.stdout.close()
            self._log.close()


def start_trader(
    host: Host, n: int, endpoints: Endpoints, keys: dict[str, str], log: Path
) -> subprocess.Popen[str]:
    argv = [
        sys.executable, "-m", "mock_venue.trader",
        "--strategy", strategy_name(n), "--orders", str(ORDERS),
        "--seed", str(SEED + n), "--pace", str(PACE),
        "--command", endpoints.command, "--events", endpoints.events,
    ]  # fmt: skip
    with log.open("w") as stderr:  # the child holds its own descriptor
        return subprocess.Popen(
            host.command(*argv),
            stdout=subprocess.PIPE,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            text=True,
            env=_environment(keys),
        )


def finish(trader: subprocess.Popen[str], log: Path, deadline: float) -> dict[str, Any]:
    """The trader's JSON summary, once it has exited."""
    try:
        out, _ = trader.communicate(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise AssertionError(f"a strategy did not finish: {log.read_text()}") from None
    assert trader.returncode == 0, f"a strategy failed: {log.read_text()}"
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def _kill(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()


def _orders(status: VenueStatus, strategy: str) -> int:
    return next((s.orders for s in status.strategies if s.strategy_id == strategy), 0)


def test_strategies_on_separate_hosts_lose_nothing_when_one_host_is_cut_off(
    network: Network, tmp_path: Path
) -> None:
    keys = make_keys(tmp_path / "keys")
    venue_host, cut = network.hosts["venue"], network.hosts[strategy_name(1)]
    other = strategy_name(2)
    server_args = (
        "--server-key", str(tmp_path / "keys" / "venue" / "venue.key_secret"),
        "--entitlements", str(tmp_path / "keys" / "venue" / "entitlements.yaml"),
    )  # fmt: skip
    with contextlib.ExitStack() as stack:
        venue = stack.enter_context(
            NamespacedVenue(venue_host, DEMO_VENUE, seed=SEED, extra_args=server_args)
        )
        endpoints = venue.endpoints
        assert endpoints is not None
        assert venue.ready["security"] == "curve"
        assert endpoints.command.startswith(f"tcp://{venue_host.address}:")

        def status() -> VenueStatus:
            return venue_status(venue_host, endpoints.control, keys[ADMIN])

        watch = Watch(network.hosts[MONITOR], endpoints, keys[MONITOR], tmp_path / "watch.log")
        stack.callback(watch.stop)
        traders = {}
        for n in range(1, STRATEGIES + 1):
            name = strategy_name(n)
            log = tmp_path / f"{name}.log"
            traders[name] = (start_trader(network.hosts[name], n, endpoints, keys[name], log), log)
            stack.callback(_kill, traders[name][0])

        watch.until("strategy-1 trading", lambda: watch.count(cut.name) >= PROGRESS)
        assert all(p.poll() is None for p, _ in traders.values()), "raise ORDERS: done already"
        cut.link(up=False)
        try:
            pulled = time.monotonic()
            at_cut, other_seen = status(), watch.count(other)
            # Down for at least two heartbeats the cut host cannot hear, and while the other
            # strategy demonstrably goes on trading.
            watch.until(
                "strategy-2 trading while strategy-1 is cut off",
                lambda: (
                    time.monotonic() >= pulled + 2 * HEARTBEAT and watch.count(other) > other_seen
                ),
            )
            before_restore = status()
        finally:
            cut.link(up=True)
        cut_for = time.monotonic() - pulled

        deadline = time.monotonic() + DEADLINE
        results = [finish(p, log, deadline) for p, log in traders.values()]
        final = status()
        watch.until(
            "the monitor printing every event", lambda: len(watch.events) >= final.venue_seq
        )
        watch.stop()

    # The cut was real: the venue heard nothing from strategy-1 while the other traded on.
    assert cut_for >= 2 * HEARTBEAT
    assert _orders(before_restore, cut.name) == _orders(at_cut, cut.name) < ORDERS
    assert _orders(before_restore, other) > _orders(at_cut, other)

    venue_side = {s.strategy_id: s for s in final.strategies}
    assert sorted(venue_side) == [strategy_name(n) for n in range(1, STRATEGIES + 1)]
    seen = Counter(strategy for _, strategy in watch.events)
    for r in results:
        name, orders = r["strategy"], r["orders"]
        assert orders["submitted"] == ORDERS, name
        assert orders["amended"] > 0, name
        assert orders["canceled"] > 0, name
        # Exactly once, in order, only its own.
        assert r["in_order"], name
        assert r["seqs_complete"], name
        assert r["foreign_events"] == 0, name
        assert r["duplicate_fills"] == 0, name
        # The strategy, the monitor and the venue agree.
        mine = venue_side[name]
        assert r["last_seq"] == r["events"] == mine.seq == seen[name], name
        assert Decimal(r["filled_qty"]) == Decimal(r["venue_filled_qty"]) == mine.filled_qty
        assert mine.orders == ORDERS
        assert mine.open_orders == 0
        assert r["open_at_end"] == 0
    # The monitor saw every venue event once, in the venue's order.
    assert [venue_seq for venue_seq, _ in watch.events] == list(range(1, final.venue_seq + 1))
    assert sum(r["events"] for r in results) == final.venue_seq
    assert final.protocol_errors == 0
    security = final.security
    assert security.mode == "curve"
    assert security.keys == STRATEGIES + 2  # the strategies, the monitor, the admin
    assert security.refused == 0
    assert security.handshakes_denied == 0
