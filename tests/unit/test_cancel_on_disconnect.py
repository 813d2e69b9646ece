"""Cancel on disconnect in memory (issue 13, section 3): the server's watch, what the venue
protocol does with syncs, keepalives and other requests, the client's keepalive schedule, and
the reason a cancel-all carries down to the engine's reports."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import zmq.auth

from bus.access import Access
from bus.client_events import FramesToSend, PortEventRaised
from bus.client_frames import KeepaliveTimer
from bus.client_protocol import ClientProtocol
from bus.codec import (
    Canceled,
    Keepalive,
    KeepaliveReply,
    Sync,
    SyncReply,
    decode,
    encode,
)
from bus.disconnect import DisconnectWatch
from bus.keyring import Keyring
from bus.venue_protocol import Execute, Reply, Route, VenueProtocol
from mock_venue.clock import ManualClock
from mock_venue.engine import VenueEngine
from mock_venue.outputs import Publish
from ports import CancelReason, ErrorReason, ExecType, PortEventKind
from ports.models import CancelAllOrders, Rejection
from tests.contract.helpers import limit
from tests.contract.venue_setup import CONTRACT_VENUE, START

PEER = Route(b"peer", False)
T = datetime(2026, 1, 5, 9, tzinfo=UTC)


def test_the_watch_expires_a_silent_client_once_and_tells_the_next_sync() -> None:
    watch = DisconnectWatch(stall=1.0)
    watch.arm("key/c1", "c1", "s1", 2.0, now=0.0)
    watch.arm("key/c2", "c2", "s2", 2.0, now=0.0)
    assert watch.expired(0.5) == []
    watch.heard("key/c2", 1.0)  # c2 is alive
    assert watch.expired(1.5) == []
    assert watch.expired(2.4) == [("key/c1", "c1", "s1", 2.0)]  # c1: silent for 2.4 s
    assert watch.expired(2.8) == []  # disarmed: once
    assert not watch.is_armed("key/c1")
    assert watch.armed == 1
    notice = Canceled(at=T, client_id="c1", timeout=2.0)
    watch.fired_for("key/c1", "s1", notice)
    assert watch.take("s1") == notice  # the strategy's next sync
    assert watch.take("s1") is None  # told once
    assert watch.take_told("key/c1") == notice  # and the client, should it come back
    assert watch.take_told("key/c1") is None
    watch.disarm("key/c2")  # a clean close
    assert watch.expired(10.0) == []


def test_a_gap_longer_than_the_stall_is_the_servers_not_the_clients() -> None:
    watch = DisconnectWatch(stall=1.0)
    watch.arm("c", "c", "s1", 2.0, now=0.0)
    assert watch.expired(0.5) == []
    assert watch.expired(10.0) == []  # the server did not look for 9.5 s: not held against c
    assert watch.expired(11.0) == []
    assert watch.expired(11.5) == []
    assert watch.expired(11.9) == [("c", "c", "s1", 2.0)]  # then silent for 2.4 s of its own


def _keepalive(
    venue: VenueProtocol, request_id: int, now: float, timeout: float | None = 2.0
) -> object:
    alive = Keepalive(strategy_id="s1", cancel_on_disconnect=timeout)
    answer = venue.receive(PEER, encode(alive, request_id=request_id, client_id="c"), now=now)
    assert isinstance(answer, Reply)  # answered at once, never executed
    return decode(answer.frame, max_bytes=None).body


def test_a_sync_arms_every_request_is_heard_and_a_keepalive_re_arms_or_disarms() -> None:
    venue = VenueProtocol(session="s", instance="i")
    sync = encode(Sync(strategy_id="s1", cancel_on_disconnect=2.0), request_id=1, client_id="c")
    assert isinstance(venue.receive(PEER, sync, now=0.0, wall=T), Execute)
    assert venue.watch.armed == 1
    assert _keepalive(venue, 2, now=1.5) == KeepaliveReply(strategy_id="s1", armed=True)
    submit = encode(limit("o1"), request_id=3, client_id="c")
    assert isinstance(venue.receive(PEER, submit, now=3.0, wall=T), Execute)
    assert venue.watch.expired(4.9) == []  # heard at 3.0
    ((client, _, strategy, timeout),) = venue.watch.expired(5.1)
    notice = Canceled(at=T, client_id="c", timeout=timeout)
    venue.watch.fired_for(client, strategy, notice)
    # Back after the cut: the keepalive re-arms, and says what happened meanwhile, once.
    back = KeepaliveReply(strategy_id="s1", armed=True, canceled=notice)
    assert _keepalive(venue, 4, now=5.2) == back
    assert _keepalive(venue, 5, now=5.3) == KeepaliveReply(strategy_id="s1", armed=True)
    assert _keepalive(venue, 6, now=5.4, timeout=None) == KeepaliveReply(
        strategy_id="s1", armed=False
    )  # a clean close: disarmed
    assert venue.watch.expired(60.0) == []


def test_only_a_key_that_acts_for_the_strategy_may_arm_it(tmp_path: Path) -> None:
    # A monitor may sync any strategy (a read), but arming is a cancel-all in waiting.
    ring = Keyring(tmp_path)
    ring.add("mon", "monitor")
    public, _ = zmq.auth.load_certificate(tmp_path / "mon.key")
    access = Access(ring.entitlements)
    venue = VenueProtocol(session="s", instance="i", access=access)
    sync = encode(Sync(strategy_id="s1", cancel_on_disconnect=0.5), request_id=1, client_id="m")
    refused = venue.receive(PEER, sync, user=public.decode(), now=0.0, wall=T)
    assert isinstance(refused, Reply)
    body = decode(refused.frame, max_bytes=None).body
    assert isinstance(body, Rejection)
    assert body.reason is ErrorReason.NOT_AUTHORIZED
    assert venue.watch.armed == 0


def test_the_client_keeps_alive_only_when_it_sent_nothing_for_a_third_of_its_timeout() -> None:
    timer = KeepaliveTimer("s1", 3.0)
    timer.sent(0.0)
    assert timer.next_at() == 1.0
    assert timer.due(0.9) is None
    timer.sent(0.9)  # a request went: it counts
    assert timer.due(1.5) is None
    assert timer.due(1.9) == Keepalive(strategy_id="s1", cancel_on_disconnect=3.0)
    assert timer.due(2.0) is None
    assert timer.goodbye() == Keepalive(strategy_id="s1", cancel_on_disconnect=None)
    assert KeepaliveTimer("s1", None).due(1e9) is None  # not asked for
    assert KeepaliveTimer("s1", None).goodbye() is None
    assert KeepaliveTimer(None, 3.0).timeout is None  # a monitor has no orders to cancel


def _synced(protocol: ClientProtocol, canceled: Canceled | None = None) -> list[object]:
    (frames,) = protocol.start(now=0.0, timeout=5.0)
    assert isinstance(frames, FramesToSend)
    ((request_id, frame),) = frames.frames
    sync = decode(frame).body
    assert sync == Sync(strategy_id="s1", cancel_on_disconnect=3.0)
    reply = SyncReply(
        session="a", instance="b", strategy_id="s1", seq=0, venue_seq=0, open_orders=(),
        canceled_on_disconnect=canceled,
    )  # fmt: skip
    return list(protocol.receive_reply(encode(reply, request_id=request_id), now=0.0))


def test_the_client_protocol_arms_sends_keepalives_and_says_what_a_sync_told() -> None:
    protocol = ClientProtocol("s1", client_id="c", cancel_on_disconnect=3.0, clock=lambda: T)
    events = _synced(protocol, Canceled(at=T, client_id="old", timeout=3.0))
    raised = [e.event for e in events if isinstance(e, PortEventRaised)]
    assert [e.kind for e in raised] == [PortEventKind.CANCELED_ON_DISCONNECT]
    assert "'old' was silent for more than 3 s" in (raised[0].detail or "")
    assert protocol.keepalive.next_at() == 1.0
    assert not [e for e in protocol.poll(now=0.9) if isinstance(e, FramesToSend)]
    (sent,) = [e for e in protocol.poll(now=1.0) if isinstance(e, FramesToSend)]
    ((request_id, frame),) = sent.frames
    assert decode(frame).body == Keepalive(strategy_id="s1", cancel_on_disconnect=3.0)
    # Back after a cut: the keepalive re-armed it and says it fired meanwhile.
    told = KeepaliveReply(
        strategy_id="s1", armed=True, canceled=Canceled(at=T, client_id="c", timeout=3.0)
    )
    (event,) = protocol.receive_reply(encode(told, request_id=request_id), now=1.1)
    assert isinstance(event, PortEventRaised)
    assert event.event.kind is PortEventKind.CANCELED_ON_DISCONNECT
    assert protocol.in_sync  # nothing to re-sync: the keepalive re-armed it
    assert protocol.goodbye() is not None


def test_a_cancel_all_reports_its_reason() -> None:
    engine = VenueEngine(CONTRACT_VENUE, clock=ManualClock(START), rng=random.Random(1))
    engine.handle(limit("o1"), "t1")
    out = engine.handle(
        CancelAllOrders(strategy_id="s1", reason=CancelReason.CANCEL_ON_DISCONNECT), "t2"
    )
    reports = [o.report for o in out if isinstance(o, Publish)]
    canceled = [r for r in reports if r.exec_type is ExecType.CANCELED]
    assert [(r.client_order_id, r.cancel_reason) for r in canceled] == [
        ("o1", CancelReason.CANCEL_ON_DISCONNECT)
    ]
    assert canceled[0].leaves_qty == Decimal(0)
