"""Fixtures of the contract suite.

Every test in tests/contract/ is written against ``OrderExecutionPort`` and ``VenueControl`` only.
``venue_kind`` parametrizes the implementation; a new implementation adds a param and the two
branches below, and every test runs against it unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, ExitStack

import pytest

from bus.blocking import BlockingOrderExecutionPort
from bus.client import ZmqOrderExecutionPort
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

IMPLEMENTATIONS = ["mock", "zmq", "zmq-blocking", "zmq-gateway"]


@pytest.fixture(params=IMPLEMENTATIONS)
def venue_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def venue_and_factory(venue_kind: str) -> AsyncIterator[tuple[VenueControl, PortFactory]]:
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
    with ExitStack() as processes:
        process = processes.enter_context(
            VenueProcess(CONTRACT_VENUE, seed=SEED, clock="manual", heartbeat=0.1)
        )
        control_endpoint = process.endpoints.control if process.endpoints else ""
        endpoints = process.endpoints
        if venue_kind == "zmq-gateway":
            # Two hops: the strategy's port -> a gateway process -> its hosted ZeroMQ port ->
            # the venue process. Scripted fills and faults act on the venue, as for "zmq".
            gateway = processes.enter_context(
                GatewayProcess("bus.gateway:zmq_ports", _hosted(process), heartbeat=0.1)
            )
            endpoints = gateway.endpoints
        assert endpoints is not None

        def zmq_factory(
            strategy_id: str = STRATEGY, ack_timeout: float = 5.0
        ) -> OrderExecutionPort:
            if venue_kind == "zmq-blocking":
                return BlockingAsAsync(
                    BlockingOrderExecutionPort(
                        strategy_id,
                        command=endpoints.command,
                        events=endpoints.events,
                        ack_timeout=ack_timeout,
                        retry_throttled=False,  # retry_after is manual-clock time here
                    )
                )
            return ZmqOrderExecutionPort(
                strategy_id,
                command=endpoints.command,
                events=endpoints.events,
                ack_timeout=ack_timeout,
                heartbeat_interval=0.1,
                retry_throttled=False,  # retry_after is manual-clock time here
            )

        async with ControlClient(control_endpoint) as control:
            yield control, zmq_factory


def _hosted(venue: VenueProcess) -> dict[str, object]:
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
