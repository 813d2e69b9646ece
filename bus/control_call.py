"""One command on a server's control channel from a command-line tool, with the client key pair
from the environment (``ORDERBUS_CLIENT_KEY``, ``ORDERBUS_SERVER_KEY``)."""

from __future__ import annotations

import zmq
from pydantic import BaseModel

from bus.backend import SERVER_CONTROL_MODELS
from bus.codec import WireError, decode, encode
from bus.curve import ClientKeys, HandshakeWatch
from ports.models import Rejection

_TYPES = {m: n for n, m in SERVER_CONTROL_MODELS.items()}


class ControlCallError(Exception):
    """The server could not be reached, refused the command, or answered what cannot be read."""


def control_call(endpoint: str, command: BaseModel, timeout: float = 5.0) -> BaseModel:
    """Send ``command`` (one of ``bus.backend.SERVER_CONTROL_MODELS``) to the server at
    ``endpoint`` and return its answer; ``ControlCallError`` if there is none to return."""
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        socket = context.socket(zmq.DEALER)
        keys = ClientKeys.from_env()
        if keys is not None:
            keys.apply(socket)
        watch = HandshakeWatch(socket, secure=keys is not None)
        socket.connect(endpoint)
        socket.send(encode(command, request_id=1, types=_TYPES))
        if not socket.poll(int(timeout * 1000)):
            refused = watch.poll()
            raise ControlCallError(f"cannot reach {endpoint}: {refused or 'no answer'}")
        models: dict[str, type[BaseModel]] = {**SERVER_CONTROL_MODELS, "error": Rejection}
        body = decode(socket.recv(), models=models, max_bytes=None).body
        watch.close()
    except WireError as exc:
        raise ControlCallError(f"unreadable answer: {exc}") from None
    finally:
        context.destroy(linger=0)
    if isinstance(body, Rejection):
        raise ControlCallError(body.message)
    assert isinstance(body, BaseModel)
    return body
