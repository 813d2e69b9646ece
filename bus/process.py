"""``ServerProcess``: a bus server (a venue, a gateway) as a separate OS process on free
endpoints, and how to stop it. Subclasses say which command line serves."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from bus.server import Endpoints


class ServerProcessError(RuntimeError):
    """The server process did not start, or did not stop when asked."""


class ServerProcess(ABC):
    """A server child process (``subprocess``, never fork of a live Context) that prints one
    JSON ready line with its endpoints. ``transport="tcp"`` binds free loopback ports; ``"ipc"``
    binds sockets in a private temporary directory. Use as a context manager, or ``start()`` /
    ``stop()``."""

    name = "server"

    def __init__(self, *, transport: str = "tcp", start_timeout: float = 30.0) -> None:
        if transport not in ("tcp", "ipc"):
            raise ValueError("transport is 'tcp' or 'ipc'")
        self.transport = transport
        self.start_timeout = start_timeout
        self.ready: dict[str, object] = {}
        self.process: subprocess.Popen[str] | None = None
        self.endpoints: Endpoints | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._stderr_lines: list[str] = []
        self._collector: threading.Thread | None = None

    def _endpoint(self, name: str) -> str:
        if self.transport == "tcp":
            return "tcp://127.0.0.1:0"
        assert self._tmp is not None
        return f"ipc://{self._tmp.name}/{name}.sock"

    def start(self) -> Endpoints:
        """Start the process and wait for its ready line."""
        self.begin()
        return self.wait_ready()

    def begin(self) -> Endpoints:
        """Start the process without waiting for it: the endpoints it will bind (with
        ``transport="ipc"`` the very ones; with tcp, port 0: ``wait_ready`` says which). Two
        servers, one in front of the other, can start at the same time this way."""
        self._tmp = tempfile.TemporaryDirectory(prefix="orderbus-server-")
        wanted = Endpoints(*(self._endpoint(n) for n in ("command", "events", "control")))
        self._spawn(wanted)
        return wanted

    def wait_ready(self) -> Endpoints:
        """Wait for the ready line of the process ``begin`` started: its endpoints."""
        if self.process is None or self.process.stdout is None:
            raise ServerProcessError(f"{self.name} was not begun")
        line = self._readline(self.process.stdout)
        try:
            ready = json.loads(line)
            self.endpoints = Endpoints(ready["command"], ready["events"], ready["control"])
            self.ready = ready
        except (ValueError, KeyError):
            self.stop()
            raise ServerProcessError(
                f"{self.name} did not start: {line!r}; stderr: {''.join(self._stderr_lines)}"
            ) from None
        return self.endpoints

    def terminate(self) -> None:
        """Ask the process to stop (SIGTERM) without waiting; ``stop`` then waits for it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def restart(self) -> Endpoints:
        """Start the server again on the endpoints it had (after it crashed or was killed, or
        after ``wait_exit``); a venue with a journal recovers from it."""
        if self.endpoints is None or self._tmp is None:
            raise ServerProcessError("the server was never started")
        if self.process is not None and self.process.poll() is None:
            raise ServerProcessError("the server is still running")
        self._close_pipes()
        return self._launch(self.endpoints)

    def wait_exit(self, timeout: float = 10.0) -> int:
        """Wait for the process to end by itself (a Crash fault); returns its exit code."""
        if self.process is None:
            raise ServerProcessError("the server is not running")
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise ServerProcessError(f"{self.name} still running after {timeout} s") from None

    @abstractmethod
    def _command(self, wanted: Endpoints) -> list[str]:
        """The command line that serves on ``wanted``."""

    def _launch(self, wanted: Endpoints) -> Endpoints:
        self._spawn(wanted)
        return self.wait_ready()

    def _spawn(self, wanted: Endpoints) -> None:
        assert self._tmp is not None
        command = self._command(wanted)
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self._collector = threading.Thread(
            target=self._collect, args=(self.process.stderr,), daemon=True
        )
        self._collector.start()

    def _collect(self, stream: IO[str]) -> None:
        for line in stream:
            self._stderr_lines.append(line)

    def _readline(self, stream: IO[str]) -> str:
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(stream.readline()), daemon=True)
        reader.start()
        reader.join(self.start_timeout)
        if not result:
            self.stop()
            raise ServerProcessError(f"{self.name} not ready within {self.start_timeout} s")
        return result[0]

    @property
    def stderr(self) -> str:
        """What the server wrote to stderr so far."""
        return "".join(self._stderr_lines)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait; SIGKILL if it hangs (and raise). Returns the exit code."""
        process, self.process = self.process, None
        code = 0
        try:
            if process is not None:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                try:
                    code = process.wait(timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                    message = f"{self.name} did not stop within {timeout} s"
                    raise ServerProcessError(message) from None
                finally:
                    self._close_pipes(process, timeout)
        finally:
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None
        return code

    def _close_pipes(
        self, process: subprocess.Popen[str] | None = None, timeout: float = 10.0
    ) -> None:
        process = process or self.process
        if self._collector is not None:
            self._collector.join(timeout)  # EOF once the process has exited
            self._collector = None
        if process is not None:
            for pipe in (process.stdout, process.stderr):
                if pipe is not None:
                    pipe.close()

    def kill(self) -> None:
        """End the process abruptly, as a crash would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class GatewayProcess(ServerProcess):
    """An ``orderbus gateway`` child process serving the ports ``port_factory`` makes
    (``package.module:callable``), with ``config`` given to the factory."""

    name = "gateway"

    def __init__(
        self,
        port_factory: str,
        config: Mapping[str, Any] | None = None,
        *,
        transport: str = "tcp",
        heartbeat: float = 0.5,
        start_timeout: float = 30.0,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        super().__init__(transport=transport, start_timeout=start_timeout)
        self.port_factory = port_factory
        self.config = config
        self.heartbeat = heartbeat
        self.extra_args = extra_args

    def _command(self, wanted: Endpoints) -> list[str]:
        command = [
            sys.executable, "-m", "bus.cli", "gateway",
            "--port-factory", self.port_factory,
            "--command", wanted.command,
            "--events", wanted.events,
            "--control", wanted.control,
            "--heartbeat", str(self.heartbeat),
            *self.extra_args,
        ]  # fmt: skip
        if self.config is not None:
            assert self._tmp is not None
            path = Path(self._tmp.name) / "gateway.json"
            path.write_text(json.dumps(self.config))
            command += ["--config", str(path)]
        return command
