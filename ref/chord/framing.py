"""How a node's messages travel: SAL datagrams on a wire, or objects in a simulator.

A node core never touches bytes directly.  It asks its framing to encode a
message for a destination and to open what arrives, in two steps so that the
draft's processing order (Section 6.11) holds: :meth:`open` reads only the
SAL framing and the 60-byte header (enough to match a response or charge a
rate-limit bucket), and :meth:`decode` parses the body and checks the
signature.

:class:`WireFraming` is the real thing: every message is the payload of a SAL
unconnected datagram to the ServalDHT serviceID (Section 6.2), signed with the
node's Ed25519 host key.  :class:`ObjectFraming` passes message objects in the
simulator, where a run of 10,000 nodes cannot afford an encoding and a
signature per message; it applies the same rules of the header and marks a
message as signed by its sender instead of computing a signature.
"""

from __future__ import annotations

import dataclasses
import functools
import struct
from collections.abc import Callable
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ref.sal.receive import classify
from ref.wire.constants import (
    DHT_HEADER_LENGTH,
    DHT_VERSION,
    MAX_DHT_MESSAGE,
    SERVALDHT_SERVICE_ID,
    SIGNATURE_LENGTH,
)
from ref.wire.dht import (
    Body,
    DhtMessage,
    Error,
    FindSuccessor,
    FindSuccessorResponse,
    GetNeighbors,
    Leave,
    LeaveResponse,
    MessageFlags,
    Neighbors,
    Ping,
    Pong,
    Rectify,
    RectifyResponse,
    Replicate,
    ReplicateResponse,
    Resolve,
    ResolveResponse,
    Status,
    StatusResponse,
    Store,
    StoreResponse,
    decode_dht,
    encode_dht,
)
from ref.wire.errors import ErrorCode, RemoteProtocolError
from ref.wire.records import SMALL_ORDER_KEYS, ServiceRecord, public_key_bytes
from ref.wire.sal import Endpoint, SalPacket, TransportProtocol, decode_sal, encode_sal

_HEADER = struct.Struct("!BBBx8s32s16s")
_SAL_OVERHEAD = 12 + 36  # base header and the SERVICE extension (Section 6.2)
#: The SIGNED bit as a plain int: an IntFlag's operators run in Python and build a new flag.
_SIGNED = int(MessageFlags.SIGNED)


@dataclasses.dataclass(slots=True)
class Inbound:
    """A ServalDHT message whose framing and header have been read."""

    source: Endpoint  # the UDP source of the datagram
    observed: Endpoint  # the observed endpoint (Section 6.2)
    version: int
    type: int
    flags: int
    transaction_id: bytes
    sender_key: bytes
    token: bytes
    size: int  # ServalDHT message bytes (the SAL payload)
    payload: bytes | Frame


@dataclasses.dataclass(frozen=True, slots=True)
class Frame:
    """A message in flight in the simulator, with the key that signed it."""

    message: DhtMessage
    observed: Endpoint | None
    signer: bytes | None
    size: int


class Framing(Protocol):
    def encode(self, message: DhtMessage, *, sign: bool) -> tuple[bytes | Frame, int]: ...

    def open(self, data: bytes | Frame, source: Endpoint) -> Inbound | SalPacket: ...

    def decode(self, inbound: Inbound) -> DhtMessage: ...


@functools.lru_cache(maxsize=1 << 14)
def record_verifies(record: ServiceRecord) -> bool:
    """Signature check of a record; records are immutable, so the answer is cached."""
    return record.verify()


class WireFraming:
    """SAL datagrams carrying encoded, Ed25519-signed ServalDHT messages."""

    def __init__(self, host_key: Ed25519PrivateKey | None) -> None:
        self.host_key = host_key
        self.public_key = public_key_bytes(host_key) if host_key is not None else bytes(32)

    def encode(self, message: DhtMessage, *, sign: bool) -> tuple[bytes, int]:
        payload = encode_dht(message, self.host_key if sign else None)
        packet = SalPacket(
            source_flow_id=0,
            destination_flow_id=0,
            protocol=TransportProtocol.DATAGRAM,
            destination_service=SERVALDHT_SERVICE_ID,
            payload=payload,
        )
        return encode_sal(packet), len(payload)

    def open(self, data: bytes | Frame, source: Endpoint) -> Inbound | SalPacket:
        if not isinstance(data, bytes):
            raise RemoteProtocolError("not a datagram")
        packet = classify(decode_sal(data))
        if packet.destination_service != SERVALDHT_SERVICE_ID:
            return packet
        if packet.protocol != TransportProtocol.DATAGRAM or packet.control is not None:
            raise RemoteProtocolError("ServalDHT message not in an unconnected datagram")
        payload = packet.payload
        if len(payload) < DHT_HEADER_LENGTH:
            raise RemoteProtocolError("shorter than the ServalDHT header")
        version, kind, flags, transaction_id, sender_key, token = _HEADER.unpack_from(payload)
        route = packet.source_route
        return Inbound(
            source=source,
            observed=route.entries[0] if route is not None else source,
            version=version,
            type=kind,
            flags=flags,
            transaction_id=transaction_id,
            sender_key=sender_key,
            token=token,
            size=len(payload),
            payload=payload,
        )

    def decode(self, inbound: Inbound) -> DhtMessage:
        assert isinstance(inbound.payload, bytes)
        return decode_dht(inbound.payload)


