"""ServiceRecords: the signed binding of a serviceID block to endpoints (draft 6.7).

A record's encoding is canonical (reserved fields zero, endpoints in the order
signed), so the signing input is the record's own encoding without its
signature, behind a domain-separation string.
"""

from __future__ import annotations

import dataclasses
from enum import IntFlag

import construct as cs
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ref.wire._codec import (
    AddressAdapter,
    FlagsAdapter,
    IPAddress,
    decoding,
    encoding,
    local,
)
from ref.wire.constants import (
    BLOCK_SIZE,
    KEY_LENGTH,
    MAX_ENDPOINTS,
    MAX_RECORD_LIFETIME,
    RECORD_SIGNING_CONTEXT,
    SERVICE_ID_LENGTH,
    SIGNATURE_LENGTH,
)
from ref.wire.errors import ErrorCode, LocalProtocolError, ProtocolError, RemoteProtocolError
from ref.wire.fast import DERIVED, INTERPRETED, Engine

#: Encodings of the Ed25519 points of small order (DHT-MSG-20): signatures
#: under these keys can be made without a private key, so none verifies.
SMALL_ORDER_KEYS = frozenset(
    bytes.fromhex(text)
    for text in (
        "01" + "00" * 31,
        "ec" + "ff" * 30 + "7f",
        "00" * 32,
        "00" * 31 + "80",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    )
)


def signature_valid(key: bytes, signature: bytes, message: bytes) -> bool:
    """Ed25519 verification that also refuses small-order keys."""
    if key in SMALL_ORDER_KEYS:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


class RecordFlags(IntFlag):
    """Flags of a ServiceRecord (draft Section 6.7)."""

    TOMBSTONE = 0x80


RecordEndpointFormat = cs.Struct(
    "address" / AddressAdapter(),
    "port" / cs.Int16ub,
    "priority" / cs.Int8ub,
    "service_mask" / cs.Int8ub,
    "weight" / cs.Int16ub,
    "reserved" / cs.Const(0, cs.Int16ub),
)

ServiceRecordFormat = cs.Struct(
    "service_id" / cs.Bytes(SERVICE_ID_LENGTH),
    "owner_key" / cs.Bytes(KEY_LENGTH),
    "sequence" / cs.Int64ub,
    "issued_at" / cs.Int64ub,
    "lifetime" / cs.Int32ub,
    "flags" / FlagsAdapter(cs.Int8ub, RecordFlags),
    "endpoint_count" / cs.Rebuild(cs.Int8ub, lambda this: len(this.endpoints)),
    "reserved" / cs.Const(0, cs.Int16ub),
    "endpoints" / cs.Array(cs.this.endpoint_count, RecordEndpointFormat),
    "signature" / cs.Bytes(SIGNATURE_LENGTH),
)


@dataclasses.dataclass(frozen=True)
class RecordEndpoint:
    """Where a service runs, and how much of its traffic it takes."""

    address: IPAddress
    port: int
    priority: int = 0
    weight: int = 1
    service_mask: int = 0xFF


@dataclasses.dataclass(frozen=True)
class ServiceRecord:
    """A signed registration of one serviceID block (draft Section 6.7)."""

    service_id: bytes
    owner_key: bytes
    sequence: int
    issued_at: int
    lifetime: int
    flags: RecordFlags
    endpoints: tuple[RecordEndpoint, ...]
    signature: bytes = bytes(SIGNATURE_LENGTH)

    @property
    def is_tombstone(self) -> bool:
        return bool(self.flags & RecordFlags.TOMBSTONE)

    @property
    def expires_at(self) -> int:
        return self.issued_at + self.lifetime

    def signing_input(self) -> bytes:
        """Domain-separation string, then the record's encoding minus its signature."""
        return RECORD_SIGNING_CONTEXT + encode_record(self)[:-SIGNATURE_LENGTH]

    def verify(self) -> bool:
        """True when the signature is the owner key's over :meth:`signing_input`.

        A record that breaks the static rules of :func:`check_record` has no
        canonical encoding and so no valid signature: False.
        """
        try:
            signing_input = self.signing_input()
        except LocalProtocolError:
            return False
        return signature_valid(self.owner_key, self.signature, signing_input)


