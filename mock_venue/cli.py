"""``mock-venue``: run the venue process and talk to it."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
import yaml
from pydantic import ValidationError

from mock_venue.clock import Clock, ManualClock, WallClock
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
from mock_venue.engine import VenueEngine
from mock_venue.server import Endpoints, VenueServer

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
def serve(
    command_endpoint: str,
    events_endpoint: str,
    control_endpoint: str,
    config_path: Path | None,
    instruments: tuple[str, ...],
    seed: int,
    clock: str,
    heartbeat: float,
) -> None:
    """Run the venue until SIGINT or SIGTERM. Prints one JSON ready line with its endpoints."""
    config = load_config(config_path, instruments)
    venue_clock: Clock = ManualClock() if clock == "manual" else WallClock()
    engine = VenueEngine(config, clock=venue_clock, rng=random.Random(seed))
    server = VenueServer(
        engine,
        venue_clock,
        Endpoints(command_endpoint, events_endpoint, control_endpoint),
        heartbeat_interval=heartbeat,
    )
    try:
        bound = server.bind()
    except Exception as exc:  # zmq.ZMQError: address in use, bad endpoint, ...
        server.close()
        raise click.ClickException(f"cannot bind: {exc}") from None
    signal.signal(signal.SIGINT, lambda *_: server.stop())
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    ready = {
        "ready": True,
        "pid": os.getpid(),
        "command": bound.command,
        "events": bound.events,
        "control": bound.control,
        "instruments": [i.symbol for i in config.instruments],
        "clock": clock,
    }
    click.echo(json.dumps(ready), nl=True)
    sys.stdout.flush()
    try:
        server.serve()
    finally:
        server.close()
    click.echo(json.dumps({"stopped": True, "requests": server.requests}), err=True)


@main.command()
@click.option("--control", "control_endpoint", default=DEFAULT_CONTROL, show_default=True)
@click.option("--timeout", default=5.0, show_default=True, help="Seconds to wait for the venue.")
@click.option("--json", "as_json", is_flag=True, help="Print the raw status as JSON.")
def status(control_endpoint: str, timeout: float, as_json: bool) -> None:
    """Show what a running venue holds: orders, clients, sequence numbers, faults."""

    async def fetch() -> Any:
        async with ControlClient(control_endpoint, timeout=timeout) as control:
            return await control.status()

    try:
        result = asyncio.run(fetch())
    except TimeoutError:
        raise click.ClickException(f"no venue answered at {control_endpoint}") from None
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
    for s in result.strategies:
        click.echo(
            f"  {s.strategy_id:20} seq {s.seq:<8} orders {s.orders:<7} open {s.open_orders:<6} "
            f"filled {s.filled_qty}"
        )
    for f in result.faults:
        click.echo(f"  fault #{f.fault_id} {f.fault.kind} fired {f.fired} remaining {f.remaining}")


if __name__ == "__main__":
    main()
