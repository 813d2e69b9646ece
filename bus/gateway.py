"""The gateway: any ``OrderExecutionPort`` behind the bus, served to many strategy processes.

``PortBackend`` is a ``bus.backend.Backend`` whose requests go to ports a factory makes, one per
strategy (a port belongs to one strategy): each strategy's commands go to its hosted port, its
updates go out on the strategy's stream with the bus's sequence numbers and replay, and the
hosted port's answers, typed errors and port events reach the remote strategy unchanged in
meaning. The ports run on an asyncio loop in a thread of their own; the server's loop stays
single-threaded and hears of finished work through a pipe. Open orders go out in pages
(``bus.gateway_pages``). See docs/gateway.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict

from bus.backend import (
    Answer,
    GetStatus,
    Host,
    Notice,
    Output,
    Report,
    SecurityStatus,
    failed,
)
from bus.client import ZmqOrderExecutionPort
from bus.codec import Sync
from bus.curve import ClientKeys
from bus.gateway_pages import OpenOrderPages
from bus.gateway_reasons import CancelReasons
from bus.limits import LimitsStatus
from bus.risk_models import RiskStatus
from bus.venue_protocol import RequestKey
from ports.enums import Outcome
from ports.errors import PortError
from ports.models import (
    Acknowledgement,
    AmendOrder,
    CancelAllAcknowledgement,
    CancelAllOrders,
    CancelOrder,
    ExecutionReport,
    ListOpenOrders,
    OpenOrders,
    OrderSnapshot,
    QueryOrder,
    Rejection,
    Request,
    SubmitOrder,
)
from ports.order_execution_port import OrderExecutionPort, PortState

_T = TypeVar("_T")

PortFactory = Callable[[str, Mapping[str, Any]], OrderExecutionPort | Awaitable[OrderExecutionPort]]
"""``factory(strategy_id, config)``: the port that serves ``strategy_id`` (not opened yet; the
same object for several strategies to share one). ``config``: the gateway's config file."""

_CLOSE_TIMEOUT = 10.0  # seconds the hosted ports get to close when the gateway stops


class HostedStream(BaseModel):
    """One strategy the gateway serves."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    strategy_id: str
    seq: int
    port_state: str


class GatewayStatus(BaseModel):
    """What a running gateway holds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    session: str
    instance: str
    venue_seq: int
    clients: int
    requests: int
    protocol_errors: int
    unroutable_replies: int
    security: SecurityStatus
    limits: LimitsStatus
    risk: RiskStatus
    strategies: tuple[HostedStream, ...]


GATEWAY_CONTROL_MODELS: Mapping[str, type[BaseModel]] = {
    "get_status": GetStatus,
    "gateway_status": GatewayStatus,
    "error": Rejection,
}


