"""A ServalDHT ring member: Chord with Zave's corrections, records and replication.

Theory of operation.  A node answers the requests of Section 6.4, dispatched
by table, after the checks of Section 6.11 in their order: rate limit,
length, version, type, body, signature.  Its routing state is a successor
list of r entries, a predecessor list of k entries and a few fingers; it
changes only through the procedures of Section 6.5, which run as generators
on the request engine of :mod:`ref.chord.exchange`:

- join: look up successor(own ID), copy that node's successor list;
- stabilize, every 5 s +/- 20 %: ask the first live successor for its
  neighbours, adopt its predecessor if that lies between and answers, copy
  the list, then send a signed RECTIFY;
- check predecessor, every 5 s: walk the predecessor list with GET_NEIGHBORS;
- fix fingers, every 10 s: one lookup of successor(n + 2^i);
- leave: hand the records to the successor, then send signed LEAVEs.

Every change of the successor or predecessor list runs re-replication
(DHT-REPL-9), and adopting a new predecessor hands it its records
(DHT-REPL-10, -11).  A request that fails validation changes nothing but
counters and rate-limit buckets (DHT-ERR-5): each handler decides fully
before it mutates state.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain
from typing import Any

from ref.chord.abuse import RateLimiter, Tokens, address_bytes
from ref.chord.exchange import (
    Call,
    Engine,
    Failure,
    Found,
    LookupResult,
    NotRegistered,
    Procedure,
    RandomSource,
    endpoint_text,
    report_json,
)
from ref.chord.forward import ForwardMode
from ref.chord.framing import Framing, Inbound, record_verifies, unsigned_size
from ref.chord.ring import (
    Peer,
    closest_preceding,
    distance,
    extend,
    id_bytes,
    id_of,
    in_closed_open,
    in_half_open,
    in_open,
    node_id_of,
)
from ref.chord.store import Outcome, RecordStore, Refusal, ResolverCache
from ref.wire.constants import (
    AMPLIFICATION_FACTOR,
    CHECK_PREDECESSOR_INTERVAL,
    DEFAULT_REPLICAS,
    DEFAULT_SUCCESSOR_LIST_LENGTH,
    FIX_FINGERS_INTERVAL,
    MAX_NODES_PER_MESSAGE,
    MAX_RECORDS_PER_NODE,
    MAX_RECORDS_PER_OWNER,
    MAX_STATUS_LENGTH,
    MAX_SUCCESSOR_LIST_LENGTH,
    MIN_SUCCESSOR_LIST_LENGTH,
    RATE_LIMIT_BURST,
    RATE_LIMIT_PER_SOURCE,
    REFER_NODES,
    REPLICA_GRACE_PERIOD,
    REQUEST_TIMEOUT_DHT,
    STABILIZE_INTERVAL,
    STABILIZE_JITTER,
)
from ref.wire.dht import (
    SIGNED_TYPES,
    Body,
    DhtMessage,
    Error,
    FindSuccessor,
    FindSuccessorResponse,
    GetNeighbors,
    Leave,
    LeaveResponse,
    LookupStatus,
    MessageFlags,
    MessageType,
    Neighbors,
    Ping,
    Pong,
    Rectify,
    RectifyResponse,
    Replicate,
    ReplicateResponse,
    Resolve,
    ResolveResponse,
    ResolveStatus,
    StatusResponse,
    Store,
    StoreResponse,
)
from ref.wire.errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from ref.wire.ids import block_base
from ref.wire.records import ServiceRecord
from ref.wire.sal import Endpoint, SalPacket
from ref.wire.status import nested_counters

Handler = Callable[[Inbound, DhtMessage, bool], None]
_NO_FLAGS = MessageFlags(0)
#: Flag bits as plain ints: an IntFlag's operators run in Python and build a new flag.
_SIGNED = int(MessageFlags.SIGNED)
_TRUNCATED = int(MessageFlags.TRUNCATED)
_REQUEST_COUNTER = {kind: f"request.{kind.name}" for kind in MessageType}
#: The counters of the draft's Appendix C, listed first in the STATUS report.
_COUNTED = ("drop.", "error_sent.")


@dataclasses.dataclass(frozen=True)
class NodeConfig:
    """The defaults of Section 6.13 that an operator may change (DHT-TIMER-1)."""

    successors: int = DEFAULT_SUCCESSOR_LIST_LENGTH
    replicas: int = DEFAULT_REPLICAS
    request_timeout: float = REQUEST_TIMEOUT_DHT
    stabilize_interval: float = STABILIZE_INTERVAL
    check_predecessor_interval: float = CHECK_PREDECESSOR_INTERVAL
    fix_fingers_interval: float = FIX_FINGERS_INTERVAL
    rate: float = RATE_LIMIT_PER_SOURCE
    burst: float = RATE_LIMIT_BURST
    max_records: int = MAX_RECORDS_PER_NODE
    max_per_owner: int = MAX_RECORDS_PER_OWNER
    forward_mode: bool = False  # act as a SAL service router (Section 6.9.3)

    def __post_init__(self) -> None:
        if not MIN_SUCCESSOR_LIST_LENGTH <= self.successors <= MAX_SUCCESSOR_LIST_LENGTH:
            raise LocalProtocolError("the successor list length r is 3 to 16 (DHT-RING-1)")
        if not 1 <= self.replicas <= self.successors:
            raise LocalProtocolError("the replication factor k is 1 to r (DHT-REPL-2)")


class NodeState(enum.Enum):
    NEW = "new"
    JOINING = "joining"
    MEMBER = "member"
    LEAVING = "leaving"
    LEFT = "left"


@dataclasses.dataclass(frozen=True)
class Joined:
    """The node is a ring member; ``successor`` is its first successor."""

    successor: Peer


@dataclasses.dataclass(frozen=True)
class Left:
    """The node has handed its records over and left the ring."""


class Node(Engine):
    """One ServalDHT ring member (sans-IO)."""

    def __init__(
        self,
        framing: Framing,
        key: bytes,
        endpoint: Endpoint,
        rng: RandomSource,
        now: float,
        config: NodeConfig | None = None,
        *,
        log: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        config = config or NodeConfig()
        super().__init__(
            framing, key, endpoint, rng, now, request_timeout=config.request_timeout, log=log
        )
        self.config = config
        self.id = node_id_of(key)
        self.me = Peer.of(key, endpoint)
        self.state = NodeState.NEW
        self.successors: list[Peer] = []
        self.predecessors: list[Peer] = []
        self.fingers: dict[int, Peer] = {}
        self.ring_complete = False  # the last predecessor walk came back to this node
        self.store = RecordStore(max_records=config.max_records, max_per_owner=config.max_per_owner)
        self.cache = ResolverCache()
        self.tokens = Tokens(rng.randbytes, now)
        self.limiter = RateLimiter(config.rate, config.burst)
        self._bootstrap: list[Endpoint] = []
        self._next_finger = 255
        self._running: set[str] = set()
        self._maintaining = False
        self._probing_predecessor = False
        self._rectify_candidate: Peer | None = None
        self._unacked: dict[tuple[bytes, bytes], Peer] = {}
        self._replicating: set[tuple[bytes, bytes]] = set()
        self._outside_since: dict[bytes, float] = {}
        self.router = ForwardMode(self) if config.forward_mode else None
        #: Called with every STATUS report before it is sent, to add what a host
        #: sharing the endpoint offers (ref.chord.saltarget).
        self.amend_status: Callable[[dict[str, Any]], None] | None = None
        self._handlers: dict[MessageType, Handler] = {
            MessageType.PING: self._on_ping,
            MessageType.FIND_SUCCESSOR: self._on_find_successor,
            MessageType.GET_NEIGHBORS: self._on_get_neighbors,
            MessageType.RECTIFY: self._on_rectify,
            MessageType.STORE: self._on_store,
            MessageType.RESOLVE: self._on_resolve,
            MessageType.REPLICATE: self._on_replicate,
            MessageType.LEAVE: self._on_leave,
            MessageType.STATUS: self._on_status,
        }

    # --- life cycle --------------------------------------------------------------

    def start(self, bootstrap: Sequence[Endpoint] = ()) -> None:
        """Create a ring (no bootstrap endpoints, DHT-BOOT-1) or join one."""
        if self.state is not NodeState.NEW:
            raise LocalProtocolError("a node starts once")
        self._bootstrap = list(bootstrap)
        self.schedule(self.tokens.rotates_at, self._rotate_tokens)
        if not self._bootstrap:
            self.successors = [self.me]
            self._become_member()
        else:
            self.state = NodeState.JOINING
            self.spawn(self._join())

    def leave(self) -> int:
        """Hand records over and leave the ring; completes with :class:`Left`."""
        if self.state is not NodeState.MEMBER:
            raise LocalProtocolError(f"a {self.state.value} node cannot leave")
        return self.start_operation(self._leave())

    @property
    def alone(self) -> bool:
        return bool(self.successors) and self.successors[0].key == self.key

    def _become_member(self) -> None:
        self.state = NodeState.MEMBER
        self.log("joined", successor=endpoint_text(self.successors[0].endpoint))
        self.emit(Joined(self.successors[0]))
        if self._maintaining:
            return  # a rejoin (DHT-RING-11): the periodic procedures still run
        self._maintaining = True
        config = self.config
        # Join step 4 (Section 6.5): the periodic procedures begin with a stabilization
        # round, whose RECTIFY makes the successor hand the records over at once.
        self.schedule(self.now, self._tick_stabilize)
        self.schedule(self._jittered(config.check_predecessor_interval), self._tick_predecessor)
        self.schedule(self.now + config.fix_fingers_interval, self._tick_fingers)

    def _jittered(self, interval: float) -> float:
        # DHT-RING-6: uniform in interval +/- 20 %.
        return self.now + interval * (1 + STABILIZE_JITTER * (2 * self.rng.random() - 1))

    def _join(self) -> Procedure:
        """Section 6.12 and the join of Section 6.5; retried until it succeeds (DHT-BOOT-2)."""
        while True:
            seeds = yield from self._contact_bootstrap()
            if seeds:
                result = yield from self.lookup_walk(self.id, seeds)
                if isinstance(result, LookupResult):
                    others = [peer for peer in result.nodes if peer.key != self.key]
                    if others:
                        successor = others[0]
                        reply = yield from self._get_neighbors(successor)
                        body = reply.body if reply is not None else None
                        if isinstance(body, Neighbors):
                            # DHT-RING-5: the successor extended with its successor list.
                            reported = [Peer.from_info(info) for info in body.successors]
                            self.predecessors = []
                            self._set_successors(
                                extend(self.id, [successor], reported, self.config.successors)
                            )
                            self._become_member()
                            return
            yield self.config.request_timeout

    def _contact_bootstrap(self) -> Procedure:
        known = [peer.endpoint for peer in self._known_peers()]
        for endpoint in [*self._bootstrap, *known]:
            reply = yield Call(endpoint, Ping())
            body = reply.body if reply is not None else None
            if isinstance(body, Pong) and reply is not None and reply.sender_key != self.key:
                self._learn_observed(body.observed)
                return [Peer.of(reply.sender_key, endpoint)]
        return []

    def _learn_observed(self, observed: Endpoint) -> None:
        """A node lists itself with the endpoint others observe (Sections 6.6, 6.12)."""
        if observed != self.me.endpoint:
            self.me = Peer.of(self.key, observed)
            self.endpoint = observed
            if self.alone:
                self.successors = [self.me]

    def _leave(self) -> Procedure:
        self.state = NodeState.LEAVING
        successor = None if self.alone or not self.successors else self.successors[0]
        if successor is not None:
            # DHT-REPL-13: hand every record to the first successor and wait.
            yield [
                Call(successor.endpoint, Replicate(record), key=successor.key, sign=True)
                for record in self._live_records()
            ]
        body = Leave(
            predecessor=self.predecessors[0].info() if self.predecessors else None,
            successors=tuple(peer.info() for peer in self.successors if peer.key != self.key),
        )
        targets = {peer.key: peer for peer in self.successors[:1] + self.predecessors[:1]}
        targets.pop(self.key, None)
        yield [Call(p.endpoint, body, key=p.key, sign=True) for p in targets.values()]
        self.state = NodeState.LEFT
        self.log("left")
        self.emit(Left())
        return Left()

    # --- requests ------------------------------------------------------------------

    def receive_sal(self, packet: SalPacket, source: Endpoint) -> None:
        if self.router is None or self.state is not NodeState.MEMBER:
            self.drop(ErrorCode.NO_SERVICE, "not a ServalDHT message", source)
            return
        self.router.receive(packet, source)

    def receive_request(self, inbound: Inbound) -> None:
        if self.state in (NodeState.NEW, NodeState.LEFT):
            self.drop(ErrorCode.NO_SERVICE, "node not running", inbound.source)
            return
        address = inbound.observed.address
        if not self.limiter.admit(address, self.now):
            # DHT-RATE-2; DHT-RATE-3 allows an ERROR, at most one a second (DHT-RATE-4).
            self.drop(ErrorCode.RATE_LIMITED, "request rate", inbound.source)
            if self.limiter.may_send_error(address, self.now):
                self.refuse(inbound, ErrorCode.RATE_LIMITED, "slow down", validated=False)
            return
        try:
            message = self.framing.decode(inbound)
        except RemoteProtocolError as error:
            self.refuse(inbound, error.error_code, str(error), validated=False)
            return
        validated = self.tokens.valid(inbound.token, address)
        kind = message.body.TYPE
        if kind in SIGNED_TYPES and not int(message.flags) & _SIGNED:
            self.refuse(inbound, ErrorCode.SIGNATURE_REQUIRED, kind.name, validated)  # DHT-MSG-3
            return
        self.counters[_REQUEST_COUNTER[kind]] += 1
        self._handlers[kind](inbound, message, validated)

    def reply(self, inbound: Inbound, body: Body, validated: bool) -> None:
        """Answer a request at its observed endpoint with a fresh token (DHT-FRAME-4, HDR-14)."""
        flags = _NO_FLAGS
        if not validated:
            body, flags = self._within_amplification_limit(body, inbound.size)
        message = DhtMessage(
            body=body,
            transaction_id=inbound.transaction_id,
            sender_key=self.key,
            token=self.tokens.issue(inbound.observed.address),
            flags=flags,
        )
        datagram, _ = self.framing.encode(message, sign=False)
        self._out.append((datagram, inbound.observed))
        if isinstance(body, Error):
            code = ErrorCode(body.error_code)
            self.counters[f"error_sent.{code.name}"] += 1  # DHT-ERR-4
            self.log(
                "error",
                code=code.name,
                reason=body.reason.decode(errors="replace"),
                peer=endpoint_text(inbound.observed),
            )

    def refuse(self, inbound: Inbound, code: ErrorCode, reason: str, validated: bool) -> None:
        self.reply(inbound, Error(code, _utf8_prefix(reason.encode(), 200)), validated)

    def _within_amplification_limit(
        self, body: Body, request_size: int
    ) -> tuple[Body, MessageFlags]:
        """Shorten an answer to an unvalidated source to 3x its request (Section 6.10.2)."""
        limit = AMPLIFICATION_FACTOR * request_size
        if unsigned_size(body) <= limit:
            return body, _NO_FLAGS
        shorter: Body | None = None
        if isinstance(body, FindSuccessorResponse | ResolveResponse) and body.nodes:
            nodes = body.nodes
            while len(nodes) > 1 and unsigned_size(dataclasses.replace(body, nodes=nodes)) > limit:
                nodes = nodes[:-1]
            shorter = dataclasses.replace(body, nodes=nodes)
        elif isinstance(body, Neighbors):
            candidate = body
            while unsigned_size(candidate) > limit and (
                candidate.successors or candidate.predecessor
            ):
                if candidate.successors:
                    candidate = dataclasses.replace(candidate, successors=candidate.successors[:-1])
                else:
                    candidate = dataclasses.replace(candidate, predecessor=None)
            shorter = candidate
        if shorter is not None and unsigned_size(shorter) <= limit:
            return shorter, MessageFlags.TRUNCATED  # DHT-AMP-2
        room = max(0, limit - unsigned_size(Error(ErrorCode.ADDRESS_NOT_VALIDATED)))
        if isinstance(body, Error):
            return Error(body.error_code, _utf8_prefix(body.reason, room)), _NO_FLAGS
        reason = b"answer too large for an unvalidated source"[:room]
        return Error(ErrorCode.ADDRESS_NOT_VALIDATED, reason), _NO_FLAGS

    # --- handlers (Section 6.4) ---------------------------------------------------------

    def _on_ping(self, inbound: Inbound, message: DhtMessage, validated: bool) -> None:
        self.reply(inbound, Pong(inbound.observed), validated)  # DHT-MSG-8

    def _on_find_successor(self, inbound: Inbound, message: DhtMessage, validated: bool) -> None:
        assert isinstance(message.body, FindSuccessor)
        status, peers = self.answer_lookup(id_of(message.body.target_id))
        if not peers:
            self.refuse(inbound, ErrorCode.INTERNAL_ERROR, "rejoining the ring", validated)
            return
        body = FindSuccessorResponse(status, tuple([peer.node_info for peer in peers]))
        self.reply(inbound, body, validated)

    def _on_get_neighbors(self, inbound: Inbound, message: DhtMessage, validated: bool) -> None:
        if not self.successors:
            # Rejoining (DHT-RING-11): an empty list would cut the asker's list short.
            self.refuse(inbound, ErrorCode.INTERNAL_ERROR, "rejoining the ring", validated)
            return
        self.reply(inbound, self._neighbors_body(), validated)  # DHT-MSG-10

    def _neighbors_body(self) -> Neighbors:
        return Neighbors(
            predecessor=self.predecessors[0].info() if self.predecessors else None,
            successors=tuple([peer.node_info for peer in self.successors]),
        )

    def _on_rectify(self, inbound: Inbound, message: DhtMessage, validated: bool) -> None:
        if not validated:
            # DHT-MSG-12: a replayed RECTIFY from a forged source changes nothing.
            self.refuse(inbound, ErrorCode.ADDRESS_NOT_VALIDATED, "RECTIFY needs a token", False)
            return
        self.reply(inbound, RectifyResponse(), validated)  # DHT-MSG-11
        if message.sender_key != self.key and self.state is NodeState.MEMBER:
            self._rectify(Peer.of(message.sender_key, inbound.observed))

    def _on_store(self, inbound: Inbound, message: DhtMessage, validated: bool) -> None:
        body = message.body
        assert isinstance(body, Store)
        record = body.record

        def addresses_validated(record: ServiceRecord) -> bool:
            # DHT-TOKEN-6: the observed address with a validated source, or a token.
            # Compared as 16-byte addresses: an IPv4 address is its IPv4-mapped form.
            observed = address_bytes(inbound.observed.address)
            for endpoint in record.endpoints:
                if validated and address_bytes(endpoint.address) == observed:
                    continue
                if not any(self.tokens.valid(t, endpoint.address) for t in body.address_tokens):
                    return False
            return True

        outcome = self._offer(record, addresses_validated)
        if isinstance(outcome, Refusal):
            self.refuse(inbound, outcome.code, outcome.reason, validated)
            return
        self.reply(inbound, StoreResponse(record.sequence), validated)  # DHT-MSG-13
        if outcome is not Outcome.IDENTICAL:
            self.log("stored", service_id=record.service_id.hex(), sequence=record.sequence)
            # DHT-REPL-4: to every other member of this node's view of the replica set.
            for peer in self._view(id_of(record.service_id)):
                self._replicate(record, peer)

    def _offer(
        self,
        record: ServiceRecord,
        addresses_validated: Callable[[ServiceRecord], bool] | None,
    ) -> Outcome | Refusal:
        return self.store.offer(
            record,
            self.now,
            verify=record_verifies,
            responsible=lambda service_id: self.is_member(id_of(service_id)),
            addresses_validated=addresses_validated,
        )

    def _on_resolve(self, inbound: Inbound, message: DhtMessage, validated: bool) -> None:
        assert isinstance(message.body, Resolve)
        base = block_base(message.body.service_id)
        record = self.store.get(base, self.now) or self.cache.get(base, self.now)
        if record is not None:
            body = ResolveResponse(ResolveStatus.FOUND, record=record)
        elif self.is_member(id_of(base)):
            body = ResolveResponse(ResolveStatus.NOT_FOUND)  # DHT-RES-2
        else:
            target = id_of(base)
            first = self.successors[0] if self.successors else None
            if first is not None and in_half_open(target, self.id, first.id):
                peers = self.successors[: self.config.replicas]
            else:
                peers = closest_preceding(self.id, target, self._known_peers(), REFER_NODES)
            if not peers:
                self.refuse(inbound, ErrorCode.INTERNAL_ERROR, "rejoining the ring", validated)
                return
            body = ResolveResponse(ResolveStatus.REFER, nodes=tuple(p.info() for p in peers))
        self.reply(inbound, body, validated)

    def _on_replicate(self, inbound: Inbound, message: DhtMessage, validated: bool) -> None:
        body = message.body
        assert isinstance(body, Replicate)
        sender = message.sender_key
        neighbours = chain(self.predecessors[: self.config.replicas - 1], self.successors)
        if not any(peer.key == sender for peer in neighbours):
            # DHT-REPL-6
            self.refuse(inbound, ErrorCode.NOT_RESPONSIBLE, "not a neighbour", validated)
            return
        outcome = self._offer(body.record, None)
        if isinstance(outcome, Refusal):
            self.refuse(inbound, outcome.code, outcome.reason, validated)
            return
        self.reply(inbound, ReplicateResponse(), validated)  # DHT-REPL-7

    def _on_leave(self, inbound: Inbound, message: DhtMessage, validated: bool) -> None:
        body = message.body
        assert isinstance(body, Leave)
        if not validated:
            self.refuse(inbound, ErrorCode.ADDRESS_NOT_VALIDATED, "LEAVE needs a token", False)
            return
        self.reply(inbound, LeaveResponse(), validated)
        if self.state is NodeState.MEMBER and message.sender_key != self.key:
            self._apply_leave(Peer.of(message.sender_key, inbound.observed), body)

    def _on_status(self, inbound: Inbound, message: DhtMessage, validated: bool) -> None:
        report = report_json(self.status(), MAX_STATUS_LENGTH)
        self.reply(inbound, StatusResponse(report), validated)

    # --- answers ---------------------------------------------------------------------

    def answer_lookup(self, target: int) -> tuple[LookupStatus, list[Peer]]:
        """The answer to FIND_SUCCESSOR(target), by the steps of Section 6.6."""
        if self.alone:
            return LookupStatus.DONE, [self.me]
        # Step 2: from the first entry at or after the target on, in the first
        # half of the list so that half a list of fallbacks remains.
        successors = self.successors[: (self.config.successors + 1) // 2]
        if successors and in_half_open(target, self.id, successors[-1].id):
            for index, peer in enumerate(successors):
                if in_half_open(target, self.id, peer.id):
                    return LookupStatus.DONE, self.successors[index:][:MAX_NODES_PER_MESSAGE]
        if self.predecessors and in_half_open(target, self.predecessors[0].id, self.id):
            return LookupStatus.DONE, [self.me, *self.successors][:MAX_NODES_PER_MESSAGE]
        return LookupStatus.REFER, closest_preceding(
            self.id, target, self._known_peers(), REFER_NODES
        )

    def believed_replica(self, target: int) -> Peer | None:
        """successor(target) when this node's own neighbours say it (Section 6.6, step 2).

        A block between this node and its successor is held by the successor,
        which no node in (n, target) can name: without this, such a block
        would be looked for among nodes that precede it and never found.
        """
        status, peers = self.answer_lookup(target)
        if status is LookupStatus.DONE:
            return next((p for p in peers if p.key != self.key), None)
        return None

    def _known_peers(self) -> Iterator[Peer]:
        return chain(self.fingers.values(), self.successors, self.predecessors)

    def lookup_candidates(self, target: int) -> list[Peer]:
        """Where this node starts a lookup: every node it knows in (n, target).

        A node's own lookups are not bound by the size of a REFER answer, so
        it keeps all its routing state as fallbacks (Section 6.6, step 1).
        """
        return closest_preceding(self.id, target, self._known_peers(), 1 << 16)

    def lookup(self, target: bytes) -> int:
        """Look up successor(target); completes with LookupResult or Failure."""
        return self.start_operation(self._lookup(id_of(target)))

    def _lookup(self, target: int) -> Procedure:
        status, peers = self.answer_lookup(target)
        if status is LookupStatus.DONE:
            return LookupResult(tuple(peers), 0)
        return (yield from self.lookup_walk(target, self.lookup_candidates(target)))

    def resolve(self, service_id: bytes, owner_key: bytes | None = None) -> int:
        """Resolve in return mode; completes with Found, NotRegistered or Failure."""
        target = id_of(block_base(service_id))
        candidates = self.lookup_candidates(target)
        return self.start_operation(self._resolve(service_id, candidates, owner_key))

    def _resolve(
        self, service_id: bytes, candidates: list[Peer], owner_key: bytes | None
    ) -> Procedure:
        base = block_base(service_id)
        record = self.store.get(base, self.now) or self.cache.get(base, self.now)
        if record is not None and self.record_acceptable(record, base, owner_key):
            return NotRegistered(0, record) if record.is_tombstone else Found(record, 0)
        result = yield from self.resolve_walk(service_id, candidates, owner_key)
        if isinstance(result, Found):
            self.cache.put(result.record, self.now)  # DHT-CACHE-1
        elif isinstance(result, NotRegistered) and result.tombstone is not None:
            self.cache.put(result.tombstone, self.now)
        return result

    # --- membership and replica sets (Section 6.8) ---------------------------------------

    def is_member(self, block: int) -> bool:
        """The membership test of Section 6.8 for a block base."""
        preds = self.predecessors
        if not preds or self.alone or self.ring_complete:
            return True
        return in_half_open(block, preds[-1].id, self.id)

    def is_first_replica(self, block: int, predecessors: Sequence[Peer] | None = None) -> bool:
        preds = self.predecessors if predecessors is None else predecessors
        return not preds or in_half_open(block, preds[0].id, self.id)

    def _view(self, block: int) -> list[Peer]:
        """This node's view of the replica set of a block, without itself (Section 6.8)."""
        before = [p for p in reversed(self.predecessors) if in_closed_open(p.id, block, self.id)]
        view = [*before, self.me, *self.successors][: self.config.replicas]
        seen: set[bytes] = {self.key}
        others = []
        for peer in view:
            if peer.key not in seen:
                seen.add(peer.key)
                others.append(peer)
        return others

    def _replica_targets(self, successors: Sequence[Peer]) -> list[Peer]:
        """The other members of the replica set of a block this node heads."""
        return [p for p in successors[: self.config.replicas - 1] if p.key != self.key]

    def _live_records(self) -> list[ServiceRecord]:
        self.store.expire(self.now)  # DHT-REC-7: never replicated once expired
        return list(self.store.records())

    def _replicate(self, record: ServiceRecord, peer: Peer) -> None:
        key = (record.service_id, peer.key)
        self._unacked[key] = peer
        if key not in self._replicating:
            self.spawn(self._replicate_to(record, peer, key))

    def _replicate_to(
        self, record: ServiceRecord, peer: Peer, key: tuple[bytes, bytes]
    ) -> Procedure:
        self._replicating.add(key)
        try:
            reply = yield Call(peer.endpoint, Replicate(record), key=peer.key, sign=True)
        finally:
            self._replicating.discard(key)
        body = reply.body if reply is not None else None
        settled = isinstance(body, ReplicateResponse) or (
            isinstance(body, Error)
            and body.error_code in (ErrorCode.NOT_OWNER, ErrorCode.STALE_SEQUENCE)
        )
        stored = self.store.get(record.service_id, self.now)
        if settled and stored == record:
            self._unacked.pop(key, None)

    def _retry_replication(self) -> None:
        """DHT-REPL-8: resend unanswered REPLICATEs while they still make sense."""
        for key, peer in list(self._unacked.items()):
            service_id = key[0]
            record = self.store.get(service_id, self.now)
            in_view = any(p.key == peer.key for p in self._view(id_of(service_id)))
            if record is None or not in_view:
                del self._unacked[key]
            elif key not in self._replicating:
                self.spawn(self._replicate_to(record, peer, key))

    def _after_change(self, old_predecessors: list[Peer], old_successors: list[Peer]) -> None:
        """Handover and re-replication after a change of either list (DHT-REPL-9 to -11)."""
        new_first = self.predecessors[0] if self.predecessors else None
        old_first = old_predecessors[0] if old_predecessors else None
        records: list[ServiceRecord] | None = None
        if new_first is not None and (old_first is None or new_first.key != old_first.key):
            records = self._live_records()
            for record in records:
                block = id_of(record.service_id)
                if old_first is None:
                    handover = not in_half_open(block, new_first.id, self.id)  # DHT-REPL-11
                else:
                    handover = in_open(new_first.id, old_first.id, self.id) and in_half_open(
                        block, old_first.id, new_first.id
                    )  # DHT-REPL-10
                if handover:
                    self._replicate(record, new_first)
        targets = self._replica_targets(self.successors)
        old_targets = {p.key for p in self._replica_targets(old_successors)}
        same_first = (new_first and new_first.key) == (old_first and old_first.key)
        if same_first and {p.key for p in targets} == old_targets:
            return
        for record in records if records is not None else self._live_records():
            block = id_of(record.service_id)
            if not self.is_first_replica(block):
                continue
            before = old_targets if self.is_first_replica(block, old_predecessors) else set()
            for peer in targets:
                if peer.key not in before:
                    self._replicate(record, peer)

    def _cleanup(self) -> None:
        """DHT-REPL-12: drop records outside this node's range for 60 seconds."""
        for record in self._live_records():
            block = record.service_id
            if self.is_member(id_of(block)):
                self._outside_since.pop(block, None)
                continue
            since = self._outside_since.setdefault(block, self.now)
            if self.now - since >= REPLICA_GRACE_PERIOD:
                self.store.remove(block)
                self._outside_since.pop(block, None)
                self.log("handed_off", service_id=block.hex())

    # --- changing the lists (Section 6.5) -------------------------------------------------

    def _set_successors(self, successors: list[Peer]) -> None:
        old = self.successors
        if old == successors:
            return
        self.successors = successors
        self._after_change(self.predecessors, old)

    def _set_predecessors(self, predecessors: list[Peer]) -> None:
        old = self.predecessors
        if old == predecessors:
            return
        self.predecessors = predecessors
        if predecessors:
            self.ring_complete = False
        self._after_change(old, self.successors)

    def _adopt_predecessor(self, candidate: Peer) -> None:
        # DHT-RING-8: q, then the old entries beyond it, at most k.
        rest = [
            p
            for p in self.predecessors
            if p.key != candidate.key and in_open(p.id, self.id, candidate.id)
        ]
        self._set_predecessors([candidate, *rest][: self.config.replicas])

    def _rectify(self, candidate: Peer) -> None:
        """Rectify (Section 6.5): adopt a closer predecessor, or a live one."""
        preds = self.predecessors
        if not preds or in_open(candidate.id, preds[0].id, self.id):
            self._adopt_predecessor(candidate)
            return
        current = preds[0]
        if candidate.key == current.key:
            if candidate.endpoint != current.endpoint:
                self._set_predecessors([candidate, *preds[1:]])
            return
        self._rectify_candidate = candidate
        if not self._probing_predecessor:
            self.spawn(self._probe_predecessor(current))

    def _probe_predecessor(self, predecessor: Peer) -> Procedure:
        self._probing_predecessor = True
        try:
            reply = yield Call(predecessor.endpoint, Ping(), key=predecessor.key)
        finally:
            self._probing_predecessor = False
        candidate, self._rectify_candidate = self._rectify_candidate, None
        if reply is None and candidate is not None:
            self._rectify(candidate)  # the old predecessor has been removed as failed

    def _forget_candidate(self, key: bytes) -> None:
        """A node that left or failed is no longer a RECTIFY candidate awaiting a probe."""
        if self._rectify_candidate is not None and self._rectify_candidate.key == key:
            self._rectify_candidate = None

    def _apply_leave(self, leaver: Peer, body: Leave) -> None:
        self._forget_candidate(leaver.key)
        for index, finger in list(self.fingers.items()):
            if finger.key == leaver.key:
                del self.fingers[index]
        was_predecessor = bool(self.predecessors) and self.predecessors[0].key == leaver.key
        if any(p.key == leaver.key for p in self.predecessors):
            self._set_predecessors([p for p in self.predecessors if p.key != leaver.key])
        if was_predecessor and body.predecessor is not None:
            candidate = Peer.from_info(body.predecessor)
            if candidate.key != self.key and in_open(candidate.id, self.id, leaver.id):
                self._rectify(candidate)
        keys = [p.key for p in self.successors]
        if leaver.key in keys:
            index = keys.index(leaver.key)
            reported = [Peer.from_info(info) for info in body.successors]
            kept = self.successors[:index]
            successors = extend(self.id, kept, reported, self.config.successors)
            self._set_successors(successors or [self.me])

    def peer_failed(self, key: bytes) -> None:
        """Remove a failed peer everywhere (DHT-RING-10); rejoin if no successor is left."""
        if key == self.key:
            return
        self.counters["peers_failed"] += 1
        for index, finger in list(self.fingers.items()):
            if finger.key == key:
                del self.fingers[index]
        self.log("peer_failed", node_id=id_bytes(node_id_of(key)).hex()[:16])
        self._forget_candidate(key)
        if any(p.key == key for p in self.predecessors):
            self._set_predecessors([p for p in self.predecessors if p.key != key])
        if any(p.key == key for p in self.successors):
            remaining = [p for p in self.successors if p.key != key]
            if remaining:
                self._set_successors(remaining)
            elif self.state is NodeState.MEMBER:
                # DHT-RING-11: no live successor left; join again.
                self.successors = []
                self.state = NodeState.JOINING
                self.log("rejoining")
                self.spawn(self._join())

    # --- periodic procedures ------------------------------------------------------------

    def _tick_stabilize(self) -> None:
        if self.state is not NodeState.MEMBER:
            if self.state is NodeState.JOINING:
                self.schedule(self._jittered(self.config.stabilize_interval), self._tick_stabilize)
            return
        if "stabilize" not in self._running:
            self.spawn(self._stabilize())
        self.limiter.prune(self.now)
        self.schedule(self._jittered(self.config.stabilize_interval), self._tick_stabilize)

    def _stabilize(self) -> Procedure:
        """One stabilization round: phase 1 from the successor, phase 2 rectify."""
        self._running.add("stabilize")
        try:
            yield from self._stabilize_phase_one()
        finally:
            self._running.discard("stabilize")
        if self.state is not NodeState.MEMBER or not self.successors:
            return
        first = self.successors[0]
        if first.key != self.key:
            self.send_request(Call(first.endpoint, Rectify(), key=first.key, sign=True))
        self._retry_replication()
        self._cleanup()

    def _stabilize_phase_one(self) -> Procedure:
        while self.successors and self.state is NodeState.MEMBER:
            successor = self.successors[0]
            if successor.key == self.key:
                # Alone: use its own state, where a predecessor may have appeared.
                if not self.predecessors:
                    return
                candidate = self.predecessors[0]
                reply = yield from self._get_neighbors(candidate)
                body = reply.body if reply is not None else None
                if isinstance(body, Neighbors):
                    reported = [Peer.from_info(info) for info in body.successors]
                    self._set_successors(
                        extend(self.id, [candidate], reported, self.config.successors)
                    )
                return
            reply = yield from self._get_neighbors(successor)
            if reply is None:
                continue  # failed and removed; the next live entry (Section 6.5 step 1)
            body = reply.body
            if not isinstance(body, Neighbors):
                return
            adopted = yield from self._closer_successor(successor, body)
            if adopted is None:
                reported = [Peer.from_info(info) for info in body.successors]
                adopted = extend(self.id, [successor], reported, self.config.successors)
            self._set_successors(adopted)
            return

    def _closer_successor(self, successor: Peer, body: Neighbors) -> Procedure:
        if body.predecessor is None:
            return None
        candidate = Peer.from_info(body.predecessor)
        if candidate.key == self.key or not in_open(candidate.id, self.id, successor.id):
            return None
        # DHT-RING-7: adopted only after it has answered.
        reply = yield from self._get_neighbors(candidate)
        answer = reply.body if reply is not None else None
        if not isinstance(answer, Neighbors):
            return None
        reported = [Peer.from_info(info) for info in answer.successors]
        return extend(self.id, [candidate], reported, self.config.successors)

    def _get_neighbors(self, peer: Peer) -> Procedure:
        """GET_NEIGHBORS; a truncated answer is asked again with its token (DHT-AMP-4).

        A node copies the whole successor list it is given (DHT-RING-5); the
        first request to a node is unvalidated and its answer cut to a prefix.
        """
        reply = yield Call(peer.endpoint, GetNeighbors(), key=peer.key)
        if reply is not None and int(reply.flags) & _TRUNCATED:
            again = yield Call(peer.endpoint, GetNeighbors(), key=peer.key)
            reply = again if again is not None else reply
        return reply

    def _tick_predecessor(self) -> None:
        if self.state is NodeState.MEMBER and "predecessor" not in self._running:
            self.spawn(self._check_predecessor())
        if self.state in (NodeState.MEMBER, NodeState.JOINING):
            interval = self.config.check_predecessor_interval
            self.schedule(self._jittered(interval), self._tick_predecessor)

    def _check_predecessor(self) -> Procedure:
        """DHT-RING-9: refresh the predecessor list by walking it."""
        if not self.predecessors:
            return
        self._running.add("predecessor")
        try:
            first = self.predecessors[0]
            walked = [first]
            reply = yield Call(first.endpoint, GetNeighbors(), key=first.key)
            complete = False
            while reply is not None and len(walked) < self.config.replicas:
                body = reply.body
                if not isinstance(body, Neighbors) or body.predecessor is None:
                    break
                entry = walked[-1]
                reported = Peer.from_info(body.predecessor)
                if reported.key == self.key:
                    complete = True
                    break
                if not in_open(reported.id, self.id, entry.id):
                    break
                walked.append(reported)
                if len(walked) == self.config.replicas:
                    break
                reply = yield Call(reported.endpoint, GetNeighbors(), key=reported.key)
                if reply is None:
                    walked.pop()  # failed: the list ends at the entry before
        finally:
            self._running.discard("predecessor")
        if not self.predecessors or self.predecessors[0].key != first.key:
            return  # a RECTIFY or a failure changed the list meanwhile
        if reply is None and len(walked) == 1:
            return  # the predecessor failed; peer_failed has removed it
        self._set_predecessors(walked)
        self.ring_complete = complete

    def _tick_fingers(self) -> None:
        if self.state is NodeState.MEMBER and "fingers" not in self._running:
            self.spawn(self._fix_finger())
        if self.state in (NodeState.MEMBER, NodeState.JOINING):
            self.schedule(self.now + self.config.fix_fingers_interval, self._tick_fingers)

    def first_useful_finger(self) -> int:
        """Fingers below this index start inside the successor list (DHT-RING-13)."""
        if not self.successors or self.alone:
            return 256
        return distance(self.id, self.successors[-1].id).bit_length()

    def _fix_finger(self) -> Procedure:
        """DHT-RING-12: refresh one finger, the fingers taken in turn from the farthest."""
        lowest = self.first_useful_finger()
        for index in [i for i in self.fingers if i < lowest]:
            del self.fingers[index]
        if lowest > 255:
            return
        index = self._next_finger if lowest <= self._next_finger <= 255 else 255
        self._next_finger = index - 1
        target = (self.id + (1 << index)) % (1 << 256)
        self._running.add("fingers")
        try:
            result = yield from self._lookup(target)
        finally:
            self._running.discard("fingers")
        if isinstance(result, LookupResult):
            found = next((p for p in result.nodes if p.key != self.key), None)
            if found is not None:
                self.fingers[index] = found
            else:
                self.fingers.pop(index, None)
        elif isinstance(result, Failure):
            self.counters["finger_lookups_failed"] += 1

    def _rotate_tokens(self) -> None:
        self.tokens.rotate(self.now)  # DHT-TOKEN-1
        self.schedule(self.tokens.rotates_at, self._rotate_tokens)

    # --- reporting ---------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The STATUS report (Section 6.4.9): identity, neighbours, records, counters."""

        def describe(peers: Iterable[Peer]) -> list[str]:
            return [f"{id_bytes(p.id).hex()[:16]}@{endpoint_text(p.endpoint)}" for p in peers]

        config = self.config
        drops_and_errors = [
            (name, count) for name, count in self.counters.items() if name.startswith(_COUNTED)
        ]
        activity = [
            (name, count) for name, count in self.counters.items() if not name.startswith(_COUNTED)
        ]
        report: dict[str, Any] = {
            # First, so that they survive the 1,024-byte cut: what a conformance
            # harness needs to know about this node (draft Appendix C).
            "features": ["dht", "counters"] + (["forward"] if config.forward_mode else []),
            "stabilize_interval": config.stabilize_interval,
            "replicas": config.replicas,
            "rate_limit": [config.rate, config.burst],
            # The drop and error counters are a member of Appendix C's table too, so
            # they come before anything report_json may cut to fit 1,024 bytes.
            "counters": nested_counters(drops_and_errors),
            "node_id": id_bytes(self.id).hex(),
            "endpoint": endpoint_text(self.me.endpoint),
            "state": self.state.value,
            "records": len(self.store),
            "cached": len(self.cache),
            "fingers": len({p.key for p in self.fingers.values()}),
            # Then the bounded lists, then the activity counters, which matter least.
            "predecessors": describe(self.predecessors),
            "successors": describe(self.successors),
            "activity": dict(sorted(activity)),
        }
        if self.amend_status is not None:
            self.amend_status(report)
        return report


def _utf8_prefix(text: bytes, limit: int) -> bytes:
    """The longest prefix of UTF-8 ``text`` within ``limit`` bytes that is still UTF-8."""
    return text[:limit].decode("utf-8", errors="ignore").encode()
