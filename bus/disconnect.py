"""Cancel on disconnect, the server's side, with no sockets in it: which clients asked for it,
when each was last heard, and whose time ran out (``DisconnectWatch``).

A client arms it with its sync and with each keepalive (``cancel_on_disconnect``: seconds; a
keepalive without it disarms). Any request of that client counts as heard. When a client is
silent for longer than its timeout, its strategy's open orders are to be canceled (the server
does it, ``bus.risk_control``), and the watch remembers it: for the strategy's next sync (a
restarted process has a new client id) and for the client's next keepalive (it was cut off)."""

from __future__ import annotations

from dataclasses import dataclass

from bus.codec import Canceled


@dataclass(slots=True)
class _Armed:
    strategy_id: str
    client_id: str  # as the client names itself
    timeout: float
    heard: float


MAX_TOLD = 10_000
"""Fired watches remembered for the client that went silent, should it come back."""


class DisconnectWatch:
    """The armed clients (by the server's client key) and the cancels to tell."""

    def __init__(self, stall: float = 1.0) -> None:
        # A longer gap between two ``expired`` calls is the server's own stall (it was stopped,
        # or swapped out): the time it did not listen is not held against any client.
        self._stall = stall
        self._armed: dict[str, _Armed] = {}
        self._fired: dict[str, Canceled] = {}  # by strategy, for its next sync
        self._told: dict[str, Canceled] = {}  # by client, for its next keepalive
        self._checked: float | None = None
        self.fired = 0

    def arm(
        self, client: str, client_id: str, strategy_id: str, timeout: float, now: float
    ) -> None:
        """``client`` (the server's key for it; ``client_id``: its own name) asks for its
        strategy's orders to be canceled after ``timeout`` seconds of silence (again: the new
        timeout replaces the old)."""
        self._armed[client] = _Armed(strategy_id, client_id, timeout, now)

    def disarm(self, client: str) -> None:
        """``client`` closes cleanly: no cancel for its silence from now on."""
        self._armed.pop(client, None)

    def is_armed(self, client: str) -> bool:
        return client in self._armed

    def heard(self, client: str, now: float) -> None:
        """A request of ``client`` came."""
        armed = self._armed.get(client)
        if armed is not None:
            armed.heard = now

    def expired(self, now: float) -> list[tuple[str, str, str, float]]:
        """(client, client id, strategy, timeout) of each armed client silent past its
        timeout, now disarmed. Call it more often than every ``stall`` seconds."""
        if self._checked is not None and now - self._checked > self._stall:
            pause, checked = now - self._checked, self._checked
            for armed in self._armed.values():
                if armed.heard < checked:  # heard before the stall: its silence resumes now
                    armed.heard = min(now, armed.heard + pause)
        self._checked = now
        if not self._armed:
            return []
        gone = [c for c, a in self._armed.items() if now - a.heard > a.timeout]
        out = []
        for client in gone:
            armed = self._armed.pop(client)
            out.append((client, armed.client_id, armed.strategy_id, armed.timeout))
        return out

    def fired_for(self, client: str, strategy_id: str, notice: Canceled) -> None:
        """Remember that ``client``'s silence canceled ``strategy_id``'s orders: for the
        strategy's next sync, and for the client's next keepalive, should it come back."""
        self.fired += 1
        self._fired[strategy_id] = notice
        self._told.pop(client, None)
        self._told[client] = notice
        while len(self._told) > MAX_TOLD:
            del self._told[next(iter(self._told))]

    def take(self, strategy_id: str) -> Canceled | None:
        """What the sync of ``strategy_id`` is to be told (once)."""
        return self._fired.pop(strategy_id, None)

    def take_told(self, client: str) -> Canceled | None:
        """What ``client``'s keepalive is to be told (once)."""
        return self._told.pop(client, None)

    @property
    def armed(self) -> int:
        return len(self._armed)
