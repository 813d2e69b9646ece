"""``orderbus bench``: what the bus costs, as ratios to raw pyzmq measured in the same run.

Rounds interleave every measurement, so the machine's drift between fast and slow scheduling
modes falls on all of them alike. Latencies go into HDR histograms (microseconds).

- raw REQ/REP round trip, 100-byte payload: the baseline;
- blocking client submit -> ack, and asyncio client submit -> ack, against the venue process;
- pipelined submits, 32 in flight (asyncio client: 32 tasks awaiting ``submit_order``, and the same
  with ``submit_order_nowait`` handles), against raw DEALER/ROUTER pipelined, and the
  ceiling: raw DEALER/ROUTER where the server validates each submit with the port's model and
  publishes one event (what any venue that validates at the edge cannot beat);
- fan-out: fills published to N strategy processes at once, counting loss;
- memory: the venue's resident size with many resting orders, above its idle size;
- CURVE: the raw round trip and pipelined rate, and both clients' submit -> ack and the asyncio
  client's pipelined rate again against CURVE twins of the servers (``mock_venue.bench_curve``),
  in the same rounds, reported as CURVE over plain.

Each latency kind's percentile curve is in the report, so ``--plots`` (``mock_venue.bench_plots``)
can draw the figures from the JSON alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import click
import zmq
from rich.console import Console
from rich.table import Table

from bus.blocking import BlockingOrderExecutionPort
from bus.client import ZmqOrderExecutionPort
from bus.codec import encode
from mock_venue.bench_curve import CURVE, RAW_CLIENT, bench_keyring, curve_figures, curve_table
from mock_venue.bench_kinds import (
    BENCH_VENUE,
    IN_FLIGHT,
    PAYLOAD,
    RawServer,
    Results,
    async_pipelined,
    async_round_trips,
    bench_order,
    blocking_round_trips,
    codec_costs,
    fan_out,
    fan_out_strategy,
    memory,
    raw_pipelined,
    raw_round_trips,
    serve_raw,
    summary,
)
from mock_venue.process import VenueProcess

TARGETS = {
    "blocking_submit_ack_p50_vs_raw": 2.0,
    "asyncio_submit_ack_p50_vs_raw": 2.5,
    "pipelined_throughput_vs_raw": 0.5,
    "fan_out_lost": 0,
    "bytes_per_resting_order": 1024,
}
"""Issue 14's targets, as the report and the console state them."""


