"""The answers a venue keeps for retries: each owner's own window, bounded in bytes overall.

A retry (the same client id and request id) is answered from here instead of being executed
again. An owner is who the answers belong to: with CURVE, the key (whatever client ids its
peers claim); in development mode, the client id. Each owner keeps at most ``per_owner``
answers, oldest dropped first; all owners together at most ``max_bytes``. Over that, the owners
holding the most lose their oldest answers, down to a common level: a key's traffic, however it
names its clients, never pushes out another key's retry window.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Final

_ENTRY_COST: Final = 120
"""What one kept answer costs besides its frame (its key, the dict slot): an estimate."""
_OWNER_COST: Final = 400
"""What one owner's window costs when empty: an estimate."""

Key = tuple[str, int]
"""(client id, request id)."""


class ReplyStore:
    """Answers by owner and (client, request id). A value is a frame (bytes), or a token the
    venue turns back into the answer (counted as ``_ENTRY_COST`` only: what it stands for is
    kept anyway)."""

    def __init__(self, *, per_owner: int = 100_000, max_bytes: int = 256 * 1024 * 1024) -> None:
        if per_owner < 1 or max_bytes < 1:
            raise ValueError("a reply store keeps at least one answer")
        self.per_owner = per_owner
        self.max_bytes = max_bytes
        self._windows: dict[str, OrderedDict[Key, Hashable]] = {}
        self._bytes: dict[str, int] = {}
        self.bytes = 0
        self.entries = 0
        self.evicted = 0

    @property
    def owners(self) -> int:
        """Owners with answers kept."""
        return len(self._windows)

    def get(self, owner: str, key: Key) -> Hashable | None:
        window = self._windows.get(owner)
        return None if window is None else window.get(key)

    def put(self, owner: str, key: Key, value: Hashable) -> None:
        window = self._windows.get(owner)
        if window is None:
            window = self._windows[owner] = OrderedDict()
            self._bytes[owner] = 0
            self._charge(owner, _OWNER_COST + len(owner))
        elif key in window:
            self._remove(owner, window, key)
        window[key] = value
        self._charge(owner, _cost(key, value))
        self.entries += 1
        if len(window) > self.per_owner:
            self._remove(owner, window, next(iter(window)))
            self.evicted += 1
        if self.bytes > self.max_bytes:
            self._shed()

    def _remove(self, owner: str, window: OrderedDict[Key, Hashable], key: Key) -> None:
        self._charge(owner, -_cost(key, window.pop(key)))
        self.entries -= 1

    def _charge(self, owner: str, cost: int) -> None:
        self._bytes[owner] += cost
        self.bytes += cost

    def _shed(self) -> None:
        """Down to 90% of the budget (so that one pass pays for many evictions): the largest
        owners are cut to a common level, their oldest answers first."""
        target = self.max_bytes * 9 // 10
        sizes = sorted(self._bytes.values(), reverse=True)
        excess, prefix, level = self.bytes - target, 0, 0
        for n, size in enumerate(sizes):  # the level that takes ``excess`` off the largest
            prefix += size
            following = sizes[n + 1] if n + 1 < len(sizes) else 0
            if prefix - (n + 1) * following >= excess:
                level = max((prefix - excess) // (n + 1), 0)
                break
        for owner in [o for o, size in self._bytes.items() if size > level]:
            window = self._windows[owner]
            while window and self._bytes[owner] > level:
                self._remove(owner, window, next(iter(window)))
                self.evicted += 1
            if not window:
                self.bytes -= self._bytes.pop(owner)
                del self._windows[owner]


def _cost(key: Key, value: Hashable) -> int:
    return _ENTRY_COST + len(key[0]) + (len(value) if isinstance(value, bytes) else 0)
