"""The fault book: the faults in force, how often each fired, and the seeded draws that decide
whether a fault with a probability fires.

One book serves the engine (which consults the engine faults as it handles requests) and the venue
process (which consults the transport faults as it publishes): both draw from the same RNG, in the
order they consult it, so the same inputs give the same faults.
"""

from __future__ import annotations

import random
from collections import deque
from datetime import datetime, timedelta
from typing import TypeVar

from mock_venue.control import VenueControlError
from mock_venue.faults import IMMEDIATE_FAULTS, ActiveFault, Fault, Throttle

_F = TypeVar("_F", bound=Fault)


def _applies(
    fault: Fault, strategy_id: str, instrument: str | None, client_order_id: str | None
) -> bool:
    return (
        fault.strategy_id in (None, strategy_id)
        and fault.instrument in (None, instrument)
        and fault.client_order_id in (None, client_order_id)
    )


class FaultBook:
    """The faults in force, oldest first. ``rng`` is the book's own: only the book draws from it."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._faults: dict[int, ActiveFault] = {}
        self._ids = 0
        # A Throttle's requests taken in its interval, per (fault id, strategy).
        self._throttle_windows: dict[tuple[int, str], deque[datetime]] = {}

    def inject(self, fault: Fault) -> ActiveFault:
        """Put ``fault`` in force; returns it with its id."""
        if isinstance(fault, IMMEDIATE_FAULTS):
            raise VenueControlError(f"{fault.kind} acts on the venue process, not in the engine")
        self._ids += 1
        remaining = getattr(fault, "count", None)
        active = ActiveFault(fault_id=self._ids, fault=fault, remaining=remaining)
        self._faults[active.fault_id] = active
        return active

    def clear(self, fault_id: int | None = None) -> None:
        """Remove one fault, or all of them."""
        if fault_id is None:
            self._faults.clear()
            self._throttle_windows.clear()
        else:
            self._faults.pop(fault_id, None)
            for key in [k for k in self._throttle_windows if k[0] == fault_id]:
                del self._throttle_windows[key]

    def active(self) -> list[ActiveFault]:
        """The faults in force, with how often each fired (copies: changing them changes
        nothing)."""
        return [f.model_copy() for f in self._faults.values()]

    def any_in_force(self) -> bool:
        return bool(self._faults)

    def in_force(self, kind: type[_F]) -> ActiveFault | None:
        """The first fault of ``kind`` in force, without using it."""
        return next((a for a in self._faults.values() if isinstance(a.fault, kind)), None)

    def fire(
        self, kind: type[_F], strategy_id: str, instrument: str | None, client_order_id: str | None
    ) -> _F | None:
        """The first fault of ``kind`` that applies to this event and fires (a draw, for one with
        a probability), counting one use of it; a fault used up leaves the book."""
        for active in list(self._faults.values()):
            fault = active.fault
            if not isinstance(fault, kind) or not _applies(
                fault, strategy_id, instrument, client_order_id
            ):
                continue
            if fault.probability is not None and self._rng.random() >= fault.probability:
                continue
            active.fired += 1
            if active.remaining is not None:
                active.remaining -= 1
                if active.remaining == 0:
                    del self._faults[active.fault_id]
            return fault
        return None

    def throttled(
        self, strategy_id: str, instrument: str | None, client_order_id: str | None, now: datetime
    ) -> float | None:
        """Seconds to wait if a Throttle fault refuses this request at ``now``, else None (and
        the request counts against every Throttle that applies)."""
        windows = []
        for active in self._faults.values():
            fault = active.fault
            if not isinstance(fault, Throttle) or not _applies(
                fault, strategy_id, instrument, client_order_id
            ):
                continue
            window = self._throttle_windows.setdefault((active.fault_id, strategy_id), deque())
            horizon = now - timedelta(seconds=fault.interval)
            while window and window[0] <= horizon:
                window.popleft()
            if len(window) >= fault.max_requests:
                active.fired += 1
                return (window[0] - horizon).total_seconds()
            windows.append(window)
        for window in windows:
            window.append(now)
        return None
