"""The venue's journal: an append-only file of everything it accepted and emitted.

Each record is ``marker "OBJR" | length (4 bytes, big-endian) | crc32 of the payload (4 bytes) |
payload`` where the payload is one msgpack map; the marker lets a reader find where records start
after damage without trying every byte. The first record is the header (the venue's session,
start time, config and seed); each later record is one input the engine took (a request, a
control command, the clock running timers, a transport fault firing) with the time the engine saw
and the frames it produced. A venue restarted on the journal replays the inputs through a fresh
engine, checks that it produces the very same frames, and carries on: orders, fills, sequence
numbers and stored replies all come back. See docs/faults.md for the fsync policy.

A record is written to the kernel (``os.write``) before any reply or event it holds leaves the
venue, so a crashed process (SIGKILL) loses nothing. A torn last record (the process died while
writing it) is cut off at recovery: nothing was sent from it. Damage anywhere else is refused.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

import msgpack

_MARKER: Final = b"OBJR"
_PREFIX: Final = struct.Struct(">4sII")
MAGIC: Final = "orderbus-journal"
FORMAT: Final = 2


class JournalError(Exception):
    """The journal cannot be used: damaged before its last record, or not this venue's."""


class FsyncPolicy(StrEnum):
    """When the journal asks the OS to put its writes on disk.

    Every policy survives a crash of the venue process: records reach the kernel before their
    replies and events leave. They differ when the machine itself fails."""

    ALWAYS = "always"  # fsync each record before its replies go out: nothing acknowledged is lost
    INTERVAL = "interval"  # fsync at most every FSYNC_INTERVAL seconds: loses at most that much
    NEVER = "never"  # the OS writes back when it likes


FSYNC_INTERVAL: Final = 0.2


@dataclass(frozen=True, slots=True)
class Recovered:
    """What an existing journal held."""

    header: dict[str, Any]
    records: list[dict[str, Any]]
    torn_bytes: int  # size of the torn last record cut off (0: none)


def _pack(record: dict[str, Any]) -> bytes:
    payload: bytes = msgpack.packb(record, datetime=True)
    return _PREFIX.pack(_MARKER, len(payload), zlib.crc32(payload)) + payload


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:  # a regular file takes it all at once, but a short write must not go unnoticed
        view = view[os.write(fd, view) :]


def read(path: Path) -> Recovered:
    """Read a journal, cutting a torn last record off the file. Raises ``JournalError`` for
    damage anywhere else."""
    data = path.read_bytes()
    records: list[dict[str, Any]] = []
    offset = 0
    while offset < len(data):
        # A crash mid-write leaves damage only at the very end: a record cut short, or a last
        # record whose bytes did not all reach the disk. Damage with whole records after it is
        # something else, and recovering past it would invent history.
        problem, tail = None, True
        if len(data) - offset < _PREFIX.size:
            problem = "a record prefix is cut short"
        else:
            marker, length, crc = _PREFIX.unpack_from(data, offset)
            start, end = offset + _PREFIX.size, offset + _PREFIX.size + length
            if marker != _MARKER or not length:  # zeros: a file extended but never written
                problem = "no record starts here"
                tail = _no_record_in(data, offset + 1)
            elif end > len(data):
                problem = "a record is cut short"
                tail = _no_record_in(data, offset + 1)
            elif zlib.crc32(data[start:end]) != crc:
                problem = "a record fails its checksum"
                tail = _no_record_in(data, offset + 1)
        if problem is not None:
            if tail and records:  # never cut into a file that did not even start as a journal
                with path.open("r+b") as f:
                    f.truncate(offset)
                    f.flush()
                    os.fsync(f.fileno())
                break
            where = ", before the last record" if records else " (is this a journal?)"
            raise JournalError(f"{path}: {problem} at byte {offset}{where}")
        try:
            record = msgpack.unpackb(data[start:end], timestamp=3, strict_map_key=False)
        except Exception as exc:  # the checksum matched: this is not a torn write
            raise JournalError(f"{path}: unreadable record at byte {offset}: {exc}") from None
        records.append(record)
        offset = end
    torn = len(data) - offset
    if not records:
        raise JournalError(f"{path}: no journal header (empty, or not a journal)")
    header = records.pop(0)
    if header.get("magic") != MAGIC:
        raise JournalError(f"{path}: not an orderbus journal")
    if header.get("format") != FORMAT:
        raise JournalError(
            f"{path}: a journal of format {header.get('format')!r}, written by another version "
            f"of orderbus; this one reads format {FORMAT} (start with a new journal)"
        )
    return Recovered(header, records, torn)


def _no_record_in(data: bytes, offset: int) -> bool:
    """No complete, valid record starts at or after ``offset``. Only where the marker is: one
    pass over the bytes, and a checksum per candidate."""
    probe = data.find(_MARKER, offset)
    while probe != -1 and probe + _PREFIX.size <= len(data):
        _, length, crc = _PREFIX.unpack_from(data, probe)
        start = probe + _PREFIX.size
        if (
            length
            and start + length <= len(data)
            and zlib.crc32(data[start : start + length]) == crc
        ):
            return False
        probe = data.find(_MARKER, probe + 1)
    return True


class Journal:
    """An open journal, appending. Create with ``create`` (a new venue) or ``reopen`` (after
    ``read``)."""

    def __init__(self, path: Path, fd: int, policy: FsyncPolicy) -> None:
        self.path = path
        self._fd = fd
        self._policy = policy
        self._synced_at = time.monotonic()
        self._dirty = False
        self.records = 0

    @classmethod
    def create(cls, path: Path, header: dict[str, Any], policy: FsyncPolicy) -> Journal:
        """Start a new journal at ``path`` (which must not exist) with ``header``."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        journal = cls(path, fd, policy)
        _write_all(fd, _pack({"magic": MAGIC, "format": FORMAT, **header}))
        os.fsync(fd)
        return journal

    @classmethod
    def reopen(cls, path: Path, policy: FsyncPolicy) -> Journal:
        """Append to a journal that ``read`` has checked (and cut a torn tail off)."""
        return cls(path, os.open(path, os.O_WRONLY | os.O_APPEND), policy)

    def append(self, record: dict[str, Any]) -> None:
        """Write one record through to the kernel (and to disk, as the policy says)."""
        _write_all(self._fd, _pack(record))
        self.records += 1
        self._dirty = True
        if self._policy is FsyncPolicy.ALWAYS:
            self.sync()
        elif self._policy is FsyncPolicy.INTERVAL:
            self.tick()

    def tick(self) -> None:
        """Called now and then: the interval policy's fsync, if one is due."""
        if (
            self._dirty
            and self._policy is FsyncPolicy.INTERVAL
            and time.monotonic() - self._synced_at >= FSYNC_INTERVAL
        ):
            self.sync()

    def sync_due_in(self) -> float | None:
        """Seconds until the interval policy's next fsync is due (None: none is waiting)."""
        if not self._dirty or self._policy is not FsyncPolicy.INTERVAL:
            return None
        return max(0.0, self._synced_at + FSYNC_INTERVAL - time.monotonic())

    @property
    def size(self) -> int:
        """Bytes in the file now."""
        return os.fstat(self._fd).st_size if self._fd >= 0 else self.path.stat().st_size

    def sync(self) -> None:
        os.fsync(self._fd)
        self._dirty = False
        self._synced_at = time.monotonic()

    def close(self) -> None:
        if self._fd >= 0:
            if self._policy is not FsyncPolicy.NEVER and self._dirty:
                self.sync()
            os.close(self._fd)
            self._fd = -1
