"""``mock-venue``: run the venue process and talk to it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import click
import yaml
from pydantic import TypeAdapter, ValidationError

from bus.keys_cli import client_key_options, server_security, server_security_options
from bus.logs import server_log_options
from bus.metrics import server_metrics_options
from bus.risk_cli import server_risk, server_risk_options
from bus.serve import serve_until_signalled
from bus.server import Endpoints
from mock_venue.backend import EngineBackend
from mock_venue.clock import ManualClock, WallClock
from mock_venue.config import (
    DEFAULT_INSTRUMENTS,
    ImmediateFill,
    InstrumentConfig,
    ManualFill,
    PricePathFill,
    SlicedFill,
    VenueConfig,
)
from mock_venue.control_client import ControlClient
from mock_venue.engine import VenueControlError
from mock_venue.faults import ActiveFault, Fault, load_scenario
from mock_venue.journal import FsyncPolicy, JournalError
from mock_venue.venue_server import venue_server

_T = TypeVar("_T")
_log = logging.getLogger("orderbus.venue")

DEFAULT_COMMAND = "tcp://127.0.0.1:5555"
DEFAULT_EVENTS = "tcp://127.0.0.1:5556"
DEFAULT_CONTROL = "tcp://127.0.0.1:5557"

_MODELS = {
    "immediate": ImmediateFill,
    "sliced": SlicedFill,
    "price_path": PricePathFill,
    "manual": ManualFill,
}


def parse_instrument(text: str) -> InstrumentConfig:
    """``SYMBOL:PRICE[:MODEL]``, MODEL one of immediate, sliced, price_path, manual."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in _MODELS):
        raise click.BadParameter(
            f"{text!r}: expected SYMBOL:PRICE[:MODEL], MODEL one of {', '.join(_MODELS)}"
        )
    model = _MODELS[parts[2] if len(parts) == 3 else "immediate"]()
    try:
        return InstrumentConfig(
            symbol=parts[0], reference_price=Decimal(parts[1]), fill_model=model
        )
    except (ValidationError, ArithmeticError) as exc:
        raise click.BadParameter(f"{text!r}: {exc}") from None


