"""What one server lets its peers use, and the per-client request rate limit.

Every resource a peer's traffic can grow is bounded here or in ``bus.reply_store``; the limits in
force and how full each bound is are in every server's ``status`` (docs/security.md, "Limits").
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from ports.enums import ErrorReason
from ports.models import Rejection

MIB: Final = 1024 * 1024


class ServerLimits(BaseModel):
    """A server's bounds. A client, for the rate limit, is a key (CURVE) or a client id
    (development mode)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    replies_per_client: int = Field(default=100_000, ge=1)
    """Answers kept for one client's retries, oldest dropped first."""
    reply_bytes: int = Field(default=256 * MIB, ge=1)
    """Answers kept for all clients' retries; over it, the client holding most loses its oldest."""
    requests_per_second: float = Field(default=20_000.0, gt=0)
    """Each client's sustained request rate; faster requests are refused ``throttled``."""
    burst: int = Field(default=20_000, ge=1)
    """Requests a client may send at once above its rate."""
    reply_queue: int = Field(default=1_000, ge=1)
    """Replies queued for one peer that does not read them (the send high-water mark of the
    command and control ROUTERs): beyond it, that peer's replies are dropped, not waited for, and
    counted (``reply_queue_drops``); a resend of the same request id gets its answer again.
    A count, not bytes: such a peer pins up to this many of its largest replies."""
    event_queue: int = Field(default=100_000, ge=1)
    """Events queued for one subscriber that does not read (ZeroMQ's send high-water mark):
    beyond it, that subscriber misses events (and replays them), the others do not wait."""
    heartbeat_streams: int = Field(default=100_000, ge=1)
    """Strategies whose own heartbeat is sent, the most recently subscribed kept."""
    rate_clients: int = Field(default=100_000, ge=1)
    """Clients whose rate is tracked, the most recent kept (a forgotten one starts afresh)."""


class LimitsStatus(BaseModel):
    """The limits in force and how full each bound is now."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    limits: ServerLimits
    reply_clients: int
    reply_entries: int
    reply_bytes: int
    replies_evicted: int
    rate_clients: int
    throttled: int
    heartbeat_streams: int
    reply_queue_drops: int = 0
    """Replies not queued because their peer's queue was full (``reply_queue``)."""


def throttled(request: BaseModel, retry_after: float, why: str) -> Rejection:
    """The answer to a request refused for now: nothing done, ask again after ``retry_after``
    seconds."""
    return Rejection(
        reason=ErrorReason.THROTTLED,
        message=f"{why}: retry after {retry_after:.3f} s",
        retry_after=retry_after,
        client_order_id=getattr(request, "client_order_id", None),
    )


class RateLimiter:
    """A token bucket per client: ``rate`` tokens a second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: int, clients: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._max_clients = clients
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()  # client -> [tokens, at]
        self.throttled = 0

    @property
    def clients(self) -> int:
        return len(self._buckets)

    def wait(self, client: str, now: float) -> float | None:
        """Take one request of ``client`` at ``now`` (seconds, monotonic): None if it may go,
        else how long until it may."""
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = [self._burst, now]
            if len(self._buckets) > self._max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(client)
            bucket[0] = min(self._burst, bucket[0] + (now - bucket[1]) * self._rate)
            bucket[1] = now
        if bucket[0] >= 1.0:
            bucket[0] -= 1.0
            return None
        self.throttled += 1
        return (1.0 - bucket[0]) / self._rate
