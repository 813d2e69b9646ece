"""The benchmarks page's figures are drawn from a report alone, the same bytes every time, and
only the plotting imports matplotlib."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mock_venue import bench_plots
from mock_venue.bench_kinds import PERCENTILES

PNG = b"\x89PNG\r\n\x1a\n"


def _curve(p50: int) -> dict[str, Any]:
    points = {str(p): p50 * (1 + n) for n, p in enumerate(PERCENTILES)}
    return {"p50_us": p50, "p99_us": points["99"], "count": 10, "percentiles_us": points}


def _report(curve: bool = True) -> dict[str, Any]:
    kinds = ["raw_req_rep", "blocking_submit_ack", "asyncio_submit_ack"]
    rates = {
        "raw_pipelined": 80_000,
        "ceiling_pipelined": 30_000,
        "asyncio_pipelined": 15_000,
        "asyncio_pipelined_handles": 13_000,
    }
    if curve:
        kinds += [kind + "_curve" for kind in kinds]
        rates |= {"raw_pipelined_curve": 70_000, "asyncio_pipelined_curve": 14_000}
    return {
        "machine": {"python": "3.11.7", "cpus": 2, "pyzmq": "27.3.0", "libzmq": "4.3.5"},
        "rounds": 1,
        "round_trips_per_round": 10,
        "latency": {kind: _curve(100 + 50 * n) for n, kind in enumerate(kinds)},
        "throughput_per_second": rates,
    }


@pytest.mark.parametrize("curve", [True, False], ids=["with-curve", "plain-only"])
def test_the_same_report_draws_the_same_pngs(tmp_path: Path, curve: bool) -> None:
    first = bench_plots.draw(_report(curve), tmp_path / "first")
    second = bench_plots.draw(_report(curve), tmp_path / "second")
    assert [p.name for p in first] == [bench_plots.LATENCY_PLOT, bench_plots.THROUGHPUT_PLOT]
    for a, b in zip(first, second, strict=True):
        data = a.read_bytes()
        assert data.startswith(PNG)
        assert data == b.read_bytes()
        assert b"Software" not in data  # no matplotlib version in the file


def test_different_figures_draw_different_pngs(tmp_path: Path) -> None:
    report = _report()
    first = bench_plots.draw(report, tmp_path / "first")
    report["throughput_per_second"]["asyncio_pipelined"] = 40_000
    second = bench_plots.draw(report, tmp_path / "second")
    assert first[0].read_bytes() == second[0].read_bytes()
    assert first[1].read_bytes() != second[1].read_bytes()


def test_a_report_without_curves_is_refused(tmp_path: Path) -> None:
    report = _report()
    del report["latency"]["raw_req_rep"]["percentiles_us"]
    with pytest.raises(ValueError, match="no percentile curves"):
        bench_plots.draw(report, tmp_path)


def test_the_bench_command_does_not_import_matplotlib() -> None:
    code = "import sys, mock_venue.bench; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
