"""`orderbus bench` runs end to end and writes a complete report (figures are not asserted:
speed is measured by the benchmark, never by a timed test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_bench_runs_and_reports_every_measure(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    done = subprocess.run(
        [
            sys.executable, "-c", "from bus.cli import main; main()",
            "bench", "--rounds", "1", "--count", "50", "--fan-out-orders", "100",
            "--memory-orders", "500", "--output", str(output),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(output.read_text())
    assert set(report["latency"]) == {"raw_req_rep", "blocking_submit_ack", "asyncio_submit_ack"}
    assert all(v["count"] == 50 for v in report["latency"].values())
    assert set(report["throughput_per_second"]) == {
        "raw_pipelined",
        "ceiling_pipelined",
        "asyncio_pipelined",
        "asyncio_pipelined_handles",
    }
    assert report["codec_us"]["client_floor_per_order"] > 0
    assert report["fan_out"]["lost"] == 0
    assert report["fan_out"]["fills_received"] == 400
    assert report["memory"]["resting_orders"] == 500
    assert "ratio p50 to raw" in done.stdout
