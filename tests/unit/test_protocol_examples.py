"""docs/protocol.md's worked examples must be what the code puts on the wire.

Every ``<!-- example:NAME -->`` ... ``<!-- /example -->`` block of the page is rebuilt from the
models: the body of the decoded map it shows is validated with the model of its ``t`` (the port's
``bus.codec.MODELS``, or ``mock_venue.control.CONTROL_MODELS`` for control types) and encoded
with ``bus.codec.encode``, with the ``id`` and ``c`` shown. The test then asserts that

- the map rendering in the doc is the rendering of the encoded frame (same keys in the same
  order, every default written out, same value types: so a field the code added or renamed shows
  up as a difference),
- the hex, when the example gives one, is the frame, and every byte count stated is its length,
- an event's topic frame is the topic the venue publishes it on,
- an ``annot_NAME`` block spells out the frame of example NAME byte by byte: its bytes, joined,
  are the frame, and each annotated item (map header, string, fixint, Timestamp) is the encoding
  of what its comment says.

Two examples are malformed requests on purpose (``_MALFORMED``): they are packed from the map as
shown, and the codec must refuse them with the message of the error example that follows them.
``bin(N bytes)`` values stand for frames given by ``_BINS``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import msgpack
import pytest
from pydantic import ValidationError

import ports.enums as port_enums
from bus.codec import (
    HEARTBEAT_TOPIC,
    MODELS,
    PROTOCOL_VERSION,
    TYPES,
    WireError,
    decode,
    encode,
    strategy_topic,
)
from mock_venue.control import CONTROL_MODELS, CONTROL_TYPES
from ports.models import ExecutionReport

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"

_BLOCK = re.compile(r"<!-- example:(?P<name>[\w-]+) -->\n(?P<body>.*?)<!-- /example -->", re.S)
_FENCE = re.compile(r"```text\n(.*?)```", re.S)
_HEX = re.compile(
    r"(\d+) bytes, hex \(line breaks are not part of the data\):\n\n```text\n(.*?)```", re.S
)
_ENVELOPE_SIZE = re.compile(r"Frame 2 \(envelope\), (\d+) bytes:")
_TOPIC = re.compile(r"Frame 1 \(topic\): hex `([0-9a-f]+)`")
# Tokens of the rendering that are not JSON; strings are matched first so that their contents are
# left alone.
_TOKENS = re.compile(
    r'(?P<str>"(?:[^"\\]|\\.)*")|(?P<nil>\bnil\b)'
    r"|Timestamp\((?P<ts>[^)]*)\)|bin\((?P<bin>\d+) bytes\)"
)


@dataclass(frozen=True)
class Example:
    name: str
    line: int
    body: str

    def where(self) -> str:
        return f"example {self.name!r} (docs/protocol.md line {self.line})"


def _examples() -> dict[str, Example]:
    text = DOC.read_text()
    found: dict[str, Example] = {}
    for match in _BLOCK.finditer(text):
        name = match["name"]
        assert name not in found, f"docs/protocol.md: two examples are named {name!r}"
        line = text.count("\n", 0, match.start()) + 1
        found[name] = Example(name, line, match["body"])
    return found


EXAMPLES = _examples()
ANNOTATED = sorted(n for n in EXAMPLES if n.startswith("annot_"))
MESSAGES = sorted(n for n in EXAMPLES if not n.startswith("annot_"))


# --- the doc's notation -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Bin:
    """``bin(N bytes)`` in a rendering: the bytes themselves are not shown."""

    size: int


def _parse_rendering(text: str) -> Any:
    """The decoded map as shown: JSON plus ``nil``, ``Timestamp(...)`` and ``bin(N bytes)``."""

    def to_json(match: re.Match[str]) -> str:
        if match["str"] is not None:
            return match["str"]
        if match["nil"] is not None:
            return "null"
        if match["ts"] is not None:
            return json.dumps({"$timestamp": match["ts"]})
        return json.dumps({"$bin": int(match["bin"])})

    def special(obj: dict[str, Any]) -> Any:
        if obj.keys() == {"$timestamp"}:
            return datetime.fromisoformat(obj["$timestamp"])
        if obj.keys() == {"$bin"}:
            return _Bin(obj["$bin"])
        return obj

    return json.loads(_TOKENS.sub(to_json, text), object_hook=special)


def _render_timestamp(ts: msgpack.Timestamp) -> str:
    instant = datetime.fromtimestamp(ts.seconds, UTC)
    fraction = f".{ts.nanoseconds:09d}".rstrip("0") if ts.nanoseconds else ""
    return f"{instant:%Y-%m-%dT%H:%M:%S}{fraction}Z"


def _render(value: object, depth: int = 0) -> str:
    """A decoded msgpack value in the notation of docs/protocol.md section 7.1."""
    pad = "  " * depth
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{pad}  {json.dumps(k)}: {_render(v, depth + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list):
        if not value:
            return "[]"
        if all(isinstance(v, str) for v in value):
            return "[" + ", ".join(json.dumps(v) for v in value) + "]"
        items = [f"{pad}  {_render(v, depth + 1)}" for v in value]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bytes):
        return f"bin({len(value)} bytes)"
    if isinstance(value, msgpack.Timestamp):
        return f"Timestamp({_render_timestamp(value)})"
    raise TypeError(f"no rendering for {type(value).__name__}")


def _unpack(frame: bytes) -> Any:
    return msgpack.unpackb(frame, timestamp=0, raw=False)


def _hex_block(frame: bytes) -> str:
    data = frame.hex()
    return "\n".join(data[i : i + 64] for i in range(0, len(data), 64))


# --- rebuilding the frames --------------------------------------------------------------------


def _o2(seq: int, **changes: Any) -> bytes:
    """An event of order o-2 (a market sell of 50 submitted after the fill, section 7.5)."""
    report = {
        "seq": seq,
        "venue_seq": seq,
        "exec_type": "accepted",
        "status": "new",
        "strategy_id": "s1",
        "client_order_id": "o-2",
        "venue_order_id": "MOCK-2",
        "instrument": "MAN",
        "side": "sell",
        "order_type": "market",
        "limit_price": None,
        "quantity": "50",
        "cum_qty": "0",
        "leaves_qty": "50",
        "avg_px": None,
        "venue_time": datetime(2026, 1, 5, 9, 0, 1, 500_000, tzinfo=UTC),
    }
    return encode(ExecutionReport.model_validate(report | changes))


_MALFORMED: Mapping[str, str] = {
    # request example -> the error example that answers it
    "sync_v2": "error_version",
    "cancel_invalid": "error_invalid",
}


def _rendering(example: Example) -> Any:
    fences = _FENCE.findall(example.body)
    maps = [f for f in fences if f.startswith("{")]
    assert len(maps) == 1, f"{example.where()}: expected one decoded map, found {len(maps)}"
    try:
        return _parse_rendering(maps[0])
    except ValueError as exc:
        pytest.fail(f"{example.where()}: cannot read the decoded map: {exc}")


def _resolve_bins(example: Example, value: Any, bins: list[bytes]) -> Any:
    if isinstance(value, _Bin):
        assert bins, f"{example.where()}: more bin(...) values than _BINS gives"
        frame = bins.pop(0)
        assert len(frame) == value.size, (
            f"{example.where()}: bin({value.size} bytes) stands for a frame of {len(frame)} bytes"
        )
        return frame
    if isinstance(value, dict):
        return {k: _resolve_bins(example, v, bins) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_bins(example, v, bins) for v in value]
    return value


@cache
def _frame(name: str) -> bytes:
    """The frame of example ``name``, rebuilt from the models."""
    example = EXAMPLES[name]
    envelope = _rendering(example)
    assert isinstance(envelope, dict), f"{example.where()}: the decoded map is not a map"
    unknown = set(envelope) - {"v", "t", "id", "c", "b"}
    assert not unknown, f"{example.where()}: unknown envelope keys {sorted(unknown)}"
    if name in _BINS:
        bins = _BINS[name]()
        envelope = _resolve_bins(example, envelope, bins)
        assert not bins, f"{example.where()}: _BINS gives more frames than bin(...) values"
    message_type = envelope.get("t")
    control = message_type not in MODELS
    models = CONTROL_MODELS if control else MODELS
    assert message_type in models, f"{example.where()}: unknown message type {message_type!r}"
    if name in _MALFORMED:
        # What a misbehaving client sends: the map as shown, packed as the codec packs.
        frame: bytes = msgpack.packb(envelope, datetime=True)
        return frame
    try:
        body = models[message_type].model_validate(envelope.get("b"))
    except ValidationError as exc:
        pytest.fail(f"{example.where()}: its body is not a valid {message_type}:\n{exc}")
    assert envelope.get("v") == PROTOCOL_VERSION, (
        f"{example.where()}: 'v' is not {PROTOCOL_VERSION}"
    )
    return encode(
        body,
        request_id=envelope.get("id"),
        client_id=envelope.get("c"),
        types=CONTROL_TYPES if control else TYPES,
    )


_BINS: Mapping[str, Callable[[], list[bytes]]] = {
    # The frame of event seq 2, as published (7.7).
    "replay_reply": lambda: [_frame("event2")],
    # venue_seq 5 and 6: o-2 accepted, then canceled by cancel_all_orders (7.5).
    "replay_reply_all": lambda: [
        _o2(5),
        _o2(6, exec_type="canceled", status="canceled", leaves_qty="0", cancel_reason="cancel_all"),
    ],
}


# --- the tests --------------------------------------------------------------------------------


def test_the_doc_has_examples() -> None:
    assert len(MESSAGES) >= 40, f"only {len(MESSAGES)} examples found in {DOC}: markers changed?"
    assert ANNOTATED, f"no annotated examples found in {DOC}"


@pytest.mark.parametrize("name", MESSAGES)
def test_example_is_what_the_code_encodes(name: str) -> None:
    example = EXAMPLES[name]
    where = example.where()
    frame = _frame(name)
    raw = _unpack(frame)

    fences = _FENCE.findall(example.body)
    hexes = _HEX.findall(example.body)
    assert fences[0].startswith("{"), f"{where}: the decoded map must come first"
    assert len(fences) == 1 + len(hexes), f"{where}: a ```text block the test does not check"

    rendering = _render(raw) + "\n"
    assert fences[0] == rendering, (
        f"{where}: the decoded map is not the code's frame, which reads:\n{rendering}"
    )
    for size, data in hexes:
        assert "".join(data.split()) == frame.hex(), (
            f"{where}: the hex is not the code's frame, which is:\n{_hex_block(frame)}"
        )
        assert int(size) == len(frame), f"{where}: says {size} bytes, the frame has {len(frame)}"
    for size in _ENVELOPE_SIZE.findall(example.body):
        assert int(size) == len(frame), f"{where}: says {size} bytes, the frame has {len(frame)}"

    topics = _TOPIC.findall(example.body)
    if raw["t"] == "heartbeat":
        assert topics == [HEARTBEAT_TOPIC.hex()], f"{where}: the topic is {HEARTBEAT_TOPIC.hex()}"
    elif raw["t"] == "execution_report" and topics:
        topic = strategy_topic(raw["b"]["strategy_id"]).hex()
        assert topics == [topic], f"{where}: the topic is {topic}"
    elif raw["t"] == "port_event":  # its strategy is its topic's, not in the body
        (topic,) = topics
        assert re.fullmatch(r"53(?:[0-9a-f]{2})+00", topic), f"{where}: not a strategy's topic"
    else:
        assert not topics, f"{where}: only events have a topic frame"

    if name not in _MALFORMED:
        control = raw["t"] not in MODELS
        envelope = decode(frame, models=CONTROL_MODELS if control else MODELS, max_bytes=None)
        again = encode(
            envelope.body,
            request_id=envelope.request_id,
            client_id=envelope.client_id,
            types=CONTROL_TYPES if control else TYPES,
        )
        assert again == frame, f"{where}: does not survive decode and encode"


@pytest.mark.parametrize("name", sorted(_MALFORMED))
def test_malformed_request_gets_the_error_shown(name: str) -> None:
    error = EXAMPLES[_MALFORMED[name]]
    reply = _rendering(error)
    with pytest.raises(WireError) as refused:
        decode(_frame(name))
    assert refused.value.message == reply["b"]["message"], (
        f"{error.where()}: the codec refuses {name!r} with {refused.value.message!r}"
    )
    assert refused.value.reason == reply["b"]["reason"], f"{error.where()}: the reason differs"
    assert refused.value.request_id == reply.get("id"), f"{error.where()}: the id differs"


# --- annotated bytes --------------------------------------------------------------------------

_ANNOTATION_LINE = re.compile(r"^(?P<bytes>[0-9a-f]{2}(?: [0-9a-f]{2})*)(?: {2,}(?P<note>\S.*))?$")
_STR_NOTE = re.compile(r'(?:key )?(?P<format>fixstr|str 8, length \d+) (?P<text>".*")$')
_MAP_NOTE = re.compile(r"map, (?P<n>\d+) (?P<entries>entry|entries)$")
_FIXINT_NOTE = re.compile(r"positive fixint (?P<n>\d+)$")
_TIMESTAMP_NOTE = re.compile(
    r"fixext [48], type -1: Timestamp (?:32|64), "
    r"(?:nsec (?P<nsec>\d+), )?seconds (?P<sec>\d+) = (?P<at>\S+)$"
)


def _annotation_items(example: Example) -> list[tuple[str, bytes]]:
    """(comment, bytes) of each annotated item; a line without a comment continues an item."""
    fences = _FENCE.findall(example.body)
    assert len(fences) == 1, f"{example.where()}: expected one ```text block"
    items: list[tuple[str, bytes]] = []
    for number, line in enumerate(fences[0].splitlines(), start=1):
        match = _ANNOTATION_LINE.match(line)
        assert match, f"{example.where()}, line {number} of the block: not 'hex bytes  comment'"
        data = bytes.fromhex(match["bytes"])
        if match["note"] is not None:
            items.append((match["note"], data))
        else:
            assert items, f"{example.where()}: the first line needs a comment"
            items[-1] = (items[-1][0], items[-1][1] + data)
    return items


def _described(note: str) -> bytes:
    """The bytes a comment describes. Fails on a comment that contradicts itself or is unknown."""
    if match := _STR_NOTE.match(note):
        text = json.loads(match["text"])
        size = len(text.encode())
        expected = "fixstr" if size < 32 else f"str 8, length {size}"
        assert match["format"] == expected, f"{note!r}: a string of {size} bytes is {expected}"
        packed: bytes = msgpack.packb(text)
        return packed
    if match := _MAP_NOTE.match(note):
        n = int(match["n"])
        assert match["entries"] == ("entry" if n == 1 else "entries"), f"{note!r}: plural"
        assert n < 16, f"{note!r}: a map of 16 or more entries is map 16, not a fixmap"
        return bytes([0x80 | n])
    if match := _FIXINT_NOTE.match(note):
        return bytes([int(match["n"])])
    if match := _TIMESTAMP_NOTE.match(note):
        ts = msgpack.Timestamp(int(match["sec"]), int(match["nsec"] or 0))
        assert _render_timestamp(ts) == match["at"], f"{note!r}: that instant is {ts.to_datetime()}"
        packed = msgpack.packb(ts)
        layout = {4: "fixext 4, type -1: Timestamp 32", 8: "fixext 8, type -1: Timestamp 64"}
        assert note.startswith(layout[len(packed) - 2]), f"{note!r}: the layout is wrong"
        return packed
    raise AssertionError(f"the test cannot read the comment {note!r}; extend _described")


@pytest.mark.parametrize("name", ANNOTATED)
def test_annotation_spells_out_the_frame(name: str) -> None:
    example = EXAMPLES[name]
    target = name.removeprefix("annot_")
    assert target in EXAMPLES, f"{example.where()}: there is no example {target!r} to annotate"
    frame = _frame(target)
    items = _annotation_items(example)
    joined = b"".join(data for _, data in items)
    assert joined == frame, (
        f"{example.where()}: its bytes are not the frame of {target!r}, which is:\n"
        f"{_hex_block(frame)}"
    )
    for note, data in items:
        try:
            expected = _described(note)
        except AssertionError as exc:
            raise AssertionError(f"{example.where()}: {exc}") from None
        assert data == expected, (
            f"{example.where()}: {data.hex(' ')} is not {note!r}, which is {expected.hex(' ')}"
        )


def test_the_tables_of_types_and_enums_are_the_codes() -> None:
    """Section 3.1's message types and 3.2's enum values are what the code puts on the wire."""
    text = DOC.read_text()
    types = text.split("Command and event channels (`bus/codec.py`, `MessageType`):", 1)[1]
    rows = re.findall(r"^\| `(\w+)` \| [^|]+ \| [^|]+ \| (\w+) \|", types.split("\n\n", 2)[1], re.M)
    assert {t: model for t, model in rows[1:]} == {t: m.__name__ for t, m in MODELS.items()}
    enums = text.split("Enums (`ports/enums.py`). The values are the wire strings:", 1)[1]
    table = re.findall(r"^\| (\w+) \| (.*) \|$", enums.split("\n\n", 2)[1], re.M)
    documented = {name: re.findall(r"`(\w+)`", values) for name, values in table[1:]}
    assert documented
    for name, values in documented.items():
        assert values == [member.value for member in getattr(port_enums, name)], name
