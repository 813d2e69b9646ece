"""The server's output batching, with the mock venue behind it, in process (no sockets bound)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from pydantic import BaseModel

from bus.codec import decode, encode
from bus.server import Endpoints
from bus.venue_protocol import Event
from mock_venue.backend import STEP_TIMERS, EngineBackend
from mock_venue.clock import ManualClock
from mock_venue.config import InstrumentConfig, SlicedFill, VenueConfig
from mock_venue.faults import DropEvents, DropReplies, Fault
from mock_venue.venue_server import venue_server
from ports import (
    Acknowledgement,
    ExecType,
    ExecutionReport,
    ListOpenOrders,
    OpenOrders,
    OrderStatus,
    Outcome,
    QueryOrder,
    Rejection,
)
from tests.contract.helpers import limit
from tests.contract.venue_setup import CONTRACT_VENUE, START


def _published_with_faults(requests_per_flush: int) -> list[tuple[str, str]]:
    """48 submits through a venue with seeded probabilistic faults, flushed every so many
    requests (what the serve loop does under load); the events it publishes."""
    scenario: list[Fault] = [
        DropEvents(count=1000, probability=0.5),
        DropReplies(count=1000, probability=0.5),
    ]
    endpoints = Endpoints("inproc://command", "inproc://events", "inproc://control")
    venue = venue_server(CONTRACT_VENUE, endpoints, seed=7, clock=ManualClock(), scenario=scenario)
    published: list[tuple[str, str]] = []

    def publish(events: list[Event]) -> None:
        for event in events:
            report = decode(event.frame, max_bytes=None).body
            assert isinstance(report, ExecutionReport)
            published.append((report.client_order_id, report.exec_type.value))

    venue._publish = publish  # type: ignore[method-assign]
    try:
        for n in range(48):
            order = limit(f"o{n}", "IMM", 10, "100.00")
            venue._serve_command([b"peer", encode(order, request_id=n, client_id="c")], None)
            if (n + 1) % requests_per_flush == 0:
                venue.flush()
        venue.flush()
    finally:
        venue.close()
    return published


def _collect(frames: list[bytes]) -> Callable[[object, object, bytes], None]:
    """A stand-in for the server's send: keeps every frame it sends."""

    def send(_: object, __: object, frame: bytes) -> None:
        frames.append(frame)

    return send


def test_the_same_seed_and_traffic_give_the_same_faults_however_requests_batch() -> None:
    one_by_one = _published_with_faults(1)
    assert one_by_one == _published_with_faults(16)
    assert 0 < len(one_by_one) < 2 * 48  # some events were dropped, not all


def test_a_request_the_backend_raises_on_is_answered_with_its_id_and_so_are_its_resends() -> None:
    endpoints = Endpoints("inproc://command-2", "inproc://events-2", "inproc://control-2")
    venue = venue_server(CONTRACT_VENUE, endpoints, seed=7, clock=ManualClock())
    sent: list[bytes] = []

    def fail(*_: object) -> None:
        raise RuntimeError("the adapter has a bug")

    venue._send = _collect(sent)  # type: ignore[method-assign,assignment]
    venue.backend.execute = fail  # type: ignore[method-assign,assignment]
    frame = encode(limit("o1"), request_id=5, client_id="c")
    try:
        for _ in range(2):  # the request, then its resend (answered from the store)
            venue._serve_command([b"peer", frame], None)
    finally:
        venue.close()
    replies = [decode(f, max_bytes=None) for f in sent]
    assert [r.request_id for r in replies] == [5, 5]  # matched by the client, never left waiting
    for reply in replies:
        assert isinstance(reply.body, Rejection)
        assert reply.body.outcome is Outcome.UNKNOWN  # it may have acted before it raised
        assert "the adapter has a bug" in reply.body.message


