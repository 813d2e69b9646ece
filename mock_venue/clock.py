"""Clocks the venue engine reads time from. The engine never calls wall time itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

DEFAULT_START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class Clock(Protocol):
    """Where the engine's "now" comes from."""

    def now(self) -> datetime:
        """The current time, timezone-aware."""
        ...


class ManualClock:
    """Logical time that moves only when told: deterministic tests and replays."""

    def __init__(self, start: datetime = DEFAULT_START) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start time")
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, by: float | timedelta) -> datetime:
        """Move time forward by ``by`` (seconds or a timedelta) and return the new time."""
        delta = by if isinstance(by, timedelta) else timedelta(seconds=by)
        if delta < timedelta(0):
            raise ValueError("time only moves forward")
        self._now += delta
        return self._now

    def advance_to(self, at: datetime) -> None:
        """Move time forward to ``at`` (no-op if it is not later): a recovered venue resumes its
        logical time where its journal left it."""
        self._now = max(self._now, at)


class WallClock:
    """Real UTC time, for a venue that runs live."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class PinnedClock:
    """The time one engine step sees. The venue process pins it from its own clock before every
    step and writes it to the journal; a recovery pins the journaled times, so the replayed engine
    sees exactly what the original saw."""

    def __init__(self, at: datetime) -> None:
        self._at = at

    def pin(self, at: datetime) -> None:
        self._at = at

    def now(self) -> datetime:
        return self._at
