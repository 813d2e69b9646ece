"""Both roles of the wire protocol against each other, in memory (h11's ``ConnectionPair`` idea):
a ``ClientProtocol`` talking to a ``VenueProtocol`` that hosts a real ``VenueEngine``, with the
network in between played by the test. It loses, duplicates and reorders frames at will, and
restarts or resets the venue, with no socket and no process: retries, duplicates, gaps, replay and
the venue's identity are checked here; the subprocess tests keep what only a transport shows."""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from bus.client_events import (
    ClientEvent,
    FramesToSend,
    PortEventRaised,
    ReplyReceived,
    ReportsReady,
    RequestExpired,
    StreamStarted,
)
from bus.client_protocol import ClientProtocol
from bus.codec import ReplayReply, Sync, decode, strategy_topic
from bus.venue_protocol import Execute, ReplayWanted, Reply, RequestKey, Route, VenueProtocol
from mock_venue.clock import ManualClock
from mock_venue.engine import Publish, Respond, VenueEngine
from ports import (
    Acknowledgement,
    CancelOrder,
    ExecutionReport,
    OrderStatus,
    PortEventKind,
    Request,
    SubmitOrder,
)
from tests.contract.helpers import limit
from tests.contract.venue_setup import CONTRACT_VENUE

AT = datetime(2026, 1, 5, 9, tzinfo=UTC)
TOPIC = strategy_topic("s1")
ROUTE = Route(b"dealer-1", False)
SILENCE = 1.0  # the client's silence limit, seconds
TIMEOUT = 30.0  # every request's deadline, seconds after it is sent


class Venue:
    """A venue as a server runs it, minus the sockets: the protocol and an engine behind it."""

    def __init__(self, session: str, instance: str, engine: VenueEngine | None = None) -> None:
        self.engine = engine or VenueEngine(
            CONTRACT_VENUE, clock=ManualClock(), rng=random.Random(0)
        )
        self.protocol = VenueProtocol(session=session, instance=instance, recall=self._recall)
        self.executed: list[RequestKey] = []  # what reached the engine
        self.published: list[ExecutionReport] = []
        self._answered: list[tuple[RequestKey, Request, BaseModel, Hashable | None]] = []

    def _recall(self, token: Hashable) -> BaseModel | None:
        assert isinstance(token, tuple)
        return self.engine.submit_result(*token)

    def restarted(self, instance: str) -> Venue:
        """The same state in a new process, as a journal recovery leaves it: the same session,
        the answers and the events of the one before in its store, nothing sent."""
        again = Venue(self.protocol.session, instance, self.engine)
        for key, request, result, recall in self._answered:
            again.protocol.begin(key, request, None)
            again.protocol.answer(key, result, recall=recall)
        for report in self.published:
            again.protocol.publish(report)
        again.published = list(self.published)
        again.executed = list(self.executed)
        again._answered = list(self._answered)
        return again

    def take(self, frame: bytes) -> tuple[list[bytes], list[tuple[bytes, bytes]]]:
        """One request frame in: the reply frames and (topic, event frame) pairs it causes."""
        effect = self.protocol.receive(ROUTE, frame)
        if isinstance(effect, Reply):
            return [effect.frame], []
        if isinstance(effect, ReplayWanted):
            return [self.protocol.replay_reply(effect.request_id, effect.request)], []
        if isinstance(effect, Execute):
            return self._execute(effect.key, effect.request)
        return [], []  # a copy of a request still being worked on

    def _execute(
        self, key: RequestKey, request: Request | Sync
    ) -> tuple[list[bytes], list[tuple[bytes, bytes]]]:
        if isinstance(request, Sync):
            result = self.engine.open_orders(request.strategy_id)
            return [self.protocol.answer(key, result)[1]], []
        self.executed.append(key)
        replies: list[bytes] = []
        events: list[tuple[bytes, bytes]] = []
        for output in self.engine.handle(request, key):
            if isinstance(output, Publish):
                self.published.append(output.report)
                event = self.protocol.publish(output.report)
                events.append((event.topic, event.frame))
            elif isinstance(output, Respond):
                # As the engine's backend does: an accepted submit is recalled from the engine.
                recall = None
                if isinstance(request, SubmitOrder) and isinstance(output.result, Acknowledgement):
                    recall = (request.strategy_id, request.client_order_id)
                self._answered.append((key, request, output.result, recall))
                route, reply = self.protocol.answer(key, output.result, recall=recall)
                if route is not None:
                    replies.append(reply)
        return replies, events

    def heartbeat(self) -> tuple[bytes, bytes]:
        """The client's strategy's heartbeat (on its own topic)."""
        return self.protocol.heartbeats(AT, ["s1"])[1]