def public_key_bytes(key: Ed25519PrivateKey) -> bytes:
    """The 32 raw bytes of an Ed25519 private key's public half."""
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def sign_record(record: ServiceRecord, key: Ed25519PrivateKey) -> ServiceRecord:
    """Return ``record`` with its owner key set to ``key``'s and signed by it."""
    owned = dataclasses.replace(record, owner_key=public_key_bytes(key))
    return dataclasses.replace(owned, signature=key.sign(owned.signing_input()))


def check_record(record: ServiceRecord, error: type[ProtocolError] = LocalProtocolError) -> None:
    """Enforce the draft's static rules on a record (not its signature or time)."""
    problem = _record_problem(record)
    if problem is not None:
        raise error(*problem)


#: What a static rule found wrong: a message and the draft's error code.
Problem = tuple[str, ErrorCode] | None


def _record_problem(record: ServiceRecord) -> Problem:
    # In order: the block rule indexes a serviceID whose length is checked first.
    if len(record.service_id) != SERVICE_ID_LENGTH:
        return "serviceID is 32 bytes", ErrorCode.MALFORMED
    if record.service_id[-1] % BLOCK_SIZE:
        return "a record names the first serviceID of its block", ErrorCode.BAD_SERVICE_ID
    if len(record.owner_key) != KEY_LENGTH:
        return "owner key is 32 bytes", ErrorCode.MALFORMED
    if not 1 <= record.lifetime <= MAX_RECORD_LIFETIME:
        return f"lifetime must be 1 to {MAX_RECORD_LIFETIME} seconds", ErrorCode.MALFORMED
    if len(record.endpoints) > MAX_ENDPOINTS:
        return f"at most {MAX_ENDPOINTS} endpoints", ErrorCode.LIMIT_EXCEEDED
    if (len(record.endpoints) == 0) != record.is_tombstone:
        return "a tombstone has no endpoints, a live record at least one", ErrorCode.MALFORMED
    if not all(e.weight >= 1 and e.service_mask != 0 for e in record.endpoints):
        return (
            "every endpoint has a weight of at least 1 and a non-empty service mask",
            ErrorCode.MALFORMED,
        )
    if record.flags & ~RecordFlags.TOMBSTONE:
        return "unassigned record flags must be zero", ErrorCode.MALFORMED
    return None


def decode_record(data: bytes) -> ServiceRecord:
    """Decode one record; the signature is checked by :meth:`ServiceRecord.verify`."""
    return _decode_record(data, DERIVED)


def decode_record_interpreted(data: bytes) -> ServiceRecord:
    """:func:`decode_record` through Construct's interpreter (the fast path's reference)."""
    return _decode_record(data, INTERPRETED)


def _decode_record(data: bytes, engine: Engine) -> ServiceRecord:
    with decoding("ServiceRecord"):
        record = engine.load(ServiceRecordFormat, ServiceRecord, data)
        check_record(record, RemoteProtocolError)
        return record


def encode_record(record: ServiceRecord) -> bytes:
    """Encode a record in its canonical form."""
    return _encode_record(record, DERIVED)


def encode_record_interpreted(record: ServiceRecord) -> bytes:
    """:func:`encode_record` through Construct's interpreter (the fast path's reference)."""
    return _encode_record(record, INTERPRETED)


def _encode_record(record: ServiceRecord, engine: Engine) -> bytes:
    with encoding("ServiceRecord"):
        check_record(record)
        local(len(record.signature) == SIGNATURE_LENGTH, "signature is 64 bytes")
        return engine.dump(ServiceRecordFormat, record)


__all__ = [
    "RecordEndpoint",
    "RecordEndpointFormat",
    "RecordFlags",
    "ServiceRecord",
    "ServiceRecordFormat",
    "check_record",
    "decode_record",
    "decode_record_interpreted",
    "encode_record",
    "encode_record_interpreted",
    "public_key_bytes",
    "sign_record",
]
