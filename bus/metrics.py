"""Prometheus metrics of a bus server (``--metrics HOST:PORT``; docs/gateway.md, "Metrics and
logs").

Almost everything is read from counters the server keeps anyway (``status`` shows the same), at
scrape time: ``ServerCollector`` asks the server loop for a ``Snapshot`` (the loop is
single-threaded and owns that state; the HTTP server runs on prometheus-client's own thread) and
turns it into metric families. Counted here only what nothing else counts: the time each request
spends in the server (``RequestTiming``); requests by type and rejections by reason are two dict
increments in ``bus.venue_protocol``.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast, runtime_checkable

import click

from bus.codec import TYPES

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

    from bus.server import Server

_F = TypeVar("_F", bound=Callable[..., Any])

LATENCY_BUCKETS: tuple[float, ...] = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""Upper bounds (seconds) of the latency histogram's buckets; one more bucket holds the rest."""

_MAX_PENDING = 1_000_000  # requests timed and not answered: past it, the oldest timings go


class RequestTiming:
    """How long requests spend in the server, from arrival to their answer being sent, by
    request type. ``arrived`` when a request goes to the backend, ``answered`` when its answer is
    made, ``sent`` once the replies made so far have left. Called from the server loop only."""

    __slots__ = ("_answered", "_pending", "counts", "sums")

    def __init__(self) -> None:
        self.counts: dict[type, list[int]] = {}  # per bucket of LATENCY_BUCKETS, then the rest
        self.sums: dict[type, float] = {}
        self._pending: dict[Hashable, tuple[float, type]] = {}
        self._answered: list[tuple[float, type]] = []

    def arrived(self, key: Hashable, request: object, now: float) -> None:
        """``request`` (``key``) arrived at ``now`` (``time.monotonic()``)."""
        self._pending[key] = (now, type(request))

    def answered(self, key: Hashable, sent: bool = True) -> None:
        """The answer to ``key`` was made; ``sent`` False: nobody gets it (not timed)."""
        timed = self._pending.pop(key, None)
        if timed is not None and sent:
            self._answered.append(timed)

    def sent(self) -> None:
        """The answers made so far have been sent (once per flush, not per request)."""
        answered = self._answered
        if not answered:
            return
        now = time.monotonic()
        counts, sums = self.counts, self.sums
        for arrived, kind in answered:
            spent = now - arrived
            buckets = counts.get(kind)
            if buckets is None:
                buckets = counts[kind] = [0] * (len(LATENCY_BUCKETS) + 1)
                sums[kind] = 0.0
            buckets[bisect_left(LATENCY_BUCKETS, spent)] += 1
            sums[kind] += spent
        answered.clear()
        pending = self._pending
        if len(pending) > _MAX_PENDING:  # answers that never come (a backend that raised)
            for key in list(pending)[: len(pending) - _MAX_PENDING]:
                del pending[key]


@runtime_checkable
class BackendGauges(Protocol):
    """A backend with gauges of its own (the mock venue's journal); a backend without this
    method has none."""

    def metric_gauges(self) -> Sequence[tuple[str, str, float]]:
        """(name, help, value) of each gauge, read on the server loop at each scrape."""


class Connections(Protocol):
    """What counts the command channel's connections (``bus.logs.ConnectionWatch``)."""

    @property
    def connected(self) -> int: ...


@dataclass
class Snapshot:
    """What one scrape shows, copied on the server loop."""

    session: str
    instance: str
    security: str
    requests: int
    request_types: dict[str, int]
    rejections: dict[str, int]
    latency: dict[str, tuple[list[int], float]]
    open_orders: dict[str, int]
    positions: list[tuple[str, str, float, float]]  # strategy, instrument, net, realized
    breaches: dict[str, int]
    halted: int
    halted_all: bool
    counters: dict[str, tuple[str, float]]  # name -> (help, value)
    gauges: dict[str, tuple[str, float]] = field(default_factory=dict)


