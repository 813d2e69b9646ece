"""Logs of the server processes (``--log-format``, ``--log-level``; docs/gateway.md, "Metrics
and logs").

Everything goes to stderr through stdlib ``logging``, under the ``orderbus`` logger: one JSON
object per line (``json``), or a line for a person (``text``); ``auto`` is text on a terminal,
else JSON. stdout stays the server's: its one JSON ready line, which tools parse. What is logged
are events of the server, never of single orders at INFO: a record's ``event`` (``extra=``)
names it, and its other ``extra`` fields go into the JSON object as they are.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any, TypeVar, cast

import click
import zmq
from zmq.utils.monitor import parse_monitor_message

if TYPE_CHECKING:
    from bus.server import Server

_F = TypeVar("_F", bound=Callable[..., Any])

LOGGER = "orderbus"
_log = logging.getLogger("orderbus.clients")
FORMATS = ("auto", "json", "text")
LEVELS = ("debug", "info", "warning", "error")

# What every LogRecord has: anything else on a record came in ``extra=`` and is logged with it.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``event``
    (``log`` when the record names none), ``message``, the record's ``extra`` fields, and
    ``exception`` with a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "event", "log"),
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and name not in line:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """``HH:MM:SS.mmm LEVEL logger: message (key=value ...)`` for a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        at = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S.%f")[:-3]
        fields = {k: v for k, v in vars(record).items() if k not in _STANDARD and k != "event"}
        detail = " ".join(f"{k}={v}" for k, v in fields.items())
        text = f"{at} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if detail:
            text += f" ({detail})"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure(log_format: str = "auto", level: str = "info", stream: IO[str] | None = None) -> None:
    """Send the ``orderbus`` loggers to ``stream`` (default stderr) in ``log_format``, from
    ``level`` up. Called once by a server command before it builds its server."""
    out = stream if stream is not None else sys.stderr
    if log_format == "auto":
        log_format = "text" if out.isatty() else "json"
    if log_format not in ("json", "text"):
        raise ValueError(f"log format {log_format!r}: one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    logger = logging.getLogger(LOGGER)
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False  # a host application's root handlers would print it twice


def server_log_options(command: _F) -> _F:
    """``--log-format`` and ``--log-level`` of a server command; the logs are configured before
    the command runs."""

    @functools.wraps(command)
    def run(*args: Any, log_format: str, log_level: str, **kwargs: Any) -> Any:
        configure(log_format, log_level)
        return command(*args, **kwargs)

    wrapped = click.option(
        "--log-level", "log_level", type=click.Choice(LEVELS, case_sensitive=False),
        default="info", show_default=True, envvar="ORDERBUS_LOG_LEVEL",
        help="Least severe log records written to stderr.",
    )(run)  # fmt: skip
    wrapped = click.option(
        "--log-format", "log_format", type=click.Choice(FORMATS), default="auto",
        show_default=True, envvar="ORDERBUS_LOG_FORMAT",
        help="Logs on stderr: one JSON object per line, or text; auto: text on a terminal.",
    )(wrapped)  # fmt: skip
    return cast(_F, wrapped)


_WATCHED = int(zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_MONITOR_STOPPED)


def _peer(fd: int) -> str | None:
    """The address at the other end of libzmq's socket ``fd`` (a dup of it: libzmq keeps its
    own), or None once it is gone."""
    try:
        with socket.socket(fileno=os.dup(fd)) as dup:  # the family is read from the fd
            address = dup.getpeername()
    except (OSError, ValueError):
        return None
    if isinstance(address, tuple):
        return f"{address[0]}:{address[1]}"
    return str(address) or None  # a Unix socket's peer has no name


class ConnectionWatch:
    """Connections to a server's command channel, from its socket monitor read on a thread of
    its own: ``connected`` now, and a log record at each connect and disconnect. A rebind
    replaces the socket: the watch moves to the new one (on the server loop)."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = 0
        self.accepted = 0
        self._attach()

    def _attach(self) -> None:
        if self._stopping.is_set():
            return
        monitor = self._server.channels.command.get_monitor_socket(_WATCHED)
        self._thread = threading.Thread(
            target=self._run, args=(monitor,), name="orderbus-connections", daemon=True
        )
        self._thread.start()

    def _run(self, monitor: zmq.Socket[bytes]) -> None:
        try:
            while not self._stopping.is_set():
                if not monitor.poll(100):
                    continue
                event = parse_monitor_message(monitor.recv_multipart())
                kind, fd = int(event["event"]), int(event["value"])
                if kind == zmq.EVENT_ACCEPTED:
                    self.connected += 1
                    self.accepted += 1
                    _log.info("client connected", extra={
                        "event": "client_connected", "peer": _peer(fd), "fd": fd,
                        "connected": self.connected})  # fmt: skip
                elif kind == zmq.EVENT_DISCONNECTED:
                    self.connected = max(0, self.connected - 1)
                    _log.info("client disconnected", extra={
                        "event": "client_disconnected", "fd": fd,
                        "connected": self.connected})  # fmt: skip
                elif kind == zmq.EVENT_MONITOR_STOPPED:
                    # The socket closed: the server stops, or rebinds (its peers reconnect).
                    self.connected = 0
                    self._server.call_soon(self._attach)
                    return
        finally:
            monitor.close(linger=0)

    def stop(self) -> None:
        """Stop watching (before the server closes its sockets)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5.0)
