"""Cancel on disconnect over the wire (issue 13, section 3): a strategy process SIGKILLed in
the middle of a burst leaves none of its orders working once its timeout has run out; a quiet
but healthy strategy keeps its orders; a venue that was itself stopped cancels nobody's."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time

from bus.blocking import BlockingOrderExecutionPort
from bus.client import ZmqOrderExecutionPort
from mock_venue.control import VenueStatus
from mock_venue.control_client import BlockingControlClient, ControlClient
from mock_venue.process import VenueProcess
from ports import CancelReason, ExecType, ExecutionReport, PortEvent, PortEventKind
from tests.contract.helpers import WAIT, limit, wait_for
from tests.contract.venue_setup import CONTRACT_VENUE

TIMEOUT = 1.0  # the strategies' cancel-on-disconnect timeout, seconds
BURST = 5000

# A strategy process: cancel on disconnect armed, then submits as fast as the venue takes them
# (MAN rests every order), until it is killed.
_BURST = f"""
import sys
from bus.blocking import BlockingOrderExecutionPort
from tests.contract.helpers import limit
with BlockingOrderExecutionPort(
    "burst", command=sys.argv[1], events=sys.argv[2], cancel_on_disconnect={TIMEOUT}
) as port:
    for n in range({BURST}):
        port.submit_order(limit(f"b{{n}}", strategy_id="burst"))
    print("done", flush=True)
