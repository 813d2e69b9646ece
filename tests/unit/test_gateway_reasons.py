"""A gateway's own cancel-alls (kill switch, cancel on disconnect) name their reason in the
reports it relays, though the adapter behind it cannot be told (``bus.gateway_reasons``)."""

from __future__ import annotations

from bus.gateway_reasons import CancelReasons
from ports import CancelReason, ExecType, OrderStatus
from ports.models import CancelAllAcknowledgement, ExecutionReport
from tests.contract.helpers import limit
from tests.unit.test_risk import report

COD = CancelReason.CANCEL_ON_DISCONNECT


def canceled(order_id: str, strategy_id: str = "s1") -> ExecutionReport:
    order = limit(order_id, strategy_id=strategy_id)
    return report(order, ExecType.CANCELED, OrderStatus.CANCELED,
                  cancel_reason=CancelReason.CANCEL_ALL, leaves_qty=0)  # fmt: skip


def ack(*order_ids: str) -> CancelAllAcknowledgement:
    return CancelAllAcknowledgement(strategy_id="s1", client_order_ids=order_ids)


def test_reports_before_and_after_the_acknowledgement_carry_the_reason() -> None:
    reasons = CancelReasons()
    reasons.begin("s1", COD)
    assert reasons.relabel(canceled("o1")).cancel_reason is COD  # in flight
    assert reasons.relabel(canceled("o9", "s2")).cancel_reason is CancelReason.CANCEL_ALL
    reasons.end("s1", COD, ack("o1", "o2"))
    assert reasons.relabel(canceled("o2")).cancel_reason is COD  # named, came after
    # Each once: a later cancel-all of the strategy's own is its own.
    assert reasons.relabel(canceled("o1")).cancel_reason is CancelReason.CANCEL_ALL
    assert reasons.relabel(canceled("o2")).cancel_reason is CancelReason.CANCEL_ALL


def test_a_strategys_own_cancel_all_and_a_failed_one_leave_reports_alone() -> None:
    reasons = CancelReasons()
    reasons.begin("s1", CancelReason.CANCEL_ALL)
    assert reasons.relabel(canceled("o1")).cancel_reason is CancelReason.CANCEL_ALL
    reasons.end("s1", CancelReason.CANCEL_ALL, ack("o1"))
    reasons.begin("s1", CancelReason.KILL)
    reasons.end("s1", CancelReason.KILL, None)  # the adapter failed
    assert reasons.relabel(canceled("o3")).cancel_reason is CancelReason.CANCEL_ALL
