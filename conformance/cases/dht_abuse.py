"""Section 6.10: return-routability tokens, the amplification limit and rate limiting."""

from __future__ import annotations

import ipaddress
import itertools
import math
import time

from conformance.cases import case
from conformance.cases.dht_messages import (
    HEADER,
    Counters,
    ask,
    craft,
    has_flag,
    increase,
    join,
    leave,
    neighbors,
    other_address_peer,
    record,
    ring_wait,
    serve_until,
    summarise_reply,
    target_info,
)
from conformance.context import Context
from conformance.expect import ErrorReply, Reply
from conformance.model import HarnessError, Unsupported
from conformance.peer import DhtPeer, Received
from ref.wire import (
    ErrorCode,
    FindSuccessor,
    FindSuccessorResponse,
    GetNeighbors,
    MessageFlags,
    MessageType,
    Neighbors,
    NodeInfo,
    Ping,
    Rectify,
    Resolve,
    ResolveResponse,
    ResolveStatus,
    SourceRoute,
    Status,
    Store,
    node_id,
)

ORDER = 13

UNOBSERVABLE = {
    "DHT-TOKEN-1": "Seeing a secret replaced every 300 seconds needs a run of 5 to 10 minutes.",
    "SEC-GEN-1": (
        "Whether random values come from a cryptographically secure source cannot be told"
        " from a few samples (DHT-HDR-8 checks what samples can show)."
    ),
    "SEC-DOS-1": (
        "Bounds on a node's internal queues and tables show only after floods far larger"
        " than a conformance run may send."
    ),
}

_TRUNCATED = MessageFlags.TRUNCATED


def _rectify(ctx: Context, member: DhtPeer, token: bytes) -> Received | None:
    """A signed RECTIFY carrying ``token``: accepted only from a validated source (DHT-MSG-12)."""
    return member.request(Rectify(), sign=True, token=token, validate=False)


@case(
    "dht.abuse",
    "6.10.1",
    "DHT-TOKEN-2",
    "DHT-HDR-14",
    title="A token is valid for the address it was issued to, whoever there presents it",
)
def tokens(ctx: Context) -> None:
    target = target_info(ctx)
    client, member = ctx.client(), ctx.member()
    elsewhere = other_address_peer(ctx, member=True)
    refused = ErrorReply(ErrorCode.ADDRESS_NOT_VALIDATED)
    error = ctx.answer(ask(ctx, client, craft(client, Ping(), version=2)), "a PING of Version 2")
    issued = error.message.token
    try:
        ctx.expect(
            "DHT-TOKEN-2",
            _rectify(ctx, member, ctx.rng.randbytes(16)),
            refused,
            detail="a signed RECTIFY with a token the target never issued",
        )
        if elsewhere is not None:
            ctx.expect(
                "DHT-TOKEN-2",
                _rectify(ctx, elsewhere, issued),
                refused,
                detail="a signed RECTIFY from 127.0.0.2 with a token issued to 127.0.0.1",
            )
        accepted = _rectify(ctx, member, issued)
        detail = (
            "a signed RECTIFY from another port of the same address, with the token of an"
            " ERROR UNSUPPORTED_VERSION"
        )
        ctx.expect("DHT-HDR-14", accepted, Reply(MessageType.RECTIFY_RESPONSE), detail=detail)
        ctx.expect("DHT-TOKEN-2", accepted, Reply(MessageType.RECTIFY_RESPONSE), detail=detail)
        if elsewhere is None:
            return
        router = ctx.client()
        route = SourceRoute(7, (elsewhere.wire.endpoint(), router.wire.endpoint()))
        message = router.message(Ping())
        router.send_payload(router.encode(message), source_route=route)
        pong = ctx.answer(
            elsewhere.await_response(message.transaction_id), "a forwarded PING at entry 0"
        )
        ctx.expect(
            "DHT-HDR-14",
            _rectify(ctx, elsewhere, pong.message.token),
            Reply(MessageType.RECTIFY_RESPONSE),
            detail="a RECTIFY from 127.0.0.2 with the token of a PING forwarded from there",
        )
    finally:
        leave([p for p in (member, elsewhere) if p is not None], target)


