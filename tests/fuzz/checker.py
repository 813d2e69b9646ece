"""``Stream``: one fuzzing DEALER, the replies the documents say it is owed, and each reply
judged as it comes (exactly one per readable id, carrying it, a typed error or the request's
answer; none twice; at most one per message without a readable id)."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field

import msgpack
import zmq
from pydantic import BaseModel

from bus.codec import MODELS, WireError, decode
from mock_venue.control import CONTROL_MODELS
from ports import ErrorReason, Rejection
from tests.fuzz.frames import FrameGenerator, Fuzzed
from tests.fuzz.reading import Channel, Stage

CHECKPOINT_EVERY = 100  # messages between two checkpoints of one channel
AHEAD = 3  # checkpoints of one channel unanswered before it waits: about 300 messages in flight
LAST_RESORT = "the venue could not process this"  # how bus.server answers what made it raise

Socket = zmq.Socket[bytes]


@dataclass
class Failure:
    category: str
    message: Fuzzed | None
    detail: str


@dataclass
class Stream:
    """One fuzzing DEALER on one channel, and what the venue owes it. ``refused``: its key may
    not use the channel, so every answer is ``not_authorized``."""

    name: str
    channel: Channel
    socket: Socket
    generator: FrameGenerator
    refused: bool = False
    pending: Counter[int] = field(default_factory=Counter)  # replies owed, by id
    by_id: dict[int, Fuzzed] = field(default_factory=dict)  # the message each id names
    written: dict[int, Fuzzed] = field(default_factory=dict)  # every id in any message
    idless_owed: Counter[bool] = field(default_factory=Counter)  # by "delimited"
    idless_replies: Counter[bool] = field(default_factory=Counter)
    checkpoints: deque[int] = field(default_factory=deque)
    since_checkpoint: int = 0
    sent: int = 0
    executed: int = 0  # replies that are answers, or errors past the body's validation
    kinds: Counter[str] = field(default_factory=Counter)  # reply type or error reason
    recent: deque[Fuzzed] = field(default_factory=lambda: deque(maxlen=AHEAD * CHECKPOINT_EVERY))
    failures: list[Failure] = field(default_factory=list)

    @property
    def models(self) -> Mapping[str, type[BaseModel]]:
        return MODELS if self.channel is Channel.COMMAND else CONTROL_MODELS

    def send(self, message: Fuzzed) -> None:
        self.socket.send_multipart(list(message.frames))
        self.sent += 1
        self.recent.append(message)
        for rid in message.ids:
            self.written[rid] = message
        owed = message.owed
        if owed.request_id is not None:
            known = self.by_id.setdefault(owed.request_id, message)
            assert known.frames == message.frames, "the generator wrote an id twice"
            self.pending[owed.request_id] += 1
        elif owed.answered:
            self.idless_owed[owed.delimited] += 1

    def send_checkpoint(self) -> None:
        message = self.generator.checkpoint()
        assert message.owed.request_id is not None
        self.checkpoints.append(message.owed.request_id)
        self.since_checkpoint = 0
        self.send(message)

    def take(self) -> int:
        """Read and judge every reply waiting; returns how many."""
        count = 0
        while True:
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return count
            count += 1
            self._judge(frames)

    def _fail(self, category: str, message: Fuzzed | None, detail: str) -> None:
        self.failures.append(Failure(f"{self.name}: {category}", message, detail))

    def _judge(self, frames: list[bytes]) -> None:
        if len(frames) == 2 and frames[0] == b"":
            delimited, data = True, frames[1]
        elif len(frames) == 1:
            delimited, data = False, frames[0]
        else:
            self._fail("a reply of several frames", None, " | ".join(f.hex() for f in frames))
            return
        try:
            reply = decode(data, models=self.models, max_bytes=None)
        except WireError as error:
            self._fail("a reply that is not a typed message", self._sender(data), f"{error}")
            return
        body = reply.body
        reason = body.reason if isinstance(body, Rejection) else None
        self.kinds[reply.type if reason is None else reason.value] += 1
        rid = reply.request_id
        if isinstance(body, Rejection) and body.message.startswith(LAST_RESORT):
            # Answered as docs/protocol.md 9 says, but the frame made the venue raise: a
            # malformed frame should be refused by the checks, not by an exception.
            self._fail("the venue raised (its last resort answered)", self.by_id.get(rid or -1),
                       _said(reply.type, body))  # fmt: skip
        if rid is None:
            self.idless_replies[delimited] += 1
            if self.channel is Channel.COMMAND and reason is None:
                self._fail("an answer without an id", None, _said(reply.type, body))
            return
        message = self.by_id.get(rid)
        if message is None or not self.pending[rid]:
            self.pending.pop(rid, None)
            if message is not None:
                self._fail("a second reply", message, _said(reply.type, body))
            elif rid in self.written:
                detail = f"replied with id {rid}: {_said(reply.type, body)}"
                self._fail("an id in a reply that docs/protocol.md 2.2 says is unreadable",
                           self.written[rid], detail)  # fmt: skip
            else:
                self._fail("a reply with an id never sent", None, f"id {rid}")
            return
        self.pending[rid] -= 1
        if not self.pending[rid]:
            del self.pending[rid]
        if self.checkpoints and self.checkpoints[0] == rid:
            self.checkpoints.popleft()
        elif rid in self.checkpoints:
            self.checkpoints.remove(rid)  # not promised in order
        owed = message.owed
        said = _said(reply.type, body)
        if delimited != owed.delimited:
            wanted = "after an empty frame" if owed.delimited else "without an empty frame"
            self._fail(f"a reply not {wanted}", message, said)
        if self.refused:
            if reason is not ErrorReason.NOT_AUTHORIZED:
                self._fail("a refused key's message not refused", message, said)
        elif owed.stage is not Stage.BODY:
            if reason is not ErrorReason.PROTOCOL_ERROR:
                self._fail("a bad envelope not refused with protocol_error", message, said)
        elif reason is None and reply.type not in owed.answers:
            self._fail(f"a {message.kind.split(':')[0]} answered by {reply.type}", message, said)
        if owed.stage is Stage.BODY and reason not in (
            ErrorReason.PROTOCOL_ERROR,
            ErrorReason.INVALID_REQUEST,
            ErrorReason.NOT_AUTHORIZED,
        ):
            self.executed += 1

    def _sender(self, reply: bytes) -> Fuzzed | None:
        """The message an undecodable reply answers, if its id can be read."""
        try:
            rid = msgpack.unpackb(reply, strict_map_key=False).get("id")
        except Exception:  # nothing to go by
            return None
        return self.written.get(rid) if isinstance(rid, int) else None

    def settle(self) -> None:
        """After the last barrier: what never came, and more id-less replies than owed."""
        for rid, missing in self.pending.items():
            message = self.by_id[rid]
            self._fail("no reply to a message whose id is readable", message, f"{missing} missing")
        self.pending.clear()
        for delimited in (False, True):
            extra = self.idless_replies[delimited] - self.idless_owed[delimited]
            if extra > 0:
                self._fail(
                    f"more {'delimited ' if delimited else ''}replies without an id than "
                    "messages without a readable id",
                    None,
                    f"{extra} more",
                )


def _said(message_type: str, body: BaseModel) -> str:
    text = f"{message_type} {body!r}"
    return text if len(text) <= 400 else text[:400] + "..."