def test_a_frame_the_server_itself_fails_on_is_answered_with_its_id() -> None:
    # Once a frame nested deeply enough to overflow repr was answered without its id.
    endpoints = Endpoints("inproc://command-3", "inproc://events-3", "inproc://control-3")
    venue = venue_server(CONTRACT_VENUE, endpoints, seed=7, clock=ManualClock())
    sent: list[bytes] = []

    def overflow(*_: object) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    venue._send = _collect(sent)  # type: ignore[method-assign,assignment]
    venue._protocol.receive = overflow  # type: ignore[method-assign,assignment]
    try:
        venue._serve_command([b"peer", encode(limit("o1"), request_id=6, client_id="c")], None)
        venue._serve_command([b"peer", b"\xc1"], None)  # nothing readable: no id to give
    finally:
        venue.close()
    replies = [decode(f, max_bytes=None) for f in sent]
    assert [r.request_id for r in replies] == [6, None]
    assert all(isinstance(r.body, Rejection) for r in replies)
    assert venue.protocol.protocol_errors == 2


def test_order_and_fill_ids_of_a_venue_started_afresh_are_new() -> None:
    # Once both fresh venues called their first order MOCK-1 (issue 12, section 3): a strategy
    # that keeps ids across venue restarts must never meet one twice.
    first_ids: list[str] = []
    for n in range(2):
        endpoints = Endpoints(f"inproc://c-ids{n}", f"inproc://e-ids{n}", f"inproc://k-ids{n}")
        venue = venue_server(CONTRACT_VENUE, endpoints, seed=7, clock=ManualClock())
        try:
            venue._serve_command([b"peer", encode(limit("o1"), request_id=1, client_id="c")], None)
            venue.flush()
            order = venue.backend.engine.order("s1", "o1")  # type: ignore[attr-defined]
            assert order is not None
            assert order.venue_order_id == f"MOCK-{venue.session[:12]}-1"
            first_ids.append(order.venue_order_id)
        finally:
            venue.close()
    assert first_ids[0] != first_ids[1]


def test_read_only_requests_are_not_journaled(tmp_path: Path) -> None:
    # list_open_orders with 5,000 open orders once wrote 1.3 MB to the journal (issue 12, 3).
    sizes = []
    for n, reads in enumerate((0, 10)):
        journal = tmp_path / f"venue-{n}.journal"
        endpoints = Endpoints(f"inproc://c-j{n}", f"inproc://e-j{n}", f"inproc://k-j{n}")
        venue = venue_server(CONTRACT_VENUE, endpoints, clock=ManualClock(), journal=journal)
        sent: list[bytes] = []
        venue._send = _collect(sent)  # type: ignore[method-assign,assignment]
        try:
            requests: list[BaseModel] = [limit(f"o{i}") for i in range(20)]
            for _ in range(reads):
                requests += [
                    ListOpenOrders(strategy_id="s1"),
                    QueryOrder(client_order_id="o1", strategy_id="s1"),
                ]
            for i, request in enumerate(requests):
                venue._serve_command([b"peer", encode(request, request_id=i, client_id="c")], None)
                venue.flush()
        finally:
            venue.close()
        replies = [decode(frame, max_bytes=None).body for frame in sent]
        assert sum(isinstance(r, OpenOrders) for r in replies) == reads
        sizes.append(journal.stat().st_size)
    assert sizes[0] == sizes[1]


def _sliced(slices: int) -> VenueConfig:
    """SLC, whose orders fill in ``slices`` parts, one a millisecond; and IMM."""
    fill_model = SlicedFill(slices=slices, interval=0.001)
    instrument = InstrumentConfig(symbol="SLC", reference_price=Decimal(50), fill_model=fill_model)
    return VenueConfig(instruments=(instrument, *CONTRACT_VENUE.instruments[:1]))


class _RealTime:
    """A clock the venue takes for real time (not a ManualClock), moved by the test."""

    def __init__(self) -> None:
        self.at = START

    def now(self) -> datetime:
        return self.at


