"""What the engine emits, and how it builds it: ``Publish`` a report, ``Respond`` to a request.

Reports, snapshots and acknowledgements are built from validated requests, checked control
commands and the engine's own state, so they are built without being validated again
(``built``); the property test checks that each equals the validated model.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from ports.enums import AckAction, CancelReason, ErrorReason, ExecType, OrderStatus, Outcome
from ports.models import Acknowledgement, ExecutionReport, OrderSnapshot, Rejection, Reply

if TYPE_CHECKING:
    from mock_venue.orders import Order
    from mock_venue.timers import Timers

_M = TypeVar("_M", bound=BaseModel)
_set = object.__setattr__


def built(model: type[_M], fields: dict[str, Any]) -> _M:
    """``model(**fields)`` without validating it: what ``model_construct`` does, less its handling
    of defaults and aliases (which makes it slower than validation). For the models the engine
    builds on every order, where validation would be a large share of its time (see
    CHANGELOG.md, "Performance history"). ``fields`` holds every field, in declaration order
    (the order they go on the wire in); the property test checks that each model built so
    equals the validated one, types of its values included."""
    instance = model.__new__(model)
    _set(instance, "__dict__", fields)
    _set(instance, "__pydantic_fields_set__", set(fields))
    _set(instance, "__pydantic_extra__", None)
    _set(instance, "__pydantic_private__", None)
    return instance


def acknowledgement(action: AckAction, order: OrderSnapshot) -> Acknowledgement:
    return built(Acknowledgement, {"action": action, "order": order})


def snapshot(order: Order, *, accepted: bool = False) -> OrderSnapshot:
    """The order now, or (``accepted``) as it stood the moment it was accepted."""
    terms = order.terms
    if accepted:
        assert order.accepted_at is not None
        quantity, limit_price, status = terms.quantity, terms.limit_price, OrderStatus.NEW
        cum_qty, leaves_qty, avg_px = Decimal(0), terms.quantity, None
        last_seq, updated_at = order.accepted_seq, order.accepted_at
    else:
        quantity, limit_price, status = order.quantity, order.limit_price, order.status
        cum_qty, leaves_qty, avg_px = order.cum_qty, order.leaves_qty, order.avg_px
        last_seq, updated_at = order.last_seq, order.updated_at or order.created_at
    return built(
        OrderSnapshot,
        {
            "strategy_id": terms.strategy_id,
            "client_order_id": terms.client_order_id,
            "venue_order_id": order.venue_order_id,
            "instrument": terms.instrument,
            "side": terms.side,
            "order_type": terms.order_type,
            "time_in_force": terms.time_in_force,
            "quantity": quantity,
            "limit_price": limit_price,
            "expire_at": terms.expire_at,
            "status": status,
            "cum_qty": cum_qty,
            "leaves_qty": leaves_qty,
            "avg_px": avg_px,
            "last_seq": last_seq,
            "created_at": order.created_at,
            "updated_at": updated_at,
        },
    )


def rejection(reason: ErrorReason, client_order_id: str | None, message: str = "") -> Rejection:
    """A definite rejection (its message, by default, the reason in words)."""
    return Rejection(
        reason=reason,
        message=message or reason.value.replace("_", " "),
        outcome=Outcome.DEFINITE,
        client_order_id=client_order_id,
    )


def submit_answer(order: Order) -> Reply | Rejection | None:
    """The answer to the order's submit (None while it is pending): its rejection, or its
    acknowledgement rebuilt as it was given."""
    if order.rejection is not None:
        return order.rejection
    if order.accepted_at is None:
        return None
    return acknowledgement(AckAction.SUBMIT, snapshot(order, accepted=True))


@dataclass(frozen=True, slots=True)
class Publish:
    """Publish this report on the strategy's stream (and the all-events stream)."""

    report: ExecutionReport


@dataclass(frozen=True, slots=True)
class Respond:
    """Answer the request identified by ``token``."""

    token: Hashable
    result: Reply | Rejection
    delivered: bool = True
    """False: a DropReplies fault swallows it. It is still the request's answer (kept for a
    resend of the request), it just never reaches the requester."""


Output = Publish | Respond


@dataclass(frozen=True, slots=True)
class Undelivered:
    """Wraps the token of a request whose reply a DropReplies fault swallows."""

    token: Hashable


class Outbox:
    """A step's outputs, in the order they happen, and the stream sequence numbers the reports
    take (one sequence per strategy, one venue-wide)."""

    def __init__(self, timers: Timers) -> None:
        self._timers = timers
        self._out: list[Output] = []
        self._seq: dict[str, int] = {}
        self.venue_seq = 0

    def stream_seq(self, strategy_id: str) -> int:
        return self._seq.get(strategy_id, 0)

    def report(
        self,
        order: Order,
        exec_type: ExecType,
        *,
        last_qty: Decimal = Decimal(0),
        last_px: Decimal | None = None,
        fill_id: str | None = None,
        reject_reason: ErrorReason | None = None,
        cancel_reason: CancelReason | None = None,
        text: str = "",
    ) -> None:
        """Report the order as it stands, on its strategy's stream."""
        terms = order.terms
        strategy = terms.strategy_id
        seq = self._seq[strategy] = self._seq.get(strategy, 0) + 1
        self.venue_seq += 1
        now = self._timers.now
        order.last_seq = seq
        order.updated_at = now
        report = built(
            ExecutionReport,
            {
                "seq": seq,
                "venue_seq": self.venue_seq,
                "exec_type": exec_type,
                "status": order.status,
                "strategy_id": strategy,
                "client_order_id": terms.client_order_id,
                "venue_order_id": order.venue_order_id,
                "instrument": terms.instrument,
                "side": terms.side,
                "order_type": terms.order_type,
                "limit_price": order.limit_price,
                "quantity": order.quantity,
                "cum_qty": order.cum_qty,
                "leaves_qty": order.leaves_qty,
                "avg_px": order.avg_px,
                "last_qty": last_qty,
                "last_px": last_px,
                "fill_id": fill_id,
                "reject_reason": reject_reason,
                "cancel_reason": cancel_reason,
                "text": text,
                "venue_time": now,
            },
        )
        self._out.append(Publish(report))

    def respond(self, token: Hashable, result: Reply | Rejection) -> None:
        if isinstance(token, Undelivered):
            self._out.append(Respond(token.token, result, delivered=False))
        else:
            self._out.append(Respond(token, result))

    def reject(
        self, token: Hashable, reason: ErrorReason, client_order_id: str | None, message: str = ""
    ) -> None:
        """Answer with a definite ``rejection``."""
        self.respond(token, rejection(reason, client_order_id, message))

    def drain(self) -> list[Output]:
        """The outputs so far, oldest first; the outbox is empty after."""
        out, self._out = self._out, []
        return out
