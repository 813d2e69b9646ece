"""CURVE keys and sockets: encryption and authentication by pyzmq's ``zmq.auth``.

Keys are certificate files as ``zmq.auth.create_certificates`` writes them (``NAME.key``: public;
``NAME.key_secret``: both halves), or z85 text. A server with a key runs one ZAP authenticator
on its Context, which admits the keys its ``Access`` knows; a client gives the server's public
key and its own pair. A handshake the server refuses is reported by the client socket's monitor
(``HandshakeWatch``), so that a client says why instead of waiting for a timeout.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import parse_monitor_message

from bus.access import Access, is_z85_key

SERVER_KEY_ENV = "ORDERBUS_SERVER_KEY"
CLIENT_KEY_ENV = "ORDERBUS_CLIENT_KEY"
_log = logging.getLogger("orderbus.auth")  # bus.logs formats it


class KeyFileError(ValueError):
    """A key that cannot be read (names the file and why)."""


def read_key(value: str | os.PathLike[str], *, secret: bool) -> tuple[bytes, bytes | None]:
    """A certificate file's public key, and its secret key if ``secret`` (required then); a
    public key may be given as z85 text."""
    text = os.fspath(value)
    if not secret and is_z85_key(text) and not Path(text).exists():
        return text.encode(), None  # a z85 public key given as text
    try:
        public, secret_key = zmq.auth.load_certificate(text)
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"cannot read the key {text}: {exc}") from None
    if secret and secret_key is None:
        raise KeyFileError(f"{text} holds no secret key: give the NAME.key_secret file")
    return public, secret_key


@dataclass(frozen=True)
class ServerKey:
    """A server's key pair (z85)."""

    public: bytes
    secret: bytes

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ServerKey:
        public, secret = read_key(path, secret=True)
        assert secret is not None
        return cls(public, secret)


@dataclass(frozen=True)
class ClientKeys:
    """What a client needs to talk to a server that runs with a key: the server's public key and
    the client's own pair (z85)."""

    server_public: bytes
    public: bytes
    secret: bytes

    @classmethod
    def load(
        cls, server_key: str | os.PathLike[str], client_key: str | os.PathLike[str]
    ) -> ClientKeys:
        """``server_key``: the server's public certificate (or z85 text); ``client_key``: this
        client's secret certificate."""
        server_public, _ = read_key(server_key, secret=False)
        public, secret = read_key(client_key, secret=True)
        assert secret is not None
        return cls(server_public, public, secret)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ClientKeys | None:
        """From ``ORDERBUS_SERVER_KEY`` and ``ORDERBUS_CLIENT_KEY`` (None if neither is set)."""
        env = os.environ if environ is None else environ
        server, client = env.get(SERVER_KEY_ENV), env.get(CLIENT_KEY_ENV)
        if not server and not client:
            return None
        if not server or not client:
            missing = SERVER_KEY_ENV if not server else CLIENT_KEY_ENV
            raise KeyFileError(f"{missing} is not set: CURVE needs both keys")
        return cls.load(server, client)

    def apply(self, socket: zmq.Socket[Any]) -> None:
        """Make ``socket`` a CURVE client (before it connects)."""
        socket.curve_serverkey = self.server_public
        socket.curve_publickey = self.public
        socket.curve_secretkey = self.secret


PLAINTEXT: Final = ClientKeys(b"", b"", b"")
"""``keys=PLAINTEXT``: connect without CURVE, whatever the environment names."""


def resolve(keys: ClientKeys | None) -> ClientKeys | None:
    """``keys``, or those the environment names (None for ``PLAINTEXT``: no CURVE)."""
    if keys is PLAINTEXT:
        return None
    return keys if keys is not None else ClientKeys.from_env()


class _Authenticator(ThreadAuthenticator):
    """Admits the keys ``access`` knows, asked at every handshake (a revoked key is refused at
    its next connection; its open connections are refused message by message)."""

    def __init__(self, context: zmq.Context[zmq.Socket[bytes]], access: Access) -> None:
        super().__init__(context)
        self._access = access
        self.denied = 0

    def callback(self, domain: str, key: bytes) -> bool:
        public = key.decode("ascii", "replace")
        known = self._access.known(public)
        if not known:
            self.denied += 1
            # On the authenticator's thread; logging is thread-safe. The key is public.
            denial = {"event": "auth_denied", "key": public, "domain": domain}
            _log.warning("handshake denied: key not in the entitlements, or revoked", extra=denial)
        return known


class ServerSecurity:
    """A server's CURVE setup on one Context: its key and the authenticator, started here."""

    def __init__(
        self, context: zmq.Context[zmq.Socket[bytes]], key: ServerKey, access: Access
    ) -> None:
        self.key = key
        self._auth = _Authenticator(context, access)
        self._auth.start()
        self._auth.configure_curve_callback("*", credentials_provider=self._auth)

    @property
    def denied(self) -> int:
        """Handshakes refused (unknown or revoked keys)."""
        return self._auth.denied

    def apply(self, socket: zmq.Socket[bytes]) -> None:
        """Make ``socket`` a CURVE server (before it binds)."""
        socket.curve_server = True
        socket.curve_publickey = self.key.public
        socket.curve_secretkey = self.key.secret

    def stop(self) -> None:
        self._auth.stop()


_FAILURES = int(
    zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_SUCCEEDED
)


class HandshakeWatch:
    """Why a client socket's handshakes fail, read from its monitor without blocking."""

    def __init__(self, socket: zmq.Socket[Any], secure: bool) -> None:
        self._secure = secure
        self._owned: zmq.Socket[Any] = socket.get_monitor_socket(_FAILURES)
        # A plain socket over the same one: an asyncio socket's poll() would return a future.
        self._monitor: zmq.Socket[bytes] = zmq.Socket.shadow(self._owned.underlying)
        self.failure: str | None = None  # the latest refusal, until a handshake succeeds

    def poll(self) -> str | None:
        """Read what the monitor reported; the cause of the latest failed handshake, if the
        last one failed."""
        while self._monitor.poll(0):
            event = parse_monitor_message(self._monitor.recv_multipart())
            kind = int(event["event"])
            if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.failure = None
            elif kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                self.failure = (
                    f"the server refused this client's key (ZAP status {event['value']}): "
                    "it is not in the server's entitlements, or was revoked"
                )
            elif self._secure:
                self.failure = (
                    "the CURVE handshake failed: wrong server key (ORDERBUS_SERVER_KEY), "
                    "or the server runs without CURVE"
                )
            else:
                self.failure = (
                    "the handshake failed: the server runs with CURVE; give its public key "
                    f"and a client key ({SERVER_KEY_ENV}, {CLIENT_KEY_ENV})"
                )
        return self.failure

    def close(self) -> None:
        self._owned.close(linger=0)
