"""The server's side of the pre-trade controls (``bus.risk``): the admin commands (kill, resume,
limits at run time, positions), the cancels a kill sends to the backend, the port events that
tell strategies of a halt, and the state file that keeps halts and limits across a restart."""

from __future__ import annotations

import itertools
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from bus.backend import Notice, Output
from bus.codec import Canceled, encode
from bus.risk import Risk
from bus.risk_models import GetPositions, Halted, Kill, Resume, SetRiskLimits
from ports.enums import CancelReason, PortEventKind
from ports.models import CancelAllOrders, PortEvent

if TYPE_CHECKING:
    from bus.server import Server

_log = logging.getLogger("orderbus.risk")  # bus.logs formats it
KILL_CLIENT = "orderbus:kill"
"""The client id of the cancels the server sends (with its instance: unique per process)."""


class StateFile:
    """Halts and limits set at run time, as JSON, replaced whole on each change (a crash leaves
    the old file or the new one, never half of one)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self, risk: Risk) -> None:
        if self.path.exists():
            risk.restore(json.loads(self.path.read_text()))

    def save(self, risk: Risk) -> None:
        partial = self.path.with_name(self.path.name + ".partial")
        with partial.open("w") as out:
            json.dump(risk.state(), out, indent=1)
            out.flush()
            os.fsync(out.fileno())
        partial.replace(self.path)


class RiskControl:
    """Carries out the risk commands for ``server`` (its protocol holds the ``Risk``)."""

    def __init__(self, server: Server, state: Path | None = None) -> None:
        self._server = server
        self._state = None if state is None else StateFile(state)
        self._ids = itertools.count(1)
        if self._state is not None:
            self._state.load(server.protocol.risk)

    def handle(self, command: BaseModel) -> BaseModel | None:
        """The answer to a risk command; None if ``command`` is not one."""
        risk = self._server.protocol.risk
        match command:
            case Kill():
                canceling = risk.halt(command.strategy_id)
                self._save()
                for strategy_id in canceling:
                    self._cancel_all(strategy_id, CancelReason.KILL)
                self._tell(command.strategy_id, PortEventKind.TRADING_HALTED, canceling)
                return self._halted(canceling)
            case Resume():
                risk.resume(command.strategy_id)
                self._save()
                self._tell(command.strategy_id, PortEventKind.TRADING_RESUMED, ())
                return self._halted(())
            case SetRiskLimits():
                risk.config = command.config
                self._save()
                return risk.status()
            case GetPositions():
                return risk.positions(command.strategy_id)
        return None

    def _halted(self, canceling: list[str] | tuple[()]) -> Halted:
        risk = self._server.protocol.risk
        return Halted(
            halted_all=risk.halted_all,
            halted=tuple(sorted(risk.halted)),
            canceling=tuple(canceling),
        )

    def _save(self) -> None:
        if self._state is not None:
            self._state.save(self._server.protocol.risk)

    def disconnected(self, expired: list[tuple[str, str, str, float]]) -> None:
        """Cancel on disconnect: the open orders of each strategy whose client was silent past
        its timeout (``DisconnectWatch.expired``), a port event on its stream now, and the news
        kept for its next sync."""
        server = self._server
        for client, client_id, strategy_id, timeout in expired:
            extra = {"event": "cancel_on_disconnect", "strategy_id": strategy_id,
                     "client_id": client_id, "timeout": timeout}  # fmt: skip
            _log.warning("cancel on disconnect: %s silent past %g s", client_id, timeout,
                         extra=extra)  # fmt: skip
            self._cancel_all(strategy_id, CancelReason.CANCEL_ON_DISCONNECT)
            now = server.backend.venue_time()
            notice = Canceled(at=now, client_id=client_id, timeout=timeout)
            server.protocol.watch.fired_for(client, strategy_id, notice)
            detail = (
                f"client {client_id!r} was silent for more than {timeout:g} s: "
                "the strategy's open orders are being canceled"
            )
            event = PortEvent(kind=PortEventKind.CANCELED_ON_DISCONNECT, time=now, detail=detail)
            server.deliver([Notice(strategy_id, event)])

    def _cancel_all(self, strategy_id: str, reason: CancelReason) -> None:
        """A cancel-all of the strategy's open orders, through the backend as any request goes
        (journaled by a venue that journals), answered to nobody."""
        server = self._server
        request = CancelAllOrders(strategy_id=strategy_id, reason=reason)
        key = (f"{KILL_CLIENT}:{server.instance}", next(self._ids))
        frame = encode(request, request_id=key[1], client_id=key[0])
        server.protocol.begin(key, request, None)
        server.backend.execute(key, request, frame)

    def _tell(
        self, scope: str | None, kind: PortEventKind, canceling: list[str] | tuple[()]
    ) -> None:
        """A port event on the stream of each strategy concerned (every one known or
        subscribed, for a halt of all)."""
        server = self._server
        if scope is None:
            known = server.protocol.risk.ledger.strategies()
            strategies = sorted({*known, *server.subscribed, *canceling})
        else:
            strategies = [scope]
        detail = "trading halted: new orders are refused, cancels and queries allowed"
        if kind is PortEventKind.TRADING_RESUMED:
            detail = "trading resumed"
        now = server.backend.venue_time()
        outputs: list[Output] = [
            Notice(s, PortEvent(kind=kind, time=now, detail=detail)) for s in strategies
        ]
        server.deliver(outputs)
