"""Fixtures of the contract suite.

Every test in tests/contract/ is written against ``OrderExecutionPort`` and ``VenueControl`` only.
``venue_kind`` parametrizes the implementation; a new implementation adds a param and the two
branches below, and every test runs against it unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path

import pytest

from bus.blocking import BlockingOrderExecutionPort
from bus.client import ZmqOrderExecutionPort
from bus.keyring import Keyring
from bus.process import GatewayProcess
from mock_venue.clock import ManualClock
from mock_venue.control_client import ControlClient
from mock_venue.port import MockVenue, VenueControl
from mock_venue.process import VenueProcess
from ports import OrderExecutionPort
from tests.contract.blocking_adapter import BlockingAsAsync
from tests.contract.helpers import STRATEGY
from tests.contract.venue_setup import CONTRACT_VENUE, SEED, START

PortFactory = Callable[..., OrderExecutionPort]

# CURVE is a socket option under either shell: the asyncio port runs plaintext, the blocking port
# runs with keys, and the gateway with keys on both hops.
IMPLEMENTATIONS = ["mock", "zmq", "zmq-blocking-curve", "zmq-gateway-curve"]
SECURE = {"zmq-blocking-curve", "zmq-gateway-curve"}


@pytest.fixture(params=IMPLEMENTATIONS)
def venue_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def venue_and_factory(
    venue_kind: str, tmp_path: Path
) -> AsyncIterator[tuple[VenueControl, PortFactory]]:
    if venue_kind == "mock":
        venue = MockVenue(CONTRACT_VENUE, seed=SEED, clock=ManualClock(START))

        def factory(strategy_id: str = STRATEGY, ack_timeout: float = 5.0) -> OrderExecutionPort:
            return venue.port(strategy_id, ack_timeout=ack_timeout)

        try:
            yield venue, factory
        finally:
            await venue.aclose()
        return
    # The venue in a separate process, on a manual clock the test moves over the control channel.
    secure = venue_kind in SECURE
    keys, admin, venue_ring = None, None, None
    if secure:
        venue_ring = Keyring(tmp_path / "venue-keys")
        keys = venue_ring.add("strategies", "strategy", ["*"])
        admin = venue_ring.add("admin", "admin")
    with ExitStack() as processes:
        process = processes.enter_context(
            VenueProcess(
                CONTRACT_VENUE,
                seed=SEED,
                clock="manual",
                heartbeat=0.1,
                extra_args=() if venue_ring is None else venue_ring.server_args(),
            )
        )
        control_endpoint = process.endpoints.control if process.endpoints else ""
        endpoints = process.endpoints
        if venue_kind == "zmq-gateway-curve":
            # Two hops: the strategy's port -> a gateway process -> its hosted ZeroMQ port ->
            # the venue process. Scripted fills and faults act on the venue, as for "zmq".
            assert venue_ring is not None
            ring = Keyring(tmp_path / "gateway-keys")
            hosted = _hosted(process)
            hosted["server_key"] = str(venue_ring.server_public)
            hosted["client_key"] = str(venue_ring.secret("strategies"))
            keys = ring.add("strategies", "strategy", ["*"])
            gateway = processes.enter_context(
                GatewayProcess(
                    "bus.gateway:zmq_ports", hosted, heartbeat=0.1, extra_args=ring.server_args()
                )
            )
            endpoints = gateway.endpoints
        assert endpoints is not None

        def zmq_factory(
            strategy_id: str = STRATEGY, ack_timeout: float = 5.0
        ) -> OrderExecutionPort:
            if venue_kind == "zmq-blocking-curve":
                return BlockingAsAsync(
                    BlockingOrderExecutionPort(
                        strategy_id,
                        command=endpoints.command,
                        events=endpoints.events,
                        ack_timeout=ack_timeout,
                        retry_throttled=False,  # retry_after is manual-clock time here
                        keys=keys,
                    )
                )
            return ZmqOrderExecutionPort(
                strategy_id,
                command=endpoints.command,
                events=endpoints.events,
                ack_timeout=ack_timeout,
                heartbeat_interval=0.1,
                retry_throttled=False,  # retry_after is manual-clock time here
                keys=keys,
            )

        async with ControlClient(control_endpoint, keys=admin) as control:
            yield control, zmq_factory


def _hosted(venue: VenueProcess) -> dict[str, object | str]:
    """The gateway's hosted ports: ZeroMQ ports to ``venue``, as the suite's own are."""
    assert venue.endpoints is not None
    return {
        "command": venue.endpoints.command,
        "events": venue.endpoints.events,
        "heartbeat_interval": 0.1,
        "retry_throttled": False,  # retry_after is manual-clock time here
    }


@pytest.fixture
def venue(venue_and_factory: tuple[VenueControl, PortFactory]) -> VenueControl:
    """Test-side control of the venue: logical time, scripted fills, faults."""
    return venue_and_factory[0]


@pytest.fixture
def port_factory(venue_and_factory: tuple[VenueControl, PortFactory]) -> PortFactory:
    """Makes unopened ports on the venue: ``port_factory(strategy_id="s2", ack_timeout=0.2)``."""
    return venue_and_factory[1]


@pytest.fixture
async def port(port_factory: PortFactory) -> AsyncIterator[OrderExecutionPort]:
    """An open port for strategy ``s1``."""
    async with AsyncExitStack() as stack:
        yield await stack.enter_async_context(port_factory())
