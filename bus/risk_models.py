"""The risk controls' models: the limits (``--risk FILE``), what ``status`` shows of them, and
the admin commands on the control channel the server answers itself (kill, resume, limits at
run time, positions). The logic is ``bus.risk``'s."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from ports.positions import Position

_Amount = Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]


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
