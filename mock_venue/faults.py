"""The fault plan: misbehaviour the engine can be told to show, each limited to a strategy and/or
instrument, for a number of occurrences or until cleared."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from ports.enums import ErrorReason
from ports.models import Identifier


class _Fault(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    strategy_id: Identifier | None = Field(default=None, description="Only this strategy's.")
    instrument: Identifier | None = Field(default=None, description="Only this instrument's.")


class RejectOrders(_Fault):
    """Reject the next ``count`` new orders with ``reason``."""

    kind: Literal["reject_orders"] = "reject_orders"
    count: int = Field(default=1, ge=1)
    reason: ErrorReason = ErrorReason.VENUE_REJECTED
    message: str = "rejected by fault injection"


class Throttle(_Fault):
    """Accept at most ``max_requests`` submit/amend/cancel/cancel-all per strategy in any
    ``interval`` seconds; refuse the rest with ``retry_after``. Lasts until cleared."""

    kind: Literal["throttle"] = "throttle"
    max_requests: int = Field(ge=1)
    interval: float = Field(gt=0)


class DelayAcks(_Fault):
    """Process the next ``count`` order requests (all, if None) ``delay`` seconds of venue time
    after they arrive. Amends and cancels show as pending meanwhile; submits as pending new."""

    kind: Literal["delay_acks"] = "delay_acks"
    delay: float = Field(gt=0)
    count: int | None = Field(default=None, ge=1)


class DelayFills(_Fault):
    """Execute the next ``count`` fills (all, if None) ``delay`` seconds of venue time late."""

    kind: Literal["delay_fills"] = "delay_fills"
    delay: float = Field(gt=0)
    count: int | None = Field(default=None, ge=1)


class DropReplies(_Fault):
    """Execute the next ``count`` order requests but never answer them: events are published,
    the requester hears nothing (its ack times out with outcome unknown)."""

    kind: Literal["drop_replies"] = "drop_replies"
    count: int = Field(default=1, ge=1)


Fault = Annotated[
    RejectOrders | Throttle | DelayAcks | DelayFills | DropReplies, Field(discriminator="kind")
]


class ActiveFault(BaseModel):
    """A fault in force: its id, what it is, how often it fired and how many uses remain."""

    model_config = ConfigDict(extra="forbid")

    fault_id: int
    fault: Fault
    fired: int = 0
    remaining: int | None
