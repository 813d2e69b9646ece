"""The main job: a small market-making strategy trading against the in-process mock venue.

Run with ``python3 dev.py demo`` (or ``orderbus-demo`` in the virtual environment). Logical time
runs on a ManualClock, so a seed gives the same session every time.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal

import click

from mock_venue.config import InstrumentConfig, PricePathFill, SlicedFill, VenueConfig
from mock_venue.faults import Throttle
from mock_venue.port import MockVenue
from ports import (
    CancelOrder,
    ExecType,
    ExecutionReport,
    OrderExecutionPort,
    OrderRejectedError,
    OrderType,
    Side,
    SubmitOrder,
    ThrottleError,
    UpdateStream,
)

DEMO_VENUE = VenueConfig(
    instruments=(
        InstrumentConfig(
            symbol="ACME",
            reference_price=Decimal("100.00"),
            fill_model=PricePathFill(step_interval=1.0, max_ticks_per_step=4),
        ),
        InstrumentConfig(
            symbol="GLOBEX",
            reference_price=Decimal("25.00"),
            fill_model=SlicedFill(slices=3, interval=2.0),
        ),
    )
)


@dataclass
class Book:
    """What the strategy learned from its stream."""

    events: Counter[ExecType] = field(default_factory=Counter)
    position: Counter[str] = field(default_factory=Counter)
    fills: int = 0
    volume: Decimal = Decimal(0)
    seen_fill_ids: set[str] = field(default_factory=set)

    def apply(self, report: ExecutionReport) -> None:
        self.events[report.exec_type] += 1
        if report.fill_id is None or report.fill_id in self.seen_fill_ids:
            return
        self.seen_fill_ids.add(report.fill_id)
        self.fills += 1
        signed = report.last_qty if report.side is Side.BUY else -report.last_qty
        self.position[report.instrument] += int(signed)
        self.volume += report.last_qty * (report.last_px or 0)


def describe(report: ExecutionReport) -> str:
    detail = f"{report.side.value:4} {report.quantity:>4} {report.instrument:6}"
    if report.limit_price is not None:
        detail += f" @ {report.limit_price}"
    if report.exec_type is ExecType.TRADE:
        detail += f"  filled {report.last_qty} @ {report.last_px} ({report.fill_id})"
    reason = report.reject_reason or report.cancel_reason
    if reason is not None:
        detail += f"  [{reason.value}]"
    return (
        f"{report.venue_time:%H:%M:%S}  #{report.seq:<3} {report.exec_type.value:15} "
        f"{report.client_order_id:8} {detail}  -> {report.status.value}"
    )


async def drain(updates: UpdateStream, book: Book, quiet: bool) -> None:
    while True:
        try:
            report = await updates.get(timeout=0)
        except TimeoutError:
            return
        book.apply(report)
        if not quiet:
            click.echo(describe(report))


async def trade(seconds: int, seed: int, quiet: bool) -> Book:
    venue = MockVenue(DEMO_VENUE, seed=seed)
    book = Book()
    ids = (f"mm-{n}" for n in itertools.count(1))
    async with venue.port("market-maker") as port:
        updates = port.updates()
        # Half-way through, the venue starts throttling: the strategy backs off and carries on.
        for second in range(seconds):
            if second == seconds // 2:
                await venue.inject(Throttle(max_requests=2, interval=1.0))
                click.echo("--- venue starts throttling: at most 2 requests a second ---")
            await quote(port, venue, ids, second)
            await venue.advance(1)
            await drain(updates, book, quiet)
        while True:
            try:
                canceled = await port.cancel_all()
                break
            except ThrottleError as error:  # logical time: wait by advancing the venue's clock
                await venue.advance(error.retry_after)
        await drain(updates, book, quiet)
        click.echo(f"--- end of session: cancel-all canceled {len(canceled.client_order_ids)}")
    await venue.aclose()
    return book


async def quote(
    port: OrderExecutionPort, venue: MockVenue, ids: Iterator[str], second: int
) -> None:
    """Quote both sides of ACME around its reference price, pull the oldest quotes, and every
    fifth second buy some GLOBEX (which fills in slices). Throttled: back off until next second."""
    mid = venue.engine.reference_price("ACME")
    try:
        for side, offset in ((Side.BUY, Decimal("-0.05")), (Side.SELL, Decimal("0.05"))):
            await port.submit(limit(port, next(ids), "ACME", side, Decimal(10), mid + offset))
        if second % 5 == 0:
            await port.submit(limit(port, next(ids), "GLOBEX", Side.BUY, Decimal(9), Decimal(25)))
        for stale in (await port.open_orders("ACME"))[:-6]:  # at most six quotes in the book
            cancel = CancelOrder(
                client_order_id=stale.client_order_id, strategy_id=port.strategy_id
            )
            try:
                await port.cancel(cancel)
            except OrderRejectedError as error:  # it filled meanwhile: fine
                click.echo(f"           cancel {stale.client_order_id}: {error.reason.value}")
    except ThrottleError as error:
        click.echo(f"           throttled: backing off for {error.retry_after:.2f} s")


def limit(
    port: OrderExecutionPort,
    client_order_id: str,
    instrument: str,
    side: Side,
    quantity: Decimal,
    price: Decimal,
) -> SubmitOrder:
    return SubmitOrder(
        client_order_id=client_order_id,
        strategy_id=port.strategy_id,
        instrument=instrument,
        side=side,
        quantity=quantity,
        order_type=OrderType.LIMIT,
        limit_price=price,
    )


@click.command()
@click.option("--seconds", default=20, show_default=True, help="Logical seconds to trade.")
@click.option("--seed", default=1, show_default=True, help="Seed of the venue's price path.")
@click.option("--quiet", is_flag=True, help="Only the summary.")
def main(seconds: int, seed: int, quiet: bool) -> None:
    """A market maker quoting against the in-process mock venue, then a summary."""
    book = asyncio.run(trade(seconds, seed, quiet))
    click.echo("")
    click.echo("summary")
    for exec_type, count in sorted(book.events.items()):
        click.echo(f"  {exec_type.value:16} {count}")
    click.echo(f"  fills            {book.fills} (volume {book.volume:.2f})")
    for instrument, position in sorted(book.position.items()):
        click.echo(f"  position {instrument:7} {position:+d}")


if __name__ == "__main__":
    main()
