"""The sans-io client protocol: exactly-once, in-order delivery, gap detection and replay;
resends, throttled retries, duplicate fills, liveness and the venue's identity."""

from __future__ import annotations

import itertools
import math
import random
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bus.codec import (
    HEARTBEAT_TOPIC,
    MAX_REPLAY,
    Heartbeat,
    Replay,
    ReplayReply,
    SyncReply,
    encode,
    strategy_topic,
)
from bus.session import REPLAY_RETRY, ClientSession, RecentIds, Requests
from mock_venue.clock import ManualClock
from mock_venue.engine import Publish, Respond, VenueEngine
from ports import (
    Acknowledgement,
    ErrorReason,
    ExecutionReport,
    PortEvent,
    PortEventKind,
    Rejection,
)
from ports.recovery import RESEND
from tests.contract.helpers import limit
from tests.contract.venue_setup import CONTRACT_VENUE

TOPIC = strategy_topic("s1")


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


def sync_reply(seq: int = 0, session: str = "x", instance: str = "y") -> SyncReply:
    return SyncReply(
        session=session, instance=instance, strategy_id="s1", seq=seq, venue_seq=seq, open_orders=()
    )


def an_ack() -> Acknowledgement:
    engine = VenueEngine(CONTRACT_VENUE, clock=ManualClock(), rng=random.Random(0))
    for out in engine.handle(limit("a", "MAN", 10, "10.00"), 1):
        if isinstance(out, Respond) and isinstance(out.result, Acknowledgement):
            return out.result
    raise AssertionError("no acknowledgement")


ACK = an_ack()


def synced(seq: int = 0, strategy_id: str | None = "s1") -> ClientSession:
    session = ClientSession(strategy_id)
    assert session.synced_at(sync_reply(seq), now=0.0).replay is None
    return session


def heartbeat(seq: int, session: str = "x", instance: str = "y") -> bytes:
    return encode(
        Heartbeat(
            session=session,
            instance=instance,
            venue_seq=seq,
            seqs={"s1": seq},
            venue_time=datetime.now(UTC),
        )
    )


def test_in_order_events_are_delivered_once() -> None:
    session = synced()
    events = reports(3)
    delivered = []
    for report in [*events, events[1]]:  # the last one is a duplicate
        delivered += session.event(TOPIC, encode(report), now=0.0).reports
    assert [r.seq for r in delivered] == [1, 2, 3]
    assert session.stream.duplicates == 1


def test_a_gap_holds_later_events_and_asks_for_a_replay() -> None:
    session = synced()
    events = reports(5)
    assert session.event(TOPIC, encode(events[0]), now=0.0).reports == [events[0]]
    incoming = session.event(TOPIC, encode(events[3]), now=0.0)  # 2 and 3 lost
    assert incoming.reports == []
    assert incoming.replay is not None
    assert (incoming.replay.strategy_id, incoming.replay.from_seq, incoming.replay.to_seq) == (
        "s1",
        2,
        3,
    )
    # While that replay is on its way, no second request for the same gap.
    assert session.event(TOPIC, encode(events[4]), now=0.1).replay is None
    replayed = session.replayed(
        ReplayReply(strategy_id="s1", events=(encode(events[1]), encode(events[2]))), now=0.2
    )
    assert [r.seq for r in replayed.reports] == [2, 3, 4, 5]
    assert replayed.replay is None


def test_a_heartbeat_reveals_a_lost_last_event() -> None:
    session = synced()
    events = reports(2)
    session.event(TOPIC, encode(events[0]), now=0.0)
    incoming = session.event(HEARTBEAT_TOPIC, heartbeat(2), now=0.0)
    assert incoming.replay is not None
    assert (incoming.replay.from_seq, incoming.replay.to_seq) == (2, 2)


def test_an_unanswered_replay_is_asked_again_after_a_while() -> None:
    session = synced()
    first = session.event(HEARTBEAT_TOPIC, heartbeat(4), now=0.0).replay
    assert first is not None
    assert session.poll(now=REPLAY_RETRY / 2).replay is None
    again = session.poll(now=REPLAY_RETRY + 0.01).replay
    assert again == first


