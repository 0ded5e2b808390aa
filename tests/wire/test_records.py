"""ServiceRecords (draft Section 6.7): signatures, canonical encoding, static rules.

Signatures are checked here with ``cryptography`` directly; every rule of
``check_record`` is checked on both sides with its error code: the encoder
raises LocalProtocolError for the object, the decoder RemoteProtocolError for
the same violation patched into valid bytes (alone and inside a STORE).
"""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given
from hypothesis import strategies as st

from ref.wire import (
    DhtMessage,
    ErrorCode,
    LocalProtocolError,
    ProtocolError,
    RecordEndpoint,
    RecordFlags,
    RemoteProtocolError,
    ServiceRecord,
    Store,
    decode_dht,
    decode_record,
    encode_dht,
    encode_record,
    public_key_bytes,
    sign_record,
)
from ref.wire.constants import MAX_ENDPOINTS, MAX_RECORD_LIFETIME, RECORD_SIGNING_CONTEXT
from ref.wire.records import check_record

from .strategies import (
    PRIVATE_KEYS,
    PUBLIC_KEYS,
    block_bases,
    patch,
    record_endpoints,
    service_records,
)

KEY = PRIVATE_KEYS[0]
SIGNATURE_START = -64
ENDPOINTS_START = 88  # serviceID, owner key, sequence, issued_at, lifetime, flags, count, reserved
ENDPOINT_SIZE = 24

ENDPOINT = RecordEndpoint(ipaddress.IPv4Address("192.0.2.10"), 54325, 10, 3, 0x0F)
LIVE = sign_record(
    ServiceRecord(
        service_id=bytes(range(31)) + b"\x08",
        owner_key=bytes(32),
        sequence=5,
        issued_at=1_790_000_000,
        lifetime=3600,
        flags=RecordFlags(0),
        endpoints=(ENDPOINT, RecordEndpoint(ipaddress.IPv6Address("2001:db8::10"), 1)),
    ),
    KEY,
)
TOMBSTONE = sign_record(
    dataclasses.replace(LIVE, sequence=6, flags=RecordFlags.TOMBSTONE, endpoints=()), KEY
)


# --- signing -----------------------------------------------------------------------------


def test_signing_context() -> None:
    assert RECORD_SIGNING_CONTEXT == b"ServalDHT record v1\x00"


@given(record=service_records())
def test_signature_verifies_independently(record: ServiceRecord) -> None:
    encoded = encode_record(record)
    assert record.signing_input().startswith(b"ServalDHT record v1\x00")
    assert record.signing_input() == b"ServalDHT record v1\x00" + encoded[:SIGNATURE_START]
    assert encoded[SIGNATURE_START:] == record.signature
    public = Ed25519PublicKey.from_public_bytes(record.owner_key)
    public.verify(record.signature, b"ServalDHT record v1\x00" + encoded[:SIGNATURE_START])
    assert record.verify()
    assert decode_record(encoded).verify()


@given(record=service_records(), key_index=st.integers(0, len(PRIVATE_KEYS) - 1))
def test_sign_record_sets_the_owner_key(record: ServiceRecord, key_index: int) -> None:
    signed = sign_record(record, PRIVATE_KEYS[key_index])
    assert signed.owner_key == PUBLIC_KEYS[key_index] == public_key_bytes(PRIVATE_KEYS[key_index])
    assert signed.verify()
    assert sign_record(record, PRIVATE_KEYS[key_index]) == signed  # Ed25519 is deterministic
    assert dataclasses.replace(signed, signature=record.signature, owner_key=record.owner_key) == (
        record
    )


