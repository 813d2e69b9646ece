"""``orderbus gateway`` as a process, serving the example adapter (docs/gateway.md), or ZeroMQ
ports to a venue process, to strategy ports in this process: what crosses, what the gateway says
about itself, and what the strategies hear when the venue behind it freezes."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator, Mapping
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
import zmq

from bus.backend import GetStatus
from bus.blocking import BlockingOrderExecutionPort
from bus.client import ZmqOrderExecutionPort
from bus.codec import decode, encode
from bus.gateway import GATEWAY_CONTROL_MODELS, GatewayStatus, PortBackend
from bus.process import GatewayProcess
from bus.server import Endpoints, Server
from mock_venue.clock import ManualClock
from mock_venue.port import MockVenue
from mock_venue.process import VenueProcess
from ports import (
    AckTimeoutError,
    CancelOrder,
    ErrorReason,
    ExecType,
    ExecutionReport,
    OrderExecutionPort,
    OrderRejectedError,
    OrderStatus,
    Outcome,
    PortEvent,
    PortEventKind,
    PortState,
)
from tests.contract.helpers import limit, until_port_events
from tests.contract.venue_setup import CONTRACT_VENUE, START

ROOT = Path(__file__).resolve().parents[2]
WAIT = 5.0


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[Endpoints]:
    monkeypatch.chdir(ROOT)  # the factory is examples.paper_gateway, as the docs start it
    config = yaml.safe_load((ROOT / "examples" / "paper_gateway.yaml").read_text())
    with GatewayProcess("examples.paper_gateway:make_port", config, heartbeat=0.1) as process:
        assert process.endpoints is not None
        yield process.endpoints


def port(endpoints: Endpoints, strategy_id: str) -> BlockingOrderExecutionPort:
    return BlockingOrderExecutionPort(
        strategy_id, command=endpoints.command, events=endpoints.events, ack_timeout=WAIT
    )


def status(endpoints: Endpoints) -> GatewayStatus:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        dealer = context.socket(zmq.DEALER)
        dealer.connect(endpoints.control)
        types = {model: name for name, model in GATEWAY_CONTROL_MODELS.items()}
        dealer.send(encode(GetStatus(), request_id=1, types=types))
        assert dealer.poll(int(WAIT * 1000))
        body = decode(dealer.recv(), models=GATEWAY_CONTROL_MODELS).body
        assert isinstance(body, GatewayStatus)
        return body
    finally:
        context.destroy(linger=0)


def test_strategies_trade_through_the_example_adapter(gateway: Endpoints) -> None:
    with port(gateway, "alpha") as alpha, port(gateway, "beta") as beta:
        updates = alpha.updates()
        ack = alpha.submit_order(limit("a1", "INITECH", 10, "10.00", strategy_id="alpha"))
        assert ack.order.status is OrderStatus.NEW
        kinds = [updates.get(timeout=WAIT) for _ in range(2)]
        assert [(r.exec_type, r.seq) for r in kinds] == [
            (ExecType.ACCEPTED, 1),
            (ExecType.TRADE, 2),
        ]
        assert kinds[1].cum_qty == Decimal(10)
        # Both strategies trade on the adapter's one venue; each sees only its own stream.
        beta_updates = beta.updates()
        beta.submit_order(limit("b1", "HOOLI", 5, "49.00", strategy_id="beta"))
        assert [o.client_order_id for o in beta.open_orders()] == ["b1"]
        canceled = beta.cancel_order(CancelOrder(strategy_id="beta", client_order_id="b1"))
        assert canceled.order.status is OrderStatus.CANCELED
        assert [beta_updates.get(timeout=WAIT).exec_type for _ in range(2)] == [
            ExecType.ACCEPTED,
            ExecType.CANCELED,
        ]
        with pytest.raises(OrderRejectedError) as refused:  # the adapter's rejection, typed
            alpha.submit_order(limit("a2", "NOPE", 10, "1.00", strategy_id="alpha"))
        assert refused.value.reason is ErrorReason.UNKNOWN_INSTRUMENT
        with pytest.raises(TimeoutError):
            updates.get(timeout=0.3)  # nothing of beta's, nothing for the refused order
    held = status(gateway)
    assert [(s.strategy_id, s.seq, s.port_state) for s in held.strategies] == [
        ("alpha", 2, "connected"),
        ("beta", 2, "connected"),
    ]
    assert held.venue_seq == 4
    assert held.protocol_errors == 0


async def test_a_remote_port_pages_through_every_open_order_of_a_gateway() -> None:
    """A gateway answering two open orders a page, in this process (its server on a thread):
    the remote port's ``open_orders()`` follows ``next_after`` to the last of them."""
    venue = MockVenue(CONTRACT_VENUE, seed=7, clock=ManualClock(START))

    def factory(strategy_id: str, config: Mapping[str, object]) -> OrderExecutionPort:
        return venue.port(strategy_id)

    loopback = Endpoints(*["tcp://127.0.0.1:0"] * 3)
    server = Server(PortBackend(factory, open_orders_page=2), loopback, heartbeat_interval=0.1)
    endpoints = server.bind()
    serving = threading.Thread(target=server.serve, name="gateway-server")
    serving.start()
    try:
        async with ZmqOrderExecutionPort(
            "s1", command=endpoints.command, events=endpoints.events, ack_timeout=WAIT
        ) as remote:
            for n in range(5):  # MAN: they rest
                await remote.submit_order(limit(f"o{n}"))
            assert [o.client_order_id for o in await remote.open_orders()] == [
                f"o{n}" for n in range(5)
            ]
            assert await remote.open_orders("IMM") == ()
    finally:
        server.stop()
        serving.join(WAIT)
        server.close()


