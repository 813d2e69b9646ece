"""What a client's frames carry besides its requests (sans-io): its client id, each request's
deadline (``Framer``), and the keepalives of cancel on disconnect (``KeepaliveTimer``).

The server cancels a strategy's open orders when the client that armed cancel on disconnect
(``Sync.cancel_on_disconnect``) sends nothing for that long (``bus.disconnect``). Every request
counts, so a busy client sends no keepalive; a quiet one sends one whenever nothing else went
for a third of its timeout: two may be lost before the server gives up on it."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

from pydantic import BaseModel

from bus.codec import Canceled, Keepalive, KeepaliveReply, encode
from ports.enums import PortEventKind

KEEPALIVES_PER_TIMEOUT = 3
FOREVER = 10 * 365 * 86_400.0
"""A request timeout this long (seconds) sends no deadline."""


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
        return self.keepalive()

    def keepalive(self) -> Keepalive:
        """A keepalive: it re-arms the watch with the timeout (a server that restarted, or
        that fired it while this client was cut off, is armed again by it)."""
        return Keepalive(strategy_id=self._strategy_id, cancel_on_disconnect=self.timeout)

    def goodbye(self) -> Keepalive | None:
        """What a client closing cleanly sends: disarm, its strategy's orders stay."""
        if self.timeout is None:
            return None
        return Keepalive(strategy_id=self._strategy_id, cancel_on_disconnect=None)


def canceled_event(reply: KeepaliveReply) -> tuple[PortEventKind, str] | None:
    """The port event a keepalive reply's ``canceled`` becomes, if it has one."""
    return None if reply.canceled is None else canceled_detail(reply.canceled)


def canceled_detail(canceled: Canceled) -> tuple[PortEventKind, str]:
    """The port event a sync reply's ``canceled_on_disconnect`` becomes."""
    return PortEventKind.CANCELED_ON_DISCONNECT, (
        f"the venue canceled this strategy's open orders at {canceled.at.isoformat()}: its "
        f"client {canceled.client_id!r} was silent for more than {canceled.timeout:g} s"
    )


class Framer:
    """Frames one client's messages: its client id on each, a request's deadline (the
    instant, by ``clock``, after which the server refuses it; none with ``deadlines`` off or a
    timeout of ``FOREVER``), and a keepalive when ``keepalive`` says one is due."""

    def __init__(
        self,
        client_id: str,
        keepalive: KeepaliveTimer,
        ids: Iterator[int],
        clock: Callable[[], datetime],
        deadlines: bool = True,
    ) -> None:
        self.client_id = client_id
        self.keepalive = keepalive
        self._ids = ids
        self._clock = clock
        self._deadlines = deadlines
        self.offset = timedelta(0)  # the server's wall clock less this one (``synced``)

    def synced(self, server_time: datetime | None) -> None:
        """A sync reply told the server's time: deadlines are stamped on its clock from now on,
        so a host whose clock is off neither has every request refused nor none."""
        if server_time is not None:
            # Taken before the reply left: on the server's clock it is later by up to the
            # round trip, so deadlines come out that much stricter, never looser.
            self.offset = server_time - self._clock()

    def request(self, body: BaseModel, request_id: int, now: float, deadline: float) -> bytes:
        """A request due by ``deadline`` (monotonic seconds, as ``now``)."""
        wait = deadline - now
        stamp = None
        if self._deadlines and wait < FOREVER:
            # The same instant on the server's wall clock: after it, the server refuses the
            # request (stale_request) rather than carry it out when nobody waits for it.
            stamp = self._clock() + self.offset + timedelta(seconds=wait)
        self.keepalive.sent(now)
        return encode(body, request_id=request_id, client_id=self.client_id, deadline=stamp)

    def plain(self, body: BaseModel, request_id: int) -> bytes:
        """A request of the protocol's own (a sync, a replay): no deadline of its own."""
        return encode(body, request_id=request_id, client_id=self.client_id)

    def goodbye(self) -> bytes | None:
        """The frame that disarms cancel on disconnect on a clean close (None: not armed)."""
        goodbye = self.keepalive.goodbye()
        return None if goodbye is None else self.plain(goodbye, next(self._ids))

    def keepalive_due(self, now: float) -> tuple[int, bytes] | None:
        """(request id, frame) of the keepalive to send now, if one is due."""
        alive = self.keepalive.due(now)
        if alive is None:
            return None
        request_id = next(self._ids)
        return request_id, self.plain(alive, request_id)
