"""Recovering from lost answers, sans-io: a jittered backoff schedule, and the orders in doubt.

Shared by every port (through ``ports.core.PortCore``; ``Backoff`` also paces the ZeroMQ client
protocol's resends and re-syncs): the port tells ``InDoubt`` what happens (a request went
unanswered, an answer or an execution report arrived, a status query came back) with the time,
and it says when to ask the venue and which ``PortEvent`` to report. It reads no clock but the
one it is given for event timestamps, and draws jitter from the RNG it is given, so a test can
replay any schedule.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from ports.enums import ErrorReason, PortEventKind
from ports.errors import PortError
from ports.models import Acknowledgement, OrderSnapshot, PortEvent


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter: ``initial`` seconds, times ``factor`` per attempt, at most
    ``cap``, each spread by ±``jitter`` (a fraction) so that clients that lost the same venue do
    not all come back in step."""

    initial: float = 0.2
    cap: float = 2.0
    factor: float = 2.0
    jitter: float = 0.25

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after attempt ``attempt`` (0: the first) before the next one."""
        base = min(self.cap, self.initial * self.factor ** min(attempt, 64))
        return base * (1 + rng.uniform(-self.jitter, self.jitter))


RESEND = Backoff()
"""The schedule of resends, re-syncs and status queries: 0.2 s doubling to 2 s, ±25%."""


@dataclass(slots=True)
class _Doubt:
    requests: set[int]  # its requests that went unanswered: a late answer may still come
    due: float  # when to ask the venue next
    attempt: int = 0  # status queries that got no usable answer so far
    version: int = 0  # bumped when something makes an answer asked for earlier stale
    asking: int | None = None  # the version an unanswered status query was asked at


class InDoubt:
    """Orders whose submit, amend or cancel went unanswered past its timeout.

    Until something settles such an order the port does not know what the venue holds for it. A
    late answer to the request settles it (an acknowledgement carries the order's snapshot); so
    does a status query, which the port makes itself when ``due`` says so, while it is connected.
    A refusal, or an execution report of the order, makes that query due at once. UNKNOWN_ORDER
    settles it too: the venue does not have the order (a submit that was never placed).
    """

    def __init__(
        self,
        *,
        clock: Callable[[], datetime],
        backoff: Backoff = RESEND,
        rng: random.Random | None = None,
    ) -> None:
        self._clock = clock
        self._backoff = backoff
        self._rng = rng if rng is not None else random.Random()
        self._orders: dict[str, _Doubt] = {}
        self._requests: dict[int, str] = {}  # unanswered request id -> its order

    def __bool__(self) -> bool:
        return bool(self._orders)

    def __contains__(self, client_order_id: object) -> bool:
        return client_order_id in self._orders

    def ids(self) -> frozenset[str]:
        """The client order ids in doubt now."""
        return frozenset(self._orders)

    def add(
        self, client_order_id: str, request_id: int, now: float, detail: str = ""
    ) -> PortEvent | None:
        """Request ``request_id`` about the order went unanswered in time. Returns the
        ORDER_IN_DOUBT event, or None if the order was in doubt already."""
        if self._requests.get(request_id) == client_order_id:
            return None  # told twice (a timeout seen by both the caller and the port)
        self._requests[request_id] = client_order_id
        doubt = self._orders.get(client_order_id)
        if doubt is not None:
            doubt.requests.add(request_id)
            self._stale(doubt, now)  # an answer asked for before this request says too little
            return None
        self._orders[client_order_id] = _Doubt({request_id}, due=now)
        return self._event(PortEventKind.ORDER_IN_DOUBT, client_order_id, None, detail)

    def due(self, now: float) -> list[str]:
        """Orders to ask the venue about now (each is then awaited: see ``queried``)."""
        ready = [c for c, d in self._orders.items() if d.asking is None and d.due <= now]
        for client_order_id in ready:
            doubt = self._orders[client_order_id]
            doubt.asking = doubt.version
        return ready

    def next_due(self) -> float | None:
        """When the next status query falls due (None: none is waiting to be asked)."""
        return min((d.due for d in self._orders.values() if d.asking is None), default=None)

    def queried(
        self, client_order_id: str, result: OrderSnapshot | PortError, now: float
    ) -> PortEvent | None:
        """The answer to the status query of an order ``due`` handed out: the snapshot, or the
        error the query raised. Returns ORDER_SETTLED if it settles the order."""
        doubt = self._orders.get(client_order_id)
        if doubt is None:
            return None  # settled meanwhile, by a late answer
        asked, doubt.asking = doubt.asking, None
        if asked != doubt.version:
            doubt.due = now  # asked before something newer happened to the order: ask again
            return None
        if isinstance(result, PortError) and result.reason is not ErrorReason.UNKNOWN_ORDER:
            # No answer (timed out, disconnected): ask again, later.
            doubt.due = now + self._backoff.delay(doubt.attempt, self._rng)
            doubt.attempt += 1
            return None
        snapshot = result if isinstance(result, OrderSnapshot) else None
        detail = "the venue does not know the order" if snapshot is None else "status query"
        return self._settle(client_order_id, snapshot, detail)

    def answered(self, request_id: int, result: object, now: float) -> PortEvent | None:
        """A (late) answer to request ``request_id`` arrived. Returns ORDER_SETTLED if it
        settles the order."""
        client_order_id = self._requests.pop(request_id, None)
        if client_order_id is None:
            return None
        doubt = self._orders[client_order_id]
        doubt.requests.discard(request_id)
        if isinstance(result, Acknowledgement) and not doubt.requests:
            return self._settle(client_order_id, result.order, "late acknowledgement")
        # A refusal says what became of the request, not what the venue holds: ask at once.
        doubt.due = min(doubt.due, now)
        return None

    def reported(self, client_order_id: str, now: float) -> None:
        """An execution report of the order arrived: the venue has it, so ask at once (a query
        already on its way will do: its snapshot tells, by ``last_seq``, what it includes)."""
        doubt = self._orders.get(client_order_id)
        if doubt is not None:
            doubt.due = min(doubt.due, now)

    def reset(self, now: float) -> None:
        """The venue lost its state: no late answer will come, and every order in doubt is asked
        about afresh, at the new venue."""
        self._requests.clear()
        for doubt in self._orders.values():
            doubt.requests.clear()
            doubt.attempt = 0
            self._stale(doubt, now)

    @staticmethod
    def _stale(doubt: _Doubt, now: float) -> None:
        # A status query asked before now may predate what made the order doubtful: its answer
        # is not taken, and the venue is asked again.
        doubt.version += 1
        doubt.due = min(doubt.due, now)

    def _settle(
        self, client_order_id: str, snapshot: OrderSnapshot | None, detail: str
    ) -> PortEvent:
        doubt = self._orders.pop(client_order_id)
        for request_id in doubt.requests:
            self._requests.pop(request_id, None)
        return self._event(PortEventKind.ORDER_SETTLED, client_order_id, snapshot, detail)

    def _event(
        self,
        kind: PortEventKind,
        client_order_id: str,
        snapshot: OrderSnapshot | None,
        detail: str,
    ) -> PortEvent:
        return PortEvent(
            kind=kind,
            time=self._clock(),
            detail=detail,
            client_order_id=client_order_id,
            snapshot=snapshot,
        )
