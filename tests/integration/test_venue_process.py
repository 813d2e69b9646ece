"""The venue as a process: shutdown, liveness, transports, its command line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import zmq

from bus.blocking import BlockingOrderExecutionPort
from bus.client import ZmqOrderExecutionPort
from bus.codec import decode, encode
from mock_venue.process import VenueProcess
from ports import Acknowledgement, AckTimeoutError, Outcome, PortState
from tests.contract.helpers import limit
from tests.contract.venue_setup import CONTRACT_VENUE

WAIT = 10.0


def test_sigterm_under_load_answers_every_request_it_took_and_exits() -> None:
    venue = VenueProcess(CONTRACT_VENUE)
    endpoints = venue.start()
    process = venue.process
    assert process is not None
    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.connect(endpoints.command)
    try:
        for n in range(2000):  # pipelined: most are still in flight when the signal lands
            dealer.send(encode(limit(f"o{n}", "MAN", 10, "10.00"), request_id=n, client_id="c"))
        process.send_signal(signal.SIGTERM)
        assert process.wait(WAIT) == 0  # no hang
        replies = set()
        while dealer.poll(500):
            envelope = decode(dealer.recv(), max_bytes=None)
            assert isinstance(envelope.body, Acknowledgement)
            replies.add(envelope.request_id)
        handled = json.loads(venue.stderr.strip().splitlines()[-1])["requests"]
        assert handled > 0
        assert len(replies) == handled  # every request the venue took was answered
    finally:
        context.destroy(linger=0)
        venue.stop()


def test_a_burst_is_answered_in_full_and_heartbeats_never_run_ahead_of_the_events() -> None:
    """The venue sends a burst's outputs together: every reply still comes, the events come
    gapless and in order, and no heartbeat announces an event before it is published."""
    from bus.codec import Heartbeat, strategy_topic
    from ports import ExecutionReport
    from tests.contract.helpers import STRATEGY

    with VenueProcess(CONTRACT_VENUE, heartbeat=0.005) as venue:
        assert venue.endpoints is not None
        context = zmq.Context()
        dealer, sub = context.socket(zmq.DEALER), context.socket(zmq.SUB)
        try:
            sub.setsockopt(zmq.SUBSCRIBE, strategy_topic(STRATEGY))  # its heartbeats too
            sub.connect(venue.endpoints.events)
            dealer.connect(venue.endpoints.command)
            assert sub.poll(int(WAIT * 1000))  # subscribed: heartbeats arrive
            count, published, announced = 300, 0, 0
            replies: set[int | None] = set()
            for n in range(count):  # filled at once: each order's events follow its reply
                order = limit(f"burst{n}", "IMM", 10, "100.00")
                dealer.send(encode(order, request_id=n, client_id="c"))
            deadline = time.monotonic() + WAIT
            while (len(replies) < count or published < 2 * count) and time.monotonic() < deadline:
                if dealer.poll(0):
                    replies.add(decode(dealer.recv(), max_bytes=None).request_id)
                    continue
                if not sub.poll(50):
                    continue
                _, frame = sub.recv_multipart()
                body = decode(frame, max_bytes=None).body
                if isinstance(body, Heartbeat):
                    assert set(body.seqs) == {STRATEGY}  # its own stream's number only
                    announced = body.seqs[STRATEGY]
                    assert announced <= published, "a heartbeat ran ahead of the events"
                else:
                    assert isinstance(body, ExecutionReport)
                    assert body.seq == published + 1  # gapless, in order
                    published = body.seq
            assert replies == set(range(count))
            assert published >= 2 * count  # accepted and filled, each
        finally:
            context.destroy(linger=0)


async def _next_state(changes: AsyncIterator[PortState]) -> PortState:
    async with asyncio.timeout(WAIT):
        return await anext(changes)


async def test_a_frozen_venue_shows_as_reconnecting_and_the_port_recovers() -> None:
    with VenueProcess(CONTRACT_VENUE, heartbeat=0.05) as venue:
        assert venue.endpoints is not None
        assert venue.process is not None
        port = ZmqOrderExecutionPort(
            "s1",
            command=venue.endpoints.command,
            events=venue.endpoints.events,
            heartbeat_interval=0.05,
            liveness=4,
            ack_timeout=0.3,
        )
        async with port:
            changes = port.state_changes()
            updates = port.updates()
            venue.process.send_signal(signal.SIGSTOP)
            try:
                assert await _next_state(changes) is PortState.RECONNECTING
                with pytest.raises(AckTimeoutError) as caught:
                    await port.submit_order(limit("frozen", "IMM", 10, "100.00"))
                assert caught.value.outcome is Outcome.UNKNOWN
            finally:
                venue.process.send_signal(signal.SIGCONT)
            assert await _next_state(changes) is PortState.CONNECTED
            # The order sent while the venue was frozen was past its deadline when it thawed:
            # refused, never executed, so the stream's first event is the next order's.
            await port.submit_order(limit("after", "IMM", 10, "100.00"))
            accepted = await updates.get(timeout=WAIT)
            assert (accepted.client_order_id, accepted.seq) == ("after", 1)


def test_the_venue_serves_over_ipc() -> None:
    with VenueProcess(CONTRACT_VENUE, transport="ipc") as venue:
        assert venue.endpoints is not None
        assert venue.endpoints.command.startswith("ipc://")
        with BlockingOrderExecutionPort(
            "s1", command=venue.endpoints.command, events=venue.endpoints.events
        ) as port:
            updates = port.updates()
            port.submit_order(limit("o1", "IMM", 10, "100.00"))
            assert [updates.get(timeout=WAIT).status.value for _ in range(2)] == ["new", "filled"]


def _cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mock_venue.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--instrument", "NOPRICE"], "SYMBOL:PRICE"),
        (["--instrument", "X:1:teleport"], "MODEL one of"),
        (["--instrument", "X:-5"], "greater than 0"),
        (["--config", "/nonexistent/venue.yaml"], "cannot read"),
        (["--command", "bogus://where"], "cannot bind"),
    ],
)
def test_serve_refuses_bad_options_clearly(args: list[str], says: str) -> None:
    done = _cli("serve", *args)
    assert done.returncode != 0
    assert says in done.stderr


def test_serve_reads_a_config_file_and_reports_what_it_bound(tmp_path: Path) -> None:
    config = tmp_path / "venue.yaml"
    config.write_text(
        "venue_id: TEST\n"
        "instruments:\n"
        "  - {symbol: ZED, reference_price: '5.00', fill_model: {kind: sliced, slices: 2}}\n"
    )
    process = subprocess.Popen(
        [
            sys.executable, "-m", "mock_venue.cli", "serve", "--config", str(config),
            "--command", "tcp://127.0.0.1:0", "--events", "tcp://127.0.0.1:0",
            "--control", "tcp://127.0.0.1:0", "--instrument", "EXTRA:1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline())
        assert ready["instruments"] == ["ZED", "EXTRA"]
        assert not ready["command"].endswith(":0")
        status = _cli("status", "--control", ready["control"], "--json")
        assert json.loads(status.stdout)["venue_id"] == "TEST"
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(WAIT) == 0
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


def test_status_says_when_no_venue_answers() -> None:
    started = time.monotonic()
    done = _cli("status", "--control", "tcp://127.0.0.1:9", "--timeout", "0.5")
    assert done.returncode != 0
    assert "no venue answered" in done.stderr
    assert time.monotonic() - started < 20


def test_peers_vanishing_mid_burst_do_not_take_the_venue_down() -> None:
    """With ZMTP heartbeats on, libzmq 4.3.5 aborted the process here about one time in four."""
    with VenueProcess(CONTRACT_VENUE) as venue:
        assert venue.endpoints is not None
        assert venue.process is not None
        for _ in range(6):
            context = zmq.Context()
            try:
                peers = [context.socket(zmq.DEALER) for _ in range(2)]
                for peer in peers:
                    peer.connect(venue.endpoints.command)
                deadline = time.monotonic() + 0.3
                while time.monotonic() < deadline:  # a burst of garbage, replies never read
                    for peer in peers:
                        with contextlib.suppress(zmq.Again):  # not connected yet, or at its HWM
                            peer.send(b"\xc1 garbage", zmq.NOBLOCK)
            finally:
                context.destroy(linger=0)  # the peers vanish mid-burst
        with BlockingOrderExecutionPort(
            "s1", command=venue.endpoints.command, events=venue.endpoints.events
        ) as port:
            assert (
                port.submit_order(limit("alive", "IMM", 10, "100.00")).order.client_order_id
                == "alive"
            )
        assert venue.process.poll() is None


@pytest.mark.parametrize(
    "command",
    [
        {"v": 1, "t": "advance", "id": 1, "b": {"seconds": float("inf")}},
        {"v": 1, "t": "advance", "id": 1, "b": {"seconds": 1e300}},
        {
            "v": 1,
            "t": "inject_fault",
            "id": 1,
            "b": {"fault": {"kind": "delay_acks", "delay": 1e300}},
        },
        {"v": 1, "t": "done", "id": 1, "b": {}},
    ],
)
def test_out_of_range_control_commands_are_refused_and_the_venue_keeps_serving(
    command: dict[str, object],
) -> None:
    import msgpack

    from mock_venue.control import CONTROL_MODELS

    with VenueProcess(CONTRACT_VENUE, clock="manual") as venue:
        assert venue.endpoints is not None
        context = zmq.Context()
        control = context.socket(zmq.DEALER)
        control.connect(venue.endpoints.control)
        try:
            control.send(msgpack.packb(command))
            assert control.poll(int(WAIT * 1000))
            reply = decode(control.recv(), models=CONTROL_MODELS, max_bytes=None)
            assert reply.type == "error"
            assert reply.request_id == 1
        finally:
            context.destroy(linger=0)
        with BlockingOrderExecutionPort(
            "s1", command=venue.endpoints.command, events=venue.endpoints.events
        ) as port:
            assert (
                port.submit_order(limit("after", "IMM", 10, "100.00")).order.status.value == "new"
            )


def test_watch_ends_cleanly_on_sigterm_even_while_it_catches_up() -> None:
    with VenueProcess(CONTRACT_VENUE) as venue:
        assert venue.endpoints is not None
        context = zmq.Context()
        try:  # a backlog for the watch to replay and decode when the signal lands
            dealer = context.socket(zmq.DEALER)
            dealer.connect(venue.endpoints.command)
            for n in range(1500):
                dealer.send(
                    encode(limit(f"b{n}", "IMM", 10, "100.00"), request_id=n, client_id="c")
                )
            for _ in range(1500):
                assert dealer.poll(int(WAIT * 1000))
                dealer.recv()
        finally:
            context.destroy(linger=0)
        watch = subprocess.Popen(
            [
                sys.executable, "-c", "from bus.cli import main; main()",
                "watch", "--plain",
                "--command", venue.endpoints.command, "--events", venue.endpoints.events,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        assert watch.stdout is not None
        line = watch.stdout.readline()  # it is up and printing the backlog, one line per event
        assert " s1 b0 accepted " in line
        watch.send_signal(signal.SIGTERM)
        _, stderr = watch.communicate(timeout=WAIT)
        assert watch.returncode == 0, stderr
