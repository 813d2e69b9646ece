"""README's first command runs this main job: it must work, and say the same for the same seed."""

from __future__ import annotations

import subprocess
import sys


def run_demo(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "mock_venue.demo", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def test_demo_trades_and_summarises_deterministically() -> None:
    first = run_demo("--seconds", "12", "--seed", "3")
    assert "accepted" in first
    assert "summary" in first
    assert "fills" in first
    assert "throttled: backing off" in first
    assert run_demo("--seconds", "12", "--seed", "3") == first
