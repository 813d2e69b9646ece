"""orderbus's pytest plugin: test a strategy against a real mock venue process.

Installed with orderbus (entry point ``pytest11``); nothing to configure. Fixtures:

- ``mock_venue``: a venue process on free loopback ports, on a manual clock (``VenueProcess``);
  stopped after the test, pass or fail. Override ``mock_venue_config`` / ``mock_venue_clock`` /
  ``mock_venue_seed`` / ``mock_venue_journal`` in your conftest to change what it trades and how.
- ``venue_control`` (async) / ``blocking_venue_control``: scripted fills, logical time, faults.
- ``order_port`` (async, ``ZmqOrderExecutionPort``) / ``blocking_order_port``: an open port for
  ``strategy_id`` (override the ``strategy_id`` fixture to rename it).
- ``mock_venue_curve``: override to return True and the venue runs with CURVE keys
  (``mock_venue_keyring``): the ports connect with a key entitled to ``strategy_id`` only, the
  control fixtures with an admin key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from bus.access import Role
from bus.blocking import BlockingOrderExecutionPort
from bus.client import ZmqOrderExecutionPort
from bus.curve import ClientKeys
from bus.keyring import Keyring
from bus.server import Endpoints
from mock_venue.config import DEFAULT_INSTRUMENTS, VenueConfig
from mock_venue.control_client import BlockingControlClient, ControlClient
from mock_venue.process import VenueProcess


@pytest.fixture
def mock_venue_config() -> VenueConfig:
    """What the venue trades: one instrument per fill model (ACME price path, GLOBEX sliced,
    INITECH immediate, HOOLI manual)."""
    return VenueConfig(instruments=DEFAULT_INSTRUMENTS)


@pytest.fixture
def mock_venue_clock() -> str:
    """``"manual"``: time moves only with ``venue_control.advance``; ``"wall"``: real time."""
    return "manual"


@pytest.fixture
def mock_venue_seed() -> int:
    """Seed of the venue's price paths."""
    return 0


@pytest.fixture
def mock_venue_journal() -> Path | None:
    """The venue's journal file (None: no journal). Override with a path (e.g. under
    ``tmp_path``) to test a crash: ``crash()``, ``mock_venue.wait_exit()``,
    ``mock_venue.restart()`` and the venue comes back with everything."""
    return None


@pytest.fixture
def strategy_id() -> str:
    """The strategy the ``order_port`` fixtures trade for."""
    return "test-strategy"


ADMIN = "admin"
"""The name of the keyring's admin key, which the control fixtures use."""


@pytest.fixture
def mock_venue_curve() -> bool:
    """True: the venue runs with CURVE keys and entitlements (``mock_venue_keyring``)."""
    return False


@pytest.fixture
def mock_venue_keyring(
    mock_venue_curve: bool, strategy_id: str, tmp_path_factory: pytest.TempPathFactory
) -> Keyring | None:
    """With ``mock_venue_curve``: the venue's keys, an admin key (``ADMIN``) and a key named
    after ``strategy_id``, entitled to it alone. Add more in an override, before the venue
    starts: ``ring.add("other", strategies=["other"])``, then ``ring.keys("other")``."""
    if not mock_venue_curve:
        return None
    ring = Keyring(tmp_path_factory.mktemp("keys"))
    ring.add(ADMIN, Role.ADMIN)
    ring.add(strategy_id, Role.STRATEGY, [strategy_id])
    return ring


@pytest.fixture
def mock_venue(
    mock_venue_config: VenueConfig,
    mock_venue_clock: str,
    mock_venue_seed: int,
    mock_venue_journal: Path | None,
    mock_venue_keyring: Keyring | None,
) -> Iterator[VenueProcess]:
    """A venue process for this test; its endpoints are ``mock_venue.endpoints``."""
    process = VenueProcess(
        mock_venue_config,
        seed=mock_venue_seed,
        clock=mock_venue_clock,
        journal=mock_venue_journal,
        extra_args=() if mock_venue_keyring is None else mock_venue_keyring.server_args(),
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


def _endpoints(venue: VenueProcess) -> Endpoints:
    assert venue.endpoints is not None, "the venue is not running"
    return venue.endpoints


def _retry_throttled(venue: VenueProcess) -> bool:
    # On a manual clock a throttle's window moves only when the test advances time: waiting out
    # retry_after in real time would just run the request into its timeout. Raise at once.
    return venue.clock != "manual"


def _keys(ring: Keyring | None, name: str) -> ClientKeys | None:
    return None if ring is None else ring.keys(name)


@pytest_asyncio.fixture
async def venue_control(
    mock_venue: VenueProcess, mock_venue_keyring: Keyring | None
) -> AsyncIterator[ControlClient]:
    """Control of the venue from an async test: ``await venue_control.fill(...)``."""
    keys = _keys(mock_venue_keyring, ADMIN)
    async with ControlClient(_endpoints(mock_venue).control, keys=keys) as control:
        yield control


@pytest.fixture
def blocking_venue_control(
    mock_venue: VenueProcess, mock_venue_keyring: Keyring | None
) -> Iterator[BlockingControlClient]:
    """Control of the venue from a plain test: ``blocking_venue_control.fill(...)``."""
    keys = _keys(mock_venue_keyring, ADMIN)
    control = BlockingControlClient(_endpoints(mock_venue).control, keys=keys)
    try:
        yield control
    finally:
        control.close()


@pytest_asyncio.fixture
async def order_port(
    mock_venue: VenueProcess, strategy_id: str, mock_venue_keyring: Keyring | None
) -> AsyncIterator[ZmqOrderExecutionPort]:
    """An open asyncio port on the venue."""
    endpoints = _endpoints(mock_venue)
    port = ZmqOrderExecutionPort(
        strategy_id,
        command=endpoints.command,
        events=endpoints.events,
        retry_throttled=_retry_throttled(mock_venue),
        keys=_keys(mock_venue_keyring, strategy_id),
    )
    async with port:
        yield port


@pytest.fixture
def blocking_order_port(
    mock_venue: VenueProcess, strategy_id: str, mock_venue_keyring: Keyring | None
) -> Iterator[BlockingOrderExecutionPort]:
    """An open blocking port on the venue."""
    endpoints = _endpoints(mock_venue)
    with BlockingOrderExecutionPort(
        strategy_id,
        command=endpoints.command,
        events=endpoints.events,
        retry_throttled=_retry_throttled(mock_venue),
        keys=_keys(mock_venue_keyring, strategy_id),
    ) as port:
        yield port
