"""Hosts on one machine: Linux network namespaces joined by a bridge, for multi-host tests.

``Network`` makes a "switch" namespace holding a bridge, and one namespace per host, each joined
to the bridge by a veth pair (``eth0`` in the host, a port named after the host in the switch)
with an address of its own. Nothing is routed to or from the machine's own namespace: the hosts
reach each other and their own loopback only. Needs root and iproute2 (``ip``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from types import TracebackType
from typing import Self

SUBNET = "10.213.0"  # /24, private to the namespaces of one Network


class NetnsError(RuntimeError):
    """An ``ip`` command failed."""


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def unavailable() -> str | None:
    """Why namespaces cannot be made here (None: they can). Tries, rather than guessing from
    the uid: a container may be root without CAP_SYS_ADMIN."""
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2) on this machine"
    probe = f"ob{os.getpid()}-probe"
    try:
        _ip("netns", "add", probe)
    except NetnsError as exc:
        return f"cannot create a network namespace ({exc}); needs root or CAP_SYS_ADMIN"
    except OSError as exc:
        return f"cannot run `ip`: {exc}"
    _ip("netns", "del", probe)
    return None


@dataclass(frozen=True)
class Host:
    """A namespace with one interface, ``eth0``, on the network's bridge."""

    name: str
    namespace: str
    address: str

    def command(self, *argv: str) -> list[str]:
        """``argv`` run inside this host (``ip netns exec`` execs it: the pid is argv's)."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    def link(self, up: bool) -> None:
        """Plug the host's cable in or pull it out (its TCP connections stay, unanswered)."""
        _ip("-n", self.namespace, "link", "set", "eth0", "up" if up else "down")


class Network:
    """A bridge in namespace ``{prefix}-switch`` and the hosts ``add``-ed to it. ``close()``
    deletes every namespace it made, also after a failure half-way through ``add``."""

    def __init__(self, prefix: str | None = None) -> None:
        # Per process: concurrent runs never collide, and `ip netns list` tells whose they are.
        self.prefix = prefix or f"ob{os.getpid()}"
        self.switch = f"{self.prefix}-switch"
        self.hosts: dict[str, Host] = {}
        self._namespaces: list[str] = []
        try:
            self._add_namespace(self.switch)
            _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.switch, "link", "set", "br0", "up")
        except BaseException:
            self.close()
            raise

    def _add_namespace(self, name: str) -> None:
        _ip("netns", "add", name)
        self._namespaces.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def add(self, name: str, number: int) -> Host:
        """Host ``name`` at ``SUBNET.number``."""
        host = Host(name, f"{self.prefix}-{name}", f"{SUBNET}.{number}")
        self._add_namespace(host.namespace)
        port = f"p{number}"  # interface names are short (15 bytes); the switch's are its own
        _ip("-n", self.switch, "link", "add", port, "type", "veth",
            "peer", "name", "eth0", "netns", host.namespace)  # fmt: skip
        _ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
        _ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", "eth0")
        _ip("-n", host.namespace, "link", "set", "eth0", "up")
        self.hosts[name] = host
        return host

    def close(self) -> None:
        """Delete the namespaces (their veths and the bridge go with them)."""
        failures = []
        while self._namespaces:
            name = self._namespaces.pop()
            try:
                _ip("netns", "del", name)
            except NetnsError as exc:
                failures.append(str(exc))
        if failures:
            raise NetnsError("; ".join(failures))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