def snapshot(server: Server, connections: Connections | None = None) -> Snapshot:
    """Copy what the metrics show out of ``server`` (and ``connections``, its command
    channel's). On the server loop (or while it is not serving): the loop changes all of it."""
    protocol = server.protocol
    risk = protocol.risk
    ledger = risk.ledger
    limits = server.limits
    security = server.security
    strategies = ledger.strategies()
    rejections = {str(reason.value): n for reason, n in protocol.rejections.items()}
    if limits.throttled:  # the request rate limit refuses before anything counts it there
        rejections["throttled"] = rejections.get("throttled", 0) + limits.throttled
    positions = [
        (s, p.instrument, float(p.quantity), float(p.realized_pnl))
        for s in strategies
        for p in ledger.positions(s)
    ]
    counters: dict[str, tuple[str, float]] = {
        "protocol_errors": ("Frames that were not valid requests or control messages.",
                            protocol.protocol_errors),
        "reply_queue_drops": ("Replies dropped because their peer's queue was full.",
                              limits.reply_queue_drops),
        "unroutable_replies": ("Replies to peers gone before the answer.",
                               server.unroutable_replies),
        "replies_evicted": ("Stored answers evicted from the reply store.",
                            limits.replies_evicted),
        "access_refused": ("Requests, subscriptions and control commands refused by access.",
                           security.refused),
        "handshakes_denied": ("CURVE handshakes refused (unknown or revoked keys).",
                              security.handshakes_denied),
        "events_published": ("Execution reports published (the all-events stream's number).",
                             protocol.venue_seq),
        "canceled_on_disconnect": ("Strategies whose orders were canceled because a client "
                                   "that asked for it went silent.", protocol.watch.fired),
    }  # fmt: skip
    gauges: dict[str, tuple[str, float]] = {
        "subscribed_streams": ("Strategy streams with an entitled subscriber.",
                               security.subscribed_streams),
        "reply_clients": ("Clients with answers kept for their retries.", limits.reply_clients),
        "reply_store_bytes": ("Bytes of answers kept for retries.", limits.reply_bytes),
        "rate_clients": ("Clients whose request rate is tracked.", limits.rate_clients),
        "disconnect_watches": ("Clients armed for cancel on disconnect.", protocol.watch.armed),
    }  # fmt: skip
    if connections is not None:
        gauges["clients_connected"] = ("Connections to the command channel now.",
                                       connections.connected)  # fmt: skip
    backend = server.backend
    if isinstance(backend, BackendGauges):
        for name, help_, value in backend.metric_gauges():
            gauges[name] = (help_, value)
    timing = server.timing
    return Snapshot(
        session=server.session,
        instance=server.instance,
        security=security.mode,
        requests=protocol.requests,
        request_types=dict(protocol.request_types),
        rejections=rejections,
        latency={
            TYPES.get(kind, kind.__name__): (list(buckets), timing.sums[kind])
            for kind, buckets in timing.counts.items()
        },
        open_orders={s: ledger.open_orders(s) for s in strategies},
        positions=positions,
        breaches=dict(risk.breaches),
        halted=len(risk.halted),
        halted_all=risk.halted_all,
        counters=counters,
        gauges=gauges,
    )


class ServerCollector:
    """The metrics of one ``Server``, a prometheus-client collector (``registry``).
    ``on_loop``: read on the server loop (a serving server; ``Server.call_soon``), else directly
    (a test, a server not serving)."""

    def __init__(
        self,
        server: Server,
        *,
        connections: Connections | None = None,
        on_loop: bool = True,
        timeout: float = 5.0,
    ) -> None:
        self._server = server
        self._connections = connections
        self._on_loop = on_loop
        self._timeout = timeout

    def _snapshot(self) -> Snapshot:
        if not self._on_loop:
            return snapshot(self._server, self._connections)
        taken: list[Snapshot] = []
        done = threading.Event()

        def take() -> None:
            try:
                taken.append(snapshot(self._server, self._connections))
            finally:
                done.set()

        self._server.call_soon(take)
        if not done.wait(self._timeout) or not taken:
            raise TimeoutError(f"the server loop did not answer within {self._timeout} s")
        return taken[0]

    def collect(self) -> Iterator[Metric]:
        yield from families(self._snapshot())


def _counter(name: str, help_: str, labels: Sequence[str],
             values: Iterable[tuple[Sequence[str], float]]) -> CounterMetricFamily:  # fmt: skip
    from prometheus_client.core import CounterMetricFamily

    family = CounterMetricFamily(name, help_, labels=labels)
    for label_values, value in values:
        family.add_metric(label_values, value)
    return family


def _gauge(name: str, help_: str, labels: Sequence[str],
           values: Iterable[tuple[Sequence[str], float]]) -> GaugeMetricFamily:  # fmt: skip
    from prometheus_client.core import GaugeMetricFamily

    family = GaugeMetricFamily(name, help_, labels=labels)
    for label_values, value in values:
        family.add_metric(label_values, value)
    return family