@case(
    "dht.abuse",
    "6.10.1",
    "DHT-TOKEN-6",
    "DHT-ERR-5",
    "DHT-MSG-14",
    title="A STORE naming an address that is not validated is refused and stores nothing",
)
def store_needs_validated_addresses(ctx: Context) -> None:
    host = ipaddress.ip_address(ctx.target.address[0])
    elsewhere = "192.0.2.1" if host.version == 4 else "2001:db8::1"
    client, stranger = ctx.client(), ctx.client()
    client.request(Ping())
    own_token = client.tokens[ctx.target.address]
    attempts = [
        (client, record(ctx, [(elsewhere, 9)]), (), f"an endpoint at {elsewhere} and no token"),
        (
            client,
            record(ctx, [(elsewhere, 9)]),
            (own_token,),
            f"an endpoint at {elsewhere} and a token issued to the STORE's own address",
        ),
        (
            stranger,
            record(ctx, [(stranger.wire.local[0], 9)]),
            (),
            "an endpoint at the STORE's own address, sent without a token",
        ),
    ]
    for peer, stored, address_tokens, what in attempts:
        store = Store(record=stored, address_tokens=address_tokens)
        reply = peer.request(store, validate=False)
        ctx.expect(
            "DHT-TOKEN-6",
            reply,
            ErrorReply(ErrorCode.ADDRESS_NOT_VALIDATED),
            detail=f"a STORE of a record with {what}",
        )
        found = client.request(Resolve(stored.service_id))
        body = found.message.body if found is not None else None
        ctx.require(
            "DHT-ERR-5",
            isinstance(body, ResolveResponse) and body.status is not ResolveStatus.FOUND,
            f"after the refused STORE ({what}), a RESOLVE finds no record",
            actual=summarise_reply(found),
        )
        if found is not None and isinstance(body, ResolveResponse):
            ctx.require(
                "DHT-MSG-14",
                found.payload[HEADER + 1] in (0, 1),
                "the RESOLVE_RESPONSE has a Record Count of 0 or 1",
                actual=str(found.payload[HEADER + 1]),
            )


def _ring_of_three(ctx: Context, target: NodeInfo) -> tuple[DhtPeer, DhtPeer]:
    """Two members in ring order after the target, its successor list grown to both."""
    one, two = ctx.member(), ctx.member()
    t = int.from_bytes(node_id(target.key), "big")

    def after(peer: DhtPeer) -> int:
        return (int.from_bytes(peer.node_id, "big") - t) % (1 << 256)

    first, second = sorted((one, two), key=after)
    first.predecessor, first.successors = target, [second.info, target]
    second.predecessor, second.successors = first.info, [target, first.info]
    join(ctx, first, target)
    viewer = ctx.client()

    def formed() -> bool:
        body = neighbors(ctx, viewer).message.body
        assert isinstance(body, Neighbors)
        keys = [n.key for n in body.successors]
        return keys[:2] == [first.public_key, second.public_key]

    if not serve_until([first, second], formed, ring_wait(ctx)):
        raise HarnessError("the target did not list both members in its successor list")
    return first, second


def _node_keys(received: Received) -> list[bytes]:
    body = received.message.body
    if isinstance(body, Neighbors):
        front = [body.predecessor.key] if body.predecessor is not None else []
        return front + [n.key for n in body.successors]
    if isinstance(body, FindSuccessorResponse):
        return [n.key for n in body.nodes]
    return []


