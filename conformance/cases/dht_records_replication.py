"""Sections 6.8 and 6.9.1: replica sets, replication, handover and RESOLVE in a ring.

The rings are played by harness members (:class:`conformance.cases.dht_ring.Ring`),
so the harness knows the target's predecessors and successors exactly and
can compute each block's replica set and the target's view of it.  The
target's REPLICATEs to the members are what the cases observe.
"""

from __future__ import annotations

import time

from conformance.cases import case
from conformance.cases.dht_ring import (
    Ring,
    block_between,
    found,
    ident,
    in_open,
    is_error,
    record_for,
    refused,
    registrant,
    resolve_status,
    ring_of,
    store,
)
from conformance.context import Context
from conformance.model import HarnessError, Unsupported
from conformance.peer import DhtPeer
from ref.wire import (
    ErrorCode,
    MessageFlags,
    MessageType,
    Ping,
    Replicate,
    Resolve,
    ResolveResponse,
    ResolveStatus,
    ServiceRecord,
)

ORDER = 21
GROUP = "dht.replication"

UNOBSERVABLE = {
    "DHT-REPL-1": "A rule on the configuration of a whole ring, which no exchange with one "
    "node reveals.",
    "DHT-REPL-2": "A rule on the configuration of a whole ring; one node's k and r are not "
    "visible in its messages.",
}


def replicated(member: DhtPeer, record: ServiceRecord, sender: bytes) -> bool:
    """``member`` received a signed REPLICATE of exactly ``record`` from ``sender``."""
    return any(
        r.message.type == MessageType.REPLICATE
        and r.message.flags & MessageFlags.SIGNED
        and r.message.sender_key == sender
        and getattr(r.message.body, "record", None) == record
        for r in member.requests
    )


def await_replicas(
    ring: Ring, record: ServiceRecord, members: list[DhtPeer], seconds: float
) -> list[DhtPeer]:
    """Serve until every one of ``members`` has the record; return those that got it."""
    deadline = time.monotonic() + seconds
    while True:
        got = [m for m in members if replicated(m, record, ring.target.key)]
        if len(got) == len(members) or time.monotonic() >= deadline:
            return got
        ring.serve(0.05)


def stored_at(ctx: Context, peer: DhtPeer, record: ServiceRecord, what: str) -> None:
    reply = store(peer, record)
    if reply is None or getattr(reply.message.body, "sequence", None) != record.sequence:
        raise HarnessError(f"STORE of {what} was answered by {refused(reply)}")


def names(ring: Ring, members: list[DhtPeer]) -> str:
    return "[" + ", ".join(ring.name(m.public_key) for m in members) + "]"


@case(
    GROUP,
    "6.8",
    "DHT-REPL-11",
    "DHT-REPL-9",
    "DHT-REPL-4",
    "DHT-REC-4",
    title="Ring of two: handover to the first predecessor, re-replication, STORE replicated",
)
def handover_to_first_predecessor(ctx: Context) -> None:
    peer = registrant(ctx)
    with ring_of(ctx, 1) as ring:
        member = ring.members[0]
        m_id = ident(member.node_id)
        owner = ctx.key()
        # While the target is alone: one block the member will head, one the target keeps.
        handed = record_for(owner, block_between(ctx, ring.id, m_id), peer.wire.local)
        kept = record_for(owner, block_between(ctx, m_id, ring.id), peer.wire.local)
        stored_at(ctx, peer, handed, "a record for the future member's range")
        stored_at(ctx, peer, kept, "a record for the target's own range")
        ring.enter(member)
        got = await_replicas(ring, handed, [member], 1.0 + ctx.target.stabilize_interval)
        ctx.require(
            "DHT-REPL-11",
            bool(got),
            "a node with no predecessor that adopts one sends it a signed REPLICATE of every "
            "record whose block base is not between the new predecessor and itself",
            expected="REPLICATE of the record in (target, m0]",
            actual="received" if got else "not received",
        )
        if ring.wait_for(ring.successors_are(member), ring.patience) is None:
            raise HarnessError("the target did not adopt the member as its successor")
        got = await_replicas(ring, kept, [member], 1.0)
        ctx.require(
            "DHT-REPL-9",
            bool(got),
            "when its successor list gains the member, the target sends it a REPLICATE of "
            "each record it is first replica of (its new view of the replica set)",
            expected="REPLICATE of the record in (m0, target]",
            actual="received" if got else "not received",
        )
        fresh = record_for(owner, block_between(ctx, m_id, ring.id), peer.wire.local)
        stored_at(ctx, peer, fresh, "a record for the target's range")
        got = await_replicas(ring, fresh, [member], 1.0)
        ctx.require(
            "DHT-REPL-4",
            bool(got),
            "a record accepted in a STORE is REPLICATEd (signed) to the other member of the "
            "target's view of the replica set",
            actual="received" if got else "not received",
        )
        ctx.require(
            "DHT-REC-4",
            all(replicated(member, r, ring.target.key) for r in (handed, kept, fresh)),
            "every REPLICATE carried the record exactly as stored",
        )