Drop = Callable[[bytes], bool]


@dataclass
class Pair:
    """A client and a venue joined by a network the test controls."""

    venue: Venue = field(default_factory=lambda: Venue("A", "1"))
    client: ClientProtocol = field(
        default_factory=lambda: ClientProtocol(
            "s1", silence_limit=SILENCE, rng=random.Random(1), clock=lambda: AT
        )
    )
    now: float = 0.0
    to_venue: list[bytes] = field(default_factory=list)
    to_client: list[bytes] = field(default_factory=list)
    events: list[tuple[bytes, bytes]] = field(default_factory=list)
    replies: dict[int, list[BaseModel]] = field(default_factory=dict)
    expired: list[int] = field(default_factory=list)
    delivered: list[ExecutionReport] = field(default_factory=list)
    raised: list[PortEventKind] = field(default_factory=list)
    started: bool = False
    next_id: int = 1000

    # --- the client's side ----------------------------------------------------------------

    def act(self, events: Iterable[ClientEvent]) -> None:
        """Do what the client protocol asks, as a port's shell does."""
        for event in events:
            if isinstance(event, FramesToSend):
                self.to_venue += [frame for _, frame in event.frames]
            elif isinstance(event, ReplyReceived):
                self.replies.setdefault(event.request_id, []).append(event.body)
            elif isinstance(event, ReportsReady):
                self.delivered += event.reports
            elif isinstance(event, PortEventRaised):
                self.raised.append(event.event.kind)
            elif isinstance(event, RequestExpired):
                self.expired.append(event.request_id)
            elif isinstance(event, StreamStarted):
                self.started = True

    def start(self) -> None:
        self.act(self.client.start(self.now, timeout=10.0))
        self.settle()
        assert self.started

    def send(self, body: BaseModel) -> int:
        self.next_id += 1
        self.to_venue.append(self.client.send(self.next_id, body, self.now, self.now + TIMEOUT))
        return self.next_id

    # --- the network ----------------------------------------------------------------------

    def step(
        self,
        *,
        lose_request: Drop = lambda _: False,
        lose_reply: Drop = lambda _: False,
        lose_event: Drop = lambda _: False,
    ) -> bool:
        """Carry every frame in flight once, losing those the predicates pick. False: nothing
        was in flight."""
        moved = bool(self.to_venue or self.to_client or self.events)
        requests, self.to_venue = self.to_venue, []
        for frame in requests:
            if lose_request(frame):
                continue
            replies, events = self.venue.take(frame)
            self.to_client += replies
            self.events += events
        replies, self.to_client = self.to_client, []
        for frame in replies:
            if not lose_reply(frame):
                self.act(self.client.receive_reply(frame, self.now))
        events, self.events = self.events, []
        for topic, frame in events:
            if not lose_event(frame):
                self.act(self.client.receive_event(topic, frame, self.now))
        return moved

    def settle(self, **losses: Drop) -> None:
        """Carry frames until nothing is in flight."""
        for _ in range(100):
            if not self.step(**losses):
                return
        raise AssertionError("the pair never settled")

    def pass_time(self, seconds: float, heartbeats: bool = True) -> None:
        """Let ``seconds`` go by in ticks of a tenth, the venue beating once a tick (unless
        ``heartbeats`` is False: it is silent), the client polled and answered each tick."""
        for _ in range(round(seconds * 10)):
            self.now = round(self.now + 0.1, 6)
            if heartbeats:
                topic, frame = self.venue.heartbeat()
                self.act(self.client.receive_event(topic, frame, self.now))
            self.act(self.client.poll(self.now))
            self.settle()

    # --- what the test reads --------------------------------------------------------------

    def stream(self) -> list[ExecutionReport]:
        """Everything the venue published on s1's stream, in order."""
        return [r for r in self.venue.published if r.strategy_id == "s1"]

    def reply(self, request_id: int) -> BaseModel:
        (body,) = self.replies[request_id]
        return body


def started_pair() -> Pair:
    pair = Pair()
    pair.start()
    return pair


