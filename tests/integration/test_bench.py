"""`orderbus bench` runs end to end and writes a complete report and its plots (figures are not
asserted: speed is measured by the benchmark, never by a timed test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from mock_venue import bench_plots
from mock_venue.bench_kinds import PERCENTILES


def test_bench_runs_and_reports_every_measure(tmp_path: Path) -> None:
    output, plots = tmp_path / "bench.json", tmp_path / "plots"
    done = subprocess.run(
        [
            sys.executable, "-c", "from bus.cli import main; main()",
            "bench", "--rounds", "1", "--count", "50", "--fan-out-orders", "100",
            "--fan-out-strategies", "2",
            "--memory-orders", "500", "--output", str(output), "--plots", str(plots),
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
    for figures in report["latency"].values():
        curve = figures["percentiles_us"]
        assert list(curve) == [str(p) for p in PERCENTILES]
        assert list(curve.values()) == sorted(curve.values())
        assert (curve["50"], curve["99"]) == (figures["p50_us"], figures["p99_us"])
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
    assert (report["fan_out"]["strategies"], report["fan_out"]["fills_received"]) == (2, 200)
    assert report["memory"]["resting_orders"] == 500
    assert "ratio p50 to raw" in done.stdout
    assert "CURVE beside plain" in done.stdout
    assert "CURVE / plain" in done.stdout
    _assert_the_plots_redraw_the_same(report, plots, tmp_path)


def _assert_the_plots_redraw_the_same(report: dict[str, Any], plots: Path, tmp_path: Path) -> None:
    """The bench's plots are valid PNGs, and the report alone redraws them byte for byte, from
    the command line and in process."""
    names = [bench_plots.LATENCY_PLOT, bench_plots.THROUGHPUT_PLOT]
    assert sorted(p.name for p in plots.iterdir()) == sorted(names)
    redrawn = tmp_path / "redrawn"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mock_venue.bench_plots",
            str(tmp_path / "bench.json"),
            str(redrawn),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    again = bench_plots.draw(report, tmp_path / "again")
    for name, path in zip(names, again, strict=True):
        data = (plots / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        assert (redrawn / name).read_bytes() == data
        assert path.read_bytes() == data