def tampered(record: ServiceRecord, field: str, data: st.DataObject) -> ServiceRecord:
    """``record`` with ``field`` changed to another value the static rules accept."""
    if field == "service_id":
        other = data.draw(block_bases().filter(lambda s: s != record.service_id))
        return dataclasses.replace(record, service_id=other)
    if field == "owner_key":
        other = next(k for k in PUBLIC_KEYS if k != record.owner_key)
        return dataclasses.replace(record, owner_key=other)
    if field in ("sequence", "issued_at"):
        return dataclasses.replace(record, **{field: getattr(record, field) ^ 1})
    if field == "lifetime":
        return dataclasses.replace(record, lifetime=record.lifetime % MAX_RECORD_LIFETIME + 1)
    if field == "flags" or (field == "endpoints" and record.is_tombstone):
        # tombstone <-> live, endpoints to match
        if record.is_tombstone:
            endpoint = data.draw(record_endpoints())
            return dataclasses.replace(record, flags=RecordFlags(0), endpoints=(endpoint,))
        return dataclasses.replace(record, flags=RecordFlags.TOMBSTONE, endpoints=())
    if field == "endpoints":
        first, *rest = record.endpoints
        changed = dataclasses.replace(first, port=first.port ^ 1)
        return dataclasses.replace(record, endpoints=(changed, *rest))
    assert field == "signature"
    flipped = bytes([record.signature[0] ^ 1])
    return dataclasses.replace(record, signature=patch(record.signature, 0, flipped))


FIELDS = [f.name for f in dataclasses.fields(ServiceRecord)]


@given(record=service_records(), field=st.sampled_from(FIELDS), data=st.data())
def test_tampering_any_field_breaks_verify(
    record: ServiceRecord, field: str, data: st.DataObject
) -> None:
    changed = tampered(record, field, data)
    assert changed != record
    assert not changed.verify()
    assert not decode_record(encode_record(changed)).verify()


@given(record=service_records(tombstone=False), data=st.data())
def test_endpoint_order_is_signed(record: ServiceRecord, data: st.DataObject) -> None:
    extra = data.draw(record_endpoints().filter(lambda e: e != record.endpoints[0]))
    two = sign_record(dataclasses.replace(record, endpoints=(record.endpoints[0], extra)), KEY)
    swapped = dataclasses.replace(two, endpoints=two.endpoints[::-1])
    assert two.verify()
    assert not swapped.verify()


@given(record=service_records(), data=st.data())
def test_any_changed_byte_is_rejected_or_fails_verify(
    record: ServiceRecord, data: st.DataObject
) -> None:
    encoded = encode_record(record)
    offset = data.draw(st.integers(0, len(encoded) - 1), label="offset")
    flip = data.draw(st.integers(1, 255), label="xor")
    try:
        changed = decode_record(patch(encoded, offset, bytes([encoded[offset] ^ flip])))
    except RemoteProtocolError:
        return
    assert not changed.verify()


@pytest.mark.parametrize("owner_key", [b"\xff" * 32, bytes(31)], ids=["not a point", "short"])
def test_verify_with_a_bad_owner_key_is_false(owner_key: bytes) -> None:
    assert not dataclasses.replace(LIVE, owner_key=owner_key).verify()


# --- canonical encoding ---------------------------------------------------------------


def test_layout() -> None:
    encoded = encode_record(LIVE)
    assert encoded[:32] == LIVE.service_id
    assert encoded[32:64] == LIVE.owner_key == PUBLIC_KEYS[0]
    assert encoded[64:72] == (5).to_bytes(8, "big")
    assert encoded[72:80] == (1_790_000_000).to_bytes(8, "big")
    assert encoded[80:84] == (3600).to_bytes(4, "big")
    assert encoded[84:88] == bytes([0, 2, 0, 0])
    first = encoded[ENDPOINTS_START : ENDPOINTS_START + ENDPOINT_SIZE]
    assert first == bytes(10) + b"\xff\xff" + bytes([192, 0, 2, 10]) + bytes.fromhex(
        "d4350a0f00030000"
    )  # port 54325, priority 10, service mask 0x0f, weight 3, reserved
    second = encoded[ENDPOINTS_START + ENDPOINT_SIZE : SIGNATURE_START]
    defaults = bytes.fromhex("000100ff00010000")  # priority 0, mask ff, weight 1
    assert second == ipaddress.IPv6Address("2001:db8::10").packed + defaults
    assert len(encoded) == ENDPOINTS_START + 2 * ENDPOINT_SIZE + 64