def load_factory(spec: str) -> PortFactory:
    """``package.module:callable`` -> the callable. Raises ``ValueError`` saying what is wrong."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{spec!r}: expected package.module:callable")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name!r}: {exc}") from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise ValueError(f"{module_name!r} has no callable {attribute!r}")
    return factory  # type: ignore[no-any-return]


def zmq_ports(strategy_id: str, config: Mapping[str, Any]) -> OrderExecutionPort:
    """A factory for a gateway in front of another bus server (a venue process, a gateway):
    ``config`` holds ``command`` and ``events`` endpoints and ``ZmqOrderExecutionPort``'s
    other options (``ack_timeout``, ``heartbeat_interval``, ``retry_throttled``, ...);
    ``server_key`` and ``client_key`` (certificate files) connect with CURVE (else the
    environment's keys, if any)."""
    options = dict(config)
    server_key, client_key = options.pop("server_key", None), options.pop("client_key", None)
    if server_key is not None or client_key is not None:
        options["keys"] = ClientKeys.load(server_key, client_key)
    return ZmqOrderExecutionPort(
        strategy_id, command=options.pop("command"), events=options.pop("events"), **options
    )


class PortBackend:
    """Hosts the ports ``factory`` makes (see the module). ``config`` goes to the factory.
    ``open_orders_page``: most open orders in one ``open_orders`` or sync reply (at least 1);
    the pages and their consistency are ``bus.gateway_pages``'s."""

    def __init__(
        self,
        factory: PortFactory,
        config: Mapping[str, Any] | None = None,
        *,
        open_orders_page: int = 1000,
    ) -> None:
        self._pages = OpenOrderPages(open_orders_page)  # first: it refuses a bad page size
        self._reasons = CancelReasons()  # why its own cancel-alls canceled, for their reports
        self._factory = factory
        self._config: Mapping[str, Any] = config or {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="gateway-ports", daemon=True)
        self._done: deque[list[Output]] = deque()  # appended by the loop's thread
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._host: Host | None = None
        # Loop thread only: the port of each strategy (opening, or open), and the tasks running.
        self._ports: dict[str, asyncio.Task[OrderExecutionPort]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._listing: dict[str, asyncio.Lock] = {}  # held while a strategy's orders are read

    # --- Backend ------------------------------------------------------------------------------

    @property
    def session(self) -> str | None:
        return None  # a gateway keeps no state of its own: each start is a new session

    @property
    def control_models(self) -> Mapping[str, type[BaseModel]]:
        return GATEWAY_CONTROL_MODELS

    @property
    def events(self) -> None:
        return None

    def start(self, host: Host) -> None:
        self._host = host
        self._thread.start()

    def execute(self, key: RequestKey, request: Request | Sync, frame: bytes) -> None:
        self._loop.call_soon_threadsafe(self._spawn, self._serve(key, request))

    def recall(self, token: Hashable) -> BaseModel | None:
        return None  # every answer is kept as its frame

    def control(self, command: BaseModel, frame: bytes) -> BaseModel:
        if isinstance(command, GetStatus):
            return self.status()
        raise TypeError(f"{type(command).__name__} is not a control command of the gateway")

    def poll(self, now: float) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self._wake_r, 4096)
        assert self._host is not None
        while self._done:
            self._host.deliver(self._done.popleft())

    def next_due(self, now: float) -> float | None:
        return None

    def fileno(self) -> int | None:
        return self._wake_r

    def venue_time(self) -> datetime:
        return datetime.now(UTC)

    def close(self) -> None:
        if self._thread.is_alive():
            closing = asyncio.run_coroutine_threadsafe(self._close_ports(), self._loop)
            with contextlib.suppress(Exception):
                closing.result(_CLOSE_TIMEOUT)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(_CLOSE_TIMEOUT)
        self._loop.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def status(self) -> GatewayStatus:
        """What the gateway holds now (read from the server's thread: a moment's snapshot)."""
        assert self._host is not None
        protocol = self._host.protocol
        states: dict[str, str] = {}
        for strategy_id, task in list(self._ports.items()):
            done = task.done() and not task.cancelled() and task.exception() is None
            states[strategy_id] = task.result().state.value if done else "opening"
        return GatewayStatus(
            session=protocol.session,
            instance=protocol.instance,
            venue_seq=protocol.venue_seq,
            clients=protocol.replies.owners,
            requests=protocol.requests,
            protocol_errors=protocol.protocol_errors,
            unroutable_replies=self._host.unroutable_replies,
            security=self._host.security,
            limits=self._host.limits,
            risk=protocol.risk.status(),
            strategies=tuple(
                HostedStream(strategy_id=s, seq=protocol.stream_seq(s), port_state=states[s])
                for s in sorted(states)
            ),
        )

    # --- the ports' thread --------------------------------------------------------------------

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(work)
        self._tasks.add(task)  # a reference, so the task is not collected mid-way
        task.add_done_callback(self._tasks.discard)

    def _put(self, outputs: list[Output]) -> None:
        self._done.append(outputs)
        with contextlib.suppress(BlockingIOError):  # full of wake-ups already
            os.write(self._wake_w, b"x")

    async def _serve(self, key: RequestKey, request: Request | Sync) -> None:
        # Always answered, even if the work is cancelled (the gateway stops): a request left
        # without an answer would stay "being worked on", and its resends would go unanswered.
        result: BaseModel = failed(
            request, "the gateway stopped before the hosted port answered", Outcome.UNKNOWN
        )
        try:
            try:
                port = await self._port(request.strategy_id)
            except PortError as error:
                result = error.to_rejection()
                return
            except Exception as error:  # the factory or open() failed: nothing reached a venue
                why = f"the hosted port could not be opened: {type(error).__name__}: {error}"
                result = failed(request, why, Outcome.DEFINITE)
                return
            try:
                result = await self._call(port, request)
            except PortError as error:
                result = error.to_rejection()
            except Exception as error:  # the hosted adapter failed: it may have acted
                why = f"the hosted port failed: {type(error).__name__}: {error}"
                result = failed(request, why, Outcome.UNKNOWN)
        finally:
            self._put([Answer(key, result)])

    async def _call(self, port: OrderExecutionPort, request: Request | Sync) -> BaseModel:
        match request:
            case SubmitOrder():
                return _typed(await port.submit_order(request), Acknowledgement)
            case AmendOrder():
                return _typed(await port.amend_order(request), Acknowledgement)
            case CancelOrder():
                return _typed(await port.cancel_order(request), Acknowledgement)
            case CancelAllOrders():
                self._reasons.begin(request.strategy_id, request.reason)
                acknowledged = None
                try:
                    done = await port.cancel_all_orders(request.instrument, request.side)
                    acknowledged = _typed(done, CancelAllAcknowledgement)
                finally:
                    self._reasons.end(request.strategy_id, request.reason, acknowledged)
                return acknowledged
            case QueryOrder():
                return _typed(await port.order_status(request.client_order_id), OrderSnapshot)
            case ListOpenOrders():
                return await self._open_orders(
                    port, request.strategy_id, request.instrument, request.after
                )
            case Sync():  # the first page of all the strategy's open orders
                return await self._open_orders(port, request.strategy_id, None, 0)
        raise TypeError(f"{type(request).__name__} is not a request")

    async def _open_orders(
        self, port: OrderExecutionPort, strategy_id: str, instrument: str | None, after: int
    ) -> OpenOrders:
        page = self._pages.cached(strategy_id, instrument, after)
        if page is not None:
            return page
        # One read of a strategy's orders at a time: the numbers follow the order in which
        # listings were read, so a slow, older one cannot forget an order a newer one numbered.
        async with self._listing.setdefault(strategy_id, asyncio.Lock()):
            page = self._pages.cached(strategy_id, instrument, after)  # kept meanwhile?
            if page is None:
                listing = [_typed(o, OrderSnapshot) for o in await port.open_orders(instrument)]
                page = self._pages.listed(strategy_id, instrument, after, listing)
            return page

    async def _port(self, strategy_id: str) -> OrderExecutionPort:
        task = self._ports.get(strategy_id)
        if task is not None and _closed(task):
            task = None  # closed under us: open a new one
        if task is None:
            task = self._ports[strategy_id] = self._loop.create_task(self._open(strategy_id))
        try:
            return await asyncio.shield(task)
        except BaseException:
            if self._ports.get(strategy_id) is task and task.done():
                del self._ports[strategy_id]  # the next request tries again
            raise

    async def _open(self, strategy_id: str) -> OrderExecutionPort:
        made = self._factory(strategy_id, self._config)
        port = await made if isinstance(made, Awaitable) else made
        if port.strategy_id != strategy_id:
            raise ValueError(
                f"the factory returned the port of strategy {port.strategy_id!r} for "
                f"{strategy_id!r}: each strategy needs a port of its own"
            )
        await port.open()
        # Subscribed before anything else can run on this loop: no update is missed.
        updates = port.updates(port_events=True)
        self._spawn(self._relay(strategy_id, updates))
        return port

    async def _relay(self, strategy_id: str, updates: Any) -> None:
        """The hosted port's updates, onto the bus: reports to the strategy's stream (as the
        bus numbers them), port events to the strategy too."""
        async for update in updates:
            if isinstance(update, ExecutionReport):
                self._put([Report(self._reasons.relabel(update))])
            else:
                self._put([Notice(strategy_id, update)])

    async def _close_ports(self) -> None:
        ports = []
        for task in self._ports.values():
            if task.done() and not task.cancelled() and task.exception() is None:
                ports.append(task.result())
            else:
                task.cancel()
        for port in {id(p): p for p in ports}.values():
            with contextlib.suppress(Exception):
                await port.close()
        # Then every task left on the loop, the adapters' own included (as asyncio.run does).
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)


def _typed(result: object, expected: type[_T]) -> _T:
    """``result`` if it is exactly what the wire can carry for the request, else TypeError (an
    adapter that returns something else must not reach the encoder)."""
    if type(result) is not expected:
        raise TypeError(f"returned {type(result).__name__}, not {expected.__name__}")
    assert isinstance(result, expected)
    return result


def _closed(task: asyncio.Task[OrderExecutionPort]) -> bool:
    """Whether ``task`` opened a port that has been closed since."""
    if not task.done() or task.cancelled() or task.exception() is not None:
        return False
    return task.result().state is PortState.CLOSED
