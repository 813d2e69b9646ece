"""CURVE, ZAP and entitlements against a venue process: real keys, real sockets, hostile peers.

Absence (a hostile socket received nothing) is judged once a later message has reached an
entitled peer on the same channel: the venue publishes in order, so whatever it sent the hostile
peer before would have arrived by then.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import zmq
from click.testing import CliRunner
from pydantic import BaseModel

from bus.blocking import BlockingOrderExecutionPort
from bus.cli import main as orderbus
from bus.codec import (
    EVENTS_PREFIX,
    HEARTBEAT_TOPIC,
    Heartbeat,
    Replay,
    Sync,
    decode,
    encode,
    strategy_topic,
)
from bus.curve import ClientKeys
from bus.keyring import Keyring
from bus.monitor import BlockingMonitor
from bus.server import Endpoints
from mock_venue.control import VenueControlError, VenueStatus
from mock_venue.control_client import BlockingControlClient
from mock_venue.process import VenueProcess
from ports import ConnectivityError, ErrorReason, ExecType, OrderRejectedError, Rejection
from ports.models import (
    AmendOrder,
    CancelAllOrders,
    CancelOrder,
    ListOpenOrders,
    QueryOrder,
)
from tests.contract.helpers import WAIT, limit, wait_for
from tests.contract.venue_setup import CONTRACT_VENUE


@pytest.fixture(scope="module")
def ring(tmp_path_factory: pytest.TempPathFactory) -> Keyring:
    ring = Keyring(tmp_path_factory.mktemp("keys"))
    ring.add("alice", "strategy", ["alice"])
    ring.add("bob", "strategy", ["bob"])
    ring.add("watch", "monitor")
    ring.add("ops", "admin")
    ring.add("mallory", entitled=False)
    return ring


@pytest.fixture(scope="module")
def venue(ring: Keyring) -> Iterator[Endpoints]:
    with VenueProcess(CONTRACT_VENUE, heartbeat=0.05, extra_args=ring.server_args()) as process:
        assert process.endpoints is not None
        assert process.ready["security"] == "curve"
        yield process.endpoints


def port(venue: Endpoints, strategy: str, keys: ClientKeys | None) -> BlockingOrderExecutionPort:
    return BlockingOrderExecutionPort(
        strategy, command=venue.command, events=venue.events, keys=keys, connect_timeout=WAIT
    )


def status(venue: Endpoints, ring: Keyring) -> VenueStatus:
    control = BlockingControlClient(venue.control, keys=ring.keys("ops"), timeout=WAIT)
    try:
        return control.status()
    finally:
        control.close()


class Peer:
    """Raw sockets of one peer: a DEALER on the command channel, a SUB on the event channel."""

    def __init__(self, venue: Endpoints, keys: ClientKeys | None, topics: list[bytes]) -> None:
        self.context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.dealer = self.context.socket(zmq.DEALER)
        self.sub = self.context.socket(zmq.SUB)
        for socket in (self.dealer, self.sub):
            socket.setsockopt(zmq.LINGER, 0)
            if keys is not None:
                keys.apply(socket)
        for topic in topics:
            self.sub.setsockopt(zmq.SUBSCRIBE, topic)
        self.dealer.connect(venue.command)
        self.sub.connect(venue.events)
        self.events: list[tuple[bytes, BaseModel]] = []

    def ask(self, body: BaseModel, request_id: int) -> BaseModel | None:
        """Send one request; its answer, or None if none came within WAIT."""
        self.dealer.send(encode(body, request_id=request_id, client_id="peer"))
        if not self.dealer.poll(int(WAIT * 1000)):
            return None
        envelope = decode(self.dealer.recv(), max_bytes=None)
        assert envelope.request_id == request_id
        return envelope.body

    def read_events(self) -> None:
        while self.sub.poll(0):
            topic, frame = self.sub.recv_multipart()
            self.events.append((topic, decode(frame, max_bytes=None).body))

    def close(self) -> None:
        self.context.destroy(linger=0)


def other_strategy_requests(order: str) -> list[BaseModel]:
    return [
        limit("taken", strategy_id="bob"),
        AmendOrder(client_order_id=order, strategy_id="bob", quantity=Decimal(1)),
        CancelOrder(client_order_id=order, strategy_id="bob"),
        CancelAllOrders(strategy_id="bob"),
        QueryOrder(client_order_id=order, strategy_id="bob"),
        ListOpenOrders(strategy_id="bob"),
        Sync(strategy_id="bob"),
        Replay(strategy_id="bob", from_seq=1, to_seq=10),
        Replay(strategy_id=None, from_seq=1, to_seq=10),
    ]


def test_unauthenticated_peers_get_nothing_on_any_channel(venue: Endpoints, ring: Keyring) -> None:
    wrong_server = ClientKeys.load(ring.directory / "alice.key", ring.secret("alice"))
    before = status(venue, ring)
    peers = [
        Peer(venue, None, [b""]),  # no CURVE at all
        Peer(venue, wrong_server, [b""]),
        Peer(venue, ring.keys("mallory"), [b""]),  # a key the venue does not know
    ]
    controls = [
        BlockingControlClient(venue.control, keys=k, timeout=0.5)
        for k in (wrong_server, ring.keys("mallory"))
    ]
    try:
        for n, peer in enumerate(peers):
            frame = encode(limit(f"hostile{n}", strategy_id="alice"), request_id=1)
            with contextlib.suppress(zmq.Again):  # no connection: nowhere to queue it
                peer.dealer.send(frame, zmq.NOBLOCK)
        for control in controls:
            with pytest.raises(VenueControlError, match="cannot connect"):
                control.fill("alice", "o1", Decimal(1), Decimal("999999999999"))
        with port(venue, "alice", ring.keys("alice")) as alice:
            updates = alice.updates()
            alice.submit_order(limit("unauth-1", "IMM", strategy_id="alice"))
            kinds = [updates.get(timeout=WAIT).exec_type for _ in range(2)]
            assert kinds == [ExecType.ACCEPTED, ExecType.TRADE]
            wait_for(lambda: status(venue, ring).venue_seq > before.venue_seq + 1, "published")
        after = status(venue, ring)
        for peer in peers:
            peer.read_events()
            assert peer.events == []
            assert not peer.dealer.poll(0)  # no reply: no connection was ever made
        assert after.orders == before.orders + 1  # alice's own only
        assert after.security.handshakes_denied > before.security.handshakes_denied
    finally:
        for peer in peers:
            peer.close()
        for control in controls:
            control.close()


def test_a_strategy_key_can_neither_act_for_nor_read_another_strategy(
    venue: Endpoints, ring: Keyring
) -> None:
    with port(venue, "bob", ring.keys("bob")) as bob:
        bob.submit_order(limit("bob-rests", "MAN", strategy_id="bob"))
        refused = status(venue, ring).security.refused
        alice = Peer(
            venue,
            ring.keys("alice"),
            [strategy_topic("bob"), EVENTS_PREFIX, b"", HEARTBEAT_TOPIC, strategy_topic("alice")],
        )
        try:
            for n, request in enumerate(other_strategy_requests("bob-rests"), 1):
                answer = alice.ask(request, n)
                assert isinstance(answer, Rejection), request
                assert answer.reason is ErrorReason.NOT_AUTHORIZED
            # Not even whether an order exists: the same refusal for one that never did.
            existing = alice.ask(QueryOrder(client_order_id="bob-rests", strategy_id="bob"), 20)
            missing = alice.ask(QueryOrder(client_order_id="never", strategy_id="bob"), 21)
            assert isinstance(existing, Rejection)
            assert isinstance(missing, Rejection)
            assert existing.message == missing.message
            # Bob trades on; alice's own heartbeat after his events shows they passed her by.
            bob_updates = bob.updates()
            bob.submit_order(limit("bob-fills", "IMM", strategy_id="bob"))
            for _ in range(2):
                bob_updates.get(timeout=WAIT)
            published = status(venue, ring).venue_seq

            def heartbeat_after_bobs_events() -> bool:
                alice.read_events()
                return any(
                    isinstance(b, Heartbeat) and b.venue_seq >= published for _, b in alice.events
                )

            wait_for(heartbeat_after_bobs_events, "alice's heartbeat after bob's events")
            assert {topic for topic, _ in alice.events} == {strategy_topic("alice")}
            assert all(isinstance(b, Heartbeat) and set(b.seqs) <= {"alice"}
                       for _, b in alice.events)  # fmt: skip
            (order,) = bob.open_orders()
            assert order.client_order_id == "bob-rests"
            assert order.quantity == Decimal(100)  # untouched by alice's amend
            after = status(venue, ring).security.refused
            assert after >= refused + 11 + 4  # 11 requests; at least 4 subscriptions
        finally:
            alice.close()


def test_a_monitor_reads_every_stream_and_cannot_trade(venue: Endpoints, ring: Keyring) -> None:
    with (
        BlockingMonitor(
            command=venue.command, events=venue.events, keys=ring.keys("watch")
        ) as monitor,
        port(venue, "bob", ring.keys("bob")) as bob,
    ):
        bob.submit_order(limit("watched", "IMM", strategy_id="bob"))
        deadline = time.monotonic() + WAIT
        for report in monitor.reports(timeout=WAIT):  # another strategy's stream: read
            if report.client_order_id == "watched" or time.monotonic() > deadline:
                break
        assert report.client_order_id == "watched"
        with port(venue, "bob", ring.keys("watch")) as as_bob:  # sync and reads: allowed
            assert [o.strategy_id for o in as_bob.open_orders()] == ["bob"] * len(
                as_bob.open_orders()
            )
            with pytest.raises(OrderRejectedError) as refused:
                as_bob.submit_order(limit("by-the-monitor", "IMM", strategy_id="bob"))
            assert refused.value.reason is ErrorReason.NOT_AUTHORIZED


def test_the_control_channel_is_for_admins_only(venue: Endpoints, ring: Keyring) -> None:
    for name in ("alice", "watch"):
        control = BlockingControlClient(venue.control, keys=ring.keys(name), timeout=WAIT)
        try:
            with pytest.raises(VenueControlError, match="not authorized for the control"):
                control.fill("alice", "o1", Decimal(1), Decimal("999999999999"))
        finally:
            control.close()
    assert status(venue, ring).security.mode == "curve"


@pytest.mark.parametrize(
    ("who", "cause"),
    [
        ("mallory", "refused this client's key"),
        ("wrong-server-key", "wrong server key"),
        ("plaintext", "runs with CURVE"),
    ],
)
def test_a_refused_handshake_fails_open_at_once_naming_the_cause(
    venue: Endpoints, ring: Keyring, who: str, cause: str
) -> None:
    keys = {
        "mallory": ring.keys("mallory"),
        "wrong-server-key": ClientKeys.load(ring.directory / "bob.key", ring.secret("alice")),
        "plaintext": None,
    }[who]
    refused = BlockingOrderExecutionPort(
        "alice", command=venue.command, events=venue.events, keys=keys, connect_timeout=60.0
    )
    with pytest.raises(ConnectivityError, match=cause) as error:
        refused.open()
    assert "no venue answered" not in str(error.value)  # told why, not timed out


def test_a_key_with_the_wrong_strategy_is_refused_at_open(venue: Endpoints, ring: Keyring) -> None:
    with pytest.raises(ConnectivityError) as error:
        port(venue, "bob", ring.keys("alice")).open()
    assert error.value.reason is ErrorReason.NOT_AUTHORIZED
    assert "alice is not authorized for strategy 'bob'" in str(error.value)


def test_a_revoked_key_loses_access_at_its_next_message(tmp_path: Path) -> None:
    ring = Keyring(tmp_path)
    ring.add("alice", "strategy", ["alice"])
    ring.add("ops", "admin")
    with VenueProcess(CONTRACT_VENUE, heartbeat=0.05, extra_args=ring.server_args()) as process:
        assert process.endpoints is not None
        assert process.process is not None
        venue = process.endpoints
        with port(venue, "alice", ring.keys("alice")) as alice:
            alice.submit_order(limit("before", "MAN", strategy_id="alice"))
            revoke = ["keys", "revoke", "alice", "--entitlements", str(ring.entitlements)]
            assert CliRunner().invoke(orderbus, revoke).exit_code == 0
            process.process.send_signal(signal.SIGHUP)
            wait_for(lambda: "entitlements reloaded" in process.stderr, "the reload")
            with pytest.raises(OrderRejectedError) as refused:
                alice.submit_order(limit("after", "MAN", strategy_id="alice"))
            assert refused.value.reason is ErrorReason.NOT_AUTHORIZED
        with pytest.raises(ConnectivityError, match="refused this client's key"):
            port(venue, "alice", ring.keys("alice")).open()
        # Entitled again by the admin command: the next connection is let in.
        ring.add("alice", "strategy", ["alice"])
        control = BlockingControlClient(venue.control, keys=ring.keys("ops"), timeout=WAIT)
        try:
            reloaded = control.reload_entitlements()
        finally:
            control.close()
        assert reloaded.keys == 2
        with port(venue, "alice", ring.keys("alice")) as alice:
            assert [o.client_order_id for o in alice.open_orders()] == ["before"]
    twice = CliRunner().invoke(
        orderbus, ["keys", "revoke", "bob", "--entitlements", str(ring.entitlements)]
    )
    assert twice.exit_code != 0
    assert "bob is not listed" in twice.output


def test_a_plaintext_venue_refuses_to_listen_beyond_loopback_unless_told(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "mock_venue.cli", "serve", "--instrument", "IMM:100",
               "--command", "tcp://0.0.0.0:0", "--events", "tcp://127.0.0.1:0",
               "--control", "tcp://127.0.0.1:0"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=os.environ)
    assert done.returncode != 0
    assert "refusing to bind tcp://0.0.0.0:0 without a key" in done.stderr
    assert "--insecure" in done.stderr
    with VenueProcess(CONTRACT_VENUE, extra_args=("--insecure",)) as insecure:
        assert insecure.ready["security"] == "plaintext, insecure"
    with VenueProcess(CONTRACT_VENUE) as development:
        assert development.ready["security"] == "plaintext, loopback only"
