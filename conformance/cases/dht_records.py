"""Section 6.7: records at a target alone in its ring (a member of every replica set).

Each case registers blocks of its own (random block bases, fresh owner keys
from the case's seeded source), so that cases never meet each other's
records.  A registrant PINGs the target first and registers its own
address, which the STORE's validated source then covers (Section 6.10.1).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable

from conformance.cases import case
from conformance.cases.dht_ring import (
    found,
    record_for,
    refused,
    registrant,
    resolve_status,
    store,
)
from conformance.context import Context
from conformance.expect import ErrorReply
from conformance.model import HarnessError
from conformance.peer import DhtPeer, Received
from ref.wire import ErrorCode, Resolve, ResolveStatus, ServiceRecord, Store

ORDER = 22
GROUP = "dht.records"

UNOBSERVABLE = {
    "DHT-REC-1": "A rule for owners: the target never issues records.",
    "DHT-CACHE-2": "A node caches only records it resolved for itself; no message makes "
    "the target resolve in return mode, so its cache cannot be reached over the wire.",
    "DHT-CACHE-3": "A node caches only records it resolved for itself; no message makes "
    "the target resolve in return mode, so its cache cannot be reached over the wire.",
    "DHT-CACHE-4": "A node caches only records it resolved for itself; no message makes "
    "the target resolve in return mode, so its cache cannot be reached over the wire.",
    "DHT-RES-5": "A rule for a resolving client: the target resolves only on its own "
    "behalf, which no message of the harness can start.",
    "DHT-RES-6": "A rule for a resolving client: the target resolves only on its own "
    "behalf, which no message of the harness can start.",
    "DHT-RES-7": "A rule for a resolving client: the target resolves only on its own "
    "behalf, which no message of the harness can start.",
    "DHT-RES-8": "A rule for a client choosing an endpoint, which the target never does "
    "in return mode.",
}


def block(ctx: Context) -> bytes:
    """A fresh block base."""
    return ctx.rng.randbytes(31) + bytes([ctx.rng.randrange(32) << 3])


def resolve(peer: DhtPeer, service_id: bytes) -> Received | None:
    return peer.request(Resolve(service_id=service_id))


def any_id(ctx: Context, base: bytes) -> bytes:
    """Another serviceID of the block of ``base`` (the node uses the block base)."""
    return base[:-1] + bytes([base[-1] | ctx.rng.randrange(1, 8)])


def stored(ctx: Context, peer: DhtPeer, record: ServiceRecord, what: str) -> None:
    """Store a record the case needs; a refusal is a harness error, not a finding."""
    reply = store(peer, record)
    if reply is None or getattr(reply.message.body, "sequence", None) != record.sequence:
        raise HarnessError(f"STORE of {what} was answered by {refused(reply)}")


def refuses(
    ctx: Context, peer: DhtPeer, steps: Iterable[tuple[ServiceRecord, ErrorCode, str]]
) -> None:
    """STORE each record; each must draw ERROR with its code (DHT-STORE-1)."""
    for record, code, what in steps:
        ctx.expect(
            "DHT-STORE-1",
            store(peer, record),
            ErrorReply(code),
            detail=f"{what}: ERROR {code.name}",
        )


@case(
    GROUP,
    "6.8",
    "DHT-REPL-3",
    "DHT-RES-1",
    "DHT-REC-4",
    title="A member stores a valid record and resolves any serviceID of its block to it",
)
def store_and_resolve(ctx: Context) -> None:
    peer = registrant(ctx)
    base = block(ctx)
    record = record_for(ctx.key(), base, peer.wire.local)
    reply = store(peer, record)
    ctx.require(
        "DHT-REPL-3",
        reply is not None and getattr(reply.message.body, "sequence", None) == record.sequence,
        "a node alone in its ring is in every replica set and accepts a valid STORE",
        expected=f"STORE_RESPONSE with Sequence {record.sequence}",
        actual=refused(reply),
    )
    answer = resolve(peer, any_id(ctx, base))
    ctx.require(
        "DHT-RES-1",
        resolve_status(answer) == ResolveStatus.FOUND,
        "RESOLVE of another serviceID of the stored block is answered FOUND (step 1)",
        actual=refused(answer),
    )
    ctx.require(
        "DHT-REC-4",
        found(answer, record),
        "the FOUND record is the stored record byte for byte",
    )
    empty = resolve(peer, block(ctx))
    ctx.require(
        "DHT-RES-1",
        resolve_status(empty) == ResolveStatus.NOT_FOUND,
        "RESOLVE of an unregistered block at a member of its replica set is NOT_FOUND (step 2)",
        actual=refused(empty),
    )


@case(
    GROUP,
    "6.7.1",
    "DHT-STORE-1",
    "DHT-STORE-2",
    title="First come, first served: another owner's record for a held block is NOT_OWNER",
)
def first_come_first_served(ctx: Context) -> None:
    peer = registrant(ctx)
    base = block(ctx)
    first = record_for(ctx.key(), base, peer.wire.local, sequence=5)
    stored(ctx, peer, first, "the first owner's record")
    for sequence, what in ((6, "a higher"), (5, "the same"), (1, "a lower")):
        other = record_for(ctx.key(), base, peer.wire.local, sequence=sequence)
        reply = store(peer, other)
        ctx.expect(
            "DHT-STORE-1",
            reply,
            ErrorReply(ErrorCode.NOT_OWNER),
            detail=f"a second owner's record with {what} Sequence for the block is refused"
            " NOT_OWNER (check 6 comes before the sequence check 7)",
        )
    ctx.require(
        "DHT-STORE-2",
        found(resolve(peer, base), first),
        "the refused records changed nothing: the first owner's record is still served",
    )


@case(
    GROUP,
    "6.7.1",
    "DHT-STORE-1",
    "DHT-STORE-2",
    "DHT-STORE-3",
    title="Sequence: not greater is STALE_SEQUENCE, an identical repeat succeeds, greater replaces",
)
def sequence_increases(ctx: Context) -> None:
    peer = registrant(ctx)
    base = block(ctx)
    owner = ctx.key()
    current = record_for(owner, base, peer.wire.local, sequence=10)
    stored(ctx, peer, current, "the owner's record")
    for sequence, what in ((10, "the same Sequence and other contents"), (9, "a lower Sequence")):
        other = record_for(owner, base, peer.wire.local, sequence=sequence, lifetime=300)
        reply = store(peer, other)
        ctx.expect(
            "DHT-STORE-1",
            reply,
            ErrorReply(ErrorCode.STALE_SEQUENCE),
            detail=f"the owner's record with {what} is refused STALE_SEQUENCE",
        )
    again = store(peer, current)
    ctx.require(
        "DHT-STORE-1",
        again is not None and getattr(again.message.body, "sequence", None) == current.sequence,
        "a STORE of the identical record is accepted without change (check 7)",
        expected="STORE_RESPONSE",
        actual=refused(again),
    )
    ctx.require(
        "DHT-STORE-2",
        found(resolve(peer, base), current),
        "the refused records changed nothing: the stored record is still served",
    )
    newer = record_for(owner, base, peer.wire.local, sequence=11, lifetime=300)
    reply = store(peer, newer)
    answer = resolve(peer, base)
    ctx.require(
        "DHT-STORE-3",
        reply is not None
        and getattr(reply.message.body, "sequence", None) == 11
        and found(answer, newer),
        "a record with a higher Sequence is accepted and served in place of the old one",
        expected="STORE_RESPONSE 11, then FOUND the new record",
        actual=f"{refused(reply)}, then {refused(answer)}",
    )


@case(
    GROUP,
    "6.7.2",
    "DHT-REC-6",
    title="A tombstone replaces the record, is served FOUND and keeps the block for its owner",
)
def tombstone_kept(ctx: Context) -> None:
    peer = registrant(ctx)
    base = block(ctx)
    owner = ctx.key()
    stored(ctx, peer, record_for(owner, base, peer.wire.local, sequence=1), "the live record")
    tombstone = record_for(owner, base, None, sequence=2)
    reply = store(peer, tombstone)
    ctx.require(
        "DHT-REC-6",
        reply is not None and getattr(reply.message.body, "sequence", None) == 2,
        "the owner's tombstone with a higher Sequence is accepted",
        actual=refused(reply),
    )
    answer = resolve(peer, base)
    ctx.require(
        "DHT-REC-6",
        found(answer, tombstone),
        "RESOLVE of the deleted block is answered FOUND with the tombstone",
        actual=refused(answer),
    )
    squatter = store(peer, record_for(ctx.key(), base, peer.wire.local, sequence=3))
    ctx.expect(
        "DHT-REC-6",
        squatter,
        ErrorReply(ErrorCode.NOT_OWNER),
        detail="while the tombstone is kept, another owner's record is refused NOT_OWNER",
    )
    back = record_for(owner, base, peer.wire.local, sequence=4)
    reply = store(peer, back)
    ctx.require(
        "DHT-REC-6",
        reply is not None and getattr(reply.message.body, "sequence", None) == 4,
        "the owner registers the block again with a higher Sequence",
        actual=refused(reply),
    )


@case(
    GROUP,
    "6.7.3",
    "DHT-REC-7",
    title="Expired records, live or tombstone, are removed and free their blocks",
)
def records_expire(ctx: Context) -> None:
    peer = registrant(ctx)
    live_block, dead_block = block(ctx), block(ctx)
    owner = ctx.key()
    issued = int(time.time())
    live = record_for(owner, live_block, peer.wire.local, lifetime=2, issued_at=issued)
    stored(ctx, peer, live, "a record of 2 s")
    stored(ctx, peer, record_for(owner, dead_block, peer.wire.local, sequence=1), "a record")
    tombstone = record_for(owner, dead_block, None, sequence=2, lifetime=2, issued_at=issued)
    stored(ctx, peer, tombstone, "a tombstone of 2 s")
    time.sleep(max(0.0, issued + 2 - time.time()) + 0.2)
    answer = resolve(peer, live_block)
    ctx.require(
        "DHT-REC-7",
        resolve_status(answer) == ResolveStatus.NOT_FOUND,
        "once a record has expired, RESOLVE of its block is NOT_FOUND at a replica",
        expected="NOT_FOUND",
        actual=refused(answer)
        + (" (the expired record)" if resolve_status(answer) == ResolveStatus.FOUND else ""),
    )
    for base, what in ((live_block, "live record"), (dead_block, "tombstone")):
        newcomer = record_for(ctx.key(), base, peer.wire.local)
        reply = store(peer, newcomer)
        ctx.require(
            "DHT-REC-7",
            reply is not None and getattr(reply.message.body, "sequence", None) == 1,
            f"once another owner's {what} has expired, the block is free: a new owner's "
            "record is accepted",
            expected="STORE_RESPONSE",
            actual=refused(reply),
        )


@case(
    GROUP,
    "6.7.1",
    "DHT-STORE-1",
    "DHT-STORE-2",
    title="Validation runs its checks in order: the first failing check names the ERROR",
)
def validation_order(ctx: Context) -> None:
    peer = registrant(ctx)
    now = int(time.time())
    elsewhere = ("192.0.2.1", 54325)  # TEST-NET-1: never validated for this registrant
    base = block(ctx)
    owner = ctx.key()
    good = record_for(owner, base, peer.wire.local)
    forged = dataclasses.replace(good, signature=bytes(64))
    expired = record_for(owner, base, peer.wire.local, issued_at=now - 200, lifetime=100)
    expired_forged = dataclasses.replace(expired, signature=bytes(64))
    future = record_for(owner, base, elsewhere, issued_at=now + 3600)
    expired_elsewhere = record_for(owner, base, elsewhere, issued_at=now - 200, lifetime=100)
    steps: list[tuple[ServiceRecord, ErrorCode, str]] = [
        (forged, ErrorCode.BAD_SIGNATURE, "a record whose signature fails"),
        (expired_forged, ErrorCode.BAD_SIGNATURE, "an expired record whose signature fails"),
        (
            future,
            ErrorCode.RECORD_EXPIRED,
            "a record issued an hour ahead, at an address not validated",
        ),
        (
            expired_elsewhere,
            ErrorCode.RECORD_EXPIRED,
            "an expired record at an address not validated",
        ),
    ]
    refuses(ctx, peer, steps)
    ctx.require(
        "DHT-STORE-2",
        resolve_status(resolve(peer, base)) == ResolveStatus.NOT_FOUND,
        "the refused records did not claim the block",
    )
    # Check 1 (static rules) before check 2: a Service ID that is not a block base.
    message = peer.message(Store(record=good, address_tokens=()))
    data = bytearray(peer.encode(message))
    data[60 + 4 + 31] |= 0x05  # the last byte of the record's Service ID; the signature breaks
    peer.send_raw(bytes(data))
    reply = peer.await_response(message.transaction_id)
    ctx.expect(
        "DHT-STORE-1",
        reply,
        ErrorReply(ErrorCode.BAD_SERVICE_ID),
        detail="a record whose Service ID is not a block base (and whose signature therefore "
        "fails): ERROR BAD_SERVICE_ID",
    )
    # Checks 5 and 6 against a block held by the first owner.
    stored(ctx, peer, good, "the first owner's record")
    intruder = ctx.key()
    refuses(
        ctx,
        peer,
        [
            (
                record_for(intruder, base, elsewhere, sequence=2),
                ErrorCode.ADDRESS_NOT_VALIDATED,
                "another owner's record at an address not validated",
            ),
            (
                record_for(owner, base, elsewhere, sequence=1, lifetime=60),
                ErrorCode.ADDRESS_NOT_VALIDATED,
                "the owner's record of the same Sequence at an address not validated",
            ),
        ],
    )
    ctx.require(
        "DHT-STORE-2",
        found(resolve(peer, base), good),
        "the refused records changed nothing",
    )


@case(
    GROUP,
    "6.7.1",
    "DHT-STORE-1",
    title="A node stores at most 64 records of one owner key; replacing one adds nothing",
)
def owner_limit(ctx: Context) -> None:
    peer = registrant(ctx)
    owner = ctx.key()
    limit = 64
    records = [record_for(owner, block(ctx), peer.wire.local, lifetime=30) for _ in range(limit)]
    for index, record in enumerate(records):
        stored(ctx, peer, record, f"record {index + 1} of the owner")
    extra = record_for(owner, block(ctx), peer.wire.local, lifetime=30)
    reply = store(peer, extra)
    ctx.expect(
        "DHT-STORE-1",
        reply,
        ErrorReply(ErrorCode.LIMIT_EXCEEDED),
        detail="a 65th block of one owner key is refused LIMIT_EXCEEDED (check 8)",
    )
    newer = record_for(owner, records[0].service_id, peer.wire.local, sequence=2, lifetime=30)
    reply = store(peer, newer)
    ctx.require(
        "DHT-STORE-1",
        reply is not None and getattr(reply.message.body, "sequence", None) == 2,
        "a newer record for one of the owner's 64 blocks replaces it and is accepted",
        expected="STORE_RESPONSE",
        actual=refused(reply),
    )
    other = record_for(ctx.key(), extra.service_id, peer.wire.local)
    reply = store(peer, other)
    ctx.require(
        "DHT-STORE-1",
        reply is not None and getattr(reply.message.body, "sequence", None) == 1,
        "the limit is per owner key: another owner's record for the refused block is accepted",
        expected="STORE_RESPONSE",
        actual=refused(reply),
    )
