"""``ControlClient``: drives a venue process over its control endpoint (tests, the CLI)."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Coroutine
from decimal import Decimal
from types import TracebackType
from typing import Any, NoReturn, Self, TypeVar

import zmq
import zmq.asyncio
from pydantic import BaseModel

from bus.backend import EntitlementsReloaded, GetStatus, ReloadEntitlements
from bus.codec import WireError, decode, encode
from bus.curve import ClientKeys, HandshakeWatch, resolve
from bus.risk_models import (
    GetPositions,
    Halted,
    Kill,
    Positions,
    Resume,
    RiskConfig,
    RiskStatus,
    SetRiskLimits,
)
from mock_venue.control import (
    CONTROL_MODELS,
    CONTROL_TYPES,
    Advance,
    CancelUnsolicited,
    ClearFaults,
    Done,
    Faults,
    FillOrder,
    InjectFault,
    ListFaults,
    Restate,
    VenueStatus,
)
from mock_venue.engine import VenueControlError
from mock_venue.faults import ActiveFault, Crash, Disconnect, Fault
from ports.models import Rejection

_M = TypeVar("_M", bound=BaseModel)
_T = TypeVar("_T")


class ControlClient:
    """Async client of a venue's control endpoint; implements ``VenueControl``.

    Each call waits for the venue to have carried the command out (``timeout`` seconds at most,
    then ``TimeoutError``); a command the venue refuses raises ``VenueControlError``.
    """

    def __init__(
        self, endpoint: str, *, timeout: float = 10.0, keys: ClientKeys | None = None
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self._context = zmq.asyncio.Context()
        self._socket = self._context.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        keys = resolve(keys)
        if keys is not None:
            keys.apply(self._socket)
        self._watch = HandshakeWatch(self._socket, secure=keys is not None)
        self._socket.connect(endpoint)
        self._ids = itertools.count(1)

    async def _call(self, command: BaseModel, expected: type[_M]) -> _M:
        request_id = next(self._ids)
        frame = encode(command, request_id=request_id, types=CONTROL_TYPES)
        try:  # a DEALER with no connection waits to send: a refused handshake would hang it
            await asyncio.wait_for(self._socket.send(frame), self.timeout)
        except TimeoutError:
            self._no_answer()
        while True:
            if not await self._socket.poll(int(self.timeout * 1000)):
                self._no_answer()
            try:
                envelope = decode(await self._socket.recv(), models=CONTROL_MODELS, max_bytes=None)
            except WireError as error:
                raise VenueControlError(f"unreadable control reply: {error}") from None
            if envelope.request_id != request_id:
                continue  # the late answer to a call that timed out
            if isinstance(envelope.body, Rejection):
                raise VenueControlError(envelope.body.message)
            if not isinstance(envelope.body, expected):
                raise VenueControlError(f"expected {expected.__name__}, got {envelope.type}")
            return envelope.body

    def _no_answer(self) -> NoReturn:
        refused = self._watch.poll()
        if refused is not None:
            raise VenueControlError(f"cannot connect to {self.endpoint}: {refused}")
        raise TimeoutError(f"venue control at {self.endpoint} did not answer")

    async def advance(self, seconds: float) -> None:
        await self._call(Advance(seconds=seconds), Done)

    async def reload_entitlements(self) -> EntitlementsReloaded:
        """Make the server read its entitlements file again (admins only)."""
        return await self._call(ReloadEntitlements(), EntitlementsReloaded)

    async def fill(
        self,
        strategy_id: str,
        client_order_id: str,
        quantity: Decimal | None = None,
        price: Decimal | None = None,
    ) -> None:
        command = FillOrder(
            strategy_id=strategy_id, client_order_id=client_order_id, quantity=quantity, price=price
        )
        await self._call(command, Done)

    async def cancel_unsolicited(self, strategy_id: str, client_order_id: str) -> None:
        command = CancelUnsolicited(strategy_id=strategy_id, client_order_id=client_order_id)
        await self._call(command, Done)

    async def restate(self, strategy_id: str, client_order_id: str, quantity: Decimal) -> None:
        command = Restate(
            strategy_id=strategy_id, client_order_id=client_order_id, quantity=quantity
        )
        await self._call(command, Done)

    async def inject(self, fault: Fault) -> ActiveFault:
        return (await self._call(InjectFault(fault=fault), Faults)).faults[0]

    async def disconnect(self) -> None:
        """Close and rebind the venue's command and event sockets (a ``Disconnect`` fault)."""
        await self.inject(Disconnect())

    async def crash(self, after: float = 0.1) -> None:
        """Have the venue process killed ``after`` seconds from now (a ``Crash`` fault)."""
        await self.inject(Crash(after=after))

    async def clear_faults(self, fault_id: int | None = None) -> None:
        await self._call(ClearFaults(fault_id=fault_id), Done)

    async def active_faults(self) -> list[ActiveFault]:
        return list((await self._call(ListFaults(), Faults)).faults)

    async def status(self) -> VenueStatus:
        """What the venue holds: orders, clients, sequence numbers, faults."""
        return await self._call(GetStatus(), VenueStatus)

    async def kill(self, strategy_id: str | None = None) -> Halted:
        """Halt a strategy (None: every one): its open orders canceled, new ones refused."""
        return await self._call(Kill(strategy_id=strategy_id), Halted)

    async def resume(self, strategy_id: str | None = None) -> Halted:
        """Lift the halt of a strategy (None: every halt)."""
        return await self._call(Resume(strategy_id=strategy_id), Halted)

    async def positions(self, strategy_id: str | None = None) -> Positions:
        """Positions from fills: of one strategy, or of every one and the total."""
        return await self._call(GetPositions(strategy_id=strategy_id), Positions)

    async def set_risk_limits(self, config: RiskConfig) -> RiskStatus:
        """Put pre-trade limits in force at once."""
        return await self._call(SetRiskLimits(config=config), RiskStatus)

    def close(self) -> None:
        self._watch.close()
        self._socket.close(linger=0)
        self._context.term()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class BlockingControlClient:
    """``ControlClient`` for code that is not asyncio: it runs on a private event loop."""

    def __init__(
        self, endpoint: str, *, timeout: float = 10.0, keys: ClientKeys | None = None
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

        async def make() -> ControlClient:  # zmq.asyncio sockets belong to their loop
            return ControlClient(endpoint, timeout=timeout, keys=keys)

        self._client = self._run(make())

    def _run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def advance(self, seconds: float) -> None:
        """Move a manual-clock venue's time forward."""
        self._run(self._client.advance(seconds))

    def reload_entitlements(self) -> EntitlementsReloaded:
        """Make the server read its entitlements file again (admins only)."""
        return self._run(self._client.reload_entitlements())

    def fill(
        self,
        strategy_id: str,
        client_order_id: str,
        quantity: Decimal | None = None,
        price: Decimal | None = None,
    ) -> None:
        """Fill a working order now."""
        self._run(self._client.fill(strategy_id, client_order_id, quantity, price))

    def cancel_unsolicited(self, strategy_id: str, client_order_id: str) -> None:
        """The venue cancels a working order on its own."""
        self._run(self._client.cancel_unsolicited(strategy_id, client_order_id))

    def restate(self, strategy_id: str, client_order_id: str, quantity: Decimal) -> None:
        """The venue reduces a working order's quantity on its own."""
        self._run(self._client.restate(strategy_id, client_order_id, quantity))

    def inject(self, fault: Fault) -> ActiveFault:
        """Put a fault in force."""
        return self._run(self._client.inject(fault))

    def disconnect(self) -> None:
        """Close and rebind the venue's command and event sockets (a ``Disconnect`` fault)."""
        self._run(self._client.disconnect())

    def crash(self, after: float = 0.1) -> None:
        """Have the venue process killed ``after`` seconds from now (a ``Crash`` fault)."""
        self._run(self._client.crash(after))

    def clear_faults(self, fault_id: int | None = None) -> None:
        """Remove one fault, or all."""
        self._run(self._client.clear_faults(fault_id))

    def active_faults(self) -> list[ActiveFault]:
        """The faults in force."""
        return self._run(self._client.active_faults())

    def status(self) -> VenueStatus:
        """What the venue holds."""
        return self._run(self._client.status())

    def kill(self, strategy_id: str | None = None) -> Halted:
        """Halt a strategy (None: every one): its open orders canceled, new ones refused."""
        return self._run(self._client.kill(strategy_id))

    def resume(self, strategy_id: str | None = None) -> Halted:
        """Lift the halt of a strategy (None: every halt)."""
        return self._run(self._client.resume(strategy_id))

    def positions(self, strategy_id: str | None = None) -> Positions:
        """Positions from fills: of one strategy, or of every one and the total."""
        return self._run(self._client.positions(strategy_id))

    def set_risk_limits(self, config: RiskConfig) -> RiskStatus:
        """Put pre-trade limits in force at once."""
        return self._run(self._client.set_risk_limits(config))

    def close(self) -> None:
        async def close() -> None:
            self._client.close()

        self._run(close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
