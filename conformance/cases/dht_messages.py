"""Sections 6.2 to 6.4: framing, messages, and the target as a requester.

The first half of this module holds the helpers that the ServalDHT cases of
Sections 6.2 to 6.11 share: crafting messages byte by byte (a bad signature,
a forged signature under a small-order key, a count the encoder refuses),
asking the target and checking every answer's header, reading its counters,
joining it with harness members and leaving again, and a peer on a second
loopback address for the rules that depend on the source address.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import itertools
import time
from collections.abc import Callable, Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from conformance.cases import case
from conformance.context import Context
from conformance.expect import ErrorReply, Reply
from conformance.model import HarnessError
from conformance.peer import Address, DhtPeer, Received, default_responder, summarise
from ref.wire import (
    SERVALDHT_SERVICE_ID,
    Body,
    DhtMessage,
    Endpoint,
    ErrorCode,
    GetNeighbors,
    Leave,
    MessageFlags,
    MessageType,
    Neighbors,
    NodeInfo,
    Ping,
    Pong,
    RecordEndpoint,
    RecordFlags,
    Rectify,
    Replicate,
    ServiceRecord,
    SourceRoute,
    Store,
    TransportProtocol,
    encode_dht,
    public_key_bytes,
    sign_record,
)
from ref.wire.constants import MESSAGE_SIGNING_CONTEXT

ORDER = 11

UNOBSERVABLE = {
    "DHT-ID-1": "Names are normalised by clients before hashing; a node only ever sees serviceIDs.",
    "DHT-ID-2": "Which strings a client refuses to hash never reaches a node as a message.",
    "DHT-ID-4": "Key-bound name text is parsed by clients; no message carries it.",
    "DHT-ID-5": "Key-bound name text is parsed by clients; no message carries it.",
    "DHT-ID-7": "Key-bound name text is parsed by clients; no message carries it.",
    "DHT-HDR-12": "It binds hosts that are not ring members, and the target is a ring member.",
    "DHT-MSG-16": (
        "No procedure makes a node send STATUS, so the target never holds a STATUS_RESPONSE"
        " it could act on."
    ),
    "DHT-MSG-18": ("No finite set of exchanges shows that no decision depends on the Reason text."),
}

HEADER = 60
MAX_MESSAGE = 1184
#: The eight small-order Ed25519 encodings listed in Section 6.4 (DHT-MSG-20).
SMALL_ORDER_KEYS = tuple(
    bytes.fromhex(text)
    for text in (
        "0100000000000000000000000000000000000000000000000000000000000000",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000080",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    )
)
_ED25519_ORDER = 2**252 + 27742317777372353535851937790883648493
_IDENTITY_POINT = bytes([1]) + bytes(31)
_FORGED_SIGNATURE = _IDENTITY_POINT + bytes(32)


# --- crafting messages ------------------------------------------------------------


def craft(
    peer: DhtPeer,
    body: Body,
    *,
    version: int = 1,
    kind: int | None = None,
    flags: int = 0,
    token: bytes | None = None,
    sender_key: bytes | None = None,
    transaction_id: bytes | None = None,
    body_bytes: bytes | None = None,
    extra: bytes = b"",
    sign_with: Ed25519PrivateKey | None = None,
    bad_signature: bool = False,
) -> bytes:
    """ServalDHT bytes of ``body`` with any header field or body byte changed.

    ``body_bytes`` replaces the encoded body and ``extra`` is appended to it;
    with ``sign_with`` the result is signed (SIGNED set, the signature over
    the changed bytes), with one bit of the signature flipped when
    ``bad_signature``.
    """
    message = peer.message(body, token=token, transaction_id=transaction_id)
    if sender_key is not None:
        message = dataclasses.replace(message, sender_key=sender_key)
    data = bytearray(encode_dht(message))
    data[0] = version
    if kind is not None:
        data[1] = kind
    data[2] = flags | (0x80 if sign_with is not None else 0)
    if body_bytes is not None:
        data[HEADER:] = body_bytes
    data += extra
    if sign_with is None:
        return bytes(data)
    signature = bytearray(sign_with.sign(MESSAGE_SIGNING_CONTEXT + bytes(data)))
    if bad_signature:
        signature[10] ^= 0x01
    return bytes(data + signature)


def forged_small_order(peer: DhtPeer, body: Body, key: bytes) -> bytes:
    """A message "signed" under the small-order ``key`` that plain Ed25519 accepts.

    With R the identity point and S = 0, the verification equation holds
    whenever the hash scalar k is a multiple of the key's order (which
    divides 8), so the Transaction ID is drawn until it is: a verifier that
    does not refuse small-order keys (DHT-MSG-20) accepts the result.
    """
    for _ in range(4096):
        data = craft(peer, body, sender_key=key, flags=0x80)
        if _forgery_holds(key, MESSAGE_SIGNING_CONTEXT + data):
            return data + _FORGED_SIGNATURE
    raise HarnessError("found no Transaction ID for a small-order forgery")


def short(key: bytes) -> str:
    return f"{key.hex()[:8]}…{key.hex()[-4:]}"


def node_info_bytes(info: NodeInfo) -> bytes:
    """The 52 bytes of one Node Info entry (Section 6.4)."""
    body = Leave(predecessor=None, successors=(info,))
    return encode_dht(DhtMessage(body=body, transaction_id=bytes(8)))[HEADER + 4 :]


def record(ctx: Context, endpoints: Sequence[tuple[str, int]] = ()) -> ServiceRecord:
    """A valid record for a random block, signed by a fresh owner key."""
    base = bytearray(ctx.rng.randbytes(32))
    base[-1] &= 0xF8
    endpoints = endpoints or [(ctx.target.address[0], 9)]
    unsigned = ServiceRecord(
        service_id=bytes(base),
        owner_key=bytes(32),
        sequence=1,
        issued_at=int(time.time()),
        lifetime=600,
        flags=RecordFlags(0),
        endpoints=tuple(
            RecordEndpoint(ipaddress.ip_address(host), port) for host, port in endpoints
        ),
    )
    return sign_record(unsigned, ctx.key())


def forged_record(ctx: Context, key: bytes) -> ServiceRecord:
    """A record under the small-order Owner Key ``key`` whose forgery plain Ed25519 accepts."""
    base = dataclasses.replace(record(ctx), owner_key=key, signature=_FORGED_SIGNATURE)
    for sequence in range(1, 4096):
        candidate = dataclasses.replace(base, sequence=sequence)
        if _forgery_holds(key, candidate.signing_input()):
            return candidate
    raise HarnessError("found no Sequence for a small-order forgery")


def _forgery_holds(key: bytes, message: bytes) -> bool:
    """Whether R = identity, S = 0 satisfies the Ed25519 equation for ``key`` and ``message``.

    [S]B = R + [k]A holds when [k]A is the identity, that is when the hash
    scalar k (reduced or not) is a multiple of the order of A, which divides 8.
    """
    digest = hashlib.sha512(_IDENTITY_POINT + key + message).digest()
    scalar = int.from_bytes(digest, "little")
    return scalar % 8 == 0 and scalar % _ED25519_ORDER % 8 == 0


# --- asking and checking ----------------------------------------------------------


def ask(
    ctx: Context,
    peer: DhtPeer,
    payload: bytes,
    *,
    timeout: float | None = None,
    source_route: SourceRoute | None = None,
) -> Received | None:
    """Send ``payload`` and return the target's first response to this socket, checked.

    Every answer must echo the Transaction ID (DHT-HDR-9); a response with
    another ID is returned all the same, after that requirement has failed.
    """
    sent = payload[4:12]
    peer.send_payload(payload, source_route=source_route)
    for received in peer.receive(timeout):
        if received.source != ctx.target.address:
            continue
        if received.message.transaction_id != sent:
            ctx.require(
                "DHT-HDR-9",
                False,
                "the response echoes the request's Transaction ID",
                expected=sent.hex(),
                actual=received.message.transaction_id.hex(),
            )
        check_sent(ctx, received, response=True)
        return received
    return None


def frame_problems(received: Received) -> list[str]:
    """What breaks the framing of Section 6.2 in a datagram the target sent."""
    packet = received.packet
    problems = []
    if packet.source_flow_id or packet.destination_flow_id:
        problems.append("non-zero flowIDs")
    if packet.protocol != TransportProtocol.DATAGRAM:
        problems.append(f"protocol {packet.protocol}")
    if packet.destination_service != SERVALDHT_SERVICE_ID:
        problems.append("no SERVICE extension for the ServalDHT serviceID")
    if packet.source_service is not None:
        problems.append("a SERVICE extension with role SOURCE")
    if packet.control is not None:
        problems.append("a CONTROL extension")
    if packet.source_route is not None:
        problems.append("a SOURCE extension")
    return problems


def check_sent(ctx: Context, received: Received, *, response: bool) -> None:
    """Rules of Sections 6.2 and 6.3 that every message the target sends must follow.

    Only violations are recorded here, so that a case's findings stay about
    what it tests; each case that is about these rules judges them itself.
    """
    payload = received.payload
    what = summarise(received.message)
    rules = [
        ("DHT-FRAME-1", not frame_problems(received), "framed as Section 6.2 says"),
        ("DHT-FRAME-3", len(payload) <= MAX_MESSAGE, "at most 1,184 bytes"),
        ("DHT-HDR-1", payload[0] == 1, "Version 1"),
        ("DHT-HDR-4", payload[2] & 0x3F == 0, "reserved flag bits zero"),
        ("DHT-HDR-6", payload[3] == 0, "Reserved octet zero"),
    ]
    if response:
        rules.append(("DHT-HDR-14", received.message.token != bytes(16), "a token in the response"))
    for requirement, holds, rule in rules:
        if not holds:
            ctx.require(requirement, False, f"{what}: {rule}", actual=payload[:4].hex())


def judge_sent(ctx: Context, received: Received, what: str) -> None:
    """Judge (PASS or FAIL) the framing and header rules on one message of the target."""
    payload = received.payload
    problems = frame_problems(received)
    ctx.require(
        "DHT-FRAME-1",
        not problems,
        f"{what} is a SAL unconnected datagram to the ServalDHT serviceID",
        actual=", ".join(problems) or "as required",
    )
    ctx.require("DHT-FRAME-3", len(payload) <= MAX_MESSAGE, f"{what} is at most 1,184 bytes")
    ctx.require("DHT-HDR-1", payload[0] == 1, f"{what} has Version 1", actual=str(payload[0]))
    ctx.require(
        "DHT-HDR-4",
        payload[2] & 0x3F == 0,
        f"{what} has the reserved flag bits clear",
        actual=f"0x{payload[2]:02X}",
    )
    ctx.require("DHT-HDR-6", payload[3] == 0, f"{what} has Reserved 0", actual=str(payload[3]))


def refusal(*codes: ErrorCode) -> ErrorReply:
    return ErrorReply(*codes)


def has_flag(received: Received | None, flag: MessageFlags) -> bool:
    return received is not None and bool(received.message.flags & flag)


# --- counters (feature "counters", Appendix C) -------------------------------------


class Counters:
    """Reads the target's counters through one validated client, so reading sends no ERROR."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.available = "counters" in ctx.target.features
        self._peer = ctx.client() if self.available else None

    def read(self) -> dict[str, int] | None:
        """None without the feature, or when the report left the counters out."""
        return None if self._peer is None else self.ctx.counters(self._peer)


