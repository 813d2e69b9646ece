"""A synthetic strategy process: trades against a venue and reports exactly what it saw.

``python -m mock_venue.trader --strategy s1 --orders 200 --command ... --events ...`` submits
limit orders across the venue's instruments, amends some, cancels some, cancels the rest at the
end, then waits until its stream has delivered every event of its orders and prints one JSON line:
counts, submit->ack latency percentiles, and the sequence numbers it received (so a test can prove
exactly-once, in-order delivery). Used by the main job and the integration tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from dataclasses import dataclass, field
from decimal import Decimal

import click
from hdrh.histogram import HdrHistogram

from bus.client import ZmqOrderExecutionPort
from ports import (
    AmendOrder,
    CancelOrder,
    ExecutionReport,
    OrderRejectedError,
    OrderType,
    Side,
    SubmitOrder,
    ThrottleError,
    UpdateStream,
)

# (instrument, reference price, tick) of the default venue; limits placed to trade at once.
BOOK = (("GLOBEX", Decimal("25.00")), ("INITECH", Decimal("10.00")), ("ACME", Decimal("100.00")))


@dataclass
class Tally:
    """What the strategy saw on its stream."""

    seqs: list[int] = field(default_factory=list)
    foreign: int = 0
    fills: int = 0
    filled_qty: Decimal = Decimal(0)
    fill_ids: set[str] = field(default_factory=set)
    duplicate_fills: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    target: int | None = None  # the stream is complete at this sequence number
    complete: asyncio.Event = field(default_factory=asyncio.Event)

    def take(self, strategy_id: str, report: ExecutionReport) -> None:
        self.seqs.append(report.seq)
        self.check()
        if report.strategy_id != strategy_id:
            self.foreign += 1
        self.by_type[report.exec_type.value] = self.by_type.get(report.exec_type.value, 0) + 1
        if report.fill_id is not None:
            if report.fill_id in self.fill_ids:
                self.duplicate_fills += 1
                return
            self.fill_ids.add(report.fill_id)
            self.fills += 1
            self.filled_qty += report.last_qty

    def check(self) -> None:
        if self.target is not None and (self.seqs[-1] if self.seqs else 0) >= self.target:
            self.complete.set()


async def _collect(updates: UpdateStream, strategy_id: str, tally: Tally) -> None:
    async for report in updates:
        tally.take(strategy_id, report)


async def trade(
    strategy_id: str, orders: int, command: str, events: str, seed: int, pace: float
) -> dict[str, object]:
    rng = random.Random(seed)
    latency = HdrHistogram(1, 60_000_000, 3)  # microseconds
    tally = Tally()
    counts = {"submitted": 0, "rejected": 0, "amended": 0, "canceled": 0, "too_late": 0}
    started = time.perf_counter()
    async with ZmqOrderExecutionPort(strategy_id, command=command, events=events) as port:
        updates = port.updates()
        collector = asyncio.get_running_loop().create_task(_collect(updates, strategy_id, tally))
        ids = []
        for n in range(orders):
            instrument, reference = BOOK[n % len(BOOK)]
            side = Side.BUY if rng.random() < 0.5 else Side.SELL
            offset = Decimal(rng.randint(-3, 3)) / 100
            order = SubmitOrder(
                client_order_id=f"{strategy_id}-{n}",
                strategy_id=strategy_id,
                instrument=instrument,
                side=side,
                quantity=Decimal(rng.randint(1, 10) * 10),
                order_type=OrderType.LIMIT,
                limit_price=reference + offset,
            )
            sent = time.perf_counter()
            try:
                await port.submit_order(order)
            except (OrderRejectedError, ThrottleError):
                counts["rejected"] += 1
                continue
            latency.record_value(max(1, int((time.perf_counter() - sent) * 1e6)))
            counts["submitted"] += 1
            ids.append(order.client_order_id)
            await _maybe_change(port, rng, order, counts)
            if pace:
                await asyncio.sleep(pace)  # a strategy's own rhythm, not synchronisation
        await port.cancel_all_orders()
        # Every order is terminal now: the stream is complete once it reaches the highest
        # sequence number the venue reports for any of them.
        last = max([(await port.order_status(i)).last_seq for i in ids], default=0)
        tally.target = last
        tally.check()
        with contextlib.suppress(TimeoutError):  # a shortfall shows in the report
            await asyncio.wait_for(tally.complete.wait(), 30)
        snapshots = [await port.order_status(i) for i in ids]
        collector.cancel()
    return {
        "strategy": strategy_id,
        "orders": counts,
        "events": len(tally.seqs),
        "last_seq": last,
        "in_order": tally.seqs == list(range(1, len(tally.seqs) + 1)),
        "seqs_complete": tally.seqs == list(range(1, last + 1)),
        "foreign_events": tally.foreign,
        "fills": tally.fills,
        "duplicate_fills": tally.duplicate_fills,
        "filled_qty": str(tally.filled_qty),
        "venue_filled_qty": str(sum((s.cum_qty for s in snapshots), Decimal(0))),
        "open_at_end": sum(1 for s in snapshots if not s.status.is_terminal),
        "by_type": tally.by_type,
        "ack_us": {
            "p50": latency.get_value_at_percentile(50),
            "p99": latency.get_value_at_percentile(99),
            "max": latency.get_max_value(),
        },
        "seconds": round(time.perf_counter() - started, 3),
    }


async def _maybe_change(
    port: ZmqOrderExecutionPort, rng: random.Random, order: SubmitOrder, counts: dict[str, int]
) -> None:
    """Amend about one order in five, cancel about one in six: they may have filled already."""
    try:
        if rng.random() < 0.2:
            await port.amend_order(
                AmendOrder(
                    client_order_id=order.client_order_id,
                    strategy_id=order.strategy_id,
                    quantity=order.quantity + 10,
                )
            )
            counts["amended"] += 1
        if rng.random() < 0.17:
            cancel = CancelOrder(
                client_order_id=order.client_order_id, strategy_id=order.strategy_id
            )
            await port.cancel_order(cancel)
            counts["canceled"] += 1
    except OrderRejectedError:
        counts["too_late"] += 1  # filled (or killed) before the change arrived


@click.command()
@click.option("--strategy", required=True)
@click.option("--orders", default=200, show_default=True)
@click.option("--command", "command_endpoint", required=True)
@click.option("--events", required=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--pace", default=0.0, show_default=True, help="Seconds between orders.")
def main(
    strategy: str, orders: int, command_endpoint: str, events: str, seed: int, pace: float
) -> None:
    """Trade ORDERS orders for STRATEGY, then print what was seen as one JSON line."""
    report = asyncio.run(trade(strategy, orders, command_endpoint, events, seed, pace))
    click.echo(json.dumps(report))


if __name__ == "__main__":
    main()
