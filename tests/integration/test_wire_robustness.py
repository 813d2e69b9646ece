"""The venue process on its command socket, over real TCP, with raw pyzmq peers.

What a misbehaving or unlucky peer can do to the venue: malformed and invalid frames, wrong
framing, a frame flood, plain REQ peers, retries and reconnects. Every bad frame must get a typed
``error`` reply, must not be executed, and must leave the venue serving everyone else. Retries are
idempotent by (client id, request id).

Nothing here sleeps: every wait is a ``poll()`` with a deadline, and a missed deadline fails.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import msgpack
import pytest
import zmq
from pydantic import BaseModel

from bus.codec import MAX_FRAME_BYTES, Envelope, Heartbeat, decode, encode
from bus.limits import ServerLimits
from bus.server import Endpoints
from mock_venue.control import StrategyStatus, VenueStatus
from mock_venue.control_client import BlockingControlClient, ControlClient
from mock_venue.process import VenueProcess
from ports import (
    AckAction,
    Acknowledgement,
    CancelOrder,
    ErrorReason,
    OpenOrders,
    OrderSnapshot,
    OrderStatus,
    OrderType,
    QueryOrder,
    Rejection,
    Side,
    SubmitOrder,
    TimeInForce,
)
from ports.models import paged_open_orders
from tests.contract.helpers import limit
from tests.contract.venue_setup import CONTRACT_VENUE, SEED, START

WAIT = 5.0  # seconds: the deadline for an answer that should come at once
WAIT_MS = int(WAIT * 1000)

Socket = zmq.Socket[bytes]


# --- the venue ----------------------------------------------------------------------------------


class _ModuleVenue:
    """One venue process for the whole module, started again if a test crashed it: a venue bug
    fails the test that found it, not every test after it."""

    def __init__(self) -> None:
        self._process: VenueProcess | None = None

    def get(self) -> VenueProcess:
        process = self._process
        if process is None or process.process is None or process.process.poll() is not None:
            if process is not None:
                process.stop()
            process = VenueProcess(CONTRACT_VENUE, seed=SEED, clock="manual")
            process.start()
            self._process = process
        return process

    def close(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None


@pytest.fixture(scope="module")
def module_venue() -> Iterator[_ModuleVenue]:
    holder = _ModuleVenue()
    try:
        yield holder
    finally:
        holder.close()


@pytest.fixture
def venue(module_venue: _ModuleVenue) -> VenueProcess:
    return module_venue.get()


@pytest.fixture
def endpoints(venue: VenueProcess) -> Endpoints:
    assert venue.endpoints is not None
    return venue.endpoints


def is_alive(venue: VenueProcess) -> bool:
    return venue.process is not None and venue.process.poll() is None


def assert_alive(venue: VenueProcess) -> None:
    assert venue.process is not None
    code = venue.process.poll()
    assert code is None, f"the venue process died (exit code {code}):\n{venue.stderr[-3000:]}"


def venue_status(endpoints: Endpoints) -> VenueStatus:
    async def ask() -> VenueStatus:
        # Created inside the running loop, as zmq.asyncio sockets must be.
        async with ControlClient(endpoints.control, timeout=WAIT) as control:
            return await control.status()

    return asyncio.run(ask())


def strategy_status(status: VenueStatus, strategy_id: str) -> StrategyStatus | None:
    return next((s for s in status.strategies if s.strategy_id == strategy_id), None)


def fresh(prefix: str) -> str:
    """A client or strategy id no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# --- raw peers ----------------------------------------------------------------------------------


