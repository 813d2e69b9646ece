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
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from bus.limits import RateLimiter
from bus.positions import Ledger, WorkingOrder
from ports.enums import ErrorReason
from ports.models import AmendOrder, ExecutionReport, Rejection, SubmitOrder
from ports.positions import Position, PositionsSnapshot

_Amount = Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]
_log = logging.getLogger("orderbus.risk")  # bus.logs formats it


class RiskLimits(BaseModel):
    """Limits of one scope (a strategy, or the venue in total); None: no such limit."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_order_quantity: _Amount | None = None
    """Most quantity one order may have (an amend's new quantity too)."""
    max_order_notional: _Amount | None = None
    """Most quantity x price one order may have (a market order: at the latest fill price)."""
    max_open_orders: int | None = Field(default=None, ge=0)
    """Most working orders at once."""
    max_position: _Amount | None = None
    """Most net position per instrument, long or short, if every working order on the side
    of the new one filled, and it too."""
    max_orders_per_second: float | None = Field(default=None, gt=0)
    """Most submits and amends a second (a token bucket of one second's worth)."""


class RiskConfig(BaseModel):
    """A server's limits: ``venue`` for all strategies together, ``strategy`` for each strategy
    not named in ``strategies``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    venue: RiskLimits = RiskLimits()
    strategy: RiskLimits = RiskLimits()
    strategies: dict[str, RiskLimits] = {}

    def of(self, strategy_id: str) -> RiskLimits:
        """The limits of one strategy."""
        return self.strategies.get(strategy_id, self.strategy)


class RiskStatus(BaseModel):
    """The limits in force, what is halted, and what was refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    config: RiskConfig
    halted_all: bool
    halted: tuple[str, ...]
    breaches: dict[str, int]
    open_orders: int


_Held = tuple[str, str, WorkingOrder | None, bool]  # strategy, order, as it was, reported since


class Risk:
    """The pre-trade gate and the ledger it checks against. ``observe`` every published report;
    ``answered`` every answer to a request ``check`` let through."""

    def __init__(self, config: RiskConfig | None = None) -> None:
        self.config = config if config is not None else RiskConfig()
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
            if working is None:
                return None  # unknown here: the backend answers for it
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
        self.breaches[what] = self.breaches.get(what, 0) + 1
        # A breach is news; an order refused while halted is what the halt is for (DEBUG).
        level = logging.DEBUG if reason is ErrorReason.TRADING_HALTED else logging.WARNING
        breach = {"event": "limit_breach", "limit": what, "client_order_id": order_id}
        _log.log(level, "refused: %s", message, extra=breach)
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
        self._held[key] = (strategy, order_id, was, False)
        self._held_orders.setdefault((strategy, order_id), set()).add(key)

    def answered(self, key: Hashable, result: BaseModel) -> None:
        """The backend answered a request ``check`` let through. A refusal undoes what it was
        counted for, unless a report about its order came since (that report is the truth)."""
        held = self._held.pop(key, None)
        if held is None:
            return
        strategy, order_id, was, reported = held
        keys = self._held_orders[(strategy, order_id)]
        keys.discard(key)
        if not keys:
            del self._held_orders[(strategy, order_id)]
        if isinstance(result, Rejection) and not reported:
            self.ledger.hold(strategy, order_id, was)

    def observe(self, report: ExecutionReport) -> None:
        """A report the server publishes."""
        self.ledger.observe(report)
        for key in self._held_orders.get((report.strategy_id, report.client_order_id), ()):
            strategy, order_id, was, _ = self._held[key]
            self._held[key] = (strategy, order_id, was, True)

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
        """What a restart must keep: the limits as changed at run time, and the halts."""
        return {
            "config": self.config.model_dump(mode="json"),
            "halted_all": self.halted_all,
            "halted": sorted(self.halted),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.config = RiskConfig.model_validate(state["config"])
        self.halted_all = bool(state["halted_all"])
        self.halted = set(state["halted"])

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


# --- control channel (admins): the server answers these itself, whatever its backend ---------


class Kill(BaseModel):
    """Halt ``strategy_id`` (None: every strategy): cancel its open orders, refuse new orders
    (``trading_halted``) until ``Resume``. Cancels and queries stay allowed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    strategy_id: str | None = None


class Resume(BaseModel):
    """Lift the halt of ``strategy_id`` (None: every halt)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    strategy_id: str | None = None


class Halted(BaseModel):
    """What is halted now; ``canceling``: the strategies whose open orders a kill cancels."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    halted_all: bool
    halted: tuple[str, ...]
    canceling: tuple[str, ...] = ()


class SetRiskLimits(BaseModel):
    """Put ``config`` in force at once (kept across a restart with the server's state file)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    config: RiskConfig


class GetPositions(BaseModel):
    """Ask for the positions of ``strategy_id`` (None: every strategy's, and the total)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    strategy_id: str | None = None


class StrategyPositions(BaseModel):
    """One strategy's positions (``strategy_id`` None: the venue in total), by instrument."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    strategy_id: str | None
    positions: tuple[Position, ...]


class Positions(BaseModel):
    """Positions per strategy, and the total (when every strategy was asked for)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    strategies: tuple[StrategyPositions, ...]


RISK_CONTROL_MODELS: Mapping[str, type[BaseModel]] = {
    "kill": Kill,
    "resume": Resume,
    "halted": Halted,
    "set_risk_limits": SetRiskLimits,
    "risk_status": RiskStatus,
    "get_positions": GetPositions,
    "positions": Positions,
}
