"""``Fuzz``: the streams' messages interleaved (seeded), each stream with a bounded window of
checkpoints in flight; waits with deadlines, and a report of what went wrong."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping

import pytest
import zmq

from bus.curve import ClientKeys
from mock_venue.process import VenueProcess
from tests.fuzz.checker import AHEAD, CHECKPOINT_EVERY, Failure, Socket, Stream

STALL = 10.0  # seconds without a reply, while replies are owed, before the venue is judged stuck
GRACE = 2.0  # seconds a reply still owed after the last checkpoint's answer is waited for
EXAMPLES = 4  # messages shown for each kind of failure


class Fuzz:
    """Interleaves the streams' messages (seeded: ``seed`` is the streams' generators' seed,
    named in failures), with a bounded window each."""

    def __init__(
        self, venue: VenueProcess, streams: list[Stream], frames: int, *, seed: int
    ) -> None:
        self.venue = venue
        self.streams = streams
        self.frames = frames
        self.seed = seed
        self._rng = random.Random(f"orderbus-fuzz/{seed}/interleave")
        self._poller = zmq.Poller()
        for stream in streams:
            self._poller.register(stream.socket, zmq.POLLIN)

    def run(self, counts: Mapping[str, int]) -> None:
        """Send ``counts[stream.name]`` fuzz messages on each stream, then a barrier."""
        left = {s.name: counts.get(s.name, 0) for s in self.streams}
        by_name = {s.name: s for s in self.streams}
        while any(left.values()):
            names = [n for n, k in left.items() if k]
            stream = by_name[self._rng.choices(names, [left[n] for n in names])[0]]
            if stream.since_checkpoint >= CHECKPOINT_EVERY:
                stream.send_checkpoint()
            if len(stream.checkpoints) > AHEAD:
                self._wait(lambda: len(stream.checkpoints) > AHEAD)  # noqa: B023 (called now)
            stream.send(stream.generator.next())
            stream.since_checkpoint += 1
            left[stream.name] -= 1
        self.barrier()

    def barrier(self) -> None:
        """Wait for a checkpoint's answer on every stream, then up to ``GRACE`` s more for any
        reply still owed (replies to one peer are not promised in order), then read what else
        is waiting."""
        for stream in self.streams:
            stream.send_checkpoint()
        self._wait(lambda: any(s.checkpoints for s in self.streams))
        self._wait(lambda: any(s.pending for s in self.streams), give_up=GRACE)
        for stream in self.streams:
            stream.take()

    def _wait(self, waiting: Callable[[], bool], *, give_up: float | None = None) -> None:
        """Take replies while ``waiting()``. Fails if the venue dies, or sends nothing for
        ``STALL`` s; with ``give_up``, returns after that long without progress instead (and
        ``settle`` names what is missing)."""
        last = time.monotonic()
        while waiting():
            ready = dict(self._poller.poll(50))
            progress = sum(s.take() for s in self.streams if s.socket in ready)
            now = time.monotonic()
            if progress:
                last = now
                continue
            self.check_alive()
            if give_up is not None and now - last > give_up:
                return
            if now - last > STALL:
                pytest.fail(f"the venue stopped answering for {STALL} s\n{self.report()}")

    def check_alive(self) -> None:
        process = self.venue.process
        assert process is not None
        code = process.poll()
        if code is not None:  # one of the messages in flight killed it
            recent = "\n".join(
                f"  {s.name} {m.kind}: {m.hex()[:400]}" for s in self.streams for m in s.recent
            )
            pytest.fail(
                f"the venue died (exit code {code}, seed {self.seed}); the last messages sent:\n"
                f"{recent}\nstderr:\n{self.venue.stderr[-4000:]}"
            )

    def report(self) -> str:
        """Each kind of failure: how often, and the shortest messages that showed it (up to
        ``EXAMPLES``, one per way of making it) with what the venue did."""
        groups: dict[str, list[Failure]] = {}
        for stream in self.streams:
            for failure in stream.failures:
                groups.setdefault(failure.category, []).append(failure)
        lines = [f"seed {self.seed} (ORDERBUS_FUZZ_SEED), {self.frames} messages:"]
        for category, failures in sorted(groups.items()):
            lines.append(f"- {category}: {len(failures)} times; e.g.")
            shown: set[str] = set()
            for failure in sorted(failures, key=_size):
                how = "" if failure.message is None else failure.message.kind
                if how in shown or len(shown) == EXAMPLES:
                    continue
                shown.add(how)
                if failure.message is None:
                    lines.append("    sent: (not known: the reply has no id)")
                else:
                    lines.append(f"    sent ({how}): {failure.message.hex()[:600]}")
                lines.append(f"    got: {failure.detail}")
        return "\n".join(lines)

    def assert_clean(self) -> None:
        for stream in self.streams:
            stream.settle()
        assert not any(s.failures for s in self.streams), self.report()


def dealer(context: zmq.Context[Socket], endpoint: str, keys: ClientKeys | None) -> Socket:
    socket: Socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.SNDTIMEO, int(STALL * 1000))  # a venue that stops reading fails
    if keys is not None:
        keys.apply(socket)
    socket.connect(endpoint)
    return socket


def _size(failure: Failure) -> int:
    return 0 if failure.message is None else sum(len(f) for f in failure.message.frames)
