"""What docs/protocol.md says a venue owes one message on its command or control channel.

``owed`` reads a message the way docs/protocol.md says the venue reads it (1.2 framing; 2.2,
checks 1 to 8 and 10; the entry-by-entry reading of an unreadable frame's ``id``) and says what
reply it is owed. It imports nothing from ``bus``: it is the documented reading, so that a venue
that strays from the document is caught instead of mirrored. It never looks at how a frame was
made; the generator asks it one thing only, to throw away the rare damaged frame whose bytes
happen to spell an id of another message (the replies would no longer say whose they are).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import msgpack

MAX_FRAME_BYTES: Final = 65_536  # docs/protocol.md 2.6: larger frames are refused unread

COMMAND_ANSWERS: Final[dict[str, str]] = {
    "submit_order": "ack",
    "amend_order": "ack",
    "cancel_order": "ack",
    "cancel_all_orders": "cancel_all_ack",
    "query_order": "order_snapshot",
    "list_open_orders": "open_orders",
    "sync": "sync_reply",
    "replay": "replay_reply",
}
"""Command requests and the answer each gets when it is not an ``error`` (docs 3.1)."""
COMMAND_TYPES: Final = frozenset(COMMAND_ANSWERS) | {
    *COMMAND_ANSWERS.values(),
    "error",
    "execution_report",
    "heartbeat",
    "port_event",
}
CONTROL_ANSWERS: Final[dict[str, str]] = {
    "advance": "done",
    "fill_order": "done",
    "cancel_unsolicited": "done",
    "restate": "done",
    "inject_fault": "faults",
    "clear_faults": "done",
    "list_faults": "faults",
    "get_status": "venue_status",
    "reload_entitlements": "entitlements_reloaded",
}
"""Control commands and their answer besides ``error`` (docs 3.1 and 3.6)."""
CONTROL_TYPES: Final = frozenset(CONTROL_ANSWERS) | {*CONTROL_ANSWERS.values(), "error"}
_ENVELOPE_KEYS: Final = frozenset({"v", "t", "id", "c", "b"})


class Channel(StrEnum):
    COMMAND = "command"
    CONTROL = "control"


class Stage(StrEnum):
    """How far a message gets through the venue's checks."""

    FRAMING = "framing"  # a layout the channel does not take (docs 1.2)
    PROTOCOL = "protocol"  # fails an envelope check (docs 2.2, 1-8 and 10): protocol_error
    BODY = "body"  # a sound envelope: a typed error of any reason, or its answer


@dataclass(frozen=True, slots=True)
class Owed:
    """What the venue owes one message."""

    answered: bool  # the documents promise a reply (there is never more than one)
    request_id: int | None  # the id that reply carries; None: no id is readable
    delimited: bool  # the reply comes after an empty frame (the venue saw a REQ peer)
    stage: Stage
    answers: frozenset[str]  # reply types it may get besides "error"


def owed(channel: Channel, frames: Sequence[bytes]) -> Owed:
    """What docs/protocol.md says the venue owes ``frames`` sent by a DEALER on ``channel``."""
    command = channel is Channel.COMMAND
    if command and len(frames) == 1:
        body, delimited = frames[0], False
    elif command and len(frames) == 2 and frames[0] == b"":
        body, delimited = frames[1], True  # a DEALER that speaks like a REQ is served as one
    elif command:
        return Owed(True, None, frames[0] == b"", Stage.FRAMING, frozenset())
    elif len(frames) == 1:
        body, delimited = frames[0], False
    else:  # the control channel drops other layouts unanswered
        return Owed(False, None, False, Stage.FRAMING, frozenset())

    def refused(request_id: int | None) -> Owed:
        return Owed(True, request_id, delimited, Stage.PROTOCOL, frozenset())

    if len(body) > MAX_FRAME_BYTES:
        return refused(None)
    try:
        raw = msgpack.unpackb(body, timestamp=3, strict_map_key=True)
    except Exception:  # msgpack raises many unrelated types
        return refused(readable_id(body))
    if not isinstance(raw, dict):
        return refused(None)
    request_id, client_id = raw.get("id"), raw.get("c")
    # nil is how msgpack says "absent" (docs 2.3), so an id or c of nil is an absent one.
    if not (request_id is None or (type(request_id) is int and request_id >= 0)):
        return refused(None)
    if not (client_id is None or type(client_id) is str):
        return refused(request_id)
    version, message_type = raw.get("v"), raw.get("t")
    if not (type(version) is int and version == 1):  # an int (2.1): neither true nor 1.0
        return refused(request_id)
    types, answers = (
        (COMMAND_TYPES, COMMAND_ANSWERS) if command else (CONTROL_TYPES, CONTROL_ANSWERS)
    )
    if not (type(message_type) is str and message_type in types):
        return refused(request_id)
    if not raw.keys() <= _ENVELOPE_KEYS:
        return refused(request_id)
    if command and request_id is None:  # check 9 comes first, so any error, but without an id
        return Owed(True, None, delimited, Stage.BODY, frozenset())
    answer = answers.get(message_type)
    return Owed(
        True, request_id, delimited, Stage.BODY, frozenset(() if answer is None else {answer})
    )


def readable_id(frame: bytes) -> int | None:
    """The ``id`` of a frame that is not valid msgpack, read as docs/protocol.md 2.2 says: the
    top-level map's entries one by one (the values of ``id`` and ``c`` decoded, others skipped)
    up to the first that fails; an ``id`` before it counts."""
    unpacker = msgpack.Unpacker(timestamp=0, strict_map_key=False)
    unpacker.feed(frame)
    found: object = None
    try:
        for _ in range(unpacker.read_map_header()):
            key = unpacker.unpack()
            if key in ("id", "c"):
                value = unpacker.unpack()
                if key == "id":
                    found = value
            else:
                unpacker.skip()
    except Exception:  # where the reading stops
        pass
    return found if type(found) is int and found >= 0 else None
