"""A market maker: a bid and an ask around a fair value, leaning against its inventory.

    python -m examples.market_maker --command tcp://127.0.0.1:5555 \\
        --events tcp://127.0.0.1:5556 --strategy mm-1 --instrument ACME --fair-value 100.00

The strategy. Every ``--requote`` seconds it wants a bid ``--spread`` ticks below the fair value
and an ask as far above it, ``--size`` each, both shifted by ``--skew`` ticks per ``--size`` of
inventory (long: it sells more readily than it buys), and no quote that could take the position
past ``--max-position``. The fair value starts at ``--fair-value`` and then follows the strategy's
own fills, the only market data a port gives. A quote that no longer matches is amended in place
(price and size); a finished one is replaced by a new order. After ``--duration`` seconds (0: until
SIGTERM or SIGINT, as ``docker stop`` sends) it cancels everything, waits for the venue to confirm,
reconciles its fills with the venue's account and prints one JSON summary line.

The API patterns (``bus.ZmqOrderExecutionPort``, asyncio):

- One ``port.updates(port_events=True)`` stream, opened before the first request, drives every
  piece of state; one task both reads it and sends requests, so the strategy needs no locks.
- Acknowledgements, reports and ``order_status`` snapshots update an order only if newer
  (``TrackedOrder.apply``): the reply to a request and the stream are separate channels.
- Typed errors. ``OrderRejectedError`` is definite and its ``reason`` decides (a configuration
  error stops the strategy; ``TOO_LATE`` means the order finished first, so ask the venue how;
  ``REQUEST_PENDING``: look again next cycle). ``ThrottleError``: nothing was done and the port has
  already retried within the timeout, so pause for ``retry_after``. ``AckTimeoutError`` (and any
  ``ConnectivityError`` with outcome UNKNOWN): the order is in doubt, and is settled with
  ``order_status`` before anything else is sent about it; a submit the venue never saw is resent
  unchanged, which the venue deduplicates. A ``ConnectivityError`` with outcome DEFINITE sent
  nothing.
- No requests while the port is not ``CONNECTED``; ``cancel_all_orders`` at start (quotes a previous
  incarnation left) and at the end.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal

import click

from bus import ZmqOrderExecutionPort
from examples.common import (
    PENDING,
    Fills,
    StopSignals,
    StrategyError,
    TrackedOrder,
    decimal_option,
    emit,
    error_counts,
    finish,
    new_run_id,
    note_rejection,
    order_ids,
    port_options,
    resolve_strategy_id,
    setup_logging,
)
from ports import (
    AmendOrder,
    CancelOrder,
    ConnectivityError,
    ErrorReason,
    OrderRejectedError,
    OrderStatus,
    OrderType,
    Outcome,
    PortError,
    PortEvent,
    PortEventKind,
    PortState,
    Side,
    SubmitOrder,
    ThrottleError,
    Update,
    UpdateStream,
)

log = logging.getLogger("market_maker")

REJECT_PAUSE = 1.0  # seconds without new requests after the venue refused a quote
NOT_SENT_PAUSE = 1.0  # ... after a request could not be sent at all
WIND_DOWN = 5.0  # seconds to wait at the end for the venue to confirm every order is done
RECONCILE_SECONDS = 5.0  # for checking fills with the venue: with WIND_DOWN, within a 15 s stop
RECONCILE_IN_FLIGHT = 32  # status queries pipelined at once
QUIET_EVENTS = frozenset({PortEventKind.ORDER_SETTLED, PortEventKind.CONNECTION_RESTORED})


@dataclass(frozen=True)
class Quoting:
    """Where the strategy wants its quotes, given the fair value and its position."""

    instrument: str
    tick: Decimal
    spread: int  # ticks from the fair value to each quote
    size: Decimal
    max_position: Decimal
    skew: int  # ticks both quotes move down per `size` of long position (up when short)

    def targets(self, fair: Decimal, position: Decimal) -> dict[Side, tuple[Decimal, Decimal]]:
        """(price, quantity) wanted on each side; quantity 0: no quote on that side."""
        lean = int(position / self.size) * self.skew
        bid = fair - (self.spread + lean) * self.tick
        ask = fair + (self.spread - lean) * self.tick
        return {
            Side.BUY: (max(bid, self.tick), self._room(self.max_position - position)),
            Side.SELL: (max(ask, self.tick), self._room(self.max_position + position)),
        }

    def _room(self, room: Decimal) -> Decimal:
        return max(Decimal(0), min(self.size, room))


class MarketMaker:
    """Keeps one quote per side working at the venue, as ``Quoting`` wants it."""

    def __init__(
        self,
        port: ZmqOrderExecutionPort,
        quoting: Quoting,
        *,
        fair_value: Decimal,
        requote_interval: float,
        run_id: str,
    ) -> None:
        self.port = port
        self.quoting = quoting
        self.fair = fair_value
        self.requote_interval = requote_interval
        self.ids = order_ids(run_id, "q")
        self.orders: dict[str, TrackedOrder] = {}  # every order of this run, by client order id
        self.quotes: dict[Side, TrackedOrder] = {}  # the current quote of each side
        self.fills = Fills()
        self.counts: Counter[str] = Counter()
        self.rejections: Counter[str] = Counter()
        self.paused_until = 0.0
        self.stream_seq = 0  # the last report read from the stream
        self.loop = asyncio.get_running_loop()

    # --- the main loop ------------------------------------------------------------------------

    async def run(self, stop: StopSignals, duration: float) -> str:
        """Quote until ``duration`` seconds have passed (0: for ever) or a stop signal came,
        then wind down. Returns why it stopped."""
        updates = self.port.updates(port_events=True)  # before the first request
        async with updates:
            try:
                return await self._quote(updates, stop, duration)
            finally:
                await self._wind_down(updates)

    async def _quote(
        self, updates: UpdateStream[Update], stop: StopSignals, duration: float
    ) -> str:
        cleared = await self.port.cancel_all_orders(self.quoting.instrument)
        if cleared.client_order_ids:
            log.warning("canceled %d orders left by an earlier run", len(cleared.client_order_ids))
        deadline = self.loop.time() + duration if duration > 0 else None
        next_quote = self.loop.time()
        while stop.received is None:
            now = self.loop.time()
            if deadline is not None and now >= deadline:
                return "duration"
            if now >= next_quote:
                await self._requote()
                next_quote = now + self.requote_interval
                continue
            try:
                update = await updates.get(timeout=next_quote - now)
            except TimeoutError:  # the stream's own, plain TimeoutError: time to requote
                continue
            self._on_update(update)
        return stop.received

    def _on_update(self, update: Update) -> None:
        if isinstance(update, PortEvent):
            self._on_port_event(update)
            return
        self.stream_seq = update.seq
        order = self.orders.get(update.client_order_id)
        if order is None:  # an order of an earlier run (canceled at start)
            return
        order.apply(update)
        if self.fills.take(update):
            assert update.last_px is not None
            self.fair = update.last_px
            log.info(
                "%s %s @ %s; position %s",
                update.side.value,
                update.last_qty,
                update.last_px,
                self.fills.position,
            )

    def _on_port_event(self, event: PortEvent) -> None:
        self.counts[event.kind.value] += 1
        level = logging.INFO if event.kind in QUIET_EVENTS else logging.WARNING
        log.log(
            level, "port: %s %s %s", event.kind.value, event.client_order_id or "", event.detail
        )
        if event.kind is PortEventKind.VENUE_RESET:  # the stream starts again at seq 1
            self.stream_seq = 0
            for order in self.orders.values():
                order.venue_reset()

    # --- quoting ------------------------------------------------------------------------------

    async def _requote(self) -> None:
        if self.port.state is not PortState.CONNECTED or self.loop.time() < self.paused_until:
            return  # the port resends what is in flight; nothing new until the venue is back
        targets = self.quoting.targets(self.fair, self.fills.position)
        for side, (price, quantity) in targets.items():
            await self._work(side, price, quantity)

    async def _work(self, side: Side, price: Decimal, quantity: Decimal) -> None:
        """One step towards the wanted quote on one side."""
        quote = self.quotes.get(side)
        if quote is not None and quote.in_doubt:
            await self._settle(quote, resend=True)
            return  # act on what the venue holds next cycle
        if quote is not None and quote.done:
            del self.quotes[side]
            quote = None
        if quote is None:
            if quantity > 0:
                await self._place(side, price, quantity)
        elif quote.status in PENDING:
            return  # a request about it is still being worked on
        elif quantity == 0:
            await self._cancel(quote)
        elif quote.limit_price != price or quote.leaves_qty != quantity:
            self.counts["amends"] += 1
            amend = AmendOrder(
                client_order_id=quote.client_order_id,
                strategy_id=self.port.strategy_id,
                quantity=quote.cum_qty + quantity,  # the new total, what has filled included
                limit_price=price,
            )
            await self._send(quote, amend)

    async def _place(self, side: Side, price: Decimal, quantity: Decimal) -> None:
        order = SubmitOrder(
            client_order_id=next(self.ids),
            strategy_id=self.port.strategy_id,
            instrument=self.quoting.instrument,
            side=side,
            quantity=quantity,
            order_type=OrderType.LIMIT,
            limit_price=price,
        )
        quote = self.quotes[side] = self.orders[order.client_order_id] = TrackedOrder(order)
        await self._send(quote, order)

    async def _cancel(self, order: TrackedOrder) -> None:
        self.counts["cancels"] += 1
        cancel = CancelOrder(
            client_order_id=order.client_order_id, strategy_id=order.request.strategy_id
        )
        await self._send(order, cancel)

    # --- requests and their errors ------------------------------------------------------------

    async def _send(
        self, order: TrackedOrder, request: SubmitOrder | AmendOrder | CancelOrder
    ) -> None:
        """Send one request about ``order`` and act on its outcome, whatever it is."""
        try:
            if isinstance(request, SubmitOrder):
                ack = await self.port.submit_order(request)
            elif isinstance(request, AmendOrder):
                ack = await self.port.amend_order(request)
            else:
                ack = await self.port.cancel_order(request)
        except OrderRejectedError as error:  # definite: the venue did nothing
            await self._rejected(order, request, error)
        except ThrottleError as error:  # definite: nothing done; the port retried in the timeout
            self.counts["throttled"] += 1
            self.paused_until = self.loop.time() + error.retry_after
            log.warning("throttled: pausing %.3f s", error.retry_after)
            if isinstance(request, SubmitOrder):
                self._forget(order)
        except ConnectivityError as error:  # AckTimeoutError included
            if error.outcome is Outcome.DEFINITE:  # nothing could be sent
                self.counts["not_sent"] += 1
                self.paused_until = self.loop.time() + NOT_SENT_PAUSE
                if isinstance(request, SubmitOrder):
                    self._forget(order)
            else:  # it may or may not have been executed: find out before acting again
                self.counts["in_doubt"] += 1
                order.in_doubt = True
                log.warning(
                    "%s of %s in doubt: %s", type(request).__name__, order.client_order_id, error
                )
        else:
            order.apply(ack.order)

    async def _rejected(
        self,
        order: TrackedOrder,
        request: SubmitOrder | AmendOrder | CancelOrder,
        error: OrderRejectedError,
    ) -> None:
        note_rejection(self.rejections, request, error)
        if error.reason is ErrorReason.TOO_LATE:  # it filled or was canceled first: how?
            await self._settle(order, resend=False)
        elif error.reason is ErrorReason.UNKNOWN_ORDER:  # gone from the venue (a reset)
            order.lose()
        elif isinstance(request, SubmitOrder):  # VENUE_REJECTED, STALE_ORDER: the order is dead
            order.status = OrderStatus.REJECTED
            self.paused_until = self.loop.time() + REJECT_PAUSE
            log.warning("quote %s rejected: %s", order.client_order_id, error)
        # REQUEST_PENDING: another change of the order is in flight; look again next cycle.

    async def _settle(self, order: TrackedOrder, *, resend: bool) -> None:
        """Ask the venue what it holds for ``order``; ``resend``: send again, unchanged, a submit
        the venue has not seen (the venue deduplicates it should the first copy still come)."""
        try:
            snapshot = await self.port.order_status(order.client_order_id)
        except OrderRejectedError as error:
            if error.reason is not ErrorReason.UNKNOWN_ORDER:
                raise
            if order.seen:  # it existed and is gone: lost with a venue reset
                order.lose()
            elif resend:
                order.in_doubt = False
                await self._send(order, order.request)
            else:  # never placed
                self._forget(order)
            return
        except ConnectivityError:
            return  # no answer to the query either: ask again next cycle
        order.apply(snapshot)
        if order.in_doubt and snapshot.status not in PENDING:
            order.in_doubt = False
            self.counts["settled"] += 1
            log.info("settled %s: %s", order.client_order_id, snapshot.status.value)

    def _forget(self, order: TrackedOrder) -> None:
        """A submit that definitely never reached the venue: as if never sent."""
        self.orders.pop(order.client_order_id, None)
        if self.quotes.get(order.side) is order:
            del self.quotes[order.side]

    # --- the end ------------------------------------------------------------------------------

    def _caught_up(self) -> bool:
        """Every order is done, and the stream has delivered every report the venue told us of
        (acks and snapshots carry the ``seq`` of the order's latest report): no fill to come."""
        newest = max((o.last_seq for o in self.orders.values()), default=0)
        return self.stream_seq >= newest and all(o.done for o in self.orders.values())

    async def _wind_down(self, updates: UpdateStream[Update]) -> None:
        """Pull every quote, then read the stream until the venue has confirmed each order done."""
        try:
            await self.port.cancel_all_orders(self.quoting.instrument)
        except PortError as error:  # throttled, or no answer: the loop below cancels one by one
            log.error("cancel_all failed: %s", error)
        deadline = self.loop.time() + WIND_DOWN
        while not self._caught_up() and (remaining := deadline - self.loop.time()) > 0:
            try:
                self._on_update(await updates.get(timeout=min(remaining, 0.25)))
                continue
            except TimeoutError:  # nothing new: ask the venue about what is still live
                pass
            except EOFError:  # the port closed
                break
            for order in [o for o in self.orders.values() if not o.done]:
                await self._settle(order, resend=False)
                if not (order.done or order.in_doubt or order.status in PENDING):
                    await self._cancel(order)  # one that cancel_all did not get

    async def reconcile(self, deadline: float = RECONCILE_SECONDS) -> dict[str, object]:
        """The venue's account of this run's orders, against what the stream said. The status
        queries are pipelined and bounded in time: a long run must still stop within its grace
        period (``reconciled`` is then None: not checked, rather than a shutdown cut short)."""
        venue = {Side.BUY: Decimal(0), Side.SELL: Decimal(0)}
        window = asyncio.Semaphore(RECONCILE_IN_FLIGHT)

        async def query(client_order_id: str) -> None:
            async with window:
                try:
                    snapshot = await self.port.order_status(client_order_id)
                except OrderRejectedError:  # UNKNOWN_ORDER: never placed, or lost in a reset
                    return
            venue[snapshot.side] += snapshot.cum_qty

        try:
            async with asyncio.timeout(deadline):
                await asyncio.gather(*(query(coid) for coid in list(self.orders)))
        except TimeoutError:
            still_open = await self.port.open_orders(self.quoting.instrument)
            return {"reconciled": None, "open_at_end": len(still_open)}
        still_open = await self.port.open_orders(self.quoting.instrument)
        return {
            "venue_bought": str(venue[Side.BUY]),
            "venue_sold": str(venue[Side.SELL]),
            "reconciled": (venue[Side.BUY], venue[Side.SELL])
            == (self.fills.bought, self.fills.sold),
            "open_at_end": len(still_open),
        }

    def summary(self) -> dict[str, object]:
        return {
            "quotes": len(self.orders),
            "amends": self.counts["amends"],
            "cancels": self.counts["cancels"],
            **self.fills.summary(),
            "fair_value": str(self.fair),
            **error_counts(self.rejections, self.counts),
        }


async def trade(
    strategy_id: str,
    *,
    command: str,
    events: str,
    ack_timeout: float,
    connect_timeout: float,
    run_id: str,
    quoting: Quoting,
    fair_value: Decimal,
    requote_interval: float,
    duration: float,
) -> dict[str, object]:
    """Run the market maker against the venue; the summary says how it went."""
    started = time.monotonic()
    summary: dict[str, object] = {
        "strategy": strategy_id,
        "run_id": run_id,
        "instrument": quoting.instrument,
    }
    stop = StopSignals()
    error: str | None = None
    port = ZmqOrderExecutionPort(
        strategy_id,
        command=command,
        events=events,
        ack_timeout=ack_timeout,
        connect_timeout=connect_timeout,
    )
    try:
        async with port:
            maker = MarketMaker(
                port,
                quoting,
                fair_value=fair_value,
                requote_interval=requote_interval,
                run_id=run_id,
            )
            try:
                summary["stopped_by"] = await maker.run(stop, duration)
            except (StrategyError, PortError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            summary.update(maker.summary())
            summary.update(await maker.reconcile())
    except PortError as exc:  # could not connect, or the venue vanished at the end
        error = error or f"{type(exc).__name__}: {exc}"
    return finish(summary, error, started)


@click.command()
@port_options
@click.option("--instrument", default="ACME", show_default=True)
@decimal_option("--fair-value", required=True, help="Starting fair value.")
@decimal_option(
    "--tick",
    default="0.01",
    show_default=True,
    help="The instrument's tick size.",
)
@click.option("--spread", default=2, show_default=True, help="Ticks from fair value per side.")
@decimal_option(
    "--size",
    default="10",
    show_default=True,
    help="Quantity per quote (whole lots).",
)
@decimal_option("--max-position", default="50", show_default=True)
@click.option("--skew", default=1, show_default=True, help="Ticks of lean per --size held.")
@click.option("--requote", default=0.25, show_default=True, help="Seconds between requotes.")
@click.option(
    "--duration", default=0.0, show_default=True, help="Seconds to run; 0: until SIGTERM or SIGINT."
)
def main(
    command_endpoint: str,
    events: str,
    strategy_template: str,
    ack_timeout: float,
    connect_timeout: float,
    run_id: str | None,
    log_level: str,
    instrument: str,
    fair_value: Decimal,
    tick: Decimal,
    spread: int,
    size: Decimal,
    max_position: Decimal,
    skew: int,
    requote: float,
    duration: float,
) -> None:
    """Quote both sides of INSTRUMENT; print a JSON summary line at the end (exit 1 if not ok)."""
    if tick <= 0 or size <= 0 or max_position < 0 or spread < 0 or requote <= 0:
        raise click.BadParameter(
            "tick, size and requote must be positive; spread, max position not negative"
        )
    setup_logging(log_level)
    summary = asyncio.run(
        trade(
            resolve_strategy_id(strategy_template),
            command=command_endpoint,
            events=events,
            ack_timeout=ack_timeout,
            connect_timeout=connect_timeout,
            run_id=run_id or new_run_id(),
            quoting=Quoting(instrument, tick, spread, size, max_position, skew),
            fair_value=fair_value,
            requote_interval=requote,
            duration=duration,
        )
    )
    emit(summary)
    sys.exit(0 if summary["ok"] else 1)


if __name__ == "__main__":
    main()
