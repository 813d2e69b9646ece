"""Seeded fuzz frames for a venue's command and control channels, and what each one is owed.

``FrameGenerator`` makes the messages: mutations of valid envelopes of every message type (wrong
types per field, missing and extra fields, huge strings and ints, NaN and infinite floats, bad
decimals and timestamps, deep nesting, bin for str, nil), random msgpack values, damaged msgpack,
random bytes, empty frames and multi-frame messages. The same seed gives the same messages.

``owed`` reads a message the way docs/protocol.md says the venue reads it (1.2 framing; 2.2,
checks 1 to 8 and 10; the entry-by-entry reading of an unreadable frame's ``id``) and says what
reply it is owed. It imports nothing from ``bus``: it is the documented reading, so that a venue
that strays from the document is caught instead of mirrored. It never looks at how a frame was
made; the generator asks it one thing only, to throw away the rare damaged frame whose bytes
happen to spell an id of another message (the replies would no longer say whose they are).
"""

from __future__ import annotations

import random
import string
from collections import deque
from collections.abc import Callable, Sequence
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


# --- packing what msgpack-python will not ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Raw:
    """Bytes spliced into a frame as they are: malformed msgpack, ext types, deep nesting."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Pairs:
    """A map as written, in order: duplicate and unhashable keys allowed."""

    items: tuple[tuple[object, object], ...]


def _header(size: int, fix: int, short: int) -> bytes:
    if size < 16:
        return bytes([fix | size])
    if size < 1 << 16:
        return bytes([short]) + size.to_bytes(2, "big")
    return bytes([short + 1]) + size.to_bytes(4, "big")


def pack(value: object) -> bytes:
    """msgpack of ``value``, which may hold ``Raw`` and ``Pairs`` anywhere."""
    if isinstance(value, Raw):
        return value.data
    if isinstance(value, Pairs | dict):
        items = value.items if isinstance(value, Pairs) else tuple(value.items())
        entries = b"".join(pack(k) + pack(v) for k, v in items)
        return _header(len(items), 0x80, 0xDE) + entries
    if isinstance(value, list | tuple):
        return _header(len(value), 0x90, 0xDC) + b"".join(pack(v) for v in value)
    frame: bytes = msgpack.packb(value)
    return frame


def ext(code: int, data: bytes) -> Raw:
    """An ext value of type ``code`` (-1: Timestamp) carrying ``data``."""
    size = len(data)
    fixed = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}
    if size in fixed:
        head = bytes([fixed[size]])
    elif size < 256:
        head = b"\xc7" + bytes([size])
    else:
        head = b"\xc8" + size.to_bytes(2, "big")
    return Raw(head + code.to_bytes(1, "big", signed=True) + data)


def timestamp(seconds: int, nanoseconds: int = 0) -> Raw:
    """A msgpack Timestamp in the smallest layout (docs 2.5)."""
    if nanoseconds == 0 and 0 <= seconds < 1 << 32:
        return ext(-1, seconds.to_bytes(4, "big"))
    if 0 <= seconds < 1 << 34:
        return ext(-1, (nanoseconds << 34 | seconds).to_bytes(8, "big"))
    return ext(-1, nanoseconds.to_bytes(4, "big") + seconds.to_bytes(8, "big", signed=True))


START: Final = 1_767_603_600  # 2026-01-05T09:00:00Z, the manual clock's start
YEAR_1: Final = -62_135_596_800  # 0001-01-01T00:00:00Z
YEAR_10000: Final = 253_402_300_800  # 10000-01-01T00:00:00Z

# --- the generator ----------------------------------------------------------------------------

SAFE_FAULT_KINDS: Final = (
    "reject_orders",
    "throttle",
    "delay_fills",
    "fill_before_change",
    "drop_events",
    "duplicate_events",
    "reorder_events",
    "pause_publishing",
)
"""The fault kinds a fuzz frame may name. Never delay_acks or drop_replies (a venue that holds or
drops replies on purpose would look like a lost reply), disconnect (the fuzzer's in-flight
messages would go down with the sockets) or crash."""

_ENUMS: Final[dict[str, tuple[str, ...]]] = {
    "side": ("buy", "sell"),
    "order_type": ("limit", "market"),
    "time_in_force": ("day", "gtc", "ioc", "fok"),
    "kind": SAFE_FAULT_KINDS,
    "reason": ("venue_rejected", "invalid_request", "throttled", "protocol_error"),
}
_FIELD_KINDS: Final[dict[str, str]] = {
    "client_order_id": "ident",
    "strategy_id": "ident",
    "instrument": "ident",
    "quantity": "decimal",
    "limit_price": "decimal",
    "price": "decimal",
    "expire_at": "time",
    "venue_time": "time",
    "from_seq": "int",
    "to_seq": "int",
    "fault_id": "int",
    "count": "int",
    "max_requests": "int",
    "venue_seq": "int",
    "seconds": "float",
    "interval": "float",
    "delay": "float",
    "probability": "float",
    **{name: "enum" for name in _ENUMS},
}
_BAD_DECIMALS: Final = (
    "NaN", "sNaN", "-NaN", "Infinity", "-Infinity", "inf", "-1", "0", "-0", "0.000", "1e12",
    "1000000000000.000000000001", "1e13", "1e-13", "1.0000000000001", "1.5000000000000",
    "abc", "1,5", " 1", "1 ", "1_000", "\u0661\u0660", "0x10", "1e999999999", "1e-999999999",
    "9" * 400, "0." + "0" * 300 + "1", "+5", "5.", ".5", "5e+0", "1E2", "", "\x00", "10.001",
)  # fmt: skip
_BAD_IDENTIFIERS: Final = (
    "", "a b", "x" * 64, "x" * 65, "\u00e9t\u00e9", "o\x00", "../..", "fz-o\n", "*", "%s",
    "fz-o", "fz-q", "IMM", "MAN", "f1", "f2", "-", ":",
)  # fmt: skip
_TYPES_ELSEWHERE: Final = (
    "submit_order", "sync", "ack", "error", "heartbeat", "execution_report", "advance",
    "get_status", "done", "venue_status", "reload_entitlements", "SUBMIT_ORDER", "submit order",
    "", "launch_rocket",
)  # fmt: skip


def _deep(rng: random.Random) -> Raw:
    depth = rng.choice((16, 500, 1024, 1025, 3000, 20_000))
    opener = rng.choice((b"\x91", b"\x81\xa1k"))  # arrays of one, or maps of one
    return Raw(opener * depth + b"\xc0")


def _bad_timestamp(rng: random.Random) -> object:
    choices: list[Callable[[], object]] = [
        lambda: timestamp(START + rng.randrange(1, 10**6)),  # a good one
        lambda: timestamp(START, rng.randrange(1, 10**9)),
        lambda: ext(-1, (rng.randrange(10**9, 1 << 30) << 34 | START).to_bytes(8, "big")),
        lambda: timestamp(YEAR_1 - rng.randrange(1, 10**6)),
        lambda: timestamp(YEAR_10000 + rng.randrange(0, 10**6)),
        lambda: timestamp(YEAR_1),
        lambda: timestamp(YEAR_10000 - 1, 999_999_999),
        lambda: timestamp(-rng.randrange(1, 1 << 62)),
        lambda: ext(-1, rng.randbytes(rng.choice((0, 1, 2, 3, 5, 7, 9, 11, 13, 16)))),
        lambda: ext(rng.choice((0, 5, 127, -2, -128)), rng.randbytes(rng.randrange(0, 12))),
        lambda: "9999-12-31T23:59:59-01:00",
        lambda: "2026-01-05T09:00:00",
        lambda: "2026-01-05T09:00:00Z",
        lambda: "0000-00-00T00:00:00Z",
        lambda: "yesterday",
        lambda: START,
        lambda: float(START),
    ]
    return rng.choice(choices)()


class FrameGenerator:
    """Fuzz messages for one channel, from ``seed``. Request ids count up from ``first_id`` and
    are never written twice (a resend repeats a whole message), so each reply names one
    message. Orders go to strategy ``strategy``; queries that return every open order mostly
    name ``quiet``, which has none, so their replies stay small."""

    def __init__(
        self,
        seed: int,
        channel: Channel,
        *,
        first_id: int = 1,
        client_id: str = "fuzzer",
        strategy: str = "fz-o",
        quiet: str = "fz-q",
    ) -> None:
        self.channel = channel
        self._rng = random.Random(f"orderbus-fuzz/{seed}/{channel.value}")
        self._next_id = first_id
        self._client_id = client_id
        self._strategy = strategy
        self._quiet = quiet
        self._orders = 0
        self._made = 0
        self._ids: list[int] = []  # the ids written into the message being made
        self._recent: deque[Fuzzed] = deque(maxlen=64)  # what a resend repeats

    # --- ids -------------------------------------------------------------------------------------

    def fresh_id(self) -> int:
        """A request id no message has had; now and then one near the top of uint64."""
        n = self._next_id
        self._next_id += 1
        roll = self._rng.random()
        rid = (1 << 64) - 1 - n if roll < 0.02 else (1 << 53) + n if roll < 0.04 else n
        self._ids.append(rid)
        return rid

    # --- messages --------------------------------------------------------------------------------

    def checkpoint(self) -> Fuzzed:
        """A well-formed request whose answer goes out after those of everything sent before it
        (the command channel answers backend requests in batches, refusals at once): a query
        for an order that does not exist, or an unknown control type."""
        self._ids = []
        rid = self.fresh_id()
        if self.channel is Channel.COMMAND:
            body = {"client_order_id": "checkpoint", "strategy_id": self._quiet}
            frame = pack({"v": 1, "t": "query_order", "id": rid, "c": self._client_id, "b": body})
        else:
            frame = pack({"v": 1, "t": "checkpoint", "id": rid, "b": {}})
        return Fuzzed((frame,), "checkpoint", (rid,), owed(self.channel, (frame,)))

    def next(self) -> Fuzzed:
        """The next message. Now and then (``resend``) one sent a little earlier, as it was:
        a retry, answered again (from the reply store if the first answer was kept)."""
        if self._recent and self._rng.random() < 0.03:
            again = self._rng.choice(self._recent)
            return Fuzzed(again.frames, f"resend:{again.kind}", again.ids, again.owed, resend=True)
        while True:
            message = self._next()
            rid = message.owed.request_id
            if rid is None or rid in message.ids:
                self._recent.append(message)
                return message

    def _next(self) -> Fuzzed:
        self._ids = []
        self._made += 1
        rng = self._rng
        roll = rng.random()
        frames: tuple[bytes, ...]
        if roll < 0.08:
            kind, frames = "valid", (pack(self._valid()[1]),)
        elif roll < 0.66:
            kind, envelope = self._mutated()
            frames = (pack(envelope),)
        elif roll < 0.78:
            kind, frame = self._damaged()
            frames = (frame,)
        elif roll < 0.83:
            kind, frames = "random-msgpack", (pack(self._random_value(3, top=True)),)
        elif roll < 0.87:
            kind, frames = "random-bytes", (rng.randbytes(rng.choice((1, 2, 5, 20, 300))),)
        elif roll < 0.89:
            kind, frames = "empty", (b"",)
        elif roll < 0.997:
            kind, frames = self._multi_frame()
        else:
            kind, frames = self._oversize()
        return Fuzzed(frames, kind, tuple(self._ids), owed(self.channel, frames))

    # --- valid envelopes -------------------------------------------------------------------------

    def _order_id(self) -> str:
        """An order submitted by now (or a little ahead), to amend, cancel or fill: this
        generator's own, or on the control channel those of the command channel's generator,
        which submits about one for every two control messages."""
        made = self._orders if self.channel is Channel.COMMAND else self._made // 2
        return f"f{self._rng.randrange(made + 5)}"

    def _valid(self) -> tuple[str, dict[str, object]]:
        """A valid envelope of a random message type of the channel, as a plain map."""
        rng = self._rng
        builders = (
            self._command_bodies() if self.channel is Channel.COMMAND else self._control_bodies()
        )
        message_type, body = rng.choice(builders)()
        envelope: dict[str, object] = {"v": 1, "t": message_type, "id": self.fresh_id()}
        if self.channel is Channel.COMMAND or rng.random() < 0.2:  # control: read but ignored
            # Now and then a client never seen before: what the venue keeps per client (stored
            # replies, rate limits) must stay bounded too.
            fresh = rng.random() < 0.1
            envelope["c"] = f"c-{rng.getrandbits(64):016x}" if fresh else self._client_id
        envelope["b"] = body
        return message_type, envelope

    def _command_bodies(self) -> list[Callable[[], tuple[str, dict[str, object]]]]:
        rng = self._rng
        strategy, quiet = self._strategy, self._quiet

        def submit() -> tuple[str, dict[str, object]]:
            self._orders += 1
            instrument, price = rng.choice(
                (("IMM", "100.00"), ("IMM", "100.00"), ("MAN", "10.00"), ("SLC", "50.00"))
            )
            market = rng.random() < 0.3
            tif = rng.choice(("day", "gtc", "ioc", "fok"))
            expires = tif in ("day", "gtc") and rng.random() < 0.3
            return "submit_order", {
                "client_order_id": f"f{self._orders}",
                "strategy_id": strategy,
                "instrument": instrument,
                "side": rng.choice(("buy", "sell")),
                "quantity": rng.choice(("10", "20", "10.0")),
                "order_type": "market" if market else "limit",
                "limit_price": None if market else price,
                "time_in_force": tif,
                "expire_at": timestamp(START + rng.randrange(60, 86_400)) if expires else None,
            }

        def amend() -> tuple[str, dict[str, object]]:
            body: dict[str, object] = {"client_order_id": self._order_id(), "strategy_id": strategy}
            if rng.random() < 0.7:
                body["quantity"] = rng.choice(("20", "30"))
            if rng.random() < 0.5 or "quantity" not in body:
                body["limit_price"] = rng.choice(("10.01", "9.99", "100.00"))
            return "amend_order", body

        def order(message_type: str) -> Callable[[], tuple[str, dict[str, object]]]:
            return lambda: (
                message_type,
                {"client_order_id": self._order_id(), "strategy_id": strategy},
            )

        def cancel_all() -> tuple[str, dict[str, object]]:
            return "cancel_all_orders", {
                "strategy_id": strategy,
                "instrument": rng.choice((None, "MAN", "IMM")),
                "side": rng.choice((None, "buy", "sell")),
            }

        def listing() -> tuple[str, dict[str, object]]:
            return "list_open_orders", {"strategy_id": quiet, "instrument": None}

        def sync() -> tuple[str, dict[str, object]]:
            return "sync", {"strategy_id": quiet}

        def replay() -> tuple[str, dict[str, object]]:
            first = rng.randrange(1, 200)
            return "replay", {
                "strategy_id": rng.choice((strategy, None)),
                "from_seq": first,
                "to_seq": first + rng.randrange(0, 8),
            }

        def not_a_request() -> tuple[str, dict[str, object]]:
            if rng.random() < 0.5:
                return "error", {"reason": "invalid_request", "message": "x"}
            return "heartbeat", {
                "session": "s",
                "instance": "i",
                "venue_seq": 0,
                "seqs": {},
                "venue_time": timestamp(START),
            }

        return [
            submit, submit, submit, amend, order("cancel_order"), order("cancel_order"),
            order("query_order"), cancel_all, listing, sync, replay, not_a_request,
        ]  # fmt: skip

    def _control_bodies(self) -> list[Callable[[], tuple[str, dict[str, object]]]]:
        rng = self._rng
        strategy = self._strategy

        def order(
            message_type: str, **extra: object
        ) -> Callable[[], tuple[str, dict[str, object]]]:
            return lambda: (
                message_type,
                {"strategy_id": strategy, "client_order_id": self._order_id(), **extra},
            )

        def advance() -> tuple[str, dict[str, object]]:
            return "advance", {"seconds": rng.choice((0.0, 0.001, 0.5, 1.0, 2.5))}

        def inject() -> tuple[str, dict[str, object]]:
            kind = rng.choice(SAFE_FAULT_KINDS)
            fault: dict[str, object] = {
                "strategy_id": rng.choice((strategy, self._quiet)),
                "instrument": None,
                "client_order_id": None,
                "probability": rng.choice((None, 0.5)),
                "kind": kind,
            }
            if kind == "throttle":
                fault.update(max_requests=rng.randrange(1, 50), interval=1.0, probability=None)
            elif kind == "delay_fills":
                fault.update(delay=0.5)
            elif kind == "pause_publishing":
                fault.update(seconds=0.2, strategy_id=None, probability=None)
            elif kind != "fill_before_change":
                fault.update(count=rng.randrange(1, 4))
            return "inject_fault", {"fault": fault}

        def clear() -> tuple[str, dict[str, object]]:
            return "clear_faults", {"fault_id": rng.choice((None, 1, rng.randrange(1, 100)))}

        def empty(message_type: str) -> Callable[[], tuple[str, dict[str, object]]]:
            return lambda: (message_type, {})

        def replies() -> tuple[str, dict[str, object]]:
            if rng.random() < 0.5:
                return "error", {"reason": "invalid_request", "message": "x"}
            return rng.choice(("done", "sync")), {}

        return [
            advance, order("fill_order", quantity=None, price=None), order("cancel_unsolicited"),
            order("restate", quantity="5"), inject, inject, clear, empty("list_faults"),
            empty("get_status"), empty("reload_entitlements"), replies,
        ]  # fmt: skip

    # --- mutations -------------------------------------------------------------------------------

    def _mutated(self) -> tuple[str, Pairs]:
        """A valid envelope with one to three things wrong (or, by chance, nothing)."""
        rng = self._rng
        message_type, envelope = self._valid()
        entries: list[list[object]] = [[k, v] for k, v in envelope.items()]
        names: list[str] = []
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3))):
            body = next((e for e in entries if e[0] == "b" and isinstance(e[1], dict)), None)
            if body is not None and rng.random() < 0.55:
                assert isinstance(body[1], dict)
                names.append(self._mutate_body(body))
            else:
                names.append(self._mutate_envelope(entries))
        return f"{message_type}:{'+'.join(names)}", Pairs(tuple((k, v) for k, v in entries))

    def _mutate_envelope(self, entries: list[list[object]]) -> str:
        rng = self._rng
        key = rng.choice(("v", "t", "id", "c", "b"))
        entry = next((e for e in entries if e[0] == key), None)
        op = rng.choice(("drop", "set", "set", "set", "extra", "bin-key", "twice", "reorder"))
        if op == "drop" and entry is not None:
            entries.remove(entry)
        elif op == "set":
            value = self._bad_envelope_value(key)
            if entry is None:
                entries.append([key, value])
            else:
                entry[1] = value
        elif op == "extra":
            extra_key = rng.choice(
                ("x", "V", "id2", "", b"x", 1, None, 1.5, True, Raw(b"\x91\x01"))
            )
            entries.insert(rng.randrange(len(entries) + 1), [extra_key, self._bad_value("any")])
        elif op == "bin-key" and entry is not None:
            entry[0] = key.encode()
        elif op == "twice":
            entries.insert(rng.randrange(len(entries) + 1), [key, self._bad_envelope_value(key)])
        else:
            op = "reorder"
            rng.shuffle(entries)  # a body (even one that fails) before the id
        return f"{op}-{key}"

    def _bad_envelope_value(self, key: str) -> object:
        rng = self._rng
        if key == "v":
            return rng.choice((2, 0, -1, "1", 1.0, True, None, (1 << 64) - 1, [1], b"\x01"))
        if key == "t":
            if rng.random() < 0.6:
                return rng.choice(_TYPES_ELSEWHERE)
            return self._bad_value("any")
        if key == "id":
            roll = rng.random()
            if roll < 0.3:
                return self.fresh_id()  # another readable id, replacing the first
            if roll < 0.4:
                rid = self.fresh_id()  # written, but in a form nobody may read
                return rng.choice((str(rid), float(rid), [rid], {"id": rid}, str(rid).encode()))
            return rng.choice(
                (-1, -(1 << 63), 1.5, float("nan"), True, False, None, "", _deep(rng))
            )
        if key == "c":
            return rng.choice((5, None, "", "x" * 10_000, b"fuzzer", ["fuzzer"], True, "\u00e9"))
        return self._bad_value("any")

    def _mutate_body(self, body_entry: list[object]) -> str:
        rng = self._rng
        body = body_entry[1]
        assert isinstance(body, dict)
        fields = list(body)
        if "fault" in body and isinstance(body["fault"], dict) and rng.random() < 0.7:
            fault = dict(body["fault"])
            inner = self._mutate_fields(fault, list(fault))
            body_entry[1] = {**body, "fault": fault}
            return f"fault.{inner}"
        if rng.random() < 0.12:
            op = rng.choice(("bin-key", "int-key", "replace"))
            if op == "replace":
                body_entry[1] = self._bad_value("any")
            elif fields:
                field = rng.choice(fields)
                new_key: object = field.encode() if op == "bin-key" else rng.randrange(-5, 5)
                body_entry[1] = Pairs(
                    tuple((new_key if k == field else k, v) for k, v in body.items())
                )
            return f"body-{op}"
        new_body = dict(body)
        name = self._mutate_fields(new_body, fields)
        body_entry[1] = new_body
        return name

    def _mutate_fields(self, body: dict[str, object], fields: list[str]) -> str:
        rng = self._rng
        op = rng.choice(("drop", "set", "set", "set", "nil", "bin", "extra"))
        if op == "extra" or not fields:
            body[rng.choice(("colour", "x" * 100, "Quantity", "id"))] = self._bad_value("any")
            return "extra"
        field = rng.choice(fields)
        if op == "drop":
            del body[field]
        elif op == "nil":
            body[field] = None
        elif op == "bin" and isinstance(body[field], str):
            body[field] = str(body[field]).encode()
        else:
            op = "set"
            body[field] = self._bad_value(_FIELD_KINDS.get(field, "any"), field)
        return f"{op}-{field}"

    def _bad_value(self, kind: str, field: str = "") -> object:
        """A value that is probably wrong for a field of ``kind``; sometimes a right one."""
        rng = self._rng
        if rng.random() < 0.35 or kind == "any":
            return self._any_bad()
        if kind == "decimal":
            return rng.choice(_BAD_DECIMALS)
        if kind == "ident":
            return rng.choice(_BAD_IDENTIFIERS)
        if kind == "time":
            return _bad_timestamp(rng)
        if kind == "int":
            return rng.choice((0, -1, 1, 10**6, (1 << 63) - 1, 1 << 63, (1 << 64) - 1, -(1 << 63)))
        if kind == "float":
            values = (float("nan"), float("inf"), -float("inf"), -0.0, -1.5, 1e308, 5e-324, 3)
            return rng.choice(values)
        if kind == "enum":
            valid = _ENUMS.get(field, ())
            wrong = ("", "BUY", "Buy", "up", "buy ", "crash_", "\u00e9")
            return rng.choice(valid + wrong)
        return self._any_bad()

    def _any_bad(self) -> object:
        """A value of any type."""
        rng = self._rng
        roll = rng.random()
        if roll < 0.02:
            return "x" * rng.choice((1_000, 10_000, 60_000))  # huge strings
        if roll < 0.04:
            return _deep(rng)
        if roll < 0.06:
            return Raw(b"\xa2\xff\xfe")  # a str that is not UTF-8
        if roll < 0.08:
            return _bad_timestamp(rng)
        if roll < 0.12:
            return self._random_value(2)
        return rng.choice(
            (
                None, True, False, 0, -1, 1 << 63, (1 << 64) - 1, -(1 << 63), 1.5,
                float("nan"), float("inf"), -float("inf"), "", "x", "\u00e9", b"", b"\x00\xff",
                [], [1, "a"], {}, {"x": 1}, rng.choice(_BAD_DECIMALS), rng.choice(_BAD_IDENTIFIERS),
            )
        )  # fmt: skip

    def _random_value(self, depth: int, *, top: bool = False) -> object:
        """A random msgpack value; at the top, half the time a map that may hold an id."""
        rng = self._rng
        if top and rng.random() < 0.5:
            keys = ["v", "t", "id", "c", "b", "x", ""]
            pairs: list[tuple[object, object]] = []
            for key in rng.sample(keys, rng.randrange(0, len(keys))):
                if key == "id":
                    pairs.append((key, self.fresh_id()))
                elif key == "v":
                    pairs.append((key, 1))
                elif key == "t":
                    pairs.append((key, rng.choice(_TYPES_ELSEWHERE)))
                else:
                    pairs.append((key, self._random_value(depth - 1)))
            return Pairs(tuple(pairs))
        if depth <= 0 or rng.random() < 0.5:
            scalars: list[Callable[[], object]] = [
                lambda: None,
                lambda: rng.random() < 0.5,
                lambda: rng.randrange(-(1 << 63), 1 << 64),
                lambda: rng.randrange(-40, 200),
                lambda: rng.uniform(-1e300, 1e300),
                lambda: "".join(rng.choices(string.printable, k=rng.randrange(0, 20))),
                lambda: rng.randbytes(rng.randrange(0, 20)),
                lambda: _bad_timestamp(rng),
            ]
            return rng.choice(scalars)()
        if rng.random() < 0.5:
            return [self._random_value(depth - 1) for _ in range(rng.randrange(0, 4))]
        return Pairs(
            tuple(
                (self._random_value(0), self._random_value(depth - 1))
                for _ in range(rng.randrange(0, 4))
            )
        )

    def _damaged(self) -> tuple[str, bytes]:
        """A (perhaps mutated) envelope whose bytes are then damaged."""
        rng = self._rng
        name, envelope = self._mutated() if rng.random() < 0.3 else ("valid", self._valid()[1])
        frame = bytearray(pack(envelope))
        op = rng.choice(("truncate", "truncate", "trailing", "overwrite", "insert", "delete"))
        if op == "truncate":
            del frame[rng.randrange(len(frame)) :]
        elif op == "trailing":
            frame += rng.randbytes(rng.randrange(1, 9))
        elif op == "overwrite":
            for _ in range(rng.randrange(1, 5)):
                frame[rng.randrange(len(frame))] = rng.randrange(256)
        elif op == "insert":
            at = rng.randrange(len(frame) + 1)
            frame[at:at] = rng.randbytes(rng.randrange(1, 5))
        else:
            at = rng.randrange(len(frame))
            del frame[at : at + rng.randrange(1, 5)]
        return f"{name}/{op}", bytes(frame)

    def _multi_frame(self) -> tuple[str, tuple[bytes, ...]]:
        rng = self._rng
        envelope = pack(self._valid()[1] if rng.random() < 0.6 else self._mutated()[1])
        garbage = rng.randbytes(rng.randrange(1, 10))
        layouts: dict[str, tuple[bytes, ...]] = {
            "req-style": (b"", envelope),  # served: a REQ peer's layout
            "two-envelopes": (envelope, envelope),
            "req-style-two": (b"", envelope, envelope),
            "trailing-empty": (envelope, b""),
            "two-empty": (b"", b""),
            "garbage-first": (garbage, envelope),
            "three": (envelope, envelope, envelope),
            "two-delimiters": (b"", b"", envelope),
        }
        # Mostly the layout that is served, so that REQ-style routing meets every kind of frame.
        name = "req-style" if rng.random() < 0.4 else rng.choice(sorted(layouts))
        return f"frames:{name}", layouts[name]

    def _oversize(self) -> tuple[str, tuple[bytes, ...]]:
        """A readable envelope of about 64 KiB: just under, at or just over the limit."""
        rng = self._rng
        envelope = self._valid()[1]
        target = MAX_FRAME_BYTES + rng.choice((-1, 0, 1, 1000))
        envelope["pad"] = ""
        pad = target - len(pack(envelope))
        envelope["pad"] = "x" * pad
        pad -= len(pack(envelope)) - target  # the str header grew
        envelope["pad"] = "x" * pad
        return f"size-{target}", (pack(envelope),)


@dataclass(frozen=True, slots=True)
class Fuzzed:
    """One message: its frames, how it was made, every request id written into it, and what
    the documents say the venue owes it (again, if it is a resend)."""

    frames: tuple[bytes, ...]
    kind: str
    ids: tuple[int, ...]
    owed: Owed
    resend: bool = False  # the same frames as an earlier message

    def hex(self) -> str:
        return " | ".join(f.hex() for f in self.frames)
