"""``BlockingMonitor``: every strategy's events, exactly once and in order (venue_seq)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from types import TracebackType
from typing import Self

import zmq

from bus.client_events import ClientEvent, FramesToSend, ReportsReady
from bus.client_protocol import ClientProtocol
from bus.codec import WireError
from bus.curve import ClientKeys, resolve
from bus.sockets import configure_dealer, configure_sub, recv, recv_multipart, try_send
from bus.transport import TICK
from ports.models import ExecutionReport


class BlockingMonitor:
    """Follows the venue's all-events stream after ``after_venue_seq`` (0: from the first event
    the venue published; earlier ones are replayed).

    Gaps (a message lost at the PUB's high-water mark, or a late subscription) are replayed over
    the command channel, so ``reports()`` yields every event once, in ``venue_seq`` order.
    """

    def __init__(
        self,
        *,
        command: str,
        events: str,
        after_venue_seq: int = 0,
        keys: ClientKeys | None = None,
    ) -> None:
        self._protocol = ClientProtocol(None)
        self._protocol.start_after(after_venue_seq)
        self._context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._dealer = self._context.socket(zmq.DEALER)
        self._sub = self._context.socket(zmq.SUB)
        configure_dealer(self._dealer)
        configure_sub(self._sub, self._protocol.topics)
        keys = resolve(keys)
        if keys is not None:
            keys.apply(self._dealer)
            keys.apply(self._sub)
        self._dealer.connect(command)
        self._sub.connect(events)
        self._poller = zmq.Poller()
        self._poller.register(self._dealer, zmq.POLLIN)
        self._poller.register(self._sub, zmq.POLLIN)
        self._ready: deque[ExecutionReport] = deque()
        self._next_housekeeping = 0.0

    def reports(self, timeout: float | None = None) -> Iterator[ExecutionReport]:
        """Yield events as they come; stop after ``timeout`` seconds without any (None: never)."""
        while True:
            while self._ready:
                yield self._ready.popleft()
            if not self.poll(timeout):
                return

    def poll(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` seconds and file what arrived; False if nothing did."""
        ms = None if timeout is None else int(timeout * 1000)
        arrived = bool(self._poller.poll(ms))
        now = time.monotonic()
        while (frames := recv_multipart(self._sub)) is not None:
            if len(frames) == 2:
                try:
                    self._act(self._protocol.receive_event(frames[0], frames[1], now), now)
                except WireError:
                    continue
        while (frame := recv(self._dealer)) is not None:
            try:
                self._act(self._protocol.receive_reply(frame, now), now)
            except WireError:
                continue
        # Replays asked again, re-syncs with another venue process: even while events stream in.
        if not arrived or now >= self._next_housekeeping:
            self._next_housekeeping = now + TICK
            self._act(self._protocol.poll(now), now)
        return arrived

    def _act(self, events: list[ClientEvent], now: float) -> None:
        for event in events:
            if isinstance(event, ReportsReady):
                self._ready += event.reports
            elif isinstance(event, FramesToSend):
                for request_id, frame in event.frames:
                    if not try_send(self._dealer, frame):
                        self._protocol.unsent(request_id, now)  # asked again later

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
