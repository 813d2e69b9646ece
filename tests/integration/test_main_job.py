"""README's first command runs this main job: a venue process and strategy processes."""

from __future__ import annotations

import subprocess
import sys

AGREE = "every event delivered exactly once; strategies, monitor and venue agree"


def _demo(*extra: str) -> subprocess.CompletedProcess[str]:
    """Two strategies of 50 orders each: they must agree with the monitor and the venue."""
    done = subprocess.run(
        [sys.executable, "-m", "mock_venue.demo", "--strategies", "2", "--orders", "50", *extra],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert "2 strategies against one venue" in done.stdout
    assert AGREE in done.stdout
    assert "venue: 100 orders" in done.stdout
    return done


def test_main_job_runs_strategies_against_a_venue_and_they_agree() -> None:
    done = _demo()
    assert "CURVE" not in done.stdout


def test_main_job_with_curve_gives_every_process_its_own_key_and_they_agree() -> None:
    done = _demo("--curve")
    # Two strategies, the monitor and the admin: each connected as itself, none refused.
    assert "security: curve, 4 keys entitled, 0 refused, 0 handshakes denied" in done.stdout