def increase(before: dict[str, int], after: dict[str, int], prefix: str) -> int:
    """How much the counters whose names start with ``prefix`` grew."""
    keys = {k for k in (*before, *after) if k.startswith(prefix)}
    return sum(after.get(k, 0) - before.get(k, 0) for k in keys)


# --- the target and the members the harness adds --------------------------------------


def endpoint_of(address: Address) -> Endpoint:
    return Endpoint(ipaddress.ip_address(address[0]), address[1])


def target_info(ctx: Context) -> NodeInfo:
    """The target's Node Info: the Sender Key of its PONG and its endpoint."""
    reply = ctx.answer(ctx.client().request(Ping()), "a PING")
    return NodeInfo(key=reply.message.sender_key, endpoint=endpoint_of(ctx.target.address))


def join(ctx: Context, member: DhtPeer, target: NodeInfo) -> None:
    """Make ``member`` the target's predecessor with a validated, signed RECTIFY."""
    if member.predecessor is None:
        member.predecessor = target
    if not member.successors:
        member.successors = [target]
    member.request(Ping())
    reply = member.request(Rectify(), sign=True)
    if reply is None or reply.message.type != MessageType.RECTIFY_RESPONSE:
        raise HarnessError(f"a member could not RECTIFY the target ({summarise_reply(reply)})")


