"""What the example strategies share: order book-keeping, fills, ids, options, the summary line.

Nothing here knows a strategy. Copy it along with the strategy you start from.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from types import FrameType
from typing import Any, TypeVar

import click

from ports import (
    AmendOrder,
    CancelOrder,
    ErrorReason,
    ExecutionReport,
    OrderRejectedError,
    OrderSnapshot,
    OrderStatus,
    PortEventKind,
    Side,
    SubmitOrder,
)

PENDING = frozenset(
    {OrderStatus.PENDING_NEW, OrderStatus.PENDING_AMEND, OrderStatus.PENDING_CANCEL}
)
"""A request about the order is still being worked on at the venue: wait for its outcome."""

FATAL_REJECTIONS = frozenset(
    {
        ErrorReason.INVALID_REQUEST,
        ErrorReason.UNKNOWN_INSTRUMENT,
        ErrorReason.LIMIT_EXCEEDED,
        ErrorReason.DUPLICATE_CLIENT_ORDER_ID,
    }
)
"""Refusals that sending again cannot cure: the strategy's configuration is wrong, so it stops."""


class StopSignals:
    """SIGTERM (``docker stop``) and SIGINT (Ctrl-C) ask the strategy to wind down: cancel its
    orders, reconcile and print its summary, rather than die with orders working."""

    def __init__(self) -> None:
        self.received: str | None = None
        """The name of the signal received, once one was."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, _: FrameType | None) -> None:
        self.received = signal.Signals(signum).name


class StrategyError(Exception):
    """What the strategy cannot trade through (bad configuration): it winds down and exits 1."""


@dataclass
class TrackedOrder:
    """One of our orders as the venue last described it.

    Acknowledgements, stream reports and ``order_status`` snapshots are all applied here, and the
    newest wins: a report carries ``seq``, a snapshot ``last_seq`` (the ``seq`` of the latest
    report it includes), so anything older than what was applied already is ignored.
    """

    request: SubmitOrder
    status: OrderStatus = OrderStatus.PENDING_NEW
    quantity: Decimal = Decimal(0)
    limit_price: Decimal | None = None
    cum_qty: Decimal = Decimal(0)
    avg_px: Decimal | None = None
    last_seq: int = 0
    seen: bool = False
    """The venue has described the order at least once: it exists (or existed) there."""
    in_doubt: bool = False
    """A submit, amend or cancel of it went unanswered: settle before touching it again."""
    lost: bool = False
    """The venue no longer knows it (a venue reset): treated as done."""

    def __post_init__(self) -> None:
        self.quantity = self.request.quantity
        self.limit_price = self.request.limit_price

    @property
    def client_order_id(self) -> str:
        return self.request.client_order_id

    @property
    def side(self) -> Side:
        return self.request.side

    @property
    def done(self) -> bool:
        """It can no longer trade."""
        return self.lost or self.status.is_terminal

    @property
    def leaves_qty(self) -> Decimal:
        return Decimal(0) if self.done else self.quantity - self.cum_qty

    def apply(self, update: ExecutionReport | OrderSnapshot) -> None:
        """Take the venue's view of the order, unless it is older than what we know."""
        seq = update.seq if isinstance(update, ExecutionReport) else update.last_seq
        if seq < self.last_seq:
            return
        self.last_seq = seq
        self.status = update.status
        self.quantity = update.quantity
        self.limit_price = update.limit_price
        self.cum_qty = update.cum_qty
        self.avg_px = update.avg_px
        self.seen = True

    def lose(self) -> None:
        """The venue does not know the order any more: nothing of it can trade."""
        self.lost, self.in_doubt = True, False

    def venue_reset(self) -> None:
        """The venue's state is gone and its stream starts again at seq 1: what we knew of a
        working order must be settled again."""
        self.last_seq = 0
        if not self.done:
            self.in_doubt = True


@dataclass
class Fills:
    """Position and cash from the fills on the strategy's stream (the port delivers each once)."""

    count: int = 0
    bought: Decimal = Decimal(0)
    sold: Decimal = Decimal(0)
    paid: Decimal = Decimal(0)
    received: Decimal = Decimal(0)
    last_px: Decimal | None = None

    def take(self, report: ExecutionReport) -> bool:
        """Count the report's fill; False if it carries none."""
        if report.fill_id is None or report.last_px is None:
            return False
        self.count += 1
        self.last_px = report.last_px
        if report.side is Side.BUY:
            self.bought += report.last_qty
            self.paid += report.last_qty * report.last_px
        else:
            self.sold += report.last_qty
            self.received += report.last_qty * report.last_px
        return True

    @property
    def position(self) -> Decimal:
        return self.bought - self.sold

    def summary(self) -> dict[str, object]:
        def average(notional: Decimal, qty: Decimal) -> str | None:
            return str(round(notional / qty, 6)) if qty else None

        return {
            "fills": self.count,
            "bought": str(self.bought),
            "sold": str(self.sold),
            "position": str(self.position),
            "avg_buy_px": average(self.paid, self.bought),
            "avg_sell_px": average(self.received, self.sold),
            "cash": str(self.received - self.paid),
        }


