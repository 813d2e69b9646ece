"""README's first command runs this main job: a venue process and strategy processes."""

from __future__ import annotations

import subprocess
import sys


def test_main_job_runs_strategies_against_a_venue_and_they_agree() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mock_venue.demo", "--strategies", "2", "--orders", "50"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert "2 strategies against one venue" in done.stdout
    assert "every event delivered exactly once; strategies, monitor and venue agree" in done.stdout
    assert "venue: 100 orders" in done.stdout
