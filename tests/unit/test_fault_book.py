"""The fault book on its own: what is in force, what fires and is used up, the seeded draws."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from mock_venue.clock import DEFAULT_START
from mock_venue.control import VenueControlError
from mock_venue.fault_book import FaultBook
from mock_venue.faults import (
    Crash,
    DelayAcks,
    Disconnect,
    DropEvents,
    DropReplies,
    RejectOrders,
    Throttle,
)

T0 = DEFAULT_START


def book(seed: int = 0) -> FaultBook:
    return FaultBook(random.Random(seed))


def test_faults_are_numbered_and_listed_oldest_first() -> None:
    faults = book()
    assert not faults.any_in_force()
    first = faults.inject(DropReplies(count=2))
    second = faults.inject(DelayAcks(delay=1.0))
    assert (first.fault_id, first.remaining) == (1, 2)
    assert (second.fault_id, second.remaining) == (2, None)  # no count: until cleared
    assert [a.fault_id for a in faults.active()] == [1, 2]
    assert faults.any_in_force()


@pytest.mark.parametrize("fault", [Crash(), Disconnect()])
def test_a_fault_that_acts_once_is_never_in_force(fault: Crash | Disconnect) -> None:
    faults = book()
    with pytest.raises(VenueControlError, match="venue process"):
        faults.inject(fault)
    assert faults.active() == []


def test_a_fault_fires_until_used_up_and_then_leaves_the_book() -> None:
    faults = book()
    faults.inject(RejectOrders(count=2))
    assert faults.fire(RejectOrders, "s", "X", "o1") == RejectOrders(count=2)
    (active,) = faults.active()
    assert (active.fired, active.remaining) == (1, 1)
    assert faults.fire(RejectOrders, "s", "X", "o2") is not None
    assert faults.active() == []
    assert faults.fire(RejectOrders, "s", "X", "o3") is None


def test_a_fault_fires_only_for_its_kind_and_scope() -> None:
    faults = book()
    faults.inject(DropEvents(strategy_id="s1", instrument="X", client_order_id="o1", count=9))
    assert faults.fire(DropReplies, "s1", "X", "o1") is None  # another kind
    assert faults.fire(DropEvents, "s2", "X", "o1") is None
    assert faults.fire(DropEvents, "s1", "Y", "o1") is None
    assert faults.fire(DropEvents, "s1", "X", "o2") is None
    assert faults.fire(DropEvents, "s1", None, None) is None  # a scoped fault needs its scope
    assert faults.fire(DropEvents, "s1", "X", "o1") is not None
    assert faults.active()[0].fired == 1


def test_the_first_applicable_fault_fires() -> None:
    faults = book()
    faults.inject(DropReplies(strategy_id="other"))
    faults.inject(DropReplies(count=1))
    faults.inject(DropReplies(count=5))
    faults.fire(DropReplies, "s", None, None)
    assert [(a.fault_id, a.fired) for a in faults.active()] == [(1, 0), (3, 0)]


def test_in_force_looks_without_using() -> None:
    faults = book()
    assert faults.in_force(DropEvents) is None
    faults.inject(DropReplies())
    dropping = faults.inject(DropEvents())
    found = faults.in_force(DropEvents)
    assert found is not None
    assert found.fault_id == dropping.fault_id
    assert faults.active()[1].fired == 0


def test_active_gives_copies() -> None:
    faults = book()
    faults.inject(DropReplies(count=3))
    faults.active()[0].remaining = 99
    assert faults.active()[0].remaining == 3


def test_probability_draws_come_from_the_books_seed_in_the_order_asked() -> None:
    def fired(seed: int) -> list[bool]:
        faults = book(seed)
        faults.inject(DropEvents(count=1000, probability=0.5))
        faults.inject(RejectOrders(count=1000, probability=0.5))
        return [
            faults.fire(DropEvents if n % 3 else RejectOrders, "s", None, f"o{n}") is not None
            for n in range(60)
        ]

    assert fired(1) == fired(1)
    assert fired(1) != fired(2)
    assert 0 < sum(fired(1)) < 60


def test_no_draw_for_a_fault_that_does_not_apply_or_has_no_probability() -> None:
    def later_draws(*, idle_calls: bool) -> list[bool]:
        faults = book(3)
        faults.inject(DropEvents(strategy_id="other", count=1000, probability=0.5))
        faults.inject(DropReplies(count=100))
        if idle_calls:
            for n in range(5):
                assert faults.fire(DropEvents, "s", None, None) is None
                assert faults.fire(DropReplies, "s", None, f"o{n}") is not None
        return [faults.fire(DropEvents, "other", None, None) is not None for _ in range(40)]

    assert later_draws(idle_calls=True) == later_draws(idle_calls=False)


def test_clearing_one_fault_or_all() -> None:
    faults = book()
    first = faults.inject(DropReplies())
    faults.inject(DelayAcks(delay=1.0))
    faults.clear(first.fault_id)
    assert [a.fault.kind for a in faults.active()] == ["delay_acks"]
    faults.clear(12345)  # unknown: nothing to do
    faults.clear()
    assert faults.active() == []


def test_throttle_refuses_past_its_rate_per_strategy_and_says_how_long_to_wait() -> None:
    faults = book()
    faults.inject(Throttle(max_requests=2, interval=1.0))
    t = T0
    assert faults.throttled("s1", "X", "o1", t) is None
    assert faults.throttled("s1", "X", "o2", t + timedelta(seconds=0.25)) is None
    assert faults.throttled("s2", "X", "o3", t + timedelta(seconds=0.25)) is None  # its own window
    assert faults.throttled("s1", "X", "o4", t + timedelta(seconds=0.5)) == 0.5
    assert faults.active()[0].fired == 1
    # A refused request does not count: the window frees up as the first request ages out.
    assert faults.throttled("s1", "X", "o5", t + timedelta(seconds=1.0)) is None


def test_clearing_a_throttle_forgets_its_window() -> None:
    faults = book()
    throttle = faults.inject(Throttle(max_requests=1, interval=10.0))
    faults.inject(DropReplies(count=5))  # another fault, kept
    assert faults.throttled("s", None, None, T0) is None
    assert faults.throttled("s", None, None, T0) == 10.0
    faults.clear(throttle.fault_id)
    assert faults.throttled("s", None, None, T0) is None
    again = faults.inject(Throttle(max_requests=1, interval=10.0))
    assert again.fault_id != throttle.fault_id
    assert faults.throttled("s", None, None, T0) is None  # a fresh window
    assert faults.throttled("s", None, None, T0) == 10.0