"""


def _strategy(status: VenueStatus, strategy_id: str) -> tuple[int, int]:
    """(orders, open orders) of ``strategy_id`` at the venue."""
    for strategy in status.strategies:
        if strategy.strategy_id == strategy_id:
            return strategy.orders, strategy.open_orders
    return 0, 0


def test_a_killed_strategy_leaves_no_order_working_and_a_quiet_one_keeps_its_own() -> None:
    with VenueProcess(CONTRACT_VENUE, heartbeat=0.1) as venue:
        endpoints = venue.endpoints
        assert endpoints is not None
        with (
            BlockingControlClient(endpoints.control) as control,
            BlockingOrderExecutionPort(  # the same strategy's other process: it hears the cancels
                "burst", command=endpoints.command, events=endpoints.events
            ) as listener,
            BlockingOrderExecutionPort(  # quiet between calls, healthy: keepalives only
                "quiet", command=endpoints.command, events=endpoints.events,
                cancel_on_disconnect=0.5,
            ) as quiet,
        ):  # fmt: skip
            heard = listener.updates(port_events=True)
            quiet.submit_order(limit("q1", strategy_id="quiet"))
            burst = subprocess.Popen(
                [sys.executable, "-c", _BURST, endpoints.command, endpoints.events],
                stdout=subprocess.DEVNULL,
            )
            try:
                wait_for(lambda: _strategy(control.status(), "burst")[1] >= 300, "300 orders in")
                burst.send_signal(signal.SIGKILL)  # mid-burst: no goodbye, no cancel of its own
                burst.wait(WAIT)
            finally:
                if burst.poll() is None:
                    burst.kill()
                    burst.wait()
            killed_at = time.monotonic()
            wait_for(
                lambda: _strategy(control.status(), "burst")[1] == 0,
                "every order of the killed strategy canceled",
                timeout=TIMEOUT + WAIT,
            )
            assert time.monotonic() - killed_at >= TIMEOUT - 0.2  # not before its timeout
            orders, _ = _strategy(control.status(), "burst")  # its last requests included
            assert 300 <= orders < BURST  # it was killed mid-burst
            # The listener heard each cancel, with its reason, and the notice.
            canceled: set[str] = set()
            notices: list[PortEventKind] = []
            accepted = 0
            while len(canceled) < orders or not notices:
                update = heard.get(timeout=WAIT)
                if isinstance(update, PortEvent):
                    notices.append(update.kind)
                elif isinstance(update, ExecutionReport):
                    if update.exec_type is ExecType.ACCEPTED:
                        accepted += 1
                    elif update.exec_type is ExecType.CANCELED:
                        assert update.cancel_reason is CancelReason.CANCEL_ON_DISCONNECT
                        canceled.add(update.client_order_id)
            assert accepted == len(canceled) == orders
            assert notices == [PortEventKind.CANCELED_ON_DISCONNECT]
            # The quiet strategy, alive all along, kept its order.
            assert _strategy(control.status(), "quiet") == (1, 1)
            assert quiet._keepalive is not None
            assert quiet._keepalive.sent >= 3

        # The strategy comes back: its first sync says what happened while it was away.
        with BlockingOrderExecutionPort(
            "burst", command=endpoints.command, events=endpoints.events, cancel_on_disconnect=5.0
        ) as back:
            told = back.canceled_on_disconnect
            assert isinstance(told, PortEvent)
            assert told.kind is PortEventKind.CANCELED_ON_DISCONNECT
            assert f"more than {TIMEOUT:g} s" in (told.detail or "")
            assert back.open_orders() == ()


def test_a_venue_that_was_stopped_does_not_cancel_on_its_own_silence() -> None:
    with VenueProcess(CONTRACT_VENUE, heartbeat=0.1) as venue:
        endpoints = venue.endpoints
        assert endpoints is not None
        assert venue.process is not None
        with (
            BlockingControlClient(endpoints.control) as control,
            BlockingOrderExecutionPort(
                "s1", command=endpoints.command, events=endpoints.events,
                cancel_on_disconnect=0.5,
            ) as port,
        ):  # fmt: skip
            port.submit_order(limit("o1"))
            venue.process.send_signal(signal.SIGSTOP)
            try:
                time.sleep(1.5)  # the fault itself: the venue stopped for 3 timeouts
            finally:
                venue.process.send_signal(signal.SIGCONT)
            sent = port._keepalive.sent if port._keepalive is not None else 0
            # Once the venue has run a few heartbeats again, the order is still there.
            wait_for(lambda: port._keepalive is not None and port._keepalive.sent >= sent + 3,
                   "three keepalives after the thaw")  # fmt: skip
            assert _strategy(control.status(), "s1") == (1, 1)


async def test_a_quiet_asyncio_strategy_keeps_its_orders_by_its_keepalives() -> None:
    with VenueProcess(CONTRACT_VENUE, heartbeat=0.1) as venue:
        endpoints = venue.endpoints
        assert endpoints is not None
        async with (
            ControlClient(endpoints.control) as control,
            ZmqOrderExecutionPort(
                "s1", command=endpoints.command, events=endpoints.events,
                cancel_on_disconnect=0.5,
            ) as port,
        ):  # fmt: skip
            await port.submit_order(limit("o1"))
            before = (await control.status()).requests
            deadline = time.monotonic() + WAIT
            # Six keepalives: three timeouts' worth of a strategy that sends nothing else.
            while (await control.status()).requests - before < 6 + 1:  # + each status call
                assert time.monotonic() < deadline, "no keepalives"
                await asyncio.sleep(0.05)
            assert _strategy(await control.status(), "s1") == (1, 1)


def test_a_clean_close_disarms_it_and_the_orders_stay() -> None:
    with VenueProcess(CONTRACT_VENUE, heartbeat=0.1) as venue:
        endpoints = venue.endpoints
        assert endpoints is not None
        with BlockingControlClient(endpoints.control) as control:
            with BlockingOrderExecutionPort(
                "s1", command=endpoints.command, events=endpoints.events,
                cancel_on_disconnect=0.3,
            ) as port:  # fmt: skip
                port.submit_order(limit("o1"))
            closed = time.monotonic()
            # Absence takes time to show: three timeouts of silence, watching all along.
            while time.monotonic() - closed < 0.9:
                assert _strategy(control.status(), "s1") == (1, 1)
                time.sleep(0.05)


# A strategy process that arms cancel on disconnect, rests an order, then waits on its updates
# and says when it is told that its orders were canceled.
_TOLD = """
import sys
from bus.blocking import BlockingOrderExecutionPort
from ports import PortEvent, PortEventKind
from tests.contract.helpers import limit
with BlockingOrderExecutionPort(
    "frozen", command=sys.argv[1], events=sys.argv[2], cancel_on_disconnect=0.5
) as port:
    updates = port.updates(port_events=True)
    port.submit_order(limit("f1", strategy_id="frozen"))
    print("placed", flush=True)
    while True:
        update = updates.get(timeout=30)
        if isinstance(update, PortEvent) and update.kind is PortEventKind.CANCELED_ON_DISCONNECT:
            print("told", flush=True)
            break
"""


def test_a_strategy_stopped_past_its_timeout_is_canceled_and_told_when_it_runs_again() -> None:
    with VenueProcess(CONTRACT_VENUE, heartbeat=0.1) as venue:
        endpoints = venue.endpoints
        assert endpoints is not None
        with BlockingControlClient(endpoints.control) as control:
            strategy = subprocess.Popen(
                [sys.executable, "-c", _TOLD, endpoints.command, endpoints.events],
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            try:
                assert strategy.stdout is not None
                assert strategy.stdout.readline().strip() == "placed"
                strategy.send_signal(signal.SIGSTOP)  # alive, but silent: its thread too
                try:
                    wait_for(lambda: _strategy(control.status(), "frozen") == (1, 0),
                           "its order canceled while it was stopped")  # fmt: skip
                finally:
                    strategy.send_signal(signal.SIGCONT)
                # Its keepalive re-arms the watch and its answer says it fired meanwhile.
                assert strategy.stdout.readline().strip() == "told"
                assert strategy.wait(WAIT) == 0
            finally:
                if strategy.poll() is None:
                    strategy.kill()
                    strategy.wait()
                if strategy.stdout is not None:
                    strategy.stdout.close()
