"""What ``bus.client_protocol.ClientProtocol`` tells the port: typed events, one list per call."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from ports.models import ExecutionReport, PortEvent, Rejection


# Plain slotted dataclasses, not frozen ones: a frozen one sets each field through
# object.__setattr__, and one is built for every reply and every event. The shell only reads them.
@dataclass(slots=True)
class ReplyReceived:
    """The answer to a request the port sent with ``send``: deliver it. Once per request: on
    time, or late (after its ``RequestExpired``: an order in doubt may settle by it)."""

    request_id: int
    body: BaseModel


@dataclass(slots=True)
class ReplyUnreadable:
    """The venue answered a request the port sent with ``send``, but its frame could not be read
    (``message`` says why): what the venue did is not known, and no other answer will come."""

    request_id: int
    message: str


@dataclass(slots=True)
class RequestExpired:
    """A request the port sent got no answer by its deadline; nothing more is sent for it."""

    request_id: int


@dataclass(slots=True)
class ReportsReady:
    """Execution reports to deliver, in stream order, each once."""

    reports: list[ExecutionReport]


@dataclass(slots=True)
class PortEventRaised:
    """Something the protocol noticed about the venue (connection lost or restored, venue
    restarted or reset): report it, and act on it."""

    event: PortEvent


@dataclass(slots=True)
class PortEventRelayed:
    """A port event a gateway relayed (a ``port_event`` frame): report it, nothing more."""

    event: PortEvent


@dataclass(slots=True)
class FramesToSend:
    """The protocol's own frames to send now (resends, syncs, replays), with their request ids:
    tell ``unsent`` of one that finds no connection."""

    frames: list[tuple[int, bytes]]


@dataclass(slots=True)
class StreamStarted:
    """The first sync was answered: the stream is delivered from here on."""


@dataclass(slots=True)
class StartFailed:
    """No venue answered the first sync within ``timeout`` seconds, or (``unreadable``) its
    answer could not be read, for that reason, or the venue ``refused`` it."""

    timeout: float
    unreadable: str | None = None
    refused: Rejection | None = None


ClientEvent = (
    ReplyReceived
    | ReplyUnreadable
    | RequestExpired
    | ReportsReady
    | PortEventRaised
    | PortEventRelayed
    | FramesToSend
    | StreamStarted
    | StartFailed
)
