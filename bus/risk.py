"""Pre-trade controls of a server, in front of whatever backend it hosts: limits per strategy and
venue-wide, and the kill switch. No sockets, no clock (``now`` is an argument): tested in memory.

A request is checked after authorization and the retry store (a resend gets its first answer,
never a second check), before the backend sees it. Cancels, cancel-alls and queries are never
blocked. What a request let through will add to a strategy's working orders counts at once,
before any report, so a pipelined burst cannot slip past a limit (``bus.positions.Ledger``).
See docs/gateway.md, "Pre-trade controls".
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from bus.limits import RateLimiter
from bus.positions import Ledger, WorkingOrder
from bus.risk_models import Positions, RiskConfig, RiskLimits, RiskStatus, StrategyPositions
from ports.enums import ErrorReason
from ports.models import AmendOrder, ExecutionReport, Rejection, SubmitOrder
from ports.positions import PositionsSnapshot

_log = logging.getLogger("orderbus.risk")  # bus.logs formats it


# strategy, order, as it was, as this request made it, reported since
_Held = tuple[str, str, WorkingOrder | None, WorkingOrder, bool]


class Risk:
    """The pre-trade gate and the ledger it checks against. ``observe`` every published report;
    ``answered`` every answer to a request ``check`` let through."""

    def __init__(self, config: RiskConfig | None = None) -> None:
        self.config = config if config is not None else RiskConfig()
        self._given = self.config  # from the server's options: what run-time changes depart from
        self.ledger = Ledger()
        self.halted: set[str] = set()
        self.halted_all = False
        self.breaches: dict[str, int] = {}
        self._rates: dict[str | None, tuple[float, RateLimiter]] = {}
        self._held: dict[Hashable, _Held] = {}
        self._held_orders: dict[tuple[str, str], set[Hashable]] = {}

    # --- requests -----------------------------------------------------------------------------

    def check(self, key: Hashable, request: object, now: float | None) -> Rejection | None:
        """None if ``request`` may go to the backend (then it counts as working from now on);
        else the rejection that answers it."""
        if not isinstance(request, SubmitOrder | AmendOrder):
            return None  # cancels, cancel-alls and queries are never blocked
        strategy = request.strategy_id
        order_id = request.client_order_id
        if self.halted_all or strategy in self.halted:
            halted = "every strategy" if self.halted_all else f"strategy {strategy!r}"
            return self._refuse(
                "trading_halted",
                ErrorReason.TRADING_HALTED,
                f"trading is halted for {halted}: cancels and queries only, until resumed",
                order_id,
            )
        working = self.ledger.working(strategy, order_id)
        if isinstance(request, SubmitOrder):
            if working is not None:
                return None  # a resend, or a duplicate id: the backend's to answer
            after = WorkingOrder(
                request.instrument,
                request.side,
                request.quantity,
                request.limit_price,
                request.quantity,
            )
            added, new_order = request.quantity, 1
        else:
            if working is None:  # unknown here (a gateway started afresh): what needs no count
                return self._quantity_only(strategy, request)
            quantity = request.quantity if request.quantity is not None else working.quantity
            price = request.limit_price if request.limit_price is not None else working.price
            leaves = max(working.leaves + quantity - working.quantity, Decimal(0))
            # Counted at the larger leaves until the venue says how the amend went.
            after = WorkingOrder(
                working.instrument, working.side, max(leaves, working.leaves), price, quantity
            )
            added, new_order = max(Decimal(0), leaves - working.leaves), 0
        scopes: tuple[tuple[str | None, RiskLimits], ...] = (
            (strategy, self.config.of(strategy)),
            (None, self.config.venue),
        )
        for where, limits in scopes:
            refusal = self._limit(where, limits, after, added, new_order, order_id, now)
            if refusal is not None:
                return refusal
        self._hold(key, strategy, order_id, working, after)
        return None

    def _quantity_only(self, strategy: str, amend: AmendOrder) -> Rejection | None:
        for where, limits in (
            (repr(strategy), self.config.of(strategy)),
            (None, self.config.venue),
        ):
            top = limits.max_order_quantity
            if top is not None and amend.quantity is not None and amend.quantity > top:
                scope = "venue-wide" if where is None else f"of strategy {where}"
                return self._breach("max_order_quantity", top, scope, amend.quantity,
                                    amend.client_order_id)  # fmt: skip
        return None

    def _limit(
        self,
        scope: str | None,
        limits: RiskLimits,
        order: WorkingOrder,
        added: Decimal,
        new_order: int,
        order_id: str,
        now: float | None,
    ) -> Rejection | None:
        where = "venue-wide" if scope is None else f"of strategy {scope!r}"
        if limits.max_order_quantity is not None and order.quantity > limits.max_order_quantity:
            return self._breach(
                "max_order_quantity", limits.max_order_quantity, where, order.quantity, order_id
            )
        if limits.max_order_notional is not None:
            price = order.price or self.ledger.last_price.get(order.instrument)
            if price is None:
                return self._breach(
                    "max_order_notional",
                    limits.max_order_notional,
                    where,
                    "not known: a market order before any fill in the instrument",
                    order_id,
                )
            if (notional := order.quantity * price) > limits.max_order_notional:
                return self._breach(
                    "max_order_notional", limits.max_order_notional, where, notional, order_id
                )
        if limits.max_open_orders is not None and new_order:
            count = self.ledger.open_orders(scope) + 1
            if count > limits.max_open_orders:
                return self._breach(
                    "max_open_orders", limits.max_open_orders, where, count, order_id
                )
        if limits.max_position is not None and added > 0:
            worst = self.ledger.worst_case(scope, order.instrument, order.side, added)
            if abs(worst) > limits.max_position:
                return self._breach("max_position", limits.max_position, where, worst, order_id)
        if limits.max_orders_per_second is not None and now is not None:
            wait = self._rate(scope, limits.max_orders_per_second).wait(scope or "", now)
            if wait is not None:
                self.breaches["max_orders_per_second"] = (
                    self.breaches.get("max_orders_per_second", 0) + 1
                )
                return Rejection(
                    reason=ErrorReason.THROTTLED,
                    message=f"max_orders_per_second {limits.max_orders_per_second} {where}: "
                    f"retry after {wait:.3f} s",
                    retry_after=wait,
                    client_order_id=order_id,
                )
        return None

    def _rate(self, scope: str | None, rate: float) -> RateLimiter:
        known = self._rates.get(scope)
        if known is None or known[0] != rate:  # a new limit starts with a full bucket
            known = self._rates[scope] = (rate, RateLimiter(rate, max(1, int(rate)), 1))
        return known[1]

    def _breach(
        self, limit: str, value: object, where: str, found: object, order_id: str
    ) -> Rejection:
        return self._refuse(
            limit,
            ErrorReason.LIMIT_EXCEEDED,
            f"{limit} {value} {where}: this order would make it {found}",
            order_id,
        )

    def _refuse(self, what: str, reason: ErrorReason, message: str, order_id: str) -> Rejection:
        count = self.breaches[what] = self.breaches.get(what, 0) + 1
        # A breach is news, but a runaway strategy must not flood the log (nor slow the loop):
        # the 1st, 10th, 100th, ... of each limit at WARNING, every one at DEBUG; an order
        # refused while halted is what the halt is for (DEBUG). The counts are in the metrics.
        news = reason is not ErrorReason.TRADING_HALTED and _power_of_ten(count)
        if news or _log.isEnabledFor(logging.DEBUG):
            breach = {"event": "limit_breach", "limit": what, "client_order_id": order_id,
                      "breaches": count}  # fmt: skip
            _log.log(logging.WARNING if news else logging.DEBUG, "refused: %s", message,
                     extra=breach)  # fmt: skip
        return Rejection(reason=reason, message=message, client_order_id=order_id)

    def _hold(
        self,
        key: Hashable,
        strategy: str,
        order_id: str,
        was: WorkingOrder | None,
        after: WorkingOrder,
    ) -> None:
        self.ledger.hold(strategy, order_id, after)
        self._held[key] = (strategy, order_id, was, after, False)
        self._held_orders.setdefault((strategy, order_id), set()).add(key)

    def answered(self, key: Hashable, result: BaseModel) -> None:
        """The backend answered a request ``check`` let through. A refusal undoes what it was
        counted for, unless a report about its order came since (that report is the truth)."""
        held = self._held.pop(key, None)
        if held is None:
            return
        strategy, order_id, was, after, reported = held
        keys = self._held_orders[(strategy, order_id)]
        keys.discard(key)
        if not keys:
            del self._held_orders[(strategy, order_id)]
        if not isinstance(result, Rejection) or reported:
            return
        # Undone as if it had never been: where the order is as this request made it, back to
        # as it was; a request of the same order made after this one now starts from that.
        if self.ledger.working(strategy, order_id) is after:
            self.ledger.hold(strategy, order_id, was)
        for other in self._held_orders.get((strategy, order_id), ()):
            s, o, other_was, other_after, other_reported = self._held[other]
            if other_was is after:
                self._held[other] = (s, o, was, other_after, other_reported)

    def observe(self, report: ExecutionReport) -> None:
        """A report the server publishes."""
        self.ledger.observe(report)
        for key in self._held_orders.get((report.strategy_id, report.client_order_id), ()):
            strategy, order_id, was, after, _ = self._held[key]
            self._held[key] = (strategy, order_id, was, after, True)

    # --- the kill switch ----------------------------------------------------------------------

    def halt(self, strategy_id: str | None) -> list[str]:
        """Refuse new orders of ``strategy_id`` (None: of every strategy) until ``resume``;
        the strategies whose open orders are to be canceled now."""
        if strategy_id is None:
            self.halted_all = True
            return [s for s in self.ledger.strategies() if self.ledger.open_orders(s)]
        self.halted.add(strategy_id)
        return [strategy_id]

    def resume(self, strategy_id: str | None) -> None:
        """Lift a halt: of ``strategy_id``, or (None) every halt."""
        if strategy_id is None:
            self.halted_all = False
            self.halted.clear()
        else:
            self.halted.discard(strategy_id)

    # --- what is kept across a restart, and shown -----------------------------------------------

    def state(self) -> dict[str, Any]:
        """What a restart must keep: the halts, and limits changed at run time (with the ones
        given then, so that a restart with other limits given knows they were changed since)."""
        state: dict[str, Any] = {"halted_all": self.halted_all, "halted": sorted(self.halted)}
        if self.config != self._given:
            state["config"] = self.config.model_dump(mode="json")
            state["given"] = self._given.model_dump(mode="json")
        return state

    def restore(self, state: Mapping[str, Any]) -> None:
        """The halts always; limits set at run time unless the limits given have changed since
        (an operator edited the ``--risk`` file: it wins, and the log says so)."""
        self.halted_all = bool(state["halted_all"])
        self.halted = set(state["halted"])
        if "config" not in state:
            return
        if RiskConfig.model_validate(state["given"]) == self._given:
            self.config = RiskConfig.model_validate(state["config"])
            _log.warning("limits set at run time in force again", extra={"event": "risk_limits"})
        else:
            extra = {"event": "risk_limits_dropped"}
            _log.warning("limits set at run time dropped: the limits given changed", extra=extra)

    def status(self) -> RiskStatus:
        return RiskStatus(
            config=self.config,
            halted_all=self.halted_all,
            halted=tuple(sorted(self.halted)),
            breaches=dict(sorted(self.breaches.items())),
            open_orders=self.ledger.open_orders(),
        )

    def positions_of(self, strategy_id: str) -> PositionsSnapshot:
        """A strategy's own positions, as its port asks for them."""
        return PositionsSnapshot(
            strategy_id=strategy_id, positions=self.ledger.positions(strategy_id)
        )

    def positions(self, strategy_id: str | None = None) -> Positions:
        """The positions of ``strategy_id``, or of every strategy and the total."""
        ledger = self.ledger
        if strategy_id is not None:
            one = StrategyPositions(
                strategy_id=strategy_id, positions=ledger.positions(strategy_id)
            )
            return Positions(strategies=(one,))
        each = [
            StrategyPositions(strategy_id=s, positions=ledger.positions(s))
            for s in ledger.strategies()
        ]
        total = StrategyPositions(strategy_id=None, positions=ledger.positions())
        return Positions(strategies=(*each, total))


def _power_of_ten(n: int) -> bool:
    while n % 10 == 0:
        n //= 10
    return n == 1
