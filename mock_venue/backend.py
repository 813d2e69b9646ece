"""The mock venue as a backend of the bus server: the engine, its journal, its faults and its
control channel (``bus.backend.Backend``).

With a journal (mock_venue/journal.py) every engine step is written down, with the time the engine
saw and the frames it produced, before any of those frames leaves; a venue restarted on the
journal replays it and carries on with the same orders, sequence numbers and stored replies.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import time
import uuid
from collections.abc import Callable, Hashable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from bus.backend import Answer, GetStatus, Host, Output, Report
from bus.codec import Sync, decode, encode
from bus.venue_protocol import RequestKey
from mock_venue.clock import Clock, ManualClock, PinnedClock, WallClock
from mock_venue.config import VenueConfig
from mock_venue.control import (
    CONTROL_MODELS,
    CONTROL_TYPES,
    Advance,
    CancelUnsolicited,
    ClearFaults,
    Done,
    Faults,
    FillOrder,
    InjectFault,
    ListFaults,
    Restate,
    VenueStatus,
)
from mock_venue.engine import Output as EngineOutput
from mock_venue.engine import Publish, Respond, VenueEngine
from mock_venue.faults import ActiveFault, Crash, Disconnect, Fault
from mock_venue.journal import FsyncPolicy, Journal, JournalError, Recovered
from mock_venue.journal import read as journal_read
from mock_venue.status import journal_gauges, venue_status
from mock_venue.transport_faults import TRANSPORT_FAULTS, TransportFaults
from ports.models import (
    Acknowledgement,
    ListOpenOrders,
    QueryOrder,
    Request,
    SubmitOrder,
)

CRASH_GRACE = 0.05  # seconds for the answer to a Crash command to leave the process
_ENGINE_CONTROLS = (FillOrder, CancelUnsolicited, Restate, InjectFault, ClearFaults)
_log = logging.getLogger("orderbus.venue")  # bus.logs formats it
STEP_TIMERS = 256
"""``VenueEngine``'s ``step_timers`` on real time: the loop turns between bounded steps, so a
long backlog holds up neither heartbeats nor other work for long."""


class EngineBackend:
    """The engine behind the bus. ``journal``: a file to write every engine step to, and to
    recover from when it exists already (``config`` and ``seed`` must be those it was written
    with). ``scenario``: faults put in force when the venue starts afresh (a recovered venue has
    its faults from the journal)."""

    def __init__(
        self,
        config: VenueConfig,
        *,
        seed: int = 0,
        clock: Clock | None = None,
        journal: Path | None = None,
        fsync: FsyncPolicy = FsyncPolicy.INTERVAL,
        scenario: Sequence[Fault] = (),
    ) -> None:
        self.clock: Clock = clock if clock is not None else WallClock()
        self._config = config
        self._seed = seed
        self._journal_path = journal
        self._fsync = fsync
        self._scenario = scenario
        self._recovered = (
            journal_read(journal) if journal is not None and journal.exists() else None
        )
        # A recovered engine starts at the time the original did: it must see what that one saw.
        header = None if self._recovered is None else self._recovered.header
        start = self.clock.now() if header is None else header["start"]
        self._start = start
        self._pinned = PinnedClock(start)
        # Named here, not by the server: the engine tags its order and fill ids with it, so that
        # a venue started afresh never hands out an id an earlier session did.
        self._session: str = uuid.uuid4().hex if header is None else header["session"]
        # A recovered engine steps as the original did, whatever clock it runs on now.
        steps = None if isinstance(self.clock, ManualClock) else STEP_TIMERS
        self._steps: int | None = steps if header is None else header["step_timers"]
        self.engine = VenueEngine(
            config,
            clock=self._pinned,
            rng=random.Random(seed),
            id_tag=self._session[:12],
            step_timers=self._steps,
        )
        self._journal: Journal | None = None
        self._replaying: list[bytes] | None = None  # a recovery's expected frames, else None
        self._submits: dict[RequestKey, tuple[str, str]] = {}
        self._crash_at: float | None = None
        self._host: Host | None = None
        self.recovered_records = 0
        self.torn_bytes = 0
        self._events = TransportFaults(
            self.engine.faults, self._pinned, self._write, self._clear_fault
        )

    # --- Backend ------------------------------------------------------------------------------

    @property
    def session(self) -> str:
        return self._session

    @property
    def control_models(self) -> Mapping[str, type[BaseModel]]:
        return CONTROL_MODELS

    @property
    def events(self) -> TransportFaults:
        return self._events

    def start(self, host: Host) -> None:
        self._host = host
        if self._recovered is not None:
            assert self._journal_path is not None
            self._recover(self._journal_path, self._recovered)
            return
        if self._journal_path is not None:
            header = {
                "session": self._session,
                "start": self._start,
                "seed": self._seed,
                "step_timers": self._steps,
                "config": self._config.model_dump(mode="json"),
            }
            self._journal = Journal.create(self._journal_path, header, self._fsync)
        for fault in self._scenario:
            self._control_command(InjectFault(fault=fault))

    def execute(self, key: RequestKey, request: Request | Sync, frame: bytes) -> None:
        if not self.behind():  # behind, the loop's own bounded steps catch up, not each request
            self._advance()  # timers due run first, as their own journaled (bounded) step
        if isinstance(request, Sync):  # not a step: nothing changes
            page = self._config.open_orders_page
            first = self.engine.open_orders(request.strategy_id, limit=page)
            self._deliver([Answer(key, first)])
            return
        if isinstance(request, QueryOrder | ListOpenOrders):  # reads: nothing to journal
            self._deliver([Answer(key, self.engine.read(request))])
            return
        self._execute(key, request, frame)

    def recall(self, token: Hashable) -> BaseModel | None:
        assert isinstance(token, tuple)
        return self.engine.submit_result(*token)

    def control(self, command: BaseModel, frame: bytes) -> BaseModel:
        return self._control_command(command, frame)

    def poll(self, now: float) -> None:
        if self._crash_at is not None and now >= self._crash_at:
            os.kill(os.getpid(), signal.SIGKILL)  # a Crash fault: as abrupt as it gets
        if not isinstance(self.clock, ManualClock):
            self._advance()
        if self._journal is not None:
            self._journal.tick()

    def next_due(self, now: float) -> float | None:
        due: list[float] = []
        timer = self.engine.next_timer_at()
        if timer is not None and not isinstance(self.clock, ManualClock):
            due.append(now + (timer - self.clock.now()).total_seconds())
        if self._crash_at is not None:
            due.append(max(self._crash_at, now + 0.001))
        if self._journal is not None and (sync := self._journal.sync_due_in()) is not None:
            due.append(now + sync)  # the interval policy's bound holds on a quiet venue too
        return min(due, default=None)

    def fileno(self) -> int | None:
        return None

    def venue_time(self) -> datetime:
        return self.clock.now()

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()

    # --- engine steps: each one pinned in time, journaled, then sent ----------------------------

    def behind(self, now: datetime | None = None) -> bool:
        """Timers are due by the clock (or ``now``) that have not run: steps are catching up."""
        due = self.engine.next_timer_at()
        return due is not None and due <= (self.clock.now() if now is None else now)

    def _step_time(self, *, advancing: bool = False) -> datetime:
        """Pin the engine's clock for one step. A request or control command that comes while
        the engine is behind (its bounded steps have not run all that is due) takes effect at
        the engine's own time, as if it had come then: it neither waits for the backlog nor
        runs it."""
        if self._replaying is None:
            now = self.clock.now()  # read once: the same instant decides
            self._pinned.pin(self.engine.time if not advancing and self.behind(now) else now)
        return self._pinned.now()

    def _advance(self, *, always: bool = False) -> None:
        """Run the engine's timers that are due, as one bounded step (journaled only if a timer
        was due, or ``always``)."""
        due = self.engine.next_timer_at()
        if not always and due is None:
            return
        at = self._step_time(advancing=True)
        if not always and due is not None and due > at:
            return
        self._step(self.engine.advance(), {"k": "a", "t": at})

    def _execute(self, key: RequestKey, request: BaseModel, frame: bytes) -> None:
        """One request through the engine: the same code live and in a recovery."""
        at = self._step_time()
        if isinstance(request, SubmitOrder):
            self._submits[key] = (request.strategy_id, request.client_order_id)
        assert isinstance(request, Request)
        record = {"k": "r", "t": at, "c": key[0], "id": key[1], "b": frame}
        self._step(self.engine.handle(request, key), record)

    def _step(self, outputs: list[EngineOutput], record: dict[str, Any]) -> None:
        """One engine step's outputs to the server, journaled before anything of it leaves."""
        converted: list[Output] = []
        for output in outputs:
            if isinstance(output, Publish):
                converted.append(Report(output.report))
            else:
                converted.append(self._answer(output))
        if self._replaying is None and self._journal is None:
            self._deliver(converted)
        else:
            self._deliver(converted, before_send=lambda frames: self._record(record, frames))

    def _answer(self, output: Respond) -> Answer:
        key = output.token
        assert isinstance(key, tuple)
        order = self._submits.pop(key, None)
        # An Acknowledgement to a submit is, by construction, the engine's stored answer (a new
        # acceptance, or the original one for an identical resend): keep a reference.
        recall = order if isinstance(output.result, Acknowledgement) else None
        return Answer(key, output.result, recall=recall, delivered=output.delivered)

    def _deliver(
        self, outputs: list[Output], before_send: Callable[[list[bytes]], None] | None = None
    ) -> None:
        assert self._host is not None
        self._host.deliver(outputs, before_send=before_send, send=self._replaying is None)

    def _record(self, record: dict[str, Any], frames: list[bytes]) -> None:
        """Write one step to the journal; in a recovery, check the step produced exactly what the
        journal says it did."""
        if self._replaying is not None:
            if frames != self._replaying:
                raise JournalError(
                    f"recovery diverged at record {self.recovered_records + 1}: the engine "
                    "produced other frames than the journal holds"
                )
        else:
            self._write({**record, "out": frames})

    def _write(self, record: dict[str, Any]) -> None:
        if self._journal is not None and self._replaying is None:
            self._journal.append(record)

    def _recover(self, path: Path, recovered: Recovered) -> None:
        assert self._host is not None
        header = recovered.header
        config = self._config.model_dump(mode="json")
        if header.get("seed") != self._seed or header.get("config") != config:
            raise JournalError(
                f"{path} was written by a venue with another config or seed; start with the "
                "same ones, or with a new journal"
            )
        self.torn_bytes = recovered.torn_bytes
        last = None
        for record in recovered.records:
            self._replaying = record.get("out", [])
            last = record["t"]
            self._pinned.pin(last)
            match record["k"]:
                case "a":
                    self._advance(always=True)
                case "r":
                    body = decode(record["b"], max_bytes=None).body
                    key = (record["c"], record["id"])
                    self._host.protocol.begin(key, body, None)
                    self._execute(key, body, record["b"])
                case "c":
                    self._control_command(decode(record["b"], models=CONTROL_MODELS).body)
                case "f":
                    kind = TRANSPORT_FAULTS[record["kind"]]
                    self.engine.faults.fire(kind, record["s"], record["i"], record["o"])
                case other:
                    raise JournalError(f"{path}: unknown record kind {other!r}")
            self.recovered_records += 1
        self._replaying = None
        if last is not None and isinstance(self.clock, ManualClock):
            self.clock.advance_to(last)
        self._journal = Journal.reopen(path, self._fsync)
        recovery = {"event": "recovered", "journal": str(path), "session": self._session,
                    "records": self.recovered_records, "torn_bytes": self.torn_bytes}  # fmt: skip
        _log.info("recovered %d records from %s", self.recovered_records, path, extra=recovery)

    # --- control channel ----------------------------------------------------------------------

    def _clear_fault(self, fault_id: int) -> None:
        self._control_command(ClearFaults(fault_id=fault_id))

    def _control_command(self, command: BaseModel, frame: bytes | None = None) -> BaseModel:
        """Carry out a control command. Those that change the engine are journaled (``frame``:
        the command as it came, else it is encoded here)."""
        engine = self.engine
        match command:
            case InjectFault(fault=Disconnect() | Crash() as fault):
                # Acts now, once, and is never in force: reported as used up (id 0).
                if isinstance(fault, Crash):
                    # Not before CRASH_GRACE: the answer to this command leaves first.
                    self._crash_at = time.monotonic() + max(fault.after, CRASH_GRACE)
                else:
                    assert self._host is not None
                    self._host.rebind()
                return Faults(faults=(ActiveFault(fault_id=0, fault=fault, fired=1, remaining=0),))
            case GetStatus():
                return self.status()
            case ListFaults():
                return Faults(faults=tuple(engine.faults.active()))
            case Advance():
                if not isinstance(self.clock, ManualClock):
                    raise TypeError("this venue runs on real time: there is no clock to advance")
                self.clock.advance(command.seconds)
                self._advance(always=True)
                return Done()
        if not isinstance(command, _ENGINE_CONTROLS):
            raise TypeError(f"{type(command).__name__} is not a control command")
        if self._replaying is None and not self.behind():
            self._advance()  # timers due run first, as their own journaled step
        at = self._step_time()
        result: BaseModel = Done()
        outputs: list[EngineOutput] = []
        match command:
            case FillOrder():
                outputs = engine.fill(
                    command.strategy_id, command.client_order_id, command.quantity, command.price
                )
            case CancelUnsolicited():
                outputs = engine.cancel_unsolicited(command.strategy_id, command.client_order_id)
            case Restate():
                outputs = engine.restate(
                    command.strategy_id, command.client_order_id, command.quantity
                )
            case InjectFault():
                result = Faults(faults=(engine.faults.inject(command.fault),))
            case ClearFaults():
                engine.faults.clear(command.fault_id)
        if frame is None:
            frame = encode(command, types=CONTROL_TYPES)
        self._step(outputs, {"k": "c", "t": at, "b": frame})
        return result

    def metric_gauges(self) -> list[tuple[str, str, float]]:
        """The journal's gauges, for ``bus.metrics`` (none without a journal)."""
        return journal_gauges(self._journal, self.recovered_records)

    def status(self) -> VenueStatus:
        """What the venue holds now."""
        assert self._host is not None
        return venue_status(self, self._host, self._journal)
