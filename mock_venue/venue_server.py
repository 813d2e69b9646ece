"""The mock venue as a bus server: ``venue_server`` puts an ``EngineBackend`` behind
``bus.server.Server`` (what ``mock-venue serve`` runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bus.access import Access
from bus.curve import ServerKey
from bus.limits import ServerLimits
from bus.risk_models import RiskConfig
from bus.server import Endpoints, Server
from mock_venue.backend import EngineBackend
from mock_venue.config import VenueConfig


def venue_server(
    config: VenueConfig,
    endpoints: Endpoints,
    *,
    heartbeat_interval: float = 0.5,
    limits: ServerLimits | None = None,
    access: Access | None = None,
    key: ServerKey | None = None,
    insecure: bool = False,
    risk: RiskConfig | None = None,
    state: Path | None = None,
    **backend: Any,
) -> Server:
    """A bus server hosting the mock venue (``backend``: ``EngineBackend``'s options; the
    others: ``bus.server.Server``'s)."""
    return Server(
        EngineBackend(config, **backend),
        endpoints,
        heartbeat_interval=heartbeat_interval,
        limits=limits,
        access=access,
        key=key,
        insecure=insecure,
        risk=risk,
        state=state,
    )
