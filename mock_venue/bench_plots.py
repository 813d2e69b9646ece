"""The figures of an ``orderbus bench`` report, drawn from its JSON alone (matplotlib, Agg):

- ``bench-latency.png``: each latency kind's percentile curve, on HDR's ``1/(1-p)`` axis so that
  the tail (99, 99.9, 99.99) is as wide as the body; CURVE twins dashed beside their plain kind;
- ``bench-throughput.png``: the pipelined rates, each labelled with its share of raw
  DEALER/ROUTER's rate measured in the same rounds (CURVE kinds: of raw CURVE's).

``orderbus bench --plots DIR`` draws them after a run; ``python -m mock_venue.bench_plots
REPORT.json DIR`` redraws them from a report. The same report gives the same bytes: the files
carry no timestamp and no matplotlib version, and matplotlib's defaults are used whatever the
user's matplotlibrc says.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NamedTuple

import matplotlib
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import (
    FixedLocator,
    LogLocator,
    NullFormatter,
    NullLocator,
    StrMethodFormatter,
)

from mock_venue.bench_curve import CURVE
from mock_venue.bench_kinds import IN_FLIGHT

LATENCY_PLOT = "bench-latency.png"
THROUGHPUT_PLOT = "bench-throughput.png"
# Plain kinds in the order they are drawn, with their legend's words and colour.
LATENCY_KINDS = {
    "raw_req_rep": ("raw REQ/REP", "tab:gray"),
    "blocking_submit_ack": ("blocking submit -> ack", "tab:blue"),
    "asyncio_submit_ack": ("asyncio submit -> ack", "tab:orange"),
}
THROUGHPUT_KINDS = {
    "raw_pipelined": ("raw DEALER/ROUTER", "tab:gray"),
    "ceiling_pipelined": ("ceiling: validate + publish", "tab:purple"),
    "asyncio_pipelined": ("asyncio submit_order", "tab:orange"),
    "asyncio_pipelined_handles": ("asyncio submit_order_nowait", "tab:red"),
}
# The percentiles labelled on the x axis; 100 (the slowest) has no place on a 1/(1-p) axis.
TICKS = (0.0, 50.0, 90.0, 99.0, 99.9, 99.99)
DPI = 110


def _x(percentile: float) -> float:
    # One in how many round trips is slower: 99 -> 100, 99.9 -> 1000, evenly spaced on a log axis.
    return 1 / (1 - percentile / 100)


def _curve(figures: dict[str, Any]) -> tuple[list[float], list[float]]:
    """A kind's percentile curve, ``(x, microseconds)``, without its 100th percentile."""
    try:
        points = figures["percentiles_us"]
    except KeyError:
        raise ValueError(
            "the report has no percentile curves (from a bench before them): run the bench again"
        ) from None
    kept = sorted((float(p), float(us)) for p, us in points.items() if float(p) < 100)
    return [_x(p) for p, _ in kept], [us for _, us in kept]


def _subtitle(report: dict[str, Any]) -> str:
    machine = report["machine"]
    return (
        f"{report['rounds']} interleaved rounds, {machine['cpus']} CPUs, Python "
        f"{machine['python']}, pyzmq {machine['pyzmq']}, libzmq {machine['libzmq']}"
    )


def _latency(axes: Axes, report: dict[str, Any]) -> None:
    latency = report["latency"]
    for kind, (label, colour) in LATENCY_KINDS.items():
        for name, style, suffix in ((kind, "-", ""), (kind + CURVE, "--", ", CURVE")):
            if name in latency:
                x, us = _curve(latency[name])
                axes.plot(x, us, style, color=colour, marker=".", label=label + suffix)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.xaxis.set_major_locator(FixedLocator([_x(p) for p in TICKS]))
    axes.xaxis.set_minor_locator(NullLocator())
    axes.set_xticklabels([f"{p:g}" for p in TICKS])
    # Ticks at 1, 2 and 5 of each power of ten: latencies span three or four of them.
    axes.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axes.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    axes.yaxis.set_minor_formatter(NullFormatter())
    axes.set_xlabel("percentile, on a 1/(1 - p) log scale")
    axes.set_ylabel("round trip, microseconds (log)")
    axes.set_title(f"Latency percentiles, {report['round_trips_per_round']} round trips a round")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="best", fontsize="small")


class _Bar(NamedTuple):
    label: str
    rate: float
    colour: str
    text: str  # the rate, and its share of raw's
    curve: bool


def _throughput(axes: Axes, report: dict[str, Any]) -> None:
    rates = report["throughput_per_second"]
    bars: list[_Bar] = []
    for kind, (label, colour) in THROUGHPUT_KINDS.items():
        for suffix, words in (("", ""), (CURVE, ", CURVE")):
            if kind + suffix not in rates:
                continue
            rate, raw = rates[kind + suffix], rates["raw_pipelined" + suffix]
            share = "baseline" if kind == "raw_pipelined" else f"{rate / raw:.1%} of raw{words}"
            bars.append(_Bar(label + words, rate, colour, f"{rate:,.0f}/s, {share}", bool(suffix)))
    rows = range(len(bars))
    drawn = axes.barh(
        rows,
        [bar.rate for bar in bars],
        color=[bar.colour for bar in bars],
        hatch=["//" if bar.curve else "" for bar in bars],
        edgecolor="white",
    )
    axes.bar_label(drawn, [bar.text for bar in bars], padding=3, fontsize="small")
    axes.set_yticks(list(rows), [bar.label for bar in bars])
    axes.invert_yaxis()  # the baseline on top
    axes.set_xlim(0, max(bar.rate for bar in bars) * 1.45)  # room for the labels
    axes.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    axes.set_xlabel("orders (raw: messages) per second, median of the rounds")
    axes.set_title(f"Pipelined throughput, {IN_FLIGHT} in flight")
    axes.grid(True, axis="x", alpha=0.3)


def draw(report: dict[str, Any], directory: Path) -> list[Path]:
    """Write the report's figures into ``directory`` (made if missing); returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    with matplotlib.rc_context():
        matplotlib.rcdefaults()  # undone on leaving the context
        for name, plot, size in (
            (LATENCY_PLOT, _latency, (8.0, 5.0)),
            (THROUGHPUT_PLOT, _throughput, (9.0, 4.5)),
        ):
            figure = Figure(figsize=size, dpi=DPI, layout="constrained")
            FigureCanvasAgg(figure)
            plot(figure.add_subplot(), report)
            figure.suptitle(_subtitle(report), fontsize="small", color="dimgray")
            path = directory / name
            figure.savefig(path, format="png", metadata={"Software": None})
            written.append(path)
    return written


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        sys.stderr.write("usage: python -m mock_venue.bench_plots REPORT.json DIR\n")
        raise SystemExit(2)
    report = json.loads(Path(argv[0]).read_text())
    try:
        written = draw(report, Path(argv[1]))
    except ValueError as exc:
        sys.stderr.write(f"{argv[0]}: {exc}\n")
        raise SystemExit(1) from None
    for path in written:
        sys.stdout.write(f"{path}\n")


if __name__ == "__main__":
    main(sys.argv[1:])
