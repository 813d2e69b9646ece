"""The venue side of the protocol, with no sockets in it (sans-io).

``VenueProtocol`` is what every server speaks, whatever backend answers its requests: it decodes
requests, answers a retry from its store instead of executing it again (idempotency by client and
request id), numbers each strategy's stream and the all-events stream, keeps every published frame
for replay, and builds sync replies and heartbeats. It returns what to send; the server shell
sends it. It knows nothing about orders beyond the request and result types.

Nothing here reads a clock or touches a socket: the venue time a heartbeat carries is an argument.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Iterable
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel

from bus.access import Access
from bus.codec import (
    Keepalive,
    KeepaliveReply,
    Replay,
    ReplayReply,
    Sync,
    SyncReply,
    WireError,
    decode,
    encode,
    strategy_topic,
)
from bus.disconnect import DisconnectWatch
from bus.event_log import EventLog
from bus.limits import LimitsStatus, RateLimiter, ServerLimits, throttled
from bus.reply_store import ReplyStore
from bus.risk import Risk
from ports.enums import ErrorReason
from ports.models import (
    AmendOrder,
    CancelAllOrders,
    CancelOrder,
    ExecutionReport,
    ListOpenOrders,
    OpenOrders,
    PortEvent,
    QueryOrder,
    Rejection,
    Request,
    SubmitOrder,
)
from ports.positions import QueryPositions

RequestKey = tuple[str, int]
"""A request as the venue knows it: (client id, request id)."""

_EXECUTED = (
    SubmitOrder,
    AmendOrder,
    CancelOrder,
    CancelAllOrders,
    QueryOrder,
    ListOpenOrders,
    Sync,
)  # what goes to the backend
_QUERIES = (QueryOrder, ListOpenOrders)  # safe to run again: their answers are not kept


@dataclass(slots=True)
class Route:
    """Where a reply goes: the peer's ROUTER identity, and whether it is a REQ socket (its
    replies need the empty delimiter frame)."""

    identity: bytes
    req_peer: bool


@dataclass(slots=True)  # not frozen: its __init__ is on every event's path
class Event:
    """One encoded event to publish, with what transport faults target it by."""

    strategy_id: str
    instrument: str
    client_order_id: str
    topic: bytes
    frame: bytes


@dataclass(frozen=True, slots=True)
class Reply:
    """Send ``frame`` to ``route`` now."""

    route: Route
    frame: bytes


@dataclass(frozen=True, slots=True)
class Execute:
    """A request for the backend (an order request, or a sync: the backend knows the open
    orders). Its answer goes back through ``VenueProtocol.answer``."""

    key: RequestKey
    request: Request | Sync
    frame: bytes


@dataclass(frozen=True, slots=True)
class ReplayWanted:
    """A replay: answer with ``VenueProtocol.replay_reply`` once every event already produced
    has been published (so that it is in the store)."""

    route: Route
    request_id: int
    request: Replay


Received = Reply | Execute | ReplayWanted | None


class VenueProtocol:
    """Protocol state of one venue (a server and its backend).

    ``recall``: given the token a backend passed with an answer, the result again (a backend
    that holds the result itself, such as the engine for an accepted submit, spares the store a
    copy of the frame). ``limits``: what a peer may use (``bus.limits``). ``access``: who may
    send what (default: development mode, everyone may do everything). ``risk``: the pre-trade
    controls (default: none set).
    """

    def __init__(
        self,
        *,
        session: str,
        instance: str,
        recall: Callable[[Hashable], BaseModel | None] | None = None,
        limits: ServerLimits | None = None,
        access: Access | None = None,
        risk: Risk | None = None,
        watch: DisconnectWatch | None = None,
        wall_clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.session = session
        self.risk = risk if risk is not None else Risk()
        self.access = access if access is not None else Access()
        self.instance = instance
        self._recall = recall
        self.limits = limits if limits is not None else ServerLimits()
        self.replies = ReplyStore(
            per_owner=self.limits.replies_per_client, max_bytes=self.limits.reply_bytes
        )
        self.rate = RateLimiter(
            self.limits.requests_per_second, self.limits.burst, self.limits.rate_clients
        )
        self._routes: dict[RequestKey, Route | None] = {}  # requests being worked on
        self._uncached: set[RequestKey] = set()
        self._syncs: dict[RequestKey, Sync] = {}
        self.events = EventLog()
        self.requests = 0
        self.protocol_errors = 0
        self.request_types: dict[str, int] = {}  # bus.metrics; undecodable ones are not in it
        self.rejections: dict[ErrorReason, int] = {}  # but the request rate limit's
        self.watch = watch if watch is not None else DisconnectWatch()  # the server expires it
        self._wall_clock = wall_clock  # the time sync replies tell (None: they tell none)

    @property
    def pending_syncs(self) -> Collection[RequestKey]:
        """Syncs not answered yet."""
        return self._syncs.keys()

    def limits_status(self, heartbeat_streams: int) -> LimitsStatus:
        """The limits in force and how full each bound is (``heartbeat_streams``: the
        server's count)."""
        replies = self.replies
        return LimitsStatus(
            limits=self.limits,
            reply_clients=replies.owners,
            reply_entries=replies.entries,
            reply_bytes=replies.bytes,
            replies_evicted=replies.evicted,
            rate_clients=self.rate.clients,
            throttled=self.rate.throttled,
            heartbeat_streams=heartbeat_streams,
        )

    # --- requests ------------------------------------------------------------------------------

    def receive(
        self,
        route: Route,
        frame: bytes,
        user: str | None = None,
        now: float | None = None,
        wall: datetime | None = None,
    ) -> Received:
        """Take one request frame from the peer authenticated as ``user`` (its key; None in
        development mode), at ``now`` (monotonic seconds, for the rate limits; None: no limit)
        and ``wall`` (UTC, for the request's deadline; None: not checked).
        None: it is a retry of a request still being worked on (its one answer goes to
        ``route``, the latest connection of that client)."""
        self.requests += 1
        try:
            envelope = decode(frame)
        except WireError as error:
            return Reply(route, self.refuse(error))
        self.request_types[envelope.type] = self.request_types.get(envelope.type, 0) + 1
        if envelope.request_id is None:
            return Reply(route, self.refuse(WireError("a request needs an 'id'")))
        access = self.access
        who = access.principal(user)
        refusal = access.refusal(who, envelope.body) if access.secure else None
        if refusal is not None:  # before anything else: not even the reply store is looked at
            access.refused += 1
            self._rejected(ErrorReason.NOT_AUTHORIZED)
            rejection = Rejection(
                reason=ErrorReason.NOT_AUTHORIZED,
                message=refusal,
                client_order_id=getattr(envelope.body, "client_order_id", None),
            )
            return Reply(route, encode(rejection, request_id=envelope.request_id))
        client = envelope.client_id or "peer:" + route.identity.hex()
        if access.secure and who is not None:
            client = f"{who.name}/{client}"  # no peer can use another's retry window
        if now is not None:
            self.watch.heard(client, now)
            wait = self.rate.wait(who.name if access.secure and who else client, now)
            if wait is not None:
                rejection = throttled(envelope.body, wait, "request rate limit")
                return Reply(route, encode(rejection, request_id=envelope.request_id))
        request = envelope.body
        if isinstance(request, Sync | Keepalive) and request.cancel_on_disconnect is not None:
            if access.secure and (who is None or not who.acts_for(request.strategy_id)):
                # Arming is a cancel-all in waiting: only for a key that may cancel them.
                rejection = Rejection(
                    reason=ErrorReason.NOT_AUTHORIZED,
                    message=f"cancel on disconnect of strategy {request.strategy_id!r} needs "
                    "a key that acts for it",
                )
                return Reply(route, encode(rejection, request_id=envelope.request_id))
            if now is not None:
                name = envelope.client_id or client
                self.watch.arm(client, name, request.strategy_id, request.cancel_on_disconnect, now)
        if isinstance(request, Keepalive):  # answered here, at once, never kept
            if request.cancel_on_disconnect is None:
                self.watch.disarm(client)
            alive = KeepaliveReply(strategy_id=request.strategy_id,
                                   armed=self.watch.is_armed(client),
                                   canceled=self.watch.take_told(client))  # fmt: skip
            return Reply(route, encode(alive, request_id=envelope.request_id))
        if isinstance(request, QueryPositions):
            answer = self.risk.positions_of(request.strategy_id)
            return Reply(route, encode(answer, request_id=envelope.request_id))
        key = (client, envelope.request_id)
        stored = self.replies.get(self._owner(client), key)
        if stored is not None:  # a retry: the stored answer; the work is not done again
            return Reply(route, self._stored(key, stored))
        if key in self._routes:
            self._routes[key] = route
            return None
        if isinstance(request, _EXECUTED):
            self.begin(key, request, route)
            deadline = envelope.deadline
            if deadline is not None and wall is not None and wall > deadline:
                stale = Rejection(
                    reason=ErrorReason.STALE_REQUEST,
                    message=f"its deadline {deadline.isoformat()} had passed when the server "
                    f"came to it ({wall.isoformat()}): not carried out",
                    client_order_id=getattr(request, "client_order_id", None),
                )
                return Reply(route, self.answer(key, stale)[1])
            breach = self.risk.check(key, request, now)
            if breach is not None:  # answered here, and kept for its resends
                return Reply(route, self.answer(key, breach)[1])
            return Execute(key, request, frame)
        if isinstance(request, Replay):
            return ReplayWanted(route, key[1], request)
        not_request = WireError(f"{envelope.type} is not a request", request_id=envelope.request_id)
        return Reply(route, self.refuse(not_request))

    def begin(self, key: RequestKey, request: BaseModel, route: Route | None) -> None:
        """``key`` is being worked on (``receive`` calls this; so does a journal recovery,
        whose requests come from the journal with nobody waiting)."""
        self._routes[key] = route
        if isinstance(request, Sync):
            self._syncs[key] = request
        elif isinstance(request, _QUERIES):
            self._uncached.add(key)

    def answer(
        self,
        key: RequestKey,
        result: BaseModel,
        *,
        recall: Hashable | None = None,
        delivered: bool = True,
    ) -> tuple[Route | None, bytes]:
        """The answer to ``key``: where it goes (None: nobody waits, or ``delivered`` is False,
        a reply the backend drops on purpose) and its frame. State-changing answers are kept for
        retries; ``recall`` (see the class; any hashable but bytes) stands in for the frame in the
        store."""
        self.risk.answered(key, result)
        if type(result) is Rejection:
            self._rejected(result.reason)
        sync = self._syncs.pop(key, None)
        if sync is not None:  # answered with the open orders; the numbers are the protocol's
            if isinstance(result, OpenOrders):
                result = self.sync_reply(sync, result)
            return self._routes.pop(key, None), encode(result, request_id=key[1])
        frame = encode(result, request_id=key[1])
        keep = key not in self._uncached
        self._uncached.discard(key)
        if isinstance(result, Rejection) and result.reason is ErrorReason.THROTTLED:
            # Nothing was done: a retry with the same request id after retry_after must be
            # tried afresh, not told "throttled" again for ever.
            keep = False
        if keep:  # the frame, or the backend's token (never bytes) standing in for it
            self.replies.put(self._owner(key[0]), key, frame if recall is None else recall)
        route = self._routes.pop(key, None)
        return (route if delivered else None), frame

    def _owner(self, client: str) -> str:
        # With keys, a client is "<key name>/<client id>" (names have no "/"): the key owns it.
        return client.split("/", 1)[0] if self.access.secure else client

    def _stored(self, key: RequestKey, stored: Hashable) -> bytes:
        if isinstance(stored, bytes):
            return stored
        assert self._recall is not None
        result = self._recall(stored)
        assert result is not None
        return encode(result, request_id=key[1])

    def refuse(self, error: WireError) -> bytes:
        """The typed error reply to a frame that is not a valid request."""
        self.protocol_errors += 1
        self._rejected(error.reason)
        return encode(error.to_rejection(), request_id=error.request_id)

    def _rejected(self, reason: ErrorReason) -> None:
        self.rejections[reason] = self.rejections.get(reason, 0) + 1

    # --- sync, replay, heartbeat ---------------------------------------------------------------

    def sync_reply(self, request: Sync, open_orders: OpenOrders) -> SyncReply:
        """Where ``request``'s stream stands: the baseline a (re)connecting client starts from."""
        return SyncReply(
            session=self.session,
            instance=self.instance,
            strategy_id=request.strategy_id,
            seq=self.stream_seq(request.strategy_id),
            venue_seq=self.venue_seq,
            open_orders=open_orders.orders,
            next_after=open_orders.next_after,
            canceled_on_disconnect=self.watch.take(request.strategy_id),
            server_time=None if self._wall_clock is None else self._wall_clock(),
        )

    def replay_reply(self, request_id: int, request: Replay) -> bytes:
        """The frames of the range ``request`` asks for, as they were published."""
        events = self.events.frames(request.strategy_id, request.from_seq, request.to_seq)
        reply = ReplayReply(strategy_id=request.strategy_id, events=events)
        return encode(reply, request_id=request_id)

    def heartbeats(
        self, venue_time: datetime, strategies: Iterable[str] = ()
    ) -> list[tuple[bytes, bytes]]:
        """Topics and frames of one round of heartbeats (``EventLog.heartbeats``)."""
        return self.events.heartbeats(self.session, self.instance, venue_time, strategies)

    # --- events --------------------------------------------------------------------------------

    @property
    def venue_seq(self) -> int:
        """The number of the latest event on the all-events stream."""
        return self.events.venue_seq

    def stream_seq(self, strategy_id: str) -> int:
        """The number of the latest event on ``strategy_id``'s stream."""
        return self.events.stream_seq(strategy_id)

    def publish(self, report: ExecutionReport) -> Event:
        """Number ``report`` on its strategy's stream and on the all-events stream, encode it
        and keep it for replay. A backend that numbers its reports the same way (the engine)
        costs nothing more; others' reports are renumbered."""
        strategy_id = report.strategy_id
        seq, venue_seq = self.events.next_numbers(strategy_id)
        if report.seq != seq or report.venue_seq != venue_seq:
            report = report.model_copy(update={"seq": seq, "venue_seq": venue_seq})
        self.risk.observe(report)
        frame = encode(report)
        self.events.append(strategy_id, frame)
        return Event(
            strategy_id,
            report.instrument,
            report.client_order_id,
            strategy_topic(strategy_id),
            frame,
        )

    @staticmethod
    def notice(strategy_id: str, event: PortEvent) -> tuple[bytes, bytes]:
        """A backend's port event for one strategy (a gateway's hosted port lost its venue, an
        order went in doubt there): topic and frame. Not numbered, not kept for replay."""
        return strategy_topic(strategy_id), encode(event)