def test_a_long_gap_is_replayed_in_bounded_chunks() -> None:
    session = synced()
    replay = session.event(HEARTBEAT_TOPIC, heartbeat(MAX_REPLAY * 3), now=0.0).replay
    assert replay is not None
    assert (replay.from_seq, replay.to_seq) == (1, MAX_REPLAY)


def test_history_before_the_sync_point_is_not_delivered() -> None:
    events = reports(4)
    session = ClientSession("s1")
    # Events that arrive before the sync answer are covered by it: not delivered twice.
    assert session.event(TOPIC, encode(events[0]), now=0.0).reports == []
    session.synced_at(
        SyncReply(session="x", instance="y", strategy_id="s1", seq=2, venue_seq=2, open_orders=()),
        now=0.0,
    )
    delivered = []
    for report in events:
        delivered += session.event(TOPIC, encode(report), now=0.0).reports
    assert [r.seq for r in delivered] == [3, 4]


def test_a_resync_after_reconnecting_replays_what_was_missed() -> None:
    session = synced(seq=0)
    events = reports(3)
    session.event(TOPIC, encode(events[0]), now=0.0)
    replay = session.synced_at(
        SyncReply(session="x", instance="y", strategy_id="s1", seq=3, venue_seq=3, open_orders=()),
        now=5.0,
    ).replay
    assert replay is not None
    assert (replay.from_seq, replay.to_seq) == (2, 3)


def test_a_monitor_follows_the_all_events_stream_by_venue_seq() -> None:
    session = synced(strategy_id=None)
    events = reports(3)
    assert session.topics[0] == b"S"
    session.event(TOPIC, encode(events[0]), now=0.0)
    incoming = session.event(TOPIC, encode(events[2]), now=0.0)
    assert incoming.replay is not None
    assert incoming.replay.strategy_id is None
    assert (incoming.replay.from_seq, incoming.replay.to_seq) == (2, 2)


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"\xc1",
        encode(
            SyncReply(
                session="x", instance="y", strategy_id="s1", seq=1, venue_seq=1, open_orders=()
            )
        ),
    ],
)
def test_garbage_on_the_event_channel_is_a_wire_error(garbage: bytes) -> None:
    from bus.codec import WireError

    with pytest.raises(WireError):
        synced().event(TOPIC, garbage, now=0.0)


# --- exactly once, in order ---------------------------------------------------------------------

REPORTS = reports(40)


def answer(session: ClientSession, replay: Replay | None, now: float) -> list[ExecutionReport]:
    """What the session delivers when the venue answers ``replay`` (and what it asks next)."""
    delivered: list[ExecutionReport] = []
    while replay is not None:
        wanted = REPORTS[replay.from_seq - 1 : replay.to_seq]
        incoming = session.replayed(
            ReplayReply(strategy_id="s1", events=tuple(encode(r) for r in wanted)), now
        )
        delivered += incoming.reports
        replay = incoming.replay
    return delivered


def test_a_duplicated_event_is_delivered_once() -> None:
    session = synced()
    delivered = []
    for report in [REPORTS[0], REPORTS[0], REPORTS[1], REPORTS[0], REPORTS[1]]:
        delivered += session.event(TOPIC, encode(report), now=0.0).reports
    assert delivered == REPORTS[:2]
    assert session.stream.duplicates == 3


def test_a_reordered_pair_is_put_back_in_order_and_delivered_once() -> None:
    session = synced()
    early = session.event(TOPIC, encode(REPORTS[1]), now=0.0)  # 2 overtook 1
    assert early.reports == []
    assert early.replay is not None
    assert (early.replay.from_seq, early.replay.to_seq) == (1, 1)
    assert session.event(TOPIC, encode(REPORTS[0]), now=0.0).reports == REPORTS[:2]
    # The replay asked for meanwhile comes back with a copy of 1: dropped.
    assert answer(session, early.replay, now=0.1) == []
    assert session.event(TOPIC, encode(REPORTS[2]), now=0.2).reports == [REPORTS[2]]


