"""Enumerations of the order contract. Values are stable wire strings; FIX 4.4 codes are noted."""

from __future__ import annotations

from enum import StrEnum


class Side(StrEnum):
    """Side(54)."""

    BUY = "buy"
    SELL = "sell"


class OrderType(StrEnum):
    """OrdType(40)."""

    MARKET = "market"
    LIMIT = "limit"


class TimeInForce(StrEnum):
    """TimeInForce(59)."""

    DAY = "day"
    GTC = "gtc"
    IOC = "ioc"
    FOK = "fok"


class OrderStatus(StrEnum):
    """OrdStatus(39): where the order stands now."""

    PENDING_NEW = "pending_new"  # A
    NEW = "new"  # 0
    PARTIALLY_FILLED = "partially_filled"  # 1
    PENDING_CANCEL = "pending_cancel"  # 6
    PENDING_AMEND = "pending_amend"  # E (Pending Replace)
    FILLED = "filled"  # 2
    CANCELED = "canceled"  # 4
    REJECTED = "rejected"  # 8
    EXPIRED = "expired"  # C

    @property
    def is_terminal(self) -> bool:
        """True once the order can no longer trade or change."""
        return self in _TERMINAL

    @property
    def is_open(self) -> bool:
        """True while the order works at the venue (including with a cancel or amend pending)."""
        return not self.is_terminal and self is not OrderStatus.PENDING_NEW


_TERMINAL = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED}
)


class ExecType(StrEnum):
    """ExecType(150): what this execution report says happened."""

    ACCEPTED = "accepted"  # 0 New
    TRADE = "trade"  # F: a partial or full fill; see last_qty and fill_id
    PENDING_CANCEL = "pending_cancel"  # 6
    CANCELED = "canceled"  # 4
    PENDING_AMEND = "pending_amend"  # E
    AMENDED = "amended"  # 5 Replaced
    REJECTED = "rejected"  # 8: the order itself was rejected
    EXPIRED = "expired"  # C
    RESTATED = "restated"  # D: the venue changed the order on its own
    # FIX sends these as OrderCancelReject(35=9); here they ride the same stream.
    CANCEL_REJECTED = "cancel_rejected"
    AMEND_REJECTED = "amend_rejected"


class ErrorReason(StrEnum):
    """Why a request failed. Carried by every PortError and by rejection execution reports."""

    INVALID_REQUEST = "invalid_request"
    UNKNOWN_INSTRUMENT = "unknown_instrument"
    DUPLICATE_CLIENT_ORDER_ID = "duplicate_client_order_id"
    UNKNOWN_ORDER = "unknown_order"
    TOO_LATE = "too_late"
    REQUEST_PENDING = "request_pending"
    LIMIT_EXCEEDED = "limit_exceeded"
    STALE_ORDER = "stale_order"
    VENUE_REJECTED = "venue_rejected"
    THROTTLED = "throttled"
    DISCONNECTED = "disconnected"
    ACK_TIMEOUT = "ack_timeout"
    PROTOCOL_ERROR = "protocol_error"
    PORT_CLOSED = "port_closed"
    NOT_AUTHORIZED = "not_authorized"
    TRADING_HALTED = "trading_halted"  # the kill switch: cancels and queries only
    STALE_REQUEST = "stale_request"  # its deadline had passed when the server came to it


class CancelReason(StrEnum):
    """Why an order left the book without filling completely."""

    REQUESTED = "requested"
    CANCEL_ALL = "cancel_all"
    IOC_UNFILLED = "ioc_unfilled"
    FOK_UNFILLED = "fok_unfilled"
    UNSOLICITED = "unsolicited"
    EXPIRED = "expired"
    KILL = "kill"  # the server's kill switch (an admin halted the strategy)
    CANCEL_ON_DISCONNECT = "cancel_on_disconnect"  # its client went silent past its timeout


class Outcome(StrEnum):
    """Whether the caller knows what the venue did with a failed request."""

    DEFINITE = "definite"  # the venue did not act on it (or acted and said so)
    UNKNOWN = "unknown"  # it may or may not have been executed: query before acting again


class AckAction(StrEnum):
    """Which request an Acknowledgement answers."""

    SUBMIT = "submit"
    AMEND = "amend"
    CANCEL = "cancel"


class PortEventKind(StrEnum):
    """What a ``PortEvent`` says happened to the port, its connection or its knowledge of an order
    (not to an order at the venue: that is an ``ExecutionReport``)."""

    CONNECTION_LOST = "connection_lost"  # the venue went silent; the port keeps trying
    CONNECTION_RESTORED = "connection_restored"  # back, and the stream caught up
    VENUE_RESTARTED = "venue_restarted"  # a new venue process with the same state: replayed
    VENUE_RESET = "venue_reset"  # a venue with new state: what the old one held is gone
    ORDER_IN_DOUBT = "order_in_doubt"  # a request about the order went unanswered in time
    ORDER_SETTLED = "order_settled"  # the port learned what the venue holds for that order
    TRADING_HALTED = "trading_halted"  # the kill switch: new orders refused until resumed
    TRADING_RESUMED = "trading_resumed"  # the halt is lifted
    CANCELED_ON_DISCONNECT = "canceled_on_disconnect"  # the server canceled for a silent client