def test_a_long_backlog_of_timers_runs_in_bounded_steps_and_requests_do_not_wait_for_it() -> None:
    # 60 submits sliced into 10,000 fills at 1 ms once froze heartbeats for 21.85 s: everything
    # due ran in one turn of the loop (issue 12, section 3).
    config = _sliced(10_000)
    clock = _RealTime()
    endpoints = Endpoints("inproc://c-back", "inproc://e-back", "inproc://k-back")
    venue = venue_server(config, endpoints, clock=clock)
    published: list[BaseModel] = []
    sent: list[bytes] = []
    venue._publish = lambda events: published.extend(  # type: ignore[method-assign]
        decode(e.frame, max_bytes=None).body for e in events
    )
    venue._send = _collect(sent)  # type: ignore[method-assign,assignment]
    backend = venue.backend
    assert isinstance(backend, EngineBackend)

    def trades() -> list[ExecutionReport]:
        return [
            r for r in published if isinstance(r, ExecutionReport) and r.exec_type is ExecType.TRADE
        ]

    try:
        venue._serve_command([b"p", encode(limit("o1", "SLC", 10_000), request_id=1)], None)
        venue.flush()
        clock.at += timedelta(seconds=20)  # every slice is due
        backend.poll(0.0)
        venue.flush()
        assert len(trades()) == STEP_TIMERS  # one bounded step, then the loop turns
        due = backend.next_due(5.0)
        assert due is not None
        assert due <= 5.0  # at once, after the loop's other work
        # Requests while behind run no step of the backlog each: the loop's steps catch up.
        for n in range(40):
            query = QueryOrder(client_order_id="o1", strategy_id="s1")
            venue._serve_command([b"p", encode(query, request_id=100 + n)], None)
        venue.flush()
        assert len(trades()) == STEP_TIMERS
        # Another request is carried out at once, at the engine's own time: the venue is behind.
        venue._serve_command([b"p", encode(limit("o2", "IMM", 1), request_id=2)], None)
        venue.flush()
        replies = [decode(frame, max_bytes=None).body for frame in sent]
        acks = [r for r in replies if isinstance(r, Acknowledgement)]
        assert [a.order.client_order_id for a in acks] == ["o1", "o2"]
        assert acks[1].order.created_at == trades()[-1].venue_time < clock.at
        polls = 1
        while backend.behind():
            backend.poll(0.0)
            venue.flush()
            polls += 1
        assert polls >= 10_000 // STEP_TIMERS - 1  # each turn of the loop one bounded step
        assert sum(t.client_order_id == "o1" for t in trades()) == 10_000
        assert backend.engine.order("s1", "o1").status is OrderStatus.FILLED  # type: ignore[union-attr]
    finally:
        venue.close()


def test_a_venue_recovers_bounded_steps_from_its_journal_exactly(tmp_path: Path) -> None:
    config = _sliced(2_000)
    clock, journal = _RealTime(), tmp_path / "venue.journal"
    venue = venue_server(config, Endpoints("inproc://c-r", "inproc://e-r", "inproc://k-r"),
                         clock=clock, journal=journal)  # fmt: skip
    venue._publish = lambda events: None  # type: ignore[method-assign]
    venue._send = lambda *_: None  # type: ignore[method-assign]
    try:
        venue._serve_command([b"p", encode(limit("o1", "SLC", 2_000), request_id=1)], None)
        clock.at += timedelta(seconds=5)
        for _ in range(3):
            venue.backend.poll(0.0)
            venue.flush()
        before = venue.backend.engine.order("s1", "o1")  # type: ignore[attr-defined]
    finally:
        venue.close()
    assert before is not None
    assert before.cum_qty == 3 * STEP_TIMERS  # three polls, one bounded step each
    # Replays the journal as it starts: a step that produced other frames would raise.
    again = venue_server(config, Endpoints("inproc://c-r2", "inproc://e-r2", "inproc://k-r2"),
                         clock=clock, journal=journal)  # fmt: skip
    try:
        assert again.backend.engine.order("s1", "o1") == before  # type: ignore[attr-defined]
    finally:
        again.close()