class ObjectFraming:
    """Message objects for the simulator; "signed" means marked by the sender."""

    def __init__(self, public_key: bytes) -> None:
        self.public_key = public_key

    def encode(self, message: DhtMessage, *, sign: bool) -> tuple[Frame, int]:
        if sign:
            flags = message.flags | MessageFlags.SIGNED if message.flags else MessageFlags.SIGNED
            message = DhtMessage(
                message.body,
                message.transaction_id,
                message.sender_key,
                message.token,
                flags,
                message.signature,
            )
        size = message_size(message)
        return Frame(message, None, self.public_key if sign else None, size), size

    def open(self, data: bytes | Frame, source: Endpoint) -> Inbound | SalPacket:
        if not isinstance(data, Frame):
            # SAL packets other than ServalDHT messages travel as bytes here too.
            packet = classify(decode_sal(data))
            if packet.destination_service == SERVALDHT_SERVICE_ID:
                raise RemoteProtocolError("ServalDHT messages travel as frames here")
            return packet
        message = data.message
        return Inbound(
            source=source,
            observed=data.observed or source,
            version=DHT_VERSION,
            type=int(message.body.TYPE),
            flags=int(message.flags),
            transaction_id=message.transaction_id,
            sender_key=message.sender_key,
            token=message.token,
            size=data.size,
            payload=data,
        )

    def decode(self, inbound: Inbound) -> DhtMessage:
        frame = inbound.payload
        assert isinstance(frame, Frame)
        if frame.size > MAX_DHT_MESSAGE:
            raise RemoteProtocolError("message too long", ErrorCode.LIMIT_EXCEEDED)
        message = frame.message
        signed = int(message.flags) & _SIGNED
        # DHT-MSG-5, DHT-MSG-20: no signature under a small-order key counts, as on the wire.
        if signed and (frame.signer != message.sender_key or frame.signer in SMALL_ORDER_KEYS):
            raise RemoteProtocolError("not signed by its sender", ErrorCode.BAD_SIGNATURE)
        return message


_NODE_INFO = 52
_RECORD = 152
_RECORD_ENDPOINT = 24


def _record_size(record: ServiceRecord | None) -> int:
    return 0 if record is None else _RECORD + _RECORD_ENDPOINT * len(record.endpoints)


def message_size(message: DhtMessage) -> int:
    """The encoded length of a message, computed without encoding it."""
    size = unsigned_size(message.body)
    if message.signature is not None or int(message.flags) & _SIGNED:
        size += SIGNATURE_LENGTH
    return size


def unsigned_size(body: Body) -> int:
    """The encoded length of an unsigned message with this body."""
    return DHT_HEADER_LENGTH + _BODY_SIZE[type(body)](body)


def _nodes(count: int) -> int:
    return 4 + _NODE_INFO * count


#: Body class -> its encoded length (the layouts of Section 6.4).
_BODY_SIZE: dict[type[Body], Callable[[Any], int]] = {
    Ping: lambda body: 0,
    Pong: lambda body: 20,
    FindSuccessor: lambda body: 32,
    FindSuccessorResponse: lambda body: _nodes(len(body.nodes)),
    GetNeighbors: lambda body: 0,
    Neighbors: lambda body: _nodes(len(body.successors) + (body.predecessor is not None)),
    Rectify: lambda body: 0,
    RectifyResponse: lambda body: 0,
    Store: lambda body: 4 + 16 * len(body.address_tokens) + _record_size(body.record),
    StoreResponse: lambda body: 8,
    Resolve: lambda body: 32,
    ResolveResponse: lambda body: _nodes(len(body.nodes)) + _record_size(body.record),
    Replicate: lambda body: _record_size(body.record),
    ReplicateResponse: lambda body: 0,
    Leave: lambda body: _nodes(len(body.successors) + (body.predecessor is not None)),
    LeaveResponse: lambda body: 0,
    Status: lambda body: 0,
    StatusResponse: lambda body: 4 + len(body.report),
    Error: lambda body: 4 + len(body.reason),
}


def datagram_size(message_bytes: int) -> int:
    """Bytes of the SAL datagram that carries a message of ``message_bytes``."""
    return message_bytes + _SAL_OVERHEAD
