"""Orders in doubt: an unanswered request leaves its order in doubt until the port settles it,
and the port says so on the update streams that ask for port events."""

from __future__ import annotations

import pytest

from mock_venue.faults import DelayAcks
from mock_venue.port import VenueControl
from ports import (
    AckTimeoutError,
    CancelOrder,
    ExecType,
    ExecutionReport,
    OrderStatus,
    PortEvent,
    PortEventKind,
    UpdateStream,
)
from tests.contract.conftest import PortFactory
from tests.contract.helpers import STRATEGY, WAIT, limit, take


async def until_settled(
    stream: UpdateStream[ExecutionReport | PortEvent],
) -> list[ExecutionReport | PortEvent]:
    """Updates up to and including the first ORDER_SETTLED."""
    seen: list[ExecutionReport | PortEvent] = []
    while not seen or not _settled(seen[-1]):
        seen.append(await stream.get(timeout=WAIT))
    return seen


def _settled(update: ExecutionReport | PortEvent) -> bool:
    return isinstance(update, PortEvent) and update.kind is PortEventKind.ORDER_SETTLED


def port_events(updates: list[ExecutionReport | PortEvent]) -> list[PortEvent]:
    return [u for u in updates if isinstance(u, PortEvent)]


async def test_an_unanswered_cancel_is_in_doubt_until_the_port_settles_it(
    port_factory: PortFactory, venue: VenueControl
) -> None:
    async with port_factory(ack_timeout=0.2) as port:
        everything = port.updates(port_events=True)
        reports = port.updates()
        await port.submit_order(limit("o1"))
        assert port.in_doubt() == frozenset()
        await venue.inject(DelayAcks(delay=10.0, count=1))
        with pytest.raises(AckTimeoutError):
            await port.cancel_order(CancelOrder(client_order_id="o1", strategy_id=STRATEGY))
        assert port.in_doubt() == {"o1"}  # already when the caller sees the timeout
        seen = await until_settled(everything)
        doubt, settled = port_events(seen)
        assert (doubt.kind, doubt.client_order_id, doubt.snapshot) == (
            PortEventKind.ORDER_IN_DOUBT,
            "o1",
            None,
        )
        assert "cancel" in doubt.detail
        assert (settled.kind, settled.client_order_id) == (PortEventKind.ORDER_SETTLED, "o1")
        assert settled.snapshot is not None  # the venue holds the cancel, not carried out yet
        assert settled.snapshot.status is OrderStatus.PENDING_CANCEL
        assert port.in_doubt() == frozenset()
        assert [(r.exec_type, r.status) for r in seen if isinstance(r, ExecutionReport)] == [
            (ExecType.ACCEPTED, OrderStatus.NEW),
            (ExecType.PENDING_CANCEL, OrderStatus.PENDING_CANCEL),
        ]
        # A plain stream carries execution reports only.
        assert [r.exec_type for r in await take(reports, 2)] == [
            ExecType.ACCEPTED,
            ExecType.PENDING_CANCEL,
        ]
        with pytest.raises(TimeoutError):
            await reports.get(timeout=0.05)


async def test_a_submit_held_by_the_venue_settles_as_pending_new(
    port_factory: PortFactory, venue: VenueControl
) -> None:
    async with port_factory(ack_timeout=0.2) as port:
        everything = port.updates(port_events=True)
        await venue.inject(DelayAcks(delay=10.0, count=1))
        with pytest.raises(AckTimeoutError):
            await port.submit_order(limit("o1"))
        seen = await until_settled(everything)
        settled = port_events(seen)[-1]
        assert settled.snapshot is not None
        assert settled.snapshot.status is OrderStatus.PENDING_NEW  # the venue has it, unanswered
        assert port.in_doubt() == frozenset()
        await venue.advance(10)  # the late answer changes nothing: the order is settled
        accepted = await everything.get(timeout=WAIT)
        assert isinstance(accepted, ExecutionReport)
        assert accepted.exec_type is ExecType.ACCEPTED
        assert port.in_doubt() == frozenset()


async def test_port_events_go_to_strategy_wide_streams_only(port_factory: PortFactory) -> None:
    async with port_factory() as port:
        with pytest.raises(ValueError, match="strategy-wide"):
            port.updates("o1", port_events=True)
