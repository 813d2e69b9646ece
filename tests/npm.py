"""Node.js packages the tests need (the Node client, the docs' diagram checker), installed with
``npm ci`` once per lock file. Without ``node`` or ``npm`` the test is skipped, saying so."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

NPM_CI_TIMEOUT = 600.0
_STAMP = ".orderbus-package-lock.sha256"


def node_with_packages(directory: Path, purpose: str) -> str:
    """The node executable, with ``directory``'s locked dependencies installed."""
    node, npm = _tool("node", purpose), _tool("npm", purpose)
    stamp = directory / "node_modules" / _STAMP
    lock_hash = hashlib.sha256((directory / "package-lock.json").read_bytes()).hexdigest()
    if not (stamp.is_file() and stamp.read_text().strip() == lock_hash):
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--prefer-offline"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=NPM_CI_TIMEOUT,
            env={**os.environ, "npm_config_update_notifier": "false"},
        )
        assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
        stamp.write_text(lock_hash + "\n")
    return node


def _tool(name: str, purpose: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"`{name}` is not on PATH: {purpose}")
    return path