def view(ring: Ring, block: int, predecessors: list[DhtPeer], k: int) -> list[DhtPeer]:
    """The members of the target's view of a block's replica set (Section 6.8), in order."""
    before = [
        p
        for p in reversed(predecessors)
        if ident(p.node_id) == block or in_open(ident(p.node_id), block, ring.id)
    ]
    order: list[DhtPeer | None] = [*before, None, *ring.live]
    return [p for p in order[:k] if p is not None]


@case(
    GROUP,
    "6.8",
    "DHT-REPL-6",
    "DHT-RING-9",
    "DHT-REPL-3",
    "DHT-REPL-4",
    "DHT-STORE-1",
    "DHT-RES-1",
    "DHT-RES-2",
    "DHT-RES-3",
    "DHT-REPL-7",
    "DHT-RING-8",
    "DHT-REPL-10",
    title="Replica sets of k: membership by the predecessor list, REPLICATE, RESOLVE, handover",
)
def replica_sets(ctx: Context) -> None:
    k = ctx.target.replicas
    if k < 2:
        raise Unsupported("the target declares k = 1: it has no replica set to observe")
    count = max(3, k)
    peer = registrant(ctx)
    with ring_of(ctx, count + 1) as ring:
        initial, newcomer = ring.members[:count], ring.members[count]
        ids = [ident(m.node_id) for m in ring.members]
        owner = ctx.key()
        elsewhere = ("192.0.2.1", 54325)

        # A node outside the ring may not replicate to the target.
        ctx.answer(newcomer.request(Ping()), "PING from a member")
        intruding = record_for(owner, block_between(ctx, ids[-1], ring.id), peer.wire.local)
        reply = newcomer.request(Replicate(record=intruding), sign=True)
        ctx.require(
            "DHT-REPL-6",
            is_error(reply, ErrorCode.NOT_RESPONSIBLE),
            "a REPLICATE from a node in neither list of the target is refused NOT_RESPONSIBLE",
            expected="ERROR NOT_RESPONSIBLE",
            actual=refused(reply),
        )

        ring.enter(*initial)
        if ring.wait_for(ring.successors_are(*initial), ring.patience) is None:
            raise HarnessError("the target's successor list did not become the members")
        # The predecessor list is learned by the predecessor walk alone (only the last
        # member rectifies): its k-th entry bounds the target's range.
        predecessors = list(reversed(initial))[:k]
        last = ident(predecessors[-1].node_id)
        after_last = ident(predecessors[-2].node_id)
        walked = record_for(owner, block_between(ctx, last, after_last), peer.wire.local)
        deadline = time.monotonic() + ring.patience
        while not (reply := store(peer, walked)) or is_error(reply, ErrorCode.NOT_RESPONSIBLE):
            if time.monotonic() >= deadline:
                break
            ring.serve(0.1)
        ctx.require(
            "DHT-RING-9",
            reply is not None and getattr(reply.message.body, "sequence", None) == 1,
            f"the predecessor walk gives the target {k} predecessors: it accepts a STORE for "
            "a block just after its k-th predecessor",
            expected="STORE_RESPONSE",
            actual=refused(reply),
        )
        if reply is None or getattr(reply.message.body, "sequence", None) != 1:
            return
        handed = record_for(owner, block_between(ctx, ids[count - 1], ids[count]), peer.wire.local)
        reply = store(peer, handed)
        ctx.require(
            "DHT-REPL-3",
            reply is not None and getattr(reply.message.body, "sequence", None) == 1,
            "the first replica of a block accepts a valid STORE for it",
            actual=refused(reply),
        )
        middle = record_for(
            owner, block_between(ctx, ids[count - 2], ids[count - 1]), peer.wire.local
        )
        stored_at(ctx, peer, middle, "a record two replicas away")
        expected = {
            r.service_id: view(ring, ident(r.service_id), predecessors, k)
            for r in (walked, handed, middle)
        }
        for record in (walked, handed, middle):
            want = expected[record.service_id]
            got = await_replicas(ring, record, want, 1.0)
            ctx.require(
                "DHT-REPL-4",
                len(got) == len(want),
                "an accepted STORE is REPLICATEd to every other member of the target's view "
                "of the replica set",
                expected=names(ring, want),
                actual=names(ring, got),
            )

        # Outside its range: the target is not responsible, in the order of Section 6.7.1.
        outside = block_between(ctx, ring.id, ids[count - k])
        now = int(time.time())
        for record, code, what in (
            (record_for(owner, outside, peer.wire.local), ErrorCode.NOT_RESPONSIBLE, "a record"),
            (
                record_for(owner, outside, peer.wire.local, issued_at=now - 200, lifetime=100),
                ErrorCode.RECORD_EXPIRED,
                "an expired record",
            ),
            (
                record_for(owner, outside, elsewhere),
                ErrorCode.NOT_RESPONSIBLE,
                "a record at an address not validated",
            ),
        ):
            reply = store(peer, record)
            ctx.require(
                "DHT-STORE-1",
                is_error(reply, code),
                f"{what} for a block outside the target's replica sets: ERROR {code.name}",
                expected=f"ERROR {code.name}",
                actual=refused(reply),
            )
        answer = peer.request(Resolve(service_id=outside))
        body = answer.message.body if answer is not None else None
        successors = [m.public_key for m in initial[:k]]
        ctx.require(
            "DHT-RES-2",
            resolve_status(answer) != ResolveStatus.NOT_FOUND,
            "RESOLVE of a block outside the target's replica sets is not NOT_FOUND",
            actual=refused(answer),
        )
        ctx.require(
            "DHT-RES-1",
            isinstance(body, ResolveResponse)
            and body.status == ResolveStatus.REFER
            and [n.key for n in body.nodes] == successors,
            "RESOLVE of a block between the target and its successor: REFER with its first k "
            "successors, the replica set (step 3)",
            expected="REFER " + names(ring, initial[:k]),
            actual=refused(answer)
            + (" " + ring.names(body.nodes) if isinstance(body, ResolveResponse) else ""),
        )
        if isinstance(body, ResolveResponse) and body.status == ResolveStatus.REFER:
            ctx.require(
                "DHT-RES-3",
                len(body.nodes) >= min(3, k),
                "a REFER answer to RESOLVE lists 3 nodes",
                actual=ring.names(body.nodes),
            )
        inside = block_between(ctx, ids[count - 1], ring.id)
        ctx.require(
            "DHT-RES-1",
            resolve_status(peer.request(Resolve(service_id=inside))) == ResolveStatus.NOT_FOUND,
            "RESOLVE of an unregistered block in the target's range: NOT_FOUND (step 2)",
        )
        ctx.require(
            "DHT-RES-1",
            found(peer.request(Resolve(service_id=middle.service_id)), middle),
            "RESOLVE of a stored block: FOUND with the record as stored (step 1)",
        )

        # REPLICATE from a neighbour: accepted without address validation (check 5 is
        # for STORE only); for a block outside the range, NOT_RESPONSIBLE.
        neighbour = predecessors[1]
        copied = record_for(
            ctx.key(), block_between(ctx, ids[count - 2], ids[count - 1]), elsewhere
        )
        reply = neighbour.request(Replicate(record=copied), sign=True)
        ctx.require(
            "DHT-REPL-7",
            reply is not None
            and reply.message.type == MessageType.REPLICATE_RESPONSE
            and found(peer.request(Resolve(service_id=copied.service_id)), copied),
            "a REPLICATE from the second predecessor is accepted with REPLICATE_RESPONSE "
            "and the record is then served",
            expected="REPLICATE_RESPONSE, then FOUND",
            actual=refused(reply),
        )
        foreign = record_for(ctx.key(), outside, elsewhere)
        reply = initial[0].request(Replicate(record=foreign), sign=True)
        ctx.require(
            "DHT-STORE-1",
            is_error(reply, ErrorCode.NOT_RESPONSIBLE),
            "a REPLICATE from the successor of a block outside the target's range: NOT_RESPONSIBLE",
            expected="ERROR NOT_RESPONSIBLE",
            actual=refused(reply),
        )

        # A new predecessor between the old one and the target (Section 6.5 Rectify):
        # the list becomes it and the old entries, at most k; it receives its records.
        ring.enter(newcomer)
        adopted = [newcomer, *list(reversed(initial))[: k - 1]]
        end = ident(adopted[-1].node_id)
        kept = record_for(
            owner, block_between(ctx, end, ident(adopted[-2].node_id)), peer.wire.local
        )
        start = (
            ids[ring.members.index(adopted[-1]) - 1] if ring.members.index(adopted[-1]) else ring.id
        )
        cut = record_for(owner, block_between(ctx, start, end), peer.wire.local)
        kept_reply, cut_reply = store(peer, kept), store(peer, cut)
        ctx.require(
            "DHT-RING-8",
            kept_reply is not None
            and getattr(kept_reply.message.body, "sequence", None) == 1
            and is_error(cut_reply, ErrorCode.NOT_RESPONSIBLE),
            "after adopting a closer predecessor, the predecessor list is it followed by the "
            f"old entries, {k} in all: the range of the target ends at its new k-th predecessor",
            expected="STORE_RESPONSE just after the new k-th predecessor, NOT_RESPONSIBLE "
            "before it",
            actual=f"{refused(kept_reply)}, {refused(cut_reply)}",
        )
        got = await_replicas(ring, handed, [newcomer], 1.0)
        ctx.require(
            "DHT-REPL-10",
            bool(got),
            "a node that adopts a closer predecessor REPLICATEs to it the records of the "
            "blocks between the old predecessor and the new one",
            actual="received" if got else "not received",
        )
