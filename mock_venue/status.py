"""The mock venue's answer to ``get_status`` (what it holds now), and its journal's gauges."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import TYPE_CHECKING

from bus.backend import Host
from mock_venue.control import StrategyStatus, VenueStatus
from mock_venue.journal import Journal

if TYPE_CHECKING:
    from mock_venue.backend import EngineBackend


def venue_status(backend: EngineBackend, host: Host, journal: Journal | None) -> VenueStatus:
    """What the venue holds now: the ``get_status`` answer."""
    protocol = host.protocol
    engine = backend.engine
    orders = list(engine.orders())
    count: Counter[str] = Counter(o.strategy_id for o in orders)
    working: Counter[str] = Counter(o.strategy_id for o in orders if o.status.is_open)
    filled: dict[str, Decimal] = {}
    for order in orders:
        filled[order.strategy_id] = filled.get(order.strategy_id, Decimal(0)) + order.cum_qty
    return VenueStatus(
        venue_id=engine.config.venue_id,
        session=protocol.session,
        instance=protocol.instance,
        clock=type(backend.clock).__name__,
        venue_time=backend.clock.now().isoformat(),
        venue_seq=engine.venue_seq,
        orders=len(orders),
        open_orders=sum(1 for o in orders if o.status.is_open),
        clients=protocol.replies.owners,
        requests=protocol.requests,
        protocol_errors=protocol.protocol_errors,
        unroutable_replies=host.unroutable_replies,
        security=host.security,
        limits=host.limits,
        risk=host.protocol.risk.status(),
        journal=None if journal is None else str(journal.path),
        journal_records=0 if journal is None else journal.records,
        recovered_records=backend.recovered_records,
        strategies=tuple(
            StrategyStatus(
                strategy_id=s,
                seq=engine.stream_seq(s),
                orders=count[s],
                open_orders=working[s],
                filled_qty=filled[s],
            )
            for s in sorted(count)
        ),
        faults=tuple(engine.faults.active()),
    )


def journal_gauges(journal: Journal | None, recovered: int) -> list[tuple[str, str, float]]:
    """The journal's gauges, for ``bus.metrics`` (none without a journal)."""
    if journal is None:
        return []
    return [
        ("journal_bytes", "Size of the venue's journal file, bytes.", journal.size),
        ("journal_records", "Records appended to the journal by this process.", journal.records),
        ("journal_recovered_records", "Records replayed from the journal at start.", recovered),
    ]