def leave(members: Sequence[DhtPeer], target: NodeInfo) -> None:
    """Members leave with a signed LEAVE that names only the target (Appendix C).

    A member that has left answers nothing more, as a node that left does: a
    NEIGHBORS to a GET_NEIGHBORS sent just before the LEAVE would bring it back
    into the target's lists, and its failure three seconds later would then
    spoil a later case.
    """
    for member in members:
        member.responder = None
        member.predecessor = target
        member.successors = [target]
        member.leave(target)


def summarise_reply(received: Received | None) -> str:
    return "no message" if received is None else summarise(received.message)


def serve_until(
    members: Sequence[DhtPeer], done: Callable[[], bool], seconds: float, step: float = 0.05
) -> bool:
    """Serve the members' requests until ``done()`` or ``seconds`` pass; return ``done()``."""
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() >= deadline:
            return False
        for member in members:
            member.drain(step / len(members))
    return True


def ring_wait(ctx: Context) -> float:
    """Long enough for a few stabilization rounds of the target."""
    return 4 * ctx.target.stabilize_interval + 2


def neighbors(ctx: Context, peer: DhtPeer) -> Received:
    """The target's NEIGHBORS to a validated GET_NEIGHBORS (whole, Section 6.10.2)."""
    if ctx.target.address not in peer.tokens:
        ctx.answer(peer.request(Ping()), "a PING for a token")
    reply = ctx.answer(peer.request(GetNeighbors()), "a GET_NEIGHBORS")
    if not isinstance(reply.message.body, Neighbors):
        raise HarnessError(f"GET_NEIGHBORS answered by {summarise(reply.message)}")
    return reply