class Peer:
    """One raw socket on the command endpoint, speaking for ``client_id``."""

    def __init__(self, socket: Socket, client_id: str | None) -> None:
        self.socket = socket
        self.client_id = client_id
        self._ids = itertools.count(1_000_001)  # clear of the ids tests pick

    def next_id(self) -> int:
        return next(self._ids)

    def frame(self, body: BaseModel, request_id: int | None) -> bytes:
        return encode(body, request_id=request_id, client_id=self.client_id)

    def send(self, *frames: bytes) -> None:
        self.socket.send_multipart(list(frames))

    def try_recv(
        self, timeout: float = WAIT, alive: Callable[[], bool] | None = None
    ) -> bytes | None:
        """The next reply (one frame), or None if none came within ``timeout`` (or, given
        ``alive``, as soon as it says the venue is gone)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            step = left if alive is None else min(left, 0.05)
            if self.socket.poll(int(step * 1000) + 1, zmq.POLLIN):
                break
            if alive is not None and not alive():
                return None
        frames = self.socket.recv_multipart(zmq.NOBLOCK)
        assert len(frames) == 1, f"a reply is one frame, got {frames!r}"
        return frames[0]

    def recv(self, timeout: float = WAIT) -> bytes:
        frame = self.try_recv(timeout)
        if frame is None:
            pytest.fail(f"no reply within {timeout} s")
        return frame

    def call(self, body: BaseModel, request_id: int | None = None) -> Envelope:
        """Send one request and decode its reply, which must carry the same request id."""
        rid = self.next_id() if request_id is None else request_id
        self.send(self.frame(body, rid))
        reply = decode(self.recv())
        assert reply.request_id == rid
        return reply

    def submit_order(self, order: SubmitOrder, request_id: int | None = None) -> Acknowledgement:
        """Submit and expect the ack of a new order."""
        reply = self.call(order, request_id)
        assert reply.type == "ack", reply
        assert isinstance(reply.body, Acknowledgement)
        assert reply.body.action is AckAction.SUBMIT
        assert reply.body.order.client_order_id == order.client_order_id
        assert reply.body.order.status is OrderStatus.NEW
        return reply.body

    def query(self, strategy_id: str, client_order_id: str) -> Envelope:
        return self.call(QueryOrder(strategy_id=strategy_id, client_order_id=client_order_id))


def assert_error(
    frame: bytes, reason: ErrorReason, request_id: int | None, says: str | None = None
) -> Rejection:
    """``frame`` is a typed error reply: type "error", a Rejection body of ``reason``."""
    reply = decode(frame)
    assert reply.type == "error", reply
    assert isinstance(reply.body, Rejection)
    assert reply.body.reason is reason, reply.body
    assert reply.request_id == request_id
    if says is not None:
        assert says in reply.body.message, reply.body.message
    return reply.body


class Wire:
    """A blocking zmq.Context of the test's own and every socket made from it."""

    def __init__(self, endpoints: Endpoints) -> None:
        self.endpoints = endpoints
        self.context: zmq.Context[Socket] = zmq.Context()
        self._sockets: list[Socket] = []

    def socket(self, kind: int) -> Socket:
        socket: Socket = self.context.socket(kind)
        socket.setsockopt(zmq.LINGER, 0)
        socket.connect(self.endpoints.command)
        self._sockets.append(socket)
        return socket

    def dealer(self, client_id: str | None = None) -> Peer:
        return Peer(self.socket(zmq.DEALER), client_id or fresh("dealer"))

    def req(self, client_id: str | None = None) -> Peer:
        return Peer(self.socket(zmq.REQ), client_id or fresh("req"))

    def close(self) -> None:
        for socket in self._sockets:
            socket.close(linger=0)
        self.context.destroy(linger=0)


@pytest.fixture
def wire(endpoints: Endpoints) -> Iterator[Wire]:
    w = Wire(endpoints)
    try:
        yield w
    finally:
        w.close()


@pytest.fixture
def strategy() -> str:
    """A strategy of this test alone, so its order and event counts are this test's."""
    return fresh("strat")


# --- 1. bad input ---------------------------------------------------------------------------------

RID = 41  # the request id every readable bad request carries


def pack(value: object) -> bytes:
    frame: bytes = msgpack.packb(value, datetime=True)
    return frame


def submit_body(strategy_id: str) -> dict[str, Any]:
    return limit("bad", strategy_id=strategy_id).model_dump(mode="json")


