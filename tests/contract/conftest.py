"""Fixtures of the contract suite.

Every test in tests/contract/ is written against ``OrderExecutionPort`` and ``VenueControl`` only.
``venue_kind`` parametrizes the implementation; a new implementation adds a param and the two
branches below, and every test runs against it unchanged.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path

import pytest

from bus.blocking import BlockingOrderExecutionPort
from bus.client import ZmqOrderExecutionPort
from bus.keyring import Keyring
from bus.process import GatewayProcess, ServerProcess
from bus.server import Endpoints
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
    venue_kind: str, tmp_path: Path, reaper: _Reaper
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
    gatewayed = venue_kind == "zmq-gateway-curve"
    process = VenueProcess(
        CONTRACT_VENUE,
        seed=SEED,
        clock="manual",
        heartbeat=0.1,
        # Behind a gateway, on ipc: its endpoints are known before it is up, so the gateway
        # starts at the same time.
        transport="ipc" if gatewayed else "tcp",
        extra_args=() if venue_ring is None else venue_ring.server_args(),
    )
    servers: list[ServerProcess] = [process]
    with ExitStack() as processes:
        processes.callback(reaper.stop_later, servers)
        wanted = process.begin()
        if gatewayed:
            # Two hops: the strategy's port -> a gateway process -> its hosted ZeroMQ port ->
            # the venue process. Scripted fills and faults act on the venue, as for "zmq".
            assert venue_ring is not None
            ring = Keyring(tmp_path / "gateway-keys")
            hosted = _hosted(wanted)
            hosted["server_key"] = str(venue_ring.server_public)
            hosted["client_key"] = str(venue_ring.secret("strategies"))
            keys = ring.add("strategies", "strategy", ["*"])
            gateway = GatewayProcess(
                "bus.gateway:zmq_ports", hosted, heartbeat=0.1, extra_args=ring.server_args()
            )
            servers.append(gateway)
            gateway.begin()
        endpoints = venue_endpoints = process.wait_ready()
        if gatewayed:
            endpoints = servers[-1].wait_ready()
        control_endpoint = venue_endpoints.control

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


class _Reaper:
    """Waits for the servers of finished tests to exit, on a thread of its own, while the next
    test runs: a test's servers are told to stop (SIGTERM) when it ends, and the suite does not
    wait for their interpreters to wind down. Any that did not stop fail the session's end."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[list[ServerProcess] | None] = queue.SimpleQueue()
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._run, name="reaper", daemon=True)
        self._thread.start()

    def stop_later(self, servers: list[ServerProcess]) -> None:
        for server in servers:
            server.terminate()
        self._queue.put(servers)

    def _run(self) -> None:
        while (servers := self._queue.get()) is not None:
            for server in reversed(servers):  # the gateway first, should one need its SIGKILL
                try:
                    server.stop()
                except Exception as error:  # reported at the session's end
                    self.errors.append(f"{server.name}: {error}")

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()


@pytest.fixture(scope="session")
def reaper() -> Iterator[_Reaper]:
    reaper = _Reaper()
    yield reaper
    reaper.close()
    assert not reaper.errors, reaper.errors


def _hosted(venue: Endpoints) -> dict[str, object | str]:
    """The gateway's hosted ports: ZeroMQ ports to ``venue``, as the suite's own are."""
    return {
        "command": venue.command,
        "events": venue.events,
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
