"""Sections 6.5, 6.6 and 6.12: the overlay (join, stabilize, rectify, leave) and lookups.

The target starts alone in its ring (Appendix C).  A case that needs a ring
builds one with :class:`Ring`: harness members with their own host keys,
placed on the ring by their node IDs, that answer the target's requests as
a consistent ring would (each member knows its predecessor and successors
among the target and the other members).  Only the member just before the
target sends it a RECTIFY, as in a real ring; the target must find the
others by its own stabilization and predecessor checks.  Every member that
entered leaves with a signed LEAVE before the case ends (in ``finally``),
and :meth:`Ring.dissolve` waits until the target is alone again, so that
the next case sees a ring of one.

The harness is single-threaded: a member answers the target only while the
harness serves its socket (:meth:`Ring.serve`).  Cases use that to observe
the target's state at moments when its periodic procedures cannot have
progressed, for example right after a RECTIFY.
"""

from __future__ import annotations

import hashlib
import ipaddress
import select
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from conformance.cases import case
from conformance.context import Context
from conformance.expect import Reply
from conformance.model import HarnessError
from conformance.peer import Address, DhtPeer, Received
from ref.wire import (
    Body,
    DhtMessage,
    Endpoint,
    Error,
    ErrorCode,
    FindSuccessor,
    FindSuccessorResponse,
    GetNeighbors,
    LookupStatus,
    MessageFlags,
    MessageType,
    Neighbors,
    NodeInfo,
    Ping,
    RecordEndpoint,
    RecordFlags,
    Rectify,
    ResolveResponse,
    ResolveStatus,
    ServiceRecord,
    Store,
    sign_record,
)

ORDER = 20

UNOBSERVABLE = {
    "DHT-RING-5": "The target is started alone in a new ring (Appendix C) and never joins "
    "one, so its join procedure is never exercised over the wire.",
    "DHT-RING-11": "The target created its ring and knows no member but the harness's: "
    "making all of its successors fail would leave it nobody to join again.",
    "DHT-LOOKUP-5": "The target starts lookups only for its own fingers, at times of its "
    "choosing (a SHOULD), so the harness cannot make it walk a lookup it can follow.",
    "DHT-LOOKUP-6": "The target starts lookups only for its own fingers, at times of its "
    "choosing, so the harness cannot feed it 64 REFER answers in one lookup.",
    "DHT-LOOKUP-8": "The target never looks up the records of a serviceID on its own "
    "behalf in return mode, so the target of such a lookup is never seen.",
    "DHT-BOOT-2": "The target is started without bootstrap endpoints (Appendix C); its "
    "bootstrap configuration cannot be set over the wire.",
    "DHT-BOOT-3": "The target is started without bootstrap endpoints (Appendix C); its "
    "bootstrap configuration cannot be set over the wire.",
    "DHT-BOOT-4": "A rule on the configuration of a node, which no message reveals.",
}

RING = 1 << 256
GROUP = "dht.ring"


# --- identifiers ---------------------------------------------------------------------


def ident(value: bytes) -> int:
    return int.from_bytes(value, "big")


def node_ident(key: bytes) -> int:
    return ident(hashlib.sha256(key).digest())


def distance(a: int, b: int) -> int:
    return (b - a) % RING


def in_open(x: int, a: int, b: int) -> bool:
    return x != a if a == b else 0 < distance(a, x) < distance(a, b)


