"""What ``orderbus bench`` measures, one function a kind: raw pyzmq baselines, the bus's round
trips and pipelined throughput, fan-out to strategy processes, memory, codec costs. A kind that
runs against a CURVE server too takes its ``kind`` name, so both land in the same report."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
import timeit
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import zmq
from hdrh.histogram import HdrHistogram

from bus.blocking import BlockingOrderExecutionPort
from bus.client import ZmqOrderExecutionPort
from bus.codec import decode, encode
from bus.curve import ClientKeys, ServerKey
from bus.server import Endpoints
from mock_venue.clock import WallClock
from mock_venue.config import ImmediateFill, InstrumentConfig, ManualFill, VenueConfig
from mock_venue.engine import Publish, Respond, VenueEngine
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


def bench_order(strategy: str, n: int, instrument: str = RESTING) -> SubmitOrder:
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


def serve_raw(rep_endpoint: str, router_endpoint: str, server_key: str | None = None) -> None:
    """The raw servers, one poll loop, until a b"stop": REP and ROUTER echo, and the ceiling
    server (a ROUTER that validates each request and publishes one event for it). With
    ``server_key`` (a secret certificate) every socket is a CURVE server."""
    context = zmq.Context()
    rep, router = context.socket(zmq.REP), context.socket(zmq.ROUTER)
    ceiling, pub = context.socket(zmq.ROUTER), context.socket(zmq.PUB)
    if server_key is not None:
        # No ZAP handler: libzmq then admits any client key, so this is CURVE's own cost (the
        # venue's ZAP runs once per connection, at the handshake, outside the timed part).
        key = ServerKey.load(server_key)
        for socket in (rep, router, ceiling, pub):
            socket.curve_server = True
            socket.curve_publickey = key.public
            socket.curve_secretkey = key.secret
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


class RawServer:
    """A ``serve_raw`` process, and one client socket connected to each of its servers (as a
    CURVE client with ``keys``, to a server given ``server_key``)."""

    def __init__(
        self,
        context: zmq.Context[zmq.Socket[bytes]],
        server_key: Path | None = None,
        keys: ClientKeys | None = None,
    ) -> None:
        command = [sys.executable, "-m", "mock_venue.bench", "--role", "raw-server"]
        command += ["--command", "tcp://127.0.0.1:0", "--events", "tcp://127.0.0.1:0"]
        if server_key is not None:
            command += ["--server-key", str(server_key)]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        endpoints = json.loads(self.process.stdout.readline())
        self.req, self.dealer = context.socket(zmq.REQ), context.socket(zmq.DEALER)
        self.ceiling = context.socket(zmq.DEALER)
        for socket, name in ((self.req, "rep"), (self.dealer, "router"), (self.ceiling, "ceiling")):
            if keys is not None:
                keys.apply(socket)
            socket.connect(endpoints[name])
        # A round trip before any clock starts, so that no timed one waits for the connection
        # (and CURVE's handshake).
        for socket in (self.req, self.dealer):
            socket.send(PAYLOAD)
            socket.recv()

    def stop(self) -> None:
        self.req.send(b"stop")
        self.req.recv()
        self.process.wait(30)


@dataclass
class Results:
    latency: dict[str, HdrHistogram] = field(default_factory=dict)
    throughput: dict[str, list[float]] = field(default_factory=dict)

    def record(self, kind: str, microseconds: float) -> None:
        histogram = self.latency.get(kind)
        if histogram is None:  # not setdefault: building a histogram is not cheap
            histogram = self.latency[kind] = _histogram()
        histogram.record_value(max(1, int(microseconds)))

    def rate(self, kind: str, per_second: float) -> None:
        self.throughput.setdefault(kind, []).append(per_second)


def raw_round_trips(
    req: zmq.Socket[bytes], results: Results, count: int, kind: str = "raw_req_rep"
) -> None:
    for _ in range(count):
        started = time.perf_counter()
        req.send(PAYLOAD)
        req.recv()
        results.record(kind, (time.perf_counter() - started) * 1e6)


def blocking_round_trips(
    port: BlockingOrderExecutionPort,
    results: Results,
    count: int,
    start: int,
    kind: str = "blocking_submit_ack",
) -> None:
    for n in range(start, start + count):
        order = bench_order(port.strategy_id, n)  # the caller's input, like raw's payload
        started = time.perf_counter()
        port.submit_order(order)
        results.record(kind, (time.perf_counter() - started) * 1e6)


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
    port: ZmqOrderExecutionPort,
    results: Results,
    count: int,
    start: int,
    kind: str = "asyncio_submit_ack",
) -> None:
    for n in range(start, start + count):
        order = bench_order(port.strategy_id, n)
        started = time.perf_counter()
        await port.submit_order(order)
        results.record(kind, (time.perf_counter() - started) * 1e6)


async def async_pipelined(
    port: ZmqOrderExecutionPort,
    results: Results,
    count: int,
    start: int,
    *,
    handles: bool,
    kind: str | None = None,
) -> None:
    """``IN_FLIGHT`` tasks, each submitting in a loop: always that many in flight. ``handles``:
    with ``submit_order_nowait``, so each order's handle and update stream are in the figure
    too. The orders are built before the clock starts, as raw's frames are."""
    orders = iter([bench_order(port.strategy_id, n) for n in range(start, start + count)])

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
    if kind is None:
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
                await port.submit_order(bench_order(strategy, n, FILLING))

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
                await port.submit_order(bench_order("memory", n), timeout=60)

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
    outputs = engine.handle(bench_order("codec", 0), "token")
    ack = next(o.result for o in outputs if isinstance(o, Respond))
    report = next(o.report for o in outputs if isinstance(o, Publish))
    ack_frame, report_frame = encode(ack, request_id=1), encode(report)
    submit = bench_order("codec", 1)
    work = {
        "encode_submit": lambda: encode(submit, request_id=1, client_id="c"),
        "decode_ack": lambda: decode(ack_frame, max_bytes=None),
        "decode_report": lambda: decode(report_frame, max_bytes=None),
    }
    costs = {k: round(timeit.timeit(f, number=number) / number * 1e6, 2) for k, f in work.items()}
    costs["client_floor_per_order"] = round(sum(costs.values()), 2)
    return costs


# The points of each kind's latency curve in the report, enough to draw it from the JSON alone
# (mock_venue.bench_plots); 0 and 100 are the fastest and slowest round trips.
PERCENTILES = (0, 50, 75, 90, 95, 99, 99.9, 99.99, 100)


def summary(histogram: HdrHistogram) -> dict[str, Any]:
    return {
        "p50_us": histogram.get_value_at_percentile(50),
        "p99_us": histogram.get_value_at_percentile(99),
        "count": histogram.get_total_count(),
        "percentiles_us": {str(p): histogram.get_value_at_percentile(p) for p in PERCENTILES},
    }
