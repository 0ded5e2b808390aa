"""Hypothesis strategies for every ref.wire object, its encoding and damaged copies.

Object strategies draw *legal* objects: the encoder accepts every one of them
and the decoder gives it back unchanged, ``decode(encode(x)) == x``.  For that
the objects are drawn in the form the decoders return:

* IPv6 addresses exclude the IPv4-mapped range ``::ffff:0:0/96``: such an
  address travels exactly like an IPv4 address (RFC 4291, 2.5.5.2) and
  decodes as an ``IPv4Address``.
* Unknown (ignorable) SAL extensions come sorted by type: the encoder sorts
  them and the decoder keeps wire order.
* A protocol number that names a ``TransportProtocol`` is that member.
* DHT messages set ``MessageFlags.SIGNED`` exactly when they carry a
  signature, and a signed message carries the signature its sender key makes
  (Ed25519 is deterministic, RFC 8032), as ``decode_dht`` returns it.
* Records are valid per ``records.check_record`` and signed with one of the
  fixed :data:`PRIVATE_KEYS`.

Sizes stay small by default (a few nodes, endpoints and payload bytes) to keep
the tests fast; the keyword arguments reach the draft's limits when a test
needs them.  Everything stays within ``constants.py``, so encoding never fails.

For the decoders' robustness tests (and the fuzzers that reuse this module),
:data:`CODECS` names each format's object strategy, encoder, decoder and
structure-aware mutator, :func:`encodings` draws ``(object, bytes)`` pairs and
:func:`byte_mutants` damages any byte string generically.  :func:`corrupted`
puts a wrong value into one field of a legal object, for the encoders.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import strategies as st

from ref.wire import (
    SIGNED_TYPES,
    Body,
    Control,
    ControlFlags,
    DhtMessage,
    Endpoint,
    Error,
    FindSuccessor,
    FindSuccessorResponse,
    GetNeighbors,
    Leave,
    LeaveResponse,
    LookupStatus,
    MessageFlags,
    MessageType,
    Neighbors,
    NodeInfo,
    Ping,
    Pong,
    RecordEndpoint,
    RecordFlags,
    Rectify,
    RectifyResponse,
    Replicate,
    ReplicateResponse,
    Resolve,
    ResolveResponse,
    ResolveStatus,
    SalPacket,
    ServiceRecord,
    SourceRoute,
    Status,
    StatusResponse,
    Store,
    StoreResponse,
    StreamFlags,
    StreamSegment,
    TransportProtocol,
    UnknownExtension,
    block_base,
    decode_dht,
    decode_record,
    decode_sal,
    decode_stream,
    encode_dht,
    encode_record,
    encode_sal,
    encode_stream,
    internet_checksum,
    public_key_bytes,
    sign_record,
)
from ref.wire.constants import (
    DHT_HEADER_LENGTH,
    FIRST_IGNORABLE_EXTENSION_TYPE,
    KEY_LENGTH,
    MAX_ADDRESS_TOKENS,
    MAX_ERROR_REASON,
    MAX_EXTENSIONS,
    MAX_RECORD_LIFETIME,
    MAX_SOURCE_ENTRIES,
    MESSAGE_SIGNING_CONTEXT,
    NONCE_LENGTH,
    SERVICE_ID_LENGTH,
    SIGNATURE_LENGTH,
    TOKEN_LENGTH,
    TRANSACTION_ID_LENGTH,
)

# --- fixed keys ----------------------------------------------------------------

#: Seeds of the test keys; fixed so every signature is reproducible.
KEY_SEEDS: tuple[bytes, ...] = tuple(bytes([n]) * 32 for n in (0x11, 0x22, 0x33))
PRIVATE_KEYS: tuple[Ed25519PrivateKey, ...] = tuple(
    Ed25519PrivateKey.from_private_bytes(seed) for seed in KEY_SEEDS
)
PUBLIC_KEYS: tuple[bytes, ...] = tuple(public_key_bytes(key) for key in PRIVATE_KEYS)
#: Public key bytes -> the private key that signs for it.
KEY_FOR: dict[bytes, Ed25519PrivateKey] = dict(zip(PUBLIC_KEYS, PRIVATE_KEYS, strict=True))

# --- numbers and bytes ---------------------------------------------------------


def uints(bits: int) -> st.SearchStrategy[int]:
    """Any unsigned integer of ``bits`` bits."""
    return st.integers(0, (1 << bits) - 1)


def fixed_bytes(length: int) -> st.SearchStrategy[bytes]:
    """Byte strings of exactly ``length`` bytes."""
    return st.binary(min_size=length, max_size=length)


def service_ids() -> st.SearchStrategy[bytes]:
    return fixed_bytes(SERVICE_ID_LENGTH)


def tokens() -> st.SearchStrategy[bytes]:
    return fixed_bytes(TOKEN_LENGTH)


def transaction_ids() -> st.SearchStrategy[bytes]:
    return fixed_bytes(TRANSACTION_ID_LENGTH)


def block_bases() -> st.SearchStrategy[bytes]:
    """serviceIDs that start a block of 8 (what a record names)."""
    return service_ids().map(block_base)


def host_keys() -> st.SearchStrategy[bytes]:
    """32-byte keys: mostly the fixed test keys, sometimes any bytes (not all are points)."""
    return st.one_of(st.sampled_from(PUBLIC_KEYS), fixed_bytes(KEY_LENGTH))


# --- addresses -----------------------------------------------------------------

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


# Addresses with a meaning, and neighbours of the IPv4-mapped prefix.
SPECIAL_IPV4 = tuple(
    ipaddress.IPv4Address(a) for a in ("0.0.0.0", "127.0.0.1", "192.0.2.1", "255.255.255.255")
)
SPECIAL_IPV6 = tuple(
    ipaddress.IPv6Address(a)
    for a in (
        "::",
        "::1",
        "::192.0.2.1",  # IPv4-compatible (deprecated), not mapped
        "::fffe:c000:201",
        "::1:ffff:c000:201",
        "64:ff9b::c000:201",
        "fe80::1",
        "ff02::1",
        "2001:db8::1",
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    )
)


def ipv4_addresses() -> st.SearchStrategy[ipaddress.IPv4Address]:
    # Cheaper than st.ip_addresses(), which costs about three times as much.
    return st.one_of(st.sampled_from(SPECIAL_IPV4), uints(32).map(ipaddress.IPv4Address))


def ipv6_addresses() -> st.SearchStrategy[ipaddress.IPv6Address]:
    """IPv6 addresses outside ::ffff:0:0/96 (those decode as IPv4)."""
    return st.one_of(
        st.sampled_from(SPECIAL_IPV6),
        uints(128).map(ipaddress.IPv6Address).filter(lambda a: a.ipv4_mapped is None),
    )


def addresses() -> st.SearchStrategy[IPAddress]:
    return st.one_of(ipv4_addresses(), ipv6_addresses())


def ports() -> st.SearchStrategy[int]:
    return uints(16)


def endpoints() -> st.SearchStrategy[Endpoint]:
    return st.builds(Endpoint, address=addresses(), port=ports())


# --- SAL -----------------------------------------------------------------------


def protocols() -> st.SearchStrategy[TransportProtocol | int]:
    """Any 8-bit protocol number; the assigned ones as ``TransportProtocol``."""
    known = {p.value for p in TransportProtocol}
    return uints(8).map(lambda value: TransportProtocol(value) if value in known else value)


def controls() -> st.SearchStrategy[Control]:
    """CONTROL extensions with any flags (reserved bits included) and numbers."""
    return st.builds(
        Control,
        flags=uints(8).map(ControlFlags),
        verno=uints(32),
        ackno=uints(32),
        nonce=fixed_bytes(NONCE_LENGTH),
    )


def source_routes(max_entries: int = MAX_SOURCE_ENTRIES) -> st.SearchStrategy[SourceRoute]:
    return st.builds(
        SourceRoute,
        hop_limit=uints(8),
        entries=st.lists(endpoints(), min_size=1, max_size=max_entries).map(tuple),
    )


def unknown_extensions(max_words: int = 15) -> st.SearchStrategy[UnknownExtension]:
    """Ignorable extensions: type 0x80-0xFF, value of 2 + 4k bytes (k <= max_words)."""
    values = st.integers(0, max_words).flatmap(lambda k: fixed_bytes(2 + 4 * k))
    return st.builds(
        UnknownExtension, type=st.integers(FIRST_IGNORABLE_EXTENSION_TYPE, 0xFF), value=values
    )


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


@st.composite
def sal_packets(draw: st.DrawFn, max_payload: int = 64) -> SalPacket:
    """SAL packets with any combination of extensions (at most 8 in all)."""
    control = draw(optional(controls()))
    destination_service = draw(optional(service_ids()))
    source_service = draw(optional(service_ids()))
    source_route = draw(optional(source_routes()))
    known = sum(
        part is not None for part in (control, destination_service, source_service, source_route)
    )
    unknown = draw(st.lists(unknown_extensions(), max_size=MAX_EXTENSIONS - known))
    return SalPacket(
        source_flow_id=draw(uints(32)),
        destination_flow_id=draw(uints(32)),
        protocol=draw(protocols()),
        control=control,
        destination_service=destination_service,
        source_service=source_service,
        source_route=source_route,
        unknown_extensions=tuple(sorted(unknown, key=lambda ext: ext.type)),
        payload=draw(st.binary(max_size=max_payload)),
    )


def stream_segments(max_data: int = 64) -> st.SearchStrategy[StreamSegment]:
    return st.builds(
        StreamSegment,
        sequence=uints(32),
        acknowledgment=uints(32),
        flags=uints(8).map(StreamFlags),
        window=uints(16),
        data=st.binary(max_size=max_data),
    )


# --- records -------------------------------------------------------------------


def record_endpoints() -> st.SearchStrategy[RecordEndpoint]:
    """Endpoints valid in a live record: weight >= 1, non-empty service mask."""
    return st.builds(
        RecordEndpoint,
        address=addresses(),
        port=ports(),
        priority=uints(8),
        weight=st.integers(1, 0xFFFF),
        service_mask=st.integers(1, 0xFF),
    )


@st.composite
def service_records(
    draw: st.DrawFn, max_endpoints: int = 4, tombstone: bool | None = None
) -> ServiceRecord:
    """Valid records, signed by one of :data:`PRIVATE_KEYS`.

    ``tombstone`` forces (True) or forbids (False) a tombstone; None draws it.
    """
    if tombstone is None:
        tombstone = draw(st.booleans())
    if tombstone:
        flags, endpoint_list = RecordFlags.TOMBSTONE, []
    else:
        flags = RecordFlags(0)
        endpoint_list = draw(st.lists(record_endpoints(), min_size=1, max_size=max_endpoints))
    record = ServiceRecord(
        service_id=draw(block_bases()),
        owner_key=bytes(KEY_LENGTH),
        sequence=draw(uints(64)),
        issued_at=draw(uints(64)),
        lifetime=draw(st.integers(1, MAX_RECORD_LIFETIME)),
        flags=flags,
        endpoints=tuple(endpoint_list),
    )
    return sign_record(record, draw(st.sampled_from(PRIVATE_KEYS)))


# --- ServalDHT -----------------------------------------------------------------


def node_infos() -> st.SearchStrategy[NodeInfo]:
    return st.builds(NodeInfo, key=host_keys(), endpoint=endpoints())


def node_lists(min_size: int, max_size: int) -> st.SearchStrategy[tuple[NodeInfo, ...]]:
    return st.lists(node_infos(), min_size=min_size, max_size=max_size).map(tuple)


def _resolve_responses(max_nodes: int, max_endpoints: int) -> st.SearchStrategy[ResolveResponse]:
    """RESOLVE_RESPONSE with contents that match the status (draft 6.4)."""
    return st.one_of(
        service_records(max_endpoints).map(lambda r: ResolveResponse(ResolveStatus.FOUND, r)),
        st.just(ResolveResponse(ResolveStatus.NOT_FOUND)),
        node_lists(1, max_nodes).map(lambda n: ResolveResponse(ResolveStatus.REFER, None, n)),
    )


def error_reasons() -> st.SearchStrategy[bytes]:
    """UTF-8 reasons within MAX_ERROR_REASON bytes (64 characters are at most 256 bytes)."""
    return st.text(max_size=MAX_ERROR_REASON // 4).map(lambda text: text.encode("utf-8"))


def body_strategies(
    max_nodes: int = 4, max_endpoints: int = 4, max_report: int = 64
) -> dict[MessageType, st.SearchStrategy[Body]]:
    """One strategy per message type: the dispatch table of the strategies."""
    neighbours = {
        "predecessor": optional(node_infos()),
        "successors": node_lists(0, max_nodes),
    }
    records = service_records(max_endpoints)
    return {
        MessageType.PING: st.just(Ping()),
        MessageType.PONG: st.builds(Pong, observed=endpoints()),
        MessageType.FIND_SUCCESSOR: st.builds(FindSuccessor, target_id=service_ids()),
        MessageType.FIND_SUCCESSOR_RESPONSE: st.builds(
            FindSuccessorResponse,
            status=st.sampled_from(LookupStatus),
            nodes=node_lists(1, max_nodes),
        ),
        MessageType.GET_NEIGHBORS: st.just(GetNeighbors()),
        MessageType.NEIGHBORS: st.builds(Neighbors, **neighbours),
        MessageType.RECTIFY: st.just(Rectify()),
        MessageType.RECTIFY_RESPONSE: st.just(RectifyResponse()),
        MessageType.STORE: st.builds(
            Store,
            record=records,
            address_tokens=st.lists(tokens(), max_size=MAX_ADDRESS_TOKENS).map(tuple),
        ),
        MessageType.STORE_RESPONSE: st.builds(StoreResponse, sequence=uints(64)),
        MessageType.RESOLVE: st.builds(Resolve, service_id=service_ids()),
        MessageType.RESOLVE_RESPONSE: _resolve_responses(max_nodes, max_endpoints),
        MessageType.REPLICATE: st.builds(Replicate, record=records),
        MessageType.REPLICATE_RESPONSE: st.just(ReplicateResponse()),
        MessageType.LEAVE: st.builds(Leave, **neighbours),
        MessageType.LEAVE_RESPONSE: st.just(LeaveResponse()),
        MessageType.STATUS: st.just(Status()),
        MessageType.STATUS_RESPONSE: st.builds(
            StatusResponse, report=st.binary(max_size=max_report)
        ),
        MessageType.ERROR: st.builds(Error, error_code=uints(16), reason=error_reasons()),
    }


BODY_STRATEGIES = body_strategies()


def bodies(*types: MessageType) -> st.SearchStrategy[Body]:
    """Bodies of the given message types (all types when none are given)."""
    return st.one_of([BODY_STRATEGIES[t] for t in types or tuple(MessageType)])


def header_flags() -> st.SearchStrategy[MessageFlags]:
    """Header flags without SIGNED (the encoder derives it): TRUNCATED and unassigned bits."""
    return st.integers(0, 0x7F).map(MessageFlags)


def signed_message(message: DhtMessage, key: Ed25519PrivateKey) -> DhtMessage:
    """``message`` signed by ``key``, as ``decode_dht`` returns it."""
    message = dataclasses.replace(message, sender_key=public_key_bytes(key), signature=None)
    signature = encode_dht(message, key)[-SIGNATURE_LENGTH:]
    return dataclasses.replace(
        message, flags=message.flags | MessageFlags.SIGNED, signature=signature
    )


@st.composite
def dht_messages(
    draw: st.DrawFn,
    body: st.SearchStrategy[Body] | None = None,
    signed: bool | None = None,
) -> DhtMessage:
    """ServalDHT messages.

    ``signed``: True or False forces the choice; None signs the types of
    ``SIGNED_TYPES`` always and the others sometimes.  A signed message's
    sender key is the signing key's.
    """
    drawn_body = draw(body if body is not None else bodies())
    message = DhtMessage(
        body=drawn_body,
        transaction_id=draw(transaction_ids()),
        sender_key=draw(host_keys()),
        token=draw(tokens()),
        flags=draw(header_flags()),
    )
    if signed is None:
        signed = drawn_body.TYPE in SIGNED_TYPES or draw(st.booleans())
    if signed:
        return signed_message(message, draw(st.sampled_from(PRIVATE_KEYS)))
    return message


# --- codecs, encodings and damage ----------------------------------------------


def byte_mutants(data: bytes) -> st.SearchStrategy[bytes]:
    """``data`` with one generic change.

    A byte replaced or a bit flipped, an aligned 1/2/4/8-byte field set to an
    interesting value, a truncation, bytes appended or inserted, a slice
    deleted or duplicated.
    """
    size = len(data)
    options = [st.binary(min_size=1, max_size=16).map(lambda extra: data + extra)]
    if size:
        options += [
            _replaced_byte(data),
            st.integers(0, 8 * size - 1).map(lambda bit: _flip(data, bit)),
            fields_set(data, _aligned_fields(size)),
            st.integers(0, size - 1).map(lambda n: data[:n]),
            st.tuples(st.integers(0, size), st.binary(min_size=1, max_size=8)).map(
                lambda pair: data[: pair[0]] + pair[1] + data[pair[0] :]
            ),
            _slices(size).map(lambda s: data[: s[0]] + data[s[1] :]),
            _slices(size).map(lambda s: data[: s[1]] + data[s[0] : s[1]] + data[s[1] :]),
        ]
    return st.one_of(options)


def _flip(data: bytes, bit: int) -> bytes:
    return patch(data, bit // 8, bytes([data[bit // 8] ^ (0x80 >> bit % 8)]))


def patch(data: bytes, offset: int, new: bytes) -> bytes:
    """``data`` with ``new`` written over it at ``offset``."""
    return data[:offset] + new + data[offset + len(new) :]


def _slices(size: int) -> st.SearchStrategy[tuple[int, int]]:
    return st.tuples(st.integers(0, size - 1), st.integers(1, size)).map(
        lambda pair: (min(pair), max(pair[0] + 1, pair[1]))
    )


@st.composite
def _replaced_byte(draw: st.DrawFn, data: bytes) -> bytes:
    offset = draw(st.integers(0, len(data) - 1))
    value = draw(st.integers(0, 0xFE))
    value += value >= data[offset]  # any value but the old one
    return patch(data, offset, bytes([value]))


def interesting_values(width: int, old: int = 0) -> st.SearchStrategy[int]:
    """Values for a ``width``-byte field: limits, off-by-one of the old value, anything."""
    top = (1 << 8 * width) - 1
    return st.one_of(
        st.sampled_from([0, 1, top, top >> 1, (top >> 1) + 1]),
        st.sampled_from([(old + 1) & top, (old - 1) & top]),
        st.integers(0, top),
    )


def _aligned_fields(size: int) -> list[tuple[int, int]]:
    return [(o, w) for w in (1, 2, 4, 8) for o in range(0, size - w + 1, w)]


@st.composite
def fields_set(draw: st.DrawFn, data: bytes, fields: list[tuple[int, int]]) -> bytes:
    """``data`` with one big-endian field, an ``(offset, width)`` of ``fields``, changed."""
    offset, width = draw(st.sampled_from(fields))
    old = int.from_bytes(data[offset : offset + width], "big")
    return patch(data, offset, draw(interesting_values(width, old)).to_bytes(width, "big"))


def fix_checksum(packet: bytes) -> bytes:
    """A SAL packet with its checksum recomputed (zero the field, sum, patch 10-11)."""
    if len(packet) < 12:
        return packet
    zeroed = patch(packet, 10, b"\x00\x00")
    return patch(zeroed, 10, internet_checksum(zeroed).to_bytes(2, "big"))


def sal_extensions(packet: bytes) -> list[bytes]:
    """The extension TLVs of a SAL packet, in wire order.

    A malformed area ends the list where it stops making sense (a length below
    the 4-octet extension header, or a TLV cut short), so damaged packets can be
    damaged further instead of looping for ever on a zero length.
    """
    area = packet[12 : packet[8] * 4]
    chunks, offset = [], 0
    while offset + 2 <= len(area):
        length = area[offset + 1]
        if length < 4 or offset + length > len(area):
            break
        chunks.append(area[offset : offset + length])
        offset += length
    return chunks


def with_extensions(packet: bytes, chunks: list[bytes]) -> bytes:
    """``packet`` with its extension area replaced, header length and checksum fixed."""
    extensions = b"".join(chunks)
    words = (12 + len(extensions)) // 4
    rebuilt = packet[:8] + bytes([words & 0xFF]) + packet[9:12] + extensions
    return fix_checksum(rebuilt + packet[packet[8] * 4 :])


@st.composite
def sal_mutants(draw: st.DrawFn, packet: bytes) -> bytes:
    """``packet`` damaged with its SAL structure in mind, checksum fixed or not.

    Header length, an extension's type or length, extension order (shuffled,
    one dropped or repeated), or any generic change.
    """
    chunks = sal_extensions(packet)
    offsets = [12 + sum(len(c) for c in chunks[:i]) for i in range(len(chunks))]
    options: list[st.SearchStrategy[bytes]] = [
        interesting_values(1, packet[8]).map(lambda v: patch(packet, 8, bytes([v]))),
        byte_mutants(packet),
    ]
    if chunks:
        options += [
            st.permutations(chunks).map(lambda order: with_extensions(packet, order)),
            st.integers(0, len(chunks) - 1).map(
                lambda i: with_extensions(packet, chunks[:i] + chunks[i + 1 :])
            ),
            st.integers(0, len(chunks) - 1).map(
                lambda i: with_extensions(packet, chunks[: i + 1] + chunks[i:])
            ),
            st.tuples(st.sampled_from(offsets), st.sampled_from([0, 1]), uints(8)).map(
                lambda t: patch(packet, t[0] + t[1], bytes([t[2]]))
            ),
        ]
    mutant = draw(st.one_of(options))
    return fix_checksum(mutant) if draw(st.booleans()) else mutant


def resign(message: bytes) -> bytes:
    """A SIGNED message's signature redone for its (possibly changed) content.

    Only possible when the sender key is one of :data:`PUBLIC_KEYS`;
    otherwise ``message`` comes back unchanged.
    """
    key = KEY_FOR.get(message[12 : 12 + KEY_LENGTH])
    if key is None or len(message) < DHT_HEADER_LENGTH + SIGNATURE_LENGTH:
        return message
    signed_part = message[:-SIGNATURE_LENGTH]
    return signed_part + key.sign(MESSAGE_SIGNING_CONTEXT + signed_part)


@st.composite
def dht_mutants(draw: st.DrawFn, message: bytes) -> bytes:
    """``message`` damaged with the DHT layout in mind, re-signed or not.

    Version, type, flags (SIGNED toggled), the count fields that open most
    bodies, or any generic change.
    """
    options = [
        interesting_values(1, message[0]).map(lambda v: patch(message, 0, bytes([v]))),
        st.one_of(st.sampled_from([t.value for t in MessageType]), uints(8)).map(
            lambda v: patch(message, 1, bytes([v]))
        ),
        st.sampled_from([MessageFlags.SIGNED, MessageFlags.TRUNCATED, 0x01]).map(
            lambda bit: patch(message, 2, bytes([message[2] ^ bit]))
        ),
        byte_mutants(message),
    ]
    if len(message) >= DHT_HEADER_LENGTH + 2:
        # the counts and lengths that open most bodies sit in its first 4 bytes
        end = min(len(message), DHT_HEADER_LENGTH + 4)
        counts = [(o, w) for w in (1, 2) for o in range(DHT_HEADER_LENGTH, end - w + 1)]
        options.append(fields_set(message, counts))
    mutant = draw(st.one_of(options))
    return resign(mutant) if draw(st.booleans()) else mutant


RECORD_FIELDS = (  # offset and width of the record's fixed fields (draft 6.7)
    (64, 8),  # sequence
    (72, 8),  # issued_at
    (80, 4),  # lifetime
    (84, 1),  # flags
    (85, 1),  # endpoint_count
    (86, 2),  # reserved
)


@st.composite
def record_mutants(draw: st.DrawFn, record: bytes) -> bytes:
    """An encoded record damaged in a fixed field, an endpoint field, or generically."""
    endpoints = (len(record) - 88 - SIGNATURE_LENGTH) // 24
    fields = list(RECORD_FIELDS)
    for n in range(endpoints):  # port, priority, service_mask, weight, reserved
        base = 88 + 24 * n
        fields += [(base + 16, 2), (base + 18, 1), (base + 19, 1), (base + 20, 2), (base + 22, 2)]
    return draw(st.one_of(fields_set(record, fields), byte_mutants(record)))


@dataclasses.dataclass(frozen=True)
class Codec:
    """One wire format: its legal objects, its codec and a structure-aware mutator."""

    name: str
    objects: st.SearchStrategy[Any]
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]
    mutants: Callable[[bytes], st.SearchStrategy[bytes]]

    def __repr__(self) -> str:  # shows in test ids and failure reports
        return f"Codec({self.name})"


def _decode_dht_unverified(data: bytes) -> DhtMessage:
    return decode_dht(data, verify=False)


SAL = Codec("sal", sal_packets(), encode_sal, decode_sal, sal_mutants)
STREAM = Codec("stream", stream_segments(), encode_stream, decode_stream, byte_mutants)
DHT = Codec("dht", dht_messages(), encode_dht, decode_dht, dht_mutants)
DHT_UNVERIFIED = Codec(
    "dht-unverified", dht_messages(), encode_dht, _decode_dht_unverified, dht_mutants
)
RECORD = Codec("record", service_records(), encode_record, decode_record, record_mutants)

#: Every decoder, with what it decodes.
CODECS: tuple[Codec, ...] = (SAL, STREAM, DHT, DHT_UNVERIFIED, RECORD)


def encodings(codec: Codec) -> st.SearchStrategy[tuple[Any, bytes]]:
    """``(object, encoding)`` pairs of legal objects of ``codec``."""
    return codec.objects.map(lambda obj: (obj, codec.encode(obj)))


def valid_packets() -> st.SearchStrategy[tuple[Codec, Any, bytes]]:
    """``(codec, object, encoding)`` triples across every format."""
    return st.sampled_from(CODECS).flatmap(
        lambda codec: encodings(codec).map(lambda pair: (codec, *pair))
    )


def mutated_encodings(codec: Codec) -> st.SearchStrategy[bytes]:
    """Encodings of legal objects, damaged by the codec's mutator."""
    return encodings(codec).flatmap(lambda pair: codec.mutants(pair[1]))


