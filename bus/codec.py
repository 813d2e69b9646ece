"""The wire format: a versioned msgpack envelope around a pydantic model. See docs/protocol.md.

Every message is one msgpack map ``{"v": 1, "t": type, "id": request id, "c": client id,
"b": body}`` (``id`` and ``c`` only on the command channel). Decimals travel as strings,
timestamps as the msgpack Timestamp extension. Bodies are validated with the port's models at the
edge: nothing unvalidated gets past ``decode``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Final

import msgpack
from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError

from ports.enums import ErrorReason
from ports.models import (
    Acknowledgement,
    AmendOrder,
    CancelAllAcknowledgement,
    CancelAllOrders,
    CancelOrder,
    ExecutionReport,
    Identifier,
    Instant,
    ListOpenOrders,
    OpenOrders,
    OrderSnapshot,
    PortEvent,
    QueryOrder,
    Rejection,
    SubmitOrder,
)
from ports.positions import PositionsSnapshot, QueryPositions

PROTOCOL_VERSION: Final = 1
MAX_FRAME_BYTES: Final = 64 * 1024
"""Largest frame the venue accepts; bigger ones get a PROTOCOL_ERROR reply."""
MAX_CLIENT_ID: Final = 128
"""Longest client id (``c``) a venue accepts: it keys the client's retry window."""
MAX_REPLAY: Final = 1000
"""Most events one ReplayReply carries."""


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)  # as ports.models


MAX_DISCONNECT_TIMEOUT: Final = 3600.0
"""The longest cancel-on-disconnect timeout a client may ask for, in seconds."""


class Sync(_Wire):
    """Client -> venue on (re)connect: where does my stream stand? ``cancel_on_disconnect``:
    cancel the strategy's open orders if this client is silent for that many seconds."""

    strategy_id: Identifier
    cancel_on_disconnect: float | None = Field(default=None, gt=0, le=MAX_DISCONNECT_TIMEOUT)


class Canceled(_Wire):
    """In a ``SyncReply``: the strategy's open orders were canceled on a disconnect since its
    last sync (``at``: the venue's time; ``client_id``: whose silence; ``timeout``: its)."""

    at: Instant
    client_id: str = Field(max_length=2 * MAX_CLIENT_ID + 64)
    timeout: float = Field(gt=0)


class Keepalive(_Wire):
    """Client -> venue: still here, and (re-)arm cancel on disconnect with this timeout (any
    request counts as a sign of life as well). ``cancel_on_disconnect`` None disarms it: a
    client that closes cleanly says so, and its strategy's orders stay."""

    strategy_id: Identifier
    cancel_on_disconnect: float | None = Field(default=None, gt=0, le=MAX_DISCONNECT_TIMEOUT)


class KeepaliveReply(_Wire):
    """Venue -> client: whether cancel on disconnect is armed for this client now, and, once,
    whether it fired for this client since (``canceled``: it was silent past its timeout)."""

    strategy_id: Identifier
    armed: bool
    canceled: Canceled | None = None


class SyncReply(_Wire):
    """The stream's latest sequence number and the strategy's open orders at that point (the
    first page of them: ``next_after``)."""

    session: str = Field(min_length=1, max_length=64)
    instance: str = Field(min_length=1, max_length=64)
    strategy_id: Identifier
    seq: int = Field(ge=0)
    venue_seq: int = Field(ge=0)
    open_orders: Annotated[tuple[OrderSnapshot, ...], Strict(False)]
    next_after: int | None = Field(default=None, ge=0)
    """More open orders than this first page: ``list_open_orders`` with ``after`` = it."""
    canceled_on_disconnect: Canceled | None = None
    server_time: Instant | None = None
    """The server's wall clock when it answered: a client stamps deadlines on it."""


class Replay(_Wire):
    """Client -> venue: resend events ``from_seq`` to ``to_seq`` inclusive of one strategy's
    stream (numbered by ``seq``), or of the all-events stream (``strategy_id`` None, numbered by
    ``venue_seq``)."""

    strategy_id: Identifier | None
    from_seq: int = Field(ge=1)
    to_seq: int = Field(ge=1)


class ReplayReply(_Wire):
    """The requested events as the very frames that were published, in order. At most
    ``MAX_REPLAY`` at a time: ask again from the next sequence number for more."""

    strategy_id: Identifier | None
    events: Annotated[tuple[bytes, ...], Strict(False)]


class Heartbeat(_Wire):
    """Published every heartbeat interval: the latest sequence number of every stream, so a
    subscriber notices a lost last message too. ``session`` names the venue's state (its sequence
    numbers, orders and stored replies): it survives a restart that recovers its journal and changes
    when the venue starts afresh. ``instance`` changes with every start of the venue process."""

    session: str = Field(min_length=1, max_length=64)
    instance: str = Field(min_length=1, max_length=64)
    venue_seq: int = Field(ge=0)
    seqs: dict[str, int]
    venue_time: Instant