def is_reply_to(request_id: int) -> Drop:
    return lambda frame: decode(frame, max_bytes=None).request_id == request_id


def carries(seq: int) -> Drop:
    def match(frame: bytes) -> bool:
        body = decode(frame, max_bytes=None).body
        return isinstance(body, ExecutionReport) and body.seq == seq

    return match


def is_replay_answer(frame: bytes) -> bool:
    return isinstance(decode(frame, max_bytes=None).body, ReplayReply)


# --- requests -----------------------------------------------------------------------------------


def test_a_submit_is_executed_once_answered_once_and_its_reports_delivered_in_order() -> None:
    pair = started_pair()
    request_id = pair.send(limit("o1", "IMM", 5, "100.00"))
    pair.settle()
    assert isinstance(pair.reply(request_id), Acknowledgement)
    assert len(pair.venue.executed) == 1
    assert [r.status for r in pair.delivered] == [OrderStatus.NEW, OrderStatus.FILLED]
    assert pair.delivered == pair.stream()


def test_a_lost_reply_is_resent_under_the_same_id_and_answered_from_the_store() -> None:
    pair = started_pair()
    request_id = pair.send(limit("o1", "MAN", 10, "10.00"))
    pair.settle(lose_reply=is_reply_to(request_id))
    assert request_id not in pair.replies
    pair.pass_time(3.0)  # the resend schedule's first steps
    assert isinstance(pair.reply(request_id), Acknowledgement)
    assert len(pair.venue.executed) == 1  # the resends never reached the engine
    assert pair.expired == []


def test_a_lost_request_is_resent_and_executed_then() -> None:
    pair = started_pair()
    request_id = pair.send(limit("o1", "MAN", 10, "10.00"))
    pair.step(lose_request=lambda _: True)
    assert pair.venue.executed == []
    pair.pass_time(3.0)
    assert isinstance(pair.reply(request_id), Acknowledgement)
    assert len(pair.venue.executed) == 1


def test_a_duplicated_request_is_executed_once_and_its_answer_delivered_once() -> None:
    pair = started_pair()
    request_id = pair.send(limit("o1", "MAN", 10, "10.00"))
    pair.to_venue.append(pair.to_venue[0])  # the network delivers it twice
    pair.settle()
    assert len(pair.venue.executed) == 1
    assert isinstance(pair.reply(request_id), Acknowledgement)  # one answer, not two


def test_a_request_never_answered_expires_at_its_deadline_and_is_not_resent_after() -> None:
    pair = started_pair()
    request_id = pair.send(limit("o1", "MAN", 10, "10.00"))
    no_answer = is_reply_to(request_id)
    while pair.now < TIMEOUT + 1:
        pair.now = round(pair.now + 0.1, 6)
        pair.act(pair.client.receive_event(*pair.venue.heartbeat(), pair.now))
        pair.act(pair.client.poll(pair.now))
        pair.settle(lose_reply=no_answer)
    assert pair.expired == [request_id]
    assert request_id not in pair.replies
    assert len(pair.venue.executed) == 1  # every copy after the first answered from the store
    pair.act(pair.client.poll(pair.now + 0.5))
    assert pair.to_venue == []  # nothing more is sent for it


# --- the event stream ---------------------------------------------------------------------------


def test_a_lost_last_event_is_revealed_by_the_heartbeat_and_replayed() -> None:
    pair = started_pair()
    pair.send(limit("o1", "IMM", 5, "100.00"))
    pair.settle(lose_event=carries(2))  # the fill: nothing after it tells the client
    assert [r.seq for r in pair.delivered] == [1]
    pair.pass_time(0.1)  # one heartbeat: s1 is at 2
    assert pair.delivered == pair.stream()


def test_a_lost_event_in_the_middle_is_replayed_before_what_came_after() -> None:
    pair = started_pair()
    for n in range(3):
        pair.send(limit(f"o{n}", "IMM", 5, "100.00"))
    pair.settle(lose_event=carries(3))
    assert pair.delivered == pair.stream()
    assert [r.seq for r in pair.delivered] == [1, 2, 3, 4, 5, 6]


def test_a_duplicated_event_is_delivered_once() -> None:
    pair = started_pair()
    pair.send(limit("o1", "IMM", 5, "100.00"))
    pair.step()
    pair.events += pair.events  # every event arrives twice
    pair.settle()
    assert pair.delivered == pair.stream()


