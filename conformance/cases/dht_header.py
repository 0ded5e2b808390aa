"""Section 6.3: the ServalDHT message header."""

from __future__ import annotations

from conformance.cases import case
from conformance.cases.dht_messages import ask, craft, judge_sent
from conformance.context import Context
from conformance.expect import ErrorReply, Reply
from ref.wire import ErrorCode, FindSuccessor, GetNeighbors, MessageType, Ping, Rectify

ORDER = 10


@case(
    "dht.header",
    "6.3",
    "DHT-HDR-2",
    "DHT-HDR-9",
    title="A request of Version 2 is answered with ERROR UNSUPPORTED_VERSION echoing its ID",
)
def version_2_request(ctx: Context) -> None:
    peer = ctx.client()
    message = peer.message(Ping())
    data = bytearray(peer.encode(message))
    data[0] = 2
    peer.send_raw(bytes(data))
    reply = peer.await_response(message.transaction_id)
    ctx.expect(
        "DHT-HDR-2",
        reply,
        ErrorReply(ErrorCode.UNSUPPORTED_VERSION),
        detail="a PING with Version 2",
    )
    if reply is not None:
        ctx.require(
            "DHT-HDR-9",
            reply.message.transaction_id == message.transaction_id,
            "the ERROR echoes the request's Transaction ID",
        )


@case(
    "dht.header",
    "6.3",
    "DHT-HDR-5",
    "DHT-HDR-7",
    title="Reserved flag bits and the Reserved octet of a request are ignored",
)
def reserved_bits_ignored(ctx: Context) -> None:
    peer = ctx.client()
    for offset, value, requirement in ((2, 0x3F, "DHT-HDR-5"), (3, 0xA5, "DHT-HDR-7")):
        message = peer.message(Ping())
        data = bytearray(peer.encode(message))
        data[offset] = value
        peer.send_raw(bytes(data))
        reply = peer.await_response(message.transaction_id)
        ctx.expect(
            requirement,
            reply,
            Reply(MessageType.PONG),
            detail=f"a PING with byte {offset} of the header set to 0x{value:02X}",
        )


@case(
    "dht.header",
    "6.3",
    "DHT-HDR-1",
    "DHT-HDR-4",
    "DHT-HDR-6",
    "DHT-HDR-9",
    "DHT-HDR-14",
    "DHT-FRAME-1",
    "DHT-FRAME-3",
    title="Responses, ERROR included, have a clean version 1 header, the request's ID and a token",
)
def response_headers(ctx: Context) -> None:
    peer = ctx.client()
    requests = {
        "a PING": craft(peer, Ping()),
        "a PING with all reserved header bits set": craft(peer, Ping(), flags=0x3F),
        "a request of unassigned Type 0x7E": craft(peer, Ping(), kind=0x7E),
    }
    for what, payload in requests.items():
        reply = ctx.answer(ask(ctx, peer, payload), what)
        judge_sent(ctx, reply, f"the answer to {what}")
        ctx.require(
            "DHT-HDR-9",
            reply.message.transaction_id == payload[4:12],
            f"the answer to {what} echoes its Transaction ID",
        )
        ctx.require(
            "DHT-HDR-14",
            reply.message.token != bytes(16),
            f"the answer to {what} carries a token",
            actual=reply.message.token.hex(),
        )


@case(
    "dht.header",
    "6.3",
    "DHT-HDR-15",
    title="A body shorter than its layout, or bytes after it, make a request MALFORMED",
)
def body_length(ctx: Context) -> None:
    member = ctx.member()
    assert member.key is not None
    member.request(Ping())
    target = bytes(32)
    requests = {
        "a PING with one byte of body": craft(member, Ping(), extra=b"\x00"),
        "a GET_NEIGHBORS with four bytes of body": craft(member, GetNeighbors(), extra=bytes(4)),
        "a FIND_SUCCESSOR with a 31-byte Target ID": craft(
            member, FindSuccessor(target), body_bytes=target[:31]
        ),
        "a FIND_SUCCESSOR with 33 bytes of body": craft(
            member, FindSuccessor(target), extra=b"\x01"
        ),
        "a signed RECTIFY with a byte between body and signature": craft(
            member, Rectify(), extra=b"\x00", sign_with=member.key
        ),
        "a PING with SIGNED set and 63 bytes after the header": craft(
            member, Ping(), flags=0x80, extra=bytes(63)
        ),
    }
    for what, payload in requests.items():
        ctx.expect(
            "DHT-HDR-15",
            ask(ctx, member, payload),
            ErrorReply(ErrorCode.MALFORMED),
            detail=what,
        )
