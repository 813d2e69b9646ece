"""``FrameGenerator``: the seeded fuzz messages of one channel, each with what it is owed.

The same seed gives the same messages: valid requests (``tests.fuzz.valid``), their
mutations and garbage (``tests.fuzz.mutations``), resends of recent messages, and checkpoints.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

from tests.fuzz.mutations import Mutator
from tests.fuzz.packing import pack
from tests.fuzz.reading import Channel, Owed, owed
from tests.fuzz.valid import Requests


@dataclass(frozen=True, slots=True)
class Fuzzed:
    """One message: its frames, how it was made, every request id written into it, and what
    the documents say the venue owes it (again, if it is a resend)."""

    frames: tuple[bytes, ...]
    kind: str
    ids: tuple[int, ...]
    owed: Owed
    resend: bool = False  # the same frames as an earlier message

    def hex(self) -> str:
        return " | ".join(f.hex() for f in self.frames)


class FrameGenerator:
    """Fuzz messages for one channel, from ``seed``. Request ids count up from ``first_id`` and
    are never written twice (a resend repeats a whole message), so each reply names one
    message. Orders go to strategy ``strategy``; queries that return every open order mostly
    name ``quiet``, which has none, so their replies stay small."""

    def __init__(
        self,
        seed: int,
        channel: Channel,
        *,
        first_id: int = 1,
        client_id: str = "fuzzer",
        strategy: str = "fz-o",
        quiet: str = "fz-q",
    ) -> None:
        self.channel = channel
        self._rng = random.Random(f"orderbus-fuzz/{seed}/{channel.value}")
        self._requests = Requests(
            self._rng,
            channel,
            first_id=first_id,
            client_id=client_id,
            strategy=strategy,
            quiet=quiet,
        )
        self._mutator = Mutator(self._rng, self._requests)
        self._recent: deque[Fuzzed] = deque(maxlen=64)  # what a resend repeats

    def checkpoint(self) -> Fuzzed:
        """A well-formed request whose answer goes out after those of everything sent before
        it (``Requests.checkpoint``)."""
        frames = (self._requests.checkpoint(),)
        return Fuzzed(frames, "checkpoint", tuple(self._requests.ids), owed(self.channel, frames))

    def next(self) -> Fuzzed:
        """The next message. Now and then (``resend``) one sent a little earlier, as it was:
        a retry, answered again (from the reply store if the first answer was kept)."""
        if self._recent and self._rng.random() < 0.03:
            again = self._rng.choice(self._recent)
            return Fuzzed(again.frames, f"resend:{again.kind}", again.ids, again.owed, resend=True)
        while True:
            message = self._next()
            rid = message.owed.request_id
            if rid is None or rid in message.ids:
                self._recent.append(message)
                return message

    def _next(self) -> Fuzzed:
        self._requests.start()
        rng, mutator = self._rng, self._mutator
        roll = rng.random()
        frames: tuple[bytes, ...]
        if roll < 0.08:
            kind, frames = "valid", (pack(self._requests.valid()[1]),)
        elif roll < 0.66:
            kind, envelope = mutator.mutated()
            frames = (pack(envelope),)
        elif roll < 0.78:
            kind, frame = mutator.damaged()
            frames = (frame,)
        elif roll < 0.83:
            kind, frames = "random-msgpack", (pack(mutator.random_value(3, top=True)),)
        elif roll < 0.87:
            kind, frames = "random-bytes", (rng.randbytes(rng.choice((1, 2, 5, 20, 300))),)
        elif roll < 0.89:
            kind, frames = "empty", (b"",)
        elif roll < 0.997:
            kind, frames = mutator.multi_frame()
        else:
            kind, frames = mutator.oversize()
        return Fuzzed(frames, kind, tuple(self._requests.ids), owed(self.channel, frames))
