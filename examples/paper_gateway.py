"""A port factory for ``orderbus gateway``: a paper-trading venue in the gateway's process.

    orderbus gateway --port-factory examples.paper_gateway:make_port \\
        --config examples/paper_gateway.yaml

Strategy processes then connect to the gateway (tcp://127.0.0.1:5565 for commands, :5566 for
events) exactly as to a venue, with ``ZmqOrderExecutionPort``, ``BlockingOrderExecutionPort`` or
``orderbus submit --command tcp://127.0.0.1:5565 --events tcp://127.0.0.1:5566 ...``.

This is the shape of any adapter behind the bus (docs/gateway.md): a callable that takes a
strategy id and the gateway's config, and returns an ``OrderExecutionPort`` that is not open yet.
The gateway opens it, sends it the strategy's requests and relays its updates. Here every
strategy gets a port on one in-process ``MockVenue`` running on wall-clock time; a real adapter
returns its own port class (a broker's API, a FIX session) in the same place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mock_venue.clock import WallClock
from mock_venue.config import VenueConfig
from mock_venue.port import MockVenue
from ports import OrderExecutionPort

_venues: dict[str, MockVenue] = {}


def make_port(strategy_id: str, config: Mapping[str, Any]) -> OrderExecutionPort:
    """The port of ``strategy_id``. ``config``: ``venue`` (a venue config, as for
    ``mock-venue serve --config``), ``seed`` and ``ack_timeout`` (seconds)."""
    # One venue for every strategy, built on the gateway's loop the first time a port is asked
    # for: the strategies trade on the same book, as they would at a real venue.
    venue = _venues.get("paper")
    if venue is None:
        venue = _venues["paper"] = MockVenue(
            VenueConfig.model_validate(config.get("venue", {})),
            seed=int(config.get("seed", 0)),
            clock=WallClock(),
        )
    return venue.port(strategy_id, ack_timeout=float(config.get("ack_timeout", 5.0)))