def new_run_id() -> str:
    """A token that makes this run's client order ids unique for ever (the venue requires it)."""
    return secrets.token_hex(4)


def order_ids(run_id: str, tag: str) -> Iterator[str]:
    """``<run_id>-<tag><n>``: client order ids of one run, short enough for any strategy id."""
    n = 0
    while True:
        n += 1
        yield f"{run_id}-{tag}{n}"


def resolve_strategy_id(template: str) -> str:
    """The strategy id, with ``{hostname}`` replaced by this host's name (a container's id under
    Docker), so that replicas of one service get distinct strategy ids."""
    hostname = re.sub(r"[^A-Za-z0-9._:/-]", "-", socket.gethostname())
    strategy_id = template.replace("{hostname}", hostname)[:64]
    if not re.fullmatch(r"[A-Za-z0-9._:/-]+", strategy_id):
        raise click.BadParameter(
            f"{strategy_id!r}: use 1-64 of A-Z a-z 0-9 . _ : / -", param_hint="--strategy"
        )
    return strategy_id


def to_decimal(_: click.Context, param: click.Parameter, value: str | None) -> Decimal | None:
    """Option callback: prices and quantities are parsed as ``Decimal``, never as float."""
    if value is None:
        return None
    try:
        parsed = Decimal(value)
    except InvalidOperation:
        raise click.BadParameter(f"{value!r} is not a number", param=param) from None
    if not parsed.is_finite():
        raise click.BadParameter(f"{value!r} is not a finite number", param=param)
    return parsed


_F = TypeVar("_F", bound=Callable[..., Any])


def decimal_option(*names: str, **settings: Any) -> Callable[[_F], _F]:
    """A ``click.option`` whose value is a ``Decimal``."""
    return click.option(*names, callback=to_decimal, metavar="DECIMAL", **settings)


def port_options(command: _F) -> _F:
    """``--command``, ``--events``, ``--strategy`` (also from the ``ORDERBUS_*`` environment
    variables that the ``orderbus`` CLI reads), the port's timeouts and the log level."""
    options = [
        click.option(
            "--command", "command_endpoint", envvar="ORDERBUS_COMMAND", show_envvar=True,
            default="tcp://127.0.0.1:5555", show_default=True, help="The venue's command endpoint.",
        ),
        click.option(
            "--events", envvar="ORDERBUS_EVENTS", show_envvar=True,
            default="tcp://127.0.0.1:5556", show_default=True, help="The venue's event endpoint.",
        ),
        click.option(
            "--strategy", "strategy_template", envvar="ORDERBUS_STRATEGY", show_envvar=True,
            required=True, help="Strategy id; '{hostname}' in it is replaced by the host's name.",
        ),
        click.option(
            "--ack-timeout", default=2.0, show_default=True,
            help="Seconds to wait for the venue's answer to a request before it is in doubt.",
        ),
        click.option(
            "--connect-timeout", default=10.0, show_default=True,
            help="Seconds to wait for the venue at start.",
        ),
        click.option(
            "--run-id", default=None,
            help="Prefix of this run's client order ids (default: random).",
        ),
        click.option(
            "--log-level", envvar="ORDERBUS_LOG_LEVEL", show_envvar=True, default="info",
            type=click.Choice(["debug", "info", "warning", "error"]), show_default=True,
        ),
    ]  # fmt: skip
    for option in reversed(options):
        command = option(command)
    return command


def setup_logging(level: str) -> None:
    """Progress goes to stderr; stdout carries only the summary line."""
    logging.basicConfig(
        stream=sys.stderr,
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )


def emit(summary: dict[str, object]) -> None:
    """Print the run's summary as one JSON line (the last line on stdout)."""
    click.echo(json.dumps(summary, default=str))


def note_rejection(
    rejections: Counter[str],
    request: SubmitOrder | AmendOrder | CancelOrder,
    error: OrderRejectedError,
) -> None:
    """Count a refusal; raise ``StrategyError`` for one that no retry can mend (configuration)."""
    rejections[error.reason.value] += 1
    if error.reason in FATAL_REJECTIONS:
        raise StrategyError(
            f"the venue refused {type(request).__name__} ({error.reason.value}): {error}"
        ) from error


def error_counts(rejections: Counter[str], counts: Counter[str]) -> dict[str, object]:
    """The summary's account of what went wrong on the way, and of the port's events."""
    return {
        "rejected": dict(rejections),
        "throttled": counts["throttled"],
        "in_doubt": counts["in_doubt"],
        "settled": counts["settled"],
        "not_sent": counts["not_sent"],
        "port_events": {k.value: counts[k.value] for k in PortEventKind if counts[k.value]},
    }


def finish(summary: dict[str, object], error: str | None, started: float) -> dict[str, object]:
    """Close the summary: ``ok`` unless something failed, fills disagree with the venue, or an
    order is left open (``reconciled`` None: not checked in time, which is no failure)."""
    summary["error"] = error
    summary["ok"] = (
        error is None
        and summary.get("reconciled") in (True, None)
        and summary.get("open_at_end") == 0
    )
    summary["seconds"] = round(time.monotonic() - started, 3)
    return summary
