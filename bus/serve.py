"""Running a server as a command: bind, announce, serve until a signal, close."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Mapping

import click

from bus.server import Server


def serve_until_signalled(server: Server, ready: Mapping[str, object]) -> None:
    """Bind ``server``, print one JSON ready line (its endpoints, session, pid and security
    mode, then ``ready``), serve until SIGINT or SIGTERM (SIGHUP reloads its entitlements),
    close. A bind that fails is a ``ClickException``."""
    try:
        bound = server.bind()
    except Exception as exc:  # zmq.ZMQError (address in use, bad endpoint), InsecureBind
        server.close()
        raise click.ClickException(f"cannot bind: {exc}") from None
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
    try:
        server.serve()
    finally:
        server.close()
    click.echo(json.dumps({"stopped": True, "requests": server.protocol.requests}), err=True)