def other_address_peer(ctx: Context, *, member: bool) -> DhtPeer | None:
    """A peer on 127.0.0.2 when the target is on IPv4 loopback, else None.

    Tokens and rate limits are per source address (Section 6.10); every other
    peer of the harness shares one address.
    """
    host = ipaddress.ip_address(ctx.target.address[0])
    if not (host.version == 4 and host.is_loopback):
        return None
    try:
        return ctx.member(source="127.0.0.2") if member else ctx.client(source="127.0.0.2")
    except OSError:
        return None


# --- cases ---------------------------------------------------------------------------


@case(
    "dht.messages",
    "6.4.1",
    "DHT-MSG-8",
    "DHT-FRAME-5",
    "DHT-HDR-11",
    title="A PING is answered by a PONG naming its observed endpoint, from the target's endpoint",
)
def ping_pong(ctx: Context) -> None:
    peer = ctx.client()
    reply = ctx.answer(ask(ctx, peer, craft(peer, Ping())), "a PING")
    ctx.expect(
        "DHT-MSG-8",
        reply,
        Reply(
            MessageType.PONG,
            lambda m: isinstance(m.body, Pong) and m.body.observed == peer.wire.endpoint(),
            f"Observed {peer.wire.local}",
        ),
        detail="a PING from a client socket",
    )
    ctx.require(
        "DHT-FRAME-5",
        reply.source == ctx.target.address,
        "the PONG comes from the endpoint the PING was sent to",
        expected=str(ctx.target.address),
        actual=str(reply.source),
    )
    key = reply.message.sender_key
    node_id = ctx.target.report.get("node_id")
    ctx.require(
        "DHT-HDR-11",
        key != bytes(32)
        and (not isinstance(node_id, str) or hashlib.sha256(key).hexdigest() == node_id.lower()),
        "the PONG's Sender Key is the target's host key (its hash is the node ID it reports)",
        actual=key.hex(),
    )


