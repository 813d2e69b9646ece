"""A TWAP execution strategy: a parent order worked in equal time slices by one child order.

    python -m examples.twap --command tcp://127.0.0.1:5555 --events tcp://127.0.0.1:5556 \\
        --strategy twap-1 --instrument GLOBEX --side buy --quantity 1000 \\
        --arrival-price 25.00 --limit 25.10 --slices 10 --interval 3

The strategy. The parent (``--side``, ``--quantity``, never worse than ``--limit``) is due in
``--slices`` equal parts, one per ``--interval`` seconds. At each slice boundary what is due so far
and not filled yet goes to the venue as one child order: a new child, ``--passive`` ticks inside
the last fill price (the ``--arrival-price`` at first) if none is working; otherwise the working
child is replaced (amended: FIX cancel/replace) to the new size, ``--step`` ticks more aggressive
since it is behind. Never more than one child, never ahead of the schedule. When the schedule
ends, the rest is priced at ``--limit`` and given ``--grace`` seconds; then what is left is
canceled, the fills are reconciled with the venue's account and one JSON summary line is printed.
SIGTERM or SIGINT ends it the same way, early.

The API patterns (``bus.BlockingOrderExecutionPort``, no asyncio):

- A blocking event loop: ``updates.get(timeout=...)`` until the next thing is due. The port has no
  thread of its own; it resends, keeps the connection alive and settles orders in doubt while a
  call blocks, so the strategy always blocks in a port call, never in ``time.sleep``.
- Sizes come from the venue's ``cum_qty``, never from counting our requests: a replace sets the
  child's new total to what it has filled plus what is due, so a fill racing the replace cannot
  make the parent overfill.
- Typed errors. A replace refused ``TOO_LATE`` means the child finished first: ``order_status``
  says how much it filled, then a new child takes the rest. ``ThrottleError``: nothing done, try
  again after ``retry_after``. ``AckTimeoutError`` / ``ConnectivityError`` with outcome UNKNOWN:
  the child is in doubt and is settled with ``order_status`` before anything else is sent (a
  submit the venue has not seen is resent unchanged: the venue deduplicates it). A configuration
  error (``INVALID_REQUEST``, ``UNKNOWN_INSTRUMENT``, ...) stops the strategy.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal

import click

from bus import BlockingOrderExecutionPort, BlockingUpdateStream
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
)

log = logging.getLogger("twap")

RETRY = 0.25  # seconds before looking again at a child whose state is not settled yet
NOT_SENT_PAUSE = 1.0  # seconds before trying again when nothing could be sent
POLL = 0.25  # longest wait in one updates.get(): how soon a stop signal is noticed
WIND_DOWN = 5.0  # seconds to wait at the end for the venue to confirm the last cancel


@dataclass(frozen=True)
class Schedule:
    """How much of the parent is due by the end of each slice."""

    quantity: Decimal
    slices: int
    interval: float
    lot: Decimal

    def due(self, slice_index: int) -> Decimal:
        """Cumulative quantity due once slice ``slice_index`` (from 0) has started."""
        if slice_index >= self.slices - 1:
            return self.quantity
        return self.quantity * (slice_index + 1) / self.slices // self.lot * self.lot


@dataclass(frozen=True)
class Pricing:
    """Child prices: passive next to the last fill, one step bolder per replace, capped."""

    side: Side
    tick: Decimal
    limit: Decimal
    passive: int
    step: int

    def _cap(self, price: Decimal) -> Decimal:
        capped = min(price, self.limit) if self.side is Side.BUY else max(price, self.limit)
        return max(capped, self.tick)

    def _ticks(self, n: int) -> Decimal:
        return n * self.tick if self.side is Side.BUY else -n * self.tick

    def first(self, anchor: Decimal) -> Decimal:
        return self._cap(anchor - self._ticks(self.passive))

    def bolder(self, price: Decimal) -> Decimal:
        return self._cap(price + self._ticks(self.step))


class Twap:
    """Works the parent through one child order at a time, as ``Schedule`` says."""

    def __init__(
        self,
        port: BlockingOrderExecutionPort,
        instrument: str,
        schedule: Schedule,
        pricing: Pricing,
        *,
        arrival_price: Decimal,
        grace: float,
        run_id: str,
        stop: StopSignals,
    ) -> None:
        self.port = port
        self.instrument = instrument
        self.schedule = schedule
        self.pricing = pricing
        self.anchor = arrival_price
        self.grace = grace
        self.ids = order_ids(run_id, "c")
        self.children: dict[str, TrackedOrder] = {}
        self.child: TrackedOrder | None = None  # the working one
        self.due = Decimal(0)  # what the schedule wants filled by now
        self.final = False  # past the schedule: price at the limit
        self.retry_at: float | None = None
        self.fills = Fills()
        self.counts: Counter[str] = Counter()
        self.rejections: Counter[str] = Counter()
        self.stream_seq = 0  # the last report read from the stream
        self.stop = stop

    @property
    def filled(self) -> Decimal:
        """What the venue has filled of the parent, as far as we know."""
        return sum((c.cum_qty for c in self.children.values()), Decimal(0))

    # --- the main loop ------------------------------------------------------------------------

    def run(self) -> str:
        """Work the schedule to its end; returns why it ended."""
        updates = self.port.updates(port_events=True)  # before the first request
        try:
            return self._work_schedule(updates)
        finally:
            self._wind_down(updates)
            updates.close()

    def _work_schedule(self, updates: BlockingUpdateStream[Update]) -> str:
        cleared = self.port.cancel_all_orders(self.instrument)  # a run starts with no child working
        if cleared.client_order_ids:
            log.warning("canceled %d orders left by an earlier run", len(cleared.client_order_ids))
        start = time.monotonic()
        # Slice boundaries, then the end of the schedule (the rest at the limit), then time up.
        steps = [start + k * self.schedule.interval for k in range(self.schedule.slices + 1)]
        give_up = steps[-1] + self.grace
        step = 0
        while True:
            now = time.monotonic()
            if self.stop.received is not None:
                return self.stop.received
            if self.filled >= self.schedule.quantity:
                return "filled"
            if now >= give_up:
                return "time_up"
            if step < len(steps) and now >= steps[step]:
                self.final = step == self.schedule.slices
                self.due = self.schedule.due(step)
                step += 1
                self.retry_at = None
                self._work()
                continue
            if self.retry_at is not None and now >= self.retry_at:
                self.retry_at = None
                self._work()
                continue
            wake = min(steps[step] if step < len(steps) else give_up, self.retry_at or give_up)
            try:
                update = updates.get(timeout=max(0.0, min(wake - now, POLL)))
            except TimeoutError:
                continue
            self._on_update(update)

    def _on_update(self, update: Update) -> None:
        if isinstance(update, PortEvent):
            self.counts[update.kind.value] += 1
            log.warning(
                "port: %s %s %s", update.kind.value, update.client_order_id or "", update.detail
            )
            if update.kind is PortEventKind.VENUE_RESET:  # the stream starts again at seq 1
                self.stream_seq = 0
                for order in self.children.values():
                    order.venue_reset()
            return
        self.stream_seq = update.seq
        child = self.children.get(update.client_order_id)
        if child is None:  # another run's order
            return
        child.apply(update)
        if self.fills.take(update):
            assert update.last_px is not None
            self.anchor = update.last_px
            log.info(
                "filled %s @ %s: %s of %s",
                update.last_qty,
                update.last_px,
                self.filled,
                self.schedule.quantity,
            )

    # --- working the child --------------------------------------------------------------------

    def _work(self) -> None:
        """Bring the child in line with what is due: a new child, a replace, or nothing."""
        if self.port.state is not PortState.CONNECTED:
            self.retry_at = time.monotonic() + RETRY
            return
        child = self.child
        if child is not None and child.in_doubt:
            self._settle(child, resend=True)
            if child.in_doubt:
                self.retry_at = time.monotonic() + RETRY
                return
        if child is not None and child.done:
            self.child = child = None
        if child is not None and child.status in PENDING:
            self.retry_at = time.monotonic() + RETRY  # a request about it is in flight
            return
        need = self.due - self.filled
        if need <= 0:
            return  # on schedule: the working child (if any) has exactly what is due
        if child is None:
            price = self.pricing.limit if self.final else self.pricing.first(self.anchor)
            self._submit(need, price)
            return
        assert child.limit_price is not None
        price = self.pricing.limit if self.final else self.pricing.bolder(child.limit_price)
        if price == child.limit_price and child.leaves_qty == need:
            return
        self.counts["replaces"] += 1
        log.info("replace %s: %s to go @ %s", child.client_order_id, need, price)
        replace = AmendOrder(
            client_order_id=child.client_order_id,
            strategy_id=self.port.strategy_id,
            quantity=child.cum_qty + need,  # the new total: what it filled plus what is due
            limit_price=price,
        )
        self._send(child, replace)

    def _submit(self, quantity: Decimal, price: Decimal) -> None:
        order = SubmitOrder(
            client_order_id=next(self.ids),
            strategy_id=self.port.strategy_id,
            instrument=self.instrument,
            side=self.pricing.side,
            quantity=quantity,
            order_type=OrderType.LIMIT,
            limit_price=price,
        )
        self.child = self.children[order.client_order_id] = TrackedOrder(order)
        log.info("child %s: %s %s @ %s", order.client_order_id, order.side.value, quantity, price)
        self._send(self.child, order)

    def _send(self, child: TrackedOrder, request: SubmitOrder | AmendOrder | CancelOrder) -> None:
        """Send one request about ``child`` and act on its outcome, whatever it is."""
        try:
            if isinstance(request, SubmitOrder):
                ack = self.port.submit_order(request)
            elif isinstance(request, AmendOrder):
                ack = self.port.amend_order(request)
            else:
                ack = self.port.cancel_order(request)
        except OrderRejectedError as error:  # definite: the venue did nothing
            self._rejected(child, request, error)
        except ThrottleError as error:  # definite: nothing done; the port retried in the timeout
            self.counts["throttled"] += 1
            self.retry_at = time.monotonic() + error.retry_after
            if isinstance(request, SubmitOrder):
                self._forget(child)
        except ConnectivityError as error:  # AckTimeoutError included
            if error.outcome is Outcome.DEFINITE:  # nothing could be sent
                self.counts["not_sent"] += 1
                self.retry_at = time.monotonic() + NOT_SENT_PAUSE
                if isinstance(request, SubmitOrder):
                    self._forget(child)
            else:  # it may or may not have been executed: settle it first, right away
                self.counts["in_doubt"] += 1
                child.in_doubt = True
                self.retry_at = time.monotonic()
                log.warning(
                    "%s of %s in doubt: %s", type(request).__name__, child.client_order_id, error
                )
        else:
            child.apply(ack.order)

    def _rejected(
        self,
        child: TrackedOrder,
        request: SubmitOrder | AmendOrder | CancelOrder,
        error: OrderRejectedError,
    ) -> None:
        note_rejection(self.rejections, request, error)
        if error.reason is ErrorReason.TOO_LATE:
            # The child finished (filled, most likely) before the request arrived: learn its
            # final fill from the venue, then work again, which places a new child for the rest.
            self._settle(child, resend=False)
            if child.done and not isinstance(request, CancelOrder):
                self._work()
        elif error.reason is ErrorReason.UNKNOWN_ORDER:  # lost in a venue reset
            child.lose()
            self.retry_at = time.monotonic()
        else:  # REQUEST_PENDING; a rejected submit (VENUE_REJECTED, STALE_ORDER): next step
            if isinstance(request, SubmitOrder):
                child.status = OrderStatus.REJECTED
            self.retry_at = time.monotonic() + RETRY
            log.warning(
                "%s of %s refused: %s", type(request).__name__, child.client_order_id, error
            )

    def _settle(self, child: TrackedOrder, *, resend: bool) -> None:
        """Ask the venue what it holds for ``child``; ``resend``: send again, unchanged, a submit
        the venue has not seen (should the first copy still come, the venue deduplicates it)."""
        try:
            snapshot = self.port.order_status(child.client_order_id)
        except OrderRejectedError as error:
            if error.reason is not ErrorReason.UNKNOWN_ORDER:
                raise
            if child.seen:  # it existed and is gone: lost with a venue reset
                child.lose()
            elif resend:
                child.in_doubt = False
                self._send(child, child.request)
            else:  # never placed
                self._forget(child)
            return
        except ConnectivityError:
            return  # no answer to the query either: ask again later
        child.apply(snapshot)
        if child.in_doubt and snapshot.status not in PENDING:
            child.in_doubt = False
            self.counts["settled"] += 1
            log.info("settled %s: %s", child.client_order_id, snapshot.status.value)

    def _forget(self, child: TrackedOrder) -> None:
        """A submit that definitely never reached the venue: as if never sent."""
        self.children.pop(child.client_order_id, None)
        if self.child is child:
            self.child = None

    # --- the end ------------------------------------------------------------------------------

    def _caught_up(self) -> bool:
        """Every child is done, and the stream has delivered every report the venue told us of
        (acks and snapshots carry the ``seq`` of the order's latest report): no fill to come."""
        newest = max((c.last_seq for c in self.children.values()), default=0)
        return self.stream_seq >= newest and all(c.done for c in self.children.values())

    def _wind_down(self, updates: BlockingUpdateStream[Update]) -> None:
        """Cancel what is left of the child, then read the stream until the venue has confirmed
        every child done."""
        deadline = time.monotonic() + WIND_DOWN
        while not self._caught_up() and (remaining := deadline - time.monotonic()) > 0:
            for child in [c for c in self.children.values() if not c.done]:
                if child.in_doubt or child.status in PENDING:
                    self._settle(child, resend=False)
                else:
                    self.counts["cancels"] += 1
                    cancel = CancelOrder(
                        client_order_id=child.client_order_id, strategy_id=self.port.strategy_id
                    )
                    self._send(child, cancel)  # TOO_LATE: it filled meanwhile, settled
            with contextlib.suppress(TimeoutError, EOFError):  # nothing new, or the port closed
                self._on_update(updates.get(timeout=min(remaining, POLL)))
            if self.port.state is PortState.CLOSED:
                break

    def reconcile(self) -> dict[str, object]:
        """The venue's account of this run's children, against what the stream said."""
        venue_filled = Decimal(0)
        for child in self.children.values():
            try:
                venue_filled += self.port.order_status(child.client_order_id).cum_qty
            except OrderRejectedError:  # UNKNOWN_ORDER: never placed, or lost in a reset
                continue
        stream_filled = self.fills.bought + self.fills.sold
        still_open = self.port.open_orders(self.instrument)
        return {
            "venue_filled": str(venue_filled),
            "reconciled": venue_filled == stream_filled,
            "open_at_end": len(still_open),
        }

    def summary(self) -> dict[str, object]:
        filled = self.fills.bought + self.fills.sold
        notional = self.fills.paid + self.fills.received
        return {
            "side": self.pricing.side.value,
            "quantity": str(self.schedule.quantity),
            "filled": str(filled),
            "shortfall": str(self.schedule.quantity - filled),
            "completed": filled == self.schedule.quantity,
            "avg_px": str(round(notional / filled, 6)) if filled else None,
            "children": len(self.children),
            "replaces": self.counts["replaces"],
            "cancels": self.counts["cancels"],
            "fills": self.fills.count,
            **error_counts(self.rejections, self.counts),
        }


def trade(
    strategy_id: str,
    *,
    command: str,
    events: str,
    ack_timeout: float,
    connect_timeout: float,
    run_id: str,
    instrument: str,
    schedule: Schedule,
    pricing: Pricing,
    arrival_price: Decimal,
    grace: float,
) -> dict[str, object]:
    """Run the TWAP against the venue; the summary says how it went."""
    started = time.monotonic()
    summary: dict[str, object] = {
        "strategy": strategy_id,
        "run_id": run_id,
        "instrument": instrument,
    }
    stop = StopSignals()
    error: str | None = None
    port = BlockingOrderExecutionPort(
        strategy_id,
        command=command,
        events=events,
        ack_timeout=ack_timeout,
        connect_timeout=connect_timeout,
    )
    try:
        with port:
            twap = Twap(
                port,
                instrument,
                schedule,
                pricing,
                arrival_price=arrival_price,
                grace=grace,
                run_id=run_id,
                stop=stop,
            )
            try:
                summary["stopped_by"] = twap.run()
            except (StrategyError, PortError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            summary.update(twap.summary())
            summary.update(twap.reconcile())
    except PortError as exc:  # could not connect, or the venue vanished at the end
        error = error or f"{type(exc).__name__}: {exc}"
    return finish(summary, error, started)


@click.command()
@port_options
@click.option("--instrument", required=True)
@click.option("--side", type=click.Choice([s.value for s in Side]), required=True)
@decimal_option("--quantity", required=True, help="The parent's quantity.")
@decimal_option(
    "--limit",
    required=True,
    help="The parent's limit: no child is priced worse.",
)
@decimal_option(
    "--arrival-price",
    required=True,
    help="The price when the parent arrived: where the first child is priced from.",
)
@click.option("--slices", default=10, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--interval",
    default=3.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds per slice.",
)
@click.option(
    "--grace",
    default=5.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds after the schedule for the rest, priced at --limit.",
)
@decimal_option(
    "--tick",
    default="0.01",
    show_default=True,
    help="The instrument's tick size.",
)
@decimal_option("--lot", default="1", show_default=True, help="The instrument's lot size.")
@click.option(
    "--passive",
    default=1,
    show_default=True,
    help="Ticks inside the last fill price for a new child.",
)
@click.option(
    "--step",
    default=1,
    show_default=True,
    help="Ticks bolder per replace of a child that is behind.",
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
    side: str,
    quantity: Decimal,
    limit: Decimal,
    arrival_price: Decimal,
    slices: int,
    interval: float,
    grace: float,
    tick: Decimal,
    lot: Decimal,
    passive: int,
    step: int,
) -> None:
    """Work a parent order over SLICES x INTERVAL seconds; print a JSON summary line at the end
    (exit 1 if not ok)."""
    if tick <= 0 or lot <= 0 or quantity <= 0 or quantity % lot:
        raise click.BadParameter("tick, lot and quantity must be positive, quantity whole lots")
    setup_logging(log_level)
    summary = trade(
        resolve_strategy_id(strategy_template),
        command=command_endpoint,
        events=events,
        ack_timeout=ack_timeout,
        connect_timeout=connect_timeout,
        run_id=run_id or new_run_id(),
        instrument=instrument,
        schedule=Schedule(quantity, slices, interval, lot),
        pricing=Pricing(Side(side), tick, limit, passive, step),
        arrival_price=arrival_price,
        grace=grace,
    )
    emit(summary)
    sys.exit(0 if summary["ok"] else 1)


if __name__ == "__main__":
    main()
