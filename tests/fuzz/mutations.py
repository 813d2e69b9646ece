"""Broken messages and garbage: valid envelopes with one to three things wrong (wrong types per
field, missing and extra fields, huge strings and ints, NaN and infinite floats, bad decimals
and timestamps, deep nesting, bin for str, nil), random msgpack values, damaged msgpack,
multi-frame messages and frames about the size limit."""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from typing import Final

from tests.fuzz.packing import START, YEAR_1, YEAR_10000, Pairs, Raw, ext, pack, timestamp
from tests.fuzz.reading import MAX_FRAME_BYTES
from tests.fuzz.valid import SAFE_FAULT_KINDS, Requests

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


class Mutator:
    """Mutations of ``requests``' envelopes, and garbage, drawn from ``rng`` (the Random that
    ``requests`` draws from, so that one seed orders all the draws). Ids a mutation writes
    come from ``requests.fresh_id``, which records them."""

    def __init__(self, rng: random.Random, requests: Requests) -> None:
        self._rng = rng
        self._requests = requests

    def mutated(self) -> tuple[str, Pairs]:
        """A valid envelope with one to three things wrong (or, by chance, nothing)."""
        rng = self._rng
        message_type, envelope = self._requests.valid()
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
                return self._requests.fresh_id()  # another readable id, replacing the first
            if roll < 0.4:
                rid = self._requests.fresh_id()  # written, but in a form nobody may read
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
            return self.random_value(2)
        return rng.choice(
            (
                None, True, False, 0, -1, 1 << 63, (1 << 64) - 1, -(1 << 63), 1.5,
                float("nan"), float("inf"), -float("inf"), "", "x", "\u00e9", b"", b"\x00\xff",
                [], [1, "a"], {}, {"x": 1}, rng.choice(_BAD_DECIMALS), rng.choice(_BAD_IDENTIFIERS),
            )
        )  # fmt: skip

    def random_value(self, depth: int, *, top: bool = False) -> object:
        """A random msgpack value; at the top, half the time a map that may hold an id."""
        rng = self._rng
        if top and rng.random() < 0.5:
            keys = ["v", "t", "id", "c", "b", "x", ""]
            pairs: list[tuple[object, object]] = []
            for key in rng.sample(keys, rng.randrange(0, len(keys))):
                if key == "id":
                    pairs.append((key, self._requests.fresh_id()))
                elif key == "v":
                    pairs.append((key, 1))
                elif key == "t":
                    pairs.append((key, rng.choice(_TYPES_ELSEWHERE)))
                else:
                    pairs.append((key, self.random_value(depth - 1)))
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
            return [self.random_value(depth - 1) for _ in range(rng.randrange(0, 4))]
        return Pairs(
            tuple(
                (self.random_value(0), self.random_value(depth - 1))
                for _ in range(rng.randrange(0, 4))
            )
        )

    def damaged(self) -> tuple[str, bytes]:
        """A (perhaps mutated) envelope whose bytes are then damaged."""
        rng = self._rng
        name, envelope = (
            self.mutated() if rng.random() < 0.3 else ("valid", self._requests.valid()[1])
        )
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

    def multi_frame(self) -> tuple[str, tuple[bytes, ...]]:
        rng = self._rng
        envelope = pack(self._requests.valid()[1] if rng.random() < 0.6 else self.mutated()[1])
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

    def oversize(self) -> tuple[str, tuple[bytes, ...]]:
        """A readable envelope of about 64 KiB: just under, at or just over the limit."""
        rng = self._rng
        envelope = self._requests.valid()[1]
        target = MAX_FRAME_BYTES + rng.choice((-1, 0, 1, 1000))
        envelope["pad"] = ""
        pad = target - len(pack(envelope))
        envelope["pad"] = "x" * pad
        pad -= len(pack(envelope)) - target  # the str header grew
        envelope["pad"] = "x" * pad
        return f"size-{target}", (pack(envelope),)