@pytest.mark.parametrize(
    "offset",
    [86, 87, ENDPOINTS_START + 22, ENDPOINTS_START + 23, ENDPOINTS_START + ENDPOINT_SIZE + 23],
    ids=["reserved hi", "reserved lo", "endpoint reserved hi", "lo", "second endpoint"],
)
@pytest.mark.parametrize("value", [0x01, 0x80, 0xFF])
def test_reserved_fields_must_be_zero(offset: int, value: int) -> None:
    encoded = patch(encode_record(LIVE), offset, bytes([value]))
    with pytest.raises(RemoteProtocolError) as info:
        decode_record(encoded)
    assert info.value.error_code is ErrorCode.MALFORMED


@given(record=service_records())
def test_encoding_is_canonical(record: ServiceRecord) -> None:
    encoded = encode_record(record)
    assert encoded[86:88] == b"\x00\x00"
    for n in range(len(record.endpoints)):
        start = ENDPOINTS_START + n * ENDPOINT_SIZE
        assert encoded[start + 22 : start + 24] == b"\x00\x00"
    assert encoded[85] == len(record.endpoints)
    assert len(encoded) == ENDPOINTS_START + ENDPOINT_SIZE * len(record.endpoints) + 64


# --- static rules, both ways ---------------------------------------------------------


def with_endpoint_count(encoded: bytes, count: int) -> bytes:
    """``encoded`` (one endpoint) with that endpoint repeated to ``count``."""
    endpoint = encoded[ENDPOINTS_START : ENDPOINTS_START + ENDPOINT_SIZE]
    head = patch(encoded[:ENDPOINTS_START], 85, bytes([count]))
    return head + endpoint * count + encoded[SIGNATURE_START:]


ONE = sign_record(dataclasses.replace(LIVE, endpoints=(ENDPOINT,)), KEY)
W = ENDPOINTS_START  # first endpoint

#: (rule, the object breaking it, the bytes breaking it, error code)
RULES: list[tuple[str, ServiceRecord, bytes, ErrorCode]] = [
    (
        "serviceID starts a block",
        dataclasses.replace(ONE, service_id=ONE.service_id[:31] + b"\x09"),
        patch(encode_record(ONE), 31, b"\x09"),
        ErrorCode.BAD_SERVICE_ID,
    ),
    (
        "lifetime at least 1",
        dataclasses.replace(ONE, lifetime=0),
        patch(encode_record(ONE), 80, bytes(4)),
        ErrorCode.MALFORMED,
    ),
    (
        "lifetime at most a day",
        dataclasses.replace(ONE, lifetime=MAX_RECORD_LIFETIME + 1),
        patch(encode_record(ONE), 80, (MAX_RECORD_LIFETIME + 1).to_bytes(4, "big")),
        ErrorCode.MALFORMED,
    ),
    (
        "at most 16 endpoints",
        dataclasses.replace(ONE, endpoints=(ENDPOINT,) * (MAX_ENDPOINTS + 1)),
        with_endpoint_count(encode_record(ONE), MAX_ENDPOINTS + 1),
        ErrorCode.LIMIT_EXCEEDED,
    ),
    (
        "a tombstone has no endpoints",
        dataclasses.replace(ONE, flags=RecordFlags.TOMBSTONE),
        patch(encode_record(ONE), 84, b"\x80"),
        ErrorCode.MALFORMED,
    ),
    (
        "a live record has endpoints",
        dataclasses.replace(TOMBSTONE, flags=RecordFlags(0)),
        patch(encode_record(TOMBSTONE), 84, b"\x00"),
        ErrorCode.MALFORMED,
    ),
    (
        "weight at least 1",
        dataclasses.replace(ONE, endpoints=(dataclasses.replace(ENDPOINT, weight=0),)),
        patch(encode_record(ONE), W + 20, b"\x00\x00"),
        ErrorCode.MALFORMED,
    ),
    (
        "service mask not empty",
        dataclasses.replace(ONE, endpoints=(dataclasses.replace(ENDPOINT, service_mask=0),)),
        patch(encode_record(ONE), W + 19, b"\x00"),
        ErrorCode.MALFORMED,
    ),
    (
        "unassigned flags zero",
        dataclasses.replace(ONE, flags=RecordFlags(0x01)),
        patch(encode_record(ONE), 84, b"\x01"),
        ErrorCode.MALFORMED,
    ),
    (
        "unassigned flags zero in a tombstone",
        dataclasses.replace(TOMBSTONE, flags=RecordFlags(0x81)),
        patch(encode_record(TOMBSTONE), 84, b"\x81"),
        ErrorCode.MALFORMED,
    ),
]
BY_RULE = pytest.mark.parametrize(
    ("record", "wire", "code"), [pytest.param(*rule[1:], id=rule[0]) for rule in RULES]
)


