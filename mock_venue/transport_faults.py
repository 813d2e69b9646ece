"""Transport faults: what the venue process does to the events it publishes (drop, duplicate,
reorder, pause). The server calls this filter between the protocol and the event socket
(``bus.backend.EventFilter``); the faults themselves are in the engine's fault book."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bus.venue_protocol import Event
from mock_venue.clock import PinnedClock
from mock_venue.fault_book import FaultBook
from mock_venue.faults import (
    DropEvents,
    DuplicateEvents,
    PausePublishing,
    ReorderEvents,
    TransportFault,
)

TRANSPORT_FAULTS: dict[str, type[TransportFault]] = {
    kind.__name__: kind for kind in (DropEvents, DuplicateEvents, ReorderEvents, PausePublishing)
}


class TransportFaults:
    """``EventFilter`` of the mock venue, on the engine's fault book. ``journal``: writes down
    each draw of a fault that could fire (a recovery replays the draws); ``clear``: ends a fault
    by id, as a journaled control command (a timed pause whose time is up)."""

    def __init__(
        self,
        faults: FaultBook,
        pinned: PinnedClock,
        journal: Callable[[dict[str, Any]], None],
        clear: Callable[[int], None],
    ) -> None:
        self._faults = faults
        self._pinned = pinned
        self._journal = journal
        self._clear = clear
        self._held: list[Event] = []  # events a PausePublishing fault holds back
        self._reordered: list[Event] = []  # events a ReorderEvents fault sends late
        self._pause_until: dict[int, float] = {}

    def active(self) -> bool:
        return self._faults.any_in_force() or bool(self._held) or bool(self._reordered)

    def route(self, events: list[Event]) -> list[Event]:
        if self._paused():
            self._held += events
            return []
        out: list[Event] = []
        held, self._held = self._held, []
        for event in held + events:
            out += self._through_faults(event)
        return out

    def before_heartbeat(self) -> list[Event] | None:
        if self._paused():
            return None
        out = self.route([])
        late, self._reordered = self._reordered, []
        return out + late

    def release(self) -> list[Event]:
        held, self._held = self._held, []
        out: list[Event] = []
        for event in held:
            out += self._through_faults(event)
        late, self._reordered = self._reordered, []
        return out + late

    def next_due(self) -> float | None:
        return min(self._pause_until.values()) if self._pause_until else None

    def _through_faults(self, event: Event) -> list[Event]:
        if self._fires(DropEvents, event):
            return []
        if self._fires(ReorderEvents, event):
            self._reordered.append(event)
            return []
        out = [event, event] if self._fires(DuplicateEvents, event) else [event]
        late, self._reordered = self._reordered, []
        return out + late

    def _fires(self, kind: type[TransportFault], event: Event) -> bool:
        """Does a fault of ``kind`` fire for this event? Journaled when one could."""
        if self._faults.in_force(kind) is None:
            return False
        args = (event.strategy_id, event.instrument, event.client_order_id)
        fired = self._faults.fire(kind, *args) is not None
        self._journal(
            {
                "k": "f",
                "t": self._pinned.now(),
                "kind": kind.__name__,
                "s": args[0],
                "i": args[1],
                "o": args[2],
            }
        )
        return fired

    def _paused(self) -> bool:
        """A PausePublishing fault holds events back; once its time is up it is cleared."""
        active = self._faults.in_force(PausePublishing)
        if active is None:
            self._pause_until.clear()
            return False
        seconds = active.fault.seconds if isinstance(active.fault, PausePublishing) else None
        if seconds is None:
            return True
        until = self._pause_until.setdefault(active.fault_id, time.monotonic() + seconds)
        if time.monotonic() < until:
            return True
        del self._pause_until[active.fault_id]
        self._clear(active.fault_id)
        return self._paused()
