#!/usr/bin/env python3
"""Set up a local virtual environment and run orderbus's main job or its whole test suite.

Usage (from the repository root, with only Python 3.11+ and pip on the machine):

    python3 dev.py demo     # set up, then run the main job
    python3 dev.py test     # set up, then ruff, mypy and pytest (what CI runs)

Extra arguments after ``test`` go to pytest, after ``demo`` to the demo.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".orderbus-installed"


def _run(*cmd: str | Path) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], cwd=ROOT, check=True)


def setup() -> None:
    """Create .venv and install orderbus with its dev extra, once per pyproject.toml change."""
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py runs on whatever python3 is
        sys.exit(f"orderbus needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not PY.exists():
        print(f"creating virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == digest:
        return
    _run(PY, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-e", ".[dev]")
    STAMP.write_text(digest)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"demo", "test", "setup"}:
        print(__doc__)
        return 2
    setup()
    command, extra = argv[0], argv[1:]
    try:
        if command == "demo":
            _run(PY, "-m", "mock_venue.demo", *extra)
        elif command == "test":
            _run(PY, "-m", "ruff", "check", ".")
            _run(PY, "-m", "ruff", "format", "--check", ".")
            _run(PY, "-m", "mypy")
            _run(PY, "-m", "pytest", *extra)
    except subprocess.CalledProcessError as exc:
        return exc.returncode or 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
