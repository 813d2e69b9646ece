"""The answers a venue keeps for retries: each client's own window, bounded in bytes overall.

A retry (the same client id and request id) is answered from here instead of being executed
again. Each client keeps at most ``per_client`` answers, oldest dropped first; all clients
together at most ``max_bytes``. When the total is over, the client holding the most bytes loses
its oldest answers: no client's traffic can push another's retry window out (a quiet client holds
little), and a client that sends ever new client ids only evicts its own.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Final

_ENTRY_COST: Final = 120
"""What one kept answer costs besides its frame (its key, the dict slot): an estimate."""
_CLIENT_COST: Final = 400
"""What one client's window costs when empty: an estimate."""


class ReplyStore:
    """Answers by (client, request id). A value is a frame (bytes), or a token the venue turns
    back into the answer (counted as ``_ENTRY_COST`` only: what it stands for is kept anyway)."""

    def __init__(self, *, per_client: int = 100_000, max_bytes: int = 256 * 1024 * 1024) -> None:
        if per_client < 1 or max_bytes < 1:
            raise ValueError("a reply store keeps at least one answer")
        self.per_client = per_client
        self.max_bytes = max_bytes
        self._windows: dict[str, OrderedDict[int, Hashable]] = {}
        self._bytes: dict[str, int] = {}
        self.bytes = 0
        self.entries = 0
        self.evicted = 0

    @property
    def clients(self) -> int:
        """Clients with answers kept."""
        return len(self._windows)

    def get(self, client: str, request_id: int) -> Hashable | None:
        window = self._windows.get(client)
        return None if window is None else window.get(request_id)

    def put(self, client: str, request_id: int, value: Hashable) -> None:
        window = self._windows.get(client)
        if window is None:
            window = self._windows[client] = OrderedDict()
            self._bytes[client] = _CLIENT_COST + len(client)
            self.bytes += _CLIENT_COST + len(client)
        elif request_id in window:
            self._remove(client, window, request_id)
        window[request_id] = value
        self._charge(client, _cost(value))
        self.entries += 1
        if len(window) > self.per_client:
            self._remove(client, window, next(iter(window)))
            self.evicted += 1
        if self.bytes > self.max_bytes:
            self._shed()

    def _remove(self, client: str, window: OrderedDict[int, Hashable], request_id: int) -> None:
        self._charge(client, -_cost(window.pop(request_id)))
        self.entries -= 1

    def _charge(self, client: str, cost: int) -> None:
        self._bytes[client] += cost
        self.bytes += cost

    def _shed(self) -> None:
        """Down to 90% of the budget (so that one scan of the clients pays for many evictions),
        from the largest client's oldest answers until it holds no more than a fair share."""
        target = self.max_bytes * 9 // 10
        while self.bytes > target and self._windows:
            client = max(self._bytes, key=self._bytes.__getitem__)
            window = self._windows[client]
            fair = target // len(self._windows)
            while window and self.bytes > target:
                self._remove(client, window, next(iter(window)))
                self.evicted += 1
                if self._bytes[client] <= fair:
                    break
            if not window:
                self.bytes -= self._bytes.pop(client)
                del self._windows[client]


def _cost(value: Hashable) -> int:
    return _ENTRY_COST + (len(value) if isinstance(value, bytes) else 0)