def envelope(client_id: str, strategy_id: str, **changes: Any) -> dict[str, Any]:
    """A valid submit_order envelope as a plain map; ``changes`` replace (or, as None, remove)
    fields of it."""
    env: dict[str, Any] = {
        "v": 1,
        "t": "submit_order",
        "id": RID,
        "c": client_id,
        "b": submit_body(strategy_id),
    }
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def sized(client_id: str, strategy_id: str, size: int) -> bytes:
    """A readable envelope of exactly ``size`` bytes (padded with an unknown field)."""
    pad = size - len(pack(envelope(client_id, strategy_id, pad="")))
    frame = pack(envelope(client_id, strategy_id, pad="x" * pad))
    frame = pack(envelope(client_id, strategy_id, pad="x" * (pad - (len(frame) - size))))
    assert len(frame) == size
    return frame


def body_with(strategy_id: str, **changes: Any) -> dict[str, Any]:
    result = submit_body(strategy_id)
    result.update(changes)
    return result


def _snapshot(strategy_id: str) -> OrderSnapshot:
    return OrderSnapshot(
        strategy_id=strategy_id,
        client_order_id="bad",
        venue_order_id="MOCK-0",
        instrument="MAN",
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        time_in_force=TimeInForce.DAY,
        quantity=Decimal(100),
        limit_price=Decimal("10.00"),
        expire_at=None,
        status=OrderStatus.NEW,
        cum_qty=Decimal(0),
        leaves_qty=Decimal(100),
        avg_px=None,
        last_seq=1,
        created_at=START,
        updated_at=START,
    )


@dataclass(frozen=True)
class BadInput:
    frames: Callable[[str, str], list[bytes]]  # (client id, strategy id) -> the frames to send
    reason: ErrorReason
    request_id: int | None  # the id the error reply echoes
    says: str | None = None  # part of the error message


Frames = Callable[[str, str], list[bytes]]


def fixed(*frames: bytes) -> Frames:
    return lambda c, s: list(frames)


def env(**changes: Any) -> Frames:
    return lambda c, s: [pack(envelope(c, s, **changes))]


def body(**changes: Any) -> Frames:
    return lambda c, s: [pack(envelope(c, s, b=body_with(s, **changes)))]


def model(make: Callable[[str], BaseModel]) -> Frames:
    """A valid message of another type, in the bad peer's name."""
    return lambda c, s: [encode(make(s), request_id=RID, client_id=c)]


def size(n: int) -> Frames:
    return lambda c, s: [sized(c, s, n)]


def case(
    name: str, frames: Frames, reason: ErrorReason, request_id: int | None, says: str | None = None
) -> Any:
    return pytest.param(BadInput(frames, reason, request_id, says), id=name)


P = ErrorReason.PROTOCOL_ERROR
INVALID = ErrorReason.INVALID_REQUEST

