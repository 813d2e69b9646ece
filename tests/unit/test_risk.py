"""Pre-trade limits, the kill switch and positions, in memory (``bus.risk``, ``bus.positions``)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from bus.risk import Risk
from bus.risk_models import RiskConfig, RiskLimits
from ports import (
    AmendOrder,
    CancelAllOrders,
    CancelOrder,
    ErrorReason,
    ExecType,
    OrderStatus,
    OrderType,
    Side,
    SubmitOrder,
)
from ports.models import ExecutionReport, OpenOrders, Rejection
from ports.positions import Position, apply_fill

T = datetime(2026, 1, 5, 9, tzinfo=UTC)
ANSWERED = OpenOrders(strategy_id="s", orders=())  # what the answer is matters not, unless refused
_seq = iter(range(1, 1_000_000))


def submit(n: int, qty: int = 10, price: str | None = "100", side: Side = Side.BUY,
           strategy: str = "s") -> SubmitOrder:  # fmt: skip
    return SubmitOrder(
        client_order_id=f"o{n}",
        strategy_id=strategy,
        instrument="X",
        side=side,
        quantity=Decimal(qty),
        order_type=OrderType.LIMIT if price else OrderType.MARKET,
        limit_price=Decimal(price) if price else None,
    )


def report(order: SubmitOrder, exec_type: ExecType, status: OrderStatus, **fields: Any
           ) -> ExecutionReport:  # fmt: skip
    n = next(_seq)
    values: dict[str, Any] = {
        "seq": n,
        "venue_seq": n,
        "exec_type": exec_type,
        "status": status,
        "strategy_id": order.strategy_id,
        "client_order_id": order.client_order_id,
        "venue_order_id": "V" + order.client_order_id,
        "instrument": order.instrument,
        "side": order.side,
        "order_type": order.order_type,
        "limit_price": order.limit_price,
        "quantity": order.quantity,
        "cum_qty": Decimal(0),
        "leaves_qty": order.quantity,
        "avg_px": None,
        "venue_time": T,
    }
    return ExecutionReport.model_validate({**values, **fields})


def accept(risk: Risk, order: SubmitOrder, key: object) -> None:
    assert risk.check(key, order, None) is None
    risk.observe(report(order, ExecType.ACCEPTED, OrderStatus.NEW))
    risk.answered(key, ANSWERED)


def refused(risk: Risk, request: object, reason: ErrorReason, limit: str) -> Rejection:
    rejection = risk.check(object(), request, 0.0)
    assert rejection is not None, f"{limit} let it through"
    assert rejection.reason is reason
    assert limit in rejection.message
    return rejection


def test_each_limit_refuses_with_its_name_and_value_and_counts_the_breach() -> None:
    limits = RiskLimits(
        max_order_quantity=Decimal(100),
        max_order_notional=Decimal(5_000),
        max_open_orders=2,
        max_position=Decimal(30),
    )
    risk = Risk(RiskConfig(strategy=limits))
    rejection = refused(risk, submit(1, qty=101), ErrorReason.LIMIT_EXCEEDED, "max_order_quantity")
    assert "100" in rejection.message
    assert rejection.client_order_id == "o1"
    refused(risk, submit(2, qty=60, price="100"), ErrorReason.LIMIT_EXCEEDED, "max_order_notional")
    accept(risk, submit(3, qty=20), 3)
    # Working 20 bought; 15 more could make the position 35 > 30 if both filled.
    refused(risk, submit(4, qty=15), ErrorReason.LIMIT_EXCEEDED, "max_position")
    accept(risk, submit(5, qty=10), 5)
    refused(risk, submit(6, qty=1, side=Side.SELL), ErrorReason.LIMIT_EXCEEDED, "max_open_orders")
    assert risk.status().breaches == {
        "max_open_orders": 1,
        "max_order_notional": 1,
        "max_order_quantity": 1,
        "max_position": 1,
    }


def test_a_pipelined_burst_counts_before_any_report() -> None:
    risk = Risk(RiskConfig(strategy=RiskLimits(max_open_orders=3)))
    for n in range(3):
        assert risk.check(n, submit(n), None) is None  # nothing reported yet
    refused(risk, submit(9), ErrorReason.LIMIT_EXCEEDED, "max_open_orders")
    risk.answered(0, Rejection(reason=ErrorReason.UNKNOWN_INSTRUMENT, message="no"))
    assert risk.check(10, submit(10), None) is None  # the refused one no longer counts


def test_the_venue_wide_limits_add_up_every_strategy() -> None:
    risk = Risk(RiskConfig(venue=RiskLimits(max_open_orders=2, max_position=Decimal(25))))
    accept(risk, submit(1, strategy="a"), "a1")
    accept(risk, submit(1, strategy="b"), "b1")
    refused(risk, submit(2, strategy="c", qty=1), ErrorReason.LIMIT_EXCEEDED, "venue-wide")


def test_an_amend_up_counts_and_an_amend_down_or_a_cancel_never_breaches() -> None:
    risk = Risk(RiskConfig(strategy=RiskLimits(max_position=Decimal(30),
                                               max_order_quantity=Decimal(40))))  # fmt: skip
    order = submit(1, qty=20)
    accept(risk, order, 1)
    up = AmendOrder(client_order_id="o1", strategy_id="s", quantity=Decimal(35))
    refused(risk, up, ErrorReason.LIMIT_EXCEEDED, "max_position")
    too_big = AmendOrder(client_order_id="o1", strategy_id="s", quantity=Decimal(45))
    refused(risk, too_big, ErrorReason.LIMIT_EXCEEDED, "max_order_quantity")
    down = AmendOrder(client_order_id="o1", strategy_id="s", quantity=Decimal(5))
    assert risk.check("down", down, None) is None
    assert risk.check("c", CancelOrder(client_order_id="o1", strategy_id="s"), None) is None
    assert risk.check("all", CancelAllOrders(strategy_id="s"), None) is None


def test_rates_are_per_strategy_and_refused_as_throttled_with_retry_after() -> None:
    risk = Risk(RiskConfig(strategy=RiskLimits(max_orders_per_second=2)))
    assert risk.check(1, submit(1), 0.0) is None
    assert risk.check(2, submit(2), 0.0) is None
    rejection = refused(risk, submit(3), ErrorReason.THROTTLED, "max_orders_per_second")
    assert rejection.retry_after is not None
    assert 0 < rejection.retry_after <= 0.5
    assert risk.check(4, submit(4, strategy="other"), 0.0) is None
    assert risk.check(5, submit(5), 1.0) is None


def test_a_market_order_under_a_notional_limit_needs_a_price_seen() -> None:
    risk = Risk(RiskConfig(strategy=RiskLimits(max_order_notional=Decimal(1_000))))
    refused(risk, submit(1, price=None), ErrorReason.LIMIT_EXCEEDED, "not known")
    order = submit(2, qty=5)
    accept(risk, order, 2)
    fill = {"last_qty": Decimal(5), "last_px": Decimal(90), "cum_qty": Decimal(5),
            "leaves_qty": Decimal(0), "fill_id": "F1"}  # fmt: skip
    risk.observe(report(order, ExecType.TRADE, OrderStatus.FILLED, **fill))
    assert risk.check(3, submit(3, qty=11, price=None), None) is None  # 11 x 90 = 990
    refused(risk, submit(4, qty=12, price=None), ErrorReason.LIMIT_EXCEEDED, "max_order_notional")


def test_the_kill_switch_refuses_new_orders_until_resumed_and_survives_a_restart() -> None:
    risk = Risk()
    accept(risk, submit(1, strategy="a"), 1)
    accept(risk, submit(1, strategy="b"), 2)
    assert risk.halt("a") == ["a"]
    refused(risk, submit(2, strategy="a"), ErrorReason.TRADING_HALTED, "halted")
    amend = AmendOrder(client_order_id="o1", strategy_id="a", quantity=Decimal(1))
    refused(risk, amend, ErrorReason.TRADING_HALTED, "halted")
    assert risk.check(3, CancelOrder(client_order_id="o1", strategy_id="a"), None) is None
    assert risk.check(4, submit(2, strategy="b"), None) is None
    assert risk.halt(None) == ["a", "b"]  # the strategies with open orders
    again = Risk()
    again.restore(risk.state())
    refused(again, submit(5, strategy="c"), ErrorReason.TRADING_HALTED, "every strategy")
    again.resume(None)
    assert again.check(6, submit(6, strategy="a"), None) is None


@pytest.mark.parametrize(
    ("fills", "quantity", "average", "realized"),
    [
        ([("buy", 10, "100"), ("buy", 10, "110")], 20, "105", 0),
        ([("buy", 10, "100"), ("sell", 4, "120")], 6, "100", 80),
        ([("buy", 10, "100"), ("sell", 15, "90")], -5, "90", -100),
        ([("sell", 10, "50"), ("buy", 10, "40")], 0, None, 100),
    ],
)
def test_positions_follow_average_cost(
    fills: list[tuple[str, int, str]], quantity: int, average: str | None, realized: int
) -> None:
    position = Position(instrument="X")
    for side, qty, px in fills:
        position = apply_fill(position, Side(side), Decimal(qty), Decimal(px))
    assert position.quantity == quantity
    assert position.average_price == (None if average is None else Decimal(average))
    assert position.realized_pnl == realized
    assert position.fills == len(fills)


def test_positions_per_strategy_add_up_to_the_total() -> None:
    risk = Risk()
    for strategy, side, px in (("a", Side.BUY, "100"), ("b", Side.SELL, "101")):
        order = submit(1, qty=10, strategy=strategy, side=side, price=px)
        accept(risk, order, strategy)
        fill = {"last_qty": Decimal(10), "last_px": Decimal(px), "cum_qty": Decimal(10),
                "leaves_qty": Decimal(0), "fill_id": f"F{strategy}"}  # fmt: skip
        risk.observe(report(order, ExecType.TRADE, OrderStatus.FILLED, **fill))
    (a,), (b,), (total,) = (risk.ledger.positions(s) for s in ("a", "b", None))
    assert (a.quantity, b.quantity, total.quantity) == (10, -10, 0)
    assert total.realized_pnl == 10  # bought at 100, sold at 101
    assert risk.status().open_orders == 0


def test_the_example_limits_file_is_the_one_docs_gateway_md_shows() -> None:
    from pathlib import Path

    import yaml

    from bus.risk_cli import read_risk_config

    root = Path(__file__).resolve().parents[2]
    example = root / "examples" / "risk.yaml"
    config = read_risk_config(example)
    assert config.strategies["mm-1"].max_orders_per_second == 500
    guide = (root / "docs" / "gateway.md").read_text()
    section = guide.split("## 6. Pre-trade controls", 1)[1]
    shown = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert yaml.safe_load(shown) == yaml.safe_load(example.read_text())


def test_a_refused_submit_under_a_refused_amend_leaves_no_phantom_order() -> None:
    """Both in flight, both refused by the backend, in either order: no order is left."""
    for first, second in ((1, 2), (2, 1)):
        risk = Risk(RiskConfig(strategy=RiskLimits(max_open_orders=1)))
        amend = AmendOrder(client_order_id="o1", strategy_id="s", limit_price=Decimal(11))
        assert risk.check(("c", 1), submit(1), None) is None
        assert risk.check(("c", 2), amend, None) is None
        for key in (first, second):
            risk.answered(("c", key), Rejection(reason=ErrorReason.VENUE_REJECTED, message="no"))
        assert risk.ledger.working("s", "o1") is None
        assert risk.check(("c", 3), submit(2), None) is None  # room for one again


def test_an_amend_of_an_order_not_counted_here_still_meets_the_quantity_limit() -> None:
    """A gateway started afresh does not know the orders behind it: what needs no count holds."""
    risk = Risk(RiskConfig(strategy=RiskLimits(max_order_quantity=Decimal(100))))
    big = AmendOrder(client_order_id="unknown", strategy_id="s", quantity=Decimal(500))
    refused = risk.check(("c", 1), big, None)
    assert refused is not None
    assert "max_order_quantity 100 of strategy 's'" in refused.message
    small = AmendOrder(client_order_id="unknown", strategy_id="s", quantity=Decimal(50))
    assert risk.check(("c", 2), small, None) is None


def test_limits_set_at_run_time_survive_a_restart_unless_the_file_changed() -> None:
    given = RiskConfig(strategy=RiskLimits(max_order_quantity=Decimal(1000)))
    risk = Risk(given)
    risk.halt("s")
    assert "config" not in risk.state()  # only halts: nothing changed at run time
    risk.config = RiskConfig(strategy=RiskLimits(max_order_quantity=Decimal(10)))
    saved = risk.state()
    again = Risk(given)  # restarted with the same file: the run-time limits hold
    again.restore(saved)
    assert again.config.strategy.max_order_quantity == 10
    assert again.halted == {"s"}
    edited = RiskConfig(strategy=RiskLimits(max_order_quantity=Decimal(100)))
    after_edit = Risk(edited)  # the operator edited the file: it wins
    after_edit.restore(saved)
    assert after_edit.config == edited
    assert after_edit.halted == {"s"}
