"""Update streams and request handles: what a port hands to a strategy."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import Any, Generic, Protocol, Self, cast

from typing_extensions import TypeVar

from ports.errors import AckTimeoutError
from ports.models import Acknowledgement, ExecutionReport, OrderRequest, PortEvent

_END = object()
_T = TypeVar("_T")
_U = TypeVar("_U", covariant=True, default=ExecutionReport)
"""What a stream yields: execution reports, or (``port_events=True``) reports and port events."""


class _Stream(Protocol):
    client_order_id: str | None
    port_events: bool


_S = TypeVar("_S", bound=_Stream)


class Subscribers(Generic[_S]):
    """Which streams receive a report: those of the whole strategy and those of its order.

    Held weakly: a stream nobody holds any more stops receiving, without being closed. (Plain
    dicts of weak references rather than ``WeakSet``s: ``of`` runs for every report.)"""

    def __init__(self) -> None:
        self._all: dict[int, weakref.ref[_S]] = {}
        self._by_order: dict[str, dict[int, weakref.ref[_S]]] = {}

    def add(self, stream: _S) -> None:
        key, client_order_id = id(stream), stream.client_order_id
        if client_order_id is None:
            self._all[key] = weakref.ref(stream, lambda ref: self._drop(None, key, ref))
        else:
            group = self._by_order.setdefault(client_order_id, {})
            group[key] = weakref.ref(stream, lambda ref: self._drop(client_order_id, key, ref))

    def _drop(self, client_order_id: str | None, key: int, ref: weakref.ref[_S] | None) -> None:
        """Forget one stream (``ref``: only if the entry is still that reference)."""
        group = self._all if client_order_id is None else self._by_order.get(client_order_id)
        if group is None or (ref is not None and group.get(key) is not ref):
            return
        del group[key]
        if client_order_id is not None and not group:
            del self._by_order[client_order_id]

    def discard(self, stream: _S) -> None:
        key = id(stream)
        group = (
            self._all
            if stream.client_order_id is None
            else self._by_order.get(stream.client_order_id, {})
        )
        entry = group.get(key)
        if entry is not None and entry() is stream:
            self._drop(stream.client_order_id, key, entry)

    def of(self, client_order_id: str) -> list[_S]:
        """The streams a report about ``client_order_id`` goes to."""
        group = self._by_order.get(client_order_id)
        if not self._all and group is None:
            return []
        # Copied into a list first (allocated before the dicts are iterated): a garbage collection
        # mid-iteration could run a callback that deletes an entry.
        refs = [*self._all.values(), *group.values()] if group else [*self._all.values()]
        return [stream for ref in refs if (stream := ref()) is not None]

    def port_events(self) -> list[_S]:
        """The streams that asked for port events (all strategy-wide)."""
        streams = [ref() for ref in [*self._all.values()]]
        return [s for s in streams if s is not None and s.port_events]

    def take_all(self) -> list[_S]:
        """Every stream, forgetting them all (the port is closing)."""
        # Fresh dicts first: callbacks of streams collected meanwhile then find nothing to delete.
        every, by_order = self._all, self._by_order
        self._all, self._by_order = {}, {}
        refs = [*every.values(), *(r for group in by_order.values() for r in group.values())]
        return [stream for ref in refs if (stream := ref()) is not None]


class UpdateStream(Generic[_U]):
    """An async iterator of execution reports, in stream order, each exactly once.

    It receives every report that arrives after it was opened; it ends (after yielding what is
    already queued) when closed or when its port closes. Nothing is dropped: the queue is unbounded,
    so a stream you stop reading should be closed (``async with`` or ``aclose()``).

    ``UpdateStream`` alone yields ``ExecutionReport``; a stream opened with
    ``updates(port_events=True)`` is an ``UpdateStream[ExecutionReport | PortEvent]`` and also
    yields the port's events, in order with the reports.
    """

    def __init__(
        self,
        on_close: Callable[[UpdateStream[Any]], None],
        client_order_id: str | None = None,
        *,
        port_events: bool = False,
    ) -> None:
        self.client_order_id = client_order_id
        """The order this stream follows; None: every order of the strategy."""
        self.port_events = port_events
        """Whether it also yields ``PortEvent``s."""
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._on_close = on_close
        self._ended = False

    def _put(self, update: ExecutionReport | PortEvent) -> None:
        if not self._ended:
            self._queue.put_nowait(update)

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self._queue.put_nowait(_END)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> _U:
        item = await self._queue.get()
        if item is _END:
            self._queue.put_nowait(_END)  # every later call ends too
            raise StopAsyncIteration
        return cast(_U, item)  # the port puts only what the stream asked for

    async def get(self, timeout: float | None = None) -> _U:
        """The next update. Raises ``TimeoutError`` after ``timeout`` seconds, ``EOFError`` if
        the stream has ended."""
        try:
            async with asyncio.timeout(timeout):
                return await self.__anext__()
        except StopAsyncIteration:
            raise EOFError("the update stream has ended") from None

    async def aclose(self) -> None:
        """Stop receiving; reports already queued can still be read."""
        self._end()
        self._on_close(self)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class OrderHandle:
    """A submit, amend or cancel sent without waiting for its acknowledgement.

    ``await handle.acknowledged(timeout)`` gives the acknowledgement or raises the typed error;
    ``handle.events`` streams this order's reports from the moment the request was sent.
    """

    def __init__(
        self, request: OrderRequest, reply: asyncio.Future[Acknowledgement], events: UpdateStream
    ) -> None:
        self.request = request
        self._reply = reply
        self.events = events

    @property
    def client_order_id(self) -> str:
        return self.request.client_order_id

    def done(self) -> bool:
        """True once the venue has answered (acknowledged or rejected)."""
        return self._reply.done()

    async def acknowledged(self, timeout: float | None = None) -> Acknowledgement:
        """Wait for the venue's answer.

        Raises the request's ``PortError`` if it was refused, or ``AckTimeoutError`` (outcome
        unknown) after ``timeout`` seconds; a timeout does not give up on a late answer, so
        calling again can still succeed.
        """
        return await wait_reply(self._reply, timeout, self.client_order_id)

    def __repr__(self) -> str:
        state = "answered" if self.done() else "pending"
        return f"<OrderHandle {type(self.request).__name__} {self.client_order_id} {state}>"


async def wait_reply(
    reply: asyncio.Future[_T], timeout: float | None, client_order_id: str | None
) -> _T:
    """Await a reply future for at most ``timeout`` seconds without cancelling it (a late answer
    still lands, for whoever asks again)."""
    if not reply.done():
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()

        def wake(_: object) -> None:
            if not waiter.done():
                waiter.set_result(None)

        # What asyncio.wait does for one future, without its sets and return_when checks.
        reply.add_done_callback(wake)
        timer = None if timeout is None else loop.call_later(timeout, wake, None)
        try:
            await waiter
        finally:
            reply.remove_done_callback(wake)
            if timer is not None:
                timer.cancel()
    if reply.done():
        return reply.result()
    raise AckTimeoutError(
        timeout=timeout if timeout is not None else 0.0, client_order_id=client_order_id
    )
