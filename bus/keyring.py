"""``Keyring``: a folder of CURVE keys for one server and its clients, with the entitlements file
that lists them. What ``orderbus keys new`` writes, and what tests and demos set up in one go."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
import zmq.auth

from bus.access import Access, Role
from bus.curve import CLIENT_KEY_ENV, SERVER_KEY_ENV, ClientKeys, ServerKey, read_key

ENTITLEMENTS = "entitlements.yaml"


def new_key_pair(directory: Path, name: str, *, keep: bool = False) -> Path:
    """Write ``NAME.key`` and ``NAME.key_secret`` (owner-only) in ``directory``; returns the
    secret file. ``keep``: leave a pair that exists already. Raises FileExistsError otherwise."""
    directory.mkdir(parents=True, exist_ok=True)
    public, secret = directory / f"{name}.key", directory / f"{name}.key_secret"
    if public.exists() or secret.exists():
        if keep and public.exists() and secret.exists():
            return secret
        raise FileExistsError(f"{public} exists: remove it, or keep it")
    old_umask = os.umask(0o077)  # the secret is never readable by others, not even for a moment
    try:
        zmq.auth.create_certificates(directory, name)
    finally:
        os.umask(old_umask)
    secret.chmod(0o600)
    return secret


def entitle(path: Path, name: str, key: Path, role: Role, strategies: tuple[str, ...] = ()) -> None:
    """List ``name`` (the public key of its certificate ``key``, written in z85, so that the
    server needs no client's files) in the entitlements file ``path``, replacing an entry of that
    name; the file is created if missing."""
    data = (yaml.safe_load(path.read_text()) if path.exists() else None) or {}
    clients = [c for c in data.get("clients", []) if c.get("name") != name]
    public, _ = read_key(key, secret=False)
    entry: dict[str, Any] = {"name": name, "key": public.decode()}
    entry["role"] = role.value
    if strategies:
        entry["strategies"] = list(strategies)
    data["clients"] = [*clients, entry]
    _replace(path, yaml.safe_dump(data, sort_keys=False))


def revoke(path: Path, name: str) -> bool:
    """Remove ``name`` from the entitlements file (takes effect when the server reloads it).
    False: it was not listed."""
    data = yaml.safe_load(path.read_text()) or {}
    clients = data.get("clients", [])
    data["clients"] = [c for c in clients if c.get("name") != name]
    _replace(path, yaml.safe_dump(data, sort_keys=False))
    return len(data["clients"]) < len(clients)


def _replace(path: Path, text: str) -> None:
    # A server reloading meanwhile reads the old file or the new, never half of one.
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(text)
    os.replace(partial, path)


class Keyring:
    """Keys in ``directory``: the server's (``server``) and one pair per client ``add``-ed."""

    def __init__(self, directory: Path, server: str = "server") -> None:
        self.directory = directory
        self.server_secret = new_key_pair(directory, server, keep=True)
        self.server_public = directory / f"{server}.key"
        self.entitlements = directory / ENTITLEMENTS
        if not self.entitlements.exists():
            self.entitlements.write_text("clients: []\n")

    def add(
        self,
        name: str,
        role: Role | str = Role.STRATEGY,
        strategies: tuple[str, ...] | list[str] = (),
        *,
        entitled: bool = True,
    ) -> ClientKeys:
        """A new client key pair, listed in the entitlements unless ``entitled`` is False."""
        new_key_pair(self.directory, name, keep=True)
        if entitled:
            key = self.directory / f"{name}.key"
            entitle(self.entitlements, name, key, Role(role), tuple(strategies))
        return self.keys(name)

    def revoke(self, name: str) -> None:
        revoke(self.entitlements, name)

    def keys(self, name: str) -> ClientKeys:
        """What client ``name`` connects with."""
        return ClientKeys.load(self.server_public, self.secret(name))

    def secret(self, name: str) -> Path:
        return self.directory / f"{name}.key_secret"

    def env(self, name: str) -> dict[str, str]:
        """The environment variables that make a client process connect as ``name``."""
        return {SERVER_KEY_ENV: str(self.server_public), CLIENT_KEY_ENV: str(self.secret(name))}

    def server_args(self) -> tuple[str, ...]:
        """The options of ``mock-venue serve`` and ``orderbus gateway`` for this keyring."""
        return ("--server-key", str(self.server_secret), "--entitlements", str(self.entitlements))

    def server_options(self) -> dict[str, Any]:
        """The keyword arguments of ``bus.server.Server`` for this keyring."""
        return {"key": ServerKey.load(self.server_secret), "access": Access(self.entitlements)}
