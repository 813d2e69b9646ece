"""The in-process mock venue and its ``OrderExecutionPort``: a strategy's unit tests need no
process and no socket, and see the same events, errors and ordering as over the wire."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections.abc import Hashable, Iterable
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from bus.positions import Ledger
from mock_venue.clock import Clock, ManualClock
from mock_venue.config import VenueConfig
from mock_venue.engine import Output, Publish, VenueEngine
from mock_venue.faults import ActiveFault, Fault
from ports.base import PortBase
from ports.core import DEFAULT_ACK_TIMEOUT, PortRequest
from ports.positions import PositionsSnapshot, QueryPositions


class VenueControl(Protocol):
    """What a test harness can do to a venue, in process or over the wire."""

    async def advance(self, seconds: float) -> None:
        """Move the venue's logical clock forward and run what falls due."""
        ...

    async def fill(
        self,
        strategy_id: str,
        client_order_id: str,
        quantity: Decimal | None = None,
        price: Decimal | None = None,
    ) -> None:
        """Fill a working order now (default: all that is left, at its limit or the reference)."""
        ...

    async def cancel_unsolicited(self, strategy_id: str, client_order_id: str) -> None:
        """The venue cancels a working order on its own."""
        ...

    async def restate(self, strategy_id: str, client_order_id: str, quantity: Decimal) -> None:
        """The venue reduces a working order's quantity on its own."""
        ...

    async def inject(self, fault: Fault) -> ActiveFault:
        """Put a fault in force."""
        ...

    async def clear_faults(self) -> None:
        """Remove every fault."""
        ...

    async def active_faults(self) -> list[ActiveFault]:
        """The faults in force, with how often each fired."""
        ...


class MockVenue:
    """A venue in this process: one engine shared by any number of strategies' ports.

    With the default ``ManualClock``, logical time moves only on ``advance``; with a ``WallClock``
    a background task runs the engine's timers as they fall due.
    """

    def __init__(self, config: VenueConfig, *, seed: int = 0, clock: Clock | None = None) -> None:
        self.clock: Clock = clock if clock is not None else ManualClock()
        self.engine = VenueEngine(config, clock=self.clock, rng=random.Random(seed))
        self._ports: dict[int, MockOrderExecutionPort] = {}
        self.ledger = Ledger()  # positions, from every report
        self._port_keys = itertools.count(1)
        self._timer_task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Event | None = None

    def port(
        self, strategy_id: str, *, ack_timeout: float = DEFAULT_ACK_TIMEOUT
    ) -> MockOrderExecutionPort:
        """A new (not yet open) port for ``strategy_id`` on this venue."""
        # A key of its own, never reused (id() is, once a closed port is collected): a late
        # reply to a closed port must not reach a new one.
        return MockOrderExecutionPort(
            self, strategy_id, ack_timeout=ack_timeout, key=next(self._port_keys)
        )

    # --- VenueControl -------------------------------------------------------------------------

    async def advance(self, seconds: float) -> None:
        if not isinstance(self.clock, ManualClock):
            raise TypeError("advance() needs a venue on a ManualClock; this one runs on real time")
        self.clock.advance(seconds)
        self._dispatch(self.engine.advance())

    async def fill(
        self,
        strategy_id: str,
        client_order_id: str,
        quantity: Decimal | None = None,
        price: Decimal | None = None,
    ) -> None:
        self._dispatch(self.engine.fill(strategy_id, client_order_id, quantity, price))

    async def cancel_unsolicited(self, strategy_id: str, client_order_id: str) -> None:
        self._dispatch(self.engine.cancel_unsolicited(strategy_id, client_order_id))

    async def restate(self, strategy_id: str, client_order_id: str, quantity: Decimal) -> None:
        self._dispatch(self.engine.restate(strategy_id, client_order_id, quantity))

    async def inject(self, fault: Fault) -> ActiveFault:
        return self.engine.faults.inject(fault)

    async def clear_faults(self) -> None:
        self.engine.faults.clear()

    async def active_faults(self) -> list[ActiveFault]:
        return self.engine.faults.active()

    async def aclose(self) -> None:
        """Close every port and stop the timer task."""
        for port in list(self._ports.values()):
            await port.close()
        if self._timer_task is not None:
            self._timer_task.cancel()
            await asyncio.gather(self._timer_task, return_exceptions=True)
            self._timer_task = None

    # --- for the ports ------------------------------------------------------------------------

    def _attach(self, port: MockOrderExecutionPort) -> None:
        self._ports[port.key] = port
        if not isinstance(self.clock, ManualClock) and self._timer_task is None:
            self._wakeup = asyncio.Event()
            self._timer_task = asyncio.get_running_loop().create_task(self._run_timers())

    def _detach(self, port: MockOrderExecutionPort) -> None:
        self._ports.pop(port.key, None)

    def _handle(self, port: MockOrderExecutionPort, request_id: int, request: PortRequest) -> None:
        if isinstance(request, QueryPositions):  # kept beside the engine, as a server does
            positions = self.ledger.positions(request.strategy_id)
            port._on_reply(request_id, PositionsSnapshot(strategy_id=port.strategy_id,
                                                         positions=positions))  # fmt: skip
            return
        self._dispatch(self.engine.handle(request, (port.key, request_id)))
        if self._wakeup is not None:
            self._wakeup.set()  # the request may have scheduled an earlier timer

    def _dispatch(self, outputs: Iterable[Output]) -> None:
        for output in outputs:
            if isinstance(output, Publish):
                report = output.report
                self.ledger.observe(report)
                for port in list(self._ports.values()):
                    if port.strategy_id == report.strategy_id:
                        port._on_report(report)
            elif output.delivered:
                port_id, request_id = _split_token(output.token)
                target = self._ports.get(port_id)
                if target is not None:
                    target._on_reply(request_id, output.result)

    async def _run_timers(self) -> None:
        assert self._wakeup is not None
        while True:
            due = self.engine.next_timer_at()
            wait = None if due is None else max(0.0, (due - self.clock.now()).total_seconds())
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):  # woken by the due time or a new request
                await asyncio.wait_for(self._wakeup.wait(), wait)
            self._dispatch(self.engine.advance())
            await asyncio.sleep(0)  # let the strategies run between bursts of timers


def _split_token(token: Hashable) -> tuple[int, int]:
    assert isinstance(token, tuple)
    port_id, request_id = token
    return int(port_id), int(request_id)


class MockOrderExecutionPort(PortBase):
    """``OrderExecutionPort`` over an in-process ``MockVenue``."""

    def __init__(self, venue: MockVenue, strategy_id: str, *, ack_timeout: float, key: int) -> None:
        super().__init__(strategy_id, ack_timeout=ack_timeout)
        self.venue = venue
        self.key = key

    async def _connect(self) -> None:
        self.venue._attach(self)

    async def _disconnect(self) -> None:
        self.venue._detach(self)

    def _transmit(self, request_id: int, request: PortRequest, timeout: float) -> None:
        self.venue._handle(self, request_id, request)  # in process: nothing is lost, no resend
        if self._awaiting(request_id):  # not answered at once: a fault delays or drops the reply
            self._expire_after(request_id, timeout)

    def _event_time(self) -> datetime:
        return self.venue.clock.now()  # port events on the venue's (logical) time, like reports
