"""A ServalDHT client: resolve, register and query a ring without joining it.

The client is a sans-IO core like the node: its Sender Key is all zero
(DHT-HDR-12), it answers no request, and every operation is a procedure whose
result arrives as a :class:`ref.chord.exchange.Completed` event.  It learns
the keys of its configured nodes by PINGing them, which also gives it the
tokens that validate its address (Section 6.10.1).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from typing import Any

from ref.chord.exchange import (
    Call,
    Engine,
    Failure,
    LookupResult,
    Procedure,
    RandomSource,
    endpoint_text,
)
from ref.chord.framing import Framing
from ref.chord.ring import Peer, distance, id_of
from ref.wire.constants import KEY_LENGTH, REQUEST_TIMEOUT_DHT
from ref.wire.dht import Error, Ping, Pong, Status, StatusResponse, Store, StoreResponse
from ref.wire.errors import ErrorCode
from ref.wire.ids import block_base
from ref.wire.records import ServiceRecord
from ref.wire.sal import Endpoint

#: How many learned ring members a client keeps (a 32-byte key and an endpoint each).
ROUTING_CACHE_SIZE = 1024
#: Seconds an unanswering node stays out of the cache: the ring repairs its lists by then.
SILENT_PEER_HOLDOFF = 60.0


@dataclasses.dataclass(frozen=True)
class Pinged:
    """A PONG: the node's key, how it saw us, and the token it gave us."""

    key: bytes
    observed: Endpoint
    token: bytes


@dataclasses.dataclass(frozen=True)
class Stored:
    """A STORE accepted by ``node`` (the first replica, or the next that answered)."""

    sequence: int
    node: Endpoint


