"""The pytest plugin, used as a strategy developer would: in their own pytest run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

USER_TESTS = """
import json, os
from decimal import Decimal

import pytest

from ports import OrderStatus, OrderType, Side, SubmitOrder

RECORD = os.environ["PLUGIN_RECORD"]


def order(strategy_id, cl_id, qty=10):
    return SubmitOrder(
        client_order_id=cl_id, strategy_id=strategy_id, instrument="HOOLI", side=Side.BUY,
        quantity=Decimal(qty), order_type=OrderType.LIMIT, limit_price=Decimal("49.50"),
    )


def record(mock_venue):
    with open(RECORD, "a") as f:
        f.write(json.dumps({"pid": mock_venue.process.pid, "tmp": mock_venue._tmp.name}) + "\\n")


@pytest.mark.asyncio
async def test_async_strategy(mock_venue, order_port, venue_control, strategy_id):
    record(mock_venue)
    updates = order_port.updates()
    await order_port.submit_order(order(strategy_id, "a1"))
    await venue_control.fill(strategy_id, "a1", Decimal(4), Decimal("49.00"))
    events = [await updates.get(timeout=5) for _ in range(2)]
    assert events[1].status is OrderStatus.PARTIALLY_FILLED
    assert (await order_port.order_status("a1")).cum_qty == 4


def test_blocking_strategy(mock_venue, blocking_order_port, blocking_venue_control, strategy_id):
    record(mock_venue)
    updates = blocking_order_port.updates()
    blocking_order_port.submit_order(order(strategy_id, "b1"))
    blocking_venue_control.fill(strategy_id, "b1")
    assert [updates.get(timeout=5).status for _ in range(2)] == [
        OrderStatus.NEW, OrderStatus.FILLED,
    ]
    assert blocking_venue_control.status().orders == 1


def test_that_fails(mock_venue, blocking_order_port):
    record(mock_venue)
    assert False, "a failing test must still clean up"
"""


def test_plugin_fixtures_work_and_clean_up_even_when_a_test_fails(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = tmp_path / "record.jsonl"
    monkeypatch.setenv("PLUGIN_RECORD", str(record))
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*a failing test must still clean up*"])
    venues = [json.loads(line) for line in record.read_text().splitlines()]
    assert len(venues) == 3
    assert len({v["pid"] for v in venues}) == 3  # a fresh venue per test
    for venue in venues:
        with pytest.raises(ProcessLookupError):
            os.kill(venue["pid"], 0)  # the process is gone (reaped, not a zombie)
        assert not Path(venue["tmp"]).exists()  # and its temporary files


CURVE_CONFTEST = """
import pytest


@pytest.fixture
def mock_venue_curve():
    return True


@pytest.fixture
def mock_venue_keyring(mock_venue_keyring):  # the plugin's, and one more key
    mock_venue_keyring.add("intruder", strategies=["intruder"])
    return mock_venue_keyring
"""

CURVE_TESTS = """
from decimal import Decimal

import pytest

from bus.blocking import BlockingOrderExecutionPort
from ports import ConnectivityError, ErrorReason, OrderType, Side, SubmitOrder


def test_ports_and_control_connect_with_their_own_keys(
    blocking_order_port, blocking_venue_control, strategy_id
):
    blocking_order_port.submit_order(SubmitOrder(
        client_order_id="c1", strategy_id=strategy_id, instrument="HOOLI", side=Side.BUY,
        quantity=Decimal(1), order_type=OrderType.LIMIT, limit_price=Decimal("49.50"),
    ))
    blocking_venue_control.fill(strategy_id, "c1")
    status = blocking_venue_control.status()
    assert (status.security.mode, status.security.keys, status.orders) == ("curve", 3, 1)


def test_another_key_may_not_act_for_the_strategy(mock_venue, mock_venue_keyring, strategy_id):
    endpoints = mock_venue.endpoints
    port = BlockingOrderExecutionPort(
        strategy_id, command=endpoints.command, events=endpoints.events,
        keys=mock_venue_keyring.keys("intruder"), connect_timeout=5,
    )
    with pytest.raises(ConnectivityError) as refused:
        port.open()
    assert refused.value.reason is ErrorReason.NOT_AUTHORIZED
"""


def test_plugin_runs_the_venue_with_curve_keys_when_asked(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CURVE_CONFTEST)
    pytester.makepyfile(test_curve=CURVE_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=2)
