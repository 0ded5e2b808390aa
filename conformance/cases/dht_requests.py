"""Sections 6.4.4, 6.4.5 and 6.4.8: what RECTIFY, STORE and LEAVE get as answers."""

from __future__ import annotations

from conformance.cases import case
from conformance.cases.dht_messages import (
    join,
    leave,
    neighbors,
    ring_wait,
    serve_until,
    target_info,
)
from conformance.cases.dht_ring import block_between, node_ident, record_for
from conformance.context import Context
from conformance.expect import ErrorReply, Reply
from conformance.model import HarnessError
from conformance.peer import Address, DhtPeer, default_responder
from ref.wire import (
    Body,
    DhtMessage,
    ErrorCode,
    Leave,
    MessageType,
    Ping,
    Rectify,
    Replicate,
    Store,
)

ORDER = 14


@case(
    "dht.requests",
    "6.4.4",
    "DHT-MSG-12",
    "DHT-MSG-15",
    "DHT-MSG-11",
    title="RECTIFY and LEAVE from an unvalidated source are refused and change nothing",
)
def unvalidated_rectify_and_leave(ctx: Context) -> None:
    target = target_info(ctx)
    member, observer = ctx.member(), ctx.client()
    member.predecessor, member.successors = target, [target]
    refused = ErrorReply(ErrorCode.ADDRESS_NOT_VALIDATED)
    before = neighbors(ctx, observer).message.body
    try:
        ctx.expect(
            "DHT-MSG-12",
            member.request(Rectify(), sign=True, token=bytes(16), validate=False),
            refused,
            detail="a signed RECTIFY with no token",
        )
        leave_body = Leave(predecessor=target, successors=(target,))
        ctx.expect(
            "DHT-MSG-15",
            member.request(leave_body, sign=True, token=bytes(16), validate=False),
            refused,
            detail="a signed LEAVE with no token",
        )
        after = neighbors(ctx, observer).message.body
        ctx.require(
            "DHT-MSG-12",
            after == before,
            "the refused RECTIFY and LEAVE left the target's neighbours as they were",
            expected=repr(before),
            actual=repr(after),
        )
        member.request(Ping())  # a token for the member's address
        ctx.expect(
            "DHT-MSG-11",
            member.request(Rectify(), sign=True),
            Reply(MessageType.RECTIFY_RESPONSE),
            detail="a validated, signed RECTIFY from a node just before the target",
        )
    finally:
        leave([member], target)


@case(
    "dht.requests",
    "6.4.5",
    "DHT-MSG-13",
    title="STORE is answered once the record is stored, without waiting for replication",
)
def store_answered_before_replication(ctx: Context) -> None:
    target = target_info(ctx)
    member = ctx.member()
    held: list[DhtMessage] = []

    def hold_replicates(peer: DhtPeer, message: DhtMessage, source: Address) -> Body | None:
        if isinstance(message.body, Replicate):
            held.append(message)  # never answered: replication cannot complete
            return None
        return default_responder(peer, message, source)

    member.responder = hold_replicates
    join(ctx, member, target)
    try:
        # The target takes the member as its successor when it RECTIFYs it.
        adopted = serve_until(
            [member],
            lambda: any(r.message.type == MessageType.RECTIFY for r in member.requests),
            ring_wait(ctx),
        )
        if not adopted:
            raise HarnessError("the target did not take its new predecessor as successor")
        owner = ctx.client()
        owner.request(Ping())
        # A block in (member, target]: the target is its first replica whatever else
        # its lists hold yet.
        block = block_between(ctx, node_ident(member.public_key), node_ident(target.key))
        stored = record_for(ctx.key(), block, owner.wire.local)
        reply = owner.request(Store(stored))
        ctx.expect(
            "DHT-MSG-13",
            reply,
            Reply(MessageType.STORE_RESPONSE),
            detail="a STORE while every REPLICATE to the target's successor goes unanswered",
        )

        def replicated() -> bool:
            return any(isinstance(m.body, Replicate) and m.body.record == stored for m in held)

        serve_until([member], replicated, ring_wait(ctx))
        ctx.require(
            "DHT-MSG-13",
            replicated(),
            "the STORE_RESPONSE came although the record's REPLICATE to the successor was"
            " never answered",
        )
    finally:
        leave([member], target)