@case(
    "dht.messages",
    "6.2",
    "DHT-FRAME-4",
    "DHT-FRAME-5",
    "DHT-MSG-8",
    title="A request forwarded with a SOURCE extension is answered at its entry 0",
)
def forwarded_request(ctx: Context) -> None:
    client, router = ctx.client(), ctx.client()
    route = SourceRoute(hop_limit=7, entries=(client.wire.endpoint(), router.wire.endpoint()))
    message = router.message(Ping())
    router.send_payload(router.encode(message), source_route=route)
    reply = client.await_response(message.transaction_id)
    ctx.expect(
        "DHT-FRAME-4",
        reply,
        Reply(MessageType.PONG),
        detail="a PING forwarded by a service router: the PONG goes to SOURCE entry 0",
    )
    stray = next(iter(router.receive(0.05)), None)
    ctx.require(
        "DHT-FRAME-4",
        stray is None,
        "nothing is sent to the router that forwarded the request",
        actual=summarise_reply(stray),
    )
    if reply is None:
        return
    ctx.require(
        "DHT-FRAME-5",
        reply.source == ctx.target.address,
        "the PONG comes from the endpoint the request was sent to",
        actual=str(reply.source),
    )
    ctx.expect(
        "DHT-MSG-8",
        reply,
        Reply(
            MessageType.PONG,
            lambda m: isinstance(m.body, Pong) and m.body.observed == client.wire.endpoint(),
            "Observed is SOURCE entry 0",
        ),
        detail="the observed endpoint of a forwarded PING",
    )


@case(
    "dht.messages",
    "6.4.3",
    "DHT-MSG-10",
    "DHT-MSG-9",
    title="A node alone in its ring reports no predecessor and itself as its only successor",
)
def neighbors_alone(ctx: Context) -> None:
    me = target_info(ctx)
    reply = neighbors(ctx, ctx.client())
    body = reply.message.body
    assert isinstance(body, Neighbors)
    ctx.require(
        "DHT-MSG-9",
        reply.payload[HEADER] in (0, 1),
        "Has Predecessor is 0 or 1",
        actual=str(reply.payload[HEADER]),
    )
    ctx.require(
        "DHT-MSG-10",
        body.predecessor is None and [n.key for n in body.successors] == [me.key],
        "NEIGHBORS of a ring of one: no predecessor, the node itself as the only successor",
        actual=f"predecessor {body.predecessor is not None}, {len(body.successors)} successors",
    )


@case(
    "dht.messages",
    "6.4",
    "DHT-MSG-3",
    title="RECTIFY, REPLICATE and LEAVE without the SIGNED flag draw SIGNATURE_REQUIRED",
)
def signed_types_need_signatures(ctx: Context) -> None:
    member = ctx.member()
    member.request(Ping())
    bodies: list[Body] = [
        Rectify(),
        Replicate(record(ctx)),
        Leave(predecessor=None, successors=(member.info,)),
    ]
    for body in bodies:
        reply = ask(ctx, member, craft(member, body))
        ctx.expect(
            "DHT-MSG-3",
            reply,
            refusal(ErrorCode.SIGNATURE_REQUIRED),
            detail=f"an unsigned {body.TYPE.name} from a member with a valid token",
        )