BAD_INPUTS = [
    # not msgpack
    case("msgpack-bad-byte", fixed(b"\xc1garbage"), P, None, "not msgpack"),
    # Not msgpack, but the id before the damage is readable: the refusal can be matched.
    case("msgpack-truncated", lambda c, s: [pack(envelope(c, s))[:-3]], P, RID, "not msgpack"),
    case("msgpack-trailing", lambda c, s: [pack(envelope(c, s)) + b"\0"], P, RID, "not msgpack"),
    case("empty-frame", fixed(b""), P, None, "not msgpack"),
    case("msgpack-int-keys", fixed(pack({1: 2})), P, None),
    # msgpack, not a map
    case("msgpack-array", lambda c, s: [pack([1, "submit_order", RID, c])], P, None, "map"),
    case("msgpack-string", fixed(pack("submit_order")), P, None, "map"),
    case("msgpack-nil", fixed(pack(None)), P, None, "map"),
    # the envelope
    case("unknown-type", env(t="launch_rocket"), P, RID, "unknown message type"),
    case("type-missing", env(t=None), P, RID, "unknown message type"),
    case("type-is-an-array", env(t=["submit_order"]), P, RID),
    case("type-is-a-map", env(t={"x": 1}), P, RID),
    case("version-2", env(v=2), P, RID, "protocol version"),
    case("version-missing", env(v=None), P, RID, "protocol version"),
    case("version-as-string", env(v="1"), P, RID, "protocol version"),
    case("unknown-envelope-field", env(extra=1), P, RID, "unknown envelope fields"),
    case("client-id-not-a-string", env(c=5), P, RID),
    # the request id
    case("id-missing", env(id=None), P, None, "'id'"),
    case("id-negative", env(id=-1), P, None, "'id'"),
    case("id-a-string", env(id="41"), P, None, "'id'"),
    # schema-invalid bodies
    case("quantity-negative", body(quantity="-5"), INVALID, RID, "quantity"),
    case("quantity-nan", body(quantity="NaN"), INVALID, RID, "quantity"),
    case("limit-without-price", body(limit_price=None), INVALID, RID, "limit_price"),
    case("side-unknown", body(side="up"), INVALID, RID, "side"),
    case("body-unknown-field", body(colour="red"), INVALID, RID, "colour"),
    case("body-missing", env(b=None), INVALID, RID),
    case("body-an-array", env(b=[1, 2]), INVALID, RID),
    # replies and events sent as requests, with valid bodies of their type
    case(
        "ack-as-request",
        model(lambda s: Acknowledgement(action=AckAction.SUBMIT, order=_snapshot(s))),
        P,
        RID,
        "not a request",
    ),
    case(
        "error-as-request",
        model(lambda s: Rejection(reason=INVALID, message="x")),
        P,
        RID,
        "not a request",
    ),
    case(
        "heartbeat-as-request",
        model(
            lambda s: Heartbeat(session="x", instance="y", venue_seq=0, seqs={}, venue_time=START)
        ),
        P,
        RID,
        "not a request",
    ),
    # size: read up to the limit, refused above it (but under the socket's MAXMSGSIZE)
    case("frame-at-limit-is-read", size(MAX_FRAME_BYTES), P, RID, "unknown envelope fields"),
    case("frame-one-byte-over", size(MAX_FRAME_BYTES + 1), P, None, "exceeds"),
    case("frame-8x-over", size(8 * MAX_FRAME_BYTES), P, None, "exceeds"),
    # framing: a request is one frame
    case("dealer-3-frames", lambda c, s: [pack(envelope(c, s))] * 3, P, None, "one frame"),
    case("dealer-2-frames", lambda c, s: [b"hi", pack(envelope(c, s))], P, None, "one frame"),
]


@pytest.mark.parametrize("bad", BAD_INPUTS)
def test_bad_input_gets_a_typed_error_and_the_venue_keeps_serving(
    bad: BadInput, venue: VenueProcess, endpoints: Endpoints, wire: Wire, strategy: str
) -> None:
    before = venue_status(endpoints)
    rogue, good = wire.dealer(), wire.dealer()

    rogue.send(*bad.frames(str(rogue.client_id), strategy))
    reply = rogue.try_recv(alive=lambda: is_alive(venue))

    assert_alive(venue)
    assert reply is not None, f"no reply within {WAIT} s"
    assert_error(reply, bad.reason, bad.request_id, bad.says)
    # Everyone else is still served, and so is the rogue peer on the same connection.
    good.submit_order(limit("good", strategy_id=strategy))
    rogue.submit_order(limit("rogue-ok", strategy_id=strategy))

    after = venue_status(endpoints)
    assert after.protocol_errors - before.protocol_errors == 1
    # The bad request executed nothing: the strategy holds the two valid orders only.
    counts = strategy_status(after, strategy)
    assert counts is not None
    assert (counts.orders, counts.seq) == (2, 2)
    unknown = good.query(strategy, "bad").body
    assert isinstance(unknown, Rejection)
    assert unknown.reason is ErrorReason.UNKNOWN_ORDER


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"quantity": "1e30"}, id="quantity-1e30"),
        pytest.param({"limit_price": "1e40"}, id="limit-price-1e40"),
        pytest.param({"quantity": "1.0000000000001"}, id="quantity-13-decimals"),
        # Accepted once, it made every later reply carrying the order unreadable by its client.
        pytest.param({"expire_at": "9999-12-31T23:59:59-01:00"}, id="expire-at-in-year-10000"),
    ],
)
def test_out_of_range_numbers_are_refused_and_the_venue_keeps_serving(
    changes: dict[str, str], venue: VenueProcess, wire: Wire, strategy: str
) -> None:
    """The port's models refuse these at construction; a raw client gets a typed error."""
    client, good = wire.dealer(), wire.dealer()
    assert client.client_id is not None
    client.send(pack(envelope(client.client_id, strategy, b=body_with(strategy, **changes))))
    reply = client.try_recv(alive=lambda: is_alive(venue))

    assert_alive(venue)
    assert reply is not None, f"no reply within {WAIT} s"
    assert_error(reply, ErrorReason.INVALID_REQUEST, RID, next(iter(changes)))
    good.submit_order(limit("good", strategy_id=strategy))