def test_a_lost_replay_answer_is_asked_again() -> None:
    pair = started_pair()
    pair.send(limit("o1", "IMM", 5, "100.00"))
    pair.settle(lose_event=carries(1), lose_reply=is_replay_answer)
    assert pair.delivered == []  # 2 is held back until 1 comes
    pair.pass_time(2.0)
    assert pair.delivered == pair.stream()


# --- the venue's identity -----------------------------------------------------------------------


def test_a_venue_restarted_with_its_state_is_resynced_and_what_was_missed_replayed() -> None:
    pair = started_pair()
    pair.send(limit("o1", "IMM", 5, "100.00"))
    pair.settle()
    # The venue goes away; the client hears nothing for longer than its silence limit.
    pair.pass_time(SILENCE + 0.5, heartbeats=False)
    assert pair.raised == [PortEventKind.CONNECTION_LOST]
    pair.venue = pair.venue.restarted("2")
    # The restarted process recovered an order's fill the client never saw (it was sent while
    # the old process went down).
    pair.send(limit("o2", "IMM", 5, "100.00"))
    pair.settle(lose_event=lambda _: True)
    pair.pass_time(1.0)
    assert pair.raised == [
        PortEventKind.CONNECTION_LOST,
        PortEventKind.VENUE_RESTARTED,
        PortEventKind.CONNECTION_RESTORED,
    ]
    assert pair.delivered == pair.stream()
    assert [r.seq for r in pair.delivered] == [1, 2, 3, 4]


def test_a_venue_started_afresh_resets_the_stream() -> None:
    pair = started_pair()
    pair.send(limit("o1", "IMM", 5, "100.00"))
    pair.settle()
    pair.pass_time(SILENCE + 0.5, heartbeats=False)
    pair.venue = Venue("B", "1")  # no journal: a new session, numbers from 1 again
    pair.pass_time(1.0)
    assert pair.raised == [
        PortEventKind.CONNECTION_LOST,
        PortEventKind.VENUE_RESET,
        PortEventKind.CONNECTION_RESTORED,
    ]
    before = len(pair.delivered)
    pair.send(limit("o1", "IMM", 5, "100.00"))  # the id is free again on the new venue
    pair.settle()
    assert pair.delivered[before:] == pair.stream()
    assert [r.seq for r in pair.delivered[before:]] == [1, 2]


def test_another_venue_process_heard_without_a_silence_is_resynced_at_once() -> None:
    pair = started_pair()
    pair.send(limit("o1", "IMM", 5, "100.00"))
    pair.settle()
    pair.venue = pair.venue.restarted("2")  # restarted faster than the silence limit
    pair.pass_time(0.3)
    assert pair.raised == [PortEventKind.VENUE_RESTARTED]
    pair.send(limit("o2", "IMM", 5, "100.00"))
    pair.settle()
    assert pair.delivered == pair.stream()


# --- anything the network does ------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    orders=st.lists(st.sampled_from(["IMM", "MAN", "cancel"]), min_size=1, max_size=8),
    losses=st.lists(st.booleans(), min_size=1, max_size=64),
    seed=st.integers(0, 2**16),
)
def test_whatever_is_lost_every_request_runs_once_and_the_stream_arrives_whole_in_order(
    orders: list[str], losses: list[bool], seed: int
) -> None:
    pair = started_pair()
    pick = random.Random(seed)
    coin = iter(losses * 64)

    def lossy(_: bytes) -> bool:
        return next(coin, False) and pick.random() < 0.5

    sent: list[int] = []
    for n, kind in enumerate(orders):
        if kind == "cancel":
            body: BaseModel = CancelOrder(strategy_id="s1", client_order_id=f"o{n - 1}")
        else:
            body = limit(f"o{n}", kind, 10, "100.00" if kind == "IMM" else "10.00")
        sent.append(pair.send(body))
        pair.step(lose_request=lossy, lose_reply=lossy, lose_event=lossy)
    for _ in range(30):  # then a good network, and time for resends, heartbeats and replays
        pair.pass_time(1.0)
    assert all(len(pair.replies.get(i, [])) == 1 for i in sent)  # each answered exactly once
    keys = pair.venue.executed
    assert len(keys) == len(set(keys)) == len(sent)  # each executed exactly once
    assert pair.delivered == pair.stream()  # every event, once, in order
    assert pair.expired == []
