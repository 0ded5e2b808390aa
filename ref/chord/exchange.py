"""Requests, retries and the procedures built on them: the sans-IO engine of a node.

Theory of operation.  ServalDHT is request and response over datagrams
(Sections 6.2 and 6.5): a requester sends a request with a random
Transaction ID, matches the response by that ID and by the endpoint it sent
to, resends the request unchanged after each timeout, and gives up after the
last attempt.  Protocol procedures that need several exchanges (joining,
stabilizing, walking the ring for a lookup) are written as generators that
yield a :class:`Call` (or a list of calls to run at once) and are resumed
with the response, or with ``None`` when the request failed.  The engine
owns the clock, the outgoing datagrams, the timers and the events; it never
touches a socket or reads a clock, so the same code runs on asyncio, in unit
tests and in the simulator.

:class:`Engine` is shared by :class:`ref.chord.node.Node` (a ring member)
and :class:`ref.chord.client.Client` (a resolver or registrant).
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import json
from collections import Counter, deque
from collections.abc import Callable, Generator, Sequence
from typing import Any, Protocol, TypeAlias

from ref.chord.framing import Frame, Framing, Inbound, record_verifies
from ref.chord.ring import RING, Peer, id_bytes
from ref.wire.constants import (
    DHT_VERSION,
    MAX_CLOCK_SKEW,
    MAX_LOOKUP_REFERRALS,
    REQUEST_RETRIES,
    REQUEST_TIMEOUT_DHT,
    TOKEN_LENGTH,
    TOKEN_SECRET_LIFETIME,
    TRANSACTION_ID_LENGTH,
)
from ref.wire.dht import (
    Body,
    DhtMessage,
    Error,
    FindSuccessor,
    FindSuccessorResponse,
    LookupStatus,
    MessageFlags,
    MessageType,
    Resolve,
    ResolveResponse,
    ResolveStatus,
)
from ref.wire.errors import ErrorCode, RemoteProtocolError
from ref.wire.ids import block_base
from ref.wire.records import ServiceRecord
from ref.wire.sal import Endpoint, SalPacket

Datagram: TypeAlias = bytes | Frame
_ERROR = MessageType.ERROR
_RESPONSE_TYPE = {kind: MessageType(kind.value | 0x80) for kind in MessageType if kind.value < 0x80}
_NO_TOKEN = bytes(TOKEN_LENGTH)
#: Flag bits as plain ints: an IntFlag's operators run in Python and build a new flag.
_TRUNCATED = int(MessageFlags.TRUNCATED)
#: Blocks whose newest verified record a requester remembers (DHT-RES-7).
_NEWEST_LIMIT = 4096


class RandomSource(Protocol):
    """What a core needs of randomness: ``random.Random`` or ``SystemRandom``."""

    def random(self) -> float: ...

    def randbytes(self, n: int, /) -> bytes: ...

    def randrange(self, stop: int, /) -> int: ...


@dataclasses.dataclass(slots=True)
class Call:
    """A request to send: where, what, and how hard to try."""

    destination: Endpoint
    body: Body
    key: bytes | None = None  # the Sender Key the answer must carry (DHT-MSG-2)
    retries: int = REQUEST_RETRIES
    sign: bool = False


Reply: TypeAlias = DhtMessage | None
#: A procedure yields a call, a list of calls to run at once, or a delay in seconds.
Procedure: TypeAlias = Generator[Call | list[Call] | float, Any, Any]


@dataclasses.dataclass(slots=True)
class _Join:
    procedure: Procedure
    results: list[Reply]
    waiting: int


@dataclasses.dataclass(slots=True)
class _Pending:
    call: Call
    datagram: Datagram
    attempts_left: int
    deadline: float
    waiter: Procedure | tuple[_Join, int] | None


# --- results of operations -----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Failure:
    """An operation that did not succeed, with the draft's error code."""

    code: ErrorCode
    reason: str


@dataclasses.dataclass(frozen=True)
class LookupResult:
    """successor(target) first, then its successors; ``hops`` requests were sent."""

    nodes: tuple[Peer, ...]
    hops: int


