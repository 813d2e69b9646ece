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
- memory: the venue's resident size with many resting orders, above its idle size.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import random
import subprocess
import sys
import time
import timeit
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
import zmq
from hdrh.histogram import HdrHistogram
from rich.console import Console
from rich.table import Table

from bus.blocking import BlockingOrderExecutionPort
from bus.client import ZmqOrderExecutionPort
from bus.codec import decode, encode
from bus.server import Endpoints
from mock_venue.clock import WallClock
from mock_venue.config import ImmediateFill, InstrumentConfig, ManualFill, VenueConfig
from mock_venue.engine import Publish, Respond, VenueEngine
from mock_venue.process import VenueProcess
from ports import OrderType, Side, SubmitOrder

PAYLOAD = b"x" * 100
IN_FLIGHT = 32
RESTING = "REST"  # manual fills: orders rest, so submit -> ack measures acceptance only
FILLING = "FILL"  # immediate fills: every order produces a fill to fan out


def _histogram() -> HdrHistogram:
    return HdrHistogram(1, 60_000_000, 3)


BENCH_VENUE = VenueConfig(
    instruments=(
        InstrumentConfig(symbol=RESTING, reference_price=Decimal(10), fill_model=ManualFill()),
        InstrumentConfig(symbol=FILLING, reference_price=Decimal(10), fill_model=ImmediateFill()),
    )
)


def rss_kib(pid: int) -> int:
    """Resident set size of a process, KiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _order(strategy: str, n: int, instrument: str = RESTING) -> SubmitOrder:
    return SubmitOrder(
        client_order_id=f"{strategy}-{n}",
        strategy_id=strategy,
        instrument=instrument,
        side=Side.BUY,
        quantity=Decimal(1),
        order_type=OrderType.LIMIT,
        limit_price=Decimal(10),
    )


# --- raw pyzmq baseline -------------------------------------------------------------------------


def serve_raw(rep_endpoint: str, router_endpoint: str) -> None:
    """The raw servers, one poll loop, until a b"stop": REP and ROUTER echo, and the ceiling
    server (a ROUTER that validates each request and publishes one event for it)."""
    context = zmq.Context()
    rep, router = context.socket(zmq.REP), context.socket(zmq.ROUTER)
    ceiling, pub = context.socket(zmq.ROUTER), context.socket(zmq.PUB)
    rep.bind(rep_endpoint)
    router.bind(router_endpoint)
    ceiling.bind(router_endpoint)
    pub.bind(router_endpoint)
    endpoints = {
        name: socket.getsockopt_string(zmq.LAST_ENDPOINT)
        for name, socket in (("rep", rep), ("router", router), ("ceiling", ceiling))
    }
    sys.stdout.write(json.dumps(endpoints) + "\n")
    sys.stdout.flush()
    event = b"e" * 300  # about an ExecutionReport's size
    poller = zmq.Poller()
    for socket in (rep, router, ceiling):
        poller.register(socket, zmq.POLLIN)
    while True:
        for socket, _ in poller.poll():
            if socket is rep:
                message = rep.recv()
                rep.send(message)
                if message == b"stop":
                    context.destroy(linger=0)
                    return
            elif socket is router:
                router.send_multipart(router.recv_multipart())
            else:
                frames = ceiling.recv_multipart()
                decode(frames[1])
                ceiling.send_multipart(frames)
                pub.send_multipart([b"S", event])


@dataclass
class Results:
    latency: dict[str, HdrHistogram] = field(default_factory=dict)
    throughput: dict[str, list[float]] = field(default_factory=dict)

    def record(self, kind: str, microseconds: float) -> None:
        histogram = self.latency.get(kind)
        if histogram is None:  # not setdefault: building a histogram costs ~70 us
            histogram = self.latency[kind] = _histogram()
        histogram.record_value(max(1, int(microseconds)))

    def rate(self, kind: str, per_second: float) -> None:
        self.throughput.setdefault(kind, []).append(per_second)


def raw_round_trips(req: zmq.Socket[bytes], results: Results, count: int) -> None:
    for _ in range(count):
        started = time.perf_counter()
        req.send(PAYLOAD)
        req.recv()
        results.record("raw_req_rep", (time.perf_counter() - started) * 1e6)


def blocking_round_trips(
    port: BlockingOrderExecutionPort, results: Results, count: int, start: int
) -> None:
    for n in range(start, start + count):
        order = _order(port.strategy_id, n)  # the caller's input, like raw's payload
        started = time.perf_counter()
        port.submit_order(order)
        results.record("blocking_submit_ack", (time.perf_counter() - started) * 1e6)


def raw_pipelined(
    dealer: zmq.Socket[bytes],
    results: Results,
    frames: list[bytes],
    kind: str = "raw_pipelined",
) -> None:
    count = len(frames)
    started = time.perf_counter()
    sent = received = 0
    while received < count:
        while sent < count and sent - received < IN_FLIGHT:
            dealer.send(frames[sent])
            sent += 1
        dealer.recv()
        received += 1
    results.rate(kind, count / (time.perf_counter() - started))


# --- the bus ------------------------------------------------------------------------------------


async def async_round_trips(
    port: ZmqOrderExecutionPort, results: Results, count: int, start: int
) -> None:
    for n in range(start, start + count):
        order = _order(port.strategy_id, n)
        started = time.perf_counter()
        await port.submit_order(order)
        results.record("asyncio_submit_ack", (time.perf_counter() - started) * 1e6)


async def async_pipelined(
    port: ZmqOrderExecutionPort, results: Results, count: int, start: int, *, handles: bool
) -> None:
    """``IN_FLIGHT`` tasks, each submitting in a loop: always that many in flight. ``handles``:
    with ``submit_order_nowait``, so each order's handle and update stream are in the figure
    too. The orders are built before the clock starts, as raw's frames are."""
    orders = iter([_order(port.strategy_id, n) for n in range(start, start + count)])

    async def worker() -> None:
        for order in orders:
            if not handles:
                await port.submit_order(order)
                continue
            handle = await port.submit_order_nowait(order)
            await handle.acknowledged(timeout=30)
            await handle.events.aclose()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    kind = "asyncio_pipelined_handles" if handles else "asyncio_pipelined"
    results.rate(kind, count / (time.perf_counter() - started))


