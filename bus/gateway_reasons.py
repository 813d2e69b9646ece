"""Why a gateway's cancel-all canceled, carried to its reports (sans-io).

A server's own cancel-alls (its kill switch, cancel on disconnect) say why in
``CancelAllOrders.reason``; an ``OrderExecutionPort`` adapter's ``cancel_all_orders`` cannot be
told, and its reports say ``cancel_all``. ``CancelReasons`` puts the reason back: on each
``cancel_all`` report of that strategy relayed while such a cancel-all is in flight, and on
those of the orders its acknowledgement names that come after it (replies and reports are not
ordered against each other)."""

from __future__ import annotations

from ports.enums import CancelReason
from ports.models import CancelAllAcknowledgement, ExecutionReport


class CancelReasons:
    """The reasons of the cancel-alls in flight, by strategy, and of the orders they named."""

    def __init__(self) -> None:
        self._in_flight: dict[str, list[CancelReason]] = {}
        self._relayed: dict[str, set[str]] = {}  # relabelled while in flight
        self._named: dict[tuple[str, str], CancelReason] = {}  # acknowledged, report to come

    def begin(self, strategy_id: str, reason: CancelReason) -> None:
        """A cancel-all with ``reason`` goes to the adapter."""
        if reason is not CancelReason.CANCEL_ALL:
            self._in_flight.setdefault(strategy_id, []).append(reason)
            self._relayed.setdefault(strategy_id, set())

    def end(
        self, strategy_id: str, reason: CancelReason, done: CancelAllAcknowledgement | None
    ) -> None:
        """It was answered (``done``), or failed (None)."""
        if reason is CancelReason.CANCEL_ALL:
            return
        reasons = self._in_flight[strategy_id]
        reasons.remove(reason)
        relayed = self._relayed[strategy_id] if reasons else self._relayed.pop(strategy_id)
        if not reasons:
            del self._in_flight[strategy_id]
        if done is not None:
            for order_id in done.client_order_ids:
                if order_id not in relayed:
                    self._named[(strategy_id, order_id)] = reason

    def relabel(self, report: ExecutionReport) -> ExecutionReport:
        """``report`` with the reason of the cancel-all that canceled it."""
        if report.cancel_reason is not CancelReason.CANCEL_ALL:
            return report
        strategy, order_id = report.strategy_id, report.client_order_id
        reason = self._named.pop((strategy, order_id), None)
        if reason is None and strategy in self._in_flight:
            reason = self._in_flight[strategy][-1]
            self._relayed[strategy].add(order_id)
        if reason is None:
            return report
        return report.model_copy(update={"cancel_reason": reason})
