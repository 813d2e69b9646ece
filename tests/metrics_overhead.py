"""What the metrics' counting costs per request (issue 13, section 5): the hooks alone, and
submits through an in-process mock venue server with and without them.

    .venv/bin/python -m tests.metrics_overhead [REQUESTS]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Hashable

from bus.codec import encode
from bus.metrics import RequestTiming
from bus.server import Endpoints
from mock_venue.clock import ManualClock
from mock_venue.venue_server import venue_server
from ports import Side, SubmitOrder
from tests.contract.helpers import limit
from tests.contract.venue_setup import CONTRACT_VENUE

_FLUSH_EVERY = 16  # as the server's loop flushes under load


class _NoTiming(RequestTiming):
    """The hooks, doing nothing: the baseline."""

    def arrived(self, key: Hashable, request: object, now: float) -> None:
        pass

    def answered(self, key: Hashable, sent: bool = True) -> None:
        pass

    def sent(self) -> None:
        pass


def hooks_ns(n: int) -> float:
    """Nanoseconds per request of what the server does for the metrics: the request-type
    increment, ``arrived``, ``answered``, and ``sent`` once per flush; minus the same loop
    calling no-op hooks."""
    request = limit("o", quantity=1)
    keys = [("c", i) for i in range(n)]

    def run(timing: RequestTiming, types: dict[str, int]) -> float:
        start = time.perf_counter()
        for i, key in enumerate(keys):
            types["submit_order"] = types.get("submit_order", 0) + 1
            timing.arrived(key, request, 1.0)
            timing.answered(key)
            if i % _FLUSH_EVERY == 0:
                timing.sent()
        timing.sent()
        return time.perf_counter() - start

    base = min(run(_NoTiming(), {}) for _ in range(5))
    real = min(run(RequestTiming(), {}) for _ in range(5))
    return (real - base) / n * 1e9


def server_us(n: int, timing: RequestTiming) -> float:
    """Microseconds per submit through an in-process venue server (no sockets)."""
    endpoints = Endpoints("inproc://c", "inproc://e", "inproc://k")
    server = venue_server(CONTRACT_VENUE, endpoints, clock=ManualClock())
    server.timing = timing
    server._outbox._timing = timing  # the server's own, replaced for the baseline
    server._send = lambda *_: None  # type: ignore[method-assign]
    server._publish = lambda _: None  # type: ignore[method-assign,assignment]
    frames = [[b"peer", encode(_order(i), request_id=i, client_id="c")] for i in range(n)]
    try:
        start = time.perf_counter()
        for i, message in enumerate(frames):
            server._serve_command(message, None)
            if i % _FLUSH_EVERY == 0:
                server.flush()
        server.flush()
        return (time.perf_counter() - start) / n * 1e6
    finally:
        server.close()


def _order(i: int) -> SubmitOrder:
    # Filled at once (IMM), alternating sides: nothing rests, the position stays flat.
    return limit(f"o{i}", "IMM", 1, "100.00", side=Side.BUY if i % 2 else Side.SELL)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    print(f"hooks alone: {hooks_ns(n):.0f} ns per request (best of 5, {n} requests)")
    m = min(n, 20_000)
    without: list[float] = []
    with_: list[float] = []
    for n in range(6):  # interleaved, each first in turn: the second of a pair runs slower
        runs = [(without, _NoTiming()), (with_, RequestTiming())]
        for times, timing in runs if n % 2 else runs[::-1]:
            times.append(server_us(m, timing))
    print(f"in-process venue server: {min(without):.2f} us per submit without the timing hooks, "
          f"{min(with_):.2f} us with them (best of 6, {m} submits)")  # fmt: skip


if __name__ == "__main__":
    main()
