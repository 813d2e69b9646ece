"""A request's deadline (envelope ``d``): a server that comes to it late refuses it, for good
(issue 13, section 3). In memory: the protocol, not the sockets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgpack
import pytest

from bus.codec import WireError, decode, encode
from bus.venue_protocol import Execute, Reply, Route, VenueProtocol
from ports import ErrorReason, Outcome
from ports.models import Rejection
from tests.contract.helpers import limit

PEER = Route(b"peer", False)
T = datetime(2026, 1, 5, 9, tzinfo=UTC)


def test_a_request_past_its_deadline_is_refused_stale_and_so_is_every_retry() -> None:
    venue = VenueProtocol(session="s", instance="i")
    frame = encode(limit("o1"), request_id=3, client_id="c", deadline=T)
    refused = venue.receive(PEER, frame, now=0.0, wall=T + timedelta(milliseconds=1))
    assert isinstance(refused, Reply)
    answer = decode(refused.frame, max_bytes=None)
    assert answer.request_id == 3
    assert isinstance(answer.body, Rejection)
    assert answer.body.reason is ErrorReason.STALE_REQUEST
    assert answer.body.outcome is Outcome.DEFINITE
    assert answer.body.client_order_id == "o1"
    # Its retry, even "in time" by a clock set back, gets the same answer: never executed.
    assert venue.receive(PEER, frame, now=0.0, wall=T - timedelta(seconds=1)) == refused


def test_a_request_in_time_or_without_a_deadline_goes_to_the_backend() -> None:
    venue = VenueProtocol(session="s", instance="i")
    in_time = encode(limit("o1"), request_id=1, client_id="c", deadline=T)
    assert isinstance(venue.receive(PEER, in_time, now=0.0, wall=T), Execute)
    none = encode(limit("o2"), request_id=2, client_id="c")
    assert isinstance(venue.receive(PEER, none, now=0.0, wall=T + timedelta(days=9)), Execute)


def test_a_deadline_that_is_not_a_timestamp_is_a_protocol_error_with_the_id() -> None:
    raw = msgpack.unpackb(encode(limit("o1"), request_id=4, client_id="c"))
    frame = msgpack.packb({**raw, "d": "tomorrow"})
    with pytest.raises(WireError, match="'d' must be a Timestamp") as error:
        decode(frame)
    assert error.value.request_id == 4


def test_a_client_whose_clock_is_off_stamps_deadlines_on_the_servers_clock() -> None:
    """Six seconds slow, with a five second timeout: without the sync's server time every
    request would arrive already stale; with it, the deadline is the server's now + 5 s."""
    from bus.client_events import FramesToSend
    from bus.client_protocol import ClientProtocol
    from bus.codec import SyncReply

    slow = T - timedelta(seconds=6)
    client = ClientProtocol("s1", client_id="c", clock=lambda: slow)
    (start,) = client.start(now=0.0, timeout=5.0)
    assert isinstance(start, FramesToSend)
    ((sync_id, _),) = start.frames
    reply = SyncReply(session="a", instance="b", strategy_id="s1", seq=0, venue_seq=0,
                      open_orders=(), server_time=T)  # fmt: skip
    client.receive_reply(encode(reply, request_id=sync_id), now=0.0)
    frame = client.send(7, limit("o1"), now=0.0, deadline=5.0)
    assert decode(frame).deadline == T + timedelta(seconds=5)
    venue = VenueProtocol(session="s", instance="i")
    assert isinstance(venue.receive(PEER, frame, now=0.0, wall=T + timedelta(seconds=1)), Execute)
