"""The gateway's pages of open orders (``bus.gateway_pages``), in memory: the cursor, what a
listing read between pages does to it, the numbers it forgets, and the listings it keeps."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from bus.gateway_pages import OpenOrderPages
from ports import OpenOrders, OrderSnapshot
from tests.contract.helpers import snapshot

T0 = datetime(2024, 1, 2, 9, 30, tzinfo=UTC)


def order(client_order_id: str, instrument: str = "MAN", strategy_id: str = "s1") -> OrderSnapshot:
    return snapshot(client_order_id).model_copy(
        update={"strategy_id": strategy_id, "instrument": instrument}
    )


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def ids(page: OpenOrders) -> list[str]:
    return [o.client_order_id for o in page.orders]


def page_of(
    pages: OpenOrderPages,
    after: int,
    listing: Sequence[OrderSnapshot],
    instrument: str | None = None,
) -> tuple[OpenOrders, bool]:
    """The page as the gateway answers it: from the kept listing, else from ``listing`` read
    now. Also whether the hosted port was read."""
    cached = pages.cached("s1", instrument, after)
    if cached is not None:
        return cached, False
    return pages.listed("s1", instrument, after, listing), True


def every_page(
    pages: OpenOrderPages, listing: Sequence[OrderSnapshot], instrument: str | None = None
) -> list[list[str]]:
    after, got = 0, []
    while True:
        page, _ = page_of(pages, after, listing, instrument)
        got.append(ids(page))
        if page.next_after is None:
            return got
        assert page.next_after > after  # the ports refuse a cursor that does not move on
        after = page.next_after


def test_a_listing_is_read_once_and_paged_by_the_cursor_to_its_end() -> None:
    pages = OpenOrderPages(2, clock=Clock())
    listing = [order(f"o{n}") for n in range(5)]
    first, read = page_of(pages, 0, listing)
    assert (ids(first), read) == (["o0", "o1"], True)
    assert first.next_after is not None
    assert first.next_after > 0
    second, read = page_of(pages, first.next_after, [])  # the kept listing answers
    assert (ids(second), read) == (["o2", "o3"], False)
    assert second.next_after is not None
    assert second.next_after > first.next_after
    last, read = page_of(pages, second.next_after, [])
    assert (ids(last), last.next_after, read) == (["o4"], None, False)
    assert pages.kept == ()  # paged to its end: nothing more to answer from it


def test_a_page_that_holds_everything_says_no_more_and_keeps_nothing() -> None:
    pages = OpenOrderPages(3, clock=Clock())
    for listing in ([], [order("o0")], [order("o0"), order("o1"), order("o2")]):
        page = pages.listed("s1", None, 0, listing)
        assert page.next_after is None
        assert ids(page) == [o.client_order_id for o in listing]
    assert pages.kept == ()


def test_a_first_page_is_always_read_afresh() -> None:
    pages = OpenOrderPages(1, clock=Clock())
    pages.listed("s1", None, 0, [order("o0"), order("o1")])
    assert pages.kept == (("s1", None),)
    assert pages.cached("s1", None, 0) is None


@pytest.mark.parametrize("kept", [True, False], ids=["kept listing", "read afresh"])
def test_orders_closed_between_pages_move_no_other_across_the_cursor(kept: bool) -> None:
    clock = Clock()
    pages = OpenOrderPages(2, clock=clock)
    first, _ = page_of(pages, 0, [order(f"o{n}") for n in range(6)])
    assert ids(first) == ["o0", "o1"]
    if not kept:
        clock.now += 10  # the kept listing is gone: the next page reads the port again
    # o0 (paged already) and o3 (not yet) close before the next page is asked for.
    now_open = [order(n) for n in ("o1", "o2", "o4", "o5")]
    assert first.next_after is not None
    second, read = page_of(pages, first.next_after, now_open)
    assert read is not kept
    # From the kept listing o3 is still there (as it stood at the first page); read afresh it
    # is gone; either way o2 is not skipped because o0 left the front.
    assert ids(second) == (["o2", "o3"] if kept else ["o2", "o4"])
    assert second.next_after is not None
    rest, _ = page_of(pages, second.next_after, now_open)
    assert ids(rest) == (["o4", "o5"] if kept else ["o5"])
    assert rest.next_after is None


def test_an_order_opened_between_pages_comes_at_the_end() -> None:
    clock = Clock()
    pages = OpenOrderPages(2, clock=clock)
    first, _ = page_of(pages, 0, [order(f"o{n}") for n in range(4)])
    clock.now += 10
    assert first.next_after is not None
    later = [order(f"o{n}") for n in range(4)] + [order("new")]
    second, _ = page_of(pages, first.next_after, later)
    assert ids(second) == ["o2", "o3"]
    assert second.next_after is not None
    last, _ = page_of(pages, second.next_after, later)
    assert (ids(last), last.next_after) == (["new"], None)


def test_the_numbers_of_orders_no_longer_listed_are_forgotten() -> None:
    pages = OpenOrderPages(10, clock=Clock())
    pages.listed("s1", None, 0, [order("m0"), order("i0", "IMM"), order("m1"), order("i1", "IMM")])
    assert pages.numbered("s1") == 4
    # A listing of one instrument forgets only that instrument's orders it does not show.
    pages.listed("s1", "MAN", 0, [order("m1")])
    assert pages.numbered("s1") == 3
    pages.listed("s1", None, 0, [order("i1", "IMM")])
    assert pages.numbered("s1") == 1
    pages.listed("s1", None, 0, [])
    assert pages.numbered("s1") == 0
    for n in range(1000):  # many orders opened and closed between listings: nothing builds up
        pages.listed("s1", None, 0, [order(f"x{n}"), order(f"y{n}", "IMM")])
    assert pages.numbered("s1") == 2
    assert pages.numbered("nobody") == 0


def test_a_forgotten_order_listed_again_is_paged_once() -> None:
    pages = OpenOrderPages(1, clock=Clock())
    pages.listed("s1", None, 0, [order("a"), order("b")])
    pages.listed("s1", None, 0, [order("b")])  # a is gone, its number with it
    assert every_page(pages, [order("a"), order("b")]) == [["a"], ["b"]]


def test_kept_listings_expire_after_their_ttl() -> None:
    clock = Clock()
    pages = OpenOrderPages(1, ttl=10.0, clock=clock)
    first = pages.listed("s1", None, 0, [order("o0"), order("o1"), order("o2")])
    assert first.next_after is not None
    clock.now += 9.9
    assert pages.kept == (("s1", None),)
    clock.now += 0.1
    assert pages.kept == ()
    assert pages.cached("s1", None, first.next_after) is None  # the caller reads afresh
    page = pages.listed("s1", None, first.next_after, [order("o0"), order("o1"), order("o2")])
    assert ids(page) == ["o1"]  # paged by number, as before
    assert pages.kept == (("s1", None),)  # and kept again for the page after it


def test_a_strategy_keeps_a_few_listings_and_a_new_first_page_replaces_its_own() -> None:
    pages = OpenOrderPages(1, listings=2, clock=Clock())
    two = [order("m0"), order("m1"), order("i0", "IMM"), order("i1", "IMM")]
    for instrument in ("MAN", "IMM", None):
        shown = [o for o in two if instrument in (None, o.instrument)]
        pages.listed("s1", instrument, 0, shown)
    pages.listed("s2", None, 0, [order("a", strategy_id="s2"), order("b", strategy_id="s2")])
    assert pages.kept == (("s1", "IMM"), ("s1", None), ("s2", None))  # s1's oldest went
    pages.listed("s1", "IMM", 0, [order("i1", "IMM"), order("i2", "IMM")])
    assert pages.kept == (("s1", None), ("s2", None), ("s1", "IMM"))
    page = pages.cached("s1", "IMM", 1)
    assert page is not None
    assert ids(page) == ["i1"]  # from the new listing: i0 has closed


def test_an_order_a_listing_shows_between_numbered_ones_keeps_its_place() -> None:
    pages = OpenOrderPages(100, clock=Clock())
    pages.listed("s1", "MAN", 0, [order("m1"), order("m2")])  # MAN's orders numbered first
    every = [order("i0", "IMM"), order("m1"), order("i1", "IMM"), order("m2"), order("i2", "IMM")]
    page = pages.listed("s1", None, 0, every)
    assert ids(page) == ["i0", "m1", "i1", "m2", "i2"]  # the hosted port's order, oldest first


def test_an_order_is_not_numbered_between_its_neighbours_with_a_number_in_use() -> None:
    pages = OpenOrderPages(1, clock=Clock())
    pages.listed("s1", None, 0, [order("a"), order("b", "IMM"), order("c")])
    pages.listed("s1", "MAN", 0, [order("a"), order("new"), order("c")])  # b sits between a, c
    every = [order("a"), order("b", "IMM"), order("new"), order("c")]
    assert sorted(n for page in every_page(pages, every) for n in page) == ["a", "b", "c", "new"]


def test_an_order_with_no_room_between_its_neighbours_goes_to_the_end_once() -> None:
    pages = OpenOrderPages(1, clock=Clock())
    pages.listed("s1", None, 0, [order("a"), order("b")])
    # Listed out of the order they were numbered in: no gap between b and a for "new".
    assert every_page(pages, [order("b"), order("new"), order("a")]) == [["a"], ["b"], ["new"]]


def test_an_order_listed_twice_is_paged_once() -> None:
    pages = OpenOrderPages(10, clock=Clock())
    page = pages.listed("s1", None, 0, [order("a"), order("b"), order("a")])
    assert ids(page) == ["a", "b"]


@pytest.mark.parametrize("seed", range(20))
def test_whatever_opens_and_closes_between_pages_an_order_open_throughout_is_paged_once(
    seed: int,
) -> None:
    """A venue whose orders open and close while a client pages, with listings kept or read
    afresh at random, and other listings (one instrument's, another client's) in between."""
    rng = random.Random(seed)
    clock = Clock()
    pages = OpenOrderPages(rng.randint(1, 4), ttl=5.0, clock=clock)
    venue: list[OrderSnapshot] = []  # open, oldest first
    made = 0

    def open_some(count: int) -> None:
        nonlocal made
        for _ in range(count):
            venue.append(order(f"o{made}", rng.choice(["MAN", "IMM"])))
            made += 1

    open_some(rng.randint(0, 12))
    for _ in range(10):  # paging sessions
        at_start = {o.client_order_id for o in venue}
        closed: set[str] = set()
        seen: list[str] = []
        after = 0
        while True:
            page, _ = page_of(pages, after, list(venue))
            seen += ids(page)
            if page.next_after is None:
                break
            assert page.next_after > after
            after = page.next_after
            for gone in rng.sample(venue, rng.randint(0, min(2, len(venue)))):
                venue.remove(gone)
                closed.add(gone.client_order_id)
            open_some(rng.randint(0, 2))
            clock.now += rng.choice([0.0, 1.0, 6.0])
            if rng.random() < 0.3:  # someone else lists one instrument meanwhile
                symbol = rng.choice(["MAN", "IMM"])
                pages.listed("s1", symbol, 0, [o for o in venue if o.instrument == symbol])
        assert len(seen) == len(set(seen))
        assert at_start - closed <= set(seen)
        assert set(seen) <= at_start | {o.client_order_id for o in venue} | closed
    pages.listed("s1", None, 0, list(venue))
    assert pages.numbered("s1") == len(venue)


def test_a_page_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1 order"):
        OpenOrderPages(0)
    with pytest.raises(ValueError, match="ttl"):
        OpenOrderPages(1, ttl=0)
