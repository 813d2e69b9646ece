"""``VenueProcess``: start a venue as a separate OS process on free endpoints, and stop it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import yaml

from bus.server import Endpoints
from mock_venue.config import VenueConfig


class VenueProcessError(RuntimeError):
    """The venue process did not start, or did not stop when asked."""


class VenueProcess:
    """A ``mock-venue serve`` child process (``subprocess``, never fork of a live Context).

    ``transport="tcp"`` binds free loopback ports; ``"ipc"`` binds sockets in a private temporary
    directory. Use as a context manager, or ``start()`` / ``stop()``.
    """

    def __init__(
        self,
        config: VenueConfig | None = None,
        *,
        seed: int = 0,
        clock: str = "wall",
        transport: str = "tcp",
        heartbeat: float = 0.5,
        start_timeout: float = 30.0,
        journal: Path | None = None,
        scenario: Path | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        if transport not in ("tcp", "ipc"):
            raise ValueError("transport is 'tcp' or 'ipc'")
        self.config = config
        self.seed = seed
        self.clock = clock
        self.transport = transport
        self.heartbeat = heartbeat
        self.start_timeout = start_timeout
        self.journal = journal
        self.scenario = scenario
        self.extra_args = extra_args
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
        self._tmp = tempfile.TemporaryDirectory(prefix="orderbus-venue-")
        wanted = Endpoints(*(self._endpoint(n) for n in ("command", "events", "control")))
        return self._launch(wanted)

    def restart(self) -> Endpoints:
        """Start the venue again on the endpoints it had (after it crashed or was killed, or
        after ``wait_exit``); with a journal, it recovers from it."""
        if self.endpoints is None or self._tmp is None:
            raise VenueProcessError("the venue was never started")
        if self.process is not None and self.process.poll() is None:
            raise VenueProcessError("the venue is still running")
        self._close_pipes()
        return self._launch(self.endpoints)

    def wait_exit(self, timeout: float = 10.0) -> int:
        """Wait for the process to end by itself (a Crash fault); returns its exit code."""
        if self.process is None:
            raise VenueProcessError("the venue is not running")
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise VenueProcessError(f"venue still running after {timeout} s") from None

    def _launch(self, wanted: Endpoints) -> Endpoints:
        assert self._tmp is not None
        command = [
            sys.executable, "-m", "mock_venue.cli", "serve",
            "--command", wanted.command,
            "--events", wanted.events,
            "--control", wanted.control,
            "--seed", str(self.seed),
            "--clock", self.clock,
            "--heartbeat", str(self.heartbeat),
            *self.extra_args,
        ]  # fmt: skip
        if self.config is not None:
            path = Path(self._tmp.name) / "venue.yaml"
            path.write_text(yaml.safe_dump(self.config.model_dump(mode="json")))
            command += ["--config", str(path)]
        if self.journal is not None:
            command += ["--journal", str(self.journal)]
        if self.scenario is not None:
            command += ["--scenario", str(self.scenario)]
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
        line = self._readline(self.process.stdout)
        try:
            ready = json.loads(line)
            self.endpoints = Endpoints(ready["command"], ready["events"], ready["control"])
            self.ready = ready
        except (ValueError, KeyError):
            self.stop()
            raise VenueProcessError(
                f"venue did not start: {line!r}; stderr: {''.join(self._stderr_lines)}"
            ) from None
        return self.endpoints

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
            raise VenueProcessError(f"venue not ready within {self.start_timeout} s")
        return result[0]

    @property
    def stderr(self) -> str:
        """What the venue wrote to stderr so far."""
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
                    raise VenueProcessError(f"venue did not stop within {timeout} s") from None
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
