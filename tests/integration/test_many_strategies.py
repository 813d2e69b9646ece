"""Many strategy processes, one venue process, one monitor: nothing lost, doubled or crossed."""

from __future__ import annotations

from decimal import Decimal

from bus.monitor import BlockingMonitor
from mock_venue.control_client import BlockingControlClient
from mock_venue.demo import DEMO_VENUE, catch_up, run_strategies
from mock_venue.process import VenueProcess

STRATEGIES = 4
ORDERS = 200


def test_four_strategies_each_see_exactly_their_own_events_and_the_monitor_sees_all() -> None:
    with VenueProcess(DEMO_VENUE, seed=5) as venue:
        assert venue.endpoints is not None
        with BlockingMonitor(
            command=venue.endpoints.command, events=venue.endpoints.events
        ) as monitor:
            results, seen = run_strategies(venue, STRATEGIES, ORDERS, seed=5, monitor=monitor)
            control = BlockingControlClient(venue.endpoints.control)
            try:
                status = control.status()
            finally:
                control.close()
            catch_up(monitor, seen, status.venue_seq, timeout=30)

    venue_side = {s.strategy_id: s for s in status.strategies}
    assert sorted(venue_side) == [f"strategy-{n}" for n in range(1, STRATEGIES + 1)]
    for r in results:
        name, orders = r["strategy"], r["orders"]
        # The mix this test promises: partial fills, amends, cancels, all in volume.
        assert orders["submitted"] == ORDERS
        assert orders["amended"] > 10
        assert orders["canceled"] > 5
        assert r["by_type"]["trade"] > ORDERS // 2
        assert r["by_type"]["canceled"] > 0
        # Exactly once, in order, only its own.
        assert r["in_order"], name
        assert r["seqs_complete"], name
        assert r["foreign_events"] == 0
        assert r["duplicate_fills"] == 0
        # The strategy, the monitor and the venue agree.
        mine = venue_side[name]
        assert r["last_seq"] == r["events"] == mine.seq == seen[name]
        assert Decimal(r["filled_qty"]) == Decimal(r["venue_filled_qty"]) == mine.filled_qty
        assert mine.orders == ORDERS
        assert mine.open_orders == 0
        assert r["open_at_end"] == 0
    assert sum(seen.values()) == status.venue_seq == sum(r["events"] for r in results)
    assert status.protocol_errors == 0
