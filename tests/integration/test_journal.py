"""A venue that loses nothing: crash it, restart it on its journal, and everything is back."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import zmq

from bus.blocking import BlockingOrderExecutionPort
from bus.codec import encode
from mock_venue.control import VenueStatus
from mock_venue.control_client import BlockingControlClient
from mock_venue.process import VenueProcess, VenueProcessError
from ports import AmendOrder, CancelOrder, ExecType, OrderStatus
from tests.contract.helpers import WAIT, limit, market
from tests.contract.venue_setup import CONTRACT_VENUE


def _trade(port: BlockingOrderExecutionPort, control: BlockingControlClient) -> None:
    """Orders in every state, timers pending (sliced fills, a delayed order) and faults in force."""
    for n in range(10):
        port.submit_order(market(f"imm{n}", quantity=5))
    for n in range(10):
        port.submit_order(limit(f"man{n}", quantity=10))
    port.submit_order(limit("slc", "SLC", quantity=8, price="50"))  # fills in slices, one a second
    control.fill("s1", "man1", Decimal(4))
    control.fill("s1", "man2")
    port.cancel_order(CancelOrder(strategy_id="s1", client_order_id="man3"))
    port.amend_order(AmendOrder(strategy_id="s1", client_order_id="man4", quantity=Decimal(20)))


def _comparable(status: VenueStatus) -> dict[str, object]:
    return status.model_dump(
        include={"session", "venue_seq", "orders", "open_orders", "strategies", "faults"}
    )


def test_a_crashed_venue_restarted_on_its_journal_recovers_everything(tmp_path: Path) -> None:
    journal = tmp_path / "venue.journal"
    # Logical time: nothing moves between the crash and the comparison but what we do.
    venue = VenueProcess(CONTRACT_VENUE, clock="manual", heartbeat=0.05, journal=journal)
    endpoints = venue.start()
    context = zmq.Context()
    try:
        with (
            BlockingControlClient(endpoints.control) as control,
            BlockingOrderExecutionPort(
                "s1", command=endpoints.command, events=endpoints.events
            ) as port,
        ):
            _trade(port, control)
            # A raw peer whose request was answered before the crash: its retry after the
            # restart must get the very same answer, and no second order.
            dealer = context.socket(zmq.DEALER)
            dealer.connect(endpoints.command)
            dealer.send(encode(limit("raw", quantity=3), request_id=77, client_id="raw-peer"))
            assert dealer.poll(int(WAIT * 1000))
            answer = dealer.recv()
            control.advance(1.5)  # one slice of the sliced order
            before_snapshots = {s.client_order_id: s for s in port.open_orders()}
            before = control.status()
            control.crash(after=0.0)
            assert venue.wait_exit(WAIT) == -9  # killed, not stopped
        venue.restart()
        assert venue.ready["recovered_records"] == before.journal_records
        with (
            BlockingControlClient(endpoints.control) as control,
            BlockingOrderExecutionPort(
                "s1", command=endpoints.command, events=endpoints.events
            ) as port,
        ):
            after = control.status()
            assert _comparable(after) == _comparable(before)
            assert after.instance != before.instance
            assert {s.client_order_id: s for s in port.open_orders()} == before_snapshots
            dealer.send(encode(limit("raw", quantity=3), request_id=77, client_id="raw-peer"))
            assert dealer.poll(int(WAIT * 1000))
            assert dealer.recv() == answer
            assert control.status().orders == before.orders
            # and it carries on: the stream continues where it was, with nothing reused
            updates = port.updates()
            port.submit_order(market("later", quantity=5))
            accepted = updates.get(timeout=WAIT)
            assert accepted.exec_type is ExecType.ACCEPTED
            assert accepted.seq == before.strategies[0].seq + 1
            assert accepted.venue_seq == before.venue_seq + 1
            # the sliced order's timers were recovered too: it fills to the end
            assert port.order_status("slc").cum_qty == 2
            control.advance(3.0)
            assert port.order_status("slc").status is OrderStatus.FILLED
    finally:
        context.destroy(linger=0)
        venue.stop()


def test_a_torn_last_record_is_cut_off_and_the_venue_starts(tmp_path: Path) -> None:
    journal = tmp_path / "venue.journal"
    venue = VenueProcess(CONTRACT_VENUE, journal=journal)
    endpoints = venue.start()
    try:
        with BlockingOrderExecutionPort(
            "s1", command=endpoints.command, events=endpoints.events
        ) as port:
            for n in range(5):
                port.submit_order(limit(f"o{n}"))
        venue.stop()
        with journal.open("ab") as f:
            f.write(b"\x00\x00\x01\x00\xde\xad")  # a record's start, and then the crash
        venue.start()
        assert venue.ready["torn_bytes"] == 6
        assert "torn last record" in venue.stderr
        assert venue.endpoints is not None
        with BlockingControlClient(venue.endpoints.control) as control:
            assert control.status().orders == 5
    finally:
        venue.stop()


def test_a_journal_damaged_in_the_middle_is_refused_with_a_reason(tmp_path: Path) -> None:
    journal = tmp_path / "venue.journal"
    with VenueProcess(CONTRACT_VENUE, journal=journal) as venue:
        assert venue.endpoints is not None
        with BlockingOrderExecutionPort(
            "s1", command=venue.endpoints.command, events=venue.endpoints.events
        ) as port:
            for n in range(5):
                port.submit_order(limit(f"o{n}"))
    data = bytearray(journal.read_bytes())
    data[len(data) // 2] ^= 0xFF
    journal.write_bytes(bytes(data))
    with pytest.raises(VenueProcessError, match="cannot use the journal"):
        VenueProcess(CONTRACT_VENUE, journal=journal).start()


def test_a_journal_is_refused_by_a_venue_with_another_seed(tmp_path: Path) -> None:
    journal = tmp_path / "venue.journal"
    with VenueProcess(CONTRACT_VENUE, seed=1, journal=journal):
        pass
    with pytest.raises(VenueProcessError, match="another config or seed"):
        VenueProcess(CONTRACT_VENUE, seed=2, journal=journal).start()


def test_a_scenario_file_puts_faults_in_force_at_start(tmp_path: Path) -> None:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(
        "faults:\n"
        "  - {kind: reject_orders, count: 1, strategy_id: s1}\n"
        "  - {kind: throttle, max_requests: 100, interval: 1}\n"
    )
    with VenueProcess(CONTRACT_VENUE, scenario=scenario) as venue:
        assert venue.endpoints is not None
        with BlockingControlClient(venue.endpoints.control) as control:
            kinds = [f.fault.kind for f in control.active_faults()]
            assert kinds == ["reject_orders", "throttle"]


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("{kind: reject_orders, count: -1}", "greater than or equal to 1"),
        ("{kind: crash}", "acts once, when injected"),
        ("{kind: disconnect}", "acts once, when injected"),
    ],
)
def test_a_bad_scenario_file_stops_the_venue_with_a_reason(
    tmp_path: Path, fault: str, reason: str
) -> None:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(f"faults:\n  - {fault}\n")
    with pytest.raises(VenueProcessError, match="scenario") as caught:
        VenueProcess(CONTRACT_VENUE, scenario=scenario).start()
    assert reason in str(caught.value)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mock_venue.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_inject_and_faults_on_the_command_line(tmp_path: Path) -> None:
    with VenueProcess(CONTRACT_VENUE) as venue:
        assert venue.endpoints is not None
        control = ("--control", venue.endpoints.control)
        done = _cli("inject", "reject_orders", "count=2", "strategy_id=s1", *control)
        assert done.returncode == 0, done.stderr
        assert "#1 reject_orders" in done.stdout
        listed = _cli("faults", *control)
        assert "#1 reject_orders" in listed.stdout
        assert "fired 0 remaining 2" in listed.stdout
        scenario = tmp_path / "more.yaml"
        scenario.write_text("faults:\n  - {kind: drop_events, count: 1, probability: 0.5}\n")
        assert _cli("inject", "--file", str(scenario), *control).returncode == 0
        status = _cli("status", "--json", *control)
        assert [f["fault"]["kind"] for f in json.loads(status.stdout)["faults"]] == [
            "reject_orders",
            "drop_events",
        ]
        cleared = _cli("faults", "--clear", "--id", "1", *control)
        assert "#1" not in cleared.stdout
        assert "#2 drop_events" in cleared.stdout
        assert "no faults in force" in _cli("faults", "--clear", *control).stdout
        bad_kind = _cli("inject", "no_such_fault", *control)
        assert bad_kind.returncode == 2
        assert "invalid fault" in bad_kind.stderr
        bad_value = _cli("inject", "throttle", "max_requests=-1", "interval=1", *control)
        assert bad_value.returncode == 2
        assert "max_requests" in bad_value.stderr
        not_a_setting = _cli("inject", "crash", "soon", *control)
        assert not_a_setting.returncode == 2
        assert "key=value" in not_a_setting.stderr
        # the venue kept serving through all of it
        assert _cli("status", *control).returncode == 0


def test_a_crash_from_the_command_line_kills_the_venue() -> None:
    venue = VenueProcess(CONTRACT_VENUE)
    endpoints = venue.start()
    try:
        done = _cli("inject", "crash", "after=0", "--control", endpoints.control)
        assert done.returncode == 0, done.stderr
        assert venue.wait_exit(WAIT) == -9
    finally:
        venue.stop()


def test_status_reports_the_journal(tmp_path: Path) -> None:
    journal = tmp_path / "venue.journal"
    with VenueProcess(CONTRACT_VENUE, journal=journal) as venue:
        assert venue.endpoints is not None
        with BlockingOrderExecutionPort(
            "s1", command=venue.endpoints.command, events=venue.endpoints.events
        ) as port:
            port.submit_order(limit("o1"))
        status = json.loads(_cli("status", "--json", "--control", venue.endpoints.control).stdout)
        assert status["journal"] == str(journal)
        assert status["journal_records"] >= 1
