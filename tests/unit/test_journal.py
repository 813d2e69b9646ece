"""The journal file: records round-trip; a torn last record is cut off; other damage is refused."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from mock_venue.journal import FsyncPolicy, Journal, JournalError, read

HEADER = {"session": "abc", "seed": 1}
T = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def _journal(tmp_path: Path, records: int = 3) -> Path:
    path = tmp_path / "venue.journal"
    journal = Journal.create(path, HEADER, FsyncPolicy.ALWAYS)
    for n in range(records):
        journal.append({"k": "r", "t": T, "n": n, "b": b"\x00frame"})
    journal.close()
    return path


def test_records_round_trip_with_times_and_bytes(tmp_path: Path) -> None:
    recovered = read(_journal(tmp_path))
    assert recovered.header["session"] == "abc"
    assert [r["n"] for r in recovered.records] == [0, 1, 2]
    assert recovered.records[0]["t"] == T
    assert recovered.records[0]["b"] == b"\x00frame"
    assert recovered.torn_bytes == 0


def test_a_reopened_journal_appends_after_what_it_holds(tmp_path: Path) -> None:
    path = _journal(tmp_path)
    journal = Journal.reopen(path, FsyncPolicy.INTERVAL)
    journal.append({"k": "a", "t": T, "n": 3})
    journal.close()
    assert [r["n"] for r in read(path).records] == [0, 1, 2, 3]


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[:-3],  # the last payload cut short
        lambda data: data + b"\x00\x00\x00",  # a prefix cut short
        lambda data: data + b"\x00" * 64,  # the file grew, the data never came
        lambda data: data[:-1] + bytes([data[-1] ^ 0xFF]),  # the last record's bytes garbled
    ],
    ids=["payload-cut", "prefix-cut", "zero-filled", "last-garbled"],
)
def test_a_torn_last_record_is_cut_off(tmp_path: Path, damage: object) -> None:
    path = _journal(tmp_path)
    intact = read(path)
    data = path.read_bytes()
    path.write_bytes(damage(data))  # type: ignore[operator]
    recovered = read(path)
    assert recovered.torn_bytes > 0
    kept = len(recovered.records)
    assert kept in (len(intact.records), len(intact.records) - 1)
    assert recovered.records == intact.records[:kept]
    assert read(path).torn_bytes == 0  # the file itself was mended
    Journal.reopen(path, FsyncPolicy.NEVER).close()


def test_damage_before_the_last_record_is_refused(tmp_path: Path) -> None:
    path = _journal(tmp_path, records=5)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(JournalError, match=r"before the last record|unreadable"):
        read(path)


@pytest.mark.parametrize("content", [b"", b"not a journal at all, just text"])
def test_a_file_that_is_no_journal_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "venue.journal"
    path.write_bytes(content)
    with pytest.raises(JournalError):
        read(path)
    assert path.read_bytes() == content  # and left as it was


def test_an_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    path = _journal(tmp_path)
    with pytest.raises(FileExistsError):
        Journal.create(path, HEADER, FsyncPolicy.ALWAYS)


def test_a_record_of_any_size_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "venue.journal"
    journal = Journal.create(path, HEADER, FsyncPolicy.NEVER)
    big = [bytes([n % 251]) * 400 for n in range(200_000)]  # a cancel-all of 200k orders
    journal.append({"k": "r", "t": T, "out": big})
    journal.append({"k": "a", "t": T, "out": []})
    journal.close()
    recovered = read(path)
    assert recovered.records[0]["out"] == big
    assert len(recovered.records) == 2


def test_a_damaged_length_with_records_after_it_is_refused_not_cut(tmp_path: Path) -> None:
    path = _journal(tmp_path, records=5)
    data = bytearray(path.read_bytes())
    second = data.index(b"OBJR", data.index(b"OBJR") + 1)  # the first record after the header
    data[second + 4 : second + 8] = (10**9).to_bytes(4, "big")  # claims past the end of the file
    path.write_bytes(bytes(data))
    with pytest.raises(JournalError, match="before the last record"):
        read(path)
    assert path.read_bytes() == bytes(data)  # nothing cut
