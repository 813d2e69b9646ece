"""A seeded fuzz of a venue process's command and control channels (issue 12, section 4).

Raw DEALERs send the messages of ``tests.fuzz`` to a real ``mock-venue serve``, pipelined
and interleaved between the channels. The venue must stay up; every message whose ``id`` is
readable (docs/protocol.md 2.2) gets exactly one reply, carrying that id, that is a typed error
or, when the mutation happened to leave a valid request, that request's answer; no reply comes
twice; messages without a readable id get at most one; a well-behaved client (the blocking port)
submits and cancels before and after; and the venue's RSS grows by less than ``rss_bound``
between the end of the warm-up and the end of the fuzz. A plaintext run, and a smaller CURVE one
that also fuzzes the control channel as a key that may not use it.

Environment (docs/testing.md):

- ``ORDERBUS_FUZZ_FRAMES``: messages of the plaintext run (default 20,000; 100,000 for the long
  run), three quarters to the command channel; the CURVE run sends a tenth as many.
- ``ORDERBUS_FUZZ_SEED``: the seed (default 12). The messages, and the order they are sent in,
  depend on it alone; what the venue answers a valid one can also depend on timing (a throttle
  fault injected by a control message may or may not have landed first).

Waits have deadlines (a venue that stops answering fails in ``tests.fuzz.runner.STALL``
seconds) and nothing sleeps. A failure names each kind of misbehaviour found, with the shortest
message that showed it (hex of each frame) and what the venue did.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from bus.blocking import BlockingOrderExecutionPort
from bus.curve import ClientKeys
from bus.keyring import Keyring
from bus.server import Endpoints
from mock_venue.control_client import BlockingControlClient
from mock_venue.process import VenueProcess
from ports import AckAction, CancelOrder, OrderStatus
from tests.contract.helpers import limit
from tests.contract.venue_setup import CONTRACT_VENUE
from tests.contract.venue_setup import SEED as VENUE_SEED
from tests.fuzz.checker import Socket, Stream
from tests.fuzz.frames import FrameGenerator
from tests.fuzz.packing import pack, timestamp
from tests.fuzz.reading import MAX_FRAME_BYTES, Channel, Stage, owed
from tests.fuzz.runner import Fuzz, dealer

FRAMES = int(os.environ.get("ORDERBUS_FUZZ_FRAMES", "20000"))
SEED = int(os.environ.get("ORDERBUS_FUZZ_SEED", "12"))
CURVE_FRAMES = max(1000, FRAMES // 10)

WAIT = 10.0  # seconds: the deadline of one call of the well-behaved client
WARM_UP = 0.1  # share of the messages sent before the RSS baseline
GOOD = "good"  # the well-behaved client's strategy; no fuzz message names it


def rss_bound(executed: int) -> int:
    """Bytes the venue's RSS may grow by over the fuzz after the warm-up. A venue keeps, for
    good, every event it published and answers to order requests for retries (docs 4.4, 5.3):
    2 KiB per request it executed (``executed``: replies past the body's validation; about
    1 KiB each was measured), above 8 MiB for the allocator's own growth (2.5 to 7 MiB measured
    at 20,000 messages). A leak of 250 bytes a message fails at 100,000 messages."""
    return 8 * 2**20 + 2048 * executed


def rss(pid: int) -> int:
    """Resident set size of process ``pid``, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def serve_well_behaved(endpoints: Endpoints, tag: str, keys: ClientKeys | None = None) -> None:
    """The blocking port submits an order and cancels it, each answered in time and right."""
    with BlockingOrderExecutionPort(
        GOOD,
        command=endpoints.command,
        events=endpoints.events,
        keys=keys,
        ack_timeout=WAIT,
        connect_timeout=WAIT,
    ) as port:
        ack = port.submit_order(limit(f"good-{tag}", strategy_id=GOOD))
        assert (ack.action, ack.order.status) == (AckAction.SUBMIT, OrderStatus.NEW)
        canceled = port.cancel_order(CancelOrder(strategy_id=GOOD, client_order_id=f"good-{tag}"))
        assert (canceled.action, canceled.order.status) == (AckAction.CANCEL, OrderStatus.CANCELED)


