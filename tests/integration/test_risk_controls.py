"""Pre-trade limits, the kill switch and positions over the wire, against a venue process
(issue 13, sections 1, 2 and 4): every kind of limit, kill and resume across a restart on the
journal, and positions equal to the sum of the fills."""

from __future__ import annotations

import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from bus.blocking import BlockingOrderExecutionPort
from bus.process import GatewayProcess
from bus.risk_models import Positions
from mock_venue.control_client import BlockingControlClient
from mock_venue.process import VenueProcess
from ports import (
    AmendOrder,
    CancelOrder,
    CancelReason,
    ErrorReason,
    ExecutionReport,
    OrderRejectedError,
    PortEvent,
    PortEventKind,
    ThrottleError,
)
from ports.blocking import BlockingUpdateStream
from tests.contract.helpers import WAIT, limit, wait_for
from tests.contract.venue_setup import CONTRACT_VENUE

RISK = """\
venue:
  max_order_quantity: 500
strategy:
  max_order_quantity: 100
  max_order_notional: 2000
  max_open_orders: 4
  max_position: 50
strategies:
  fast:
    max_orders_per_second: 5
  other: {}  # only the venue-wide limits
"""


# A process of strategy alpha that arms cancel on disconnect, rests an order and waits to be
# killed (so that it goes silent without the goodbye of a clean close).
_ARMED = """
import sys, threading
from bus.blocking import BlockingOrderExecutionPort
from tests.contract.helpers import limit
port = BlockingOrderExecutionPort(
    "alpha", command=sys.argv[1], events=sys.argv[2], cancel_on_disconnect=0.3
)
port.open()
port.submit_order(limit("rest", "HOOLI", 5, "49.00", strategy_id="alpha"))
print("placed", flush=True)
threading.Event().wait()
"""


def _refused(port: BlockingOrderExecutionPort, request: object, reason: ErrorReason,
             names: str) -> None:  # fmt: skip
    send = port.amend_order if isinstance(request, AmendOrder) else port.submit_order
    with pytest.raises(OrderRejectedError) as refused:
        send(request)  # type: ignore[arg-type]
    assert refused.value.reason is reason
    assert names in refused.value.message


def _next_event(updates: BlockingUpdateStream[ExecutionReport | PortEvent],
                kind: PortEventKind) -> PortEvent:  # fmt: skip
    """The next port event of ``kind`` on ``updates`` (reports before it are skipped)."""
    deadline = time.monotonic() + WAIT
    while True:
        update = updates.get(timeout=max(0.0, deadline - time.monotonic()))
        if isinstance(update, PortEvent) and update.kind is kind:
            return update


