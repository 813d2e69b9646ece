"""The docs site: mkdocs (Material) builds with --strict, works with no internet access, and
every diagram parses."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.npm import node_with_packages

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
CHECKER = ROOT / "tools" / "mermaid-check"
REQUIRED_PAGES = [
    "quickstart", "concepts", "port-api", "errors", "protocol", "faults", "testing",
    "deployment", "benchmarks", "sequences", "gateway",
]  # fmt: skip
# Sequence diagrams the docs must have, by page and a phrase of their heading.
REQUIRED_DIAGRAMS = {
    "sequences.md": [
        "Submit, waiting for the acknowledgement",
        "Submit without waiting",
        "Amend",
        "Cancel",
        "Cancel racing a fill",
    ],
    "concepts.md": ["The layers, and one order through them"],
    "gateway.md": ["The gateway: your own adapter behind the bus"],
    "faults.md": [
        "Dropped reply and idempotent retry",
        "Gap detection and replay",
        "Venue crash, restart and reconciliation",
    ],
}
# What a page loads (scripts, styles, fonts, images), not links a reader may follow.
EXTERNAL = re.compile(r"""<(script|link|img|iframe)\b[^>]*\b(src|href)=["']https?://""")


def _mermaid_sections(page: str) -> dict[str, int]:
    """Heading -> number of mermaid diagrams under it."""
    sections: dict[str, int] = {}
    heading = ""
    for line in (DOCS / page).read_text().splitlines():
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif line.strip() == "```mermaid":
            sections[heading] = sections.get(heading, 0) + 1
    return sections


def test_the_site_builds_strict_and_needs_no_internet(tmp_path: Path) -> None:
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    for page in REQUIRED_PAGES:
        assert (site / page / "index.html").is_file(), page
    mermaid = site / "assets" / "javascripts" / "mermaid.min.js"
    assert mermaid.stat().st_size > 1_000_000  # the real library, shipped with the site
    for html in site.rglob("*.html"):
        text = html.read_text()
        assert not EXTERNAL.search(text), f"{html} loads something from the internet"
        fences = text.count('<pre class="mermaid">')
        if fences:
            assert "assets/javascripts/mermaid.min.js" in text, html
    built = sum(p.read_text().count('<pre class="mermaid">') for p in site.rglob("*.html"))
    written = sum(p.read_text().count("```mermaid") for p in DOCS.glob("*.md"))
    assert built == written  # every diagram became one the page renders


def test_the_required_sequence_diagrams_are_there() -> None:
    for page, headings in REQUIRED_DIAGRAMS.items():
        sections = _mermaid_sections(page)
        for heading in headings:
            assert any(h.startswith(heading) for h in sections), (page, heading, list(sections))


def test_every_diagram_parses() -> None:
    node = node_with_packages(CHECKER, "the diagrams cannot be parsed with mermaid")
    done = subprocess.run(
        [node, str(CHECKER / "check.mjs"), *map(str, sorted(DOCS.glob("*.md")))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert '"invalid":0' in done.stdout