@case(
    "dht.messages",
    "6.4",
    "DHT-MSG-4",
    "DHT-MSG-6",
    title="Signatures are verified: a valid one is accepted, a broken one draws BAD_SIGNATURE",
)
def signatures_verified(ctx: Context) -> None:
    member = ctx.member()
    assert member.key is not None
    good = ask(ctx, member, craft(member, Ping(), sign_with=member.key))
    ctx.expect("DHT-MSG-4", good, Reply(MessageType.PONG), detail="a correctly signed PING")
    for body in (Ping(), Rectify(), GetNeighbors()):
        reply = ask(ctx, member, craft(member, body, sign_with=member.key, bad_signature=True))
        detail = f"a {body.TYPE.name} whose signature has one bit flipped"
        ctx.expect("DHT-MSG-4", reply, refusal(ErrorCode.BAD_SIGNATURE), detail=detail)
        ctx.expect("DHT-MSG-6", reply, refusal(ErrorCode.BAD_SIGNATURE), detail=detail)
    other = ctx.key()
    reply = ask(ctx, member, craft(member, Ping(), sign_with=other))
    ctx.expect(
        "DHT-MSG-6",
        reply,
        refusal(ErrorCode.BAD_SIGNATURE),
        detail="a PING signed by a key other than its Sender Key",
    )


@case(
    "dht.messages",
    "6.4",
    "DHT-MSG-5",
    "DHT-MSG-20",
    title="Signatures under the zero key or a small-order key fail, even where Ed25519 holds",
)
def small_order_keys(ctx: Context) -> None:
    peer = ctx.client()
    for key in SMALL_ORDER_KEYS:
        reply = ask(ctx, peer, forged_small_order(peer, Ping(), key))
        detail = f"a PING signed under the small-order key {short(key)} (R = identity, S = 0)"
        ctx.expect("DHT-MSG-20", reply, refusal(ErrorCode.BAD_SIGNATURE), detail=detail)
        if key == bytes(32):
            ctx.expect("DHT-MSG-5", reply, refusal(ErrorCode.BAD_SIGNATURE), detail=detail)
    for key in SMALL_ORDER_KEYS[:3]:
        store = Store(record=forged_record(ctx, key))
        reply = peer.request(store)
        ctx.expect(
            "DHT-MSG-20",
            reply,
            refusal(ErrorCode.BAD_SIGNATURE),
            detail=f"a STORE of a record forged under the Owner Key {short(key)}",
        )