class MessageType(StrEnum):
    """The ``t`` field of the envelope."""

    # command channel, client -> venue
    SUBMIT_ORDER = "submit_order"
    AMEND_ORDER = "amend_order"
    CANCEL_ORDER = "cancel_order"
    CANCEL_ALL_ORDERS = "cancel_all_orders"
    QUERY_ORDER = "query_order"
    LIST_OPEN_ORDERS = "list_open_orders"
    SYNC = "sync"
    REPLAY = "replay"
    KEEPALIVE = "keepalive"
    QUERY_POSITIONS = "query_positions"
    # command channel, venue -> client
    ACK = "ack"
    CANCEL_ALL_ACK = "cancel_all_ack"
    ORDER_SNAPSHOT = "order_snapshot"
    OPEN_ORDERS = "open_orders"
    SYNC_REPLY = "sync_reply"
    REPLAY_REPLY = "replay_reply"
    KEEPALIVE_REPLY = "keepalive_reply"
    POSITIONS_SNAPSHOT = "positions_snapshot"
    ERROR = "error"
    # event channel
    EXECUTION_REPORT = "execution_report"
    HEARTBEAT = "heartbeat"
    PORT_EVENT = "port_event"  # a gateway relays its hosted port's events (not numbered)


MODELS: Final[Mapping[str, type[BaseModel]]] = {
    MessageType.SUBMIT_ORDER: SubmitOrder,
    MessageType.AMEND_ORDER: AmendOrder,
    MessageType.CANCEL_ORDER: CancelOrder,
    MessageType.CANCEL_ALL_ORDERS: CancelAllOrders,
    MessageType.QUERY_ORDER: QueryOrder,
    MessageType.LIST_OPEN_ORDERS: ListOpenOrders,
    MessageType.SYNC: Sync,
    MessageType.REPLAY: Replay,
    MessageType.KEEPALIVE: Keepalive,
    MessageType.QUERY_POSITIONS: QueryPositions,
    MessageType.ACK: Acknowledgement,
    MessageType.CANCEL_ALL_ACK: CancelAllAcknowledgement,
    MessageType.ORDER_SNAPSHOT: OrderSnapshot,
    MessageType.OPEN_ORDERS: OpenOrders,
    MessageType.SYNC_REPLY: SyncReply,
    MessageType.REPLAY_REPLY: ReplayReply,
    MessageType.KEEPALIVE_REPLY: KeepaliveReply,
    MessageType.POSITIONS_SNAPSHOT: PositionsSnapshot,
    MessageType.ERROR: Rejection,
    MessageType.EXECUTION_REPORT: ExecutionReport,
    MessageType.HEARTBEAT: Heartbeat,
    MessageType.PORT_EVENT: PortEvent,
}
TYPES: Final[Mapping[type[BaseModel], str]] = {model: name for name, model in MODELS.items()}

# Topics on the event channel. A NUL ends each strategy topic (identifiers never contain one), so
# subscribing to strategy "s1" does not also match "s10"; subscribing to b"S" gets every strategy.
EVENTS_PREFIX: Final = b"S"
HEARTBEAT_TOPIC: Final = b"H"


def strategy_topic(strategy_id: str) -> bytes:
    """The event-channel topic of one strategy's stream."""
    return EVENTS_PREFIX + strategy_id.encode() + b"\x00"


def strategy_of_topic(topic: bytes) -> str | None:
    """The strategy whose stream ``topic`` is exactly, or None (a prefix, the heartbeat topic,
    anything else)."""
    if len(topic) < 3 or topic[:1] != EVENTS_PREFIX or not topic.endswith(b"\x00"):
        return None
    try:
        strategy = topic[1:-1].decode()
    except UnicodeDecodeError:
        return None
    return None if "\x00" in strategy else strategy


