"""Section 6.3: the ServalDHT message header."""

from __future__ import annotations

from conformance.cases import case
from conformance.context import Context
from conformance.expect import ErrorReply, Reply
from ref.wire import ErrorCode, MessageType, Ping

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
