"""The control channel of a server: admins only (on a server with a key), the server's own
commands, then the backend's."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from pydantic import BaseModel

from bus.backend import SERVER_CONTROL_MODELS, ReloadEntitlements
from bus.codec import WireError, decode, encode, ids_of
from bus.risk_models import Halted, Kill, Resume, SetRiskLimits
from bus.venue_protocol import Route
from ports.enums import ErrorReason
from ports.models import Rejection

if TYPE_CHECKING:
    from bus.server import Server

_log = logging.getLogger("orderbus.risk")


class ControlChannel:
    """Answers one server's control messages; ``send`` puts a reply on the control socket."""

    def __init__(self, server: Server, send: Callable[[Route, bytes], None]) -> None:
        self._server = server
        self._send = send
        self._models = {**server.backend.control_models, **SERVER_CONTROL_MODELS}
        self._types = {m: n for n, m in self._models.items()}

    def serve(self, frames: list[bytes], user: str | None) -> None:
        """One message, with its sender's key (None in development mode)."""
        server = self._server
        if len(frames) != 2:
            server.protocol.protocol_errors += 1
            return
        route = Route(frames[0], False)
        access = server.access
        who = access.principal(user)
        if not access.may_control(who):  # before anything of it is acted on
            access.refused += 1
            name = "this key" if who is None else who.name
            refusal = Rejection(
                reason=ErrorReason.NOT_AUTHORIZED,
                message=f"{name} is not authorized for the control channel (admins only)",
            )
            self._send(route, encode(refusal, request_id=ids_of(frames[1])[0]))
            return
        try:
            envelope = decode(frames[1], models=self._models)
        except WireError as error:
            self._send(route, server.protocol.refuse(error))
            return
        try:
            risk = server.risk_control.handle(envelope.body)
            if risk is not None:
                _log_risk(envelope.body, risk, who.name if who is not None else None)
                result: BaseModel = risk
            elif isinstance(envelope.body, ReloadEntitlements):
                result = server.reload()
            else:
                result = server.backend.control(envelope.body, frames[1])
        except (TypeError, ArithmeticError, ValueError) as error:  # EntitlementsError too
            result = Rejection(reason=ErrorReason.INVALID_REQUEST, message=str(error))
        frame = encode(result, request_id=envelope.request_id, types=self._types)
        server.flush()  # a command's effects are out before its answer
        self._send(route, frame)


def _log_risk(command: BaseModel, answer: BaseModel, admin: str | None) -> None:
    """Kills, resumes and new limits: each is an operator's act, logged with who did it."""
    extra: dict[str, object]
    if isinstance(command, Kill) and isinstance(answer, Halted):
        extra = {"event": "kill", "strategy_id": command.strategy_id, "admin": admin,
                 "canceling": list(answer.canceling)}  # fmt: skip
        scope = command.strategy_id or "every strategy"
        _log.warning("kill: trading halted for %s", scope, extra=extra)
    elif isinstance(command, Resume):
        extra = {"event": "resume", "strategy_id": command.strategy_id, "admin": admin}
        _log.warning("resume: %s lifted", command.strategy_id or "every halt", extra=extra)
    elif isinstance(command, SetRiskLimits):
        config = command.config.model_dump(mode="json")
        extra = {"event": "risk_limits", "config": config, "admin": admin}
        _log.warning("new risk limits in force", extra=extra)