class WireError(Exception):
    """A frame that is not a valid message. ``request_id``/``client_id`` are set when they could
    be read, so the sender can still get a typed error reply."""

    def __init__(
        self,
        message: str,
        *,
        reason: ErrorReason = ErrorReason.PROTOCOL_ERROR,
        request_id: int | None = None,
        client_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.request_id = request_id
        self.client_id = client_id

    def to_rejection(self) -> Rejection:
        return Rejection(reason=self.reason, message=self.message)


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded, validated message."""

    type: str
    body: BaseModel
    request_id: int | None = None
    client_id: str | None = None
    deadline: datetime | None = None


def _default(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def encode(
    body: BaseModel,
    *,
    request_id: int | None = None,
    client_id: str | None = None,
    types: Mapping[type[BaseModel], str] = TYPES,
    deadline: datetime | None = None,
) -> bytes:
    """One frame carrying ``body`` (``deadline``: of a request, after which the server must
    not carry it out)."""
    envelope: dict[str, Any] = {"v": PROTOCOL_VERSION, "t": types[type(body)]}
    if request_id is not None:
        envelope["id"] = request_id
    if client_id is not None:
        envelope["c"] = client_id
    if deadline is not None:
        envelope["d"] = deadline
    envelope["b"] = body.model_dump(mode="python")
    return msgpack.packb(envelope, default=_default, datetime=True)  # type: ignore[no-any-return]


_ENVELOPE_FIELDS: Final = frozenset({"v", "t", "id", "c", "d", "b"})


def decode(
    frame: bytes,
    *,
    models: Mapping[str, type[BaseModel]] = MODELS,
    max_bytes: int | None = MAX_FRAME_BYTES,
) -> Envelope:
    """Parse and validate one frame. Raises ``WireError`` saying what is wrong.

    ``max_bytes`` guards the venue against oversized requests; clients pass None, since what the
    venue sends them (a replay, a sync of many open orders) may be larger."""
    if max_bytes is not None and len(frame) > max_bytes:
        raise WireError(f"frame of {len(frame)} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")
    try:
        raw = msgpack.unpackb(frame, timestamp=3, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types for malformed input
        request_id, client_id = ids_of(frame)
        raise WireError(
            f"not msgpack: {str(exc) or type(exc).__name__}",
            request_id=request_id,
            client_id=client_id,
        ) from None
    if not isinstance(raw, dict):
        raise WireError("a message is a msgpack map")
    request_id = raw.get("id")
    client_id = raw.get("c")
    # type() rather than isinstance: this runs on every message, and it also refuses bools.
    if not (request_id is None or (type(request_id) is int and request_id >= 0)):
        raise WireError("'id' must be a non-negative integer")
    if not ("c" not in raw or (type(client_id) is str and len(client_id) <= MAX_CLIENT_ID)):
        raise WireError(
            f"'c' must be a string of at most {MAX_CLIENT_ID} characters", request_id=request_id
        )
    version = raw.get("v")
    if type(version) is not int or version != PROTOCOL_VERSION:  # neither true nor 1.0
        raise WireError(
            f"protocol version {version!r} is not supported; this venue speaks {PROTOCOL_VERSION}",
            request_id=request_id,
            client_id=client_id,
        )
    message_type = raw.get("t")
    model = models.get(message_type) if isinstance(message_type, str) else None
    if model is None:
        raise WireError(
            f"unknown message type {raw.get('t')!r}", request_id=request_id, client_id=client_id
        )
    if not raw.keys() <= _ENVELOPE_FIELDS:
        unknown = sorted(set(raw) - _ENVELOPE_FIELDS, key=repr)  # keys may be str and bin
        raise WireError(
            f"unknown envelope fields {unknown}", request_id=request_id, client_id=client_id
        )
    try:
        body = model.model_validate(raw.get("b"))
    except ValidationError as exc:
        raise WireError(
            f"invalid {raw['t']}: {_summary(exc)}",
            reason=ErrorReason.INVALID_REQUEST,
            request_id=request_id,
            client_id=client_id,
        ) from None
    deadline = raw.get("d")
    if not (deadline is None or type(deadline) is datetime):
        raise WireError(
            "'d' must be a Timestamp (the request's deadline)",
            request_id=request_id,
            client_id=client_id,
        )
    return Envelope(raw["t"], body, request_id, client_id, deadline)


def ids_of(frame: bytes) -> tuple[int | None, str | None]:
    """The ``id`` and ``c`` of a frame that could not be read or processed, if a lenient reading
    finds them (a timestamp out of datetime's range, for one): its error reply can then be
    matched. A frame over ``MAX_FRAME_BYTES`` is not read at all."""
    if len(frame) > MAX_FRAME_BYTES:
        return None, None
    # Entry by entry, so that a body nested too deeply to read does not hide an id before it.
    unpacker = msgpack.Unpacker(timestamp=0, strict_map_key=False)
    unpacker.feed(frame)
    found: dict[str, object] = {}
    with contextlib.suppress(Exception):
        for _ in range(unpacker.read_map_header()):
            key = unpacker.unpack()
            if key in ("id", "c"):
                found[key] = unpacker.unpack()
            else:
                unpacker.skip()
    request_id, client_id = found.get("id"), found.get("c")
    return (
        request_id if type(request_id) is int and request_id >= 0 else None,
        client_id if type(client_id) is str else None,
    )


def _summary(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in exc.errors()
    )
