"""``VenueProcess``: start a venue as a separate OS process on free endpoints, and stop it."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from bus.process import ServerProcess, ServerProcessError
from bus.server import Endpoints
from mock_venue.config import VenueConfig

VenueProcessError = ServerProcessError


class VenueProcess(ServerProcess):
    """A ``mock-venue serve`` child process (see ``bus.process.ServerProcess``)."""

    name = "venue"

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
        super().__init__(transport=transport, start_timeout=start_timeout)
        self.config = config
        self.seed = seed
        self.clock = clock
        self.heartbeat = heartbeat
        self.journal = journal
        self.scenario = scenario
        self.extra_args = extra_args

    def _command(self, wanted: Endpoints) -> list[str]:
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
            assert self._tmp is not None
            path = Path(self._tmp.name) / "venue.yaml"
            path.write_text(yaml.safe_dump(self.config.model_dump(mode="json")))
            command += ["--config", str(path)]
        if self.journal is not None:
            command += ["--journal", str(self.journal)]
        if self.scenario is not None:
            command += ["--scenario", str(self.scenario)]
        return command
