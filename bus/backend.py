"""What a server hosts, and what it offers what it hosts.

A ``Backend`` answers requests and produces reports: the mock venue's engine
(``mock_venue.backend``), or any ``OrderExecutionPort`` (``bus.gateway``). The server
(``bus.server``) owns the sockets, time and the protocol (``bus.venue_protocol``): idempotency,
sequence numbers, replay, sync, heartbeats. A backend hands its outputs to ``Host.deliver``, at
once or later; the server encodes, keeps and sends them.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from bus.codec import Sync
from bus.limits import LimitsStatus
from bus.risk_models import RISK_CONTROL_MODELS
from bus.venue_protocol import Event, RequestKey, VenueProtocol
from ports.enums import ErrorReason, Outcome
from ports.models import ExecutionReport, PortEvent, Rejection, Request


class GetStatus(BaseModel):
    """Control channel: ask a server what it holds (every backend answers it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ReloadEntitlements(BaseModel):
    """Control channel (admins): read the entitlements file again, as SIGHUP does."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class EntitlementsReloaded(BaseModel):
    """The entitlements in force: how many keys; whether subscribers had to subscribe again
    (a key lost something)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    keys: int
    resubscribed: bool


class SecurityStatus(BaseModel):
    """What protects a server's channels (``mode``: ``curve``, ``plaintext, loopback only`` or
    ``plaintext, insecure``) and what it refused: requests, subscriptions and control commands
    (``refused``), and handshakes of unknown keys."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: str
    keys: int = 0
    refused: int = 0
    handshakes_denied: int = 0
    subscribed_streams: int = 0


SERVER_CONTROL_MODELS: Mapping[str, type[BaseModel]] = {
    "reload_entitlements": ReloadEntitlements,
    "entitlements_reloaded": EntitlementsReloaded,
    **RISK_CONTROL_MODELS,
}
"""Control messages every server answers itself, whatever its backend."""


@dataclass(slots=True)
class Answer:
    """The result of request ``key``. ``recall``: a token the backend's ``recall`` turns back
    into the result, kept instead of the frame. ``delivered`` False: kept for a retry, not sent
    (a reply the backend drops on purpose). A sync is answered with ``OpenOrders``."""

    key: RequestKey
    result: BaseModel
    recall: Hashable | None = None
    delivered: bool = True


@dataclass(slots=True)
class Report:
    """An execution report for its strategy's stream (numbered by the protocol)."""

    report: ExecutionReport


@dataclass(slots=True)
class Notice:
    """A port event for one strategy's stream (not numbered, not replayed)."""

    strategy_id: str
    event: PortEvent


Output = Answer | Report | Notice


def failed(request: Request | Sync, message: str, outcome: Outcome) -> Rejection:
    """The answer to a request its backend could not carry out (it raised, or returned what the
    wire cannot carry): ``venue_rejected``, with ``outcome`` saying whether it may have acted."""
    return Rejection(
        reason=ErrorReason.VENUE_REJECTED,
        message=message,
        outcome=outcome,
        client_order_id=getattr(request, "client_order_id", None),
    )


class Host(Protocol):
    """What the server offers its backend."""

    @property
    def protocol(self) -> VenueProtocol: ...

    @property
    def unroutable_replies(self) -> int: ...

    @property
    def security(self) -> SecurityStatus: ...

    @property
    def limits(self) -> LimitsStatus: ...

    def deliver(
        self,
        outputs: Sequence[Output],
        *,
        before_send: Callable[[list[bytes]], None] | None = None,
        send: bool = True,
    ) -> None:
        """Take a step's outputs. ``before_send`` gets every frame they encode to (events, then
        replies) before anything of them leaves: a journal writes them down. ``send`` False:
        keep them (store, numbers) without sending (a journal recovery)."""

    def flush(self) -> None:
        """Send what has been delivered."""

    def rebind(self) -> None:
        """Close the command and event sockets and bind them again: every peer loses its
        connection (a fault a test injects)."""


class EventFilter(Protocol):
    """A hook between the protocol and the event socket, for transport faults."""

    def active(self) -> bool:
        """Whether ``route`` must see events (else they are published as they come)."""

    def route(self, events: list[Event]) -> list[Event]:
        """Of these events (and any held back), those to publish now, in order."""

    def before_heartbeat(self) -> list[Event] | None:
        """Events to publish before a heartbeat; None: publishing is paused, no heartbeat."""

    def release(self) -> list[Event]:
        """Everything held back (the server stops)."""

    def next_due(self) -> float | None:
        """When (monotonic seconds) ``route([])`` has something to release by itself."""


class Backend(Protocol):
    """What a server hosts. Called from the server's loop only."""

    @property
    def session(self) -> str | None:
        """The state the backend carries on (a recovered journal's), or None: a new one."""

    @property
    def control_models(self) -> Mapping[str, type[BaseModel]]:
        """Message types of the control channel, by name (requests and answers)."""

    @property
    def events(self) -> EventFilter | None:
        """The transport-fault hook, if the backend has one."""

    def start(self, host: Host) -> None:
        """Called once, before serving (a journal is recovered through ``host`` here)."""

    def execute(self, key: RequestKey, request: Request | Sync, frame: bytes) -> None:
        """Work on a request; its answer and reports go to ``Host.deliver``, now or later."""

    def recall(self, token: Hashable) -> BaseModel | None:
        """The result an ``Answer.recall`` token stands for."""

    def control(self, command: BaseModel, frame: bytes) -> BaseModel:
        """Carry out a control command; its answer. ValueError/TypeError: a typed refusal."""

    def poll(self, now: float) -> None:
        """Timers due at ``now`` (monotonic seconds), and work finished elsewhere."""

    def next_due(self, now: float) -> float | None:
        """When (monotonic seconds) ``poll`` has something to do next."""

    def fileno(self) -> int | None:
        """A file descriptor that becomes readable when ``poll`` has work (None: none)."""

    def venue_time(self) -> datetime:
        """The time heartbeats carry."""

    def close(self) -> None:
        """Release what the backend holds (the server has stopped)."""