class Client(Engine):
    """Resolver and registrant (sans-IO)."""

    def __init__(
        self,
        framing: Framing,
        endpoint: Endpoint,
        nodes: Sequence[Endpoint],
        rng: RandomSource,
        now: float,
        *,
        request_timeout: float = REQUEST_TIMEOUT_DHT,
        log: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        super().__init__(
            framing,
            bytes(KEY_LENGTH),
            endpoint,
            rng,
            now,
            request_timeout=request_timeout,
            log=log,
        )
        self.nodes = list(nodes)
        self.known: dict[Endpoint, Peer] = {}
        #: Ring members learned from earlier answers, oldest first (DHT-RES-10).
        self.routing: dict[bytes, Peer] = {}
        #: Nodes that left a query unanswered, kept out of the cache until then.
        self.silent_until: dict[bytes, float] = {}

    # --- the routing cache (DHT-RES-10) ------------------------------------------------

    def learned(self, peers: Sequence[Peer]) -> None:
        for peer in peers:
            if self.silent_until.get(peer.key, 0.0) > self.now:
                continue  # others still name a node that just failed to answer us
            self.routing.pop(peer.key, None)
            self.routing[peer.key] = peer
        while len(self.routing) > ROUTING_CACHE_SIZE:
            del self.routing[next(iter(self.routing))]

    def unanswered(self, peer: Peer) -> None:
        self.routing.pop(peer.key, None)
        if len(self.silent_until) >= ROUTING_CACHE_SIZE:
            self.silent_until = {k: t for k, t in self.silent_until.items() if t > self.now}
        self.silent_until[peer.key] = self.now + SILENT_PEER_HOLDOFF

    def believed_replica(self, target: int) -> Peer | None:
        """The first cached node at or after ``target``: successor(target) if the cache is right."""
        return min(self.routing.values(), key=lambda p: distance(target, p.id), default=None)

    # --- operations ------------------------------------------------------------------

    def ping(self, endpoint: Endpoint) -> int:
        """PING a node; completes with :class:`Pinged` or :class:`Failure`."""
        return self.start_operation(self._ping(endpoint))

    def lookup(self, target: bytes) -> int:
        """Find successor(target); completes with LookupResult or Failure."""
        return self.start_operation(self._lookup(id_of(target)))

    def resolve(self, service_id: bytes, owner_key: bytes | None = None) -> int:
        """Resolve in return mode; completes with Found, NotRegistered or Failure."""
        return self.start_operation(self._resolve(service_id, owner_key))

    def register(self, record: ServiceRecord, address_tokens: Sequence[bytes] = ()) -> int:
        """STORE a signed record at its replica set; completes with Stored or Failure."""
        return self.start_operation(self._register(record, tuple(address_tokens)))

    def status(self, endpoint: Endpoint) -> int:
        """Ask one node for its STATUS report; completes with a dict or Failure."""
        return self.start_operation(self._status(endpoint))

    # --- procedures ------------------------------------------------------------------

    def _ping(self, endpoint: Endpoint) -> Procedure:
        reply = yield Call(endpoint, Ping())
        if reply is None:
            return _no_answer(endpoint)
        body = reply.body
        if not isinstance(body, Pong):
            return _failure(body)
        self.known[endpoint] = Peer.of(reply.sender_key, endpoint)
        return Pinged(reply.sender_key, body.observed, reply.token)

    def _seeds(self) -> Procedure:
        """The configured nodes with their keys, PINGing those not yet known."""
        unknown = [endpoint for endpoint in self.nodes if endpoint not in self.known]
        if unknown:
            replies = yield [Call(endpoint, Ping()) for endpoint in unknown]
            for endpoint, reply in zip(unknown, replies, strict=True):
                if reply is not None and isinstance(reply.body, Pong):
                    self.known[endpoint] = Peer.of(reply.sender_key, endpoint)
        return [self.known[endpoint] for endpoint in self.nodes if endpoint in self.known]

    def _lookup(self, target: int) -> Procedure:
        seeds = yield from self._seeds()
        if not seeds:
            return Failure(ErrorCode.INTERNAL_ERROR, "no configured node answers")
        return (yield from self.lookup_walk(target, [*seeds, *self.routing.values()]))

    def _resolve(self, service_id: bytes, owner_key: bytes | None) -> Procedure:
        seeds = yield from self._seeds()
        if not seeds:
            return Failure(ErrorCode.INTERNAL_ERROR, "no configured node answers")
        return (
            yield from self.resolve_walk(service_id, [*seeds, *self.routing.values()], owner_key)
        )

    def _register(self, record: ServiceRecord, tokens: tuple[bytes, ...]) -> Procedure:
        result = yield from self._lookup(id_of(block_base(record.service_id)))
        if isinstance(result, Failure):
            return result
        assert isinstance(result, LookupResult)
        failure = Failure(ErrorCode.INTERNAL_ERROR, "no replica answered")
        # DHT-REPL-5: the first replica, then the next ones if it does not answer.
        for replica in result.nodes[:3]:
            pinged = yield from self._ping(replica.endpoint)  # a token for our address
            if isinstance(pinged, Failure):
                continue
            reply = yield Call(replica.endpoint, Store(record, tokens), key=replica.key)
            if reply is None:
                continue
            body = reply.body
            if isinstance(body, StoreResponse):
                return Stored(body.sequence, replica.endpoint)
            return _failure(body)
        return failure

    def _status(self, endpoint: Endpoint) -> Procedure:
        for _ in range(2):  # a second time with the token the ERROR carried (DHT-AMP-4)
            reply = yield Call(endpoint, Status())
            if reply is None:
                return _no_answer(endpoint)
            body = reply.body
            if isinstance(body, StatusResponse):
                try:
                    report = json.loads(body.report)
                except ValueError:
                    return Failure(ErrorCode.MALFORMED, "STATUS report is not JSON")
                return report if isinstance(report, dict) else {"report": report}
            if not (isinstance(body, Error) and body.error_code == ErrorCode.ADDRESS_NOT_VALIDATED):
                return _failure(body)
        return Failure(ErrorCode.ADDRESS_NOT_VALIDATED, "the node refused our token")


def _no_answer(endpoint: Endpoint) -> Failure:
    return Failure(ErrorCode.INTERNAL_ERROR, f"no answer from {endpoint_text(endpoint)}")


def _failure(body: object) -> Failure:
    if isinstance(body, Error):
        try:
            code = ErrorCode(body.error_code)
        except ValueError:
            code = ErrorCode.INTERNAL_ERROR
        return Failure(code, body.reason.decode("utf-8", errors="replace"))
    return Failure(ErrorCode.MALFORMED, f"unexpected answer {type(body).__name__}")