def run_fuzz(
    venue: VenueProcess,
    frames: int,
    *,
    fuzzer: ClientKeys | None = None,
    good: ClientKeys | None = None,
    outsider: ClientKeys | None = None,
) -> None:
    """The whole check against ``venue``: serve, warm up, measure, fuzz, measure, serve."""
    endpoints = venue.endpoints
    process = venue.process
    assert endpoints is not None
    assert process is not None
    serve_well_behaved(endpoints, "before", good)
    context: zmq.Context[Socket] = zmq.Context()
    try:
        streams = [
            Stream(
                "command",
                Channel.COMMAND,
                dealer(context, endpoints.command, fuzzer),
                FrameGenerator(SEED, Channel.COMMAND),
            ),
            Stream(
                "control",
                Channel.CONTROL,
                dealer(context, endpoints.control, fuzzer),
                FrameGenerator(SEED, Channel.CONTROL),
            ),
        ]
        shares = {"command": frames * 3 // 4, "control": frames - frames * 3 // 4}
        if outsider is not None:
            streams.append(
                Stream(
                    "control-outsider",
                    Channel.CONTROL,
                    dealer(context, endpoints.control, outsider),
                    FrameGenerator(SEED + 1, Channel.CONTROL, first_id=10**9),
                    refused=True,
                )
            )
            shares["control-outsider"] = shares["control"] // 4
        fuzz = Fuzz(venue, streams, frames, seed=SEED)
        started = time.monotonic()
        fuzz.run({name: max(1, int(count * WARM_UP)) for name, count in shares.items()})
        baseline, executed_before = rss(process.pid), sum(s.executed for s in streams)
        fuzz.run({name: count - max(1, int(count * WARM_UP)) for name, count in shares.items()})
        fuzz.check_alive()
        grown = rss(process.pid) - baseline
        executed = sum(s.executed for s in streams) - executed_before
        took = time.monotonic() - started
        summary = {s.name: (s.sent, dict(s.kinds.most_common(6))) for s in streams}
        print(f"fuzz seed {SEED}, {took:.1f} s: {summary}; RSS +{grown / 2**20:.1f} MiB, "
              f"{executed} executed")  # fmt: skip
        fuzz.assert_clean()
        assert grown < rss_bound(executed), (
            f"the venue's RSS grew by {grown / 2**20:.1f} MiB over the fuzz after warm-up "
            f"(bound {rss_bound(executed) / 2**20:.1f} MiB for {executed} requests executed)"
        )
    finally:
        context.destroy(linger=0)
    # Faults a control message put in force (a reject_orders for every strategy, a pause)
    # would refuse the well-behaved client for reasons of their own.
    with BlockingControlClient(endpoints.control, keys=fuzzer, timeout=WAIT) as control:
        control.clear_faults()
    serve_well_behaved(endpoints, "after", good)
    fuzz.check_alive()


@pytest.fixture
def venue() -> Iterator[VenueProcess]:
    with VenueProcess(CONTRACT_VENUE, seed=VENUE_SEED, clock="manual") as process:
        yield process


@pytest.mark.timeout(120 + FRAMES // 200)
def test_fuzzed_channels_get_one_typed_reply_each_and_the_venue_keeps_serving(
    venue: VenueProcess,
) -> None:
    run_fuzz(venue, FRAMES)


@pytest.mark.timeout(120 + CURVE_FRAMES // 100)
def test_fuzzed_channels_over_curve_and_a_key_refused_the_control_channel(tmp_path: Path) -> None:
    ring = Keyring(tmp_path)
    fuzzer = ring.add("fuzzer", "admin", ["fz-*"])  # may control; writes for fz-* only
    outsider = ring.add("outsider", "strategy", ["fz-*"])  # may not use the control channel
    good = ring.add("good", "strategy", [GOOD])
    with VenueProcess(
        CONTRACT_VENUE, seed=VENUE_SEED, clock="manual", extra_args=ring.server_args()
    ) as venue:
        assert venue.ready["security"] == "curve"
        run_fuzz(venue, CURVE_FRAMES, fuzzer=fuzzer, good=good, outsider=outsider)


# --- the generator and the reading of the documents (no venue) -----------------------------------


def _hex(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


# docs/protocol.md 7.11: sync with v 2 (id 12), cancel_order with a bad client_order_id (id 13).
SYNC_V2 = _hex(
    "85a17602a174a473796e63a269640ca163a26331a16281ab7374726174656779"
    "5f6964a27331"
)  # fmt: skip
CANCEL_INVALID = _hex(
    "85a17601a174ac63616e63656c5f6f72646572a269640da163a26331a16282af"
    "636c69656e745f6f726465725f6964a36f2031ab73747261746567795f6964a2"
    "7331"
)  # fmt: skip


def test_owed_reads_the_documents_worked_examples() -> None:
    version = owed(Channel.COMMAND, [SYNC_V2])
    assert (version.request_id, version.stage, version.delimited) == (12, Stage.PROTOCOL, False)
    invalid = owed(Channel.COMMAND, [CANCEL_INVALID])
    assert (invalid.request_id, invalid.stage, invalid.answers) == (13, Stage.BODY, {"ack"})
    as_req = owed(Channel.COMMAND, [b"", CANCEL_INVALID])
    assert (as_req.request_id, as_req.delimited) == (13, True)
    on_control = owed(Channel.CONTROL, [CANCEL_INVALID])  # a port type there: unknown
    assert (on_control.request_id, on_control.stage) == (13, Stage.PROTOCOL)


def test_owed_finds_the_id_before_the_damage_only() -> None:
    frame = pack({"v": 1, "t": "sync", "id": 7, "c": "c1", "b": {"strategy_id": "s1"}})
    id_ends = frame.index(b"\xa2id\x07") + 4
    assert owed(Channel.COMMAND, [frame[:id_ends]]).request_id == 7
    assert owed(Channel.COMMAND, [frame[: id_ends - 1]]).request_id is None
    assert owed(Channel.COMMAND, [frame + b"\x00"]).request_id == 7  # trailing bytes
    late = pack({"b": timestamp(-(1 << 62)), "id": 7, "v": 1, "t": "sync"})
    assert owed(Channel.COMMAND, [late]).request_id == 7  # out of range, but readable
    too_deep = b"\x91" * 1025 + b"\xc0"  # deeper than msgpack reads
    deep_first = pack({"v": 1, "b": {"x": [[[]]]}, "id": 7}).replace(b"\x91\x91\x90", too_deep)
    assert owed(Channel.COMMAND, [deep_first]).request_id is None
    deep_last = pack({"v": 1, "id": 7, "b": {"x": [[[]]]}}).replace(b"\x91\x91\x90", too_deep)
    assert owed(Channel.COMMAND, [deep_last]).request_id == 7


def test_owed_by_layout_size_and_envelope() -> None:
    frame = pack({"v": 1, "t": "sync", "id": 7, "b": {"strategy_id": "s1"}})
    two = owed(Channel.COMMAND, [frame, frame])
    assert (two.answered, two.request_id, two.stage, two.delimited) == (
        True, None, Stage.FRAMING, False,
    )  # fmt: skip
    assert owed(Channel.COMMAND, [b"", frame, frame]).delimited
    assert not owed(Channel.CONTROL, [b"", frame]).answered
    padded = pack({"v": 1, "t": "sync", "id": 7, "b": {}, "x": "x" * MAX_FRAME_BYTES})
    assert owed(Channel.COMMAND, [padded]).request_id is None
    for envelope, request_id in [
        ({"v": True, "t": "sync", "id": 7, "b": {}}, 7),
        ({"v": 1, "t": "sync", "id": True, "b": {}}, None),
        ({"v": 1, "t": "sync", "id": 7, "c": 5, "b": {}}, 7),
        ({"v": 1, "t": "sync", "id": 7, "b": {}, "x": 1}, 7),
        ({"v": 1, "t": b"sync", "id": 7, "b": {}}, 7),
    ]:
        refused = owed(Channel.COMMAND, [pack(envelope)])
        assert (refused.request_id, refused.stage) == (request_id, Stage.PROTOCOL), envelope
    nameless = owed(Channel.COMMAND, [pack({"v": 1, "t": "sync", "b": {}})])
    assert (nameless.request_id, nameless.stage, nameless.answers) == (None, Stage.BODY, set())
    control = owed(Channel.CONTROL, [pack({"v": 1, "t": "get_status", "b": {}})])
    assert (control.request_id, control.answers) == (None, {"venue_status"})


def test_the_generator_is_seeded_and_writes_each_id_once() -> None:
    for channel in Channel:
        first = [FrameGenerator(3, channel).next() for _ in range(500)]
        again = [FrameGenerator(3, channel).next() for _ in range(500)]
        other = [FrameGenerator(4, channel).next() for _ in range(500)]
        assert [m.frames for m in first] == [m.frames for m in again]
        assert [m.frames for m in first] != [m.frames for m in other]
        generator = FrameGenerator(3, channel)
        messages = [generator.next() for _ in range(3000)]
        ids = [rid for m in messages if not m.resend for rid in m.ids]
        assert len(ids) == len(set(ids))
        assert 30 < sum(m.resend for m in messages) < 200
        stages = Counter(m.owed.stage for m in messages)
        assert all(stages[stage] > 100 for stage in Stage), stages
        readable = sum(m.owed.request_id is not None for m in messages)
        assert 0.3 * len(messages) < readable < 0.9 * len(messages)
