"""The server's output batching, with the mock venue behind it, in process (no sockets bound)."""

from __future__ import annotations

from bus.codec import decode, encode
from bus.server import Endpoints
from bus.venue_protocol import Event
from mock_venue.backend import venue_server
from mock_venue.clock import ManualClock
from mock_venue.faults import DropEvents, DropReplies, Fault
from ports import ExecutionReport
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
            venue._serve_command([b"peer", encode(order, request_id=n, client_id="c")])
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
