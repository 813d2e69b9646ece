"""Cancel on disconnect, the client's side, with no sockets in it: ``Keepalive`` says when a
client that asked for it must show it is alive, and what the server's answers mean.

The server cancels a strategy's open orders when the client that armed cancel on disconnect
(``Sync.cancel_on_disconnect``) sends nothing for that long (``bus.disconnect``). Every request
counts, so a busy client sends no keepalive; a quiet one sends one whenever nothing else went
for a third of its timeout: two may be lost before the server gives up on it."""

from __future__ import annotations

import math

from bus.codec import Canceled, Keepalive, KeepaliveReply
from ports.enums import PortEventKind

KEEPALIVES_PER_TIMEOUT = 3


class KeepaliveTimer:
    """When a keepalive is due (``timeout`` None: cancel on disconnect not asked for)."""

    def __init__(self, strategy_id: str | None, timeout: float | None) -> None:
        self.timeout = timeout if strategy_id is not None else None  # a monitor has no orders
        self._strategy_id = strategy_id or ""
        self._interval = math.inf if self.timeout is None else self.timeout / KEEPALIVES_PER_TIMEOUT
        self._sent = 0.0  # the sync that armed it is sent before any keepalive is due

    def sent(self, now: float) -> None:
        """A frame went to the server at ``now``."""
        self._sent = now

    def next_at(self) -> float:
        """When the next keepalive is due, unless something else is sent first (inf: never)."""
        return self._sent + self._interval

    def due(self, now: float) -> Keepalive | None:
        """The keepalive to send now, if one is due."""
        if now < self.next_at():
            return None
        self._sent = now
        return Keepalive(strategy_id=self._strategy_id)

    def disarmed(self, reply: KeepaliveReply) -> bool:
        """True if the server says cancel on disconnect is not armed though it was asked for
        (it fired, or the server restarted): a sync re-arms it and tells what happened."""
        return self.timeout is not None and not reply.armed


def canceled_detail(canceled: Canceled) -> tuple[PortEventKind, str]:
    """The port event a sync reply's ``canceled_on_disconnect`` becomes."""
    return PortEventKind.CANCELED_ON_DISCONNECT, (
        f"the venue canceled this strategy's open orders at {canceled.at.isoformat()}: its "
        f"client {canceled.client_id!r} was silent for more than {canceled.timeout:g} s"
    )
