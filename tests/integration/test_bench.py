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
    assert set(report["latency"]) == {
        "raw_req_rep",
        "blocking_submit_ack",
        "asyncio_submit_ack",
        "raw_req_rep_curve",
        "blocking_submit_ack_curve",
        "asyncio_submit_ack_curve",
    }
    assert all(v["count"] == 50 for v in report["latency"].values())
    assert set(report["throughput_per_second"]) == {
        "raw_pipelined",
        "ceiling_pipelined",
        "asyncio_pipelined",
        "asyncio_pipelined_handles",
        "raw_pipelined_curve",
        "asyncio_pipelined_curve",
    }
    assert all(v > 0 for v in report["throughput_per_second"].values())
    curve_ratios = {
        "raw_req_rep_curve_p50_vs_plain",
        "blocking_submit_ack_curve_p50_vs_plain",
        "asyncio_submit_ack_curve_p50_vs_plain",
        "raw_pipelined_curve_vs_plain",
        "asyncio_pipelined_curve_vs_plain",
        "blocking_submit_ack_curve_p50_vs_raw_curve",
        "asyncio_submit_ack_curve_p50_vs_raw_curve",
        "pipelined_curve_throughput_vs_raw_curve",
    }
    assert curve_ratios <= set(report["ratios"])
    assert all(report["ratios"][k] > 0 for k in curve_ratios)
    latency = report["latency"]
    assert report["curve"]["added_p50_us"] == {
        kind: latency[f"{kind}_curve"]["p50_us"] - latency[kind]["p50_us"]
        for kind in ("raw_req_rep", "blocking_submit_ack", "asyncio_submit_ack")
    }
    assert report["codec_us"]["client_floor_per_order"] > 0
    assert report["fan_out"]["lost"] == 0
    assert report["fan_out"]["fills_received"] == 400
    assert report["memory"]["resting_orders"] == 500
    assert "ratio p50 to raw" in done.stdout
    assert "CURVE beside plain" in done.stdout
    assert "CURVE / plain" in done.stdout