def run(
    rounds: int, count: int, fan_out_orders: int, memory_orders: int, fan_out_strategies: int = 8
) -> dict[str, Any]:
    """Every measurement, interleaved over ``rounds``; returns the report."""
    results = Results()
    report: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:  # closed in reverse: servers stop, then the context
        context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        stack.callback(context.destroy, linger=0)
        # Every key is made and loaded here, before any clock starts.
        keys_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="orderbus-bench-"))
        ring = bench_keyring(Path(keys_dir))
        raw_plain = RawServer(context)
        stack.callback(raw_plain.stop)
        raw_curve = RawServer(context, ring.server_secret, ring.keys(RAW_CLIENT))
        stack.callback(raw_curve.stop)
        # The ceiling's requests are real SubmitOrder frames, encoded before the clock starts.
        submits = [encode(bench_order("ceiling", n), request_id=n) for n in range(count * 4)]
        process = stack.enter_context(VenueProcess(BENCH_VENUE))
        secure = stack.enter_context(VenueProcess(BENCH_VENUE, extra_args=ring.server_args()))
        assert process.process is not None
        assert process.endpoints is not None
        assert secure.endpoints is not None
        assert secure.ready["security"] == "curve"
        venue, venue_curve = process.endpoints, secure.endpoints
        blocking = BlockingOrderExecutionPort(
            "bench-blocking", command=venue.command, events=venue.events
        )
        blocking_curve = BlockingOrderExecutionPort(
            "bench-blocking",
            command=venue_curve.command,
            events=venue_curve.events,
            keys=ring.keys("bench-blocking"),
        )
        for opened in (blocking, blocking_curve):
            opened.open()
            stack.callback(opened.close)

        async def bench() -> None:
            port = ZmqOrderExecutionPort(
                "bench-asyncio", command=venue.command, events=venue.events
            )
            port_curve = ZmqOrderExecutionPort(
                "bench-asyncio",
                command=venue_curve.command,
                events=venue_curve.events,
                keys=ring.keys("bench-asyncio"),
            )
            async with port, port_curve:
                for r in range(rounds):
                    raw_round_trips(raw_plain.req, results, count)
                    raw_round_trips(raw_curve.req, results, count, "raw_req_rep" + CURVE)
                    base = r * count
                    blocking_round_trips(blocking, results, count, base)
                    blocking_round_trips(
                        blocking_curve, results, count, base, "blocking_submit_ack" + CURVE
                    )
                    await async_round_trips(port, results, count, base)
                    await async_round_trips(
                        port_curve, results, count, base, "asyncio_submit_ack" + CURVE
                    )
                    raw_pipelined(raw_plain.dealer, results, [PAYLOAD] * (count * 4))
                    raw_pipelined(
                        raw_curve.dealer, results, [PAYLOAD] * (count * 4), "raw_pipelined" + CURVE
                    )
                    raw_pipelined(raw_plain.ceiling, results, submits, "ceiling_pipelined")
                    start = 10_000_000 + base * 8
                    await async_pipelined(port, results, count * 4, start, handles=False)
                    await async_pipelined(
                        port_curve, results, count * 4, start, handles=False,
                        kind="asyncio_pipelined" + CURVE,
                    )  # fmt: skip
                    await async_pipelined(port, results, count * 4, start + count * 4, handles=True)

        asyncio.run(bench())
        # Fan-out and memory measure the plain venue alone: nothing else of the bus's runs.
        blocking.close()
        blocking_curve.close()
        secure.stop()
        report["codec_us"] = codec_costs()
        report["fan_out"] = fan_out(venue, fan_out_strategies, fan_out_orders)
        pid = process.process.pid
        report["memory"] = asyncio.run(memory(venue, pid, memory_orders)) if memory_orders else None
    latency = {kind: summary(h) for kind, h in results.latency.items()}
    raw = latency["raw_req_rep"]["p50_us"]
    throughput = {kind: round(sorted(v)[len(v) // 2]) for kind, v in results.throughput.items()}
    curve_ratios, curve = curve_figures(latency, throughput)
    report.update(
        {
            "machine": {
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "pyzmq": zmq.pyzmq_version(),
                "libzmq": zmq.zmq_version(),
            },
            "rounds": rounds,
            "round_trips_per_round": count,
            "latency": latency,
            "throughput_per_second": throughput,
            "ratios": {
                "blocking_submit_ack_p50_vs_raw": round(
                    latency["blocking_submit_ack"]["p50_us"] / raw, 2
                ),
                "asyncio_submit_ack_p50_vs_raw": round(
                    latency["asyncio_submit_ack"]["p50_us"] / raw, 2
                ),
                "pipelined_throughput_vs_raw": round(
                    throughput["asyncio_pipelined"] / throughput["raw_pipelined"], 3
                ),
                "pipelined_handles_throughput_vs_raw": round(
                    throughput["asyncio_pipelined_handles"] / throughput["raw_pipelined"], 3
                ),
                "ceiling_pipelined_vs_raw": round(
                    throughput["ceiling_pipelined"] / throughput["raw_pipelined"], 3
                ),
                **curve_ratios,
            },
            "curve": curve,
            "targets": TARGETS,
        }
    )
    return report


@click.command()
@click.option("--rounds", default=5, show_default=True, help="Interleaved rounds.")
@click.option("--count", default=1000, show_default=True, help="Round trips per kind per round.")
@click.option("--fan-out-orders", default=5000, show_default=True,
              help="Orders (each filled) per fan-out strategy process.")  # fmt: skip
@click.option("--fan-out-strategies", default=8, show_default=True,
              help="Strategy processes the fills fan out to.")  # fmt: skip
@click.option("--memory-orders", default=100_000, show_default=True,
              help="Resting orders for the memory figure (0: skip).")  # fmt: skip
@click.option("--output", type=click.Path(dir_okay=False), default="bench.json", show_default=True)
@click.option("--plots", type=click.Path(file_okay=False), default=None,
              help="Also draw the report's figures in this folder (dev extra).")  # fmt: skip
def bench(
    rounds: int,
    count: int,
    fan_out_orders: int,
    fan_out_strategies: int,
    memory_orders: int,
    output: str,
    plots: str | None,
) -> None:
    """Measure the bus against raw pyzmq in one interleaved run; write the report as JSON."""
    report = run(rounds, count, fan_out_orders, memory_orders, fan_out_strategies)
    with open(output, "w") as f:
        json.dump(report, f, indent=2)
    console = Console()
    table = Table(title=f"orderbus bench ({rounds} rounds x {count}; written to {output})")
    for column in ("measure", "p50 us", "p99 us", "ratio p50 to raw", "target"):
        table.add_column(column, justify="right")
    raw = report["latency"]["raw_req_rep"]["p50_us"]
    targets = {
        kind: f"<= {TARGETS[f'{kind}_p50_vs_raw']}"
        for kind in ("blocking_submit_ack", "asyncio_submit_ack")
    }
    for kind, figures in report["latency"].items():
        if kind.endswith(CURVE):
            continue  # in the CURVE table, beside its plain twin
        table.add_row(
            kind, str(figures["p50_us"]), str(figures["p99_us"]),
            f"{figures['p50_us'] / raw:.2f}", targets.get(kind, "baseline"),
        )  # fmt: skip
    console.print(table)
    tput = report["throughput_per_second"]
    console.print(
        f"pipelined ({IN_FLIGHT} in flight): asyncio client {tput['asyncio_pipelined']}/s, raw "
        f"DEALER/ROUTER {tput['raw_pipelined']}/s: "
        f"{report['ratios']['pipelined_throughput_vs_raw']:.1%} (target >= 50%); with handles "
        f"(submit_order_nowait) {tput['asyncio_pipelined_handles']}/s, "
        f"{report['ratios']['pipelined_handles_throughput_vs_raw']:.1%}"
    )
    console.print(
        f"ceiling: a raw ROUTER that only validates each submit and publishes one event: "
        f"{tput['ceiling_pipelined']}/s = {report['ratios']['ceiling_pipelined_vs_raw']:.1%} of raw"
    )
    codec = report["codec_us"]
    console.print(
        f"client codec floor per order: {codec['client_floor_per_order']} us "
        f"(at most {1e6 / codec['client_floor_per_order']:.0f}/s on one core, before any I/O)"
    )
    console.print(curve_table(report))
    console.print(f"fan-out: {report['fan_out']}")
    if report["memory"]:
        target = TARGETS["bytes_per_resting_order"]
        console.print(f"memory: {report['memory']} (target <= {target} bytes/order)")
    if plots is not None:
        # Imported here: matplotlib is a dev dependency, and slow to import.
        try:
            from mock_venue.bench_plots import draw
        except ImportError as exc:
            raise click.ClickException(
                f"--plots needs matplotlib (the dev extra): {exc}; the report is in {output}"
            ) from exc
        for path in draw(report, Path(plots)):
            click.echo(f"plot: {path}")


def role_main(argv: list[str]) -> None:
    """Helper processes of the benchmark (``python -m mock_venue.bench --role ...``)."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--role", required=True, choices=["raw-server", "fan-out-strategy"])
    parser.add_argument("--command")
    parser.add_argument("--events")
    parser.add_argument("--strategy")
    parser.add_argument("--orders", type=int, default=0)
    parser.add_argument("--server-key")
    args = parser.parse_args(argv)
    if args.role == "raw-server":
        serve_raw(args.command, args.events, args.server_key)
    else:
        asyncio.run(fan_out_strategy(args.command, args.events, args.strategy, args.orders))


if __name__ == "__main__":
    role_main(sys.argv[1:])
