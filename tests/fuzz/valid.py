"""Valid requests of every message type of one channel, and the request ids written into them.

The mutators of ``tests.fuzz.mutations`` start from these envelopes; a few go out as they are.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Final

from tests.fuzz.packing import START, pack, timestamp
from tests.fuzz.reading import Channel

SAFE_FAULT_KINDS: Final = (
    "reject_orders",
    "throttle",
    "delay_fills",
    "fill_before_change",
    "drop_events",
    "duplicate_events",
    "reorder_events",
    "pause_publishing",
)
"""The fault kinds a fuzz frame may name. Never delay_acks or drop_replies (a venue that holds or
drops replies on purpose would look like a lost reply), disconnect (the fuzzer's in-flight
messages would go down with the sockets) or crash."""


class Requests:
    """Valid envelopes for ``channel``, drawn from ``rng``. Request ids count up from
    ``first_id`` and are never written twice; ``ids`` holds those written into the message
    being made. Orders go to strategy ``strategy``; queries that return every open order mostly
    name ``quiet``, which has none, so their replies stay small."""

    def __init__(
        self,
        rng: random.Random,
        channel: Channel,
        *,
        first_id: int,
        client_id: str,
        strategy: str,
        quiet: str,
    ) -> None:
        self.channel = channel
        self.ids: list[int] = []  # the ids written into the message being made
        self._rng = rng
        self._next_id = first_id
        self._client_id = client_id
        self._strategy = strategy
        self._quiet = quiet
        self._orders = 0
        self._made = 0

    def start(self) -> None:
        """Begin a fuzz message (counted, for ``_order_id``): no id written into it yet."""
        self.ids = []
        self._made += 1

    def fresh_id(self) -> int:
        """A request id no message has had; now and then one near the top of uint64."""
        n = self._next_id
        self._next_id += 1
        roll = self._rng.random()
        rid = (1 << 64) - 1 - n if roll < 0.02 else (1 << 53) + n if roll < 0.04 else n
        self.ids.append(rid)
        return rid

    def checkpoint(self) -> bytes:
        """A well-formed request whose answer goes out after those of everything sent before it
        (the command channel answers backend requests in batches, refusals at once): a query
        for an order that does not exist, or an unknown control type. A message of its own
        (``ids`` is its id alone), not counted."""
        self.ids = []
        rid = self.fresh_id()
        if self.channel is Channel.COMMAND:
            body = {"client_order_id": "checkpoint", "strategy_id": self._quiet}
            return pack({"v": 1, "t": "query_order", "id": rid, "c": self._client_id, "b": body})
        return pack({"v": 1, "t": "checkpoint", "id": rid, "b": {}})

    def _order_id(self) -> str:
        """An order submitted by now (or a little ahead), to amend, cancel or fill: one of these
        requests' own, or on the control channel one of the command channel's generator, which
        submits about one for every two control messages."""
        made = self._orders if self.channel is Channel.COMMAND else self._made // 2
        return f"f{self._rng.randrange(made + 5)}"

    def valid(self) -> tuple[str, dict[str, object]]:
        """A valid envelope of a random message type of the channel, as a plain map."""
        rng = self._rng
        builders = (
            self._command_bodies() if self.channel is Channel.COMMAND else self._control_bodies()
        )
        message_type, body = rng.choice(builders)()
        envelope: dict[str, object] = {"v": 1, "t": message_type, "id": self.fresh_id()}
        if self.channel is Channel.COMMAND or rng.random() < 0.2:  # control: read but ignored
            # Now and then a client never seen before: what the venue keeps per client (stored
            # replies, rate limits) must stay bounded too.
            fresh = rng.random() < 0.1
            envelope["c"] = f"c-{rng.getrandbits(64):016x}" if fresh else self._client_id
        envelope["b"] = body
        return message_type, envelope

    def _command_bodies(self) -> list[Callable[[], tuple[str, dict[str, object]]]]:
        rng = self._rng
        strategy, quiet = self._strategy, self._quiet

        def submit() -> tuple[str, dict[str, object]]:
            self._orders += 1
            instrument, price = rng.choice(
                (("IMM", "100.00"), ("IMM", "100.00"), ("MAN", "10.00"), ("SLC", "50.00"))
            )
            market = rng.random() < 0.3
            tif = rng.choice(("day", "gtc", "ioc", "fok"))
            expires = tif in ("day", "gtc") and rng.random() < 0.3
            return "submit_order", {
                "client_order_id": f"f{self._orders}",
                "strategy_id": strategy,
                "instrument": instrument,
                "side": rng.choice(("buy", "sell")),
                "quantity": rng.choice(("10", "20", "10.0")),
                "order_type": "market" if market else "limit",
                "limit_price": None if market else price,
                "time_in_force": tif,
                "expire_at": timestamp(START + rng.randrange(60, 86_400)) if expires else None,
            }

        def amend() -> tuple[str, dict[str, object]]:
            body: dict[str, object] = {"client_order_id": self._order_id(), "strategy_id": strategy}
            if rng.random() < 0.7:
                body["quantity"] = rng.choice(("20", "30"))
            if rng.random() < 0.5 or "quantity" not in body:
                body["limit_price"] = rng.choice(("10.01", "9.99", "100.00"))
            return "amend_order", body

        def order(message_type: str) -> Callable[[], tuple[str, dict[str, object]]]:
            return lambda: (
                message_type,
                {"client_order_id": self._order_id(), "strategy_id": strategy},
            )

        def cancel_all() -> tuple[str, dict[str, object]]:
            return "cancel_all_orders", {
                "strategy_id": strategy,
                "instrument": rng.choice((None, "MAN", "IMM")),
                "side": rng.choice((None, "buy", "sell")),
            }

        def listing() -> tuple[str, dict[str, object]]:
            return "list_open_orders", {"strategy_id": quiet, "instrument": None}

        def sync() -> tuple[str, dict[str, object]]:
            return "sync", {"strategy_id": quiet}

        def replay() -> tuple[str, dict[str, object]]:
            first = rng.randrange(1, 200)
            return "replay", {
                "strategy_id": rng.choice((strategy, None)),
                "from_seq": first,
                "to_seq": first + rng.randrange(0, 8),
            }

        def not_a_request() -> tuple[str, dict[str, object]]:
            if rng.random() < 0.5:
                return "error", {"reason": "invalid_request", "message": "x"}
            return "heartbeat", {
                "session": "s",
                "instance": "i",
                "venue_seq": 0,
                "seqs": {},
                "venue_time": timestamp(START),
            }

        return [
            submit, submit, submit, amend, order("cancel_order"), order("cancel_order"),
            order("query_order"), cancel_all, listing, sync, replay, not_a_request,
        ]  # fmt: skip

    def _control_bodies(self) -> list[Callable[[], tuple[str, dict[str, object]]]]:
        rng = self._rng
        strategy = self._strategy

        def order(
            message_type: str, **extra: object
        ) -> Callable[[], tuple[str, dict[str, object]]]:
            return lambda: (
                message_type,
                {"strategy_id": strategy, "client_order_id": self._order_id(), **extra},
            )

        def advance() -> tuple[str, dict[str, object]]:
            return "advance", {"seconds": rng.choice((0.0, 0.001, 0.5, 1.0, 2.5))}

        def inject() -> tuple[str, dict[str, object]]:
            kind = rng.choice(SAFE_FAULT_KINDS)
            fault: dict[str, object] = {
                "strategy_id": rng.choice((strategy, self._quiet)),
                "instrument": None,
                "client_order_id": None,
                "probability": rng.choice((None, 0.5)),
                "kind": kind,
            }
            if kind == "throttle":
                fault.update(max_requests=rng.randrange(1, 50), interval=1.0, probability=None)
            elif kind == "delay_fills":
                fault.update(delay=0.5)
            elif kind == "pause_publishing":
                fault.update(seconds=0.2, strategy_id=None, probability=None)
            elif kind != "fill_before_change":
                fault.update(count=rng.randrange(1, 4))
            return "inject_fault", {"fault": fault}

        def clear() -> tuple[str, dict[str, object]]:
            return "clear_faults", {"fault_id": rng.choice((None, 1, rng.randrange(1, 100)))}

        def empty(message_type: str) -> Callable[[], tuple[str, dict[str, object]]]:
            return lambda: (message_type, {})

        def replies() -> tuple[str, dict[str, object]]:
            if rng.random() < 0.5:
                return "error", {"reason": "invalid_request", "message": "x"}
            return rng.choice(("done", "sync")), {}

        return [
            advance, order("fill_order", quantity=None, price=None), order("cancel_unsolicited"),
            order("restate", quantity="5"), inject, inject, clear, empty("list_faults"),
            empty("get_status"), empty("reload_entitlements"), replies,
        ]  # fmt: skip