# --- 2. a frame flood -----------------------------------------------------------------------------

FLOOD = 20_000
# Frames the flooding peer leaves unanswered at most, under the server's queue of replies for one
# peer (``reply_queue``): beyond that queue, a peer that does not read loses its replies, and the
# error reply to a garbage frame has no request id to be asked for again.
FLOOD_WINDOW = ServerLimits().reply_queue // 2
GOOD_SUBMITS = 200
GARBAGE = b"\xc1 flood"


@dataclass
class _FloodResult:
    sent: int = 0
    replies: int = 0
    first_reply: bytes | None = None
    odd_replies: int = 0
    error: BaseException | None = None


def _flood(context: zmq.Context[Socket], endpoint: str, started: threading.Event) -> _FloodResult:
    """Send FLOOD garbage frames as fast as the venue takes them, FLOOD_WINDOW of them
    unanswered at any time, reading every answer."""
    result = _FloodResult()
    socket: Socket = context.socket(zmq.DEALER)  # this thread's own socket
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.SNDTIMEO, WAIT_MS)  # a venue that stops reading fails, never hangs
    socket.setsockopt(zmq.SNDHWM, 0)
    socket.connect(endpoint)
    try:
        while result.replies < FLOOD:
            while result.sent < FLOOD and result.sent - result.replies < FLOOD_WINDOW:
                socket.send(GARBAGE)
                result.sent += 1
                if result.sent == 1000:
                    started.set()
            if not socket.poll(WAIT_MS, zmq.POLLIN):
                break
            frame = socket.recv()
            result.replies += 1
            if result.first_reply is None:
                result.first_reply = frame
            elif frame != result.first_reply:
                result.odd_replies += 1
    except BaseException as exc:  # reported to the test thread
        result.error = exc
    finally:
        started.set()
        socket.close(linger=0)
    return result


