"""``orderbus``: submit, amend and cancel orders, list them, watch the event stream."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation
from importlib.metadata import EntryPoint, entry_points
from typing import Any, TypeVar

import click
from pydantic import BaseModel, ValidationError
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from bus.blocking import BlockingOrderExecutionPort
from bus.gateway_cli import gateway
from bus.keys_cli import client_key_options, keys
from bus.monitor import BlockingMonitor
from bus.risk_cli import RISK_COMMANDS
from ports import (
    AmendOrder,
    CancelOrder,
    ExecutionReport,
    OrderSnapshot,
    OrderType,
    PortError,
    Side,
    SubmitOrder,
    TimeInForce,
)

DEFAULT_COMMAND = "tcp://127.0.0.1:5555"
DEFAULT_EVENTS = "tcp://127.0.0.1:5556"

_F = TypeVar("_F", bound=Callable[..., Any])


def _endpoints(command: _F) -> _F:
    command = client_key_options(command)
    command = click.option(
        "--events", default=DEFAULT_EVENTS, show_default=True, envvar="ORDERBUS_EVENTS",
        help="The venue's event endpoint.",
    )(command)  # fmt: skip
    return click.option(
        "--command", "command_endpoint", default=DEFAULT_COMMAND, show_default=True,
        envvar="ORDERBUS_COMMAND", help="The venue's command endpoint.",
    )(command)  # fmt: skip


def _strategy(command: _F) -> _F:
    command = click.option("--json", "as_json", is_flag=True, help="Print JSON.")(command)
    command = click.option(
        "--timeout", default=5.0, show_default=True, help="Seconds to wait for the venue."
    )(command)
    return click.option(
        "--strategy", required=True, envvar="ORDERBUS_STRATEGY", help="Strategy id."
    )(command)


def _decimal(_: click.Context, __: click.Parameter, value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(value)
    except InvalidOperation:
        raise click.BadParameter(f"{value!r} is not a number") from None


@contextmanager
def _port(
    strategy: str, command: str, events: str, timeout: float
) -> Iterator[BlockingOrderExecutionPort]:
    """An open blocking port; every port error becomes a clean CLI error."""
    port = BlockingOrderExecutionPort(
        strategy, command=command, events=events, ack_timeout=timeout, connect_timeout=timeout
    )
    try:
        port.open()
        yield port
    except PortError as error:
        raise click.ClickException(
            f"{type(error).__name__} ({error.reason.value}): {error}"
        ) from None
    except ValidationError as error:
        raise click.ClickException(str(error)) from None
    finally:
        port.close()


def _show(result: BaseModel, as_json: bool) -> None:
    if as_json:
        click.echo(result.model_dump_json())
        return
    order = getattr(result, "order", result)
    if isinstance(order, OrderSnapshot):
        click.echo(_order_line(order))
    else:
        click.echo(result.model_dump_json(indent=2))


def _order_line(o: OrderSnapshot) -> str:
    price = "MKT" if o.limit_price is None else str(o.limit_price)
    avg = "" if o.avg_px is None else f" avg {o.avg_px:.6g}"
    return (
        f"{o.client_order_id:12} {o.status.value:17} {o.side.value:4} {o.quantity:>8} "
        f"{o.instrument:8} @ {price:>10}  filled {o.cum_qty}{avg}  ({o.venue_order_id})"
    )


class _Commands(click.Group):
    """The client commands, ``gateway``, and the commands other packages register under the
    ``orderbus.commands`` entry-point group (the venue's ``bench``), imported only when run."""

    def _plugins(self) -> dict[str, EntryPoint]:
        return {e.name: e for e in entry_points(group="orderbus.commands")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._plugins()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and (plugin := self._plugins().get(cmd_name)) is not None:
            loaded = plugin.load()
            command = loaded if isinstance(loaded, click.Command) else None
        return command


@click.group(cls=_Commands)
def main() -> None:
    """Talk to an orderbus venue or gateway, or run a gateway."""


main.add_command(gateway)
main.add_command(keys)
for _risk_command in RISK_COMMANDS:
    main.add_command(_risk_command)


@main.command()
@_endpoints
@_strategy
@click.option("--id", "client_order_id", required=True, help="Client order id (unique).")
@click.option("--instrument", required=True)
@click.option("--side", type=click.Choice([s.value for s in Side]), required=True)
@click.option("--qty", "quantity", required=True, callback=_decimal)
@click.option("--price", callback=_decimal, help="Limit price; omit for a market order.")
@click.option("--tif", type=click.Choice([t.value for t in TimeInForce]), default="day",
              show_default=True)  # fmt: skip
def submit(
    command_endpoint: str,
    events: str,
    strategy: str,
    timeout: float,
    as_json: bool,
    client_order_id: str,
    instrument: str,
    side: str,
    quantity: Decimal,
    price: Decimal | None,
    tif: str,
) -> None:
    """Place an order and wait for the venue's acknowledgement."""
    with _port(strategy, command_endpoint, events, timeout) as port:
        order = SubmitOrder(
            client_order_id=client_order_id,
            strategy_id=strategy,
            instrument=instrument,
            side=Side(side),
            quantity=quantity,
            order_type=OrderType.MARKET if price is None else OrderType.LIMIT,
            limit_price=price,
            time_in_force=TimeInForce(tif),
        )
        _show(port.submit_order(order), as_json)


@main.command()
@_endpoints
@_strategy
@click.option("--id", "client_order_id", required=True)
@click.option("--qty", "quantity", callback=_decimal, help="New total quantity.")
@click.option("--price", callback=_decimal, help="New limit price.")
def amend(
    command_endpoint: str,
    events: str,
    strategy: str,
    timeout: float,
    as_json: bool,
    client_order_id: str,
    quantity: Decimal | None,
    price: Decimal | None,
) -> None:
    """Change a working order's quantity and/or limit price."""
    with _port(strategy, command_endpoint, events, timeout) as port:
        request = AmendOrder(
            client_order_id=client_order_id,
            strategy_id=strategy,
            quantity=quantity,
            limit_price=price,
        )
        _show(port.amend_order(request), as_json)


@main.command()
@_endpoints
@_strategy
@click.option("--id", "client_order_id", required=True)
def cancel(
    command_endpoint: str,
    events: str,
    strategy: str,
    timeout: float,
    as_json: bool,
    client_order_id: str,
) -> None:
    """Cancel a working order."""
    with _port(strategy, command_endpoint, events, timeout) as port:
        _show(
            port.cancel_order(CancelOrder(client_order_id=client_order_id, strategy_id=strategy)),
            as_json,
        )


@main.command("cancel-all")
@_endpoints
@_strategy
@click.option("--instrument")
@click.option("--side", type=click.Choice([s.value for s in Side]))
def cancel_all(
    command_endpoint: str,
    events: str,
    strategy: str,
    timeout: float,
    as_json: bool,
    instrument: str | None,
    side: str | None,
) -> None:
    """Cancel every open order of the strategy."""
    with _port(strategy, command_endpoint, events, timeout) as port:
        result = port.cancel_all_orders(instrument, Side(side) if side else None)
        if as_json:
            click.echo(result.model_dump_json())
        else:
            click.echo(
                f"canceled {len(result.client_order_ids)}: {' '.join(result.client_order_ids)}"
            )


@main.command()
@_endpoints
@_strategy
@click.option("--instrument")
@click.option("--id", "client_order_id", help="One order, open or not.")
def orders(
    command_endpoint: str,
    events: str,
    strategy: str,
    timeout: float,
    as_json: bool,
    instrument: str | None,
    client_order_id: str | None,
) -> None:
    """The strategy's open orders (or one order)."""
    with _port(strategy, command_endpoint, events, timeout) as port:
        found = (
            (port.order_status(client_order_id),)
            if client_order_id
            else port.open_orders(instrument)
        )
    if as_json:
        click.echo(json.dumps([o.model_dump(mode="json") for o in found]))
        return
    for order in found:
        click.echo(_order_line(order))
    if not found:
        click.echo("no open orders")


@main.command()
@_endpoints
@click.option("--since", default=0, show_default=True, help="Start after this venue_seq.")
@click.option("--duration", type=float, help="Stop after this many seconds (default: never).")
@click.option("--rows", default=20, show_default=True, help="Latest events shown.")
@click.option("--plain", is_flag=True, help="One line per event instead of a live table.")
def watch(
    command_endpoint: str,
    events: str,
    since: int,
    duration: float | None,
    rows: int,
    plain: bool,
) -> None:
    """Follow every strategy's events live (exactly once, in venue order)."""
    stop_at = None if duration is None else time.monotonic() + duration
    latest: deque[ExecutionReport] = deque(maxlen=rows)
    per_strategy: Counter[str] = Counter()
    fills: Counter[str] = Counter()
    console = Console()

    def table() -> Group:
        recent = Table(title="latest events", expand=True)
        for column in ("venue_seq", "time", "strategy", "order", "event", "status", "qty", "fill"):
            recent.add_column(column)
        for r in latest:
            fill = f"{r.last_qty} @ {r.last_px}" if r.fill_id else ""
            recent.add_row(
                str(r.venue_seq), f"{r.venue_time:%H:%M:%S.%f}"[:-3], r.strategy_id,
                r.client_order_id, r.exec_type.value, r.status.value,
                f"{r.cum_qty}/{r.quantity}", fill,
            )  # fmt: skip
        totals = Table(title="per strategy")
        for column in ("strategy", "events", "fills"):
            totals.add_column(column)
        for name, count in sorted(per_strategy.items()):
            totals.add_row(name, str(count), str(fills[name]))
        return Group(recent, totals)

    # `docker stop` (SIGTERM) ends the watch as Ctrl-C does. A flag, not an exception: raised
    # from a signal handler, an exception can land inside code that swallows it.
    terminated: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _: terminated.append(signum))
    with BlockingMonitor(command=command_endpoint, events=events, after_venue_seq=since) as monitor:
        live = None if plain else Live(table(), console=console, refresh_per_second=4)
        if live is not None:
            live.start()
        try:
            while not terminated and (stop_at is None or time.monotonic() < stop_at):
                for report in monitor.reports(timeout=0.25):
                    if terminated:
                        break
                    latest.append(report)
                    per_strategy[report.strategy_id] += 1
                    fills[report.strategy_id] += 1 if report.fill_id else 0
                    if plain:
                        click.echo(
                            f"{report.venue_seq} {report.strategy_id} {report.client_order_id} "
                            f"{report.exec_type.value} {report.status.value} "
                            f"{report.cum_qty}/{report.quantity}"
                        )
                    if stop_at is not None and time.monotonic() >= stop_at:
                        break
                if live is not None:
                    live.update(table())
        except KeyboardInterrupt:
            pass
        finally:
            if live is not None:
                live.stop()


if __name__ == "__main__":
    main()
