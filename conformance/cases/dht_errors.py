"""Section 6.11: error codes, the processing order, silent drops, counting, no partial change."""

from __future__ import annotations

from conformance.cases import case
from conformance.cases.dht_messages import (
    HEADER,
    Counters,
    ask,
    craft,
    increase,
    join,
    leave,
    neighbors,
    node_info_bytes,
    record,
    serve_until,
    summarise_reply,
    target_info,
)
from conformance.context import Context
from conformance.expect import ErrorReply, NoReply
from conformance.peer import DhtPeer, Received, dht_datagram
from ref.wire import (
    Error,
    ErrorCode,
    FindSuccessor,
    GetNeighbors,
    Leave,
    Neighbors,
    NodeInfo,
    Ping,
    Pong,
    Rectify,
    Store,
    node_id,
)

ORDER = 12

_RING = 1 << 256


def _leave_with_17(member: DhtPeer, *, bad_signature: bool = False) -> bytes:
    """A signed LEAVE whose Successor Count is 17, one more than a list may hold."""
    assert member.key is not None
    infos = tuple(
        NodeInfo(key=bytes([i + 1]) * 32, endpoint=member.info.endpoint) for i in range(17)
    )
    body = Leave(predecessor=None, successors=infos[:16])
    unsigned = bytearray(craft(member, body))
    unsigned[HEADER + 1] = 17
    return craft(
        member,
        body,
        body_bytes=bytes(unsigned[HEADER:]) + node_info_bytes(infos[16]),
        sign_with=member.key,
        bad_signature=bad_signature,
    )


def _leave_with_has_predecessor_2(member: DhtPeer) -> bytes:
    assert member.key is not None
    body = Leave(predecessor=member.info, successors=(member.info,))
    data = bytearray(craft(member, body))
    data[HEADER] = 2
    return craft(member, body, body_bytes=bytes(data[HEADER:]), sign_with=member.key)


def _store_with_9_tokens(ctx: Context, peer: DhtPeer) -> bytes:
    body = Store(record=record(ctx), address_tokens=tuple(bytes([i]) * 16 for i in range(8)))
    data = bytearray(craft(peer, body))
    data[HEADER] = 9
    data[HEADER + 4 + 128 : HEADER + 4 + 128] = bytes(16)
    return bytes(data)


@case(
    "dht.errors",
    "6.11",
    "DHT-ERR-2",
    "DHT-MSG-9",
    "DHT-ERR-4",
    title="Requests that parse but break a rule draw ERROR with the rule's code, and are counted",
)
def invalid_requests(ctx: Context) -> None:
    counters = Counters(ctx)
    member = ctx.member()
    member.request(Ping())
    before = counters.read()
    requests: list[tuple[str, str, bytes, ErrorCode]] = [
        (
            "DHT-ERR-2",
            "a 1,185-byte PING",
            craft(member, Ping(), extra=bytes(1125)),
            ErrorCode.LIMIT_EXCEEDED,
        ),
        (
            "DHT-ERR-2",
            "a request of Type 0x00",
            craft(member, Ping(), kind=0x00),
            ErrorCode.UNKNOWN_MESSAGE_TYPE,
        ),
        (
            "DHT-ERR-2",
            "a request of Type 0x0A",
            craft(member, Ping(), kind=0x0A),
            ErrorCode.UNKNOWN_MESSAGE_TYPE,
        ),
        (
            "DHT-ERR-2",
            "a request of Type 0x7F",
            craft(member, Ping(), kind=0x7F),
            ErrorCode.UNKNOWN_MESSAGE_TYPE,
        ),
        (
            "DHT-ERR-2",
            "a signed LEAVE listing 17 successors",
            _leave_with_17(member),
            ErrorCode.LIMIT_EXCEEDED,
        ),
        (
            "DHT-ERR-2",
            "a STORE with 9 address tokens",
            _store_with_9_tokens(ctx, member),
            ErrorCode.LIMIT_EXCEEDED,
        ),
        (
            "DHT-MSG-9",
            "a signed LEAVE with Has Predecessor 2",
            _leave_with_has_predecessor_2(member),
            ErrorCode.MALFORMED,
        ),
    ]
    sent: dict[str, int] = {}
    for requirement, what, payload, code in requests:
        reply = ask(ctx, member, payload)
        ctx.expect(requirement, reply, ErrorReply(code), detail=what)
        refused = ctx.refused(reply)
        if refused is not None:
            name = ErrorCode(refused).name
            sent[name] = sent.get(name, 0) + 1
    after = counters.read()
    if before is None or after is None:
        return
    for name, count in sorted(sent.items()):
        grew = increase(before, after, f"error_sent.{name}")
        ctx.require(
            "DHT-ERR-4",
            grew == count,
            f"the counter error_sent.{name} grows by the {count} ERROR {name} sent",
            expected=str(count),
            actual=str(grew),
        )


