"""``orderbus gateway`` as a process, serving the example adapter (docs/gateway.md) to strategy
ports in this process: what crosses, and what the gateway says about itself."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
import zmq

from bus.backend import GetStatus
from bus.blocking import BlockingOrderExecutionPort
from bus.codec import decode, encode
from bus.gateway import GATEWAY_CONTROL_MODELS, GatewayStatus
from bus.process import GatewayProcess
from bus.server import Endpoints
from ports import CancelOrder, ErrorReason, ExecType, OrderRejectedError, OrderStatus
from tests.contract.helpers import limit

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


def test_a_factory_that_cannot_be_loaded_stops_the_gateway_with_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="has no callable 'nothing'"):
        GatewayProcess("examples.paper_gateway:nothing").start()
