"""One strategy process of the chaos test: it trades through whatever the venue does to it, then
checks its own view of every order against the venue's and prints the figures as one JSON line.

``python -m tests.integration.chaos_strategy --command ... --events ... --strategy s1 --orders 500``

Progress goes to stderr as it runs (a line every tenth of the orders, and while the streams
settle), and on SIGTERM (the test's deadline) the figures so far, as one JSON line, before it
exits with ``INTERRUPTED``: a strategy that runs late still tells what it got through.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

from bus.client import ZmqOrderExecutionPort
from ports import (
    AckTimeoutError,
    AmendOrder,
    CancelOrder,
    ConnectivityError,
    ErrorReason,
    ExecType,
    ExecutionReport,
    OrderRejectedError,
    OrderSnapshot,
    OrderType,
    PortError,
    Side,
    SubmitOrder,
    ThrottleError,
)

_T = TypeVar("_T")
INSTRUMENTS = ("IMM", "MAN", "SLC")
SETTLE_WAIT = 60.0  # seconds for the streams to catch up with the venue at the end (default)
INTERRUPTED = 3  # exit code after SIGTERM: the partial figures are on stderr
PROGRESS_EVERY = 5.0  # seconds between progress lines while settling


def _progress(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


@dataclass
class View:
    """An order as the strategy's update stream told it."""

    status: str = ""
    cum_qty: Decimal = Decimal(0)
    fills: dict[str, Decimal] = field(default_factory=dict)
    fills_twice: int = 0


@dataclass
class Figures:
    submitted: int = 0
    rejected: int = 0
    in_doubt: int = 0
    duplicates_refused: int = 0  # DUPLICATE_CLIENT_ORDER_ID: a retry made a second order
    connectivity_errors: int = 0
    throttled: int = 0
    seq_gaps: int = 0
    seq_repeats: int = 0


