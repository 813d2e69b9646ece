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
