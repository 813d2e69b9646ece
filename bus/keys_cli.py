"""Keys on the command line: ``orderbus keys new``, and the key options of servers and clients."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from bus.access import Access, EntitlementsError, Role
from bus.backend import ReloadEntitlements
from bus.control_call import ControlCallError, control_call
from bus.curve import (
    CLIENT_KEY_ENV,
    SERVER_KEY_ENV,
    KeyFileError,
    ServerKey,
    read_key,
)
from bus.keyring import entitle, new_key_pair
from bus.keyring import revoke as revoke_key

_F = TypeVar("_F", bound=Callable[..., Any])


def server_security_options(command: _F) -> _F:
    """``--server-key``, ``--entitlements`` and ``--insecure``: give their values to
    ``server_security``."""
    command = click.option(
        "--insecure", is_flag=True,
        help="Without a key, bind non-loopback addresses anyway (plaintext: any peer can act "
             "as any strategy).",
    )(command)  # fmt: skip
    command = click.option(
        "--entitlements", type=click.Path(path_type=Path, dir_okay=False),
        envvar="ORDERBUS_ENTITLEMENTS",
        help="YAML file: which client keys may connect, their names, roles and strategies "
             "(docs/security.md). Reloaded on SIGHUP.",
    )(command)  # fmt: skip
    return click.option(
        "--server-key", type=click.Path(path_type=Path, dir_okay=False),
        envvar="ORDERBUS_SERVER_SECRET_KEY",
        help="This server's secret key (NAME.key_secret): CURVE on every channel.",
    )(command)  # fmt: skip


def server_security(
    server_key: Path | None, entitlements: Path | None, insecure: bool
) -> dict[str, Any]:
    """The keyword arguments of ``bus.server.Server`` the options stand for."""
    if (server_key is None) != (entitlements is None):
        raise click.UsageError("--server-key and --entitlements go together")
    if server_key is None:
        return {"insecure": insecure}
    try:
        return {"key": ServerKey.load(server_key), "access": Access(entitlements)}
    except (KeyFileError, EntitlementsError) as exc:
        raise click.BadParameter(str(exc)) from None


def _export(env: str) -> Callable[[click.Context, click.Parameter, str | None], None]:
    def callback(_: click.Context, __: click.Parameter, value: str | None) -> None:
        if not value:
            return
        try:
            read_key(value, secret=env == CLIENT_KEY_ENV)
        except KeyFileError as exc:
            raise click.BadParameter(str(exc)) from None
        os.environ[env] = value  # the ports, monitors and control clients read it

    return callback


def client_key_options(command: _F) -> _F:
    """``--server-public-key`` and ``--client-key`` (or their environment variables): CURVE for
    every port and client the command makes."""
    command = click.option(
        "--client-key", expose_value=False, callback=_export(CLIENT_KEY_ENV),
        help=f"This client's secret key (NAME.key_secret). Env: {CLIENT_KEY_ENV}.",
    )(command)  # fmt: skip
    command = click.option(
        "--server-public-key", expose_value=False, callback=_export(SERVER_KEY_ENV),
        help=f"The server's public key (NAME.key). Env: {SERVER_KEY_ENV}.",
    )(command)  # fmt: skip
    return command


@click.group()
def keys() -> None:
    """CURVE key pairs and entitlements (docs/security.md)."""


@keys.command("new")
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(path_type=Path, file_okay=False),
              required=True, help="Where NAME.key (public) and NAME.key_secret go.")  # fmt: skip
@click.option("--entitlements", type=click.Path(path_type=Path, dir_okay=False),
              help="Also list the key in this entitlements file (created if missing).")  # fmt: skip
@click.option("--role", type=click.Choice([r.value for r in Role]), default=Role.STRATEGY.value,
              show_default=True, help="Its role in --entitlements.")  # fmt: skip
@click.option("--strategy", "strategies", multiple=True,
              help="A strategy id (or pattern: 'mm-*') it acts for.")  # fmt: skip
@click.option("--keep", is_flag=True, help="Keep a key pair that exists already.")
def new(
    name: str,
    directory: Path,
    entitlements: Path | None,
    role: str,
    strategies: tuple[str, ...],
    keep: bool,
) -> None:
    """Write a key pair NAME.key / NAME.key_secret (zmq.auth.create_certificates format)."""
    try:
        secret = new_key_pair(directory, name, keep=keep)
    except FileExistsError as exc:
        raise click.ClickException(f"{exc} (--keep)") from None
    if entitlements is not None:
        entitle(entitlements, name, directory / f"{name}.key", Role(role), strategies)
    click.echo(str(secret))


@keys.command()
@click.argument("name")
@click.option("--entitlements", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              required=True, help="The entitlements file to remove NAME from.")  # fmt: skip
def revoke(name: str, entitlements: Path) -> None:
    """Remove NAME from the entitlements; it loses access when the server reloads them
    (SIGHUP or 'orderbus keys reload')."""
    if not revoke_key(entitlements, name):
        raise click.ClickException(f"{name} is not listed in {entitlements}")
    click.echo(f"{name} removed from {entitlements}: reload the server")


@keys.command("reload")
@click.option("--control", "endpoint", required=True, envvar="ORDERBUS_CONTROL",
              help="The server's control endpoint.")  # fmt: skip
@click.option("--timeout", default=5.0, show_default=True, help="Seconds to wait.")
@client_key_options
def reload(endpoint: str, timeout: float) -> None:
    """Make a venue or gateway read its entitlements file again (admin key), as SIGHUP does."""
    try:
        answer = control_call(endpoint, ReloadEntitlements(), timeout)
    except ControlCallError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(answer.model_dump_json())