def test_a_gap_is_replayed_and_a_late_live_copy_is_dropped() -> None:
    session = synced()
    assert session.event(TOPIC, encode(REPORTS[0]), now=0.0).reports == [REPORTS[0]]
    incoming = session.event(TOPIC, encode(REPORTS[3]), now=0.0)  # 2 and 3 lost
    assert answer(session, incoming.replay, now=0.1) == REPORTS[1:4]
    for late in (REPORTS[1], REPORTS[2], REPORTS[3]):  # the lost ones turn up after all
        assert session.event(TOPIC, encode(late), now=0.2).reports == []
    assert session.stream.delivered == 4


@settings(max_examples=200, deadline=None, derandomize=True)
@given(data=st.data())
def test_any_arrival_order_is_delivered_exactly_once_in_order(data: st.DataObject) -> None:
    """Events lost, duplicated and reordered, replays answered at any moment: every event is
    delivered once, in order."""
    count = data.draw(st.integers(1, len(REPORTS)), label="count")
    arrivals = data.draw(st.lists(st.integers(0, count - 1), max_size=3 * count), label="arrivals")
    session = synced()
    delivered: list[ExecutionReport] = []
    asked: list[Replay] = []
    for index in arrivals:
        incoming = session.event(TOPIC, encode(REPORTS[index]), now=0.0)
        delivered += incoming.reports
        if incoming.replay is not None:
            asked.append(incoming.replay)
        answer_now: bool = data.draw(st.booleans(), label="answer now")
        if asked and answer_now:
            delivered += answer(session, asked.pop(0), now=0.0)
    # A heartbeat says how far the stream goes; every replay is answered in the end.
    now = 0.0
    incoming = session.event(HEARTBEAT_TOPIC, heartbeat(count), now)
    if incoming.replay is not None:
        asked.append(incoming.replay)
    for _ in range(count + 10):
        while asked:
            delivered += answer(session, asked.pop(0), now)
        now += REPLAY_RETRY + 0.01
        again = session.poll(now).replay
        if again is None:
            break
        asked.append(again)
    assert [r.seq for r in delivered] == list(range(1, count + 1))


def test_a_fill_published_twice_is_delivered_once_and_counted() -> None:
    session = synced()
    trade = REPORTS[1]
    assert trade.fill_id is not None
    again = trade.model_copy(update={"seq": 3, "venue_seq": 3})  # the same fill, renumbered
    delivered = []
    for report in (REPORTS[0], trade, again, REPORTS[2].model_copy(update={"seq": 4})):
        delivered += session.event(TOPIC, encode(report), now=0.0).reports
    assert [r.seq for r in delivered] == [1, 2, 4]
    assert session.duplicate_fills == 1


def test_recent_ids_remember_a_bounded_number() -> None:
    recent = RecentIds(capacity=3)
    assert [recent.seen(i) for i in (1, 2, 3, 1)] == [False, False, False, True]
    assert recent.seen(4) is False  # 1 is forgotten now
    assert recent.seen(1) is False
    assert recent.seen(4) is True


# --- resends and throttled retries --------------------------------------------------------------


def resend_times(
    requests: Requests, until: float, step: float = 0.005
) -> tuple[list[float], float]:
    """When ``requests`` resends request 1 (checked every ``step``), and when it expired."""
    times: list[float] = []
    now = 0.0
    while now <= until:
        resend, expired = requests.due(now)
        if resend:
            assert resend == [(1, b"frame")]  # the very same frame: the same request id
            times.append(now)
        if expired:
            assert expired == [1]
            return times, now
        now += step
    return times, math.inf


def test_an_unanswered_request_is_resent_with_backoff_until_its_deadline() -> None:
    requests = Requests(RESEND, random.Random(5))
    requests.track(1, b"frame", now=0.0, deadline=4.5, retry_throttled=True)
    times, expired = resend_times(requests, until=5.0)
    gaps = [b - a for a, b in zip([0.0, *times], times, strict=False)]
    assert len(gaps) == 4
    for gap, base in zip(gaps, [0.2, 0.4, 0.8, 1.6], strict=True):
        assert base * 0.75 <= gap <= base * 1.25 + 0.005
    assert expired == pytest.approx(4.5, abs=0.01)
    assert len(requests) == 0
    # The same seed, the same schedule: the jitter comes from the injected RNG only.
    again = Requests(RESEND, random.Random(5))
    again.track(1, b"frame", now=0.0, deadline=4.5, retry_throttled=True)
    assert resend_times(again, until=5.0)[0] == times


