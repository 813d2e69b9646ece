"""Entitlements and the decisions made on them, and the protocol's refusals: no sockets."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import zmq
from pydantic import BaseModel

from bus.access import DEVELOPER, Access, EntitlementsError, Principal, Role, load_entitlements
from bus.channels import InsecureBind, check_loopback
from bus.codec import EVENTS_PREFIX, HEARTBEAT_TOPIC, Replay, Sync, decode, encode, strategy_topic
from bus.curve import CLIENT_KEY_ENV, PLAINTEXT, KeyFileError, resolve
from bus.keyring import Keyring
from bus.limits import ServerLimits
from bus.venue_protocol import Execute, Reply, Route, VenueProtocol
from ports.enums import ErrorReason, Outcome
from ports.models import (
    AmendOrder,
    CancelAllOrders,
    CancelOrder,
    ListOpenOrders,
    QueryOrder,
    Rejection,
)
from tests.contract.helpers import limit

ALICE = Principal("alice", Role.STRATEGY, ("alice", "mm-*"))
WATCH = Principal("watch", Role.MONITOR, ())
OPS = Principal("ops", Role.ADMIN, ())


def writes(strategy: str) -> list[BaseModel]:
    return [
        limit("o1", strategy_id=strategy),
        AmendOrder(client_order_id="o1", strategy_id=strategy, quantity=Decimal(5)),
        CancelOrder(client_order_id="o1", strategy_id=strategy),
        CancelAllOrders(strategy_id=strategy),
    ]


def reads(strategy: str) -> list[BaseModel]:
    return [
        QueryOrder(client_order_id="o1", strategy_id=strategy),
        ListOpenOrders(strategy_id=strategy),
        Sync(strategy_id=strategy),
        Replay(strategy_id=strategy, from_seq=1, to_seq=5),
    ]


@pytest.fixture
def access(tmp_path: Path) -> Access:
    ring = Keyring(tmp_path)
    ring.add("alice", "strategy", ["alice", "mm-*"])
    return Access(ring.entitlements)


def test_a_strategy_key_acts_for_its_strategies_and_no_other() -> None:
    access = Access()
    for request in writes("alice") + reads("alice") + writes("mm-7") + reads("mm-7"):
        assert access.refusal(ALICE, request) is None
    for request in writes("bob") + reads("bob") + writes("alice2") + reads("mm"):
        refusal = access.refusal(ALICE, request)
        assert refusal is not None
        assert "alice is not authorized" in refusal
    all_events = Replay(strategy_id=None, from_seq=1, to_seq=5)
    assert access.refusal(ALICE, all_events) == (
        "alice is not authorized for the all-events stream"
    )


def test_a_monitor_reads_everything_and_writes_nothing() -> None:
    access = Access()
    for request in [*reads("bob"), Replay(strategy_id=None, from_seq=1, to_seq=5)]:
        assert access.refusal(WATCH, request) is None
    for request in writes("bob"):
        assert access.refusal(WATCH, request) is not None
    assert not access.may_control(WATCH)
    assert access.may_control(OPS)


def test_an_unknown_key_may_do_nothing_and_development_mode_everything() -> None:
    development = Access()
    for request in writes("bob") + reads("bob"):
        assert development.refusal(development.principal(None), request) is None
        assert development.refusal(None, request) is not None
    assert development.principal("anything") is DEVELOPER
    assert not development.may_subscribe(None, strategy_topic("bob"))
    assert not development.may_control(None)


def test_subscriptions_are_exact_strategy_topics_unless_the_key_reads_all() -> None:
    access = Access()
    assert access.may_subscribe(ALICE, strategy_topic("alice"))
    assert access.may_subscribe(ALICE, strategy_topic("mm-1"))
    for topic in (
        strategy_topic("bob"),
        b"Salice",  # a prefix of every "alice..." topic
        EVENTS_PREFIX,
        b"",
        HEARTBEAT_TOPIC,
        b"S\xff\x00",
    ):
        assert not access.may_subscribe(ALICE, topic), topic
    for topic in (b"", EVENTS_PREFIX, HEARTBEAT_TOPIC, strategy_topic("bob")):
        assert access.may_subscribe(WATCH, topic)


def test_entitlements_name_keys_by_z85_or_certificate(tmp_path: Path) -> None:
    public, _ = zmq.curve_keypair()
    ring = Keyring(tmp_path)
    ring.add("alice", "strategy", ["alice"])
    text = ring.entitlements.read_text()
    text += f"- name: ops\n  key: '{public.decode()}'\n  role: admin\n"
    ring.entitlements.write_text(text)
    loaded = load_entitlements(ring.entitlements)
    alice_key = zmq.auth.load_certificate(tmp_path / "alice.key")[0].decode()
    assert loaded == {
        alice_key: Principal("alice", Role.STRATEGY, ("alice",)),
        public.decode(): Principal("ops", Role.ADMIN, ()),
    }


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("clients: [{name: a, key: nope.key}]", "not a z85 key nor a certificate"),
        ("clients: [{name: a, key: x, role: boss}]", "role"),
        ("clients: [{name: a, key: x, color: red}]", "color"),
        ("clients: {", "cannot use"),
    ],
)
def test_an_unusable_entitlements_file_is_refused_naming_the_problem(
    tmp_path: Path, content: str, problem: str
) -> None:
    path = tmp_path / "entitlements.yaml"
    path.write_text(content)
    with pytest.raises(EntitlementsError, match=problem):
        load_entitlements(path)


def test_a_key_listed_twice_is_refused(tmp_path: Path) -> None:
    ring = Keyring(tmp_path)
    ring.add("alice", "strategy", ["alice"])
    ring.entitlements.write_text(
        ring.entitlements.read_text() + "- {name: alice2, key: alice.key}\n"
    )
    with pytest.raises(EntitlementsError, match="listed twice"):
        load_entitlements(ring.entitlements)


def test_a_reload_that_narrows_a_key_says_so_and_a_broken_file_keeps_the_old(
    tmp_path: Path,
) -> None:
    ring = Keyring(tmp_path)
    ring.add("alice", "strategy", ["alice", "mm-*"])
    access = Access(ring.entitlements)
    ring.add("bob", "strategy", ["bob"])
    assert access.reload() is False  # only added: nobody lost anything
    ring.add("alice", "strategy", ["alice"])
    assert access.reload() is True
    ring.revoke("bob")
    assert access.reload() is True
    good = ring.entitlements.read_text()
    ring.entitlements.write_text("clients: [")
    with pytest.raises(EntitlementsError):
        access.reload()
    assert access.keys == 1
    ring.entitlements.write_text(good)


def test_plaintext_binds_only_loopback() -> None:
    for endpoint in (
        "tcp://127.0.0.1:5555",
        "tcp://127.1.2.3:0",
        "tcp://localhost:5555",
        "tcp://[::1]:5555",
        "ipc:///tmp/x.sock",
        "inproc://x",
    ):
        check_loopback(endpoint)
    for endpoint in ("tcp://0.0.0.0:5555", "tcp://*:5555", "tcp://10.0.0.1:5555", "tcp://eth0:1"):
        with pytest.raises(InsecureBind, match="--insecure"):
            check_loopback(endpoint)


# --- the protocol's side ----------------------------------------------------------------------


def protocol(access: Access, limits: ServerLimits | None = None) -> VenueProtocol:
    return VenueProtocol(session="sess", instance="inst", access=access, limits=limits)


def alice_key(access: Access) -> str:
    (key,) = access._by_key
    return key


def test_a_refused_request_is_answered_with_its_id_never_executed_and_counted(
    access: Access,
) -> None:
    venue = protocol(access)
    route = Route(b"peer", False)
    frames = [encode(r, request_id=n, client_id="c") for n, r in enumerate(writes("bob"), 1)]
    answers = [venue.receive(route, frame, alice_key(access)) for frame in frames]
    for n, answer in enumerate(answers, 1):
        assert isinstance(answer, Reply)
        envelope = decode(answer.frame, max_bytes=None)
        assert envelope.request_id == n
        assert isinstance(envelope.body, Rejection)
        assert envelope.body.reason is ErrorReason.NOT_AUTHORIZED
        assert envelope.body.outcome is Outcome.DEFINITE
    assert access.refused == 4
    assert venue.replies.owners == 0  # nothing of it was kept
    own = venue.receive(
        route, encode(limit("o1", strategy_id="alice"), request_id=9), alice_key(access)
    )
    assert isinstance(own, Execute)


def test_a_refusal_says_nothing_about_the_other_strategys_orders(access: Access) -> None:
    venue = protocol(access)
    route = Route(b"peer", False)
    bodies = []
    for order in ("an-order-bob-has", "one-he-never-had"):
        query = QueryOrder(client_order_id=order, strategy_id="bob")
        answer = venue.receive(route, encode(query, request_id=1), alice_key(access))
        assert isinstance(answer, Reply)
        body = decode(answer.frame, max_bytes=None).body
        assert isinstance(body, Rejection)
        bodies.append(body.model_copy(update={"client_order_id": None}))
    assert bodies[0] == bodies[1]


def test_an_unknown_key_is_refused_everything_even_a_retry_of_a_stored_answer(
    access: Access,
) -> None:
    venue = protocol(access)
    route = Route(b"peer", False)
    frame = encode(limit("o1", strategy_id="alice"), request_id=1, client_id="c")
    answer = venue.receive(route, frame, "not-a-key-it-knows")
    assert isinstance(answer, Reply)
    body = decode(answer.frame, max_bytes=None).body
    assert isinstance(body, Rejection)
    assert body.reason is ErrorReason.NOT_AUTHORIZED


def test_retry_windows_are_per_key_whatever_client_id_a_peer_claims(tmp_path: Path) -> None:
    ring = Keyring(tmp_path)
    ring.add("alice", "strategy", ["*"])
    ring.add("mallory", "strategy", ["*"])
    access = Access(ring.entitlements)
    keys = {p.name: k for k, p in access._by_key.items()}
    venue = protocol(access)
    route = Route(b"peer", False)
    frame = encode(limit("o1", strategy_id="alice"), request_id=1, client_id="shared")
    first = venue.receive(route, frame, keys["alice"])
    assert isinstance(first, Execute)
    venue.answer(first.key, Rejection(reason=ErrorReason.INVALID_REQUEST, message="x"))
    # The same (client id, request id) from another key is another request, not a retry.
    other = venue.receive(route, frame, keys["mallory"])
    assert isinstance(other, Execute)
    assert other.key != first.key
    # A flood of answers under ever-new client ids is one key's: it loses its own oldest.
    venue = protocol(access, ServerLimits(reply_bytes=200_000))
    first = venue.receive(route, frame, keys["alice"])
    assert isinstance(first, Execute)
    venue.answer(first.key, Rejection(reason=ErrorReason.UNKNOWN_ORDER, message="x"))
    for n in range(5_000):
        flood = encode(limit("o1", strategy_id="mallory"), request_id=1, client_id=f"c{n}")
        effect = venue.receive(route, flood, keys["mallory"])
        assert isinstance(effect, Execute)
        venue.answer(effect.key, Rejection(reason=ErrorReason.UNKNOWN_ORDER, message="y" * 100))
    assert venue.replies.evicted > 0
    assert isinstance(venue.receive(route, frame, keys["alice"]), Reply)  # answered, not redone


def test_client_keys_come_from_the_environment_unless_plaintext_is_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ring = Keyring(tmp_path)
    ring.add("alice", Role.STRATEGY, ["alice"])
    assert resolve(None) is None  # nothing named: development mode
    for name, value in ring.env("alice").items():
        monkeypatch.setenv(name, value)
    assert resolve(None) == ring.keys("alice")
    assert resolve(PLAINTEXT) is None  # a plaintext client in a shell that names keys
    monkeypatch.delenv(CLIENT_KEY_ENV)
    with pytest.raises(KeyFileError, match="ORDERBUS_CLIENT_KEY is not set"):
        resolve(None)
