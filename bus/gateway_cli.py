"""``orderbus gateway``: serve any ``OrderExecutionPort`` to many strategy processes."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click
import yaml

from bus.gateway import PortBackend, load_factory
from bus.keys_cli import server_security, server_security_options
from bus.logs import server_log_options
from bus.metrics import server_metrics_options
from bus.risk_cli import server_risk, server_risk_options
from bus.serve import serve_until_signalled
from bus.server import Endpoints, Server

DEFAULT_COMMAND = "tcp://127.0.0.1:5565"
DEFAULT_EVENTS = "tcp://127.0.0.1:5566"
DEFAULT_CONTROL = "tcp://127.0.0.1:5567"


def _config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise click.BadParameter(f"cannot read {path}: {exc}", param_hint="--config") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise click.BadParameter(f"{path} must hold a mapping", param_hint="--config")
    return data


@click.command()
@click.option("--port-factory", "spec", required=True, envvar="ORDERBUS_PORT_FACTORY",
              help="package.module:callable, called as factory(strategy_id, config) for the "
                   "port that serves each strategy.")  # fmt: skip
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              help="YAML (or JSON) file whose mapping is given to the factory.")  # fmt: skip
@click.option("--command", "command_endpoint", default=DEFAULT_COMMAND, show_default=True)
@click.option("--events", "events_endpoint", default=DEFAULT_EVENTS, show_default=True)
@click.option("--control", "control_endpoint", default=DEFAULT_CONTROL, show_default=True)
@click.option("--heartbeat", default=0.5, show_default=True, help="Heartbeat interval, seconds.")
@server_security_options
@server_risk_options
@server_metrics_options
@server_log_options
def gateway(
    spec: str,
    config_path: Path | None,
    command_endpoint: str,
    events_endpoint: str,
    control_endpoint: str,
    heartbeat: float,
    server_key: Path | None,
    entitlements: Path | None,
    insecure: bool,
    risk_path: Path | None,
    state_path: Path | None,
    metrics: str | None,
) -> None:
    """Serve the ports a factory makes over the bus, until SIGINT or SIGTERM.

    Prints one JSON ready line with its endpoints. Strategies connect to it as to a venue."""
    # A factory beside the working directory (examples/...) imports as it does for `python -m`.
    sys.path.insert(0, os.getcwd())
    try:
        factory = load_factory(spec)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--port-factory") from None
    server = Server(
        PortBackend(factory, _config(config_path)),
        Endpoints(command_endpoint, events_endpoint, control_endpoint),
        heartbeat_interval=heartbeat,
        **server_security(server_key, entitlements, insecure),
        **server_risk(risk_path, state_path),
    )
    serve_until_signalled(server, {"port_factory": spec}, metrics=metrics)