def _orderbus(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", "from bus.cli import main; main()", *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_limits_kill_resume_and_positions_over_the_wire(tmp_path: Path) -> None:
    risk = tmp_path / "risk.yaml"
    risk.write_text(RISK)
    journal = tmp_path / "venue.journal"
    venue = VenueProcess(CONTRACT_VENUE, journal=journal, extra_args=("--risk", str(risk)))
    endpoints = venue.start()
    try:
        with BlockingOrderExecutionPort(
            "s1", command=endpoints.command, events=endpoints.events
        ) as port, BlockingControlClient(endpoints.control) as control:  # fmt: skip
            updates = port.updates(port_events=True)
            # Every kind of limit, each naming itself and its value.
            _refused(port, limit("big", quantity=110), ErrorReason.LIMIT_EXCEEDED,
                     "max_order_quantity 100")  # fmt: skip
            _refused(port, limit("rich", quantity=100, price="25.00"),
                     ErrorReason.LIMIT_EXCEEDED, "max_order_notional 2000")  # fmt: skip
            for n in range(3):
                port.submit_order(limit(f"o{n}", quantity=10))
            _refused(port, limit("long", quantity=30), ErrorReason.LIMIT_EXCEEDED,
                     "max_position 50")  # fmt: skip
            port.submit_order(limit("o3", quantity=10))
            _refused(port, limit("more", quantity=10), ErrorReason.LIMIT_EXCEEDED,
                     "max_open_orders 4")  # fmt: skip
            control.fill("s1", "o0", Decimal(10), Decimal("10.50"))
            # Filled 10, working 10 + 10 + 10: an amend up by 20 would make 60 if all filled.
            up = AmendOrder(strategy_id="s1", client_order_id="o1", quantity=Decimal(30))
            _refused(port, up, ErrorReason.LIMIT_EXCEEDED, "max_position 50")
            with BlockingOrderExecutionPort(
                "other", command=endpoints.command, events=endpoints.events
            ) as other:
                _refused(other, limit("huge", quantity=600, strategy_id="other"),
                         ErrorReason.LIMIT_EXCEEDED, "venue-wide")  # fmt: skip
            with BlockingOrderExecutionPort(
                "fast", command=endpoints.command, events=endpoints.events,
                retry_throttled=False,
            ) as fast:  # fmt: skip
                throttled = []
                for n in range(12):
                    try:
                        fast.submit_order(limit(f"f{n}", quantity=10, strategy_id="fast"))
                    except ThrottleError as error:
                        throttled.append(error.message)
                assert throttled
                assert all("max_orders_per_second 5" in message for message in throttled)
            with BlockingOrderExecutionPort(
                "fast", command=endpoints.command, events=endpoints.events
            ) as fast:  # by default the port waits out retry_after: all go through, paced
                for n in range(12):
                    fast.submit_order(limit(f"g{n}", quantity=10, strategy_id="fast"))
            assert control.status().risk.breaches["max_orders_per_second"] > len(throttled)
            before = control.positions("s1")
            (position,) = before.strategies[0].positions
            assert (position.quantity, position.average_price) == (10, Decimal("10.50"))

            # The kill switch, from the command line.
            out = _orderbus("kill", "--strategy", "s1", "--control", endpoints.control)
            assert '"canceling":["s1"]' in out
            wait_for(lambda: not port.open_orders(), "the kill canceled every open order")
            _next_event(updates, PortEventKind.TRADING_HALTED)
            _refused(port, limit("after", quantity=10), ErrorReason.TRADING_HALTED, "halted")
            with pytest.raises(OrderRejectedError) as late:  # a cancel is never blocked
                port.cancel_order(CancelOrder(strategy_id="s1", client_order_id="o1"))
            assert late.value.reason is ErrorReason.TOO_LATE
            assert control.status().risk.halted == ("s1",)
            control.crash(after=0.0)
            assert venue.wait_exit(WAIT) == -9  # killed, not stopped

        endpoints = venue.restart()  # on its journal; the halt is in the state file beside it
        with BlockingOrderExecutionPort(
            "s1", command=endpoints.command, events=endpoints.events
        ) as port, BlockingControlClient(endpoints.control) as control:  # fmt: skip
            _refused(port, limit("still", quantity=10), ErrorReason.TRADING_HALTED, "halted")
            assert control.positions("s1") == before  # rebuilt from the journal's reports
            total = control.positions()
            assert isinstance(total, Positions)
            assert [s.strategy_id for s in total.strategies][-1] is None
            control.resume("s1")
            port.submit_order(limit("again", quantity=10))
    finally:
        venue.stop()
    assert Path(str(journal) + ".state").exists()


def test_the_gateway_applies_the_same_controls_to_the_adapter_behind_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The controls live in the server: an ``orderbus gateway`` hosting the example adapter
    refuses a breach before the adapter sees it, kills and resumes from the command line, and
    keeps positions from the adapter's fills."""
    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(root)  # the factory is examples.paper_gateway, as the docs start it
    risk = tmp_path / "risk.yaml"
    risk.write_text("strategy:\n  max_order_quantity: 100\n")
    config = yaml.safe_load((root / "examples" / "paper_gateway.yaml").read_text())
    with GatewayProcess(
        "examples.paper_gateway:make_port", config, heartbeat=0.1,
        extra_args=("--risk", str(risk), "--state", str(tmp_path / "gateway.state")),
    ) as gateway:  # fmt: skip
        assert gateway.endpoints is not None
        endpoints = gateway.endpoints
        with BlockingOrderExecutionPort(
            "alpha", command=endpoints.command, events=endpoints.events
        ) as alpha:
            updates = alpha.updates(port_events=True)
            _refused(alpha, limit("big", "INITECH", 110, "10.00", strategy_id="alpha"),
                     ErrorReason.LIMIT_EXCEEDED, "max_order_quantity 100")  # fmt: skip
            alpha.submit_order(limit("a1", "INITECH", 10, "10.00", strategy_id="alpha"))
            wait_for(lambda: '"quantity":"10"' in _orderbus(
                "positions", "--json", "--strategy", "alpha", "--control", endpoints.control
            ), "the adapter's fill is in the positions")  # fmt: skip
            _orderbus("kill", "--all", "--control", endpoints.control)
            _next_event(updates, PortEventKind.TRADING_HALTED)
            _refused(alpha, limit("a2", "INITECH", 10, "10.00", strategy_id="alpha"),
                     ErrorReason.TRADING_HALTED, "halted")  # fmt: skip
            _orderbus("resume", "--all", "--control", endpoints.control)
            _next_event(updates, PortEventKind.TRADING_RESUMED)
            alpha.submit_order(limit("a3", "INITECH", 10, "10.00", strategy_id="alpha"))
            # Its own positions, as the gateway counts them (the fill comes after the ack).
            wait_for(lambda: alpha.positions()[0].quantity == 20, "a3's fill in its positions")
            # Cancel on disconnect, through the gateway to the adapter: a process of alpha that
            # armed it and is killed has alpha's resting order canceled, and the reports say
            # why, though the adapter was only told cancel-all.
            armed = subprocess.Popen(
                [sys.executable, "-c", _ARMED, endpoints.command, endpoints.events],
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            try:
                assert armed.stdout is not None
                assert armed.stdout.readline().strip() == "placed"
            finally:
                armed.kill()
                armed.wait()
                if armed.stdout is not None:
                    armed.stdout.close()
            deadline = time.monotonic() + WAIT
            while True:
                update = updates.get(timeout=max(0.0, deadline - time.monotonic()))
                if isinstance(update, ExecutionReport) and update.status.value == "canceled":
                    break
            assert (update.client_order_id, update.cancel_reason) == (
                "rest",
                CancelReason.CANCEL_ON_DISCONNECT,
            )