def test_a_factory_that_cannot_be_loaded_stops_the_gateway_with_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="has no callable 'nothing'"):
        GatewayProcess("examples.paper_gateway:nothing").start()


async def test_the_hosted_ports_lost_venue_reaches_the_strategy_whose_own_link_stays_up() -> None:
    """A venue behind the gateway freezes: the hosted port's connection loss, its order in doubt
    and their ends reach the remote strategy as port events, while the strategy's own link (to
    the gateway, which is alive) stays connected; the frozen order is refused, never late."""
    with VenueProcess(CONTRACT_VENUE, heartbeat=0.1) as venue:
        assert venue.endpoints is not None
        assert venue.process is not None
        hosted = {
            "command": venue.endpoints.command,
            "events": venue.endpoints.events,
            "heartbeat_interval": 0.1,
            "ack_timeout": 0.6,
        }
        try:
            with GatewayProcess("bus.gateway:zmq_ports", hosted, heartbeat=0.1) as gateway:
                assert gateway.endpoints is not None
                async with ZmqOrderExecutionPort(
                    "s1",
                    command=gateway.endpoints.command,
                    events=gateway.endpoints.events,
                    heartbeat_interval=0.1,
                    ack_timeout=WAIT,
                ) as remote:
                    updates = remote.updates(port_events=True)
                    venue.process.send_signal(signal.SIGSTOP)
                    try:
                        seen = await until_port_events(updates, PortEventKind.CONNECTION_LOST)
                        with pytest.raises(AckTimeoutError) as timed_out:  # the hosted port's
                            await remote.submit_order(limit("frozen", "IMM", 5, "100.00"))
                        assert timed_out.value.outcome is Outcome.UNKNOWN
                        seen += await until_port_events(updates, PortEventKind.ORDER_IN_DOUBT)
                        assert remote.state is PortState.CONNECTED
                    finally:
                        venue.process.send_signal(signal.SIGCONT)
                    seen += await until_port_events(
                        updates, PortEventKind.CONNECTION_RESTORED, PortEventKind.ORDER_SETTLED
                    )
                    kinds = [u.kind for u in seen if isinstance(u, PortEvent)]
                    assert kinds[:2] == [
                        PortEventKind.CONNECTION_LOST,
                        PortEventKind.ORDER_IN_DOUBT,
                    ]
                    assert set(kinds[2:]) == {
                        PortEventKind.CONNECTION_RESTORED,
                        PortEventKind.ORDER_SETTLED,
                    }
                    (settled,) = [
                        e
                        for e in seen
                        if isinstance(e, PortEvent) and e.kind is PortEventKind.ORDER_SETTLED
                    ]
                    # The hosted port stamped the request with its deadline: the thawed venue
                    # refused it, so nothing was executed late and nothing is left to guess.
                    assert (settled.client_order_id, settled.snapshot) == ("frozen", None)
                    await remote.submit_order(limit("after", "IMM", 5, "100.00"))
                    while len([u for u in seen if isinstance(u, ExecutionReport)]) < 2:
                        seen.append(await updates.get(timeout=WAIT))
                    assert [
                        (u.client_order_id, u.exec_type, u.seq)
                        for u in seen
                        if isinstance(u, ExecutionReport)
                    ] == [("after", ExecType.ACCEPTED, 1), ("after", ExecType.TRADE, 2)]
                    assert remote.state is PortState.CONNECTED
        finally:
            if venue.process.poll() is None:
                venue.process.send_signal(signal.SIGCONT)  # a frozen venue cannot stop