@case(
    "dht.messages",
    "6.3",
    "DHT-FRAME-1",
    "DHT-FRAME-3",
    "DHT-FRAME-7",
    "DHT-HDR-1",
    "DHT-HDR-3",
    "DHT-HDR-4",
    "DHT-HDR-6",
    "DHT-HDR-8",
    "DHT-HDR-10",
    "DHT-HDR-11",
    "DHT-HDR-15",
    "DHT-MSG-1",
    "DHT-MSG-2",
    "DHT-MSG-4",
    "DHT-MSG-9",
    "DHT-MSG-10",
    "DHT-ERR-3",
    "DHT-TOKEN-5",
    title="As a requester, the target frames requests right and drops responses that do not match",
)
def target_as_requester(ctx: Context) -> None:
    target = target_info(ctx)
    member, impostor = ctx.member(), ctx.client()
    counters = Counters(ctx)
    held: list[Received] = []
    answered: list[Received] = []
    holding = [True]
    given_token = ctx.rng.randbytes(16)

    def respond(peer: DhtPeer, message: DhtMessage, source: Address) -> Body | None:
        request = peer.requests[-1]
        if holding[0] and (not held or message.transaction_id == held[0].message.transaction_id):
            held.append(request)  # left unanswered, so that it stays outstanding
            return None
        body = default_responder(peer, message, source)
        if body is not None:
            # Answered with a token of the member's own, which the target should return.
            reply = DhtMessage(body, message.transaction_id, peer.public_key, given_token)
            peer.send_payload(encode_dht(reply), source)
            answered.append(request)
        return None

    member.responder = respond
    join(ctx, member, target)
    try:
        if not serve_until([member], lambda: bool(held), ring_wait(ctx)):
            raise HarnessError("the target sent no request to its new predecessor")
        first = held[0]
        txid = first.message.transaction_id
        what = f"the target's {first.message.type.name} to a member"
        judge_sent(ctx, first, what)
        ctx.require(
            "DHT-HDR-11",
            first.message.sender_key == target.key,
            f"{what} carries the target's host key",
            actual=first.message.sender_key.hex(),
        )
        ctx.require(
            "DHT-TOKEN-5",
            first.message.token == bytes(16),
            f"{what} carries a zero token, since the member never answered it before",
            actual=first.message.token.hex(),
        )
        all_dropped = _inject_responses(ctx, first, member, impostor, counters)
        holding[0] = False

        def copies() -> list[Received]:
            # Retransmissions of the first request: only its Transaction ID tells them from
            # new requests of the same type (a GET_NEIGHBORS has an empty body).
            return [r for r in member.requests[1:] if r.message.transaction_id == txid]

        retransmitted = serve_until([member], lambda: bool(copies()), 3.5)
        if all_dropped is None:  # no counters: only the retransmission shows the drops
            for requirement in _INJECTED:
                ctx.require(
                    requirement,
                    retransmitted,
                    "the request stayed outstanding after wrong responses (it was retransmitted)",
                )
        if retransmitted:
            again = copies()[0]
            ctx.require(
                "DHT-FRAME-7",
                again.payload == first.payload,
                "the retransmission of the unanswered request is the same message, with the"
                " same Transaction ID",
                expected=txid.hex(),
                actual=again.message.transaction_id.hex(),
            )
        _judge_next_token(ctx, member, answered, given_token)
        _judge_transaction_ids(ctx, member.requests)
        strays = [*member.strays, *impostor.receive(0.05)]
        answers = [r for r in strays if r.message.transaction_id == txid]
        ctx.require(
            "DHT-ERR-3",
            not answers,
            "none of the wrong responses is answered",
            actual=", ".join(summarise(r.message) for r in answers) or "no answer",
        )
        reply = neighbors(ctx, ctx.client())
        body = reply.message.body
        assert isinstance(body, Neighbors)
        ctx.require(
            "DHT-MSG-10",
            body.predecessor is not None
            and body.predecessor.key == member.public_key
            and member.public_key in [n.key for n in body.successors],
            "NEIGHBORS in a ring of two: the member as predecessor and in the successor list",
            actual=summarise(reply.message),
        )
    finally:
        leave([member], target)


_INJECTED = ("DHT-HDR-10", "DHT-MSG-1", "DHT-HDR-3", "DHT-MSG-2", "DHT-MSG-4", "DHT-HDR-15")


