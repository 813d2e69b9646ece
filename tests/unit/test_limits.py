"""What a peer's traffic may grow, bounded: the reply store, the rate limit (issue 12) and the
queue of replies to a peer that does not read them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
import zmq

from bus.codec import decode, encode
from bus.limits import RateLimiter, ServerLimits
from bus.reply_store import ReplyStore
from bus.server import Endpoints
from bus.venue_protocol import Execute, Reply, Route, VenueProtocol
from mock_venue.clock import ManualClock
from mock_venue.venue_server import venue_server
from ports import Acknowledgement, ErrorReason, Outcome, Rejection
from tests.contract.helpers import limit
from tests.contract.venue_setup import CONTRACT_VENUE, SEED

PEER = Route(b"peer", False)
WAIT = 5.0  # seconds: the deadline for what should happen at once


def _wait_until(condition: Callable[[], bool], what: Callable[[], str]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {WAIT} s: {what()}")
        time.sleep(0.005)  # polls the condition; the deadline is what fails


def test_an_owners_window_keeps_its_latest_answers() -> None:
    store = ReplyStore(per_owner=3)
    for n in range(5):
        store.put("k1", ("c1", n), b"x" * 10)
    assert [store.get("k1", ("c1", n)) for n in range(5)] == [None, None, *[b"x" * 10] * 3]
    assert (store.entries, store.evicted, store.owners) == (3, 2, 1)


def test_another_owners_flood_does_not_evict_a_quiet_owners_answers() -> None:
    # Once one global cache: after ~10 s of another peer's failed cancels, a victim's resent
    # amend was executed twice. The flood names a new client id each time: still one owner.
    store = ReplyStore(per_owner=1_000_000, max_bytes=200_000)
    for n in range(20):
        store.put("victim", ("v", n), b"v" * 200)
    for n in range(10_000):
        store.put("flood", (f"c{n}", 1), b"f" * 200)
    assert all(store.get("victim", ("v", n)) == b"v" * 200 for n in range(20))
    assert store.bytes <= store.max_bytes
    assert store.get("flood", ("c9999", 1)) is not None  # the flood loses its own oldest
    assert store.get("flood", ("c0", 1)) is None


def test_shedding_cuts_the_largest_owners_to_a_common_level() -> None:
    store = ReplyStore(max_bytes=100_000)
    for owner, count in (("big", 300), ("mid", 100), ("small", 10)):
        for n in range(count):
            store.put(owner, ("c", n), b"y" * 200)
    for n in range(300, 400):  # the big one goes on and pushes the total over
        store.put("big", ("c", n), b"y" * 200)
    assert store.bytes <= store.max_bytes
    assert all(store.get("small", ("c", n)) is not None for n in range(10))
    assert store.get("big", ("c", 399)) is not None  # the latest stays, the oldest go
    assert store.get("big", ("c", 0)) is None


def test_ever_new_owners_stay_within_the_byte_budget() -> None:
    # Development mode: an owner is a client id, which a peer picks (there is no identity).
    store = ReplyStore(max_bytes=100_000)
    for n in range(5_000):
        store.put(f"c{n}" + "x" * 60, ("c", 1), b"y" * 100)
    assert store.bytes <= store.max_bytes
    assert store.owners < 5_000


def test_an_answer_kept_again_under_the_same_id_replaces_the_first() -> None:
    store = ReplyStore()
    store.put("k", ("c", 1), b"a" * 100)
    store.put("k", ("c", 1), b"b" * 10)
    assert (store.get("k", ("c", 1)), store.entries) == (b"b" * 10, 1)
    fresh = ReplyStore()
    fresh.put("k", ("c", 1), b"b" * 10)
    assert store.bytes == fresh.bytes  # the first one's bytes were given back


def test_the_rate_limit_lets_a_burst_through_then_the_rate() -> None:
    rate = RateLimiter(rate=10.0, burst=5, clients=100)
    assert [rate.wait("c", 0.0) for _ in range(5)] == [None] * 5
    wait = rate.wait("c", 0.0)
    assert wait == pytest.approx(0.1)
    assert rate.wait("other", 0.0) is None  # a bucket each
    assert rate.wait("c", 0.1) is None  # one token refilled
    assert rate.wait("c", 0.1) is not None
    assert rate.throttled == 2


def test_forgotten_clients_start_afresh_within_the_bound() -> None:
    rate = RateLimiter(rate=1.0, burst=1, clients=2)
    for client in ("a", "b", "c"):
        assert rate.wait(client, 0.0) is None
    assert rate.clients == 2
    assert rate.wait("a", 0.0) is None  # "a" was the oldest: forgotten, a full bucket again


def test_a_request_over_the_rate_is_refused_throttled_with_its_id_and_not_kept() -> None:
    venue = VenueProtocol(
        session="s", instance="i", limits=ServerLimits(requests_per_second=1.0, burst=1)
    )
    first = venue.receive(PEER, encode(limit("o1"), request_id=1, client_id="c"), now=0.0)
    assert isinstance(first, Execute)
    over = venue.receive(PEER, encode(limit("o2"), request_id=2, client_id="c"), now=0.5)
    assert isinstance(over, Reply)
    envelope = decode(over.frame, max_bytes=None)
    assert envelope.request_id == 2
    assert isinstance(envelope.body, Rejection)
    assert envelope.body.reason is ErrorReason.THROTTLED
    assert envelope.body.outcome is Outcome.DEFINITE
    assert envelope.body.retry_after == pytest.approx(0.5)
    assert envelope.body.client_order_id == "o2"
    # Nothing was done or kept: the same request after retry_after is carried out.
    again = venue.receive(PEER, encode(limit("o2"), request_id=2, client_id="c"), now=1.0)
    assert isinstance(again, Execute)
    status = venue.limits_status(0)
    assert (status.throttled, status.rate_clients) == (1, 1)


def test_without_keys_each_client_id_has_its_own_rate() -> None:
    venue = VenueProtocol(
        session="s", instance="i", limits=ServerLimits(requests_per_second=1.0, burst=1)
    )
    for client in ("a", "b"):  # b is not throttled for a's burst
        effect = venue.receive(PEER, encode(limit("o1"), request_id=1, client_id=client), now=0.0)
        assert isinstance(effect, Execute)
    assert venue.rate.clients == 2


def test_a_victims_resent_request_is_answered_from_its_window_after_anothers_flood() -> None:
    venue = VenueProtocol(session="s", instance="i", limits=ServerLimits(reply_bytes=100_000))
    victim = encode(limit("v1"), request_id=1, client_id="victim")
    first = venue.receive(PEER, victim)
    assert isinstance(first, Execute)
    venue.answer(first.key, Rejection(reason=ErrorReason.UNKNOWN_ORDER, message="x" * 100))
    for n in range(5_000):  # another peer's failed cancels, each answer kept for its retries
        flood = venue.receive(PEER, encode(limit(f"f{n}"), request_id=n, client_id="flood"))
        assert isinstance(flood, Execute)
        venue.answer(flood.key, Rejection(reason=ErrorReason.UNKNOWN_ORDER, message="y" * 100))
    assert venue.replies.bytes <= 100_000
    again = venue.receive(PEER, victim)
    assert isinstance(again, Reply)  # the stored answer: not executed a second time
    assert venue.limits_status(0).replies_evicted > 0  # the flood lost its own oldest


def test_a_peer_that_never_reads_gets_its_reply_queue_and_the_rest_dropped_and_counted() -> None:
    """The server neither blocks nor grows for a peer that does not read: beyond ``reply_queue``
    its replies are dropped and counted, and a resend of a dropped request id is answered from
    its retry window (not executed again)."""
    sent, reply_queue = 1000, 100
    endpoints = Endpoints("inproc://rq-command", "inproc://rq-events", "inproc://rq-control")
    server = venue_server(
        CONTRACT_VENUE,
        endpoints,
        seed=SEED,
        clock=ManualClock(),
        limits=ServerLimits(reply_queue=reply_queue),
    )
    server.bind()
    # inproc, on the server's Context: the pipe holds exactly the server's high-water mark plus
    # the reader's (over TCP, kernel buffers would take an amount of their own on top).
    peer = server._channels.context.socket(zmq.DEALER)
    peer.setsockopt(zmq.LINGER, 0)
    peer.setsockopt(zmq.RCVHWM, 1)
    queued = reply_queue + 1
    peer.connect(endpoints.command)
    serving = threading.Thread(target=server.serve, daemon=True)
    serving.start()
    try:
        orders = [limit(f"o{n}") for n in range(sent)]
        for n, order in enumerate(orders):
            peer.send(encode(order, request_id=n, client_id="never-reads"))
        _wait_until(
            lambda: server.reply_queue_drops == sent - queued,
            lambda: f"{server.reply_queue_drops} replies dropped, not {sent - queued}",
        )
        # What was queued is the first replies, in order; nothing else was.
        ids = []
        for _ in range(queued):
            assert peer.poll(int(WAIT * 1000)), "a queued reply did not come"
            ids.append(decode(peer.recv(), max_bytes=None).request_id)
        assert ids == list(range(queued))
        assert not peer.poll(0)
        # A dropped reply is in the retry window: the resend gets it, not a second execution
        # (which would be refused as a duplicate client order id).
        last = sent - 1
        peer.send(encode(orders[last], request_id=last, client_id="never-reads"))
        assert peer.poll(int(WAIT * 1000)), "the resend was not answered"
        again = decode(peer.recv(), max_bytes=None)
        assert again.request_id == last
        assert isinstance(again.body, Acknowledgement)
        assert again.body.order.client_order_id == f"o{last}"
    finally:
        server.stop()
        serving.join(WAIT)
        peer.close(linger=0)
        server.close()
    assert not serving.is_alive()
    status = server.limits
    assert (status.limits.reply_queue, status.reply_queue_drops) == (reply_queue, sent - queued)
    assert server.unroutable_replies == 0  # a full queue is not a peer gone
    assert server.protocol.requests == sent + 1