@dataclasses.dataclass(frozen=True)
class Found:
    record: ServiceRecord
    hops: int


@dataclasses.dataclass(frozen=True)
class NotRegistered:
    """No live record: NOT_FOUND from the replica set, or a tombstone (DHT-RES-6)."""

    hops: int
    tombstone: ServiceRecord | None = None


@dataclasses.dataclass(frozen=True)
class Completed:
    """The event that reports the result of an operation started by the application."""

    handle: int
    result: Any


# --- the engine ----------------------------------------------------------------


class Engine:
    """Outstanding requests, timers, events and counters of one ServalDHT endpoint."""

    def __init__(
        self,
        framing: Framing,
        key: bytes,
        endpoint: Endpoint,
        rng: RandomSource,
        now: float,
        *,
        request_timeout: float = REQUEST_TIMEOUT_DHT,
        log: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.framing = framing
        self.key = key
        self.endpoint = endpoint
        self.rng = rng
        self.now = now
        self.request_timeout = request_timeout
        self.counters: Counter[str] = Counter()
        self._log = log
        self._out: list[tuple[Datagram, Endpoint]] = []
        self._events: deque[Any] = deque()
        self._timers: list[tuple[float, int, Any]] = []
        self._sequence = itertools.count()
        self._pending: dict[bytes, _Pending] = {}
        self._peer_tokens: dict[Endpoint, tuple[bytes, float]] = {}
        self._handles = itertools.count(1)
        self._newest: dict[bytes, ServiceRecord] = {}

    # --- the sans-IO interface ---------------------------------------------------

    def datagrams_to_send(self) -> list[tuple[Datagram, Endpoint]]:
        """Datagrams produced since the last call, with their destinations."""
        out, self._out = self._out, []
        return out

    def next_event(self) -> Any:
        """The next event for the application, or None."""
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """The time at which :meth:`handle_timer` must be called next."""
        return self._timers[0][0] if self._timers else None

    def handle_timer(self, now: float) -> None:
        self.now = now
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, action = heapq.heappop(timers)
            if isinstance(action, bytes):
                self._timed_out(action)
            else:
                action()

    def receive_datagram(self, data: Datagram, source: Endpoint, now: float) -> None:
        """Process one datagram received from ``source``; never raises."""
        self.now = now
        try:
            arrival = self.framing.open(data, source)
        except RemoteProtocolError as error:
            self.drop(error.error_code, str(error), source)
            return
        if isinstance(arrival, SalPacket):
            self.receive_sal(arrival, source)
        elif arrival.type & 0x80:
            self._receive_response(arrival)
        else:
            self.receive_request(arrival)

    # --- hooks for subclasses ------------------------------------------------------

    def receive_request(self, inbound: Inbound) -> None:
        self.drop(ErrorCode.MALFORMED, "a client answers no request", inbound.source)

    def receive_sal(self, packet: SalPacket, source: Endpoint) -> None:
        self.drop(ErrorCode.NO_SERVICE, "not a ServalDHT message", source)

    def peer_failed(self, key: bytes) -> None:
        """A request with retries went unanswered: the peer is failed (DHT-RING-10)."""

    def learned(self, peers: Sequence[Peer]) -> None:
        """Nodes named in an answer to a walk; a client may keep them (DHT-RES-10)."""

    def unanswered(self, peer: Peer) -> None:
        """A walk's query to ``peer`` went unanswered."""

    def believed_replica(self, target: int) -> Peer | None:
        """The node this engine believes to be successor(target), to ask first (DHT-RES-10)."""
        return None

    # --- counting and logging ------------------------------------------------------

    def drop(self, code: ErrorCode, reason: str, source: Endpoint | None = None) -> None:
        """Count and log a dropped message (DHT-ERR-4)."""
        self.counters[f"drop.{code.name}"] += 1
        where = endpoint_text(source) if source is not None else None
        self.log("drop", code=code.name, reason=reason, source=where)

    def log(self, event: str, **fields: Any) -> None:
        if self._log is not None:
            self._log({"time": round(self.now, 3), "event": event, **fields})

    def emit(self, event: Any) -> None:
        self._events.append(event)

    def schedule(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (when, next(self._sequence), action))

    # --- requests ------------------------------------------------------------------

    def spawn(self, procedure: Procedure) -> None:
        """Start a procedure; it runs until its first request."""
        self._advance(procedure, None)

    def start_operation(self, procedure: Procedure) -> int:
        """Run a procedure for the application; its result arrives as :class:`Completed`."""
        handle = next(self._handles)
        self.spawn(self._report(handle, procedure))
        return handle

    def _report(self, handle: int, procedure: Procedure) -> Procedure:
        result = yield from procedure
        self.emit(Completed(handle, result))

    def _advance(self, procedure: Procedure, value: Any) -> None:
        try:
            step = procedure.send(value)
        except StopIteration:
            return
        if isinstance(step, Call):
            self._send(step, procedure)
            return
        if isinstance(step, float):
            self.schedule(self.now + step, lambda: self._advance(procedure, None))
            return
        if not step:
            self._advance(procedure, [])
            return
        join = _Join(procedure, [None] * len(step), len(step))
        for index, call in enumerate(step):
            self._send(call, (join, index))

    def _send(self, call: Call, waiter: Procedure | tuple[_Join, int] | None) -> None:
        transaction_id = self.rng.randbytes(TRANSACTION_ID_LENGTH)
        message = DhtMessage(
            body=call.body,
            transaction_id=transaction_id,
            sender_key=self.key,
            token=self.token_for(call.destination),
        )
        datagram, _ = self.framing.encode(message, sign=call.sign)
        deadline = self.now + self.request_timeout
        self._pending[transaction_id] = _Pending(call, datagram, call.retries, deadline, waiter)
        heapq.heappush(self._timers, (deadline, next(self._sequence), transaction_id))
        self._out.append((datagram, call.destination))
        self.counters["requests_sent"] += 1

    def send_raw(self, data: bytes, destination: Endpoint) -> None:
        """Send a datagram built elsewhere (a forwarded SAL packet, an RST)."""
        self._out.append((data, destination))

    def send_request(self, call: Call) -> None:
        """Send a request whose answer nobody waits for (its failure still counts)."""
        self._send(call, None)

    def token_for(self, destination: Endpoint) -> bytes:
        """The newest token from ``destination`` if under 300 seconds old (DHT-TOKEN-5)."""
        entry = self._peer_tokens.get(destination)
        if entry is None or self.now - entry[1] >= TOKEN_SECRET_LIFETIME:
            return _NO_TOKEN
        return entry[0]

    def _timed_out(self, transaction_id: bytes) -> None:
        pending = self._pending.get(transaction_id)
        if pending is None or pending.deadline > self.now:
            return
        if pending.attempts_left > 0:
            # DHT-FRAME-7: the same datagram, the same Transaction ID.
            pending.attempts_left -= 1
            pending.deadline = self.now + self.request_timeout
            heapq.heappush(self._timers, (pending.deadline, next(self._sequence), transaction_id))
            self._out.append((pending.datagram, pending.call.destination))
            self.counters["retransmissions"] += 1
            return
        del self._pending[transaction_id]
        self.counters["requests_failed"] += 1
        if pending.call.retries and pending.call.key is not None:
            self.peer_failed(pending.call.key)
        self._resume(pending.waiter, None)

    def _resume(self, waiter: Procedure | tuple[_Join, int] | None, reply: Reply) -> None:
        if waiter is None:
            return
        if isinstance(waiter, tuple):
            join, index = waiter
            join.results[index] = reply
            join.waiting -= 1
            if join.waiting == 0:
                self._advance(join.procedure, join.results)
            return
        self._advance(waiter, reply)

    def _receive_response(self, inbound: Inbound) -> None:
        pending = self._pending.get(inbound.transaction_id)
        if pending is None or pending.call.destination != inbound.source:
            # DHT-HDR-10: no outstanding request to that endpoint has this ID.
            self.drop(ErrorCode.MALFORMED, "response matches no request", inbound.source)
            return
        if inbound.version != DHT_VERSION:
            self.drop(ErrorCode.UNSUPPORTED_VERSION, "response version", inbound.source)
            return
        try:
            message = self.framing.decode(inbound)
        except RemoteProtocolError as error:
            self.drop(error.error_code, str(error), inbound.source)
            return
        expected = pending.call.body.TYPE | 0x80
        if message.body.TYPE not in (expected, _ERROR):
            self.drop(
                ErrorCode.MALFORMED, "response of the wrong type", inbound.source
            )  # DHT-MSG-1
            return
        if pending.call.key is not None and message.sender_key != pending.call.key:
            self.drop(ErrorCode.MALFORMED, "response from another key", inbound.source)  # DHT-MSG-2
            return
        del self._pending[inbound.transaction_id]
        self._peer_tokens[inbound.source] = (message.token, self.now)
        self.counters["responses_received"] += 1
        self._resume(pending.waiter, message)

    # --- walks over the ring (Sections 6.6 and 6.9.1) ---------------------------------

    def lookup_walk(self, target: int, candidates: Sequence[Peer]) -> Procedure:
        """Iterative lookup of successor(target) (Section 6.6); returns LookupResult or Failure."""
        pool = {peer.key: peer for peer in candidates if peer.key != self.key}
        queried: set[bytes] = set()
        referrals = 0
        hops = 0
        while True:
            peer = _closest_unqueried(pool, queried, target)
            if peer is None:
                return Failure(ErrorCode.LIMIT_EXCEEDED, "no candidate left")  # DHT-LOOKUP-6
            queried.add(peer.key)
            hops += 1
            query = Call(peer.endpoint, FindSuccessor(id_bytes(target)), key=peer.key, retries=0)
            reply = yield query
            if reply is not None and int(reply.flags) & _TRUNCATED:
                # DHT-AMP-4: the whole list, with the token that came with the cut one;
                # its later entries are the fallbacks when the first have failed.
                reply = (yield query) or reply
            if reply is None:
                self.unanswered(peer)
            body = reply.body if reply is not None else None
            if not isinstance(body, FindSuccessorResponse):
                continue  # DHT-LOOKUP step 5: timeout or ERROR, next candidate
            nodes = [Peer.from_info(info) for info in body.nodes]
            self.learned(nodes)
            if body.status is LookupStatus.DONE:
                return LookupResult(tuple(nodes), hops)
            referrals += 1
            if referrals >= MAX_LOOKUP_REFERRALS:
                return Failure(ErrorCode.LIMIT_EXCEEDED, "64 referrals")  # DHT-LOOKUP-6
            # DHT-LOOKUP-7: a referral that makes no progress, outside (peer, target),
            # is ignored.  in_open(node.id, peer.id, target), inline.
            start = peer.id
            span = (target - start) % RING or RING
            for node in nodes:
                if node.key not in queried and 0 < (node.id - start) % RING < span:
                    pool.setdefault(node.key, node)

    def resolve_walk(
        self, service_id: bytes, candidates: Sequence[Peer], owner_key: bytes | None = None
    ) -> Procedure:
        """Resolve a serviceID in return mode (Section 6.9.1).

        Returns :class:`Found`, :class:`NotRegistered` or :class:`Failure`.
        Records that fail the checks of DHT-RES-5 count as no answer.
        """
        base = block_base(service_id)
        target = int.from_bytes(base, "big")
        pool = {peer.key: peer for peer in candidates if peer.key != self.key}
        queried: set[bytes] = set()
        referrals = 0
        hops = 0
        last_refer: list[Peer] = []
        not_found_from: Peer | None = None
        first = self.believed_replica(target)
        while True:
            if first is not None:
                # DHT-RES-10: start at the node believed to hold the record.
                peer, first = first, None
            elif not_found_from is not None:
                # DHT-RES-4: confirm NOT_FOUND with a second member of the replica set.
                second = next((p for p in last_refer if p.key not in queried), None)
                if second is None:
                    return NotRegistered(hops)
                peer = second
            else:
                # Follow the last REFER answer, in its order, before other candidates
                # (Section 6.9.1): it names the replica set, which follows b and so
                # ranks last by the distance to b that orders the rest.
                found = next(
                    (p for p in last_refer if p.key not in queried and p.key != self.key), None
                ) or _closest_unqueried(pool, queried, target)
                if found is None:
                    return Failure(ErrorCode.LIMIT_EXCEEDED, "no candidate left")
                peer = found
            queried.add(peer.key)
            hops += 1
            reply = yield Call(peer.endpoint, Resolve(service_id), key=peer.key, retries=0)
            if _needs_token(reply):
                # The answer was too large for an unvalidated source (DHT-AMP-1); the
                # ERROR carried a token, so the same query is repeated with it.
                reply = yield Call(peer.endpoint, Resolve(service_id), key=peer.key, retries=0)
            if reply is None:
                self.unanswered(peer)
            body = reply.body if reply is not None else None
            if not isinstance(body, ResolveResponse):
                continue
            if body.status is ResolveStatus.FOUND:
                record = body.record
                assert record is not None
                if not self.record_acceptable(record, base, owner_key):
                    continue  # DHT-RES-5: as if the node had not answered
                record = self._newest_seen(record)
                if record.is_tombstone:
                    return NotRegistered(hops, record)  # DHT-RES-6
                return Found(record, hops)
            if body.status is ResolveStatus.NOT_FOUND:
                if not_found_from is not None:
                    return NotRegistered(hops)
                not_found_from = peer
                if not last_refer:
                    # DHT-RES-4: no REFER named the replica set, so a lookup of b does.
                    lookup = yield from self.lookup_walk(target, [peer, *pool.values()])
                    if isinstance(lookup, LookupResult):
                        hops += lookup.hops
                        last_refer = list(lookup.nodes)
                continue
            nodes = [Peer.from_info(info) for info in body.nodes]
            self.learned(nodes)
            last_refer = nodes
            referrals += 1
            if referrals >= MAX_LOOKUP_REFERRALS:
                return Failure(ErrorCode.LIMIT_EXCEEDED, "64 referrals")
            for node in nodes:
                if node.key not in queried:
                    pool.setdefault(node.key, node)

    def _newest_seen(self, record: ServiceRecord) -> ServiceRecord:
        """DHT-RES-7: a verified record is never replaced by one of lower Sequence."""
        seen = self._newest.get(record.service_id)
        if seen is not None and seen.expires_at > self.now and seen.sequence > record.sequence:
            return seen
        if len(self._newest) >= _NEWEST_LIMIT:
            self._newest.clear()
        self._newest[record.service_id] = record
        return record

    def record_acceptable(
        self, record: ServiceRecord, base: bytes, owner_key: bytes | None
    ) -> bool:
        """The client's checks of DHT-RES-5 on a record received for the block ``base``."""
        if record.service_id != base:
            return False
        if record.expires_at <= self.now or record.issued_at > self.now + MAX_CLOCK_SKEW:
            return False
        if owner_key is not None and record.owner_key != owner_key:
            return False  # a key-bound name: the record must be signed by the key in it
        return record_verifies(record)


def _needs_token(reply: Reply) -> bool:
    body = reply.body if reply is not None else None
    return isinstance(body, Error) and body.error_code == ErrorCode.ADDRESS_NOT_VALIDATED


def _closest_unqueried(pool: dict[bytes, Peer], queried: set[bytes], target: int) -> Peer | None:
    best: Peer | None = None
    best_distance = 0
    for key, peer in pool.items():
        if key in queried:
            continue
        gap = (target - peer.id) % RING  # distance(peer.id, target), inline
        if best is None or gap < best_distance:
            best, best_distance = peer, gap
    return best


def endpoint_text(endpoint: Endpoint) -> str:
    return f"[{endpoint.address}]:{endpoint.port}"


def report_json(report: dict[str, Any], limit: int) -> bytes:
    """A JSON report of at most ``limit`` bytes, dropping members from the end if needed."""
    members = dict(report)
    while True:
        data = json.dumps(members, separators=(",", ":"), sort_keys=False).encode()
        if len(data) <= limit or not members:
            return data
        members.popitem()
