"""The ports package on its own: public surface, errors, layering."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ports
from ports import (
    AckTimeoutError,
    ConnectivityError,
    ErrorReason,
    OrderRejectedError,
    OrderStatus,
    Outcome,
    PortClosedError,
    PortError,
    Rejection,
    ThrottleError,
    error_from_rejection,
)

ROOT = Path(__file__).resolve().parents[2]


def test_public_surface_is_pinned() -> None:
    assert sorted(ports.__all__) == sorted(
        [
            "DEFAULT_ACK_TIMEOUT", "AckAction", "AckTimeoutError", "Acknowledgement",
            "BlockingOrderExecutionPortProtocol",
            "AmendOrder", "CancelAllAcknowledgement", "CancelAllOrders", "CancelOrder",
            "CancelReason", "ConnectivityError", "ErrorReason", "ExecType", "ExecutionReport",
            "Fill", "ListOpenOrders", "OpenOrders", "OrderExecutionPort", "OrderHandle",
            "OrderRejectedError", "OrderRequest", "OrderSnapshot", "OrderStatus", "OrderType",
            "Outcome", "PortBase", "PortClosedError", "PortError", "PortEvent", "PortEventKind",
            "PortState", "QueryOrder", "Rejection", "Reply", "Request", "Side", "SubmitOrder",
            "ThrottleError", "TimeInForce", "Update", "UpdateStream", "error_from_rejection",
        ]
    )  # fmt: skip
    for name in ports.__all__:
        assert hasattr(ports, name), name


@pytest.mark.parametrize("reason", list(ErrorReason))
def test_every_reason_maps_to_a_typed_error_and_back(reason: ErrorReason) -> None:
    rejection = Rejection(
        reason=reason, message="m", outcome=Outcome.UNKNOWN, retry_after=1.5, client_order_id="o1"
    )
    error = error_from_rejection(rejection)
    assert isinstance(error, PortError)
    assert (error.reason, error.message, error.client_order_id) == (reason, "m", "o1")
    expected: type[PortError] = {
        ErrorReason.THROTTLED: ThrottleError,
        ErrorReason.ACK_TIMEOUT: AckTimeoutError,
        ErrorReason.DISCONNECTED: ConnectivityError,
        ErrorReason.PROTOCOL_ERROR: ConnectivityError,
        ErrorReason.PORT_CLOSED: PortClosedError,
    }.get(reason, OrderRejectedError)
    assert type(error) is expected
    assert error_from_rejection(error.to_rejection()).reason is reason


def test_retry_hints() -> None:
    throttle = ThrottleError("slow down", retry_after=0.5)
    assert (throttle.retryable, throttle.retry_after, throttle.outcome) == (
        True,
        0.5,
        Outcome.DEFINITE,
    )
    timeout = AckTimeoutError("late", timeout=1.0, client_order_id="o1")
    assert isinstance(timeout, TimeoutError)
    assert (timeout.retryable, timeout.outcome, timeout.timeout) == (True, Outcome.UNKNOWN, 1.0)
    rejected = OrderRejectedError("no", reason=ErrorReason.TOO_LATE)
    assert (rejected.retryable, rejected.outcome) == (False, Outcome.DEFINITE)
    assert "reason=too_late" in repr(rejected)


def test_terminal_and_open_statuses() -> None:
    terminal = {s for s in OrderStatus if s.is_terminal}
    assert terminal == {
        OrderStatus.FILLED,
        OrderStatus.CANCELED,
        OrderStatus.REJECTED,
        OrderStatus.EXPIRED,
    }
    assert {s for s in OrderStatus if s.is_open} == set(OrderStatus) - terminal - {
        OrderStatus.PENDING_NEW
    }


# Which of our packages each may import: nothing imports upward.
ALLOWED = {
    "ports": {"ports"},
    "bus": {"ports", "bus"},
    "mock_venue": {"ports", "mock_venue", "bus"},
}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_layers_import_only_downward(package: str) -> None:
    ours = set(ALLOWED)
    for path in (ROOT / package).rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top in ours:
                    assert top in ALLOWED[package], f"{path} imports {name}"