@case(
    "dht.abuse",
    "6.10.2",
    "DHT-AMP-1",
    "DHT-AMP-2",
    "DHT-AMP-3",
    "DHT-MSG-10",
    title="Answers to unvalidated sources stay within 3 times the request, cut lists say TRUNCATED",
)
def amplification_limit(ctx: Context) -> None:
    target = target_info(ctx)
    first, second = _ring_of_three(ctx, target)
    try:
        full = neighbors(ctx, ctx.client())
        body = full.message.body
        assert isinstance(body, Neighbors)
        ctx.require(
            "DHT-MSG-10",
            body.predecessor is not None
            and [n.key for n in body.successors][:2] == [first.public_key, second.public_key],
            "NEIGHBORS names a predecessor and the whole successor list, in ring order",
            actual=f"{len(_node_keys(full))} nodes",
        )
        ctx.require(
            "DHT-AMP-3",
            not has_flag(full, _TRUNCATED),
            "a NEIGHBORS to a validated source is whole and not TRUNCATED",
        )
        client = ctx.client()
        request = craft(client, GetNeighbors())
        cut = ctx.answer(ask(ctx, client, request), "an unvalidated GET_NEIGHBORS")
        _within_limit(ctx, request, cut, "an unvalidated GET_NEIGHBORS")
        shortened = _node_keys(cut) != _node_keys(full)
        ctx.require(
            "DHT-AMP-2",
            not shortened or has_flag(cut, _TRUNCATED),
            "a NEIGHBORS shortened for an unvalidated source is TRUNCATED",
            actual=f"{len(_node_keys(cut))} of {len(_node_keys(full))} nodes, flags"
            f" 0x{int(cut.message.flags):02X}",
        )
        cut_body, full_body = cut.message.body, full.message.body
        assert isinstance(full_body, Neighbors)
        if isinstance(cut_body, Neighbors):
            prefix = [n.key for n in cut_body.successors]
            ctx.require(
                "DHT-AMP-2",
                prefix == [n.key for n in full_body.successors][: len(prefix)]
                and (cut_body.predecessor is None or cut_body.predecessor == full_body.predecessor)
                and len(_node_keys(cut)) >= 1,
                "the shortened list is a prefix of the whole one (last successors dropped first)",
            )
        signed = second.message(GetNeighbors(), token=bytes(16))
        payload = second.encode(signed, sign=True)
        whole = ctx.answer(ask(ctx, second, payload), "a signed, unvalidated GET_NEIGHBORS")
        _within_limit(ctx, payload, whole, "a signed, unvalidated GET_NEIGHBORS")
        fits = len(whole.payload) <= 3 * len(payload) and _node_keys(whole) == _node_keys(full)
        ctx.require(
            "DHT-AMP-3",
            not fits or not has_flag(whole, _TRUNCATED),
            "an answer within 3 times its signed request is whole and not TRUNCATED",
            actual=f"{len(_node_keys(whole))} nodes, {len(whole.payload)} bytes",
        )
        for what, probe in (
            ("an unvalidated STATUS", craft(client, Status(), token=bytes(16))),
            ("an unvalidated PING", craft(client, Ping(), token=bytes(16))),
            (
                "an unvalidated FIND_SUCCESSOR",
                craft(client, FindSuccessor(target.key), token=bytes(16)),
            ),
        ):
            reply = ctx.answer(ask(ctx, ctx.client(), probe), what)
            _within_limit(ctx, probe, reply, what)
            if not _node_keys(reply):
                ctx.require(
                    "DHT-AMP-3",
                    not has_flag(reply, _TRUNCATED),
                    f"the answer to {what} has no node list and is not TRUNCATED",
                )
    finally:
        leave([first, second], target)


def _within_limit(ctx: Context, request: bytes, reply: Received, what: str) -> None:
    ctx.require(
        "DHT-AMP-1",
        len(reply.payload) <= 3 * len(request),
        f"the answer to {what} ({len(request)} bytes) is at most 3 times as long",
        expected=f"<= {3 * len(request)} bytes",
        actual=f"{len(reply.payload)} bytes: {summarise_reply(reply)}",
    )