def test_a_frame_flood_from_one_peer_does_not_starve_another(
    venue: VenueProcess, endpoints: Endpoints, wire: Wire, strategy: str
) -> None:
    before = venue_status(endpoints)
    started = threading.Event()
    results: list[_FloodResult] = []
    flooder = threading.Thread(
        target=lambda: results.append(_flood(wire.context, endpoints.command, started)),
        daemon=True,
    )
    flooder.start()
    try:
        assert started.wait(WAIT), "the flood did not start"
        good = wire.dealer()
        for n in range(GOOD_SUBMITS):
            good.submit_order(limit(f"o{n}", strategy_id=strategy))  # each within WAIT
    finally:
        flooder.join(4 * WAIT)
    assert not flooder.is_alive(), "the flooding peer did not finish"
    assert_alive(venue)

    [flood] = results
    assert flood.error is None, repr(flood.error)
    assert flood.sent == FLOOD
    # Every garbage frame got the same typed error reply.
    assert (flood.replies, flood.odd_replies) == (FLOOD, 0)
    assert flood.first_reply is not None
    assert_error(flood.first_reply, ErrorReason.PROTOCOL_ERROR, None, "not msgpack")

    after = venue_status(endpoints)
    assert after.protocol_errors - before.protocol_errors == FLOOD
    assert after.limits.reply_queue_drops == before.limits.reply_queue_drops
    assert after.requests - before.requests == FLOOD + GOOD_SUBMITS
    counts = strategy_status(after, strategy)
    assert counts is not None
    assert (counts.orders, counts.open_orders, counts.seq) == (
        GOOD_SUBMITS,
        GOOD_SUBMITS,
        GOOD_SUBMITS,
    )
    pages = paged_open_orders(strategy, None)  # the venue answers a page at a time
    request, listed = next(pages), None
    while listed is None:
        listing = good.call(request)
        assert isinstance(listing.body, OpenOrders)
        try:
            request = pages.send(listing.body)
        except StopIteration as done:
            listed = done.value
    assert [o.client_order_id for o in listed] == [f"o{n}" for n in range(GOOD_SUBMITS)]


# --- 3. plain REQ peers ---------------------------------------------------------------------------


def test_a_req_peer_is_served_and_not_stuck_by_an_error_reply(wire: Wire, strategy: str) -> None:
    req = wire.req()
    req.submit_order(limit("r1", strategy_id=strategy))

    req.send(b"\xc1garbage")
    assert_error(req.recv(), ErrorReason.PROTOCOL_ERROR, None, "not msgpack")

    bad = body_with(strategy, limit_price=None)
    req.send(pack({"v": 1, "t": "submit_order", "id": 77, "c": req.client_id, "b": bad}))
    assert_error(req.recv(), ErrorReason.INVALID_REQUEST, 77, "limit_price")

    # The lockstep is intact: another request goes out (no EFSM) and is answered.
    req.submit_order(limit("r2", strategy_id=strategy))
    reply = req.query(strategy, "r1")
    assert isinstance(reply.body, OrderSnapshot)
    assert reply.body.status is OrderStatus.NEW


def test_a_req_peer_gets_a_readable_error_for_a_multi_frame_request(
    venue: VenueProcess, wire: Wire, strategy: str
) -> None:
    """A REQ peer's reply needs the empty delimiter, error replies to wrong framing included:
    without it the REQ socket drops the reply and the peer is stuck."""
    req = wire.req()
    frame = req.frame(limit("multi", strategy_id=strategy), 5)
    req.send(frame, frame)
    reply = req.try_recv(alive=lambda: is_alive(venue))
    assert_alive(venue)
    assert reply is not None, "the REQ peer got no (readable) reply to a two-frame request"
    assert_error(reply, ErrorReason.PROTOCOL_ERROR, None, "one frame")
    req.submit_order(limit("after", strategy_id=strategy))


# --- 4. idempotency by (client id, request id) ----------------------------------------------------


def test_the_same_submit_frame_three_times_is_one_order_and_three_identical_replies(
    endpoints: Endpoints, wire: Wire, strategy: str
) -> None:
    dealer = wire.dealer()
    order = limit("idem", strategy_id=strategy)
    frame = dealer.frame(order, 9)
    for _ in range(3):
        dealer.send(frame)
    replies = [dealer.recv() for _ in range(3)]

    assert replies[0] == replies[1] == replies[2]
    first = decode(replies[0])
    assert (first.type, first.request_id) == ("ack", 9)
    assert isinstance(first.body, Acknowledgement)
    assert first.body.order.client_order_id == "idem"

    # The key is (client id, request id), not the content: another body under the same key is a
    # retry too, answered from the store and never executed.
    dealer.send(dealer.frame(limit("other", strategy_id=strategy), 9))
    assert dealer.recv() == replies[0]
    assert dealer.query(strategy, "other").type == "error"

    snapshot = dealer.query(strategy, "idem").body
    assert isinstance(snapshot, OrderSnapshot)
    assert snapshot.venue_order_id == first.body.order.venue_order_id
    counts = strategy_status(venue_status(endpoints), strategy)
    assert counts is not None
    assert (counts.orders, counts.seq) == (1, 1)  # one order, one ACCEPTED event


