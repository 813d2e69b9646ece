"""The fault plan: misbehaviour the engine can be told to show, each limited to a strategy and/or
instrument, for a number of occurrences or until cleared."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ports.enums import ErrorReason
from ports.models import Identifier

MAX_SECONDS = 366 * 86_400.0  # a year of venue time: longer delays are mistakes, and overflow


class _Fault(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    strategy_id: Identifier | None = Field(default=None, description="Only this strategy's.")
    instrument: Identifier | None = Field(default=None, description="Only this instrument's.")


REJECT_REASONS = frozenset(
    {
        ErrorReason.VENUE_REJECTED,
        ErrorReason.INVALID_REQUEST,
        ErrorReason.UNKNOWN_INSTRUMENT,
        ErrorReason.LIMIT_EXCEEDED,
        ErrorReason.STALE_ORDER,
    }
)


class RejectOrders(_Fault):
    """Reject the next ``count`` new orders (that pass the venue's own checks) with ``reason``."""

    kind: Literal["reject_orders"] = "reject_orders"
    count: int = Field(default=1, ge=1)
    reason: ErrorReason = ErrorReason.VENUE_REJECTED
    message: str = "rejected by fault injection"

    @field_validator("reason")
    @classmethod
    def _an_order_rejection(cls, reason: ErrorReason) -> ErrorReason:
        if reason not in REJECT_REASONS:
            allowed = ", ".join(sorted(r.value for r in REJECT_REASONS))
            raise ValueError(f"a venue rejects an order for one of: {allowed}")
        return reason


class Throttle(_Fault):
    """Accept at most ``max_requests`` submit/amend/cancel/cancel-all per strategy in any
    ``interval`` seconds; refuse the rest with ``retry_after``. Lasts until cleared."""

    kind: Literal["throttle"] = "throttle"
    max_requests: int = Field(ge=1)
    interval: float = Field(gt=0, le=MAX_SECONDS, allow_inf_nan=False)


class DelayAcks(_Fault):
    """Carry out the next ``count`` order requests (all, if None) ``delay`` seconds of venue time
    after they arrive. Amends and cancels show as pending meanwhile; submits as pending new.
    Requests that fail the venue's arrival checks (unknown order, duplicate id, a change already
    pending, too late) are answered at once and do not use the fault."""

    kind: Literal["delay_acks"] = "delay_acks"
    delay: float = Field(gt=0, le=MAX_SECONDS, allow_inf_nan=False)
    count: int | None = Field(default=None, ge=1)


class DelayFills(_Fault):
    """Execute the next ``count`` fills (all, if None) ``delay`` seconds of venue time late."""

    kind: Literal["delay_fills"] = "delay_fills"
    delay: float = Field(gt=0, le=MAX_SECONDS, allow_inf_nan=False)
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
