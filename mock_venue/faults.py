"""The fault plan: misbehaviour the venue can be told to show. Each fault can be limited to a
strategy, an instrument and/or one order, fire for a number of occurrences (``count``) and/or with
a probability drawn from the venue's seeded RNG, and lasts until used up or cleared.

Engine faults act on orders (reject, throttle, delay, drop replies, the fill-before-change race);
transport faults act on what the venue process publishes (drop, duplicate, reorder, pause);
``Disconnect`` and ``Crash`` act once, when injected. See docs/faults.md."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal, Self

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ports.enums import ErrorReason
from ports.models import Identifier, Quantity

MAX_SECONDS = 366 * 86_400.0  # a year of venue time: longer delays are mistakes, and overflow


class _Fault(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # Settings this kind cannot honour (it acts on the whole venue, or is not a matter of chance):
    # refused, rather than accepted and ignored.
    _unsupported: ClassVar[tuple[str, ...]] = ()

    strategy_id: Identifier | None = Field(default=None, description="Only this strategy's.")
    instrument: Identifier | None = Field(default=None, description="Only this instrument's.")
    client_order_id: Identifier | None = Field(default=None, description="Only this order's.")
    probability: float | None = Field(
        default=None,
        gt=0,
        le=1,
        allow_inf_nan=False,
        description="Fire on each matching occurrence with this (seeded) probability.",
    )

    @model_validator(mode="after")
    def _supported(self) -> Self:
        given = [name for name in self._unsupported if getattr(self, name) is not None]
        if given:
            kind = getattr(self, "kind", type(self).__name__)
            raise ValueError(f"{kind} takes no {', '.join(given)}")
        return self


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
    _unsupported = ("probability",)
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


class FillBeforeChange(_Fault):
    """The race: when one of the next ``count`` amends or cancels of a working order arrives, the
    order is first filled (``quantity``, default all that is left, at its natural price), then the
    change is taken. A full fill makes the change too late."""

    kind: Literal["fill_before_change"] = "fill_before_change"
    count: int = Field(default=1, ge=1)
    quantity: Quantity | None = None


class DropEvents(_Fault):
    """Do not publish the next ``count`` events (they stay available to replay): a lost message."""

    kind: Literal["drop_events"] = "drop_events"
    count: int = Field(default=1, ge=1)


class DuplicateEvents(_Fault):
    """Publish each of the next ``count`` events twice."""

    kind: Literal["duplicate_events"] = "duplicate_events"
    count: int = Field(default=1, ge=1)


class ReorderEvents(_Fault):
    """Hold each of the next ``count`` events back and publish it after the event that follows
    it (or with the next heartbeat)."""

    kind: Literal["reorder_events"] = "reorder_events"
    count: int = Field(default=1, ge=1)


class PausePublishing(_Fault):
    """Publish nothing, heartbeats included, for ``seconds`` (None: until cleared); what was held
    back is then published in order. Subscribers see a silent venue."""

    kind: Literal["pause_publishing"] = "pause_publishing"
    _unsupported = ("strategy_id", "instrument", "client_order_id", "probability")
    seconds: float | None = Field(default=None, gt=0, le=MAX_SECONDS, allow_inf_nan=False)


class Disconnect(_Fault):
    """Close the command and event sockets, dropping what they hold, and bind them again on the
    same endpoints: every client loses its connections at once. Acts when injected."""

    kind: Literal["disconnect"] = "disconnect"
    _unsupported = ("strategy_id", "instrument", "client_order_id", "probability")


class Crash(_Fault):
    """End the venue process abruptly (SIGKILL) ``after`` seconds, as a killed process would: no
    shutdown, nothing flushed but what the journal already holds. Acts when injected, and not
    sooner than 50 ms, so that the answer to the command leaves first."""

    kind: Literal["crash"] = "crash"
    _unsupported = ("strategy_id", "instrument", "client_order_id", "probability")
    after: float = Field(default=0.1, ge=0, le=60, allow_inf_nan=False)


EngineFault = RejectOrders | Throttle | DelayAcks | DelayFills | DropReplies | FillBeforeChange
TransportFault = DropEvents | DuplicateEvents | ReorderEvents | PausePublishing
Fault = Annotated[EngineFault | TransportFault | Disconnect | Crash, Field(discriminator="kind")]
IMMEDIATE_FAULTS = (Disconnect, Crash)
"""Faults that act once, when injected, and are never in force."""


class ActiveFault(BaseModel):
    """A fault in force: its id, what it is, how often it fired and how many uses remain."""

    model_config = ConfigDict(extra="forbid")

    fault_id: int
    fault: Fault
    fired: int = 0
    remaining: int | None


class Scenario(BaseModel):
    """A scenario file: faults a venue puts in force when it starts (YAML or JSON)::

    faults:
      - {kind: throttle, max_requests: 50, interval: 1}
      - {kind: drop_replies, count: 3, probability: 0.1}
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    faults: tuple[Fault, ...] = ()

    @field_validator("faults")
    @classmethod
    def _lasting(cls, faults: tuple[Fault, ...]) -> tuple[Fault, ...]:
        for fault in faults:
            if isinstance(fault, IMMEDIATE_FAULTS):
                raise ValueError(
                    f"{fault.kind} acts once, when injected: inject it into a running venue "
                    "(mock-venue inject), not from a scenario"
                )
        return faults


def load_scenario(path: Path) -> Scenario:
    """Read a scenario file. Raises ``ValueError`` saying what is wrong with it."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    try:
        return Scenario.model_validate(data or {})
    except ValidationError as exc:
        raise ValueError(f"invalid scenario {path}: {exc}") from None