def test_the_same_request_id_from_another_client_is_another_request(
    endpoints: Endpoints, wire: Wire, strategy: str
) -> None:
    first, second, third, fourth = (wire.dealer() for _ in range(4))
    order = limit("o1", strategy_id=strategy)
    first.send(first.frame(order, 1))
    original = first.recv()
    ack = decode(original).body
    assert isinstance(ack, Acknowledgement)

    # Request id 1 of another client is not answered from the first client's store: it runs.
    other = second.submit_order(limit("o2", strategy_id=strategy), request_id=1)
    assert other.order.venue_order_id != ack.order.venue_order_id

    # It runs as the engine says: an identical resend of an answered submit gets the original
    # answer again (same ack, snapshot from acceptance time), and nothing is published ...
    third.send(third.frame(order, 1))
    resent = third.recv()
    assert resent == original
    assert decode(resent).body == ack

    # ... while a changed submit under a known client order id is a duplicate, reply only.
    changed = order.model_copy(update={"quantity": Decimal(200)})
    fourth.send(fourth.frame(changed, 1))
    rejection = assert_error(fourth.recv(), ErrorReason.DUPLICATE_CLIENT_ORDER_ID, 1)
    assert rejection.client_order_id == "o1"

    snapshot = first.query(strategy, "o1").body
    assert isinstance(snapshot, OrderSnapshot)
    assert snapshot.quantity == 100
    counts = strategy_status(venue_status(endpoints), strategy)
    assert counts is not None
    assert (counts.orders, counts.seq) == (2, 2)  # o1 and o2, one ACCEPTED each


def test_a_retried_cancel_gets_the_stored_ack_and_acts_once(
    endpoints: Endpoints, wire: Wire, strategy: str
) -> None:
    dealer = wire.dealer()
    dealer.submit_order(limit("c1", strategy_id=strategy))
    query = QueryOrder(strategy_id=strategy, client_order_id="c1")
    before = dealer.call(query, request_id=500).body
    assert isinstance(before, OrderSnapshot)
    assert before.status is OrderStatus.NEW

    cancel = dealer.frame(CancelOrder(strategy_id=strategy, client_order_id="c1"), 501)
    dealer.send(cancel)
    stored = dealer.recv()
    ack = decode(stored)
    assert ack.type == "ack"
    assert isinstance(ack.body, Acknowledgement)
    assert (ack.body.action, ack.body.order.status) == (AckAction.CANCEL, OrderStatus.CANCELED)

    for _ in range(2):
        dealer.send(cancel)
        assert dealer.recv() == stored
    counts = strategy_status(venue_status(endpoints), strategy)
    assert counts is not None
    # ACCEPTED, CANCELED: the retries published no CANCEL_REJECTED and canceled nothing twice.
    assert (counts.orders, counts.open_orders, counts.seq) == (1, 0, 2)

    # Queries are not stored: the same request id asks again and sees the order as it is now.
    after = dealer.call(query, request_id=500).body
    assert isinstance(after, OrderSnapshot)
    assert after.status is OrderStatus.CANCELED

    # The contrast: a new cancel (a new request id) does run, and is too late.
    dealer.send(dealer.frame(CancelOrder(strategy_id=strategy, client_order_id="c1"), 502))
    assert_error(dealer.recv(), ErrorReason.TOO_LATE, 502)
    counts = strategy_status(venue_status(endpoints), strategy)
    assert counts is not None
    assert counts.seq == 3  # its CANCEL_REJECTED report


# --- 5. reconnect with the same client id ---------------------------------------------------------


