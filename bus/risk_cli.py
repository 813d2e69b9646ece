"""The risk controls on the command line: ``orderbus kill``, ``resume``, ``positions`` and
``risk-limits`` (admin key, on the server's control channel), and ``--risk FILE`` for servers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import yaml
from pydantic import BaseModel, ValidationError

from bus.control_call import ControlCallError, control_call
from bus.keys_cli import client_key_options
from bus.risk_models import GetPositions, Kill, Positions, Resume, RiskConfig, SetRiskLimits

_F = TypeVar("_F", bound=Callable[..., Any])


def read_risk_config(path: Path) -> RiskConfig:
    """A risk config file (YAML: ``venue``, ``strategy``, ``strategies``; docs/gateway.md)."""
    try:
        return RiskConfig.model_validate(yaml.safe_load(path.read_text()) or {})
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise click.BadParameter(f"{path}: {exc}") from None


def _control(command: _F) -> _F:
    command = click.option("--timeout", default=5.0, show_default=True,
                           help="Seconds to wait for the answer.")(command)  # fmt: skip
    command = click.option("--control", "endpoint", required=True, envvar="ORDERBUS_CONTROL",
                           help="The server's control endpoint.")(command)  # fmt: skip
    return client_key_options(command)


def _scope(command: _F) -> _F:
    command = click.option("--all", "everyone", is_flag=True, help="Every strategy.")(command)
    return click.option("--strategy", "strategy_id", help="One strategy.")(command)


def _call(endpoint: str, command: BaseModel, timeout: float) -> BaseModel:
    try:
        return control_call(endpoint, command, timeout)
    except ControlCallError as exc:
        raise click.ClickException(str(exc)) from None


def _one_scope(strategy_id: str | None, everyone: bool) -> str | None:
    if (strategy_id is None) == (not everyone):
        raise click.UsageError("give exactly one of --strategy S and --all")
    return strategy_id


@click.command()
@_scope
@_control
def kill(strategy_id: str | None, everyone: bool, endpoint: str, timeout: float) -> None:
    """Halt a strategy (or all): cancel its open orders and refuse new ones until resumed."""
    click.echo(_call(endpoint, Kill(strategy_id=_one_scope(strategy_id, everyone)), timeout)
               .model_dump_json())  # fmt: skip


@click.command()
@_scope
@_control
def resume(strategy_id: str | None, everyone: bool, endpoint: str, timeout: float) -> None:
    """Lift the halt of a strategy (or, with --all, every halt)."""
    click.echo(_call(endpoint, Resume(strategy_id=_one_scope(strategy_id, everyone)), timeout)
               .model_dump_json())  # fmt: skip


@click.command()
@click.option("--strategy", "strategy_id", help="One strategy (default: every one, and the total).")
@click.option("--json", "as_json", is_flag=True, help="The answer as JSON.")
@_control
def positions(strategy_id: str | None, as_json: bool, endpoint: str, timeout: float) -> None:
    """Positions from fills, per strategy and in total: quantity, average price, realized P&L."""
    answer = _call(endpoint, GetPositions(strategy_id=strategy_id), timeout)
    assert isinstance(answer, Positions)
    if as_json:
        click.echo(answer.model_dump_json())
        return
    click.echo(f"{'strategy':16} {'instrument':10} {'quantity':>12} {'avg price':>12} "
               f"{'realized':>12} {'fills':>6}")  # fmt: skip
    for each in answer.strategies:
        for p in each.positions:
            average = "-" if p.average_price is None else f"{p.average_price:.6g}"
            click.echo(f"{each.strategy_id or 'TOTAL':16} {p.instrument:10} {p.quantity:>12} "
                       f"{average:>12} {p.realized_pnl:>12} {p.fills:>6}")  # fmt: skip


@click.command("risk-limits")
@click.argument("config", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@_control
def risk_limits(config: Path, endpoint: str, timeout: float) -> None:
    """Put the limits of the risk config file CONFIG in force at once."""
    command = SetRiskLimits(config=read_risk_config(config))
    click.echo(_call(endpoint, command, timeout).model_dump_json())


RISK_COMMANDS = (kill, resume, positions, risk_limits)


def server_risk_options(command: _F) -> _F:
    """``--risk FILE`` and ``--state FILE`` of a server: give their values to ``server_risk``."""
    command = click.option(
        "--state", "state_path", type=click.Path(path_type=Path, dir_okay=False),
        help="File that keeps halts and limits set at run time across a restart "
             "(default with --journal: the journal's path + '.state').",
    )(command)  # fmt: skip
    return click.option(
        "--risk", "risk_path", type=click.Path(path_type=Path, dir_okay=False, exists=True),
        help="Pre-trade limits (YAML: venue, strategy, strategies); docs/gateway.md.",
    )(command)  # fmt: skip


def server_risk(
    risk_path: Path | None, state_path: Path | None, journal: Path | None = None
) -> dict[str, Any]:
    """``Server``'s ``risk`` and ``state`` from the options."""
    if state_path is None and journal is not None:
        state_path = journal.with_name(journal.name + ".state")
    risk = None if risk_path is None else read_risk_config(risk_path)
    return {"risk": risk, "state": state_path}
