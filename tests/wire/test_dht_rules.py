"""ServalDHT message rules (draft Sections 6.3 and 6.4).

Dispatch by table, the response bit, RESOLVE_RESPONSE consistency, message
signatures (checked here with ``cryptography`` directly) and the limits, each
enforced on both sides: the encoder raises LocalProtocolError and the decoder,
given the same violation built by hand, RemoteProtocolError, with one code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given
from hypothesis import strategies as st

from ref.wire import (
    BODIES,
    SIGNED_TYPES,
    Body,
    DhtMessage,
    Endpoint,
    Error,
    ErrorCode,
    FindSuccessorResponse,
    GetNeighbors,
    Leave,
    LeaveResponse,
    LocalProtocolError,
    LookupStatus,
    MessageFlags,
    MessageType,
    Neighbors,
    NodeInfo,
    Ping,
    RecordEndpoint,
    RecordFlags,
    RemoteProtocolError,
    ResolveResponse,
    ResolveStatus,
    ServiceRecord,
    Status,
    StatusResponse,
    Store,
    decode_dht,
    encode_dht,
    encode_record,
    node_id,
    sign_record,
)
from ref.wire.constants import (
    DHT_HEADER_LENGTH,
    MAX_ADDRESS_TOKENS,
    MAX_DHT_MESSAGE,
    MAX_ENDPOINTS,
    MAX_ERROR_REASON,
    MAX_NODES_PER_MESSAGE,
    MAX_STATUS_LENGTH,
    RECOMMENDED_MAX_PACKET,
    SIGNATURE_LENGTH,
)

from .strategies import (
    PRIVATE_KEYS,
    PUBLIC_KEYS,
    dht_messages,
    node_infos,
    patch,
    signed_message,
)

KEY, OTHER_KEY = PRIVATE_KEYS[0], PRIVATE_KEYS[1]
NODE = NodeInfo(PUBLIC_KEYS[2], Endpoint(ipaddress.IPv6Address("2001:db8::7"), 54325))
TOKEN = bytes(range(16))
ENDPOINT = RecordEndpoint(ipaddress.IPv4Address("192.0.2.10"), 54325, 10, 3)
RECORD = sign_record(
    ServiceRecord(bytes(32), bytes(32), 7, 1_790_000_000, 3600, RecordFlags(0), (ENDPOINT,)),
    PRIVATE_KEYS[2],
)
BIG_RECORD = sign_record(
    dataclasses.replace(RECORD, endpoints=(ENDPOINT,) * MAX_ENDPOINTS), PRIVATE_KEYS[2]
)


def message(body: Body, **header: Any) -> DhtMessage:
    return DhtMessage(body, bytes(8), PUBLIC_KEYS[0], **header)


def raw(message_type: MessageType, body: bytes) -> bytes:
    """A message of ``message_type`` around ``body`` bytes, built without any check."""
    return patch(encode_dht(message(Ping())), 1, bytes([message_type])) + body


NODE_BYTES = encode_dht(message(FindSuccessorResponse(LookupStatus.DONE, (NODE,))))[64:]


def local_code(msg: DhtMessage) -> ErrorCode:
    with pytest.raises(LocalProtocolError) as info:
        encode_dht(msg)
    return info.value.error_code


def remote_code(data: bytes, *, verify: bool = True) -> ErrorCode:
    with pytest.raises(RemoteProtocolError) as info:
        decode_dht(data, verify=verify)
    return info.value.error_code


# --- dispatch, types, header ------------------------------------------------------------


def test_dispatch_table_covers_every_message_type() -> None:
    assert set(BODIES) == set(MessageType)
    for message_type, (_, body_class) in BODIES.items():
        assert body_class.TYPE is message_type
    assert len({body_class for _, body_class in BODIES.values()}) == len(MessageType)


def test_response_bit() -> None:
    requests = {t for t in MessageType if not t.is_response}
    responses = {t for t in MessageType if t.is_response}
    assert all(t.value & 0x80 == 0 for t in requests)
    assert all(t.value & 0x80 for t in responses)
    # each request's response is the same number with the bit set; ERROR answers any
    assert {MessageType(t.value | 0x80) for t in requests} == responses - {MessageType.ERROR}
    assert MessageType.ERROR.value == 0xFF
    assert requests >= SIGNED_TYPES


@pytest.mark.parametrize(
    "body", [Ping(), GetNeighbors(), Status(), LeaveResponse()], ids=lambda b: type(b).__name__
)
def test_empty_bodies_are_the_header_alone(body: Body) -> None:
    encoded = encode_dht(message(body))
    assert len(encoded) == DHT_HEADER_LENGTH
    assert encoded[1] == body.TYPE


@given(msg=dht_messages(signed=False))
def test_header_layout(msg: DhtMessage) -> None:
    encoded = encode_dht(msg)
    assert encoded[:4] == bytes([1, msg.type, int(msg.flags), 0])
    assert encoded[4:12] == msg.transaction_id
    assert encoded[12:44] == msg.sender_key
    assert encoded[44:60] == msg.token


@pytest.mark.parametrize("flags", [MessageFlags.TRUNCATED, MessageFlags(0x01), MessageFlags(0x7F)])
def test_header_flags_other_than_signed_are_kept(flags: MessageFlags) -> None:
    msg = message(Ping(), flags=flags)
    assert decode_dht(encode_dht(msg)).flags == flags


@given(info=node_infos())
def test_node_id_of_node_info(info: NodeInfo) -> None:
    assert info.node_id == hashlib.sha256(info.key).digest() == node_id(info.key)


# --- RESOLVE_RESPONSE consistency -------------------------------------------------------

CONTENTS = {  # name: (record, nodes)
    "nothing": (None, ()),
    "record": (RECORD, ()),
    "nodes": (None, (NODE,)),
    "record and nodes": (RECORD, (NODE,)),
}
CONSISTENT = {
    (ResolveStatus.FOUND, "record"),
    (ResolveStatus.NOT_FOUND, "nothing"),
    (ResolveStatus.REFER, "nodes"),
}


def resolve_response_bytes(status: int, record: ServiceRecord | None, nodes: int) -> bytes:
    counts = bytes([status, record is not None, nodes, 0])
    return raw(
        MessageType.RESOLVE_RESPONSE,
        counts + (encode_record(record) if record else b"") + NODE_BYTES * nodes,
    )


@pytest.mark.parametrize("contents", list(CONTENTS))
@pytest.mark.parametrize("status", list(ResolveStatus), ids=lambda s: s.name)
def test_resolve_response_status_matches_contents(status: ResolveStatus, contents: str) -> None:
    record, nodes = CONTENTS[contents]
    msg = message(ResolveResponse(status, record, nodes))
    wire = resolve_response_bytes(status, record, len(nodes))
    if (status, contents) in CONSISTENT:
        assert encode_dht(msg) == wire
        assert decode_dht(wire) == msg
    else:
        assert local_code(msg) is ErrorCode.MALFORMED
        assert remote_code(wire) is ErrorCode.MALFORMED


@pytest.mark.parametrize("status", [3, 0x80, 0xFF])
def test_unknown_statuses(status: int) -> None:
    assert remote_code(resolve_response_bytes(status, None, 0)) is ErrorCode.MALFORMED
    find = raw(MessageType.FIND_SUCCESSOR_RESPONSE, bytes([status, 1, 0, 0]) + NODE_BYTES)
    assert remote_code(find) is ErrorCode.MALFORMED


# --- limits, both ways ------------------------------------------------------------------


def status_response(length: int) -> bytes:
    return raw(MessageType.STATUS_RESPONSE, length.to_bytes(2, "big") + bytes(2 + length))


def error_reason(reason: bytes) -> bytes:
    return raw(MessageType.ERROR, b"\x00\x01" + len(reason).to_bytes(2, "big") + reason)


def node_list(message_type: MessageType, count: int) -> bytes:
    return raw(message_type, bytes([1, count, 0, 0]) + NODE_BYTES * count)


def stored(tokens: int) -> bytes:
    return raw(MessageType.STORE, bytes([tokens, 0, 0, 0]) + TOKEN * tokens + encode_record(RECORD))


N = MAX_NODES_PER_MESSAGE
LIMITS = [  # what, the object, its wire form, the code when over the limit
    pytest.param(
        FindSuccessorResponse(LookupStatus.REFER, (NODE,) * N),
        FindSuccessorResponse(LookupStatus.REFER, (NODE,) * (N + 1)),
        node_list(MessageType.FIND_SUCCESSOR_RESPONSE, N),
        node_list(MessageType.FIND_SUCCESSOR_RESPONSE, N + 1),
        ErrorCode.LIMIT_EXCEEDED,
        id="nodes",
    ),
    pytest.param(
        FindSuccessorResponse(LookupStatus.REFER, (NODE,)),
        FindSuccessorResponse(LookupStatus.REFER, ()),
        node_list(MessageType.FIND_SUCCESSOR_RESPONSE, 1),
        node_list(MessageType.FIND_SUCCESSOR_RESPONSE, 0),
        ErrorCode.MALFORMED,
        id="no nodes",
    ),
    pytest.param(
        Neighbors(None, (NODE,) * N),
        Neighbors(None, (NODE,) * (N + 1)),
        raw(MessageType.NEIGHBORS, bytes([0, N, 0, 0]) + NODE_BYTES * N),
        raw(MessageType.NEIGHBORS, bytes([0, N + 1, 0, 0]) + NODE_BYTES * (N + 1)),
        ErrorCode.LIMIT_EXCEEDED,
        id="successors",
    ),
    pytest.param(
        Store(RECORD, (TOKEN,) * MAX_ADDRESS_TOKENS),
        Store(RECORD, (TOKEN,) * (MAX_ADDRESS_TOKENS + 1)),
        stored(MAX_ADDRESS_TOKENS),
        stored(MAX_ADDRESS_TOKENS + 1),
        ErrorCode.LIMIT_EXCEEDED,
        id="address tokens",
    ),
    pytest.param(
        StatusResponse(bytes(MAX_STATUS_LENGTH)),
        StatusResponse(bytes(MAX_STATUS_LENGTH + 1)),
        status_response(MAX_STATUS_LENGTH),
        status_response(MAX_STATUS_LENGTH + 1),
        ErrorCode.MALFORMED,
        id="status report",
    ),
    pytest.param(
        Error(1, b"x" * MAX_ERROR_REASON),
        Error(1, b"x" * (MAX_ERROR_REASON + 1)),
        error_reason(b"x" * MAX_ERROR_REASON),
        error_reason(b"x" * (MAX_ERROR_REASON + 1)),
        ErrorCode.MALFORMED,
        id="error reason",
    ),
    pytest.param(
        Error(1, "\u00e9".encode()),
        Error(1, b"\xc3"),
        error_reason("\u00e9".encode()),
        error_reason(b"\xc3"),
        ErrorCode.MALFORMED,
        id="error reason UTF-8",
    ),
]


@pytest.mark.parametrize(("at_limit", "over", "at_limit_wire", "over_wire", "code"), LIMITS)
def test_limits_both_ways(
    at_limit: Body, over: Body, at_limit_wire: bytes, over_wire: bytes, code: ErrorCode
) -> None:
    assert encode_dht(message(at_limit)) == at_limit_wire
    assert decode_dht(at_limit_wire) == message(at_limit)
    assert local_code(message(over)) is code
    assert remote_code(over_wire) is code


MAXIMAL_BODIES = [
    Neighbors(NODE, (NODE,) * N),
    Leave(NODE, (NODE,) * N),
    FindSuccessorResponse(LookupStatus.REFER, (NODE,) * N),
    ResolveResponse(ResolveStatus.FOUND, BIG_RECORD),
    ResolveResponse(ResolveStatus.REFER, None, (NODE,) * N),
    Store(BIG_RECORD, (TOKEN,) * MAX_ADDRESS_TOKENS),
    StatusResponse(bytes(MAX_STATUS_LENGTH)),
    Error(0xFFFF, "\U0001f600".encode() * (MAX_ERROR_REASON // 4)),
]


@pytest.mark.parametrize("body", MAXIMAL_BODIES, ids=lambda b: type(b).__name__)
def test_largest_legal_messages_fit(body: Body) -> None:
    signed = encode_dht(message(body), KEY)
    assert len(signed) <= MAX_DHT_MESSAGE
    assert decode_dht(signed) == signed_message(message(body), KEY)


def test_message_limit_fits_a_sal_datagram() -> None:
    # base header and destination SERVICE extension around the largest message
    assert 12 + 36 + MAX_DHT_MESSAGE <= RECOMMENDED_MAX_PACKET


@given(extra=st.integers(1, 200))
def test_oversized_messages_are_rejected(extra: int) -> None:
    data = status_response(MAX_STATUS_LENGTH) + bytes(MAX_DHT_MESSAGE - 1088 + extra)
    assert len(data) == MAX_DHT_MESSAGE + extra
    assert remote_code(data) is ErrorCode.LIMIT_EXCEEDED
    assert remote_code(data, verify=False) is ErrorCode.LIMIT_EXCEEDED


def test_size_limit_enforced_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    # No legal body reaches MAX_DHT_MESSAGE, so lower the limit to see it enforced.
    monkeypatch.setattr("ref.wire.dht.MAX_DHT_MESSAGE", 100)
    at_limit = message(StatusResponse(bytes(36)))
    over = message(StatusResponse(bytes(37)))
    assert len(encode_dht(at_limit)) == 100
    assert decode_dht(encode_dht(at_limit)) == at_limit
    assert local_code(over) is ErrorCode.LIMIT_EXCEEDED
    assert remote_code(status_response(37)) is ErrorCode.LIMIT_EXCEEDED


# --- signatures -------------------------------------------------------------------------


@given(msg=dht_messages(signed=True))
def test_signed_messages_verify_independently(msg: DhtMessage) -> None:
    encoded = encode_dht(msg)
    assert encoded[2] & 0x80
    assert msg.signature == encoded[-SIGNATURE_LENGTH:]
    public = Ed25519PublicKey.from_public_bytes(msg.sender_key)
    public.verify(encoded[-SIGNATURE_LENGTH:], b"ServalDHT message v1\x00" + encoded[:-64])
    assert decode_dht(encoded) == msg


@given(msg=dht_messages(signed=False), key_index=st.integers(0, len(PRIVATE_KEYS) - 1))
def test_signing_sets_the_flag_and_appends_the_signature(msg: DhtMessage, key_index: int) -> None:
    key = PRIVATE_KEYS[key_index]
    msg = dataclasses.replace(msg, sender_key=PUBLIC_KEYS[key_index])
    plain = encode_dht(msg)
    signed = encode_dht(msg, key)
    assert len(signed) == len(plain) + SIGNATURE_LENGTH
    assert signed[:-SIGNATURE_LENGTH] == patch(plain, 2, bytes([plain[2] | 0x80]))
    assert encode_dht(decode_dht(signed)) == signed


@given(msg=dht_messages(signed=True), data=st.data())
def test_tampered_signed_part_fails(msg: DhtMessage, data: st.DataObject) -> None:
    encoded = encode_dht(msg)
    # transaction ID and token: any change keeps the message well-formed
    offset = data.draw(st.sampled_from([*range(4, 12), *range(44, 60)]), label="offset")
    flip = data.draw(st.integers(1, 255), label="xor")
    tampered = patch(encoded, offset, bytes([encoded[offset] ^ flip]))
    assert remote_code(tampered) is ErrorCode.BAD_SIGNATURE
    unverified = decode_dht(tampered, verify=False)
    assert unverified.signature == msg.signature
    assert (unverified.transaction_id, unverified.token) != (msg.transaction_id, msg.token)


@given(msg=dht_messages(signed=True), other=st.sampled_from((*PUBLIC_KEYS[1:], b"\xff" * 32)))
def test_signature_by_another_key_fails(msg: DhtMessage, other: bytes) -> None:
    if other == msg.sender_key:
        other = PUBLIC_KEYS[0]
    tampered = patch(encode_dht(msg), 12, other)
    assert remote_code(tampered) is ErrorCode.BAD_SIGNATURE
    assert decode_dht(tampered, verify=False).sender_key == other


@given(msg=dht_messages(signed=False), signature=st.binary(min_size=64, max_size=64))
def test_carried_signature_is_encoded_as_is(msg: DhtMessage, signature: bytes) -> None:
    # A real key: under a small-order key (all zeros, say) forged signatures can verify.
    carried = dataclasses.replace(msg, sender_key=PUBLIC_KEYS[0], signature=signature)
    encoded = encode_dht(carried)
    assert encoded[-SIGNATURE_LENGTH:] == signature
    assert remote_code(encoded) is ErrorCode.BAD_SIGNATURE
    expected = dataclasses.replace(carried, flags=msg.flags | MessageFlags.SIGNED)
    assert decode_dht(encoded, verify=False) == expected


def test_signing_key_replaces_a_carried_signature() -> None:
    msg = message(Ping(), signature=bytes(64))
    encoded = encode_dht(msg, KEY)
    assert decode_dht(encoded) == signed_message(message(Ping()), KEY)


@given(msg=dht_messages(signed=False))
def test_signing_key_must_be_the_sender_key(msg: DhtMessage) -> None:
    msg = dataclasses.replace(msg, sender_key=PUBLIC_KEYS[0])
    with pytest.raises(LocalProtocolError):
        encode_dht(msg, OTHER_KEY)


@pytest.mark.parametrize("room", [0, 1, 63])
def test_signed_flag_without_room_for_a_signature(room: int) -> None:
    data = patch(encode_dht(message(Ping())), 2, b"\x80") + bytes(room)
    assert remote_code(data) is ErrorCode.MALFORMED
    assert remote_code(data, verify=False) is ErrorCode.MALFORMED