def test_an_answer_stops_the_resends() -> None:
    requests = Requests(RESEND, random.Random(5))
    requests.track(1, b"frame", now=0.0, deadline=3.0, retry_throttled=True)
    assert requests.answered(1, ACK, now=0.1)
    assert requests.due(now=2.9) == ([], [])
    assert requests.answered(1, ACK, now=0.2)  # a repeated answer: delivered, the port ignores it


def test_a_throttled_request_is_resent_after_retry_after_while_its_deadline_allows() -> None:
    requests = Requests(RESEND, random.Random(5))
    requests.track(1, b"frame", now=0.0, deadline=5.0, retry_throttled=True)
    assert not requests.answered(1, throttled(0.5), now=0.01)  # kept back: it will be retried
    assert requests.due(now=0.51) == ([], [])  # not before retry_after
    times, _ = resend_times(requests, until=0.6, step=0.001)
    assert times
    assert 0.51 <= times[0] <= 0.51 + 0.1 * 0.5 + 0.005 + 0.001  # retry_after plus a little jitter
    assert requests.answered(1, ACK, now=0.6)


def test_a_throttled_request_fails_when_its_deadline_does_not_allow_a_retry() -> None:
    requests = Requests(RESEND, random.Random(5))
    requests.track(1, b"frame", now=0.0, deadline=0.3, retry_throttled=True)
    assert requests.answered(1, throttled(0.5), now=0.01)  # delivered: ThrottleError
    off = Requests(RESEND, random.Random(5))
    off.track(1, b"frame", now=0.0, deadline=5.0, retry_throttled=False)
    assert off.answered(1, throttled(0.5), now=0.01)


def test_a_throttled_answer_is_not_final_while_an_earlier_copy_may_still_execute() -> None:
    requests = Requests(RESEND, random.Random(5))
    requests.track(1, b"frame", now=0.0, deadline=0.4, retry_throttled=False)
    assert requests.due(now=0.3)[0] == [(1, b"frame")]  # a second copy is out
    # "Throttled" answers one of the two copies; the other may yet be executed.
    assert not requests.answered(1, throttled(0.5), now=0.31)
    assert requests.due(now=0.39) == ([], [])  # no more copies
    assert requests.due(now=0.4) == ([], [1])  # the caller times out: outcome unknown


# --- liveness and the venue's identity ----------------------------------------------------------

AT = datetime(2026, 1, 5, 9, tzinfo=UTC)


def live(seq: int = 0) -> ClientSession:
    session = ClientSession("s1", silence_limit=1.0, rng=random.Random(2), clock=lambda: AT)
    session.synced_at(sync_reply(seq, session="A", instance="1"), now=0.0)
    return session


def kinds(events: list[PortEvent]) -> list[PortEventKind]:
    return [e.kind for e in events]


def test_silence_loses_the_venue_and_a_resync_restores_it_and_replays_the_gap() -> None:
    session = live()
    session.event(TOPIC, encode(REPORTS[0]), now=0.5)
    assert session.poll(now=1.4).events == []
    lost = session.poll(now=1.6)
    assert kinds(lost.events) == [PortEventKind.CONNECTION_LOST]
    assert lost.events[0].time == AT
    assert lost.sync  # re-sync at once, then with backoff
    assert not session.connected
    # While out of sync, events are not delivered: they are replayed once in sync again.
    assert session.event(TOPIC, encode(REPORTS[1]), now=1.7).reports == []
    session.event(HEARTBEAT_TOPIC, heartbeat(2, session="A", instance="1"), now=1.8)
    synced_again = session.synced_at(sync_reply(3, session="A", instance="1"), now=1.9)
    assert kinds(synced_again.events) == [PortEventKind.CONNECTION_RESTORED]
    assert synced_again.replay is not None
    assert (synced_again.replay.from_seq, synced_again.replay.to_seq) == (2, 3)
    assert session.connected


