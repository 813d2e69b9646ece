"""Errors raised by every ``OrderExecutionPort``. No transport exception ever escapes a port.

::

    PortError                  reason, retryable, retry_after, outcome, client_order_id
    ├── OrderRejectedError     the venue refused the request; it did nothing (outcome DEFINITE)
    ├── ThrottleError          too many requests; nothing done; retry after ``retry_after`` s
    ├── ConnectivityError      the venue could not be reached or did not answer (retryable)
    │   └── AckTimeoutError    no acknowledgement in time; also a builtin ``TimeoutError``.
    │                          Outcome UNKNOWN: the request may have been executed. Query the
    │                          order (or retry with the same request) before acting again.
    └── PortClosedError        the port is closed; nothing was sent

``outcome`` says whether the caller knows what the venue did: DEFINITE means the request was not
executed (or was, and the venue said so); UNKNOWN means it may have been. ``retryable`` says whether
sending the same request again can succeed. See docs/errors.md for what to do with each.
"""

from __future__ import annotations

from typing import TypeVar

from ports.enums import ErrorReason, Outcome
from ports.models import Rejection


class PortError(Exception):
    """Base of every error a port raises."""

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        reason: ErrorReason,
        outcome: Outcome = Outcome.DEFINITE,
        retry_after: float | None = None,
        client_order_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.outcome = outcome
        self.retry_after = retry_after
        self.client_order_id = client_order_id

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, reason={self.reason.value}, "
            f"outcome={self.outcome.value}, retry_after={self.retry_after}, "
            f"client_order_id={self.client_order_id!r})"
        )

    def to_rejection(self) -> Rejection:
        """This error as data, to send over a wire or store."""
        return Rejection(
            reason=self.reason,
            message=self.message,
            outcome=self.outcome,
            retry_after=self.retry_after,
            client_order_id=self.client_order_id,
        )


class OrderRejectedError(PortError):
    """The venue refused the request (invalid, duplicate id, unknown order, too late, ...).

    Sending the same request again gets the same answer; ``reason`` says what to change.
    """


class ThrottleError(PortError):
    """The venue's rate limit refused the request; nothing was done. Retry after ``retry_after``."""

    retryable = True
    retry_after: float

    def __init__(self, message: str, *, retry_after: float, client_order_id: str | None = None):
        super().__init__(
            message,
            reason=ErrorReason.THROTTLED,
            retry_after=retry_after,
            client_order_id=client_order_id,
        )


class ConnectivityError(PortError):
    """The venue could not be reached, or the connection broke. Retry, ideally with backoff."""

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        reason: ErrorReason = ErrorReason.DISCONNECTED,
        outcome: Outcome = Outcome.UNKNOWN,
        retry_after: float | None = None,
        client_order_id: str | None = None,
    ) -> None:
        super().__init__(
            message,
            reason=reason,
            outcome=outcome,
            retry_after=retry_after,
            client_order_id=client_order_id,
        )


class AckTimeoutError(ConnectivityError, TimeoutError):
    """No acknowledgement within ``timeout`` seconds. The request may have been executed."""

    def __init__(
        self, message: str | None = None, *, timeout: float, client_order_id: str | None = None
    ):
        super().__init__(
            message or f"no acknowledgement within {timeout} s; the request may have been executed",
            reason=ErrorReason.ACK_TIMEOUT,
            outcome=Outcome.UNKNOWN,
            client_order_id=client_order_id,
        )
        self.timeout = timeout


class PortClosedError(PortError):
    """The port is closed (or was never opened); nothing was sent."""

    def __init__(
        self,
        message: str = "the port is closed",
        *,
        outcome: Outcome = Outcome.DEFINITE,
        client_order_id: str | None = None,
    ) -> None:
        super().__init__(
            message,
            reason=ErrorReason.PORT_CLOSED,
            outcome=outcome,
            client_order_id=client_order_id,
        )


_T = TypeVar("_T")


def reply_or_raise(result: object, expected: type[_T]) -> _T:
    """The venue's answer as the expected reply, or raise the error it stands for."""
    if isinstance(result, Rejection):
        raise error_from_rejection(result)
    if not isinstance(result, expected):
        raise ConnectivityError(
            f"venue answered a {expected.__name__} request with {type(result).__name__}",
            reason=ErrorReason.PROTOCOL_ERROR,
        )
    return result


def check_strategy(strategy_id: str, request: object) -> None:
    """Refuse, before sending, a request of another strategy than the port's."""
    requested = getattr(request, "strategy_id", strategy_id)
    if requested != strategy_id:
        raise OrderRejectedError(
            f"request for strategy {requested!r} sent through the port of strategy {strategy_id!r}",
            reason=ErrorReason.INVALID_REQUEST,
            client_order_id=getattr(request, "client_order_id", None),
        )


def error_from_rejection(rejection: Rejection) -> PortError:
    """The typed error a ``Rejection`` stands for."""
    match rejection.reason:
        case ErrorReason.THROTTLED:
            return ThrottleError(
                rejection.message,
                retry_after=rejection.retry_after if rejection.retry_after is not None else 0.0,
                client_order_id=rejection.client_order_id,
            )
        case ErrorReason.ACK_TIMEOUT:
            return AckTimeoutError(
                rejection.message, timeout=0.0, client_order_id=rejection.client_order_id
            )
        case ErrorReason.DISCONNECTED | ErrorReason.PROTOCOL_ERROR:
            return ConnectivityError(
                rejection.message,
                reason=rejection.reason,
                outcome=rejection.outcome,
                retry_after=rejection.retry_after,
                client_order_id=rejection.client_order_id,
            )
        case ErrorReason.PORT_CLOSED:
            return PortClosedError(
                rejection.message,
                outcome=rejection.outcome,
                client_order_id=rejection.client_order_id,
            )
        case _:
            return OrderRejectedError(
                rejection.message,
                reason=rejection.reason,
                outcome=rejection.outcome,
                retry_after=rejection.retry_after,
                client_order_id=rejection.client_order_id,
            )
