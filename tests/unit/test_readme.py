"""README's code must run as printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_strategy_example_runs() -> None:
    (code,) = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split("\n")[:3] == ["1 accepted 0 10", "2 trade 4 6", "3 canceled 4 0"]


def test_quick_start_is_exactly_two_commands() -> None:
    quick_start = README.read_text().split("## Quick start", 1)[1].split("##", 1)[0]
    (block,) = re.findall(r"```sh\n(.*?)```", quick_start, re.S)
    assert [line.split("#")[0].strip() for line in block.strip().splitlines()] == [
        "python3 dev.py demo",
        "python3 dev.py test",
    ]
    assert "python3 dev.py test" in (README.parent / ".ci" / "run").read_text()