def _inject_responses(
    ctx: Context, request: Received, member: DhtPeer, impostor: DhtPeer, counters: Counters
) -> bool | None:
    """Send the target wrong responses to its outstanding ``request``; judge each drop.

    Each must be dropped and counted (Section 6.11, rule 2).  Returns None
    when the target has no counters to show the drops, else whether all
    were dropped.
    """
    message = request.message
    body = default_responder(member, message, request.source)
    assert body is not None and member.key is not None
    wrong: Body = (
        Pong(observed=member.wire.endpoint())
        if message.type != MessageType.PING
        else Neighbors(predecessor=None, successors=(member.info,))
    )
    txid = message.transaction_id
    stranger = public_key_bytes(ctx.key())
    answers: list[tuple[str, DhtPeer, bytes, str]] = [
        (
            "DHT-HDR-10",
            impostor,
            craft(impostor, body, transaction_id=txid, sender_key=member.public_key),
            "the right response from another endpoint",
        ),
        (
            "DHT-MSG-1",
            member,
            craft(member, wrong, transaction_id=txid),
            f"a {wrong.TYPE.name} answering a {message.type.name}",
        ),
        (
            "DHT-HDR-3",
            member,
            craft(member, body, transaction_id=txid, version=2),
            "the right response with Version 2",
        ),
        (
            "DHT-MSG-2",
            member,
            craft(member, body, transaction_id=txid, sender_key=stranger),
            "the right response with a Sender Key other than the member's",
        ),
        (
            "DHT-MSG-4",
            member,
            craft(member, body, transaction_id=txid, sign_with=member.key, bad_signature=True),
            "the right response, signed, with a broken signature",
        ),
        (
            "DHT-HDR-15",
            member,
            craft(member, body, transaction_id=txid, extra=b"\x00"),
            "the right response with a byte after its body",
        ),
    ]
    if isinstance(body, Neighbors):
        raw = bytearray(craft(member, body, transaction_id=txid))
        raw[HEADER] = 2
        answers.append(("DHT-MSG-9", member, bytes(raw), "NEIGHBORS with Has Predecessor 2"))
    before = counters.read()
    if before is None:
        for _, peer, payload, _ in answers:
            peer.send_payload(payload)
        return None
    all_dropped = True
    for requirement, peer, payload, what in answers:
        peer.send_payload(payload)
        after = counters.read() or {}
        dropped = increase(before, after, "drop.") >= 1
        all_dropped &= dropped
        ctx.require(
            requirement,
            dropped,
            f"the target drops (and counts) {what}",
            expected="a drop counted",
            actual="dropped" if dropped else "no drop counted: accepted",
        )
        before = after
    return all_dropped


def _judge_next_token(
    ctx: Context, member: DhtPeer, answered: list[Received], token: bytes
) -> None:
    """DHT-TOKEN-5: once the member has answered with a token, requests carry it."""
    if not answered:
        return
    first_answer = member.requests.index(answered[0])
    earlier = {r.message.transaction_id for r in member.requests[: first_answer + 1]}

    def new_requests() -> list[Received]:
        # A retransmission is the same datagram (DHT-FRAME-7), old token and all; and a
        # request sent while the answer was in flight still carries the old token.
        later = member.requests[first_answer + 1 :]
        return [r for r in later if r.message.transaction_id not in earlier]

    def carried() -> bool:
        return any(r.message.token == token for r in new_requests())

    # An answer that came too late for its request is dropped with its token, so the
    # judgement is whether the target's later requests come to carry the token at all.
    if not serve_until([member], carried, ring_wait(ctx)) and len(new_requests()) < 2:
        return
    following = new_requests()
    ctx.require(
        "DHT-TOKEN-5",
        carried(),
        "the target's requests to the member, once it has answered, carry its token",
        expected=token.hex(),
        actual=", ".join(r.message.token.hex() for r in following),
    )


def _judge_transaction_ids(ctx: Context, requests: Sequence[Received]) -> None:
    """DHT-HDR-8, as far as a few samples show: distinct IDs, no counter."""
    distinct = sorted({int.from_bytes(r.message.transaction_id, "big") for r in requests})
    if len(distinct) < 2:
        return
    gaps = [b - a for a, b in itertools.pairwise(distinct)]
    ctx.require(
        "DHT-HDR-8",
        min(gaps) > 1 << 16,
        f"the target's {len(distinct)} requests have unrelated Transaction IDs",
        actual=", ".join(f"{t:016x}" for t in distinct),
    )
