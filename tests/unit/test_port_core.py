"""The port core in memory: what every port does that is neither I/O nor waiting. A fake shell
records what the core sends and moves time by hand."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from ports import (
    AckAction,
    Acknowledgement,
    AckTimeoutError,
    CancelOrder,
    ConnectivityError,
    ErrorReason,
    ExecType,
    ExecutionReport,
    OrderRejectedError,
    OrderSnapshot,
    OrderStatus,
    OrderType,
    Outcome,
    PortClosedError,
    PortEvent,
    PortEventKind,
    PortState,
    QueryOrder,
    Rejection,
    Request,
    Side,
)
from ports.blocking import Answer
from ports.core import PortCore, PortRequest
from ports.recovery import InDoubt
from tests.contract.helpers import limit, snapshot

AT = datetime(2026, 1, 5, 9, tzinfo=UTC)


ACK = Acknowledgement(action=AckAction.SUBMIT, order=snapshot())


class Sink:
    """An update stream, as the core sees one."""

    def __init__(self, client_order_id: str | None = None, *, port_events: bool = False) -> None:
        self.client_order_id = client_order_id
        self.port_events = port_events
        self.got: list[ExecutionReport | PortEvent] = []
        self.ended = False

    def _put(self, update: ExecutionReport | PortEvent) -> None:
        self.got.append(update)

    def _end(self) -> None:
        self.ended = True

    def kinds(self) -> list[PortEventKind]:
        return [u.kind for u in self.got if isinstance(u, PortEvent)]


class FakeShell(PortCore):
    def __init__(self) -> None:
        super().__init__("s1", ack_timeout=1.0)
        self._doubts = InDoubt(clock=lambda: AT, rng=random.Random(1))
        self.sent: list[tuple[int, PortRequest]] = []
        self.refuse = False
        self.time = 0.0
        self.woken = 0

    def _transmit(self, request_id: int, request: PortRequest, timeout: float) -> None:
        if self.refuse:
            raise ConnectivityError("not connected", outcome=Outcome.DEFINITE)
        self.sent.append((request_id, request))

    def _now(self) -> float:
        return self.time

    def _wake(self) -> None:
        self.woken += 1

    def opened(self) -> FakeShell:
        assert self._begin_open()
        self._set_state(PortState.CONNECTED)
        return self

    def watching(self) -> Sink:
        sink = Sink(port_events=True)
        self._subscribers.add(sink)
        return sink

    def call(self, request: Request, expected: type[Any], *, detached: bool = False) -> Answer[Any]:
        answer: Answer[Any] = Answer()
        self._request(request, expected, answer, 0.5, detached=detached)
        return answer


class Watching(Answer[Any]):
    """An answer that notes what was in doubt when it failed."""

    __slots__ = ("doubts_when_failed", "port")

    def __init__(self, port: PortCore) -> None:
        super().__init__()
        self.port = port
        self.doubts_when_failed: frozenset[str] | None = None

    def set_exception(self, exception: BaseException, /) -> None:
        self.doubts_when_failed = self.port.in_doubt()
        super().set_exception(exception)


def test_an_answer_goes_to_its_waiter_typed_and_a_refusal_as_its_error() -> None:
    port = FakeShell().opened()
    accepted = port.call(limit("o1"), Acknowledgement)
    refused = port.call(limit("o2"), Acknowledgement)
    (first, _), (second, _) = port.sent
    port._answer(first, ACK, now=0.1)
    port._answer(second, Rejection(reason=ErrorReason.UNKNOWN_INSTRUMENT, message="no"), now=0.1)
    assert accepted.result() == ACK
    with pytest.raises(OrderRejectedError):
        refused.result()
    assert port._calls == {}
    port._answer(first, ACK, now=0.2)  # a repeated answer: ignored


def test_an_unreadable_answer_fails_its_call_at_once_naming_why_and_puts_the_order_in_doubt() -> (
    None
):
    port = FakeShell().opened()
    events = port.watching()
    answer = Watching(port)
    port._request(limit("o1"), Acknowledgement, answer, 0.5, detached=True)
    ((request_id, _),) = port.sent
    port._expire(request_id, now=0.1, unreadable="invalid ack: order.expire_at: out of range")
    assert answer.doubts_when_failed == {"o1"}
    with pytest.raises(ConnectivityError) as caught:
        answer.result()
    assert not isinstance(caught.value, AckTimeoutError)  # it was answered, not timed out
    assert caught.value.reason is ErrorReason.PROTOCOL_ERROR
    assert caught.value.outcome is Outcome.UNKNOWN
    assert "order.expire_at: out of range" in caught.value.message
    assert port._calls == {}  # no other answer will come, even to a handle
    (doubt,) = events.got
    assert isinstance(doubt, PortEvent)
    assert (doubt.kind, doubt.detail) == (
        PortEventKind.ORDER_IN_DOUBT,
        "invalid ack: order.expire_at: out of range",
    )


def test_an_expired_call_puts_its_order_in_doubt_first_and_a_late_answer_settles_it() -> None:
    port = FakeShell().opened()
    events = port.watching()
    answer = Watching(port)
    port._request(CancelOrder(client_order_id="o1", strategy_id="s1"), Acknowledgement, answer, 0.5)
    ((request_id, _),) = port.sent
    port._expire(request_id, now=0.5)
    assert answer.doubts_when_failed == {"o1"}  # in doubt already when the caller hears
    with pytest.raises(AckTimeoutError) as caught:
        answer.result()
    assert (caught.value.timeout, caught.value.client_order_id) == (0.5, "o1")
    assert port._calls == {}
    assert events.kinds() == [PortEventKind.ORDER_IN_DOUBT]
    (doubt,) = events.got
    assert isinstance(doubt, PortEvent)
    assert doubt.detail == "no answer to the cancel within 0.5 s"
    port._answer(request_id, ACK, now=0.6)
    assert events.kinds()[-1] is PortEventKind.ORDER_SETTLED
    assert port.in_doubt() == frozenset()


def test_a_detached_request_past_its_timeout_still_gets_its_late_answer() -> None:
    port = FakeShell().opened()
    answer = port.call(limit("o1"), Acknowledgement, detached=True)
    ((request_id, _),) = port.sent
    port._expire(request_id, now=0.5)
    port._expire(request_id, now=0.6)  # told twice: nothing more
    assert not answer.done()
    assert port.in_doubt() == {"o1"}
    port._answer(request_id, ACK, now=0.7)
    assert answer.result() == ACK
    assert port.in_doubt() == frozenset()


def test_status_queries_of_orders_in_doubt_go_only_while_connected() -> None:
    port = FakeShell().opened()
    events = port.watching()
    port.call(limit("o1"), Acknowledgement)
    ((submit, _),) = port.sent
    port._expire(submit, now=0.5)
    port._port_event(PortEvent(kind=PortEventKind.CONNECTION_LOST, time=AT), now=0.5)
    assert port.state is PortState.RECONNECTING
    assert port._next_query_at() is None
    port._ask_due(now=0.6)
    assert len(port.sent) == 1  # not while reconnecting
    woken = port.woken
    port._port_event(PortEvent(kind=PortEventKind.CONNECTION_RESTORED, time=AT), now=0.7)
    assert port.woken > woken  # connected again: the shell is told to look
    port._ask_due(now=0.7)
    (query_id, query) = port.sent[-1]
    assert query == QueryOrder(strategy_id="s1", client_order_id="o1")
    port._answer(query_id, snapshot(status=OrderStatus.PENDING_NEW), now=0.8)
    settled = events.got[-1]
    assert isinstance(settled, PortEvent)
    assert (settled.kind, settled.detail) == (PortEventKind.ORDER_SETTLED, "status query")
    assert settled.snapshot is not None
    assert settled.snapshot.status is OrderStatus.PENDING_NEW


def test_a_status_query_unanswered_or_unsent_is_asked_again_later() -> None:
    port = FakeShell().opened()
    port.call(limit("o1"), Acknowledgement)
    port._expire(port.sent[0][0], now=0.5)
    port._ask_due(now=0.5)
    query_id = port.sent[-1][0]
    port._expire(query_id, now=1.5)  # no answer: ask again after a backoff
    next_at = port._next_query_at()
    assert next_at is not None
    assert 1.5 + 0.2 * 0.75 <= next_at <= 1.5 + 0.2 * 1.25
    port.refuse = True
    port._ask_due(now=next_at)  # could not be sent: later again
    assert port._calls == {}
    later = port._next_query_at()
    assert later is not None
    assert later > next_at
    assert port.in_doubt() == {"o1"}


def test_a_venue_reset_fails_what_waits_and_puts_its_orders_in_doubt() -> None:
    port = FakeShell().opened()
    events = port.watching()
    waiting = port.call(limit("o1"), Acknowledgement)
    listing = port.call(QueryOrder(strategy_id="s1", client_order_id="o9"), OrderSnapshot)
    reset = PortEvent(kind=PortEventKind.VENUE_RESET, time=AT, detail="new session")
    port._port_event(reset, now=1.0)
    for answer in (waiting, listing):
        with pytest.raises(ConnectivityError) as caught:
            answer.result()
        assert caught.value.outcome is Outcome.UNKNOWN
    assert port.in_doubt() == {"o1"}  # the query names no order to settle
    assert events.kinds() == [PortEventKind.VENUE_RESET, PortEventKind.ORDER_IN_DOUBT]
    port._ask_due(now=1.0)  # asked of the new venue at once
    assert port.sent[-1][1] == QueryOrder(strategy_id="s1", client_order_id="o1")


def test_reports_fan_out_to_their_streams_and_make_a_doubt_query_due_at_once() -> None:
    port = FakeShell().opened()
    every, mine, other = Sink(), Sink("o1"), Sink("o2")
    for sink in (every, mine, other):
        port._subscribers.add(sink)
    report = ExecutionReport(
        seq=1,
        venue_seq=1,
        exec_type=ExecType.ACCEPTED,
        status=OrderStatus.NEW,
        strategy_id="s1",
        client_order_id="o1",
        venue_order_id="MOCK-1",
        instrument="MAN",
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        limit_price=Decimal(10),
        quantity=Decimal(100),
        cum_qty=Decimal(0),
        leaves_qty=Decimal(100),
        avg_px=None,
        venue_time=AT,
    )
    port.call(limit("o1"), Acknowledgement)
    port._expire(port.sent[0][0], now=0.5)
    port._ask_due(now=0.5)
    port._expire(port.sent[-1][0], now=1.5)  # no answer: the next query after a backoff
    next_at = port._next_query_at()
    assert next_at is not None
    assert next_at > 1.6
    port._deliver(report, now=1.6)
    assert (every.got, mine.got, other.got) == ([report], [report], [])
    assert port._next_query_at() == 1.6  # the venue has the order: ask at once


def test_closing_fails_what_waits_ends_streams_and_lets_watchers_go() -> None:
    port = FakeShell().opened()
    sink = Sink()
    port._subscribers.add(sink)
    states: list[PortState] = []
    port._watch_states(states.append)
    answer = port.call(limit("o1"), Acknowledgement)
    assert port._begin_close()
    port._close_out()
    assert not port._begin_close()  # once
    with pytest.raises(PortClosedError) as caught:
        answer.result()
    assert caught.value.outcome is Outcome.UNKNOWN
    assert (sink.ended, states, port._state_watchers) == (True, [PortState.CLOSED], [])
    port._set_state(PortState.CONNECTED)  # closed stays closed
    assert port.state is PortState.CLOSED
    with pytest.raises(PortClosedError, match="cannot be reopened"):
        port._begin_open()


def test_a_port_not_open_refuses_requests_and_says_how_to_open_it() -> None:
    port = FakeShell()
    with pytest.raises(PortClosedError, match="not open"):
        port.call(limit("o1"), Acknowledgement)
    assert port._begin_open()
    assert not port._begin_open()  # opening already
    port._open_failed(ConnectivityError("no venue"))
    assert port.state is PortState.IDLE
    assert port.sent == []
