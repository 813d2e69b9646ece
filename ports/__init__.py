"""The order execution contract: models, errors and the ``OrderExecutionPort`` abstraction.

This package depends on nothing else of orderbus.
"""

from ports.base import DEFAULT_ACK_TIMEOUT, PortBase
from ports.enums import (
    AckAction,
    CancelReason,
    ErrorReason,
    ExecType,
    OrderStatus,
    OrderType,
    Outcome,
    Side,
    TimeInForce,
)
from ports.errors import (
    AckTimeoutError,
    ConnectivityError,
    OrderRejectedError,
    PortClosedError,
    PortError,
    ThrottleError,
    error_from_rejection,
)
from ports.models import (
    Acknowledgement,
    AmendOrder,
    CancelAllAcknowledgement,
    CancelAllOrders,
    CancelOrder,
    ExecutionReport,
    Fill,
    ListOpenOrders,
    OpenOrders,
    OrderRequest,
    OrderSnapshot,
    QueryOrder,
    Rejection,
    Reply,
    Request,
    SubmitOrder,
)
from ports.order_execution_port import OrderExecutionPort, PortState
from ports.streams import OrderHandle, UpdateStream

__all__ = [
    "DEFAULT_ACK_TIMEOUT",
    "AckAction",
    "AckTimeoutError",
    "Acknowledgement",
    "AmendOrder",
    "CancelAllAcknowledgement",
    "CancelAllOrders",
    "CancelOrder",
    "CancelReason",
    "ConnectivityError",
    "ErrorReason",
    "ExecType",
    "ExecutionReport",
    "Fill",
    "ListOpenOrders",
    "OpenOrders",
    "OrderExecutionPort",
    "OrderHandle",
    "OrderRejectedError",
    "OrderRequest",
    "OrderSnapshot",
    "OrderStatus",
    "OrderType",
    "Outcome",
    "PortBase",
    "PortClosedError",
    "PortError",
    "PortState",
    "QueryOrder",
    "Rejection",
    "Reply",
    "Request",
    "Side",
    "SubmitOrder",
    "ThrottleError",
    "TimeInForce",
    "UpdateStream",
    "error_from_rejection",
]
