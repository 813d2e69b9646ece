"""Packing what msgpack-python will not: malformed bytes, ext types, deep nesting, maps with
duplicate or unhashable keys, and Timestamps in any layout."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import msgpack


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