@case(
    "dht.errors",
    "6.11",
    "DHT-ERR-1",
    title="When a request breaks several rules, the first in the order of Section 6.11 decides",
)
def processing_order(ctx: Context) -> None:
    member = ctx.member()
    assert member.key is not None
    requests: list[tuple[str, bytes, ErrorCode]] = [
        (
            "1,185 bytes and Version 2 (rule 4 before 5)",
            craft(member, Ping(), version=2, extra=bytes(1125)),
            ErrorCode.LIMIT_EXCEEDED,
        ),
        (
            "Version 2 and unassigned Type 0x0A (rule 5 before 6)",
            craft(member, Ping(), version=2, kind=0x0A),
            ErrorCode.UNSUPPORTED_VERSION,
        ),
        (
            "unassigned Type 0x0A, SIGNED and no room for a signature (rule 6 before 7)",
            craft(member, Ping(), kind=0x0A, flags=0x80, extra=bytes(8)),
            ErrorCode.UNKNOWN_MESSAGE_TYPE,
        ),
        (
            "an unsigned RECTIFY with a byte of body (rule 7 before 8)",
            craft(member, Rectify(), extra=b"\x00"),
            ErrorCode.MALFORMED,
        ),
        (
            "a LEAVE of 17 successors with a broken signature (rule 7 before 8)",
            _leave_with_17(member, bad_signature=True),
            ErrorCode.LIMIT_EXCEEDED,
        ),
        (
            "a RECTIFY with a broken signature from an unvalidated source (rule 8 before 9)",
            craft(member, Rectify(), token=bytes(16), sign_with=member.key, bad_signature=True),
            ErrorCode.BAD_SIGNATURE,
        ),
    ]
    for what, payload, code in requests:
        ctx.expect("DHT-ERR-1", ask(ctx, member, payload), ErrorReply(code), detail=what)


@case(
    "dht.errors",
    "6.11",
    "DHT-ERR-3",
    "DHT-MSG-19",
    "DHT-HDR-3",
    "DHT-ERR-1",
    "DHT-FRAME-6",
    "DHT-ERR-4",
    title="Short messages, stray responses and ERRORs are dropped silently and counted",
)
def silent_drops(ctx: Context) -> None:
    counters = Counters(ctx)
    before = counters.read()
    probe = ctx.client()
    observed = probe.wire.endpoint()
    long_reason = (0x0003).to_bytes(2, "big") + (300).to_bytes(2, "big") + b"x" * 300
    silent: list[tuple[tuple[str, ...], str, bytes]] = [
        (("DHT-ERR-3",), "59 bytes of a PING", craft(probe, Ping())[:59]),
        (("DHT-ERR-3",), "an empty ServalDHT message", b""),
        (("DHT-ERR-3",), "a PONG that answers no request", craft(probe, Pong(observed))),
        (
            ("DHT-ERR-3", "DHT-MSG-19"),
            "an ERROR that answers no request",
            craft(probe, Error(ErrorCode.INTERNAL_ERROR, b"stray")),
        ),
        (
            ("DHT-MSG-19",),
            "an ERROR with a 300-byte Reason",
            craft(probe, Error(ErrorCode.INTERNAL_ERROR), body_bytes=long_reason),
        ),
        (
            ("DHT-HDR-3", "DHT-ERR-1"),
            "a PONG of Version 2 (rule 2 before rule 5)",
            craft(probe, Pong(observed), version=2),
        ),
        (
            ("DHT-ERR-3",),
            "a response of unassigned Type 0x8A",
            craft(probe, Pong(observed), kind=0x8A),
        ),
    ]
    peers = []
    for _, _, payload in silent:
        peer = ctx.client()
        peer.wire.send(dht_datagram(payload))
        peers.append(peer)
    ping = craft(probe, Ping())
    probe.send_payload(ping)
    answers = [r for r in probe.receive(ctx.timeout) if r.message.transaction_id == ping[4:12]]
    ctx.require(
        "DHT-FRAME-6",
        len(answers) == 1,
        "one PING datagram draws exactly one response",
        expected="1",
        actual=str(len(answers)),
    )
    for (requirements, what, _), peer in zip(silent, peers, strict=True):
        reply: Received | None = next(iter(peer.receive(0.01)), None)
        for requirement in requirements:
            ctx.expect(requirement, reply, NoReply(), detail=what)
    after = counters.read()
    if before is None or after is None:
        return
    dropped = increase(before, after, "drop.")
    ctx.require(
        "DHT-ERR-4",
        dropped >= len(silent),
        f"the {len(silent)} messages dropped are counted",
        expected=f"drop counters grow by {len(silent)}",
        actual=f"by {dropped}",
    )
    malformed = increase(before, after, "drop.MALFORMED")
    ctx.require(
        "DHT-ERR-4",
        malformed >= 2,
        "the two messages shorter than the header are counted as MALFORMED (rule 1)",
        expected="drop.MALFORMED grows by 2",
        actual=f"by {malformed}",
    )