def block_between(ctx: Context, a: int, b: int) -> bytes:
    """A random block base in (a, b], away from both ends."""
    span = distance(a, b) or RING
    value = (a + span // 4 + ctx.rng.randrange(span // 2)) % RING
    return (value & ~7).to_bytes(32, "big")


# --- records -------------------------------------------------------------------------


def record_for(
    owner: Ed25519PrivateKey,
    service_id: bytes,
    endpoint: Address | None,
    *,
    sequence: int = 1,
    lifetime: int = 120,
    issued_at: int | None = None,
) -> ServiceRecord:
    """A signed record; a tombstone when ``endpoint`` is None."""
    endpoints = (
        ()
        if endpoint is None
        else (RecordEndpoint(ipaddress.ip_address(endpoint[0]), endpoint[1]),)
    )
    record = ServiceRecord(
        service_id=service_id,
        owner_key=bytes(32),
        sequence=sequence,
        issued_at=int(time.time()) if issued_at is None else issued_at,
        lifetime=lifetime,
        flags=RecordFlags.TOMBSTONE if endpoint is None else RecordFlags(0),
        endpoints=endpoints,
    )
    return sign_record(record, owner)


def registrant(ctx: Context) -> DhtPeer:
    """A client that has PINGed the target, so that its own address is validated."""
    peer = ctx.client()
    ctx.answer(peer.request(Ping()), "PING")
    return peer


def store(peer: DhtPeer, record: ServiceRecord, tokens: tuple[bytes, ...] = ()) -> Received | None:
    return peer.request(Store(record=record, address_tokens=tokens))


def refused(received: Received | None) -> str:
    """The name of the ERROR code of ``received``, or its type, for details."""
    if received is None:
        return "no message"
    body = received.message.body
    if isinstance(body, Error):
        try:
            return ErrorCode(body.error_code).name
        except ValueError:
            return f"0x{body.error_code:04X}"
    return received.message.type.name


def is_error(received: Received | None, code: ErrorCode) -> bool:
    return (
        received is not None
        and isinstance(received.message.body, Error)
        and received.message.body.error_code == code
    )


def found(received: Received | None, record: ServiceRecord) -> bool:
    """A RESOLVE answered FOUND with exactly ``record`` (DHT-REC-4)."""
    body = received.message.body if received is not None else None
    return (
        isinstance(body, ResolveResponse)
        and body.status == ResolveStatus.FOUND
        and body.record == record
    )


def resolve_status(received: Received | None) -> ResolveStatus | None:
    body = received.message.body if received is not None else None
    return body.status if isinstance(body, ResolveResponse) else None


# --- a ring played by the harness ----------------------------------------------------


def _departed(peer: DhtPeer, message: DhtMessage, source: Address) -> Body | None:
    """A member that has left answers nothing but ERROR, so no late answer re-adds it."""
    if message.type == MessageType.ERROR:
        return None
    return Error(error_code=ErrorCode.INTERNAL_ERROR, reason=b"left the ring")


def _silent(peer: DhtPeer, message: DhtMessage, source: Address) -> Body | None:
    return None


class Ring:
    """The target and ``count`` harness members, placed clockwise from the target."""

    def __init__(self, ctx: Context, count: int) -> None:
        self.ctx = ctx
        self.probe = ctx.client()
        pong = ctx.answer(self.probe.request(Ping()), "PING")
        host, port = ctx.target.address
        self.target = NodeInfo(
            key=pong.message.sender_key, endpoint=Endpoint(ipaddress.ip_address(host), port)
        )
        self.id = node_ident(self.target.key)
        members = [ctx.member() for _ in range(count)]
        self.members = sorted(members, key=lambda m: distance(self.id, ident(m.node_id)))
        self.live: list[DhtPeer] = []
        self.departed: list[DhtPeer] = []
        interval = ctx.target.stabilize_interval
        #: Long enough for a few stabilization rounds and a request's three attempts.
        self.patience = 4 * 1.2 * interval + 1.5
        self.seen: list[Neighbors] = []

    # --- membership as the harness plays it ------------------------------------

    def _model(self) -> None:
        """Tell each live member its predecessor and successors in the current ring."""
        ring = [self.target, *(m.info for m in self.live)]
        for index, member in enumerate(self.live, start=1):
            member.predecessor = ring[index - 1]
            member.successors = (ring[index + 1 :] + ring[:index])[:16]

    def enter(self, *members: DhtPeer) -> None:
        """Members take their places; the one just before the target sends it RECTIFY."""
        for member in members:
            self.ctx.answer(member.request(Ping()), "PING from a member")
            self.live.append(member)
        self.live.sort(key=lambda m: distance(self.id, ident(m.node_id)))
        self._model()
        last = self.live[-1]
        if last in members:
            self.rectify(last)

    def rectify(self, member: DhtPeer) -> Received:
        reply = member.request(Rectify(), sign=True)
        if reply is None or reply.message.type != MessageType.RECTIFY_RESPONSE:
            raise HarnessError(f"RECTIFY from a member was answered by {refused(reply)}")
        return reply

    def leave(self, member: DhtPeer) -> Received | None:
        """``member`` leaves with a signed LEAVE; it answers only ERROR from then on."""
        member.responder = _departed
        reply = member.leave(self.target)
        self.live.remove(member)
        self.departed.append(member)
        self._model()
        return reply

    def dissolve(self) -> Neighbors | None:
        """Every live member leaves, nearest predecessor first; wait until the target is alone."""
        for member in reversed(list(self.live)):
            self.leave(member)
        return self.wait_for(self.alone, self.patience)

    # --- observing -------------------------------------------------------------

    def serve(self, seconds: float) -> None:
        """Answer the target's requests to every member for ``seconds``."""
        peers = self.live + self.departed + [m for m in self.members if m not in self.live]
        sockets = {peer.wire.sock: peer for peer in peers}
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select(list(sockets), [], [], left)
            for sock in readable:
                sockets[sock].drain(0.001)

    def neighbors(self) -> Neighbors:
        reply = self.probe.request(GetNeighbors())
        body = reply.message.body if reply is not None else None
        if not isinstance(body, Neighbors):
            raise HarnessError(f"GET_NEIGHBORS was answered by {refused(reply)}")
        self.seen.append(body)
        return body

    def wait_for(self, predicate: Callable[[Neighbors], bool], seconds: float) -> Neighbors | None:
        """Serve the members until the target's NEIGHBORS satisfy ``predicate``."""
        deadline = time.monotonic() + seconds
        while True:
            body = self.neighbors()
            if predicate(body):
                return body
            if time.monotonic() >= deadline:
                return None
            self.serve(0.05)

    def alone(self, body: Neighbors) -> bool:
        return body.predecessor is None and [n.key for n in body.successors] == [self.target.key]

    def successors_are(self, *members: DhtPeer) -> Callable[[Neighbors], bool]:
        keys = [m.public_key for m in members]
        return lambda body: [n.key for n in body.successors] == keys

    def ids(self, infos: tuple[NodeInfo, ...]) -> list[int]:
        return [node_ident(info.key) for info in infos]

    def name(self, key: bytes) -> str:
        if key == self.target.key:
            return "target"
        for index, member in enumerate(self.members):
            if member.public_key == key:
                return f"m{index}"
        return key.hex()[:8]

    def names(self, infos: tuple[NodeInfo, ...]) -> str:
        return "[" + ", ".join(self.name(info.key) for info in infos) + "]"


@contextmanager
def ring_of(ctx: Context, count: int) -> Iterator[Ring]:
    """A :class:`Ring` whose members all leave when the case ends, however it ends."""
    ring = Ring(ctx, count)
    try:
        yield ring
    finally:
        if ring.live:
            ring.dissolve()


def check_list_invariants(ctx: Context, ring: Ring) -> None:
    """DHT-RING-14 to -16 on every NEIGHBORS the case has seen."""
    ordered = duplicates = itself = True
    for body in ring.seen:
        ids = ring.ids(body.successors)
        keys = [info.key for info in body.successors]
        gaps = [distance(ring.id, i) for i in ids]
        if ring.target.key in keys and keys != [ring.target.key]:
            itself = False
        if len(set(keys)) != len(keys):
            duplicates = False
        if [g for g in gaps if g] != sorted(g for g in gaps if g):
            ordered = False
    lists = "; ".join(sorted({ring.names(b.successors) for b in ring.seen}))
    ctx.require(
        "DHT-RING-14",
        ordered,
        "every successor list the target reported is ordered by clockwise distance",
        actual=lists,
    )
    ctx.require(
        "DHT-RING-15",
        duplicates,
        "no successor list the target reported repeats an entry",
        actual=lists,
    )
    ctx.require(
        "DHT-RING-16",
        itself,
        "the target lists itself as a successor only as the only entry, when alone",
        actual=lists,
    )


# --- cases ---------------------------------------------------------------------------


@case(
    GROUP,
    "6.12",
    "DHT-BOOT-1",
    "DHT-RING-16",
    "DHT-LOOKUP-1",
    title="A target started without bootstrap endpoints is alone in a ring of its own",
)
def alone(ctx: Context) -> None:
    ring = Ring(ctx, 0)
    body = ring.neighbors()
    ctx.require(
        "DHT-BOOT-1",
        ring.alone(body),
        "GET_NEIGHBORS to a target started alone: no predecessor, itself as only successor",
        expected="no predecessor, successors [target]",
        actual=f"predecessor {body.predecessor is not None}, "
        f"successors {ring.names(body.successors)}",
    )
    ctx.require(
        "DHT-RING-16",
        [n.key for n in body.successors] == [ring.target.key],
        "a node alone in its ring reports itself as its only successor",
        actual=ring.names(body.successors),
    )
    target = ctx.rng.randbytes(32)
    reply = ring.probe.request(FindSuccessor(target_id=target))
    ctx.expect(
        "DHT-LOOKUP-1",
        reply,
        Reply(
            MessageType.FIND_SUCCESSOR_RESPONSE,
            lambda m: (
                isinstance(m.body, FindSuccessorResponse)
                and m.body.status == LookupStatus.DONE
                and m.body.nodes[0].key == ring.target.key
            ),
            "DONE with the target itself first",
        ),
        detail="FIND_SUCCESSOR of a random identifier to a node alone in its ring (step 1)",
    )


@case(
    GROUP,
    "6.5",
    "DHT-RING-8",
    "DHT-RING-6",
    "DHT-RING-14",
    "DHT-RING-15",
    "DHT-RING-16",
    "DHT-LOOKUP-1",
    "DHT-LOOKUP-4",
    "DHT-RING-3",
    title="A member joins: rectify, a stabilization round, lookups in a ring of two, LEAVE",
)
def ring_of_two(ctx: Context) -> None:
    with ring_of(ctx, 1) as ring:
        member = ring.members[0]
        ctx.answer(member.request(Ping()), "PING from the member")
        join = member.request(FindSuccessor(target_id=member.node_id))
        ctx.expect(
            "DHT-LOOKUP-1",
            join,
            Reply(
                MessageType.FIND_SUCCESSOR_RESPONSE,
                lambda m: (
                    isinstance(m.body, FindSuccessorResponse)
                    and m.body.status == LookupStatus.DONE
                    and m.body.nodes[0].key == ring.target.key
                ),
                "DONE with the target first",
            ),
            detail="a joining member looks up its own ID at a node alone in its ring",
        )
        ring.enter(member)
        body = ring.neighbors()
        ctx.require(
            "DHT-RING-8",
            body.predecessor is not None and body.predecessor.key == member.public_key,
            "after a valid RECTIFY, a node with no predecessor adopts the sender at once",
            expected="predecessor m0",
            actual="none" if body.predecessor is None else ring.name(body.predecessor.key),
        )
        joined = ring.wait_for(ring.successors_are(member), ring.patience)
        asked = {r.message.type for r in member.requests}
        signed_rectify = any(
            r.message.type == MessageType.RECTIFY and r.message.flags & MessageFlags.SIGNED
            for r in member.requests
        )
        if joined is not None and not signed_rectify:
            ring.serve(1.2 * ctx.target.stabilize_interval + 0.2)
            signed_rectify = any(
                r.message.type == MessageType.RECTIFY and r.message.flags & MessageFlags.SIGNED
                for r in member.requests
            )
        ctx.require(
            "DHT-RING-6",
            joined is not None and MessageType.GET_NEIGHBORS in asked and signed_rectify,
            "stabilization rounds ask the successor (GET_NEIGHBORS), adopt the new member "
            "and send it a signed RECTIFY",
            expected=f"successors [m0] within {ring.patience:.1f} s, GET_NEIGHBORS and RECTIFY",
            actual=f"successors {ring.names(ring.seen[-1].successors)}, asked "
            + ", ".join(sorted(t.name for t in asked)),
        )
        check_list_invariants(ctx, ring)
        if joined is None:
            return
        # Lookups in a ring of two (Section 6.6).
        m_id = ident(member.node_id)
        ahead = block_between(ctx, ring.id, m_id)
        reply = ring.probe.request(FindSuccessor(target_id=ahead))
        ctx.expect(
            "DHT-LOOKUP-1",
            reply,
            Reply(
                MessageType.FIND_SUCCESSOR_RESPONSE,
                lambda m: (
                    isinstance(m.body, FindSuccessorResponse)
                    and m.body.status == LookupStatus.DONE
                    and m.body.nodes[0].key == member.public_key
                ),
                "DONE with m0 first (step 2)",
            ),
            detail="FIND_SUCCESSOR of an ID between the target and its successor m0",
        )
        behind = block_between(ctx, m_id, ring.id)
        reply = ring.probe.request(FindSuccessor(target_id=behind))

        def done_self_or_refer(message: DhtMessage) -> bool:
            body = message.body
            if not isinstance(body, FindSuccessorResponse):
                return False
            if body.status == LookupStatus.DONE:
                return body.nodes[0].key == ring.target.key
            return [n.key for n in body.nodes] == [member.public_key]

        ctx.expect(
            "DHT-LOOKUP-1",
            reply,
            Reply(
                MessageType.FIND_SUCCESSOR_RESPONSE,
                done_self_or_refer,
                "DONE with the target first (step 3) or REFER [m0] (step 4)",
            ),
            detail="FIND_SUCCESSOR of an ID between the predecessor m0 and the target",
        )
        if reply is not None and isinstance(reply.message.body, FindSuccessorResponse):
            ctx.require(
                "DHT-LOOKUP-4",
                len(reply.message.body.nodes) <= 16,
                "a lookup answer lists at most 16 nodes",
            )
        ring.leave(member)
        body = ring.neighbors()
        ctx.require(
            "DHT-RING-3",
            ring.alone(body),
            "a LEAVE from the only other member, its predecessor and successor, leaves the "
            "target alone (Leave, Section 6.5)",
            expected="no predecessor, successors [target]",
            actual=f"predecessor {ring.name(body.predecessor.key) if body.predecessor else None}"
            f", successors {ring.names(body.successors)}",
        )


@case(
    GROUP,
    "6.5",
    "DHT-RING-7",
    "DHT-RING-10",
    "DHT-RING-3",
    title="A predecessor that never answers is not adopted as successor, and fails after 3 tries",
)
def silent_predecessor(ctx: Context) -> None:
    with ring_of(ctx, 1) as ring:
        silent = ring.members[0]
        ring.enter(silent)
        silent.responder = _silent
        adopted_early = False

        def gone(body: Neighbors) -> bool:
            nonlocal adopted_early
            if any(info.key == silent.public_key for info in body.successors):
                adopted_early = True
                return True  # judged at once: failing it can leave the target no successor
            return body.predecessor is None or body.predecessor.key != silent.public_key

        # Three attempts of 1 s each, after a check round that may start late under load.
        dropped = ring.wait_for(gone, ring.patience + 10.0)
        attempts: dict[bytes, int] = {}
        for request in silent.requests:
            txid = request.message.transaction_id
            attempts[txid] = attempts.get(txid, 0) + 1
        ctx.require(
            "DHT-RING-7",
            not adopted_early
            and MessageType.GET_NEIGHBORS in {r.message.type for r in silent.requests},
            "a predecessor that never answers the target's GET_NEIGHBORS is never listed as "
            "its successor",
            actual="listed as successor" if adopted_early else "not listed",
        )
        if adopted_early:
            return  # ring_of makes it leave
        most = max(attempts.values(), default=0)
        ctx.require(
            "DHT-RING-10",
            dropped is not None and most >= 3,
            "the silent predecessor is considered failed (dropped) once a request to it has "
            "gone unanswered three times, and not before",
            expected="dropped, after a request attempted 3 times",
            actual=("dropped" if dropped is not None else "still the predecessor")
            + f", most attempts of one request: {most}",
        )
        if dropped is None:
            return  # ring_of makes it leave
        # It is now neither predecessor nor successor: its LEAVE changes nothing.
        silent.responder = _departed
        stranger = ctx.member()
        silent.successors = [stranger.info]
        silent.predecessor = stranger.info
        ring.live.remove(silent)
        ring.departed.append(silent)
        silent.leave(stranger.info)
        body = ring.neighbors()
        ctx.require(
            "DHT-RING-3",
            ring.alone(body),
            "a LEAVE from a node in neither list changes nothing but the fingers",
            expected="still alone",
            actual=f"successors {ring.names(body.successors)}",
        )


@case(
    GROUP,
    "6.6",
    "DHT-RING-6",
    "DHT-MSG-10",
    "DHT-RING-1",
    "DHT-RING-14",
    "DHT-RING-15",
    "DHT-RING-16",
    "DHT-LOOKUP-1",
    "DHT-LOOKUP-3",
    "DHT-LOOKUP-4",
    "DHT-RING-3",
    title="In a ring of four the target learns its successor list and answers lookups by it",
)
def ring_of_four(ctx: Context) -> None:
    with ring_of(ctx, 3) as ring:
        x, y, z = ring.members
        ring.enter(x, y, z)  # only z, just before the target, rectifies it
        converged = ring.wait_for(ring.successors_are(x, y, z), ring.patience)
        ctx.require(
            "DHT-RING-6",
            converged is not None,
            "stabilization rounds follow the reported predecessors to the successor list "
            "[m0, m1, m2] (three rounds)",
            expected=f"successors [m0, m1, m2] within {ring.patience:.1f} s",
            actual=ring.names(ring.seen[-1].successors),
        )
        last = ring.seen[-1]
        ctx.require(
            "DHT-MSG-10",
            last.predecessor is not None and last.predecessor.key == z.public_key,
            "NEIGHBORS carries the current predecessor m2 and the whole successor list",
            actual=f"predecessor {ring.name(last.predecessor.key) if last.predecessor else None}",
        )
        ctx.require(
            "DHT-RING-1",
            3 <= len(last.successors) <= 16,
            "with three other members the successor list holds 3 entries (r is 3 to 16)",
            actual=ring.names(last.successors),
        )
        check_list_invariants(ctx, ring)
        if converged is None:
            return
        ids = [ident(m.node_id) for m in (x, y, z)]
        keys = [m.public_key for m in (x, y, z)]

        def starts_with(want: list[bytes]) -> Callable[[DhtMessage], bool]:
            def check(message: DhtMessage) -> bool:
                body = message.body
                return (
                    isinstance(body, FindSuccessorResponse)
                    and body.status == LookupStatus.DONE
                    and [n.key for n in body.nodes][: len(want)] == want
                )

            return check

        def lookup(a: int, b: int) -> Received | None:
            return ring.probe.request(FindSuccessor(target_id=block_between(ctx, a, b)))

        for start, end, first, what in (
            (ring.id, ids[0], 0, "between the target and m0"),
            (ids[0], ids[1], 1, "between m0 and m1"),
        ):
            expected = keys[first:]
            ctx.expect(
                "DHT-LOOKUP-1",
                lookup(start, end),
                Reply(
                    MessageType.FIND_SUCCESSOR_RESPONSE,
                    starts_with(expected),
                    "DONE with the successor list from the first entry at or after it (step 2)",
                ),
                detail=f"FIND_SUCCESSOR of an ID {what}",
            )
        reply = lookup(ids[2], ring.id)

        def answer_behind(message: DhtMessage) -> bool:
            body = message.body
            if not isinstance(body, FindSuccessorResponse):
                return False
            if body.status == LookupStatus.DONE:
                return body.nodes[0].key == ring.target.key
            return [n.key for n in body.nodes] == list(reversed(keys))[: len(body.nodes)]

        ctx.expect(
            "DHT-LOOKUP-1",
            reply,
            Reply(
                MessageType.FIND_SUCCESSOR_RESPONSE,
                answer_behind,
                "DONE with the target first (step 3) or REFER from m2, the closest preceding",
            ),
            detail="FIND_SUCCESSOR of an ID between the predecessor m2 and the target",
        )
        body = reply.message.body if reply is not None else None
        if isinstance(body, FindSuccessorResponse):
            ctx.require("DHT-LOOKUP-4", len(body.nodes) <= 16, "at most 16 nodes in an answer")
            if body.status == LookupStatus.REFER:
                ctx.require(
                    "DHT-LOOKUP-3",
                    len(body.nodes) == 3,
                    "a REFER answer lists 3 nodes when it knows 3 eligible ones",
                    actual=ring.names(body.nodes),
                )
        # LEAVE of the predecessor: the target adopts the predecessor the LEAVE names and
        # replaces the leaver in its successor list by the leaver's successors.
        ring.leave(z)
        body = ring.neighbors()
        ctx.require(
            "DHT-RING-3",
            body.predecessor is not None
            and body.predecessor.key == y.public_key
            and [n.key for n in body.successors] == [x.public_key, y.public_key],
            "after the LEAVE of its predecessor m2, the target's predecessor is m1 and its "
            "successors [m0, m1]",
            expected="predecessor m1, successors [m0, m1]",
            actual=f"predecessor {ring.name(body.predecessor.key) if body.predecessor else None}"
            f", successors {ring.names(body.successors)}",
        )
        final = ring.dissolve()
        ctx.require(
            "DHT-RING-3",
            final is not None,
            "after every member has left, the target is alone again",
            actual=ring.names(ring.seen[-1].successors),
        )