def test_a_new_connection_with_the_same_client_id_gets_the_stored_reply(
    endpoints: Endpoints, wire: Wire, strategy: str
) -> None:
    client_id = fresh("reconnect")
    old = wire.dealer(client_id)
    submit = old.frame(limit("r1", strategy_id=strategy), 3)
    cancel = old.frame(CancelOrder(strategy_id=strategy, client_order_id="r1"), 4)
    old.send(submit)
    submitted = old.recv()
    assert decode(submitted).type == "ack"
    old.send(cancel)
    canceled = old.recv()
    assert decode(canceled).type == "ack"
    old.socket.close(linger=0)

    new = wire.dealer(client_id)  # a new socket: a new routing identity, the same client
    new.send(submit)
    assert new.recv() == submitted
    new.send(cancel)
    assert new.recv() == canceled  # not a TOO_LATE: the cancel did not run again

    counts = strategy_status(venue_status(endpoints), strategy)
    assert counts is not None
    assert (counts.orders, counts.open_orders, counts.seq) == (1, 0, 2)  # ACCEPTED, CANCELED


def test_a_reply_lost_with_the_connection_is_sent_again_on_the_new_one(
    endpoints: Endpoints, wire: Wire, strategy: str
) -> None:
    client_id = fresh("lost")
    old = wire.dealer(client_id)
    old.submit_order(limit("l1", strategy_id=strategy))
    cancel = old.frame(CancelOrder(strategy_id=strategy, client_order_id="l1"), 5)
    old.send(cancel)
    # The answer arrives but is never read: it goes down with the socket.
    assert old.socket.poll(WAIT_MS, zmq.POLLIN), f"no reply within {WAIT} s"
    old.socket.close(linger=0)

    new = wire.dealer(client_id)
    new.send(cancel)
    resent = new.recv()
    reply = decode(resent)
    assert (reply.type, reply.request_id) == ("ack", 5)
    assert isinstance(reply.body, Acknowledgement)
    assert (reply.body.action, reply.body.order.client_order_id) == (AckAction.CANCEL, "l1")
    assert reply.body.order.status is OrderStatus.CANCELED
    new.send(cancel)
    assert new.recv() == resent

    counts = strategy_status(venue_status(endpoints), strategy)
    assert counts is not None
    assert (counts.orders, counts.open_orders, counts.seq) == (1, 0, 2)  # ACCEPTED, CANCELED


# --- large replies and throttled retries ----------------------------------------------------------


def test_a_client_takes_a_sync_reply_larger_than_the_venues_inbound_limit(
    venue: VenueProcess, wire: Wire, strategy: str
) -> None:
    """The 64 KiB limit guards the venue's input; what the venue sends clients may be larger."""
    from bus.blocking import BlockingOrderExecutionPort

    endpoints = venue.endpoints
    assert endpoints is not None
    client = wire.dealer()
    for n in range(400):  # ~400 open orders: a sync reply of well over 64 KiB
        client.submit_order(limit(f"big-{n}", strategy_id=strategy))
    with BlockingOrderExecutionPort(
        strategy, command=endpoints.command, events=endpoints.events
    ) as port:
        assert len(port.open_orders()) == 400


def test_a_throttled_request_retried_with_the_same_id_is_tried_afresh(
    venue: VenueProcess, wire: Wire, strategy: str
) -> None:
    from mock_venue.faults import Throttle

    endpoints = venue.endpoints
    assert endpoints is not None
    control = BlockingControlClient(endpoints.control)
    client = wire.dealer()
    try:
        fault = control.inject(Throttle(strategy_id=strategy, max_requests=1, interval=1.0))
        client.submit_order(limit("first", strategy_id=strategy))
        refused = client.call(limit("second", strategy_id=strategy), request_id=77)
        assert isinstance(refused.body, Rejection)
        assert refused.body.reason is ErrorReason.THROTTLED
        control.advance(1.0)
        control.clear_faults(fault.fault_id)
        again = client.call(limit("second", strategy_id=strategy), request_id=77)
        assert isinstance(again.body, Acknowledgement)
    finally:
        control.clear_faults()
        control.close()
