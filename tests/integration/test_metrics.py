"""Metrics and logs of a server process (issue 13, section 5): ``mock-venue serve --metrics``
scraped over HTTP after real orders, a breach and a kill; its JSON logs on stderr."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bus.blocking import BlockingOrderExecutionPort
from mock_venue.control_client import BlockingControlClient
from mock_venue.process import VenueProcess
from ports import ErrorReason, OrderRejectedError
from tests.contract.helpers import WAIT, limit
from tests.contract.venue_setup import CONTRACT_VENUE

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=WAIT) as answer:
        assert answer.status == 200
        text = answer.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def _until(url: str, condition: Callable[[Samples], bool], what: str) -> Samples:
    """Scrape until ``condition`` holds (the loop answers between requests), with a deadline."""
    deadline = time.monotonic() + WAIT
    while True:
        samples = _scrape(url)
        if condition(samples):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT} s: {what}; last scrape: {samples}")
        time.sleep(0.05)  # a poll interval between scrapes, not a synchronisation


def _refused(port: BlockingOrderExecutionPort, order: Any, reason: ErrorReason) -> None:
    with pytest.raises(OrderRejectedError) as refused:
        port.submit_order(order)
    assert refused.value.reason is reason


def test_metrics_and_logs_of_a_venue_process(tmp_path: Path) -> None:
    risk = tmp_path / "risk.yaml"
    risk.write_text("strategy:\n  max_order_quantity: 100\n")
    journal = tmp_path / "venue.journal"
    args = ("--risk", str(risk), "--metrics", "127.0.0.1:0", "--log-format", "json")
    venue = VenueProcess(CONTRACT_VENUE, journal=journal, extra_args=args)
    endpoints = venue.start()
    try:
        url = venue.ready["metrics"]
        assert isinstance(url, str)
        assert url.startswith("http://127.0.0.1:")
        with BlockingOrderExecutionPort(
            "s1", command=endpoints.command, events=endpoints.events
        ) as port, BlockingControlClient(endpoints.control) as control:  # fmt: skip
            port.submit_order(limit("o0", quantity=10))  # MAN: rests until filled by hand
            port.submit_order(limit("o1", quantity=10))
            port.submit_order(limit("imm", "IMM", 10, "100.00"))  # filled at once
            _refused(port, limit("big", quantity=110), ErrorReason.LIMIT_EXCEEDED)
            control.fill("s1", "o0", Decimal(10), Decimal("10.50"))
            samples = _until(url, lambda s: _value(s, "orderbus_clients_connected") == 1,
                             "the port is connected to the command channel")  # fmt: skip
            assert _value(samples, "orderbus_open_orders", strategy="s1") == 1  # o1
            assert _value(samples, "orderbus_position", strategy="s1", instrument="MAN") == 10
            assert _value(samples, "orderbus_position", strategy="s1", instrument="IMM") == 10

            control.kill("s1")  # cancels o1
            _refused(port, limit("halted", quantity=10), ErrorReason.TRADING_HALTED)
            samples = _until(url, lambda s: _value(s, "orderbus_open_orders", strategy="s1") == 0,
                             "the kill canceled o1")  # fmt: skip
        assert _value(samples, "orderbus_requests_total", type="submit_order") == 5
        assert (_value(samples, "orderbus_requests_total", type="sync") or 0) >= 1
        assert _value(samples, "orderbus_rejections_total", reason="limit_exceeded") == 1
        assert _value(samples, "orderbus_rejections_total", reason="trading_halted") == 1
        assert _value(samples, "orderbus_limit_breaches_total", limit="max_order_quantity") == 1
        assert _value(samples, "orderbus_limit_breaches_total", limit="trading_halted") == 1
        assert _value(samples, "orderbus_halted_strategies") == 1
        # The three submits that reached the venue; the two refusals were the server's.
        count = _value(samples, "orderbus_request_latency_seconds_count", type="submit_order")
        assert count == 3
        inf = _value(samples, "orderbus_request_latency_seconds_bucket", type="submit_order",
                     le="+Inf")  # fmt: skip
        assert inf == 3
        total = _value(samples, "orderbus_request_latency_seconds_sum", type="submit_order")
        assert total is not None
        assert 0 < total < 3 * WAIT
        assert (_value(samples, "orderbus_journal_bytes") or 0) > 0
        assert (_value(samples, "orderbus_journal_records") or 0) >= 4
        assert _value(samples, "orderbus_reply_queue_drops_total") == 0
    finally:
        venue.stop()

    lines = [json.loads(line) for line in venue.stderr.splitlines() if line.strip()]
    events = {line["event"] for line in lines}
    assert {"serving", "client_connected", "client_disconnected", "stopped"} <= events
    (breach,) = [line for line in lines if line["event"] == "limit_breach"]
    assert breach["level"] == "warning"
    assert breach["limit"] == "max_order_quantity"
    assert breach["client_order_id"] == "big"
    assert "max_order_quantity 100" in breach["message"]
    (kill,) = [line for line in lines if line["event"] == "kill"]
    assert (kill["strategy_id"], kill["canceling"]) == ("s1", ["s1"])
    # Nothing per order at INFO: the refusal while halted is DEBUG, accepted orders not logged.
    assert not any(line.get("client_order_id") in ("o0", "o1", "halted") for line in lines)


def test_a_restarted_venue_logs_its_recovery_as_text(tmp_path: Path) -> None:
    journal = tmp_path / "venue.journal"
    with VenueProcess(CONTRACT_VENUE, journal=journal) as venue:
        assert venue.endpoints is not None
        with BlockingOrderExecutionPort(
            "s1", command=venue.endpoints.command, events=venue.endpoints.events
        ) as port:
            port.submit_order(limit("o0", quantity=10))
    args = ("--log-format", "text", "--metrics", "127.0.0.1:0")
    with VenueProcess(CONTRACT_VENUE, journal=journal, extra_args=args) as venue:
        samples = _scrape(str(venue.ready["metrics"]))
        recovered = _value(samples, "orderbus_journal_recovered_records")
        assert (recovered or 0) >= 1
        assert _value(samples, "orderbus_open_orders", strategy="s1") == 1
    assert "orderbus.venue: recovered" in venue.stderr
    assert "event=" not in venue.stderr  # the event names the line; text does not repeat it
