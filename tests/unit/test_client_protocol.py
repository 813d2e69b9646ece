"""The sans-io client protocol, in memory: exactly-once, in-order delivery, gap detection and
replay; resends, expiry, throttled retries, duplicate fills; the first sync, liveness and the
venue's identity; port events a gateway relays. No socket, no clock: every call gets ``now``."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from bus.client_events import (
    ClientEvent,
    FramesToSend,
    PortEventRaised,
    PortEventRelayed,
    ReplyReceived,
    ReplyUnreadable,
    ReportsReady,
    RequestExpired,
    StartFailed,
    StreamStarted,
)
from bus.client_protocol import REPLAY_RETRY, SYNC_RETRY, UNSENT_RETRY, ClientProtocol
from bus.codec import (
    HEARTBEAT_TOPIC,
    MAX_REPLAY,
    Heartbeat,
    Replay,
    ReplayReply,
    Sync,
    SyncReply,
    WireError,
    decode,
    encode,
    strategy_topic,
)
from bus.outstanding import Kind, Outstanding
from bus.sequencing import RecentIds
from mock_venue.clock import ManualClock
from mock_venue.engine import Publish, Respond, VenueEngine
from ports import (
    Acknowledgement,
    ErrorReason,
    ExecutionReport,
    PortEvent,
    PortEventKind,
    QueryOrder,
    Rejection,
)
from ports.recovery import RESEND
from tests.contract.helpers import limit
from tests.contract.venue_setup import CONTRACT_VENUE

TOPIC = strategy_topic("s1")
AT = datetime(2026, 1, 5, 9, tzinfo=UTC)


def throttled(retry_after: float) -> Rejection:
    return Rejection(reason=ErrorReason.THROTTLED, message="slow down", retry_after=retry_after)


def reports(count: int) -> list[ExecutionReport]:
    """``count`` real reports of strategy s1 (each submit gives ACCEPTED then TRADE)."""
    engine = VenueEngine(CONTRACT_VENUE, clock=ManualClock(), rng=random.Random(0))
    found: list[ExecutionReport] = []
    n = 0
    while len(found) < count:
        n += 1
        for out in engine.handle(limit(f"o{n}", "IMM", 1, "100.00"), n):
            if isinstance(out, Publish):
                found.append(out.report)
    return found[:count]


def an_ack() -> Acknowledgement:
    engine = VenueEngine(CONTRACT_VENUE, clock=ManualClock(), rng=random.Random(0))
    for out in engine.handle(limit("a", "MAN", 10, "10.00"), 1):
        if isinstance(out, Respond) and isinstance(out.result, Acknowledgement):
            return out.result
    raise AssertionError("no acknowledgement")


ACK = an_ack()
REPORTS = reports(40)
QUERY = QueryOrder(strategy_id="s1", client_order_id="o1")


# --- reading what the protocol says -------------------------------------------------------------


def sent(events: Iterable[ClientEvent]) -> list[tuple[int, BaseModel]]:
    """The request id and body of every frame the protocol asks to send."""
    return [
        (request_id, decode(frame).body)
        for event in events
        if isinstance(event, FramesToSend)
        for request_id, frame in event.frames
    ]


def syncs(events: Iterable[ClientEvent]) -> list[int]:
    return [request_id for request_id, body in sent(events) if isinstance(body, Sync)]


def replays(events: Iterable[ClientEvent]) -> list[tuple[int, Replay]]:
    return [(i, body) for i, body in sent(events) if isinstance(body, Replay)]


def delivered(events: Iterable[ClientEvent]) -> list[ExecutionReport]:
    return [r for event in events if isinstance(event, ReportsReady) for r in event.reports]


def raised(events: Iterable[ClientEvent]) -> list[PortEventKind]:
    return [e.event.kind for e in events if isinstance(e, PortEventRaised)]


def replay_range(events: Iterable[ClientEvent]) -> tuple[int, int] | None:
    asked = replays(events)
    assert len(asked) <= 1
    return (asked[0][1].from_seq, asked[0][1].to_seq) if asked else None


# --- driving it ---------------------------------------------------------------------------------


def sync_reply(request_id: int, seq: int = 0, session: str = "x", instance: str = "y") -> bytes:
    body = SyncReply(
        session=session, instance=instance, strategy_id="s1", seq=seq, venue_seq=seq, open_orders=()
    )
    return encode(body, request_id=request_id)


def started(
    seq: int = 0, strategy_id: str | None = "s1", session: str = "x", instance: str = "y"
) -> ClientProtocol:
    protocol = ClientProtocol(strategy_id)
    return start(protocol, seq, session, instance)


def start(
    protocol: ClientProtocol, seq: int = 0, session: str = "x", instance: str = "y"
) -> ClientProtocol:
    (sync_id,) = syncs(protocol.start(now=0.0, timeout=10.0))
    events = protocol.receive_reply(sync_reply(sync_id, seq, session, instance), now=0.0)
    assert events == [StreamStarted()]
    return protocol


def live(seq: int = 0) -> ClientProtocol:
    protocol = ClientProtocol("s1", silence_limit=1.0, rng=random.Random(2), clock=lambda: AT)
    return start(protocol, seq, session="A", instance="1")


def event(protocol: ClientProtocol, report: ExecutionReport, now: float) -> list[ClientEvent]:
    return protocol.receive_event(TOPIC, encode(report), now)


def heartbeat(seq: int, session: str = "x", instance: str = "y") -> bytes:
    return encode(
        Heartbeat(
            session=session,
            instance=instance,
            venue_seq=seq,
            seqs={"s1": seq},
            venue_time=AT,
        )
    )


def answer(
    protocol: ClientProtocol, events: Iterable[ClientEvent], now: float
) -> list[ExecutionReport]:
    """What the protocol delivers when the venue answers the replays among ``events`` (and
    those it asks for next)."""
    got: list[ExecutionReport] = []
    asked = replays(events)
    while asked:
        request_id, replay = asked.pop(0)
        wanted = REPORTS[replay.from_seq - 1 : replay.to_seq]
        reply = ReplayReply(strategy_id="s1", events=tuple(encode(r) for r in wanted))
        out = protocol.receive_reply(encode(reply, request_id=request_id), now)
        got += delivered(out)
        asked += replays(out)
    return got


# --- exactly once, in order ---------------------------------------------------------------------


def test_in_order_events_are_delivered_once() -> None:
    protocol = started()
    events = reports(3)
    got = []
    for report in [*events, events[1]]:  # the last one is a duplicate
        got += delivered(event(protocol, report, now=0.0))
    assert [r.seq for r in got] == [1, 2, 3]
    assert protocol.stream.duplicates == 1


def test_a_gap_holds_later_events_and_asks_for_a_replay() -> None:
    protocol = started()
    events = reports(5)
    assert delivered(event(protocol, events[0], now=0.0)) == [events[0]]
    out = event(protocol, events[3], now=0.0)  # 2 and 3 lost
    assert delivered(out) == []
    ((_, replay),) = replays(out)
    assert (replay.strategy_id, replay.from_seq, replay.to_seq) == ("s1", 2, 3)
    # While that replay is on its way, no second request for the same gap.
    assert replays(event(protocol, events[4], now=0.1)) == []
    assert [r.seq for r in answer(protocol, out, now=0.2)] == [2, 3, 4, 5]
    assert protocol.stream.missing() is None


def test_a_heartbeat_reveals_a_lost_last_event() -> None:
    protocol = started()
    events = reports(2)
    event(protocol, events[0], now=0.0)
    assert replay_range(protocol.receive_event(HEARTBEAT_TOPIC, heartbeat(2), 0.0)) == (2, 2)


def test_an_unanswered_replay_is_asked_again_after_a_while_and_a_late_answer_still_counts() -> None:
    protocol = started()
    first = protocol.receive_event(HEARTBEAT_TOPIC, heartbeat(4), now=0.0)
    assert replay_range(first) == (1, 4)
    assert replays(protocol.poll(now=REPLAY_RETRY / 2)) == []
    again = protocol.poll(now=REPLAY_RETRY + 0.01)
    assert replay_range(again) == (1, 4)
    assert replays(again)[0][0] != replays(first)[0][0]  # asked afresh: the range may change
    assert [r.seq for r in answer(protocol, first, now=1.1)] == [1, 2, 3, 4]  # the late one
    assert answer(protocol, again, now=1.2) == []  # its copies are dropped


def test_a_long_gap_is_replayed_in_bounded_chunks() -> None:
    protocol = started()
    out = protocol.receive_event(HEARTBEAT_TOPIC, heartbeat(MAX_REPLAY * 3), now=0.0)
    assert replay_range(out) == (1, MAX_REPLAY)


def test_history_before_the_sync_point_is_not_delivered() -> None:
    events = reports(4)
    protocol = ClientProtocol("s1")
    (sync_id,) = syncs(protocol.start(now=0.0, timeout=10.0))
    # Events that arrive before the sync answer are covered by it: not delivered twice.
    assert event(protocol, events[0], now=0.0) == []
    protocol.receive_reply(sync_reply(sync_id, seq=2), now=0.0)
    got = []
    for report in events:
        got += delivered(event(protocol, report, now=0.0))
    assert [r.seq for r in got] == [3, 4]


def test_a_resync_after_reconnecting_replays_what_was_missed() -> None:
    protocol = live()
    event(protocol, REPORTS[0], now=0.0)
    lost = protocol.poll(now=2.0)
    assert raised(lost) == [PortEventKind.CONNECTION_LOST]
    (sync_id,) = syncs(lost)
    resynced = protocol.receive_reply(sync_reply(sync_id, 3, "A", "1"), now=5.0)
    assert replay_range(resynced) == (2, 3)


def test_a_monitor_follows_the_all_events_stream_by_venue_seq() -> None:
    protocol = started(strategy_id=None)
    events = reports(3)
    assert protocol.topics[0] == b"S"
    event(protocol, events[0], now=0.0)
    ((_, replay),) = replays(event(protocol, events[2], now=0.0))
    assert (replay.strategy_id, replay.from_seq, replay.to_seq) == (None, 2, 2)


def test_a_monitor_starts_where_it_is_told_without_a_sync() -> None:
    protocol = ClientProtocol(None)
    protocol.start_after(1)
    events = reports(3)
    assert delivered(event(protocol, events[0], now=0.0)) == []  # history
    assert delivered(event(protocol, events[1], now=0.0)) == [events[1]]


@pytest.mark.parametrize(
    "garbage",
    [b"", b"\xc1", sync_reply(1, seq=1)],
)
def test_garbage_on_the_event_channel_is_a_wire_error(garbage: bytes) -> None:
    with pytest.raises(WireError):
        started().receive_event(TOPIC, garbage, now=0.0)


def test_a_reply_without_a_request_id_is_a_wire_error() -> None:
    with pytest.raises(WireError, match="without a request id"):
        started().receive_reply(encode(ACK), now=0.0)


def test_a_duplicated_event_is_delivered_once() -> None:
    protocol = started()
    got = []
    for report in [REPORTS[0], REPORTS[0], REPORTS[1], REPORTS[0], REPORTS[1]]:
        got += delivered(event(protocol, report, now=0.0))
    assert got == REPORTS[:2]
    assert protocol.stream.duplicates == 3


def test_a_reordered_pair_is_put_back_in_order_and_delivered_once() -> None:
    protocol = started()
    early = event(protocol, REPORTS[1], now=0.0)  # 2 overtook 1
    assert delivered(early) == []
    assert replay_range(early) == (1, 1)
    assert delivered(event(protocol, REPORTS[0], now=0.0)) == REPORTS[:2]
    # The replay asked for meanwhile comes back with a copy of 1: dropped.
    assert answer(protocol, early, now=0.1) == []
    assert delivered(event(protocol, REPORTS[2], now=0.2)) == [REPORTS[2]]


def test_a_gap_is_replayed_and_a_late_live_copy_is_dropped() -> None:
    protocol = started()
    assert delivered(event(protocol, REPORTS[0], now=0.0)) == [REPORTS[0]]
    out = event(protocol, REPORTS[3], now=0.0)  # 2 and 3 lost
    assert answer(protocol, out, now=0.1) == REPORTS[1:4]
    for late in (REPORTS[1], REPORTS[2], REPORTS[3]):  # the lost ones turn up after all
        assert delivered(event(protocol, late, now=0.2)) == []
    assert protocol.stream.delivered == 4


@settings(max_examples=200, deadline=None, derandomize=True)
@given(data=st.data())
def test_any_arrival_order_is_delivered_exactly_once_in_order(data: st.DataObject) -> None:
    """Events lost, duplicated and reordered, replays answered at any moment: every event is
    delivered once, in order."""
    count = data.draw(st.integers(1, len(REPORTS)), label="count")
    arrivals = data.draw(st.lists(st.integers(0, count - 1), max_size=3 * count), label="arrivals")
    protocol = started()
    got: list[ExecutionReport] = []
    asked: list[ClientEvent] = []
    for index in arrivals:
        out = event(protocol, REPORTS[index], now=0.0)
        got += delivered(out)
        asked += [e for e in out if isinstance(e, FramesToSend)]
        answer_now: bool = data.draw(st.booleans(), label="answer now")
        if asked and answer_now:
            got += answer(protocol, [asked.pop(0)], now=0.0)
    # A heartbeat says how far the stream goes; every replay is answered in the end.
    now = 0.0
    asked += protocol.receive_event(HEARTBEAT_TOPIC, heartbeat(count), now)
    for _ in range(count + 10):
        got += answer(protocol, asked, now)
        now += REPLAY_RETRY + 0.01
        asked = protocol.poll(now)
        if not replays(asked):
            break
    assert [r.seq for r in got] == list(range(1, count + 1))


def test_a_fill_published_twice_is_delivered_once_and_counted() -> None:
    protocol = started()
    trade = REPORTS[1]
    assert trade.fill_id is not None
    again = trade.model_copy(update={"seq": 3, "venue_seq": 3})  # the same fill, renumbered
    got = []
    for report in (REPORTS[0], trade, again, REPORTS[2].model_copy(update={"seq": 4})):
        got += delivered(event(protocol, report, now=0.0))
    assert [r.seq for r in got] == [1, 2, 4]
    assert protocol.fills.dropped == 1


def test_recent_ids_remember_a_bounded_number() -> None:
    recent = RecentIds(capacity=3)
    assert [recent.seen(i) for i in (1, 2, 3, 1)] == [False, False, False, True]
    assert recent.seen(4) is False  # 1 is forgotten now
    assert recent.seen(1) is False
    assert recent.seen(4) is True


# --- requests: resends, expiry, throttled retries -----------------------------------------------


def resend_times(
    protocol: ClientProtocol, frame: bytes, until: float, step: float = 0.005
) -> tuple[list[float], float]:
    """When ``protocol`` resends request 7 (polled every ``step``), and when it expired."""
    times: list[float] = []
    now = 0.0
    while now <= until:
        out = protocol.poll(now)
        resent = [e.frames for e in out if isinstance(e, FramesToSend)]
        if resent:
            assert resent == [[(7, frame)]]  # the very same frame: the same request id
            times.append(now)
        if any(isinstance(e, RequestExpired) for e in out):
            assert out == [RequestExpired(7)]
            return times, now
        now += step
    return times, math.inf


def test_an_unanswered_request_is_resent_with_backoff_until_its_deadline() -> None:
    at = datetime(2026, 1, 5, 9, tzinfo=UTC)
    protocol = ClientProtocol("s1", client_id="c1", rng=random.Random(5), clock=lambda: at)
    frame = protocol.send(7, QUERY, now=0.0, deadline=4.5)
    assert decode(frame).request_id == 7
    assert decode(frame).deadline == at + timedelta(seconds=4.5)  # the server's to check
    assert protocol.next_timer() <= 0.2 * 1.25
    times, expired = resend_times(protocol, frame, until=5.0)
    gaps = [b - a for a, b in zip([0.0, *times], times, strict=False)]
    assert len(gaps) == 4
    for gap, base in zip(gaps, [0.2, 0.4, 0.8, 1.6], strict=True):
        assert base * 0.75 <= gap <= base * 1.25 + 0.005
    assert expired == pytest.approx(4.5, abs=0.01)
    assert len(protocol.requests) == 0
    assert protocol.next_timer() == math.inf
    # The same seed, the same schedule: the jitter comes from the injected RNG only.
    again = ClientProtocol("s1", client_id="c1", rng=random.Random(5), clock=lambda: at)
    assert again.send(7, QUERY, now=0.0, deadline=4.5) == frame
    assert resend_times(again, frame, until=5.0)[0] == times


def test_next_timer_says_when_a_short_deadline_passes() -> None:
    protocol = ClientProtocol("s1", rng=random.Random(5))
    protocol.send(7, QUERY, now=0.0, deadline=0.05)
    assert protocol.next_timer() == 0.05  # before the first resend
    assert protocol.poll(now=0.049) == []
    assert protocol.poll(now=0.05) == [RequestExpired(7)]


def test_an_answer_stops_the_resends() -> None:
    protocol = ClientProtocol("s1", rng=random.Random(5))
    protocol.send(7, QUERY, now=0.0, deadline=3.0)
    ack = encode(ACK, request_id=7)
    assert protocol.receive_reply(ack, now=0.1) == [ReplyReceived(7, ACK)]
    assert protocol.poll(now=2.9) == []
    assert protocol.receive_reply(ack, now=0.2) == []  # a repeat: answered already


def test_a_late_answer_after_the_deadline_is_delivered_once() -> None:
    protocol = ClientProtocol("s1", rng=random.Random(5))
    protocol.send(7, QUERY, now=0.0, deadline=1.0)
    assert RequestExpired(7) in protocol.poll(now=1.0)
    ack = encode(ACK, request_id=7)
    # Late, but the order it went in doubt for settles by it.
    assert protocol.receive_reply(ack, now=1.5) == [ReplyReceived(7, ACK)]
    assert protocol.receive_reply(ack, now=1.6) == []


def test_an_answer_to_a_request_never_sent_is_dropped() -> None:
    protocol = ClientProtocol("s1", rng=random.Random(5))
    assert protocol.receive_reply(encode(ACK, request_id=99), now=0.0) == []
    protocol.send(7, QUERY, now=0.0, deadline=3.0)
    protocol.forget(7)
    assert protocol.receive_reply(encode(ACK, request_id=7), now=0.1) == []


def test_an_unreadable_answer_naming_a_request_in_flight_answers_it_with_the_reason() -> None:
    protocol = ClientProtocol("s1", rng=random.Random(5))
    protocol.send(7, QUERY, now=0.0, deadline=3.0)
    raw = msgpack.unpackb(encode(ACK, request_id=7), timestamp=0)
    raw["b"]["order"]["expire_at"] = msgpack.Timestamp(seconds=253402300800 + 3600)  # year 10000
    frame = msgpack.packb(raw)
    (unreadable,) = protocol.receive_reply(frame, now=0.1)
    assert isinstance(unreadable, ReplyUnreadable)
    assert unreadable.request_id == 7
    assert "out of range" in unreadable.message
    assert protocol.poll(now=2.9) == []  # not resent: its answer is the stored one
    assert protocol.poll(now=3.0) == []  # nor expired
    with pytest.raises(WireError):  # the same frame again, or one naming no request in flight
        protocol.receive_reply(frame, now=0.2)


def test_an_unreadable_answer_to_the_first_sync_fails_the_start_with_the_reason() -> None:
    protocol = ClientProtocol("s1", rng=random.Random(5))
    (sync_id,) = syncs(protocol.start(now=0.0, timeout=10.0))
    frame = msgpack.packb({"v": 1, "t": "sync_reply", "id": sync_id, "b": {"seq": "x"}})
    (failed,) = protocol.receive_reply(frame, now=0.1)
    assert isinstance(failed, StartFailed)
    assert failed.unreadable is not None
    assert "invalid sync_reply" in failed.unreadable
    assert protocol.poll(now=10.0) == []  # no second verdict


def test_a_request_that_could_not_be_sent_is_forgotten() -> None:
    protocol = ClientProtocol("s1", rng=random.Random(5))
    protocol.send(7, QUERY, now=0.0, deadline=3.0)
    protocol.forget(7)
    assert protocol.poll(now=3.0) == []


def test_a_throttled_request_is_resent_after_retry_after_while_its_deadline_allows() -> None:
    protocol = ClientProtocol("s1", rng=random.Random(5))
    frame = protocol.send(7, QUERY, now=0.0, deadline=5.0)
    assert protocol.receive_reply(encode(throttled(0.5), request_id=7), now=0.01) == []  # kept
    assert protocol.poll(now=0.51) == []  # not before retry_after
    times, _ = resend_times(protocol, frame, until=0.6, step=0.001)
    assert times
    assert 0.51 <= times[0] <= 0.51 + 0.1 * 0.5 + 0.005 + 0.001  # retry_after plus a little jitter
    assert protocol.receive_reply(encode(ACK, request_id=7), now=0.6) == [ReplyReceived(7, ACK)]


def test_a_throttled_request_fails_when_its_deadline_does_not_allow_a_retry() -> None:
    refused = throttled(0.5)
    protocol = ClientProtocol("s1", rng=random.Random(5))
    protocol.send(7, QUERY, now=0.0, deadline=0.3)
    assert protocol.receive_reply(encode(refused, request_id=7), now=0.01) == [
        ReplyReceived(7, refused)  # delivered: ThrottleError
    ]
    off = ClientProtocol("s1", rng=random.Random(5), retry_throttled=False)
    off.send(7, QUERY, now=0.0, deadline=5.0)
    assert off.receive_reply(encode(refused, request_id=7), now=0.01) == [ReplyReceived(7, refused)]


def test_a_throttled_answer_is_not_final_while_an_earlier_copy_may_still_execute() -> None:
    protocol = ClientProtocol("s1", rng=random.Random(5), retry_throttled=False)
    frame = protocol.send(7, QUERY, now=0.0, deadline=0.4)
    assert protocol.poll(now=0.3) == [FramesToSend([(7, frame)])]  # a second copy is out
    # "Throttled" answers one of the two copies; the other may yet be executed.
    assert protocol.receive_reply(encode(throttled(0.5), request_id=7), now=0.31) == []
    assert protocol.poll(now=0.39) == []  # no more copies
    assert protocol.poll(now=0.4) == [RequestExpired(7)]  # the caller times out: outcome unknown


def test_outstanding_requests_keep_one_deadline_and_one_schedule_each() -> None:
    table = Outstanding(random.Random(5))
    table.add(1, Kind.CALL, b"call", now=0.0, deadline=1.0, backoff=RESEND)
    table.add(2, Kind.REPLAY, b"replay", now=0.0, deadline=0.5, backoff=None)  # never resent
    table.add(3, Kind.SYNC, b"sync", now=0.0, deadline=math.inf, backoff=RESEND, sent=False)
    assert table.next_timer() == 0.0  # the sync goes out at once
    assert table.due(now=0.0) == ([(3, b"sync")], [])
    assert table.due(now=0.5) == ([(1, b"call"), (3, b"sync")], [(2, Kind.REPLAY)])
    assert table.kind(3) is Kind.SYNC
    assert not table.answered(3, throttled(0.1), now=0.6)  # refusing a sync: not delivered
    assert table.kind(3) is Kind.SYNC  # and sent again on its schedule
    assert table.due(now=1.0)[1] == [(1, Kind.CALL)]


# --- the first sync ----------------------------------------------------------------------------


def test_the_first_sync_is_resent_until_answered_or_its_deadline() -> None:
    protocol = ClientProtocol("s1")
    (sync_id,) = syncs(protocol.start(now=0.0, timeout=1.0))
    assert protocol.next_timer() == SYNC_RETRY
    assert syncs(protocol.poll(now=SYNC_RETRY)) == [sync_id]  # the same request again
    assert syncs(protocol.poll(now=2 * SYNC_RETRY)) == [sync_id]
    assert protocol.poll(now=1.0) == [StartFailed(1.0)]
    assert not protocol.synced


def test_a_first_sync_that_found_no_connection_goes_again_soon() -> None:
    protocol = ClientProtocol("s1")
    (sync_id,) = syncs(protocol.start(now=0.0, timeout=5.0))
    protocol.unsent(sync_id, now=0.0)  # the socket is still connecting
    assert protocol.next_timer() == UNSENT_RETRY
    assert syncs(protocol.poll(now=UNSENT_RETRY)) == [sync_id]
    assert protocol.receive_reply(sync_reply(sync_id), now=0.1) == [StreamStarted()]
    assert protocol.receive_reply(sync_reply(sync_id), now=0.2) == []  # a copy's answer


def test_a_refused_sync_is_not_delivered_and_the_sync_goes_on() -> None:
    protocol = ClientProtocol("s1")
    (sync_id,) = syncs(protocol.start(now=0.0, timeout=5.0))
    refusal = Rejection(reason=ErrorReason.PROTOCOL_ERROR, message="no")
    assert protocol.receive_reply(encode(refusal, request_id=sync_id), now=0.1) == []
    assert syncs(protocol.poll(now=SYNC_RETRY)) == [sync_id]


def test_a_sync_refused_as_not_authorized_fails_the_start_at_once() -> None:
    protocol = ClientProtocol("s1")
    (sync_id,) = syncs(protocol.start(now=0.0, timeout=5.0))
    refusal = Rejection(reason=ErrorReason.NOT_AUTHORIZED, message="bob is not authorized")
    events = protocol.receive_reply(encode(refusal, request_id=sync_id), now=0.1)
    assert events == [StartFailed(5.0, refused=refusal)]
    assert syncs(protocol.poll(now=SYNC_RETRY)) == []  # not asked again


def test_the_protocols_own_requests_are_numbered_with_the_ports_ids() -> None:
    ids = itertools.count(100)
    protocol = ClientProtocol("s1", request_ids=ids)
    (sync_id,) = syncs(protocol.start(now=0.0, timeout=5.0))
    protocol.receive_reply(sync_reply(sync_id), now=0.0)
    ((replay_id, _),) = replays(protocol.receive_event(HEARTBEAT_TOPIC, heartbeat(3), 0.0))
    assert (sync_id, replay_id, next(ids)) == (100, 101, 102)


# --- liveness and the venue's identity ----------------------------------------------------------


def test_silence_loses_the_venue_and_a_resync_restores_it_and_replays_the_gap() -> None:
    protocol = live()
    event(protocol, REPORTS[0], now=0.5)
    assert protocol.poll(now=1.4) == []
    lost = protocol.poll(now=1.6)
    assert raised(lost) == [PortEventKind.CONNECTION_LOST]
    assert [e.event.time for e in lost if isinstance(e, PortEventRaised)] == [AT]
    (sync_id,) = syncs(lost)  # re-sync at once, then with backoff
    assert not protocol.connected
    # While out of sync, events are not delivered: they are replayed once in sync again.
    assert delivered(event(protocol, REPORTS[1], now=1.7)) == []
    protocol.receive_event(HEARTBEAT_TOPIC, heartbeat(2, session="A", instance="1"), now=1.8)
    again = protocol.receive_reply(sync_reply(sync_id, 3, "A", "1"), now=1.9)
    assert raised(again) == [PortEventKind.CONNECTION_RESTORED]
    assert replay_range(again) == (2, 3)
    assert protocol.connected


def test_a_resync_answered_while_the_events_are_still_silent_restores_once_heard() -> None:
    protocol = live()
    lost = protocol.poll(now=1.6)
    assert raised(lost) == [PortEventKind.CONNECTION_LOST]
    assert protocol.receive_reply(sync_reply(syncs(lost)[0], 0, "A", "1"), now=1.7) == []
    assert protocol.poll(now=1.8) == []
    protocol.receive_event(HEARTBEAT_TOPIC, heartbeat(0, "A", "1"), now=1.9)
    assert raised(protocol.poll(now=1.95)) == [PortEventKind.CONNECTION_RESTORED]


def test_resyncs_back_off_with_jitter_resending_the_same_sync() -> None:
    protocol = live()
    now, asked, ids = 1.6, [], set()
    while now < 8.0:
        sync = syncs(protocol.poll(now))
        if sync:
            asked.append(now)
            ids.update(sync)
        now += 0.01
    gaps = [b - a for a, b in itertools.pairwise(asked)]
    for gap, base in zip(gaps, [0.2, 0.4, 0.8, 1.6, 2.0, 2.0], strict=False):
        assert base * 0.75 <= gap <= base * 1.25 + 0.01
    assert len(gaps) >= 5
    assert len(ids) == 1


def test_a_venue_restarted_with_its_state_is_resynced_and_replayed() -> None:
    protocol = live()
    event(protocol, REPORTS[0], now=0.1)
    # A heartbeat of another instance: its numbers mean nothing until a sync says what it is.
    other = protocol.receive_event(HEARTBEAT_TOPIC, heartbeat(5, "A", "2"), now=0.2)
    assert replays(other) == []
    (sync_id,) = syncs(protocol.poll(now=0.3))
    assert delivered(event(protocol, REPORTS[1], now=0.3)) == []
    restarted = protocol.receive_reply(sync_reply(sync_id, 3, "A", "2"), now=0.4)
    assert raised(restarted) == [PortEventKind.VENUE_RESTARTED]
    assert protocol.connected  # no silence: nothing was lost but the venue's process
    assert replay_range(restarted) == (2, 3)
    assert answer(protocol, restarted, now=0.5) == REPORTS[1:3]


def test_a_venue_with_a_new_session_resets_the_stream_fills_and_resends() -> None:
    protocol = live()
    for report in REPORTS[:2]:
        event(protocol, report, now=0.1)
    protocol.send(9, QUERY, now=0.1, deadline=5.0)
    protocol.receive_event(HEARTBEAT_TOPIC, heartbeat(1, session="B", instance="2"), now=0.2)
    (sync_id,) = syncs(protocol.poll(now=0.25))
    reset = protocol.receive_reply(sync_reply(sync_id, 2, "B", "2"), now=0.3)
    assert raised(reset) == [PortEventKind.VENUE_RESET]
    # Request 9 is never resent to a venue that would execute it afresh, nor does it expire
    # here: the port fails it when it hears of the reset.
    assert protocol.requests.kind(9) is None
    # The new venue's stream is delivered from its first event, fill ids included.
    assert replay_range(reset) == (1, 2)
    assert answer(protocol, reset, now=0.4) == REPORTS[:2]
    assert protocol.fills.dropped == 0
    later = protocol.poll(now=5.0)
    assert RequestExpired(9) not in later
    assert 9 not in [request_id for request_id, _ in sent(later)]


def test_a_replay_asked_of_a_venue_that_was_reset_since_is_not_taken() -> None:
    protocol = live()
    old = protocol.receive_event(HEARTBEAT_TOPIC, heartbeat(2, "A", "1"), now=0.1)
    assert replay_range(old) == (1, 2)
    protocol.receive_event(HEARTBEAT_TOPIC, heartbeat(0, session="B", instance="2"), now=0.2)
    (sync_id,) = syncs(protocol.poll(now=0.25))
    assert raised(protocol.receive_reply(sync_reply(sync_id, 0, "B", "2"), now=0.3)) == [
        PortEventKind.VENUE_RESET
    ]
    assert answer(protocol, old, now=0.4) == []  # the old venue's events


def test_numbers_going_back_in_the_same_session_count_as_a_reset() -> None:
    protocol = live()
    for report in REPORTS[:3]:
        event(protocol, report, now=0.1)
    lost = protocol.poll(now=1.5)
    assert raised(lost) == [PortEventKind.CONNECTION_LOST]
    protocol.receive_event(HEARTBEAT_TOPIC, heartbeat(1, session="A", instance="2"), now=1.6)
    back = protocol.receive_reply(sync_reply(syncs(lost)[0], 1, "A", "2"), now=1.7)
    assert raised(back) == [PortEventKind.VENUE_RESET, PortEventKind.CONNECTION_RESTORED]
    assert protocol.stream.delivered == 0


def test_hearing_the_venue_again_after_a_silence_resyncs_at_once() -> None:
    protocol = live()
    now = 1.6
    assert syncs(protocol.poll(now))  # lost: the first re-sync goes at once
    while now < 6.0:  # unanswered re-syncs back off to every 2 s or so
        now += 0.01
        protocol.poll(now)
    assert not syncs(protocol.poll(now))
    protocol.receive_event(HEARTBEAT_TOPIC, heartbeat(0, "A", "2"), now)  # a restarted venue
    assert syncs(protocol.poll(now))


# --- port events a gateway relays ---------------------------------------------------------------


def test_a_port_event_frame_is_relayed_and_changes_nothing_of_the_connection() -> None:
    protocol = live()
    relayed = PortEvent(kind=PortEventKind.CONNECTION_LOST, time=AT, detail="the gateway's venue")
    out = protocol.receive_event(TOPIC, encode(relayed), now=0.9)
    assert out == [PortEventRelayed(relayed)]
    assert (protocol.connected, protocol.in_sync) == (True, True)
    assert protocol.poll(now=1.5) == []  # it was heard: no silence yet
    assert protocol.stream.delivered == 0  # not numbered: the stream is where it was


def test_client_sockets_reconnect_at_once_then_back_off() -> None:
    import zmq

    from bus.sockets import configure_dealer, configure_sub

    context = zmq.Context()
    try:
        dealer, sub = context.socket(zmq.DEALER), context.socket(zmq.SUB)
        configure_dealer(dealer)
        configure_sub(sub, [b"H"])
        for socket in (dealer, sub):
            assert socket.getsockopt(zmq.RECONNECT_IVL) == 100
            assert socket.getsockopt(zmq.RECONNECT_IVL_MAX) == 2000
    finally:
        context.destroy(linger=0)