# --- wrong values, for the encoders ---------------------------------------------


def junk() -> st.SearchStrategy[object]:
    """Values of the wrong type or range for any field."""
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(),
        st.binary(max_size=40),
        st.text(max_size=8),
        st.lists(st.integers(-1, 300), max_size=3).map(tuple),
        st.just(object()),
    )


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths (field names and tuple indexes) to every value inside ``obj``."""
    paths = [prefix] if prefix else []
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for field in dataclasses.fields(obj):
            paths += _paths(getattr(obj, field.name), (*prefix, field.name))
    elif isinstance(obj, tuple):
        for index, item in enumerate(obj):
            paths += _paths(item, (*prefix, index))
    return paths


def replace_at(obj: Any, path: tuple[Any, ...], value: Any) -> Any:
    """``obj`` with the value at ``path`` (from :func:`_paths`) replaced."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(head, int):
        return (*obj[:head], replace_at(obj[head], rest, value), *obj[head + 1 :])
    return dataclasses.replace(obj, **{head: replace_at(getattr(obj, head), rest, value)})


@st.composite
def corrupted(draw: st.DrawFn, obj: Any) -> Any:
    """``obj`` with one field, at any depth, replaced by :func:`junk`."""
    path = draw(st.sampled_from(_paths(obj)))
    return replace_at(obj, path, draw(junk()))