def fan_out(venue: Endpoints, strategies: int, orders: int) -> dict[str, Any]:
    """``strategies`` processes each submit ``orders`` immediately-filled orders (pipelined) and
    count the fills their stream delivers."""
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mock_venue.bench",
                "--role",
                "fan-out-strategy",
                "--command",
                venue.command,
                "--events",
                venue.events,
                "--strategy",
                f"fan-{n}",
                "--orders",
                str(orders),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(strategies)
    ]
    reports = [
        json.loads(p.communicate(timeout=600)[0].strip().splitlines()[-1]) for p in processes
    ]
    fills = sum(r["fills"] for r in reports)
    seconds = max(r["seconds"] for r in reports)
    return {
        "strategies": strategies,
        "orders_per_strategy": orders,
        "fills_expected": strategies * orders,
        "fills_received": fills,
        "lost": strategies * orders - fills,
        "duplicates": sum(r["duplicates"] for r in reports),
        "fills_per_second": round(fills / seconds),
    }


async def fan_out_strategy(command: str, events: str, strategy: str, orders: int) -> None:
    """One fan-out strategy process: submit, then wait for every fill (at most 60 s)."""
    port = ZmqOrderExecutionPort(strategy, command=command, events=events)
    seen: set[str] = set()
    duplicates = 0
    async with port:
        updates = port.updates()
        started = time.perf_counter()
        window = asyncio.Semaphore(IN_FLIGHT)

        async def one(n: int) -> None:
            async with window:
                await port.submit_order(_order(strategy, n, FILLING))

        await asyncio.gather(*(one(n) for n in range(orders)))
        deadline = time.monotonic() + 60
        while len(seen) < orders and time.monotonic() < deadline:
            try:
                report = await updates.get(timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                break
            if report.fill_id is not None:
                duplicates += report.fill_id in seen
                seen.add(report.fill_id)
        seconds = time.perf_counter() - started
    sys.stdout.write(
        json.dumps({"fills": len(seen), "duplicates": duplicates, "seconds": seconds}) + "\n"
    )


async def memory(venue: Endpoints, pid: int, orders: int) -> dict[str, Any]:
    """The venue's RSS growth with ``orders`` resting orders, per order."""
    port = ZmqOrderExecutionPort("memory", command=venue.command, events=venue.events)
    async with port:
        idle = rss_kib(pid)
        window = asyncio.Semaphore(IN_FLIGHT * 4)

        async def one(n: int) -> None:
            async with window:
                await port.submit_order(_order("memory", n), timeout=60)

        await asyncio.gather(*(one(n) for n in range(orders)))
        loaded = rss_kib(pid)
    return {
        "resting_orders": orders,
        "idle_rss_kib": idle,
        "loaded_rss_kib": loaded,
        "bytes_per_order": round((loaded - idle) * 1024 / orders),
    }


# --- the run ------------------------------------------------------------------------------------


def codec_costs(number: int = 20_000) -> dict[str, float]:
    """Microseconds per call of the codec work every submitted order costs the client, in
    process: the floor under any client that validates at the edge."""
    engine = VenueEngine(BENCH_VENUE, clock=WallClock(), rng=random.Random(0))
    outputs = engine.handle(_order("codec", 0), "token")
    ack = next(o.result for o in outputs if isinstance(o, Respond))
    report = next(o.report for o in outputs if isinstance(o, Publish))
    ack_frame, report_frame = encode(ack, request_id=1), encode(report)
    submit = _order("codec", 1)
    work = {
        "encode_submit": lambda: encode(submit, request_id=1, client_id="c"),
        "decode_ack": lambda: decode(ack_frame, max_bytes=None),
        "decode_report": lambda: decode(report_frame, max_bytes=None),
    }
    costs = {k: round(timeit.timeit(f, number=number) / number * 1e6, 2) for k, f in work.items()}
    costs["client_floor_per_order"] = round(sum(costs.values()), 2)
    return costs


def _summary(histogram: HdrHistogram) -> dict[str, float]:
    return {
        "p50_us": histogram.get_value_at_percentile(50),
        "p99_us": histogram.get_value_at_percentile(99),
        "count": histogram.get_total_count(),
    }


def run(rounds: int, count: int, fan_out_orders: int, memory_orders: int) -> dict[str, Any]:
    """Every measurement, interleaved over ``rounds``; returns the report."""
    raw_server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mock_venue.bench",
            "--role",
            "raw-server",
            "--command",
            "tcp://127.0.0.1:0",
            "--events",
            "tcp://127.0.0.1:0",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert raw_server.stdout is not None
    raw_endpoints = json.loads(raw_server.stdout.readline())
    context = zmq.Context()
    req, dealer = context.socket(zmq.REQ), context.socket(zmq.DEALER)
    ceiling = context.socket(zmq.DEALER)
    req.connect(raw_endpoints["rep"])
    dealer.connect(raw_endpoints["router"])
    ceiling.connect(raw_endpoints["ceiling"])
    # The ceiling's requests are real SubmitOrder frames, encoded before the clock starts.
    submits = [encode(_order("ceiling", n), request_id=n) for n in range(count * 4)]
    process = VenueProcess(BENCH_VENUE)
    venue = process.start()
    assert process.process is not None
    pid = process.process.pid
    results = Results()
    report: dict[str, Any] = {}
    try:
        blocking = BlockingOrderExecutionPort(
            "bench-blocking", command=venue.command, events=venue.events
        )
        blocking.open()

        async def bench() -> None:
            port = ZmqOrderExecutionPort(
                "bench-asyncio", command=venue.command, events=venue.events
            )
            async with port:
                for r in range(rounds):
                    raw_round_trips(req, results, count)
                    base = r * count
                    blocking_round_trips(blocking, results, count, base)
                    await async_round_trips(port, results, count, base)
                    raw_pipelined(dealer, results, [PAYLOAD] * (count * 4))
                    raw_pipelined(ceiling, results, submits, "ceiling_pipelined")
                    start = 10_000_000 + base * 8
                    await async_pipelined(port, results, count * 4, start, handles=False)
                    await async_pipelined(port, results, count * 4, start + count * 4, handles=True)

        asyncio.run(bench())
        blocking.close()
        report["codec_us"] = codec_costs()
        report["fan_out"] = fan_out(venue, 4, fan_out_orders)
        report["memory"] = asyncio.run(memory(venue, pid, memory_orders)) if memory_orders else None
    finally:
        process.stop()
        req.send(b"stop")
        req.recv()
        raw_server.wait(30)
        context.destroy(linger=0)
    latency = {kind: _summary(h) for kind, h in results.latency.items()}
    raw = latency["raw_req_rep"]["p50_us"]
    throughput = {kind: round(sorted(v)[len(v) // 2]) for kind, v in results.throughput.items()}
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
            },
            "targets": {
                "blocking_submit_ack_p50_vs_raw": 2.0,
                "asyncio_submit_ack_p50_vs_raw": 3.0,
                "pipelined_throughput_vs_raw": 0.5,
                "fan_out_lost": 0,
                "bytes_per_resting_order": 2048,
            },
        }
    )
    return report


@click.command()
@click.option("--rounds", default=5, show_default=True, help="Interleaved rounds.")
@click.option("--count", default=1000, show_default=True, help="Round trips per kind per round.")
@click.option("--fan-out-orders", default=5000, show_default=True,
              help="Orders (each filled) per fan-out strategy process.")  # fmt: skip
@click.option("--memory-orders", default=100_000, show_default=True,
              help="Resting orders for the memory figure (0: skip).")  # fmt: skip
@click.option("--output", type=click.Path(dir_okay=False), default="bench.json", show_default=True)
def bench(rounds: int, count: int, fan_out_orders: int, memory_orders: int, output: str) -> None:
    """Measure the bus against raw pyzmq in one interleaved run; write the report as JSON."""
    report = run(rounds, count, fan_out_orders, memory_orders)
    with open(output, "w") as f:
        json.dump(report, f, indent=2)
    console = Console()
    table = Table(title=f"orderbus bench ({rounds} rounds x {count}; written to {output})")
    for column in ("measure", "p50 us", "p99 us", "ratio p50 to raw", "target"):
        table.add_column(column, justify="right")
    raw = report["latency"]["raw_req_rep"]["p50_us"]
    targets = {"blocking_submit_ack": "<= 2.0", "asyncio_submit_ack": "<= 3.0"}
    for kind, figures in report["latency"].items():
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
        f"(submit_nowait) {tput['asyncio_pipelined_handles']}/s, "
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
    console.print(f"fan-out: {report['fan_out']}")
    if report["memory"]:
        console.print(f"memory: {report['memory']} (target <= 2048 bytes/order)")


def role_main(argv: list[str]) -> None:
    """Helper processes of the benchmark (``python -m bus.bench --role ...``)."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--role", required=True, choices=["raw-server", "fan-out-strategy"])
    parser.add_argument("--command")
    parser.add_argument("--events")
    parser.add_argument("--strategy")
    parser.add_argument("--orders", type=int, default=0)
    args = parser.parse_args(argv)
    if args.role == "raw-server":
        serve_raw(args.command, args.events)
    else:
        asyncio.run(fan_out_strategy(args.command, args.events, args.strategy, args.orders))


if __name__ == "__main__":
    role_main(sys.argv[1:])
