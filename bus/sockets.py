"""Socket options and non-blocking reads shared by the clients."""

from __future__ import annotations

import zmq

# Plain ints of the flags used on every message: pyzmq's enum members construct an Enum on every
# ``|`` or ``&``, several times per order (CHANGELOG.md, "Performance history", 2026-11-25).
NOBLOCK: int = int(zmq.NOBLOCK)
SNDMORE: int = int(zmq.SNDMORE)
NOBLOCK_SNDMORE: int = NOBLOCK | SNDMORE
_EVENTS: int = int(zmq.EVENTS)
_POLLIN: int = int(zmq.POLLIN)


def configure_dealer(socket: zmq.Socket[bytes]) -> None:
    """The command socket's options (shared with the blocking client)."""
    socket.setsockopt(zmq.LINGER, 0)  # closing never blocks on requests nobody will answer
    # Do not queue requests for a venue that is not connected: they would be executed whenever
    # it comes back, possibly much later. A send then fails at once, with a definite outcome.
    socket.setsockopt(zmq.IMMEDIATE, 1)
    socket.setsockopt(zmq.SNDHWM, 10_000)
    _reconnect_quickly(socket)
    # No ZMTP heartbeats: see bus/server.py. The venue's own heartbeats tell liveness.


def configure_sub(socket: zmq.Socket[bytes], topics: list[bytes]) -> None:
    """The event socket's options and subscriptions."""
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.RCVHWM, 1_000_000)
    _reconnect_quickly(socket)
    for topic in topics:
        socket.setsockopt(zmq.SUBSCRIBE, topic)


def _reconnect_quickly(socket: zmq.Socket[bytes]) -> None:
    # libzmq reconnects a lost connection by itself: first after 100 ms (a restarted venue is
    # back at once), then backing off, doubling up to 2 s, so that many clients of a venue that
    # stays away do not hammer it (libzmq's default is a fixed 100 ms).
    socket.setsockopt(zmq.RECONNECT_IVL, 100)
    socket.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)


def readable(socket: zmq.Socket[bytes]) -> bool:
    """A message is waiting. Asking ZMQ_EVENTS is far cheaper than a recv that fails, for which
    pyzmq builds a zmq.Again exception (CHANGELOG.md, "Performance history")."""
    events = socket.getsockopt(_EVENTS)
    assert isinstance(events, int)
    return bool(events & _POLLIN)


def recv(socket: zmq.Socket[bytes]) -> bytes | None:
    """The next single-frame message, or None if none is waiting."""
    return socket.recv(NOBLOCK) if readable(socket) else None


def recv_multipart(socket: zmq.Socket[bytes]) -> list[bytes] | None:
    """The next multi-frame message, or None if none is waiting."""
    return socket.recv_multipart(NOBLOCK) if readable(socket) else None


def try_send(socket: zmq.Socket[bytes] | None, frame: bytes) -> bool:
    """Send without blocking; False if nothing was sent (no socket, or no connection to the
    venue: with IMMEDIATE set, a DEALER refuses to queue for a peer it does not have)."""
    if socket is None:
        return False
    try:
        socket.send(frame, NOBLOCK)
    except zmq.ZMQError:
        return False
    return True
