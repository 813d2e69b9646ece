"""The metrics collector and the log formats, in process (no sockets bound, no HTTP)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from bus.codec import encode
from bus.logs import configure
from bus.metrics import (
    LATENCY_BUCKETS,
    RequestTiming,
    ServerCollector,
    parse_address,
    registry,
)
from bus.risk_models import RiskConfig, RiskLimits
from bus.server import Endpoints, Server
from mock_venue.clock import ManualClock
from mock_venue.venue_server import venue_server
from ports import CancelOrder, Side
from tests.contract.helpers import limit
from tests.contract.venue_setup import CONTRACT_VENUE


def _server(tmp_path: Path) -> Server:
    endpoints = Endpoints("inproc://command", "inproc://events", "inproc://control")
    risk = RiskConfig(strategy=RiskLimits(max_order_quantity=Decimal(100)))
    server = venue_server(CONTRACT_VENUE, endpoints, clock=ManualClock(), risk=risk,
                          journal=tmp_path / "venue.journal")  # fmt: skip
    server._send = lambda *_: None  # type: ignore[method-assign]
    server._publish = lambda _: None  # type: ignore[method-assign,assignment]
    return server


def test_the_collector_reads_the_servers_counters(tmp_path: Path) -> None:
    server = _server(tmp_path)
    value = registry(ServerCollector(server, on_loop=False)).get_sample_value
    try:
        requests = [
            limit("o1", quantity=10),  # MAN: rests
            limit("o2", quantity=20),
            limit("big", quantity=500),  # over max_order_quantity: refused by the server
            limit("imm", "IMM", 5, "100.00", side=Side.SELL),  # filled at once
            CancelOrder(strategy_id="s1", client_order_id="nope"),  # unknown: rejected
        ]
        for n, request in enumerate(requests):
            server._serve_command([b"peer", encode(request, request_id=n, client_id="c")], None)
        server._serve_command([b"peer", b"not msgpack"], None)
        server._serve_command([b"peer", b"a", b"b", b"c"], None)  # not one frame
        server.flush()

        assert value("orderbus_requests_total", {"type": "submit_order"}) == 4
        assert value("orderbus_requests_total", {"type": "cancel_order"}) == 1
        assert value("orderbus_requests_total", {"type": "invalid"}) == 2
        assert value("orderbus_rejections_total", {"reason": "limit_exceeded"}) == 1
        assert value("orderbus_rejections_total", {"reason": "unknown_order"}) == 1
        assert value("orderbus_rejections_total", {"reason": "protocol_error"}) == 2
        assert value("orderbus_limit_breaches_total", {"limit": "max_order_quantity"}) == 1
        # Timed: what reached the venue (the refused submit did not).
        submits = {"type": "submit_order"}
        assert value("orderbus_request_latency_seconds_count", submits) == 3
        assert value("orderbus_request_latency_seconds_bucket", {**submits, "le": "+Inf"}) == 3
        assert value("orderbus_request_latency_seconds_count", {"type": "cancel_order"}) == 1
        assert value("orderbus_open_orders", {"strategy": "s1"}) == 2
        assert value("orderbus_position", {"strategy": "s1", "instrument": "IMM"}) == -5
        assert value("orderbus_events_published_total") == server.protocol.venue_seq > 0
        assert (value("orderbus_journal_bytes") or 0) > 0
        assert value("orderbus_journal_records") == 4  # each order request the venue ran
        assert value("orderbus_halted_all") == 0
        assert value("orderbus_clients_connected") is None  # nothing watches these sockets
    finally:
        server.close()


def test_a_gateway_has_no_journal_gauges() -> None:
    from bus.gateway import PortBackend

    endpoints = Endpoints("inproc://c", "inproc://e", "inproc://k")
    server = Server(PortBackend(lambda strategy_id, config: None, {}), endpoints)  # type: ignore[arg-type,return-value]
    try:
        value = registry(ServerCollector(server, on_loop=False)).get_sample_value
        assert value("orderbus_journal_bytes") is None
        assert value("orderbus_halted_all") == 0
    finally:
        server.close()


def test_timing_puts_each_answer_in_its_bucket() -> None:
    timing = RequestTiming()
    for n in range(3):
        timing.arrived(("c", n), object(), -1e9)  # long ago: past the last bound
    timing.answered(("c", 0))
    timing.answered(("c", 1), sent=False)  # nobody gets it: not timed
    timing.answered(("c", 9))  # never timed: ignored
    timing.sent()
    ((kind, buckets),) = timing.counts.items()
    assert kind is object
    assert buckets == [0] * len(LATENCY_BUCKETS) + [1]
    assert timing.sums[object] > 1e9


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("127.0.0.1:9464", ("127.0.0.1", 9464)), ("[::1]:0", ("::1", 0)), ("host:1", ("host", 1))],
)
def test_metrics_addresses(text: str, parsed: tuple[str, int]) -> None:
    assert parse_address(text) == parsed


@pytest.mark.parametrize("text", ["9464", ":9464", "host:", "host:port", "host:70000"])
def test_bad_metrics_addresses(text: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_address(text)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """``configure`` changes the process's ``orderbus`` logger: put it back after the test."""
    logger = logging.getLogger("orderbus")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate = propagate


@pytest.mark.usefixtures("restore_logging")
def test_json_logs_are_one_object_a_line_with_their_fields() -> None:
    out = io.StringIO()
    configure("json", "info", out)
    log = logging.getLogger("orderbus.test")
    log.warning("refused: %s", "max_position", extra={"event": "limit_breach", "limit": "x"})
    log.debug("not shown at info")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["event"] == "limit_breach"
    assert (first["level"], first["logger"], first["limit"]) == ("warning", "orderbus.test", "x")
    assert first["message"] == "refused: max_position"
    assert first["time"].endswith("+00:00")
    assert second["event"] == "log"
    assert "RuntimeError: boom" in second["exception"]


@pytest.mark.usefixtures("restore_logging")
def test_text_logs_for_a_terminal() -> None:
    out = io.StringIO()
    configure("text", "debug", out)
    logging.getLogger("orderbus.test").debug("hello", extra={"event": "e", "peer": "p"})
    assert out.getvalue().rstrip().endswith("DEBUG   orderbus.test: hello (peer=p)")
    configure("auto", "info", io.StringIO())  # not a terminal: JSON
    assert type(logging.getLogger("orderbus").handlers[0].formatter).__name__ == "JsonFormatter"
