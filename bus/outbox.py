"""What a server's steps produced, until sent: the replies, then the events, in order."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from bus.backend import Answer, EventFilter, Notice, Output, Report
from bus.metrics import RequestTiming
from bus.venue_protocol import Event, Route, VenueProtocol
from ports.models import ExecutionReport

_log = logging.getLogger("orderbus.server")


class Outbox:
    """Encodes (through the protocol, which numbers and keeps them) and queues a backend's
    outputs until ``flush``; ``send_reply`` and ``publish`` put frames on the sockets, through
    the backend's transport-fault ``filter`` if it has one; ``timing`` learns when each answer
    was made and sent."""

    def __init__(
        self,
        protocol: VenueProtocol,
        send_reply: Callable[[Route, bytes], None],
        publish: Callable[[list[Event]], None],
        filter_: EventFilter | None,
        *,
        timing: RequestTiming | None = None,
    ) -> None:
        self._protocol = protocol
        self._send_reply = send_reply
        self._publish = publish
        self._filter = filter_
        self._timing = timing if timing is not None else RequestTiming()
        self._out_replies: list[tuple[Route, bytes]] = []
        self._out_reports: list[ExecutionReport] = []  # not encoded yet (no ``before_send``)
        self._out_events: list[Event] = []
        self._flushing = False

    def deliver(
        self,
        outputs: Sequence[Output],
        *,
        before_send: Callable[[list[bytes]], None] | None = None,
        send: bool = True,
    ) -> None:
        protocol = self._protocol
        if before_send is None and send:
            # The common case: replies are encoded now, events only when flushed, after the
            # replies have left.
            for output in outputs:
                if type(output) is Report:
                    self._out_reports.append(output.report)
                elif type(output) is Answer:
                    self._answer(output)
                elif type(output) is Notice:
                    self._encode_reports()
                    topic, frame = protocol.notice(output.strategy_id, output.event)
                    self._out_events.append(Event(output.strategy_id, "", "", topic, frame))
        else:
            self._encode_reports()
            replies: list[tuple[Route | None, bytes]] = []
            events: list[Event] = []
            for output in outputs:
                if type(output) is Report:
                    events.append(protocol.publish(output.report))
                elif type(output) is Answer:
                    answer = protocol.answer(
                        output.key, output.result, recall=output.recall, delivered=output.delivered
                    )
                    self._timing.answered(output.key, send and answer[0] is not None)
                    replies.append(answer)
            if before_send is not None:
                before_send([e.frame for e in events] + [frame for _, frame in replies])
            if not send:
                return
            self._out_replies += [(r, f) for r, f in replies if r is not None]
            self._out_events += events
        filter_ = self._filter
        if filter_ is not None and filter_.active():
            # Transport faults draw from a seeded RNG as events are published: each step's
            # events go at once, so that the draws follow the requests, not how they batched.
            self.flush()

    def _answer(self, output: Answer) -> None:
        if output.key in self._protocol.pending_syncs:
            self._encode_reports()  # the baseline counts every event produced before it
        route, frame = self._protocol.answer(
            output.key, output.result, recall=output.recall, delivered=output.delivered
        )
        self._timing.answered(output.key, route is not None)
        if route is not None:
            self._out_replies.append((route, frame))

    def _encode_reports(self) -> None:
        if self._out_reports:
            reports, self._out_reports = self._out_reports, []
            self._out_events += [self._protocol.publish(r) for r in reports]

    def flush(self) -> None:
        """Send what the steps taken produced: replies first (the requesters wait on them, and
        nothing orders a reply against the events on the other socket), then the events, in
        order. Publishing may release more (a pause ends): that is sent after, until empty."""
        if self._flushing:
            return
        self._flushing = True
        try:
            while self._out_replies or self._out_reports or self._out_events:
                try:
                    if self._out_replies:
                        replies, self._out_replies = self._out_replies, []
                        for route, frame in replies:
                            self._send_reply(route, frame)
                        self._timing.sent()
                    self._encode_reports()
                    if self._out_events:
                        events, self._out_events = self._out_events, []
                        filter_ = self._filter
                        if filter_ is not None and filter_.active():
                            events = filter_.route(events)
                        self._publish(events)
                except Exception as error:  # the server keeps serving; the loss is reported
                    self._protocol.protocol_errors += 1
                    _log.error("sending a step's outputs failed: %r", error,
                               extra={"event": "send_failed"})  # fmt: skip
        finally:
            self._flushing = False
