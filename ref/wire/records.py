"""ServiceRecords: the signed binding of a serviceID block to endpoints (draft 6.6).

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
    from_container,
    local,
    parse_exact,
    to_container,
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


class RecordFlags(IntFlag):
    """Flags of a ServiceRecord (draft Section 6.6.1)."""

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
    """A signed registration of one serviceID block (draft Section 6.6.1)."""

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
        """True when the signature is the owner key's over :meth:`signing_input`."""
        try:
            Ed25519PublicKey.from_public_bytes(self.owner_key).verify(
                self.signature, self.signing_input()
            )
        except (InvalidSignature, ValueError):
            return False
        return True


def public_key_bytes(key: Ed25519PrivateKey) -> bytes:
    """The 32 raw bytes of an Ed25519 private key's public half."""
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def sign_record(record: ServiceRecord, key: Ed25519PrivateKey) -> ServiceRecord:
    """Return ``record`` with its owner key set to ``key``'s and signed by it."""
    owned = dataclasses.replace(record, owner_key=public_key_bytes(key))
    return dataclasses.replace(owned, signature=key.sign(owned.signing_input()))


def check_record(
    record: ServiceRecord, error: type[ProtocolError] = LocalProtocolError
) -> None:
    """Enforce the draft's static rules on a record (not its signature or time)."""
    rules: list[tuple[bool, str, ErrorCode]] = [
        (len(record.service_id) == SERVICE_ID_LENGTH, "serviceID is 32 bytes", ErrorCode.MALFORMED),
        (
            record.service_id[-1] % BLOCK_SIZE == 0,
            "a record names the first serviceID of its block",
            ErrorCode.BAD_SERVICE_ID,
        ),
        (len(record.owner_key) == KEY_LENGTH, "owner key is 32 bytes", ErrorCode.MALFORMED),
        (
            1 <= record.lifetime <= MAX_RECORD_LIFETIME,
            f"lifetime must be 1 to {MAX_RECORD_LIFETIME} seconds",
            ErrorCode.MALFORMED,
        ),
        (
            len(record.endpoints) <= MAX_ENDPOINTS,
            f"at most {MAX_ENDPOINTS} endpoints",
            ErrorCode.LIMIT_EXCEEDED,
        ),
        (
            (len(record.endpoints) == 0) == record.is_tombstone,
            "a tombstone has no endpoints and a live record has at least one",
            ErrorCode.MALFORMED,
        ),
        (
            all(e.weight >= 1 and e.service_mask != 0 for e in record.endpoints),
            "every endpoint has a weight of at least 1 and a non-empty service mask",
            ErrorCode.MALFORMED,
        ),
        (
            record.flags & ~RecordFlags.TOMBSTONE == 0,
            "unassigned record flags must be zero",
            ErrorCode.MALFORMED,
        ),
    ]
    for holds, message, code in rules:
        if not holds:
            raise error(message, code)


def decode_record(data: bytes) -> ServiceRecord:
    """Decode one record; the signature is checked by :meth:`ServiceRecord.verify`."""
    with decoding("ServiceRecord"):
        return record_from_container(parse_exact(ServiceRecordFormat, data))


def record_from_container(parsed: object) -> ServiceRecord:
    """Build and statically check a record parsed as part of a larger message."""
    record = from_container(ServiceRecord, parsed)
    check_record(record, RemoteProtocolError)
    return record


def encode_record(record: ServiceRecord) -> bytes:
    """Encode a record in its canonical form."""
    with encoding("ServiceRecord"):
        check_record(record)
        local(len(record.signature) == SIGNATURE_LENGTH, "signature is 64 bytes")
        return bytes(ServiceRecordFormat.build(to_container(record)))


__all__ = [
    "RecordEndpoint",
    "RecordEndpointFormat",
    "RecordFlags",
    "ServiceRecord",
    "ServiceRecordFormat",
    "check_record",
    "decode_record",
    "encode_record",
    "public_key_bytes",
    "record_from_container",
    "sign_record",
]