def _closer_pair(ctx: Context, target: bytes) -> tuple[DhtPeer, DhtPeer]:
    """Two members A and B with B in (A, target): B would be the better predecessor."""
    one, two = ctx.member(), ctx.member()
    t = int.from_bytes(node_id(target), "big")

    def gap(peer: DhtPeer) -> int:
        return (t - int.from_bytes(peer.node_id, "big")) % _RING

    return (one, two) if gap(one) > gap(two) else (two, one)


def _neighbourhood(ctx: Context, far: DhtPeer, near: DhtPeer, what: str, requirement: str) -> None:
    body = neighbors(ctx, ctx.client()).message.body
    assert isinstance(body, Neighbors)
    keys = [n.key for n in body.successors]
    predecessor = body.predecessor.key if body.predecessor is not None else None
    ctx.require(
        requirement,
        predecessor == far.public_key and near.public_key not in keys,
        f"after {what}, the predecessor is still the member that RECTIFYed, and the other"
        " member is in no list",
        actual=f"predecessor is {'the first member' if predecessor == far.public_key else 'other'}",
    )


@case(
    "dht.errors",
    "6.11",
    "DHT-ERR-5",
    "DHT-HDR-13",
    title="Failed RECTIFYs and LEAVEs, and Sender Keys of unsigned requests, change no list",
)
def failures_change_nothing(ctx: Context) -> None:
    target = target_info(ctx)
    far, near = _closer_pair(ctx, target.key)
    assert far.key is not None and near.key is not None
    join(ctx, far, target)
    near.request(Ping())
    try:
        for body in (Ping(), GetNeighbors(), FindSuccessor(near.node_id)):
            # Answered or not, these claim nothing: only their Sender Key names the member.
            ask(ctx, near, craft(near, body))
        serve_until([far, near], lambda: False, 1.2 * ctx.target.stabilize_interval)
        _neighbourhood(ctx, far, near, "unsigned requests with a closer key", "DHT-HDR-13")
        failing: list[tuple[DhtPeer, str, bytes, ErrorCode]] = [
            (near, "an unsigned RECTIFY", craft(near, Rectify()), ErrorCode.SIGNATURE_REQUIRED),
            (
                near,
                "a RECTIFY with a broken signature",
                craft(near, Rectify(), sign_with=near.key, bad_signature=True),
                ErrorCode.BAD_SIGNATURE,
            ),
            (
                near,
                "a signed RECTIFY with a byte of body",
                craft(near, Rectify(), extra=b"\x00", sign_with=near.key),
                ErrorCode.MALFORMED,
            ),
            (
                near,
                "a signed RECTIFY without a token",
                craft(near, Rectify(), token=bytes(16), sign_with=near.key),
                ErrorCode.ADDRESS_NOT_VALIDATED,
            ),
        ]
        farewell = Leave(predecessor=target, successors=(target,))
        failing += [
            (far, "an unsigned LEAVE", craft(far, farewell), ErrorCode.SIGNATURE_REQUIRED),
            (
                far,
                "a LEAVE with a broken signature",
                craft(far, farewell, sign_with=far.key, bad_signature=True),
                ErrorCode.BAD_SIGNATURE,
            ),
            (
                far,
                "a signed LEAVE without a token",
                craft(far, farewell, token=bytes(16), sign_with=far.key),
                ErrorCode.ADDRESS_NOT_VALIDATED,
            ),
            (
                far,
                "a LEAVE with Has Predecessor 2",
                _leave_with_has_predecessor_2(far),
                ErrorCode.MALFORMED,
            ),
        ]
        refused = []
        for peer, what, payload, code in failing:
            reply = ask(ctx, peer, payload)
            if ctx.refused(reply) == code:
                refused.append(what)
            else:
                ctx.require(
                    "DHT-ERR-5",
                    False,
                    f"{what} is refused with {code.name}",
                    actual=summarise_reply(reply),
                )
        serve_until([far, near], lambda: False, 1.2 * ctx.target.stabilize_interval)
        _neighbourhood(ctx, far, near, "; ".join(refused), "DHT-ERR-5")
    finally:
        leave([far, near], target)
