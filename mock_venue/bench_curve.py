"""The CURVE side of ``orderbus bench``: keys, and what the report says about them.

The CURVE kinds run in the same rounds as the plain ones, against twins of the plain servers that
differ only by a key: a venue started with ``--server-key`` and ``--entitlements`` (ZAP admits
each connection, every request is authorized by its key), and a raw server whose sockets are
CURVE servers without ZAP. So ``raw_req_rep_curve / raw_req_rep`` is what CURVE itself costs,
and ``blocking_submit_ack_curve / blocking_submit_ack`` what it costs the bus, authorization
included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from bus.keyring import Keyring

CURVE = "_curve"  # the suffix of a kind measured against a CURVE server
LATENCY_KINDS = ("raw_req_rep", "blocking_submit_ack", "asyncio_submit_ack")
THROUGHPUT_KINDS = ("raw_pipelined", "asyncio_pipelined")
# The CURVE venue's ports act for the same strategies as the plain venue's: same frame sizes.
STRATEGIES = ("bench-blocking", "bench-asyncio")
RAW_CLIENT = "raw"


def bench_keyring(directory: Path) -> Keyring:
    """The CURVE servers' key, one key per port entitled to its strategy alone (as a deployment
    would have it), and one for the raw clients, which no ZAP checks."""
    ring = Keyring(directory, "venue")
    for strategy in STRATEGIES:
        ring.add(strategy, "strategy", [strategy])
    ring.add(RAW_CLIENT, entitled=False)
    return ring


def curve_figures(
    latency: dict[str, dict[str, float]], throughput: dict[str, int]
) -> tuple[dict[str, float], dict[str, Any]]:
    """The ratios to add to the report's ``ratios`` (CURVE over plain: above 1 for latency,
    below 1 for throughput; and CURVE kinds over raw CURVE), and its ``curve`` section."""
    ratios: dict[str, float] = {}
    for kind in LATENCY_KINDS:
        secure, plain = latency[kind + CURVE]["p50_us"], latency[kind]["p50_us"]
        ratios[f"{kind}{CURVE}_p50_vs_plain"] = round(secure / plain, 2)
    for kind in THROUGHPUT_KINDS:
        ratios[f"{kind}{CURVE}_vs_plain"] = round(throughput[kind + CURVE] / throughput[kind], 3)
    raw = latency["raw_req_rep" + CURVE]["p50_us"]
    for kind in LATENCY_KINDS[1:]:
        ratios[f"{kind}{CURVE}_p50_vs_raw{CURVE}"] = round(latency[kind + CURVE]["p50_us"] / raw, 2)
    ratios[f"pipelined{CURVE}_throughput_vs_raw{CURVE}"] = round(
        throughput["asyncio_pipelined" + CURVE] / throughput["raw_pipelined" + CURVE], 3
    )
    added = {
        kind: latency[kind + CURVE]["p50_us"] - latency[kind]["p50_us"] for kind in LATENCY_KINDS
    }
    return ratios, {"added_p50_us": added}


def curve_table(report: dict[str, Any]) -> Table:
    """Each CURVE kind beside its plain twin: CURVE over plain, and over raw CURVE (what the bus
    costs on top of what CURVE itself costs)."""
    table = Table(title="CURVE beside plain, same rounds (keys made before any clock started)")
    for column in ("measure", "plain", "CURVE", "CURVE / plain", "to raw CURVE"):
        table.add_column(column, justify="right")
    latency, tput = report["latency"], report["throughput_per_second"]
    raw_latency, raw_tput = latency["raw_req_rep" + CURVE]["p50_us"], tput["raw_pipelined" + CURVE]
    for kind in LATENCY_KINDS:
        plain, secure = latency[kind]["p50_us"], latency[kind + CURVE]["p50_us"]
        to_raw = "baseline" if kind == "raw_req_rep" else f"{secure / raw_latency:.2f}"
        table.add_row(kind, f"{plain} us", f"{secure} us", f"{secure / plain:.2f}", to_raw)
    for kind in THROUGHPUT_KINDS:
        plain, secure = tput[kind], tput[kind + CURVE]
        to_raw = "baseline" if kind == "raw_pipelined" else f"{secure / raw_tput:.1%}"
        table.add_row(kind, f"{plain}/s", f"{secure}/s", f"{secure / plain:.2f}", to_raw)
    return table
