"""The sans-io recovery logic every port shares: the backoff schedule and the orders in doubt."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from ports import (
    AckAction,
    Acknowledgement,
    AckTimeoutError,
    ErrorReason,
    OrderRejectedError,
    OrderStatus,
    PortEventKind,
)
from ports.recovery import Backoff, InDoubt
from tests.contract.helpers import snapshot

AT = datetime(2026, 1, 5, 9, tzinfo=UTC)


def doubts() -> InDoubt:
    return InDoubt(clock=lambda: AT, rng=random.Random(1))


def unknown_order() -> OrderRejectedError:
    return OrderRejectedError("no such order", reason=ErrorReason.UNKNOWN_ORDER)


def test_backoff_doubles_to_its_cap_within_the_jitter() -> None:
    rng = random.Random(3)
    delays = [Backoff().delay(attempt, rng) for attempt in range(8)]
    for delay, base in zip(delays, [0.2, 0.4, 0.8, 1.6, 2, 2, 2, 2], strict=True):
        assert base * 0.75 <= delay <= base * 1.25
    assert len(set(delays[4:])) == 4  # jittered: clients that lost a venue do not retry in step
    replayed = random.Random(3)  # the same seed replays the same schedule
    assert delays == [Backoff().delay(attempt, replayed) for attempt in range(8)]
    assert Backoff().delay(10_000, rng) <= 2 * 1.25  # no overflow however long it goes on


def test_an_unanswered_request_puts_its_order_in_doubt_once() -> None:
    tracker = doubts()
    event = tracker.add("o1", 7, now=0.0, detail="no answer to the submit within 0.3 s")
    assert event is not None
    assert (event.kind, event.client_order_id, event.time, event.snapshot) == (
        PortEventKind.ORDER_IN_DOUBT,
        "o1",
        AT,
        None,
    )
    assert event.detail == "no answer to the submit within 0.3 s"
    assert tracker.add("o1", 8, now=0.1) is None  # a second request of the same order
    assert tracker.add("o1", 8, now=0.1) is None  # the same one told twice
    assert tracker.ids() == {"o1"}
    assert "o1" in tracker
    assert tracker


def test_a_status_query_settles_the_order_with_the_snapshot() -> None:
    tracker = doubts()
    tracker.add("o1", 1, now=0.0)
    assert tracker.due(now=0.0) == ["o1"]
    assert tracker.due(now=0.0) == []  # asked: not handed out twice
    assert tracker.next_due() is None
    event = tracker.queried("o1", snapshot(), now=0.05)
    assert event is not None
    assert (event.kind, event.client_order_id, event.snapshot) == (
        PortEventKind.ORDER_SETTLED,
        "o1",
        snapshot(),
    )
    assert not tracker
    assert tracker.ids() == frozenset()


def test_unknown_order_settles_a_submit_as_never_placed() -> None:
    tracker = doubts()
    tracker.add("o1", 1, now=0.0)
    tracker.due(now=0.0)
    event = tracker.queried("o1", unknown_order(), now=0.0)
    assert event is not None
    assert (event.kind, event.snapshot) == (PortEventKind.ORDER_SETTLED, None)
    assert "does not know" in event.detail


def test_a_query_without_answer_is_asked_again_with_backoff() -> None:
    tracker = doubts()
    tracker.add("o1", 1, now=0.0)
    waits = []
    now = 0.0
    for _ in range(4):
        assert tracker.due(now) == ["o1"]
        lost = AckTimeoutError("no answer", timeout=1.0, client_order_id="o1")
        assert tracker.queried("o1", lost, now) is None
        next_due = tracker.next_due()
        assert next_due is not None
        assert tracker.due(next_due - 0.001) == []
        waits.append(next_due - now)
        now = next_due
    for wait, base in zip(waits, [0.2, 0.4, 0.8, 1.6], strict=True):
        assert base * 0.75 <= wait <= base * 1.25
    assert tracker.ids() == {"o1"}


def test_a_late_acknowledgement_settles_the_order() -> None:
    tracker = doubts()
    tracker.add("o1", 5, now=0.0)
    tracker.due(now=0.0)  # a query is on its way too
    ack = Acknowledgement(action=AckAction.SUBMIT, order=snapshot())
    assert tracker.answered(99, ack, now=0.1) is None  # another request: not this order's
    event = tracker.answered(5, ack, now=0.1)
    assert event is not None
    assert (event.kind, event.snapshot, event.detail) == (
        PortEventKind.ORDER_SETTLED,
        snapshot(),
        "late acknowledgement",
    )
    assert tracker.queried("o1", snapshot(), now=0.2) is None  # the query's answer: too late


def test_a_late_refusal_makes_the_query_due_at_once() -> None:
    tracker = doubts()
    tracker.add("o1", 5, now=0.0)
    tracker.due(now=0.0)
    tracker.queried("o1", AckTimeoutError("lost", timeout=1.0), now=1.0)  # next try after 1.2
    assert tracker.due(now=1.01) == []
    assert tracker.answered(5, unknown_order().to_rejection(), now=1.01) is None
    assert tracker.due(now=1.01) == ["o1"]


def test_an_execution_report_makes_the_query_due_at_once() -> None:
    tracker = doubts()
    tracker.add("o1", 5, now=0.0)
    tracker.due(now=0.0)
    tracker.queried("o1", AckTimeoutError("lost", timeout=1.0), now=1.0)
    tracker.reported("o2", now=1.01)  # not in doubt: nothing
    assert tracker.due(now=1.01) == []
    tracker.reported("o1", now=1.01)
    assert tracker.due(now=1.01) == ["o1"]


def test_an_answer_asked_for_before_a_newer_request_went_in_doubt_does_not_settle() -> None:
    tracker = doubts()
    tracker.add("o1", 1, now=0.0)  # the submit
    assert tracker.due(now=0.0) == ["o1"]
    tracker.add("o1", 2, now=0.5)  # then the cancel, while the query was out
    assert tracker.queried("o1", snapshot(), now=0.6) is None
    assert tracker.due(now=0.6) == ["o1"]  # asked again at once
    event = tracker.queried("o1", snapshot(status=OrderStatus.CANCELED), now=0.7)
    assert event is not None
    assert event.snapshot is not None
    assert event.snapshot.status is OrderStatus.CANCELED


def test_a_late_acknowledgement_settles_only_when_no_other_request_is_in_doubt() -> None:
    tracker = doubts()
    tracker.add("o1", 1, now=0.0)
    tracker.add("o1", 2, now=0.0)
    ack = Acknowledgement(action=AckAction.SUBMIT, order=snapshot())
    assert tracker.answered(1, ack, now=0.1) is None
    event = tracker.answered(2, Acknowledgement(action=AckAction.CANCEL, order=snapshot()), 0.2)
    assert event is not None
    assert event.kind is PortEventKind.ORDER_SETTLED


def test_a_venue_reset_forgets_late_answers_and_asks_everything_again() -> None:
    tracker = doubts()
    tracker.add("o1", 1, now=0.0)
    tracker.add("o2", 2, now=0.0)
    assert tracker.due(now=0.0) == ["o1", "o2"]
    assert tracker.queried("o2", AckTimeoutError("lost", timeout=1.0), now=0.5) is None
    tracker.reset(now=1.0)
    ack = Acknowledgement(action=AckAction.SUBMIT, order=snapshot())
    assert tracker.answered(1, ack, now=1.0) is None  # from the venue that is gone
    # o1's query was asked of the old venue: its answer is not taken.
    assert tracker.queried("o1", snapshot(), now=1.1) is None
    assert sorted(tracker.due(now=1.1)) == ["o1", "o2"]
    events = [tracker.queried(c, unknown_order(), now=1.2) for c in ("o1", "o2")]
    assert [(e.kind, e.snapshot) for e in events if e is not None] == [
        (PortEventKind.ORDER_SETTLED, None),
        (PortEventKind.ORDER_SETTLED, None),
    ]
    assert not tracker


@pytest.mark.parametrize("reason", [ErrorReason.PROTOCOL_ERROR, ErrorReason.DISCONNECTED])
def test_an_error_other_than_unknown_order_settles_nothing(reason: ErrorReason) -> None:
    from ports import ConnectivityError

    tracker = doubts()
    tracker.add("o1", 1, now=0.0)
    tracker.due(now=0.0)
    assert tracker.queried("o1", ConnectivityError("x", reason=reason), now=0.0) is None
    assert tracker.ids() == {"o1"}
