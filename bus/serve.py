"""Running a server as a command: bind, announce, serve until a signal, close."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import Mapping

import click

from bus.logs import ConnectionWatch
from bus.metrics import serve_metrics
from bus.server import Server

_log = logging.getLogger("orderbus.server")


def serve_until_signalled(
    server: Server, ready: Mapping[str, object], *, metrics: str | None = None
) -> None:
    """Bind ``server``, print one JSON ready line (its endpoints, session, pid and security
    mode, the metrics URL with ``metrics`` (``HOST:PORT``, ``bus.metrics``), then ``ready``),
    serve until SIGINT or SIGTERM (SIGHUP reloads its entitlements), close. A bind that fails
    is a ``ClickException``."""
    try:
        bound = server.bind()
    except Exception as exc:  # zmq.ZMQError (address in use, bad endpoint), InsecureBind
        server.close()
        raise click.ClickException(f"cannot bind: {exc}") from None
    connections = ConnectionWatch(server)
    stop_metrics = None
    if metrics is not None:
        try:
            url, stop_metrics = serve_metrics(server, metrics, connections)
        except OSError as exc:
            connections.stop()
            server.close()
            raise click.ClickException(f"cannot serve metrics at {metrics}: {exc}") from None
        ready = {"metrics": url, **ready}
    signal.signal(signal.SIGINT, lambda *_: server.stop())
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    signal.signal(signal.SIGHUP, lambda *_: server.request_reload())
    line = {
        "ready": True,
        "pid": os.getpid(),
        "command": bound.command,
        "events": bound.events,
        "control": bound.control,
        "session": server.session,
        "security": server.security.mode,
        **ready,
    }
    click.echo(json.dumps(line))
    sys.stdout.flush()
    _log.info("serving on %s", bound.command, extra={"event": "serving", **line})
    try:
        server.serve()
    finally:
        if stop_metrics is not None:
            stop_metrics()
        connections.stop()
        server.close()
    requests = server.protocol.requests
    _log.info(
        "stopped after %d requests", requests, extra={"event": "stopped", "requests": requests}
    )
