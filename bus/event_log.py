"""Every numbered event a server published, as the very frames that left, for replay: one
all-events stream (numbered by ``venue_seq``) and each strategy's stream (by ``seq``), the
latter an index into the former."""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from datetime import datetime

from bus.codec import HEARTBEAT_TOPIC, MAX_REPLAY, Heartbeat, encode, strategy_topic


class EventLog:
    """The published frames, and each strategy's stream as positions among them."""

    def __init__(self) -> None:
        self._frames: list[bytes] = []  # every numbered event, by venue_seq - 1
        self._streams: dict[str, array[int]] = {}  # strategy -> venue_seq of its events

    @property
    def venue_seq(self) -> int:
        """The number of the latest event on the all-events stream."""
        return len(self._frames)

    def stream_seq(self, strategy_id: str) -> int:
        """The number of the latest event on ``strategy_id``'s stream."""
        stream = self._streams.get(strategy_id)
        return 0 if stream is None else len(stream)

    def next_numbers(self, strategy_id: str) -> tuple[int, int]:
        """(seq, venue_seq) the next event of ``strategy_id`` gets."""
        return self.stream_seq(strategy_id) + 1, len(self._frames) + 1

    def append(self, strategy_id: str, frame: bytes) -> None:
        """Keep ``frame``, numbered as ``next_numbers`` said."""
        stream = self._streams.get(strategy_id)
        if stream is None:
            stream = self._streams[strategy_id] = array("Q")
        self._frames.append(frame)
        stream.append(len(self._frames))

    def frames(self, strategy_id: str | None, from_seq: int, to_seq: int) -> tuple[bytes, ...]:
        """The frames numbered ``from_seq`` to ``to_seq`` (at most ``MAX_REPLAY``) of one
        strategy's stream, or of the all-events stream (``strategy_id`` None)."""
        if strategy_id is None:
            last = min(to_seq, len(self._frames), from_seq + MAX_REPLAY - 1)
            return tuple(self._frames[from_seq - 1 : last])
        stream = self._streams.get(strategy_id, array("Q"))
        last = min(to_seq, len(stream), from_seq + MAX_REPLAY - 1)
        return tuple(self._frames[v - 1] for v in stream[from_seq - 1 : last])

    def heartbeats(
        self, session: str, instance: str, venue_time: datetime, strategies: Iterable[str] = ()
    ) -> list[tuple[bytes, bytes]]:
        """Topics and frames of one round of heartbeats: the all-events stream's latest number
        (for monitors), then each of ``strategies`` on its own topic with its own stream's
        latest number only (a strategy learns nothing of the others' streams)."""

        def beat(seqs: dict[str, int]) -> bytes:
            return encode(Heartbeat(session=session, instance=instance, venue_seq=self.venue_seq,
                                    seqs=seqs, venue_time=venue_time))  # fmt: skip

        beats = [(HEARTBEAT_TOPIC, beat({}))]
        for strategy_id in strategies:
            beats.append(
                (strategy_topic(strategy_id), beat({strategy_id: self.stream_seq(strategy_id)}))
            )
        return beats