def load_config(path: Path | None, instruments: tuple[str, ...]) -> VenueConfig:
    """The venue's config: a YAML/JSON file, ``--instrument`` options added (and winning)."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise click.BadParameter(f"cannot read {path}: {exc}") from None
    from_file = {i["symbol"]: i for i in data.get("instruments", []) if isinstance(i, dict)}
    for text in instruments:
        parsed = parse_instrument(text)
        from_file[parsed.symbol] = parsed.model_dump()
    data["instruments"] = list(from_file.values()) or [i.model_dump() for i in DEFAULT_INSTRUMENTS]
    try:
        return VenueConfig.model_validate(data)
    except ValidationError as exc:
        raise click.BadParameter(f"invalid venue config: {exc}") from None


@click.group()
def main() -> None:
    """The orderbus mock venue."""


@main.command()
@click.option(
    "--command",
    "command_endpoint",
    default=DEFAULT_COMMAND,
    show_default=True,
    help="Command endpoint (ROUTER). Port 0 picks a free port.",
)
@click.option(
    "--events",
    "events_endpoint",
    default=DEFAULT_EVENTS,
    show_default=True,
    help="Event endpoint (PUB).",
)
@click.option(
    "--control",
    "control_endpoint",
    default=DEFAULT_CONTROL,
    show_default=True,
    help="Control endpoint (ROUTER) for fills, faults and logical time.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Venue config file (YAML or JSON).",
)
@click.option(
    "--instrument",
    "instruments",
    multiple=True,
    metavar="SYMBOL:PRICE[:MODEL]",
    help="An instrument; repeat for more. Default: ACME, GLOBEX, INITECH, HOOLI.",
)
@click.option("--seed", default=0, show_default=True, help="Seed of the venue's RNG.")
@click.option(
    "--clock",
    type=click.Choice(["wall", "manual"]),
    default="wall",
    show_default=True,
    help="manual: logical time moves only when told over the control endpoint.",
)
@click.option("--heartbeat", default=0.5, show_default=True, help="Heartbeat interval, seconds.")
@click.option(
    "--journal",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Journal file: written as the venue runs, recovered from if it exists.",
)
@click.option(
    "--fsync",
    type=click.Choice([p.value for p in FsyncPolicy]),
    default=FsyncPolicy.INTERVAL.value,
    show_default=True,
    help="When the journal is forced to disk (every policy survives a crash of the process).",
)
@click.option(
    "--scenario",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Scenario file (YAML): faults in force from the start (not on a recovery).",
)
@server_security_options
@server_risk_options
@server_metrics_options
@server_log_options
def serve(
    command_endpoint: str,
    events_endpoint: str,
    control_endpoint: str,
    config_path: Path | None,
    instruments: tuple[str, ...],
    seed: int,
    clock: str,
    heartbeat: float,
    journal: Path | None,
    fsync: str,
    scenario: Path | None,
    server_key: Path | None,
    entitlements: Path | None,
    insecure: bool,
    risk_path: Path | None,
    state_path: Path | None,
    metrics: str | None,
) -> None:
    """Run the venue until SIGINT or SIGTERM. Prints one JSON ready line with its endpoints.
    SIGHUP reloads --entitlements."""
    config = load_config(config_path, instruments)
    security = server_security(server_key, entitlements, insecure)
    try:
        faults = load_scenario(scenario).faults if scenario is not None else ()
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--scenario") from None
    try:
        server = venue_server(
            config,
            Endpoints(command_endpoint, events_endpoint, control_endpoint),
            seed=seed,
            clock=ManualClock() if clock == "manual" else WallClock(),
            heartbeat_interval=heartbeat,
            journal=journal,
            fsync=FsyncPolicy(fsync),
            scenario=faults,
            **security,
            **server_risk(risk_path, state_path, journal),
        )
    except (JournalError, OSError) as exc:
        raise click.ClickException(f"cannot use the journal: {exc}") from None
    backend = server.backend
    assert isinstance(backend, EngineBackend)
    if backend.torn_bytes:
        torn = {"event": "torn_record", "journal": str(journal), "torn_bytes": backend.torn_bytes}
        _log.warning(
            "cut a torn last record (%d bytes) off %s: the process had died while writing it, "
            "before anything of it was sent", backend.torn_bytes, journal, extra=torn,
        )  # fmt: skip
    ready = {
        "instruments": [i.symbol for i in config.instruments],
        "clock": clock,
        "journal": None if journal is None else str(journal),
        "recovered_records": backend.recovered_records,
        "torn_bytes": backend.torn_bytes,
    }
    serve_until_signalled(server, ready, metrics=metrics)


@main.command()
@click.option("--control", "control_endpoint", default=DEFAULT_CONTROL, show_default=True)
@client_key_options
@click.option("--timeout", default=5.0, show_default=True, help="Seconds to wait for the venue.")
@click.option("--json", "as_json", is_flag=True, help="Print the raw status as JSON.")
def status(control_endpoint: str, timeout: float, as_json: bool) -> None:
    """Show what a running venue holds: orders, clients, sequence numbers, faults."""
    result = _control(control_endpoint, timeout, lambda control: control.status())
    if as_json:
        click.echo(result.model_dump_json(indent=2))
        return
    click.echo(
        f"venue {result.venue_id}  time {result.venue_time} ({result.clock})  "
        f"venue_seq {result.venue_seq}"
    )
    click.echo(
        f"orders {result.orders}  open {result.open_orders}  clients {result.clients}  "
        f"requests {result.requests}  protocol errors {result.protocol_errors}  "
        f"unroutable replies {result.unroutable_replies}"
    )
    sec = result.security
    click.echo(
        f"security {sec.mode}  keys {sec.keys}  refused {sec.refused}  "
        f"handshakes denied {sec.handshakes_denied}"
    )
    for s in result.strategies:
        click.echo(
            f"  {s.strategy_id:20} seq {s.seq:<8} orders {s.orders:<7} open {s.open_orders:<6} "
            f"filled {s.filled_qty}"
        )
    for f in result.faults:
        click.echo(f"  fault #{f.fault_id} {f.fault.kind} fired {f.fired} remaining {f.remaining}")


_FAULT = TypeAdapter(Fault)


def parse_fault(kind: str, settings: tuple[str, ...]) -> Fault:
    """``KIND key=value ...`` as a fault; values are read as YAML scalars (3, 0.5, null)."""
    data: dict[str, Any] = {"kind": kind}
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{setting!r}: expected key=value")
        data[key.replace("-", "_")] = yaml.safe_load(value) if value else None
    try:
        return _FAULT.validate_python(data)
    except ValidationError as exc:
        raise click.BadParameter(f"invalid fault: {exc}") from None


def _control(endpoint: str, timeout: float, call: Callable[[ControlClient], Awaitable[_T]]) -> _T:
    async def run() -> _T:
        async with ControlClient(endpoint, timeout=timeout) as control:
            return await call(control)

    try:
        return asyncio.run(run())
    except TimeoutError:
        raise click.ClickException(f"no venue answered at {endpoint}") from None
    except VenueControlError as exc:
        raise click.ClickException(str(exc)) from None


def _show_faults(faults: Iterable[ActiveFault]) -> None:
    shown = False
    for active in faults:
        settings = active.fault.model_dump(exclude={"kind"}, exclude_none=True)
        detail = " ".join(f"{k}={v}" for k, v in settings.items())
        remaining = "" if active.remaining is None else f" remaining {active.remaining}"
        click.echo(
            f"#{active.fault_id} {active.fault.kind} {detail}  fired {active.fired}{remaining}"
        )
        shown = True
    if not shown:
        click.echo("no faults in force")


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("kind", required=False)
@click.argument("settings", nargs=-1)
@click.option("--file", "scenario", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="Inject every fault of a scenario file instead.")  # fmt: skip
@click.option("--control", "control_endpoint", default=DEFAULT_CONTROL, show_default=True)
@client_key_options
@click.option("--timeout", default=5.0, show_default=True, help="Seconds to wait for the venue.")
def inject(
    kind: str | None,
    settings: tuple[str, ...],
    scenario: Path | None,
    control_endpoint: str,
    timeout: float,
) -> None:
    """Put a fault in force on a running venue: KIND key=value ...

    \b
    mock-venue inject drop_replies count=2 strategy_id=s1
    mock-venue inject throttle max_requests=5 interval=1
    mock-venue inject fill_before_change client_order_id=o-7
    mock-venue inject crash
    mock-venue inject --file scenario.yaml

    Kinds: see docs/faults.md.
    """
    if (kind is None) == (scenario is None):
        raise click.UsageError("give a fault KIND with its settings, or --file")
    if scenario is not None:
        try:
            faults = load_scenario(scenario).faults
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--file") from None
    else:
        assert kind is not None
        faults = (parse_fault(kind, settings),)

    async def put(control: ControlClient) -> list[ActiveFault]:
        return [await control.inject(fault) for fault in faults]

    _show_faults(_control(control_endpoint, timeout, put))


@main.command()
@click.option("--clear", "clear", is_flag=True, help="Clear faults (all, or --id).")
@click.option("--id", "fault_id", type=int, help="The fault to clear.")
@click.option("--control", "control_endpoint", default=DEFAULT_CONTROL, show_default=True)
@client_key_options
@click.option("--timeout", default=5.0, show_default=True, help="Seconds to wait for the venue.")
def faults(clear: bool, fault_id: int | None, control_endpoint: str, timeout: float) -> None:
    """List the faults in force on a running venue (with how often each fired), or clear them."""
    if fault_id is not None and not clear:
        raise click.UsageError("--id goes with --clear")

    async def run(control: ControlClient) -> list[ActiveFault]:
        if clear:
            await control.clear_faults(fault_id)
        return await control.active_faults()

    _show_faults(_control(control_endpoint, timeout, run))


if __name__ == "__main__":
    main()
