"""The recipes of docs/faults.md's cookbook, as a user would write them with the pytest plugin."""

from __future__ import annotations

import signal
from decimal import Decimal
from pathlib import Path

import pytest

from bus.client import ZmqOrderExecutionPort
from mock_venue.control_client import ControlClient
from mock_venue.faults import DropReplies
from mock_venue.process import VenueProcess
from ports import AckTimeoutError, OrderType, PortEvent, PortEventKind, Side, SubmitOrder


def my_order(client_order_id: str) -> SubmitOrder:
    return SubmitOrder(
        client_order_id=client_order_id,
        strategy_id="test-strategy",
        instrument="HOOLI",  # the plugin's default venue: HOOLI rests until filled
        side=Side.BUY,
        quantity=Decimal(10),
        order_type=OrderType.LIMIT,
        limit_price=Decimal("49.50"),
    )


async def test_a_lost_ack_does_not_double_the_order(
    order_port: ZmqOrderExecutionPort, venue_control: ControlClient
) -> None:
    await venue_control.inject(DropReplies(count=1))
    await order_port.submit_order(my_order("o1"))  # answered by the resend
    assert (await venue_control.status()).orders == 1


async def test_in_doubt_then_settled(
    mock_venue: VenueProcess, order_port: ZmqOrderExecutionPort
) -> None:
    assert mock_venue.process is not None
    events = order_port.updates(port_events=True)
    mock_venue.process.send_signal(signal.SIGSTOP)  # the venue stops answering
    try:
        with pytest.raises(AckTimeoutError):
            await order_port.submit_order(my_order("o1"), timeout=0.5)
        assert "o1" in order_port.in_doubt()
    finally:
        mock_venue.process.send_signal(signal.SIGCONT)
    while True:  # the port settles it by itself
        update = await events.get(timeout=10)
        if isinstance(update, PortEvent) and update.kind is PortEventKind.ORDER_SETTLED:
            break
    assert update.snapshot is None  # refused past its deadline: never executed
    assert order_port.in_doubt() == frozenset()


@pytest.fixture
def mock_venue_journal(tmp_path: Path) -> Path:
    return tmp_path / "venue.journal"


async def test_survives_a_crash(
    mock_venue: VenueProcess, order_port: ZmqOrderExecutionPort, venue_control: ControlClient
) -> None:
    events = order_port.updates(port_events=True)
    await order_port.submit_order(my_order("o1"))
    await venue_control.crash()
    mock_venue.wait_exit()
    mock_venue.restart()  # same endpoints, state recovered
    while True:  # the port reconnects by itself and says so
        update = await events.get(timeout=10)
        if isinstance(update, PortEvent) and update.kind is PortEventKind.VENUE_RESTARTED:
            break
    snapshot = await order_port.order_status("o1")
    assert snapshot.quantity == 10