@BY_RULE
def test_rule_enforced_by_the_encoder(record: ServiceRecord, wire: bytes, code: ErrorCode) -> None:
    with pytest.raises(LocalProtocolError) as info:
        encode_record(record)
    assert info.value.error_code is code
    with pytest.raises(LocalProtocolError) as info:
        check_record(record)
    assert info.value.error_code is code


@BY_RULE
def test_rule_enforced_by_the_decoder(record: ServiceRecord, wire: bytes, code: ErrorCode) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_record(wire)
    assert info.value.error_code is code


@BY_RULE
def test_rule_enforced_inside_a_store(record: ServiceRecord, wire: bytes, code: ErrorCode) -> None:
    message = encode_dht(DhtMessage(Store(ONE), bytes(8)))
    store = message[: 60 + 4] + wire  # header, STORE's token count and reserved, the record
    with pytest.raises(RemoteProtocolError) as info:
        decode_dht(store)
    assert info.value.error_code is code
    with pytest.raises(LocalProtocolError) as local_info:
        encode_dht(DhtMessage(Store(record), bytes(8)))
    assert local_info.value.error_code is code


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"service_id": bytes(31)}, ErrorCode.MALFORMED),
        ({"service_id": bytes(33)}, ErrorCode.MALFORMED),
        ({"owner_key": bytes(31)}, ErrorCode.MALFORMED),
        ({"signature": bytes(63)}, ErrorCode.MALFORMED),
    ],
    ids=["short serviceID", "long serviceID", "short owner key", "short signature"],
)
def test_lengths_the_wire_cannot_express(change: dict[str, bytes], code: ErrorCode) -> None:
    with pytest.raises(LocalProtocolError) as info:
        encode_record(dataclasses.replace(ONE, **change))
    assert info.value.error_code is code


@pytest.mark.parametrize("error", [LocalProtocolError, RemoteProtocolError])
def test_check_record_on_an_empty_service_id(error: type[ProtocolError]) -> None:
    with pytest.raises(error):
        check_record(dataclasses.replace(ONE, service_id=b""), error)


@given(record=service_records())
def test_valid_records_pass_the_rules(record: ServiceRecord) -> None:
    check_record(record)
    check_record(record, RemoteProtocolError)


@pytest.mark.parametrize("count", [1, MAX_ENDPOINTS])
def test_endpoint_counts_at_the_limits(count: int) -> None:
    record = sign_record(dataclasses.replace(ONE, endpoints=(ENDPOINT,) * count), KEY)
    assert decode_record(encode_record(record)) == record
    assert decode_record(with_endpoint_count(encode_record(ONE), count)).endpoints == (
        (ENDPOINT,) * count
    )


# --- tombstones -----------------------------------------------------------------------


@given(record=service_records(tombstone=True))
def test_tombstones(record: ServiceRecord) -> None:
    assert record.is_tombstone
    assert record.endpoints == ()
    encoded = encode_record(record)
    assert encoded[84] == 0x80
    assert encoded[85] == 0
    assert len(encoded) == ENDPOINTS_START + 64
    assert decode_record(encoded) == record
    assert record.verify()


def test_tombstone_of_a_live_record() -> None:
    assert not LIVE.is_tombstone
    assert TOMBSTONE.is_tombstone
    assert TOMBSTONE.verify()
    assert TOMBSTONE.owner_key == LIVE.owner_key
    assert TOMBSTONE.sequence > LIVE.sequence
    assert LIVE.expires_at == LIVE.issued_at + LIVE.lifetime == 1_790_003_600


def test_record_endpoint_defaults_are_valid() -> None:
    endpoint = RecordEndpoint(ipaddress.IPv4Address("192.0.2.1"), 1)
    assert (endpoint.priority, endpoint.weight, endpoint.service_mask) == (0, 1, 0xFF)
    check_record(dataclasses.replace(ONE, endpoints=(endpoint,)))
