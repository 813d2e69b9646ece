"""The sans-io client protocol: exactly-once, in-order delivery, gap detection and replay."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from bus.codec import (
    HEARTBEAT_TOPIC,
    MAX_REPLAY,
    Heartbeat,
    ReplayReply,
    SyncReply,
    encode,
    strategy_topic,
)
from bus.session import REPLAY_RETRY, ClientSession
from mock_venue.clock import ManualClock
from mock_venue.engine import Publish, VenueEngine
from ports import ExecutionReport
from tests.contract.helpers import limit
from tests.contract.venue_setup import CONTRACT_VENUE

TOPIC = strategy_topic("s1")


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


def synced(seq: int = 0, strategy_id: str | None = "s1") -> ClientSession:
    session = ClientSession(strategy_id)
    sync = SyncReply(
        session="x", instance="y", strategy_id="s1", seq=seq, venue_seq=seq, open_orders=()
    )
    assert session.synced_at(sync, now=0.0) is None
    return session


def heartbeat(seq: int) -> bytes:
    return encode(
        Heartbeat(
            session="x", instance="y", venue_seq=seq, seqs={"s1": seq}, venue_time=datetime.now(UTC)
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
    assert session.poll(now=REPLAY_RETRY / 2) is None
    again = session.poll(now=REPLAY_RETRY + 0.01)
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
    )
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