class Strategy:
    def __init__(self, port: ZmqOrderExecutionPort, name: str, rng: random.Random) -> None:
        self.port = port
        self.name = name
        self.rng = rng
        self.views: dict[str, View] = {}
        self.figures = Figures()
        self.last_seq = 0
        self.started = time.monotonic()
        self.phase = "placing"
        self.placed = 0
        self.place_seconds = 0.0
        self.settle_rounds = 0
        self.differing = -1  # orders the stream and the venue disagree on, at the last round

    def so_far(self) -> dict[str, Any]:
        """The figures at this moment (for progress lines, and when interrupted)."""
        return {
            "strategy": self.name,
            "phase": self.phase,
            "placed": self.placed,
            "seconds": round(time.monotonic() - self.started, 1),
            **self.figures.__dict__,
            "orders_seen_on_stream": len(self.views),
            "fills": sum(len(v.fills) for v in self.views.values()),
            "settle_rounds": self.settle_rounds,
            "differing": self.differing,
        }

    def interrupted(self, signum: int, frame: object) -> None:
        """SIGTERM: the figures so far on stderr, then out (the test is past its deadline)."""
        _progress("interrupted: " + json.dumps(self.so_far()))
        os._exit(INTERRUPTED)

    def on_report(self, report: ExecutionReport) -> None:
        if report.seq != self.last_seq + 1:
            if report.seq <= self.last_seq:
                self.figures.seq_repeats += 1
            else:
                self.figures.seq_gaps += 1
        self.last_seq = max(self.last_seq, report.seq)
        view = self.views.setdefault(report.client_order_id, View())
        view.status = report.status.value
        view.cum_qty = report.cum_qty
        if report.exec_type is ExecType.TRADE:
            assert report.fill_id is not None
            if report.fill_id in view.fills:
                view.fills_twice += 1
            view.fills[report.fill_id] = report.last_qty

    async def robust(self, call: Callable[[], Awaitable[_T]]) -> _T | PortError:
        """The call's answer, through throttling and lost connections; a definite refusal or an
        unknown outcome comes back as the error."""
        delay = 0.02
        while True:
            try:
                return await call()
            except ThrottleError as error:
                self.figures.throttled += 1
                await asyncio.sleep(error.retry_after or 0.05)
            except AckTimeoutError as error:
                return error
            except ConnectivityError as error:
                self.figures.connectivity_errors += 1
                if error.outcome.value != "definite":
                    return error
                await asyncio.sleep(delay)  # nothing was sent: try again when connected
                delay = min(delay * 2, 0.5)
            except OrderRejectedError as error:
                return error

    async def status(self, client_order_id: str) -> OrderSnapshot | None:
        """The venue's view of an order (None: it does not exist), asking until it answers."""
        while True:
            answer = await self.robust(lambda: self.port.order_status(client_order_id))
            if isinstance(answer, OrderSnapshot):
                return answer
            if (
                isinstance(answer, OrderRejectedError)
                and answer.reason is ErrorReason.UNKNOWN_ORDER
            ):
                return None
            await asyncio.sleep(0.05)

    async def place(self, n: int) -> None:
        instrument = self.rng.choice(INSTRUMENTS)
        order = SubmitOrder(
            client_order_id=f"{self.name}-{n}",
            strategy_id=self.name,
            instrument=instrument,
            side=self.rng.choice((Side.BUY, Side.SELL)),
            quantity=Decimal(self.rng.randint(1, 20)),
            order_type=OrderType.LIMIT,
            limit_price=Decimal("10.00"),
        )
        self.figures.submitted += 1
        answer = await self.robust(lambda: self.port.submit_order(order))
        if isinstance(answer, OrderRejectedError):
            self.figures.rejected += 1
            if answer.reason is ErrorReason.DUPLICATE_CLIENT_ORDER_ID:
                self.figures.duplicates_refused += 1
            return
        if isinstance(answer, PortError):  # in doubt: the venue's word settles it
            self.figures.in_doubt += 1
            if await self.status(order.client_order_id) is None:
                return
        if instrument == "MAN":
            roll = self.rng.random()
            coid = order.client_order_id
            if roll < 0.3:
                bigger = order.quantity + 5
                amend = AmendOrder(strategy_id=self.name, client_order_id=coid, quantity=bigger)
                await self.robust(lambda: self.port.amend_order(amend))
            elif roll < 0.6:
                cancel = CancelOrder(strategy_id=self.name, client_order_id=coid)
                await self.robust(lambda: self.port.cancel_order(cancel))

    async def check(self, orders: int, settle_wait: float = SETTLE_WAIT) -> dict[str, Any]:
        """Wait until the stream agrees with the venue on every order; report what differs."""
        self.phase = "settling"
        self.place_seconds = time.monotonic() - self.started
        _progress(f"{self.name}: placed {self.placed} in {self.place_seconds:.1f} s")
        coids = [f"{self.name}-{n}" for n in range(orders)]
        settle_started = time.monotonic()
        deadline = settle_started + settle_wait
        next_line = settle_started + PROGRESS_EVERY
        while True:
            venue = {c: await self.status(c) for c in coids}
            differ = [c for c, snap in venue.items() if not self._agrees(c, snap)]
            self.settle_rounds += 1
            self.differing = len(differ)
            settled = not differ and all(map(_settled, venue.values()))
            if settled or time.monotonic() > deadline:
                break
            if time.monotonic() >= next_line:
                next_line += PROGRESS_EVERY
                _progress(
                    f"{self.name}: settling, round {self.settle_rounds}: {len(differ)} differ"
                )
            await asyncio.sleep(0.2)
        settle_seconds = time.monotonic() - settle_started
        if not settled:
            _progress(f"{self.name}: not settled after {settle_seconds:.1f} s: {differ[:20]}")
        at_venue = {c: s for c, s in venue.items() if s is not None}
        fills = sum(len(v.fills) for v in self.views.values())
        return {
            "strategy": self.name,
            **self.figures.__dict__,
            "orders_at_venue": len(at_venue),
            "orders_seen_on_stream": len(self.views),
            "fills": fills,
            "filled_qty": str(sum((s.cum_qty for s in at_venue.values()), Decimal(0))),
            "fills_counted_twice": sum(v.fills_twice for v in self.views.values()),
            "orders_differing": differ,
            "place_seconds": round(self.place_seconds, 1),
            "settle_seconds": round(settle_seconds, 1),
            "settle_rounds": self.settle_rounds,
        }

    def _agrees(self, coid: str, snapshot: OrderSnapshot | None) -> bool:
        view = self.views.get(coid)
        if snapshot is None:
            return view is None or view.status == "rejected"
        if view is None:
            return False
        return (
            view.status == snapshot.status.value
            and view.cum_qty == snapshot.cum_qty
            and sum(view.fills.values(), Decimal(0)) == snapshot.cum_qty
        )


def _settled(snapshot: OrderSnapshot | None) -> bool:
    """Nothing more will happen to this order on its own: no change pending, and (unless it
    rests on the manual instrument) done. Delayed fills and slices land before this."""
    if snapshot is None:
        return True
    if snapshot.status.value.startswith("pending"):
        return False
    return snapshot.instrument == "MAN" or snapshot.status.is_terminal


async def run(
    command: str, events: str, name: str, orders: int, seed: int, settle_wait: float = SETTLE_WAIT
) -> dict[str, Any]:
    port = ZmqOrderExecutionPort(name, command=command, events=events, ack_timeout=1.0)
    async with port:
        strategy = Strategy(port, name, random.Random(seed))
        signal.signal(signal.SIGTERM, strategy.interrupted)
        updates = port.updates()

        async def consume() -> None:
            async for report in updates:
                strategy.on_report(report)

        consumer = asyncio.create_task(consume())
        every = max(1, orders // 10)
        for n in range(orders):
            await strategy.place(n)
            strategy.placed = n + 1
            if strategy.placed % every == 0:
                _progress(json.dumps(strategy.so_far()))
        result = await strategy.check(orders, settle_wait)
        consumer.cancel()
        return result


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--command", required=True)
    parser.add_argument("--events", required=True)
    parser.add_argument("--strategy", required=True)
    parser.add_argument("--orders", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--settle-wait", type=float, default=SETTLE_WAIT)
    args = parser.parse_args(argv)
    result = asyncio.run(
        run(args.command, args.events, args.strategy, args.orders, args.seed, args.settle_wait)
    )
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
