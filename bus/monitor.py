"""``BlockingMonitor``: every strategy's events, exactly once and in order (venue_seq)."""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Self

import zmq

from bus.codec import Replay, ReplayReply, Sync, SyncReply, WireError
from bus.session import ClientSession, Incoming
from bus.sockets import configure_dealer, configure_sub, recv, recv_multipart
from ports.models import ExecutionReport


class BlockingMonitor:
    """Follows the venue's all-events stream after ``after_venue_seq`` (0: from the first event
    the venue published; earlier ones are replayed).

    Gaps (a message lost at the PUB's high-water mark, or a late subscription) are replayed over
    the command channel, so ``reports()`` yields every event once, in ``venue_seq`` order.
    """

    def __init__(self, *, command: str, events: str, after_venue_seq: int = 0) -> None:
        self._session = ClientSession(None)
        self._session.start_after(after_venue_seq)
        self._context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._dealer = self._context.socket(zmq.DEALER)
        self._sub = self._context.socket(zmq.SUB)
        configure_dealer(self._dealer)
        configure_sub(self._sub, self._session.topics)
        self._dealer.connect(command)
        self._sub.connect(events)
        self._poller = zmq.Poller()
        self._poller.register(self._dealer, zmq.POLLIN)
        self._poller.register(self._sub, zmq.POLLIN)
        self._ids = itertools.count(1)
        self._ready: list[ExecutionReport] = []

    def reports(self, timeout: float | None = None) -> Iterator[ExecutionReport]:
        """Yield events as they come; stop after ``timeout`` seconds without any (None: never)."""
        while True:
            while self._ready:
                yield self._ready.pop(0)
            if not self.poll(timeout):
                return

    def poll(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` seconds and file what arrived; False if nothing did."""
        ms = None if timeout is None else int(timeout * 1000)
        if not self._poller.poll(ms):
            due = self._session.poll(time.monotonic())
            if due.sync:  # another venue process: where does its stream stand?
                self._ask(self._session.sync_request())
            self._ask(due.replay)
            return False
        now = time.monotonic()
        while (frames := recv_multipart(self._sub)) is not None:
            if len(frames) == 2:
                try:
                    self._take(self._session.event(frames[0], frames[1], now))
                except WireError:
                    continue
        while (frame := recv(self._dealer)) is not None:
            try:
                envelope = self._session.reply(frame)
            except WireError:
                continue
            if isinstance(envelope.body, ReplayReply):
                self._take(self._session.replayed(envelope.body, now))
            elif isinstance(envelope.body, SyncReply):
                self._ask(self._session.synced_at(envelope.body, now).replay)
        return True

    def _take(self, incoming: Incoming) -> None:
        self._ready += incoming.reports
        self._ask(incoming.replay)

    def _ask(self, body: Replay | Sync | None) -> None:
        if body is not None:
            with contextlib.suppress(zmq.Again):  # not connected yet: asked again on a heartbeat
                self._dealer.send(self._session.request(next(self._ids), body), zmq.NOBLOCK)

    def close(self) -> None:
        self._context.destroy(linger=0)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
