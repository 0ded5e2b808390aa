"""ServalDHT messages (draft Sections 6.3 and 6.4).

A message is a 60-byte header, a body whose layout the message type selects,
and, when the SIGNED flag is set, a 64-byte Ed25519 signature by the sender's
host key over everything before it.  One ``decode_dht``/``encode_dht``
boundary; the body types are dispatched by table.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from enum import IntEnum, IntFlag
from typing import Any, ClassVar

import construct as cs
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ref.wire._codec import (
    EnumAdapter,
    FlagsAdapter,
    decoding,
    encoding,
    local,
    remote,
)
from ref.wire.constants import (
    DHT_HEADER_LENGTH,
    DHT_VERSION,
    KEY_LENGTH,
    MAX_ADDRESS_TOKENS,
    MAX_DHT_MESSAGE,
    MAX_ERROR_REASON,
    MAX_NODES_PER_MESSAGE,
    MAX_STATUS_LENGTH,
    MESSAGE_SIGNING_CONTEXT,
    SERVICE_ID_LENGTH,
    SIGNATURE_LENGTH,
    TOKEN_LENGTH,
    TRANSACTION_ID_LENGTH,
)
from ref.wire.errors import (
    ErrorCode,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
)
from ref.wire.fast import DERIVED, INTERPRETED, Engine
from ref.wire.records import (
    Problem,
    ServiceRecord,
    ServiceRecordFormat,
    check_record,
    public_key_bytes,
    signature_valid,
)
from ref.wire.sal import Endpoint, EndpointFormat

RESPONSE_BIT = 0x80


class MessageType(IntEnum):
    """ServalDHT message types (draft Section 6.4); responses set 0x80."""

    PING = 0x01
    FIND_SUCCESSOR = 0x02
    GET_NEIGHBORS = 0x03
    RECTIFY = 0x04
    STORE = 0x05
    RESOLVE = 0x06
    REPLICATE = 0x07
    LEAVE = 0x08
    STATUS = 0x09
    PONG = 0x81
    FIND_SUCCESSOR_RESPONSE = 0x82
    NEIGHBORS = 0x83
    RECTIFY_RESPONSE = 0x84
    STORE_RESPONSE = 0x85
    RESOLVE_RESPONSE = 0x86
    REPLICATE_RESPONSE = 0x87
    LEAVE_RESPONSE = 0x88
    STATUS_RESPONSE = 0x89
    ERROR = 0xFF

    @property
    def is_response(self) -> bool:
        return bool(self.value & RESPONSE_BIT)


class MessageFlags(IntFlag):
    """Flags of the ServalDHT header (draft Section 6.3)."""

    SIGNED = 0x80
    TRUNCATED = 0x40


class LookupStatus(IntEnum):
    """FIND_SUCCESSOR_RESPONSE status: the answer, or nodes to ask next."""

    DONE = 0
    REFER = 1


class Presence(IntEnum):
    """A 0-or-1 count of an optional field (DHT-MSG-9, DHT-MSG-14)."""

    ABSENT = 0
    PRESENT = 1


def _presence(present: Any) -> Presence:
    return Presence.PRESENT if present is not None else Presence.ABSENT


class ResolveStatus(IntEnum):
    """RESOLVE_RESPONSE status (draft Section 6.4)."""

    FOUND = 0
    NOT_FOUND = 1
    REFER = 2


# --- declarations ------------------------------------------------------------

HeaderFormat = cs.Struct(
    "version" / cs.Int8ub,
    "type" / cs.Int8ub,
    "flags" / FlagsAdapter(cs.Int8ub, MessageFlags),
    "reserved" / cs.Default(cs.Int8ub, 0),
    "transaction_id" / cs.Bytes(TRANSACTION_ID_LENGTH),
    "sender_key" / cs.Bytes(KEY_LENGTH),
    "token" / cs.Bytes(TOKEN_LENGTH),
)

NodeInfoFormat = cs.Struct(
    "key" / cs.Bytes(KEY_LENGTH),
    "endpoint" / EndpointFormat,
)

PongFormat = cs.Struct("observed" / EndpointFormat)

FindSuccessorFormat = cs.Struct("target_id" / cs.Bytes(SERVICE_ID_LENGTH))

FindSuccessorResponseFormat = cs.Struct(
    "status" / EnumAdapter(cs.Int8ub, LookupStatus),
    "node_count" / cs.Rebuild(cs.Int8ub, lambda this: len(this.nodes)),
    "reserved" / cs.Default(cs.Int16ub, 0),
    "nodes" / cs.Array(cs.this.node_count, NodeInfoFormat),
)

NeighborsFormat = cs.Struct(
    "has_predecessor"
    / cs.Rebuild(EnumAdapter(cs.Int8ub, Presence), lambda this: _presence(this.predecessor)),
    "successor_count" / cs.Rebuild(cs.Int8ub, lambda this: len(this.successors)),
    "reserved" / cs.Default(cs.Int16ub, 0),
    "predecessor" / cs.If(cs.this.has_predecessor == 1, NodeInfoFormat),
    "successors" / cs.Array(cs.this.successor_count, NodeInfoFormat),
)

StoreFormat = cs.Struct(
    "token_count" / cs.Rebuild(cs.Int8ub, lambda this: len(this.address_tokens)),
    "reserved" / cs.Default(cs.Int24ub, 0),
    "address_tokens" / cs.Array(cs.this.token_count, cs.Bytes(TOKEN_LENGTH)),
    "record" / ServiceRecordFormat,
)

StoreResponseFormat = cs.Struct("sequence" / cs.Int64ub)

ResolveFormat = cs.Struct("service_id" / cs.Bytes(SERVICE_ID_LENGTH))

ResolveResponseFormat = cs.Struct(
    "status" / EnumAdapter(cs.Int8ub, ResolveStatus),
    "record_count"
    / cs.Rebuild(EnumAdapter(cs.Int8ub, Presence), lambda this: _presence(this.record)),
    "node_count" / cs.Rebuild(cs.Int8ub, lambda this: len(this.nodes)),
    "reserved" / cs.Default(cs.Int8ub, 0),
    "record" / cs.If(cs.this.record_count == 1, ServiceRecordFormat),
    "nodes" / cs.Array(cs.this.node_count, NodeInfoFormat),
)

ReplicateFormat = cs.Struct("record" / ServiceRecordFormat)

StatusResponseFormat = cs.Struct(
    "length" / cs.Rebuild(cs.Int16ub, lambda this: len(this.report)),
    "reserved" / cs.Default(cs.Int16ub, 0),
    "report" / cs.Bytes(cs.this.length),
)

ErrorFormat = cs.Struct(
    "error_code" / cs.Int16ub,
    "reason_length" / cs.Rebuild(cs.Int16ub, lambda this: len(this.reason)),
    "reason" / cs.Bytes(cs.this.reason_length),
)


# --- objects -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class NodeInfo:
    """A ring member: its Ed25519 host key and where it listens."""

    key: bytes
    endpoint: Endpoint

    @property
    def node_id(self) -> bytes:
        return hashlib.sha256(self.key).digest()


class Body:
    """Base of the message bodies; ``TYPE`` selects the layout."""

    TYPE: ClassVar[MessageType]


@dataclasses.dataclass(frozen=True)
class Ping(Body):
    TYPE = MessageType.PING


@dataclasses.dataclass(frozen=True)
class Pong(Body):
    TYPE = MessageType.PONG
    observed: Endpoint


@dataclasses.dataclass(frozen=True)
class FindSuccessor(Body):
    TYPE = MessageType.FIND_SUCCESSOR
    target_id: bytes


@dataclasses.dataclass(frozen=True)
class FindSuccessorResponse(Body):
    TYPE = MessageType.FIND_SUCCESSOR_RESPONSE
    status: LookupStatus
    nodes: tuple[NodeInfo, ...]


@dataclasses.dataclass(frozen=True)
class GetNeighbors(Body):
    TYPE = MessageType.GET_NEIGHBORS


@dataclasses.dataclass(frozen=True)
class Neighbors(Body):
    TYPE = MessageType.NEIGHBORS
    predecessor: NodeInfo | None
    successors: tuple[NodeInfo, ...]


@dataclasses.dataclass(frozen=True)
class Rectify(Body):
    TYPE = MessageType.RECTIFY


@dataclasses.dataclass(frozen=True)
class RectifyResponse(Body):
    TYPE = MessageType.RECTIFY_RESPONSE


@dataclasses.dataclass(frozen=True)
class Store(Body):
    TYPE = MessageType.STORE
    record: ServiceRecord
    address_tokens: tuple[bytes, ...] = ()


@dataclasses.dataclass(frozen=True)
class StoreResponse(Body):
    TYPE = MessageType.STORE_RESPONSE
    sequence: int


@dataclasses.dataclass(frozen=True)
class Resolve(Body):
    TYPE = MessageType.RESOLVE
    service_id: bytes


@dataclasses.dataclass(frozen=True)
class ResolveResponse(Body):
    TYPE = MessageType.RESOLVE_RESPONSE
    status: ResolveStatus
    record: ServiceRecord | None = None
    nodes: tuple[NodeInfo, ...] = ()


@dataclasses.dataclass(frozen=True)
class Replicate(Body):
    TYPE = MessageType.REPLICATE
    record: ServiceRecord


@dataclasses.dataclass(frozen=True)
class ReplicateResponse(Body):
    TYPE = MessageType.REPLICATE_RESPONSE


@dataclasses.dataclass(frozen=True)
class Leave(Body):
    TYPE = MessageType.LEAVE
    predecessor: NodeInfo | None
    successors: tuple[NodeInfo, ...]


@dataclasses.dataclass(frozen=True)
class LeaveResponse(Body):
    TYPE = MessageType.LEAVE_RESPONSE


@dataclasses.dataclass(frozen=True)
class Status(Body):
    TYPE = MessageType.STATUS


@dataclasses.dataclass(frozen=True)
class StatusResponse(Body):
    TYPE = MessageType.STATUS_RESPONSE
    report: bytes


@dataclasses.dataclass(frozen=True)
class Error(Body):
    TYPE = MessageType.ERROR
    error_code: int
    reason: bytes = b""


EmptyFormat = cs.Struct()

#: Message type -> (body layout, body class).  The one dispatch table.
BODIES: dict[MessageType, tuple[cs.Struct, type[Body]]] = {
    MessageType.PING: (EmptyFormat, Ping),
    MessageType.PONG: (PongFormat, Pong),
    MessageType.FIND_SUCCESSOR: (FindSuccessorFormat, FindSuccessor),
    MessageType.FIND_SUCCESSOR_RESPONSE: (FindSuccessorResponseFormat, FindSuccessorResponse),
    MessageType.GET_NEIGHBORS: (EmptyFormat, GetNeighbors),
    MessageType.NEIGHBORS: (NeighborsFormat, Neighbors),
    MessageType.RECTIFY: (EmptyFormat, Rectify),
    MessageType.RECTIFY_RESPONSE: (EmptyFormat, RectifyResponse),
    MessageType.STORE: (StoreFormat, Store),
    MessageType.STORE_RESPONSE: (StoreResponseFormat, StoreResponse),
    MessageType.RESOLVE: (ResolveFormat, Resolve),
    MessageType.RESOLVE_RESPONSE: (ResolveResponseFormat, ResolveResponse),
    MessageType.REPLICATE: (ReplicateFormat, Replicate),
    MessageType.REPLICATE_RESPONSE: (EmptyFormat, ReplicateResponse),
    MessageType.LEAVE: (NeighborsFormat, Leave),
    MessageType.LEAVE_RESPONSE: (EmptyFormat, LeaveResponse),
    MessageType.STATUS: (EmptyFormat, Status),
    MessageType.STATUS_RESPONSE: (StatusResponseFormat, StatusResponse),
    MessageType.ERROR: (ErrorFormat, Error),
}

_SIGNED = MessageFlags.SIGNED.value
_TYPE_VALUES = frozenset(message_type.value for message_type in MessageType)

#: Types whose request MUST be signed by the sender's host key (draft 6.4).
SIGNED_TYPES = frozenset({MessageType.RECTIFY, MessageType.REPLICATE, MessageType.LEAVE})


@dataclasses.dataclass(frozen=True)
class DhtMessage:
    """One ServalDHT message: header fields, a body, maybe a signature."""

    body: Body
    transaction_id: bytes
    sender_key: bytes = bytes(KEY_LENGTH)
    token: bytes = bytes(TOKEN_LENGTH)
    flags: MessageFlags = MessageFlags(0)  # noqa: RUF009 (an immutable IntFlag)
    signature: bytes | None = None

    @property
    def type(self) -> MessageType:
        return self.body.TYPE


# --- semantic checks shared by both directions -------------------------------


def _resolve_response_problem(body: Any) -> Problem:
    consistent = {
        ResolveStatus.FOUND: body.record is not None and not body.nodes,
        ResolveStatus.NOT_FOUND: body.record is None and not body.nodes,
        ResolveStatus.REFER: body.record is None and bool(body.nodes),
    }[body.status]
    if not consistent:
        return f"RESOLVE_RESPONSE {body.status.name} with wrong contents", ErrorCode.MALFORMED
    return _nodes_problem(body.nodes)


def _nodes_problem(nodes: tuple[NodeInfo, ...]) -> Problem:
    if len(nodes) > MAX_NODES_PER_MESSAGE:
        return "too many nodes", ErrorCode.LIMIT_EXCEEDED
    return None


def _lookup_response_problem(body: Any) -> Problem:
    return _nodes_problem(body.nodes) or (
        None if body.nodes else ("FIND_SUCCESSOR_RESPONSE names no node", ErrorCode.MALFORMED)
    )


def _store_problem(body: Any) -> Problem:
    if len(body.address_tokens) > MAX_ADDRESS_TOKENS:
        return "too many address tokens", ErrorCode.LIMIT_EXCEEDED
    if not all(len(token) == TOKEN_LENGTH for token in body.address_tokens):
        return "token is 16 bytes", ErrorCode.MALFORMED
    return None


def _error_problem(body: Any) -> Problem:
    if len(body.reason) > MAX_ERROR_REASON:
        return "error reason too long", ErrorCode.MALFORMED
    if not _is_utf8(body.reason):
        return "error reason is not UTF-8", ErrorCode.MALFORMED
    return None


def _identifier_problem(value: bytes) -> Problem:
    if len(value) != SERVICE_ID_LENGTH:
        return "identifier is 32 bytes", ErrorCode.MALFORMED
    return None


#: Body class -> the draft's rules on its contents beyond the layout.
_BODY_RULES: dict[type[Body], Callable[[Any], Problem]] = {
    FindSuccessor: lambda body: _identifier_problem(body.target_id),
    Resolve: lambda body: _identifier_problem(body.service_id),
    FindSuccessorResponse: _lookup_response_problem,
    ResolveResponse: _resolve_response_problem,
    Neighbors: lambda body: _nodes_problem(body.successors),
    Leave: lambda body: _nodes_problem(body.successors),
    Store: _store_problem,
    StatusResponse: lambda body: (
        ("status report too long", ErrorCode.MALFORMED)
        if len(body.report) > MAX_STATUS_LENGTH
        else None
    ),
    Error: _error_problem,
}


def _check_body(body: Body, error: type[ProtocolError]) -> None:
    record = getattr(body, "record", None)
    if record is not None:
        check_record(record, error)
    rule = _BODY_RULES.get(type(body))
    problem = rule(body) if rule is not None else None
    if problem is not None:
        raise error(*problem)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# --- codec -------------------------------------------------------------------


def decode_dht(data: bytes, *, verify: bool = True) -> DhtMessage:
    """Decode one ServalDHT message; raise only ``RemoteProtocolError``.

    With ``verify`` (the default) a SIGNED message's signature is checked
    against its sender key.
    """
    return _decode_dht(data, verify, DERIVED)


def decode_dht_interpreted(data: bytes, *, verify: bool = True) -> DhtMessage:
    """:func:`decode_dht` through Construct's interpreter (the fast path's reference)."""
    return _decode_dht(data, verify, INTERPRETED)


def _decode_dht(data: bytes, verify: bool, engine: Engine) -> DhtMessage:
    with decoding("ServalDHT message"):
        remote(len(data) <= MAX_DHT_MESSAGE, "message too long", ErrorCode.LIMIT_EXCEEDED)
        remote(len(data) >= DHT_HEADER_LENGTH, "shorter than the header")
        header = engine.parse(HeaderFormat, data)
        remote(
            header.version == DHT_VERSION,
            f"version {header.version}",
            ErrorCode.UNSUPPORTED_VERSION,
        )
        remote(
            header.type in _TYPE_VALUES,
            f"message type {header.type}",
            ErrorCode.UNKNOWN_MESSAGE_TYPE,
        )
        message_type = MessageType(header.type)
        signed = bool(header.flags & MessageFlags.SIGNED)
        end = len(data) - SIGNATURE_LENGTH if signed else len(data)
        remote(end >= DHT_HEADER_LENGTH, "signature flag set but no room for a signature")
        layout, body_type = BODIES[message_type]
        body = engine.load(layout, body_type, data[DHT_HEADER_LENGTH:end])
        _check_body(body, RemoteProtocolError)
        signature = data[end:] if signed else None
        if signed and verify:
            remote(
                signature_valid(
                    header.sender_key, data[end:], MESSAGE_SIGNING_CONTEXT + data[:end]
                ),
                "message signature does not verify",
                ErrorCode.BAD_SIGNATURE,
            )
        return DhtMessage(
            body=body,
            transaction_id=header.transaction_id,
            sender_key=header.sender_key,
            token=header.token,
            flags=header.flags,
            signature=signature,
        )


def encode_dht(message: DhtMessage, signing_key: Ed25519PrivateKey | None = None) -> bytes:
    """Encode a message; with ``signing_key``, set SIGNED and append the signature.

    Without a key, a message that carries a ``signature`` is encoded with it:
    a received signed message re-encodes to the bytes it was signed over when
    its reserved fields were zero, as senders set them (DHT-HDR-6).
    """
    return _encode_dht(message, signing_key, DERIVED)


def encode_dht_interpreted(
    message: DhtMessage, signing_key: Ed25519PrivateKey | None = None
) -> bytes:
    """:func:`encode_dht` through Construct's interpreter (the fast path's reference)."""
    return _encode_dht(message, signing_key, INTERPRETED)


def _encode_dht(
    message: DhtMessage, signing_key: Ed25519PrivateKey | None, engine: Engine
) -> bytes:
    with encoding("ServalDHT message"):
        body = message.body
        _check_body(body, LocalProtocolError)
        flags = int(message.flags)
        local(0 <= flags <= 0xFF, "header flags are 8 bits")
        signature = message.signature
        signed = signing_key is not None or signature is not None
        flags = flags | _SIGNED if signed else flags & ~_SIGNED
        layout, _ = BODIES[body.TYPE]
        head = engine.build(
            HeaderFormat,
            {
                "version": DHT_VERSION,
                "type": body.TYPE.value,
                "flags": flags,
                "transaction_id": message.transaction_id,
                "sender_key": message.sender_key,
                "token": message.token,
            },
        )
        unsigned = head + engine.dump(layout, body)
        if signing_key is not None:
            local(
                public_key_bytes(signing_key) == message.sender_key,
                "the signing key must be the sender key",
            )
            signature = signing_key.sign(MESSAGE_SIGNING_CONTEXT + unsigned)
        data = unsigned + (signature or b"")
        local(
            signature is None or len(signature) == SIGNATURE_LENGTH,
            "signature is 64 bytes",
        )
        local(len(data) <= MAX_DHT_MESSAGE, "message too long", ErrorCode.LIMIT_EXCEEDED)
        return data
