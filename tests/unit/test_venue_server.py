"""The server's output batching, with the mock venue behind it, in process (no sockets bound)."""

from __future__ import annotations

from bus.codec import decode, encode
from bus.server import Endpoints
from bus.venue_protocol import Event
from mock_venue.backend import venue_server
from mock_venue.clock import ManualClock
from mock_venue.faults import DropEvents, DropReplies, Fault
from ports import ExecutionReport, Outcome, Rejection
from tests.contract.helpers import limit
from tests.contract.venue_setup import CONTRACT_VENUE


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


def test_the_same_seed_and_traffic_give_the_same_faults_however_requests_batch() -> None:
    one_by_one = _published_with_faults(1)
    assert one_by_one == _published_with_faults(16)
    assert 0 < len(one_by_one) < 2 * 48  # some events were dropped, not all


def test_a_request_the_backend_raises_on_is_answered_with_its_id_and_so_are_its_resends() -> None:
    endpoints = Endpoints("inproc://command-2", "inproc://events-2", "inproc://control-2")
    venue = venue_server(CONTRACT_VENUE, endpoints, seed=7, clock=ManualClock())
    sent: list[bytes] = []

    def send(socket: object, route: object, frame: bytes) -> None:
        sent.append(frame)

    def fail(*_: object) -> None:
        raise RuntimeError("the adapter has a bug")

    venue._send = send  # type: ignore[method-assign]
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
