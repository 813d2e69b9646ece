"""The blocking port's keepalives between calls: a blocking port does its work only while a call
blocks, so a strategy busy in its own code would look silent to cancel on disconnect. This
thread, with a socket of its own, sends a keepalive in the port's client id every third of the
timeout, for as long as the port is open (the process is alive). Its answers go to the port,
which reads them when it is next pumped (one may say the watch fired while the client was cut
off)."""

from __future__ import annotations

import itertools
import queue
import threading

import zmq

from bus.client_frames import KEEPALIVES_PER_TIMEOUT
from bus.codec import Keepalive, encode
from bus.curve import ClientKeys
from bus.sockets import configure_dealer


class KeepaliveThread:
    """Keepalives of ``client_id`` for ``strategy_id`` to ``endpoint`` every ``timeout`` / 3 s,
    on a socket of ``context`` (the port's) that only this thread uses."""

    def __init__(
        self,
        context: zmq.Context[zmq.Socket[bytes]],
        endpoint: str,
        keys: ClientKeys | None,
        strategy_id: str,
        client_id: str,
        timeout: float,
    ) -> None:
        self._context = context
        self._endpoint = endpoint
        self._keys = keys
        self._frame = Keepalive(strategy_id=strategy_id, cancel_on_disconnect=timeout)
        self._client_id = client_id
        self._interval = timeout / KEEPALIVES_PER_TIMEOUT
        self._replies: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="orderbus-keepalive", daemon=True)
        self.sent = 0

    def start(self) -> None:
        self._thread.start()

    def replies(self) -> list[bytes]:
        """The answers to its keepalives since the last call (for the port's protocol)."""
        taken = []
        while not self._replies.empty():
            taken.append(self._replies.get_nowait())
        return taken

    def stop(self) -> None:
        """Stop, and wait until its socket is closed (before the port's context is)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        socket = self._context.socket(zmq.DEALER)
        try:
            configure_dealer(socket)
            if self._keys is not None:
                self._keys.apply(socket)
            socket.connect(self._endpoint)
            ids = itertools.count(1)
            while not self._stop.wait(self._interval):
                frame = encode(self._frame, request_id=next(ids), client_id=self._client_id)
                try:
                    socket.send(frame, zmq.NOBLOCK)
                    self.sent += 1
                except zmq.Again:
                    pass  # not connected now: the next one goes when it is
                while socket.poll(0):
                    self._replies.put(socket.recv())
        finally:
            socket.close(linger=0)
