"""The venue side of the protocol, in memory: idempotency by (client, request id), numbered
streams, the replay store, sync replies, heartbeats and refusals. No socket, no backend: the test
plays the backend, answering what ``receive`` hands it."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import msgpack
import pytest
from pydantic import ValidationError

from bus.codec import (
    HEARTBEAT_TOPIC,
    MAX_REPLAY,
    Heartbeat,
    Replay,
    ReplayReply,
    Sync,
    SyncReply,
    decode,
    encode,
    strategy_topic,
)
from bus.limits import ServerLimits
from bus.venue_protocol import Execute, ReplayWanted, Reply, Route, VenueProtocol
from mock_venue.clock import ManualClock
from mock_venue.engine import Publish, VenueEngine
from ports import (
    ErrorReason,
    ExecutionReport,
    OpenOrders,
    PortEvent,
    PortEventKind,
    QueryOrder,
    Rejection,
    SubmitOrder,
)
from tests.contract.helpers import limit
from tests.contract.venue_setup import CONTRACT_VENUE

PEER = Route(b"peer-1", False)
OTHER = Route(b"peer-2", False)


def protocol() -> VenueProtocol:
    return VenueProtocol(session="sess", instance="inst")


def request(body: object, request_id: int, client: str | None = "c1") -> bytes:
    return encode(body, request_id=request_id, client_id=client)  # type: ignore[arg-type]


def engine_reports(strategy: str, count: int) -> list[ExecutionReport]:
    """Real reports of ``strategy``, numbered by an engine of their own."""
    engine = VenueEngine(CONTRACT_VENUE, clock=ManualClock(), rng=random.Random(0))
    found: list[ExecutionReport] = []
    n = 0
    while len(found) < count:
        n += 1
        order = limit(f"o{n}", "IMM", 1, "100.00", strategy_id=strategy)
        found += [o.report for o in engine.handle(order, n) if isinstance(o, Publish)]
    return found[:count]


def ack_for(protocol: VenueProtocol, frame: bytes) -> tuple[Execute, bytes]:
    """Receive a submit, answer it as a backend would (with a rejection: any result will do)."""
    effect = protocol.receive(PEER, frame)
    assert isinstance(effect, Execute)
    result = Rejection(reason=ErrorReason.UNKNOWN_INSTRUMENT, message="no such instrument")
    route, answer = protocol.answer(effect.key, result)
    assert route == PEER
    return effect, answer


def test_a_request_goes_to_the_backend_once_and_a_retry_gets_the_stored_answer() -> None:
    venue = protocol()
    frame = request(limit("o1"), 7)
    effect, answer = ack_for(venue, frame)
    assert effect.key == ("c1", 7)
    assert decode(answer, max_bytes=None).request_id == 7
    again = venue.receive(OTHER, frame)  # the resend, over another connection
    assert again == Reply(OTHER, answer)


def test_a_retry_while_the_request_is_worked_on_is_answered_once_to_the_latest_route() -> None:
    venue = protocol()
    frame = request(limit("o1"), 1)
    effect = venue.receive(PEER, frame)
    assert isinstance(effect, Execute)
    assert venue.receive(OTHER, frame) is None  # no second execution
    route, _ = venue.answer(effect.key, Rejection(reason=ErrorReason.TOO_LATE, message="x"))
    assert route == OTHER


def test_the_same_request_id_of_another_client_is_another_request() -> None:
    venue = protocol()
    ack_for(venue, request(limit("o1"), 1, "c1"))
    assert isinstance(venue.receive(PEER, request(limit("o1"), 1, "c2")), Execute)
    assert isinstance(venue.receive(PEER, request(limit("o1"), 1, "c1")), Reply)  # c1's kept


def test_a_request_without_a_client_id_is_known_by_its_connection() -> None:
    venue = protocol()
    effect = venue.receive(PEER, request(limit("o1"), 1, None))
    assert isinstance(effect, Execute)
    assert effect.key == ("peer:" + PEER.identity.hex(), 1)


def test_queries_and_throttled_answers_are_not_kept() -> None:
    venue = protocol()
    query = request(QueryOrder(strategy_id="s1", client_order_id="o1"), 1)
    first = venue.receive(PEER, query)
    assert isinstance(first, Execute)
    venue.answer(first.key, Rejection(reason=ErrorReason.UNKNOWN_ORDER, message="unknown"))
    assert isinstance(venue.receive(PEER, query), Execute)  # asked again: run again
    submit = request(limit("o2"), 2)
    effect = venue.receive(PEER, submit)
    assert isinstance(effect, Execute)
    throttled = Rejection(reason=ErrorReason.THROTTLED, message="slow", retry_after=0.1)
    venue.answer(effect.key, throttled)
    assert isinstance(venue.receive(PEER, submit), Execute)  # tried afresh after retry_after


def test_a_dropped_answer_is_kept_for_the_retry_but_not_sent() -> None:
    venue = protocol()
    frame = request(limit("o1"), 1)
    effect = venue.receive(PEER, frame)
    assert isinstance(effect, Execute)
    route, answer = venue.answer(
        effect.key, Rejection(reason=ErrorReason.TOO_LATE, message="x"), delivered=False
    )
    assert route is None
    assert venue.receive(PEER, frame) == Reply(PEER, answer)


def test_a_recall_token_stands_in_for_the_frame_and_gives_the_same_bytes() -> None:
    result = Rejection(reason=ErrorReason.TOO_LATE, message="kept by the backend")
    recalled: list[object] = []

    def recall(token: object) -> Rejection:
        recalled.append(token)
        return result

    venue = VenueProtocol(session="s", instance="i", recall=recall)
    frame = request(limit("o1"), 3)
    effect = venue.receive(PEER, frame)
    assert isinstance(effect, Execute)
    _, answer = venue.answer(effect.key, result, recall=("s1", "o1"))
    assert venue.receive(PEER, frame) == Reply(PEER, answer)
    assert recalled == [("s1", "o1")]


def test_the_store_keeps_a_bounded_number_of_answers() -> None:
    venue = VenueProtocol(session="s", instance="i", limits=ServerLimits(replies_per_client=2))
    frames = [request(limit(f"o{n}"), n) for n in range(3)]
    for frame in frames:
        ack_for(venue, frame)
    assert isinstance(venue.receive(PEER, frames[0]), Execute)  # the oldest was dropped
    assert isinstance(venue.receive(PEER, frames[2]), Reply)


@pytest.mark.parametrize(
    ("frame", "reason", "says"),
    [
        (b"\xc1", ErrorReason.PROTOCOL_ERROR, "not msgpack"),
        (encode(limit("o1")), ErrorReason.PROTOCOL_ERROR, "needs an 'id'"),
        (
            encode(Heartbeat(session="s", instance="i", venue_seq=0, seqs={},
                             venue_time=datetime(2026, 1, 5, tzinfo=UTC)), request_id=4),
            ErrorReason.PROTOCOL_ERROR,
            "not a request",
        ),
        (
            msgpack.packb({"v": 1, "t": "submit_order", "id": 5, "b": {"strategy_id": "s1"}}),
            ErrorReason.INVALID_REQUEST,
            "invalid submit_order",
        ),
    ],
)  # fmt: skip
def test_what_is_not_a_valid_request_gets_a_typed_refusal(
    frame: bytes, reason: ErrorReason, says: str
) -> None:
    venue = protocol()
    effect = venue.receive(PEER, frame)
    assert isinstance(effect, Reply)
    refusal = decode(effect.frame, max_bytes=None).body
    assert isinstance(refusal, Rejection)
    assert refusal.reason is reason
    assert says in refusal.message
    assert venue.protocol_errors == 1


def test_events_are_numbered_per_strategy_and_venue_wide_renumbering_foreign_numbers() -> None:
    venue = protocol()
    # Each strategy's reports numbered by engines of their own: both start at 1.
    published = [
        venue.publish(r) for pair in zip(engine_reports("s1", 3), engine_reports("s2", 3),
                                         strict=True) for r in pair
    ]  # fmt: skip
    numbers = []
    for event in published:
        report = decode(event.frame, max_bytes=None).body
        assert isinstance(report, ExecutionReport)
        assert event.topic == strategy_topic(report.strategy_id)
        numbers.append((report.strategy_id, report.seq, report.venue_seq))
    assert numbers == [
        ("s1", 1, 1), ("s2", 1, 2), ("s1", 2, 3), ("s2", 2, 4), ("s1", 3, 5), ("s2", 3, 6),
    ]  # fmt: skip
    assert (venue.stream_seq("s1"), venue.stream_seq("s2"), venue.venue_seq) == (3, 3, 6)


def test_a_report_numbered_as_the_protocol_would_is_published_as_it_is() -> None:
    venue = protocol()
    reports = engine_reports("s1", 2)  # one engine: numbers already what the protocol gives
    frames = [venue.publish(r).frame for r in reports]
    assert frames == [encode(r) for r in reports]


def test_replay_returns_the_published_frames_of_a_range_capped_at_max_replay() -> None:
    venue = protocol()
    reports = engine_reports("s1", 4) + engine_reports("s2", 2)
    frames = [venue.publish(r).frame for r in reports]
    ask = Replay(strategy_id="s1", from_seq=2, to_seq=3)
    effect = venue.receive(PEER, request(ask, 9))
    assert effect == ReplayWanted(PEER, 9, ask)
    reply = decode(venue.replay_reply(9, ask), max_bytes=None)
    assert reply.request_id == 9
    assert isinstance(reply.body, ReplayReply)
    assert reply.body.events == tuple(frames[1:3])
    every = Replay(strategy_id=None, from_seq=4, to_seq=100)
    body = decode(venue.replay_reply(1, every), max_bytes=None).body
    assert isinstance(body, ReplayReply)
    assert body.events == tuple(frames[3:])
    many = VenueProtocol(session="s", instance="i")
    for report in engine_reports("s1", MAX_REPLAY + 5):
        many.publish(report)
    wide = Replay(strategy_id="s1", from_seq=1, to_seq=MAX_REPLAY + 5)
    capped = decode(many.replay_reply(1, wide), max_bytes=None).body
    assert isinstance(capped, ReplayReply)
    assert len(capped.events) == MAX_REPLAY


def test_a_sync_goes_to_the_backend_for_the_open_orders_and_carries_the_protocols_numbers() -> None:
    venue = protocol()
    for report in engine_reports("s1", 3):
        venue.publish(report)
    effect = venue.receive(PEER, request(Sync(strategy_id="s1"), 1))
    assert isinstance(effect, Execute)
    assert effect.key in venue.pending_syncs
    route, frame = venue.answer(effect.key, OpenOrders(strategy_id="s1", orders=()))
    assert route == PEER
    reply = decode(frame, max_bytes=None).body
    assert reply == SyncReply(
        session="sess", instance="inst", strategy_id="s1", seq=3, venue_seq=3, open_orders=()
    )
    assert not venue.pending_syncs
    # A sync is never answered from the store: a reconnecting client gets the numbers of now.
    assert isinstance(venue.receive(PEER, request(Sync(strategy_id="s1"), 1)), Execute)


def test_heartbeats_tell_each_strategy_its_own_streams_number_only() -> None:
    venue = protocol()
    for report in engine_reports("s1", 2) + engine_reports("s2", 1):
        venue.publish(report)
    at = datetime(2026, 1, 5, 9, tzinfo=UTC)
    beats = venue.heartbeats(at, ["s1", "s3"])
    assert [topic for topic, _ in beats] == [
        HEARTBEAT_TOPIC,
        strategy_topic("s1"),
        strategy_topic("s3"),
    ]
    bodies = [decode(frame, max_bytes=None).body for _, frame in beats]

    def beat(seqs: dict[str, int]) -> Heartbeat:
        return Heartbeat(session="sess", instance="inst", venue_seq=3, seqs=seqs, venue_time=at)

    # For monitors the all-events stream's number; each strategy its own stream's.
    assert bodies == [beat({}), beat({"s1": 2}), beat({"s3": 0})]


def test_a_notice_goes_on_the_strategys_topic_unnumbered() -> None:
    venue = protocol()
    event = PortEvent(
        kind=PortEventKind.CONNECTION_LOST, time=datetime(2026, 1, 5, tzinfo=UTC), detail="x"
    )
    topic, frame = venue.notice("s1", event)
    assert topic == strategy_topic("s1")
    assert decode(frame, max_bytes=None).body == event
    assert (venue.venue_seq, venue.stream_seq("s1")) == (0, 0)  # nothing kept for replay


# An instant whose UTC date is in year 10000: accepted once, it made every later reply carrying
# the order unreadable, so its strategy could not even connect (issue 12, section 3).
_UNREADABLE_LATER = "9999-12-31T23:59:59-01:00"


@pytest.mark.parametrize(
    "expire_at", [_UNREADABLE_LATER, "0001-01-01T00:30:00+01:00"]
)  # fmt: skip
def test_an_instant_no_peer_could_read_back_is_refused_at_the_edge_with_its_id(
    expire_at: str,
) -> None:
    with pytest.raises(ValidationError, match="outside years 1-9999"):
        limit("o1").model_validate(
            {**limit("o1").model_dump(), "expire_at": datetime.fromisoformat(expire_at)}
        )
    # On the wire an instant is a Timestamp: the ISO text that once got through is not one.
    venue = protocol()
    body = {**limit("o1").model_dump(mode="json"), "expire_at": expire_at}
    frame = msgpack.packb({"v": 1, "t": "submit_order", "id": 8, "c": "c1", "b": body})
    effect = venue.receive(PEER, frame)
    assert isinstance(effect, Reply)  # never handed to the backend
    reply = decode(effect.frame, max_bytes=None)
    assert reply.request_id == 8
    assert isinstance(reply.body, Rejection)
    assert reply.body.reason is ErrorReason.INVALID_REQUEST
    assert "expire_at: Input should be a valid datetime" in reply.body.message


def test_the_last_readable_instant_crosses_the_wire_unchanged() -> None:
    last = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    order = limit("o1").model_copy(update={"expire_at": last})
    body = decode(encode(order, request_id=1)).body
    assert isinstance(body, SubmitOrder)
    assert body.expire_at == last


def test_a_timestamp_out_of_range_is_refused_with_the_frames_id() -> None:
    seconds = int((datetime(9999, 12, 31, 23, tzinfo=UTC)).timestamp()) + 7200
    body = {**limit("o1").model_dump(mode="json"), "expire_at": msgpack.Timestamp(seconds)}
    frame = msgpack.packb({"v": 1, "t": "submit_order", "id": 9, "c": "c1", "b": body})
    effect = protocol().receive(PEER, frame)
    assert isinstance(effect, Reply)
    reply = decode(effect.frame, max_bytes=None)
    assert reply.request_id == 9  # the error can be matched to its request
    assert isinstance(reply.body, Rejection)
    assert reply.body.reason is ErrorReason.PROTOCOL_ERROR


def test_a_body_nested_too_deeply_to_read_is_refused_with_the_id_before_it() -> None:
    start = msgpack.packb({"v": 1, "t": "submit_order", "id": 11, "c": "c1"})
    nested = b"\x91" * 5000 + msgpack.packb("deep")  # 5,000 arrays, one inside the other
    frame = b"\x85" + start[1:] + msgpack.packb("b") + b"\x81" + msgpack.packb("strategy_id")
    effect = protocol().receive(PEER, frame + nested)
    assert isinstance(effect, Reply)
    reply = decode(effect.frame, max_bytes=None)
    assert reply.request_id == 11
    assert isinstance(reply.body, Rejection)
    assert reply.body.reason is ErrorReason.PROTOCOL_ERROR
    assert reply.body.message.startswith("not msgpack: ")
    assert reply.body.message != "not msgpack: "  # it says something


_SUBMIT = limit("o1").model_dump(mode="json")


@pytest.mark.parametrize(
    ("envelope", "body", "reason"),
    [
        ({"v": True}, {}, ErrorReason.PROTOCOL_ERROR),
        ({"v": 1.0}, {}, ErrorReason.PROTOCOL_ERROR),
        ({"c": None}, {}, ErrorReason.PROTOCOL_ERROR),
        ({"c": "c" * 129}, {}, ErrorReason.PROTOCOL_ERROR),
        ({}, {"quantity": "1_0"}, ErrorReason.INVALID_REQUEST),
        ({}, {"quantity": " 10"}, ErrorReason.INVALID_REQUEST),
        ({}, {"quantity": "\uff11\uff10"}, ErrorReason.INVALID_REQUEST),  # full-width 10
        ({}, {"quantity": True}, ErrorReason.INVALID_REQUEST),
        ({}, {"quantity": 10.0}, ErrorReason.INVALID_REQUEST),
        ({}, {"limit_price": "NaN"}, ErrorReason.INVALID_REQUEST),
        ({}, {"instrument": b"IMM"}, ErrorReason.INVALID_REQUEST),
        ({}, {"side": b"buy"}, ErrorReason.INVALID_REQUEST),
        ({}, {"time_in_force": "gtc", "expire_at": 1767603600}, ErrorReason.INVALID_REQUEST),
    ],
)  # fmt: skip
def test_the_wire_is_read_strictly_as_the_protocol_document_says(
    envelope: dict[str, object], body: dict[str, object], reason: ErrorReason
) -> None:
    # Each of these was once accepted (issue 12, section 3): every implementation must agree.
    raw = {"v": 1, "t": "submit_order", "id": 3, "c": "c1", "b": {**_SUBMIT, **body}, **envelope}
    effect = protocol().receive(PEER, msgpack.packb(raw))
    assert isinstance(effect, Reply)
    reply = decode(effect.frame, max_bytes=None)
    assert reply.request_id == 3
    assert isinstance(reply.body, Rejection)
    assert reply.body.reason is reason


def test_a_sequence_number_as_a_string_is_refused() -> None:
    raw = {"v": 1, "t": "replay", "id": 4, "b": {"strategy_id": "s1", "from_seq": "1", "to_seq": 2}}
    effect = protocol().receive(PEER, msgpack.packb(raw))
    assert isinstance(effect, Reply)
    reply = decode(effect.frame, max_bytes=None)
    assert isinstance(reply.body, Rejection)
    assert (reply.request_id, reply.body.reason) == (4, ErrorReason.INVALID_REQUEST)