def families(snap: Snapshot) -> Iterator[Metric]:
    """The metric families of one snapshot (names and meanings: docs/gateway.md)."""
    from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

    info = GaugeMetricFamily(
        "orderbus_server_info", "The server's session, instance and security mode (always 1).",
        labels=["session", "instance", "security"],
    )  # fmt: skip
    info.add_metric([snap.session, snap.instance, snap.security], 1)
    yield info
    types = dict(snap.request_types)
    invalid = snap.requests - sum(types.values())
    if invalid:
        types["invalid"] = invalid
    yield _counter("orderbus_requests", "Requests received on the command channel, by type "
                   "('invalid': not decodable).", ["type"],
                   (([t], n) for t, n in sorted(types.items())))  # fmt: skip
    yield _counter("orderbus_replay_requests", "Replay requests received.", [],
                   [([], types.get("replay", 0))])  # fmt: skip
    yield _counter("orderbus_rejections", "Requests answered with a rejection, by reason.",
                   ["reason"], (([r], n) for r, n in sorted(snap.rejections.items())))  # fmt: skip
    latency = HistogramMetricFamily(
        "orderbus_request_latency_seconds",
        "Time in the server from a request's arrival to its answer being sent (requests that "
        "reached the backend), by type.",
        labels=["type"],
    )
    for kind, (buckets, total) in sorted(snap.latency.items()):
        cumulative, running = [], 0
        for bound, count in zip((*LATENCY_BUCKETS, float("inf")), buckets, strict=True):
            running += count
            cumulative.append(("+Inf" if bound == float("inf") else repr(bound), running))
        latency.add_metric([kind], cumulative, total)
    yield latency
    yield _gauge("orderbus_open_orders", "Working orders, by strategy (counting those sent "
                 "and not acknowledged yet).", ["strategy"],
                 (([s], n) for s, n in sorted(snap.open_orders.items())))  # fmt: skip
    yield _gauge("orderbus_position", "Net position (negative: short), by strategy and "
                 "instrument.", ["strategy", "instrument"],
                 (([s, i], q) for s, i, q, _ in snap.positions))  # fmt: skip
    yield _gauge("orderbus_realized_pnl", "Realized P&L (average cost), by strategy and "
                 "instrument.", ["strategy", "instrument"],
                 (([s, i], pnl) for s, i, _, pnl in snap.positions))  # fmt: skip
    yield _counter("orderbus_limit_breaches", "Submits and amends refused by a pre-trade limit "
                   "or a halt, by limit.", ["limit"],
                   (([k], n) for k, n in sorted(snap.breaches.items())))  # fmt: skip
    yield _gauge("orderbus_halted_strategies", "Strategies halted one by one.", [],
                 [([], snap.halted)])  # fmt: skip
    yield _gauge("orderbus_halted_all", "1 while every strategy is halted.", [],
                 [([], int(snap.halted_all))])  # fmt: skip
    for name, (help_, value) in snap.counters.items():
        yield _counter(f"orderbus_{name}", help_, [], [([], value)])
    for name, (help_, value) in snap.gauges.items():
        yield _gauge(f"orderbus_{name}", help_, [], [([], value)])


def registry(collector: ServerCollector) -> CollectorRegistry:
    """A prometheus-client registry of ``collector`` alone (no process or GC metrics: a
    deployment's node exporter has those)."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.registry import Collector

    # prometheus-client is imported when metrics are served, not by every user of bus.server.
    registry = CollectorRegistry(auto_describe=False)
    registry.register(cast(Collector, collector))
    return registry


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6; port 0 picks a free one)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{text!r}: expected HOST:PORT, for example 127.0.0.1:9464")
    return host.strip("[]"), int(port)


def serve_metrics(
    server: Server, address: str, connections: Connections | None = None
) -> tuple[str, Callable[[], None]]:
    """Serve ``server``'s metrics over HTTP at ``address`` (``HOST:PORT``) on a thread of
    prometheus-client's; the URL bound, and what stops it."""
    from prometheus_client import start_http_server

    host, port = parse_address(address)
    collector = ServerCollector(server, connections=connections)
    httpd, thread = start_http_server(port, addr=host, registry=registry(collector))
    bound = httpd.server_address[1]
    shown = f"[{host}]" if ":" in host else host

    def stop() -> None:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5.0)

    return f"http://{shown}:{bound}/metrics", stop


def _check_address(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        try:
            parse_address(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    return value


def server_metrics_options(command: _F) -> _F:
    """``--metrics HOST:PORT`` of a server: give its value to ``serve_until_signalled``."""
    return click.option(
        "--metrics", "metrics", metavar="HOST:PORT", callback=_check_address,
        envvar="ORDERBUS_METRICS",
        help="Serve Prometheus metrics over HTTP at HOST:PORT (e.g. 127.0.0.1:9464; port 0 "
             "picks a free one), at /metrics. Plain HTTP, no auth: keep it on loopback or a "
             "private network.",
    )(command)  # fmt: skip
