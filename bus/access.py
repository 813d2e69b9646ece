"""Who may do what on the bus: entitlements, and the decisions made on them (no sockets).

A server run with a CURVE key knows each message's sender by its authenticated public key (the
frame's ``User-Id``). The entitlements file names each key, gives it a role and the strategy ids
it may act for; ``Access`` answers, for one key, whether it may send a request, subscribe to a
topic or use the control channel. Without a key (development mode) every peer may do everything,
as on a venue of one's own. docs/security.md.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

import yaml
import zmq
import zmq.auth
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from zmq.utils import z85

from bus.codec import Keepalive, Replay, Sync, strategy_of_topic
from ports.models import (
    AmendOrder,
    CancelAllOrders,
    CancelOrder,
    ListOpenOrders,
    QueryOrder,
    SubmitOrder,
)
from ports.positions import QueryPositions


class Role(StrEnum):
    """What a key may do beyond acting for its strategies."""

    STRATEGY = "strategy"  # its own strategies only
    MONITOR = "monitor"  # also reads every strategy's orders and streams
    ADMIN = "admin"  # also reads everything, and the control channel


class Client(BaseModel):
    """One entry of the entitlements file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:@-]+$")
    key: str = Field(description="Its public key: z85 (40 characters) or a certificate file.")
    role: Role = Role.STRATEGY
    strategies: tuple[str, ...] = Field(
        default=(), description="Strategy ids it may act for; shell patterns ('mm-*') allowed."
    )

    @field_validator("strategies", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return (value,) if isinstance(value, str) else value


class _File(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    clients: tuple[Client, ...] = ()


class EntitlementsError(ValueError):
    """An entitlements file that cannot be used (the server keeps the entitlements it had)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated peer: its name, role and the strategy patterns it acts for."""

    name: str
    role: Role
    strategies: tuple[str, ...]

    @property
    def reads_all(self) -> bool:
        return self.role is not Role.STRATEGY

    def acts_for(self, strategy_id: str) -> bool:
        return any(fnmatch.fnmatchcase(strategy_id, p) for p in self.strategies)

    def reads(self, strategy_id: str | None) -> bool:
        """May read ``strategy_id``'s orders and stream (None: the all-events stream)."""
        return self.reads_all or (strategy_id is not None and self.acts_for(strategy_id))

    def covers(self, other: Principal) -> bool:
        """Grants at least what ``other`` grants (a reload that narrows a key is a revocation)."""
        rank = {Role.STRATEGY: 0, Role.MONITOR: 1, Role.ADMIN: 2}
        return rank[self.role] >= rank[other.role] and set(other.strategies) <= set(self.strategies)


DEVELOPER: Final = Principal("developer", Role.ADMIN, ("*",))
"""Every peer of a server run without a key."""

_WRITES = (SubmitOrder, AmendOrder, CancelOrder, CancelAllOrders)
_READS = (QueryOrder, ListOpenOrders, Sync, Replay, Keepalive, QueryPositions)


def is_z85_key(value: str) -> bool:
    """A 32-byte key in z85 text (40 characters; '/' and '.' among them)."""
    if len(value) != 40:
        return False
    try:
        return len(z85.decode(value)) == 32
    except (ValueError, KeyError, TypeError):
        return False


def load_entitlements(path: Path) -> dict[str, Principal]:
    """The file's clients by z85 public key. Raises ``EntitlementsError`` naming the problem."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
        parsed = _File.model_validate(data)
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise EntitlementsError(f"cannot use {path}: {exc}") from None
    by_key: dict[str, Principal] = {}
    names: set[str] = set()
    for client in parsed.clients:
        key = _public_key(client.key, path.parent)
        if key in by_key or client.name in names:
            raise EntitlementsError(f"{path}: {client.name!r} or its key is listed twice")
        names.add(client.name)
        by_key[key] = Principal(client.name, client.role, client.strategies)
    return by_key


def _public_key(value: str, base: Path) -> str:
    if is_z85_key(value) and not (base / value).exists():
        return value
    file = Path(value) if Path(value).is_absolute() else base / value
    try:
        public, _ = zmq.auth.load_certificate(file)
    except (OSError, ValueError) as exc:
        raise EntitlementsError(f"key {value!r}: not a z85 key nor a certificate: {exc}") from None
    return str(public.decode())


class Access:
    """The decisions for one server. ``entitlements`` None: development mode, everyone is
    ``DEVELOPER``. ``reload()`` re-reads the file; a key it drops or narrows is refused from the
    next message on."""

    def __init__(self, entitlements: Path | None = None) -> None:
        self.path = entitlements
        self._by_key = {} if entitlements is None else load_entitlements(entitlements)
        self.refused = 0  # requests, subscriptions and control commands refused

    @property
    def secure(self) -> bool:
        return self.path is not None

    @property
    def keys(self) -> int:
        return len(self._by_key)

    def reload(self) -> bool:
        """Read the file again. True if a key lost anything (its open subscriptions must be
        made again, under the new entitlements). Raises ``EntitlementsError``, keeping the old."""
        if self.path is None:
            return False
        fresh = load_entitlements(self.path)
        narrowed = any(
            key not in fresh or not fresh[key].covers(old) for key, old in self._by_key.items()
        )
        self._by_key = fresh
        return narrowed

    def known(self, key: str) -> bool:
        """The ZAP question: may this z85 key connect at all?"""
        return key in self._by_key

    def principal(self, user: str | None) -> Principal | None:
        """Who sent a message with ``User-Id`` ``user`` (None: nobody we know)."""
        if self.path is None:
            return DEVELOPER
        return None if user is None else self._by_key.get(user)

    def refusal(self, who: Principal | None, request: BaseModel) -> str | None:
        """Why ``who`` may not send ``request`` (None: it may). Names only the caller and the
        strategy it asked for: nothing about that strategy's orders."""
        if who is None:
            return "this key is not entitled to anything on this server"
        strategy = getattr(request, "strategy_id", None)
        if isinstance(request, _WRITES):
            allowed = strategy is not None and who.acts_for(strategy)
        elif isinstance(request, _READS):
            allowed = who.reads(strategy)
        else:
            return None  # not a request: the protocol refuses it as such
        if allowed:
            return None
        target = "the all-events stream" if strategy is None else f"strategy {strategy!r}"
        return f"{who.name} is not authorized for {target}"

    def may_subscribe(self, who: Principal | None, topic: bytes) -> bool:
        """A subscription to ``topic``: one strategy's exact topic, or (monitors, admins) any."""
        if who is None:
            return False
        if who.reads_all:
            return True
        strategy = strategy_of_topic(topic)
        return strategy is not None and who.acts_for(strategy)

    @staticmethod
    def may_control(who: Principal | None) -> bool:
        return who is not None and who.role is Role.ADMIN