def test_a_resync_answered_while_the_events_are_still_silent_restores_once_heard() -> None:
    session = live()
    assert kinds(session.poll(now=1.6).events) == [PortEventKind.CONNECTION_LOST]
    assert session.synced_at(sync_reply(0, "A", "1"), now=1.7).events == []  # still silent
    assert session.poll(now=1.8).events == []
    session.event(HEARTBEAT_TOPIC, heartbeat(0, "A", "1"), now=1.9)
    assert kinds(session.poll(now=1.95).events) == [PortEventKind.CONNECTION_RESTORED]


def test_resyncs_back_off_with_jitter() -> None:
    session = live()
    now, asked = 1.6, []
    while now < 8.0:
        if session.poll(now).sync:
            asked.append(now)
        now += 0.01
    gaps = [b - a for a, b in itertools.pairwise(asked)]
    for gap, base in zip(gaps, [0.2, 0.4, 0.8, 1.6, 2.0, 2.0], strict=False):
        assert base * 0.75 <= gap <= base * 1.25 + 0.01
    assert len(gaps) >= 5


def test_a_venue_restarted_with_its_state_is_resynced_and_replayed() -> None:
    session = live()
    session.event(TOPIC, encode(REPORTS[0]), now=0.1)
    # A heartbeat of another instance: its numbers mean nothing until a sync says what it is.
    incoming = session.event(HEARTBEAT_TOPIC, heartbeat(5, session="A", instance="2"), now=0.2)
    assert incoming.replay is None
    assert session.poll(now=0.3).sync
    assert session.event(TOPIC, encode(REPORTS[1]), now=0.3).reports == []
    restarted = session.synced_at(sync_reply(3, session="A", instance="2"), now=0.4)
    assert kinds(restarted.events) == [PortEventKind.VENUE_RESTARTED]
    assert session.connected  # no silence: nothing was lost but the venue's process
    assert restarted.replay is not None
    assert (restarted.replay.from_seq, restarted.replay.to_seq) == (2, 3)
    assert answer(session, restarted.replay, now=0.5) == REPORTS[1:3]


def test_a_venue_with_a_new_session_resets_the_stream_fills_and_resends() -> None:
    session = live()
    for report in REPORTS[:2]:
        session.event(TOPIC, encode(report), now=0.1)
    session.requests.track(9, b"frame", now=0.1, deadline=5.0, retry_throttled=True)
    session.event(HEARTBEAT_TOPIC, heartbeat(1, session="B", instance="2"), now=0.2)
    reset = session.synced_at(sync_reply(2, session="B", instance="2"), now=0.3)
    assert kinds(reset.events) == [PortEventKind.VENUE_RESET]
    assert len(session.requests) == 0  # never resent to a venue that would execute it afresh
    # The new venue's stream is delivered from its first event, fill ids included.
    assert reset.replay is not None
    assert (reset.replay.from_seq, reset.replay.to_seq) == (1, 2)
    assert answer(session, reset.replay, now=0.4) == REPORTS[:2]
    assert session.duplicate_fills == 0


def test_numbers_going_back_in_the_same_session_count_as_a_reset() -> None:
    session = live()
    for report in REPORTS[:3]:
        session.event(TOPIC, encode(report), now=0.1)
    assert kinds(session.poll(now=1.5).events) == [PortEventKind.CONNECTION_LOST]
    session.event(HEARTBEAT_TOPIC, heartbeat(1, session="A", instance="2"), now=1.6)
    back = session.synced_at(sync_reply(1, session="A", instance="2"), now=1.7)
    assert kinds(back.events) == [PortEventKind.VENUE_RESET, PortEventKind.CONNECTION_RESTORED]
    assert session.stream.delivered == 0


def test_hearing_the_venue_again_after_a_silence_resyncs_at_once() -> None:
    session = live()
    now = 1.6
    assert session.poll(now).sync  # lost: the first re-sync goes at once
    while now < 6.0:  # unanswered re-syncs back off to every 2 s or so
        now += 0.01
        session.poll(now)
    assert not session.poll(now).sync
    session.event(HEARTBEAT_TOPIC, heartbeat(0, "A", "2"), now)  # a restarted venue speaks
    assert session.poll(now).sync


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
