"""Control-channel messages of the venue process: what a test harness may tell it to do.

They travel in the same envelope as the port's messages (bus.codec), on their own endpoint, so a
strategy can never reach them by accident.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from bus.backend import SERVER_CONTROL_MODELS, GetStatus, SecurityStatus
from bus.codec import MODELS
from bus.limits import LimitsStatus
from bus.risk_models import RiskStatus
from mock_venue.faults import MAX_SECONDS, ActiveFault, Fault
from ports.models import Identifier, Price, Quantity, Rejection


class VenueControlError(ValueError):
    """A control command (scripted fill, restatement, ...) that does not fit the venue's state."""


_AMOUNT: TypeAdapter[Decimal] = TypeAdapter(Quantity)  # a Price has the same bounds


def checked_amount(value: object, what: str) -> Decimal:
    """A quantity or price a control command gives (a float: the decimal it reads as), checked
    before the engine changes anything: what reports carry is built unvalidated."""
    try:
        return _AMOUNT.validate_python(repr(value) if type(value) is float else value)
    except ValidationError as error:
        raise VenueControlError(f"{what} {value!r}: {error.errors()[0]['msg']}") from None


class _Control(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Advance(_Control):
    """Move a manual-clock venue's time forward."""

    seconds: float = Field(ge=0, le=MAX_SECONDS, allow_inf_nan=False)


class FillOrder(_Control):
    """Scripted fill, now."""

    strategy_id: Identifier
    client_order_id: Identifier
    quantity: Quantity | None = None
    price: Price | None = None


class CancelUnsolicited(_Control):
    """The venue cancels a working order on its own."""

    strategy_id: Identifier
    client_order_id: Identifier


class Restate(_Control):
    """The venue reduces a working order's quantity on its own."""

    strategy_id: Identifier
    client_order_id: Identifier
    quantity: Quantity


class InjectFault(_Control):
    """Put a fault in force."""

    fault: Fault


class ClearFaults(_Control):
    """Remove one fault, or all."""

    fault_id: int | None = None


class ListFaults(_Control):
    """Which faults are in force."""


class Faults(_Control):
    """The faults in force, with how often each fired."""

    faults: tuple[ActiveFault, ...]


class StrategyStatus(_Control):
    """One strategy as the venue sees it."""

    strategy_id: Identifier
    seq: int
    orders: int
    open_orders: int
    filled_qty: Decimal


class VenueStatus(_Control):
    """What a running venue holds."""

    venue_id: str
    session: str = ""  # the venue's state: kept across a restart that recovers its journal
    instance: str = ""  # this run of the venue process
    clock: str
    venue_time: str
    venue_seq: int
    orders: int
    open_orders: int
    clients: int
    requests: int
    protocol_errors: int
    unroutable_replies: int = 0  # answers to peers gone meanwhile (kept for their retry)
    security: SecurityStatus
    limits: LimitsStatus
    risk: RiskStatus
    journal: str | None = None
    journal_records: int = 0  # written by this run
    recovered_records: int = 0  # replayed from the journal at start
    strategies: tuple[StrategyStatus, ...]
    faults: tuple[ActiveFault, ...]


class Done(_Control):
    """The control command was carried out."""


CONTROL_MODELS: Final[Mapping[str, type[BaseModel]]] = {
    "advance": Advance,
    "fill_order": FillOrder,
    "cancel_unsolicited": CancelUnsolicited,
    "restate": Restate,
    "inject_fault": InjectFault,
    "clear_faults": ClearFaults,
    "list_faults": ListFaults,
    "faults": Faults,
    "get_status": GetStatus,
    "venue_status": VenueStatus,
    "done": Done,
    "error": Rejection,
    **SERVER_CONTROL_MODELS,
}
CONTROL_TYPES: Final[Mapping[type[BaseModel], str]] = {m: n for n, m in CONTROL_MODELS.items()}
assert not (set(CONTROL_MODELS) - {"error"}) & set(MODELS), (
    "control types must not shadow port types"
)