@case(
    "dht.abuse",
    "6.10.3",
    "DHT-RATE-1",
    "DHT-RATE-2",
    "DHT-RATE-4",
    "DHT-ERR-1",
    "DHT-ERR-4",
    title="One source is held to its token bucket, drops are counted, RATE_LIMITED is paced",
)
def rate_limit(ctx: Context) -> None:
    rate, burst_size = ctx.target.rate_limit
    burst = int(burst_size)
    if burst > 1000:
        raise Unsupported(f"a burst of {burst} is too large to test cheaply")
    flooder = other_address_peer(ctx, member=False)
    shared = flooder is None
    flooder = flooder or ctx.client()
    counters = Counters(ctx)
    before = counters.read()
    extra = 20
    valid = [craft(flooder, Ping()) for _ in range(burst)]
    # Version 2 after the burst: answered UNSUPPORTED_VERSION only if the bucket admits
    # them, since the rate limit comes first (Section 6.11, rule 3 before rule 5).
    old = [craft(flooder, Ping(), version=2) for _ in range(extra)]
    replies: list[tuple[float, Received]] = []
    start = time.monotonic()
    for index, payload in enumerate(valid + old):
        flooder.send_payload(payload)
        if index % 20 == 19:
            time.sleep(0.003)  # keep within the target's socket buffer
            replies += [(time.monotonic(), r) for r in flooder.receive(0.001)]
    replies += [(time.monotonic(), r) for r in flooder.receive(ctx.timeout)]
    last = max((at for at, _ in replies), default=start)
    refill = rate * (last - start) + 1
    valid_ids = {p[4:12] for p in valid}
    pongs = sum(
        1
        for _, r in replies
        if r.message.transaction_id in valid_ids and r.message.type == MessageType.PONG
    )
    versions = sum(1 for _, r in replies if ctx.refused(r) == ErrorCode.UNSUPPORTED_VERSION)
    limited = sorted(at for at, r in replies if ctx.refused(r) == ErrorCode.RATE_LIMITED)
    sent = burst + extra
    admitted = pongs + versions
    ctx.require(
        "DHT-RATE-1",
        pongs >= burst - (10 if shared else 0),
        f"a burst of {burst} PINGs from one address is admitted",
        expected=f"{burst} PONGs",
        actual=f"{pongs} PONGs",
    )
    ctx.require(
        "DHT-RATE-1",
        admitted <= burst + refill,
        f"of {sent} requests sent in {last - start:.2f} s, at most the burst and the refill"
        f" at {rate:g}/s are processed",
        expected=f"<= {burst + refill:.0f}",
        actual=str(admitted),
    )
    ctx.require(
        "DHT-ERR-1",
        versions <= refill,
        f"the {extra} requests of Version 2 beyond the burst are dropped by the rate limit"
        " before their Version is checked",
        expected=f"<= {refill:.0f} UNSUPPORTED_VERSION",
        actual=str(versions),
    )
    pacing_ok = all(b - a >= 0.9 for a, b in itertools.pairwise(limited))
    ctx.require(
        "DHT-RATE-4",
        len(limited) <= 1 + math.floor(last - start) and pacing_ok,
        "at most one ERROR RATE_LIMITED per source address per second",
        actual=f"{len(limited)} in {last - start:.2f} s",
    )
    after = counters.read()
    if before is not None and after is not None:
        dropped = increase(before, after, "drop.RATE_LIMITED")
        ctx.require(
            "DHT-RATE-2",
            dropped >= sent - admitted,
            "every request beyond the limit is dropped and counted as RATE_LIMITED",
            expected=f">= {sent - admitted}",
            actual=str(dropped),
        )
        errors = increase(before, after, "error_sent.RATE_LIMITED")
        ctx.require(
            "DHT-ERR-4",
            errors == len(limited),
            "each ERROR RATE_LIMITED sent is counted",
            expected=str(len(limited)),
            actual=str(errors),
        )
    if shared:
        time.sleep(min(3.0, burst / rate))  # let the harness's own bucket refill
