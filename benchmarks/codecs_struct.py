"""A hand-written ``struct`` codec for the benchmarked messages: the baseline.

It reads and writes the same bytes as ``ref.wire``, returns the same frozen
dataclasses and makes the same checks with the same error codes, but every
layout is written out by hand.  It covers what the benchmark times: SAL
packets (base header and every extension) and ServalDHT RESOLVE and
RESOLVE_RESPONSE messages with their records.  ``run.py`` checks that it
agrees with ``ref.wire`` on the benchmarked messages before timing anything.
"""

from __future__ import annotations

import ipaddress
import struct

from ref.wire import (
    Control,
    ControlFlags,
    DhtMessage,
    Endpoint,
    ErrorCode,
    ExtensionType,
    LocalProtocolError,
    MessageFlags,
    MessageType,
    NodeInfo,
    RecordEndpoint,
    RecordFlags,
    RemoteProtocolError,
    Resolve,
    ResolveResponse,
    ResolveStatus,
    SalPacket,
    ServiceRecord,
    ServiceRole,
    SourceRoute,
    TransportProtocol,
    UnknownExtension,
    internet_checksum,
)
from ref.wire.constants import (
    BLOCK_SIZE,
    DHT_HEADER_LENGTH,
    DHT_VERSION,
    MAX_DHT_MESSAGE,
    MAX_ENDPOINTS,
    MAX_EXTENSIONS,
    MAX_NODES_PER_MESSAGE,
    MAX_RECORD_LIFETIME,
    MAX_SOURCE_ENTRIES,
    MAX_UDP_PAYLOAD,
    SIGNATURE_LENGTH,
)

_BASE = struct.Struct(">IIBBH")
_CONTROL = struct.Struct(">BBBBII8s")
_SERVICE = struct.Struct(">BBBB32s")
_SOURCE = struct.Struct(">BBBB")
_ENDPOINT = struct.Struct(">16sHH")
_DHT_HEADER = struct.Struct(">BBBB8s32s16s")
_RESOLVE_RESPONSE = struct.Struct(">BBBB")
_NODE = struct.Struct(">32s16sHH")
_RECORD = struct.Struct(">32s32sQQIBBH")
_RECORD_ENDPOINT = struct.Struct(">16sHBBHH")
_V4_MAPPED = bytes(10) + b"\xff\xff"
_PROTOCOLS = {p.value: p for p in TransportProtocol}
_TYPES = {t.value: t for t in MessageType}
_STATUSES = {s.value: s for s in ResolveStatus}


def _malformed(message: str, code: ErrorCode = ErrorCode.MALFORMED) -> RemoteProtocolError:
    return RemoteProtocolError(message, code)


def _address(raw: bytes) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if raw[:12] == _V4_MAPPED:
        return ipaddress.IPv4Address(raw[12:])
    return ipaddress.IPv6Address(raw)


def _packed(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
    if isinstance(address, ipaddress.IPv4Address):
        return _V4_MAPPED + address.packed
    return address.packed


# --- SAL -------------------------------------------------------------------------


def decode_sal(data: bytes) -> SalPacket:
    """Decode one SAL packet; raise only ``RemoteProtocolError``."""
    if len(data) > MAX_UDP_PAYLOAD:
        raise _malformed("packet larger than a UDP payload")
    if len(data) < _BASE.size:
        raise _malformed("shorter than the base header")
    source_flow, destination_flow, words, protocol, _ = _BASE.unpack_from(data)
    header_end = words * 4
    if header_end < _BASE.size or header_end > len(data):
        raise _malformed("bad header length")
    if internet_checksum(data) != 0:
        raise _malformed("checksum does not verify", ErrorCode.BAD_CHECKSUM)
    control = destination = source = route = None
    unknown: list[UnknownExtension] = []
    offset, count, previous = _BASE.size, 0, (-1, -1)
    while offset < header_end:
        count += 1
        if count > MAX_EXTENSIONS:
            raise _malformed("too many extensions", ErrorCode.LIMIT_EXCEEDED)
        if offset + 2 > header_end:
            raise _malformed("truncated extension header")
        ext_type, length = data[offset], data[offset + 1]
        if length < 4 or length % 4 or offset + length > header_end:
            raise _malformed("bad extension length")
        key = (ext_type, data[offset + 2] if ext_type == ExtensionType.SERVICE else 0)
        if key < previous or (key == previous and ext_type < 0x80):
            raise _malformed("extensions out of order or repeated", ErrorCode.EXTENSION_ORDER)
        previous = key
        if ext_type == ExtensionType.CONTROL:
            if length != _CONTROL.size:
                raise _malformed("CONTROL is 20 bytes")
            _, _, flags, _, verno, ackno, nonce = _CONTROL.unpack_from(data, offset)
            control = Control(ControlFlags(flags), verno, ackno, nonce)
        elif ext_type == ExtensionType.SERVICE:
            if length != _SERVICE.size:
                raise _malformed("SERVICE is 36 bytes")
            _, _, role, _, service_id = _SERVICE.unpack_from(data, offset)
            if role == ServiceRole.DESTINATION:
                destination = service_id
            elif role == ServiceRole.SOURCE:
                source = service_id
            else:
                raise _malformed(f"{role} is not a ServiceRole")
        elif ext_type == ExtensionType.SOURCE:
            entries, rest = divmod(length - 4, _ENDPOINT.size)
            if rest or not entries:
                raise _malformed("SOURCE extension length is not 4 + 20 * N with N >= 1")
            hop_limit = data[offset + 2]
            route = SourceRoute(
                hop_limit,
                tuple(
                    Endpoint(_address(raw), port)
                    for raw, port, _ in _ENDPOINT.iter_unpack(data[offset + 4 : offset + length])
                ),
            )
        elif ext_type < 0x80:
            raise _malformed(
                f"unknown must-understand extension type {ext_type}",
                ErrorCode.UNKNOWN_CRITICAL_EXTENSION,
            )
        else:
            unknown.append(UnknownExtension(ext_type, data[offset + 2 : offset + length]))
        offset += length
    return SalPacket(
        source_flow_id=source_flow,
        destination_flow_id=destination_flow,
        protocol=_PROTOCOLS.get(protocol, protocol),
        control=control,
        destination_service=destination,
        source_service=source,
        source_route=route,
        unknown_extensions=tuple(unknown),
        payload=data[header_end:],
    )


def encode_sal(packet: SalPacket) -> bytes:
    """Encode a SAL packet with its checksum; raise only ``LocalProtocolError``."""
    try:
        parts = []
        if packet.control is not None:
            c = packet.control
            if len(c.nonce) != 8:
                raise LocalProtocolError("the nonce is 8 bytes")
            parts.append(_CONTROL.pack(1, 20, int(c.flags), 0, c.verno, c.ackno, c.nonce))
        for role, service_id in (
            (ServiceRole.DESTINATION, packet.destination_service),
            (ServiceRole.SOURCE, packet.source_service),
        ):
            if service_id is not None:
                if len(service_id) != 32:
                    raise LocalProtocolError("a serviceID is 32 bytes")
                parts.append(_SERVICE.pack(2, 36, role, 0, service_id))
        if packet.source_route is not None:
            entries = packet.source_route.entries
            if not 1 <= len(entries) <= MAX_SOURCE_ENTRIES:
                raise LocalProtocolError("SOURCE holds 1 to 12 entries")
            parts.append(_SOURCE.pack(3, 4 + 20 * len(entries), packet.source_route.hop_limit, 0))
            parts.extend(_ENDPOINT.pack(_packed(e.address), e.port, 0) for e in entries)
        for ext in sorted(packet.unknown_extensions, key=lambda e: e.type):
            if ext.type < 0x80 or len(ext.value) % 4 != 2:
                raise LocalProtocolError("bad unknown extension")
            parts.append(bytes((ext.type, 2 + len(ext.value))) + ext.value)
        if len(parts) > MAX_EXTENSIONS:
            raise LocalProtocolError("too many extensions", ErrorCode.LIMIT_EXCEEDED)
        extensions = b"".join(parts)
        words = (_BASE.size + len(extensions)) // 4
        head = (packet.source_flow_id, packet.destination_flow_id, words, int(packet.protocol))
        data = _BASE.pack(*head, 0) + extensions + packet.payload
    except (struct.error, TypeError, ValueError, AttributeError) as exc:
        raise LocalProtocolError(f"cannot encode SAL packet: {exc}") from exc
    if len(data) > MAX_UDP_PAYLOAD:
        raise LocalProtocolError("packet larger than a UDP payload")
    return data[:10] + internet_checksum(data).to_bytes(2, "big") + data[12:]


# --- ServalDHT -------------------------------------------------------------------


def _check_record(
    record: ServiceRecord, error: type[LocalProtocolError | RemoteProtocolError]
) -> None:
    if record.service_id[-1] % BLOCK_SIZE:
        raise error("a record names the first serviceID of its block", ErrorCode.BAD_SERVICE_ID)
    if not 1 <= record.lifetime <= MAX_RECORD_LIFETIME:
        raise error("bad lifetime")
    if len(record.endpoints) > MAX_ENDPOINTS:
        raise error("too many endpoints", ErrorCode.LIMIT_EXCEEDED)
    if (not record.endpoints) != bool(record.flags & RecordFlags.TOMBSTONE):
        raise error("a tombstone has no endpoints and a live record has at least one")
    for endpoint in record.endpoints:
        if endpoint.weight < 1 or endpoint.service_mask == 0:
            raise error("endpoint weight or service mask")
    if record.flags & ~RecordFlags.TOMBSTONE:
        raise error("unassigned record flags must be zero")


def _decode_record(data: bytes, offset: int) -> tuple[ServiceRecord, int]:
    service_id, owner, sequence, issued, lifetime, flags, count, reserved = _RECORD.unpack_from(
        data, offset
    )
    if reserved:
        raise _malformed("record reserved field")
    offset += _RECORD.size
    endpoints = []
    for _ in range(count):
        raw, port, priority, mask, weight, reserved = _RECORD_ENDPOINT.unpack_from(data, offset)
        if reserved:
            raise _malformed("endpoint reserved field")
        endpoints.append(RecordEndpoint(_address(raw), port, priority, weight, mask))
        offset += _RECORD_ENDPOINT.size
    signature = data[offset : offset + SIGNATURE_LENGTH]
    if len(signature) != SIGNATURE_LENGTH:
        raise _malformed("truncated record signature")
    record = ServiceRecord(
        service_id,
        owner,
        sequence,
        issued,
        lifetime,
        RecordFlags(flags),
        tuple(endpoints),
        signature,
    )
    return record, offset + SIGNATURE_LENGTH


def _encode_record(record: ServiceRecord) -> bytes:
    _check_record(record, LocalProtocolError)
    if len(record.signature) != SIGNATURE_LENGTH:
        raise LocalProtocolError("signature is 64 bytes")
    head = (record.service_id, record.owner_key, record.sequence, record.issued_at)
    parts = [_RECORD.pack(*head, record.lifetime, int(record.flags), len(record.endpoints), 0)]
    for e in record.endpoints:
        packed = _packed(e.address)
        parts.append(_RECORD_ENDPOINT.pack(packed, e.port, e.priority, e.service_mask, e.weight, 0))
    parts.append(record.signature)
    return b"".join(parts)


def _decode_resolve_response(body: bytes) -> ResolveResponse:
    status, record_count, node_count, _ = _RESOLVE_RESPONSE.unpack_from(body)
    if status not in _STATUSES:
        raise _malformed(f"{status} is not a ResolveStatus")
    offset = _RESOLVE_RESPONSE.size
    record = None
    if record_count == 1:
        record, offset = _decode_record(body, offset)
        _check_record(record, RemoteProtocolError)
    nodes = []
    for _ in range(node_count):
        key, raw, port, _ = _NODE.unpack_from(body, offset)
        nodes.append(NodeInfo(key, Endpoint(_address(raw), port)))
        offset += _NODE.size
    if offset != len(body):
        raise _malformed("bytes after the RESOLVE_RESPONSE body")
    if len(nodes) > MAX_NODES_PER_MESSAGE:
        raise _malformed("too many nodes", ErrorCode.LIMIT_EXCEEDED)
    response = ResolveResponse(_STATUSES[status], record, tuple(nodes))
    _check_resolve_response(response, RemoteProtocolError)
    return response


def _check_resolve_response(
    body: ResolveResponse, error: type[LocalProtocolError | RemoteProtocolError]
) -> None:
    if body.status == ResolveStatus.FOUND:
        consistent = body.record is not None and not body.nodes
    elif body.status == ResolveStatus.NOT_FOUND:
        consistent = body.record is None and not body.nodes
    else:
        consistent = body.record is None and bool(body.nodes)
    if not consistent:
        raise error(f"RESOLVE_RESPONSE {body.status.name} with wrong contents")


def decode_dht(data: bytes) -> DhtMessage:
    """Decode a RESOLVE or RESOLVE_RESPONSE (unsigned); raise only ``RemoteProtocolError``."""
    if len(data) > MAX_DHT_MESSAGE:
        raise _malformed("message too long", ErrorCode.LIMIT_EXCEEDED)
    if len(data) < DHT_HEADER_LENGTH:
        raise _malformed("shorter than the header")
    version, type_value, flag_bits, _, transaction_id, sender_key, token = _DHT_HEADER.unpack_from(
        data
    )
    if version != DHT_VERSION:
        raise _malformed(f"version {version}", ErrorCode.UNSUPPORTED_VERSION)
    message_type = _TYPES.get(type_value)
    if message_type is None:
        raise _malformed(f"message type {type_value}", ErrorCode.UNKNOWN_MESSAGE_TYPE)
    flags = MessageFlags(flag_bits)
    if flags & MessageFlags.SIGNED:
        raise NotImplementedError("the baseline times unsigned messages only")
    body_bytes = data[DHT_HEADER_LENGTH:]
    try:
        if message_type == MessageType.RESOLVE:
            if len(body_bytes) != 32:
                raise _malformed("RESOLVE body is 32 bytes")
            body: Resolve | ResolveResponse = Resolve(body_bytes)
        elif message_type == MessageType.RESOLVE_RESPONSE:
            body = _decode_resolve_response(body_bytes)
        else:
            raise NotImplementedError(f"the baseline does not time {message_type.name}")
    except struct.error as exc:
        raise _malformed(f"malformed ServalDHT message: {exc}") from exc
    return DhtMessage(body, transaction_id, sender_key, token, flags, None)


def encode_dht(message: DhtMessage) -> bytes:
    """Encode a RESOLVE or RESOLVE_RESPONSE (unsigned); raise only ``LocalProtocolError``."""
    body = message.body
    try:
        if isinstance(body, Resolve):
            if len(body.service_id) != 32:
                raise LocalProtocolError("identifier is 32 bytes")
            body_bytes = body.service_id
        elif isinstance(body, ResolveResponse):
            _check_resolve_response(body, LocalProtocolError)
            if len(body.nodes) > MAX_NODES_PER_MESSAGE:
                raise LocalProtocolError("too many nodes", ErrorCode.LIMIT_EXCEEDED)
            has_record = body.record is not None
            parts = [_RESOLVE_RESPONSE.pack(body.status, has_record, len(body.nodes), 0)]
            if body.record is not None:
                parts.append(_encode_record(body.record))
            for node in body.nodes:
                address = _packed(node.endpoint.address)
                parts.append(_NODE.pack(node.key, address, node.endpoint.port, 0))
            body_bytes = b"".join(parts)
        else:
            raise NotImplementedError(f"the baseline does not time {body.TYPE.name}")
        if message.signature is not None:
            raise NotImplementedError("the baseline times unsigned messages only")
        for value, size in (
            (message.transaction_id, 8),
            (message.sender_key, 32),
            (message.token, 16),
        ):
            if len(value) != size:
                raise LocalProtocolError("header field of the wrong length")
        flags = int(message.flags & ~MessageFlags.SIGNED)
        head = _DHT_HEADER.pack(
            DHT_VERSION,
            body.TYPE,
            flags,
            0,
            message.transaction_id,
            message.sender_key,
            message.token,
        )
    except (struct.error, TypeError, ValueError, AttributeError) as exc:
        raise LocalProtocolError(f"cannot encode ServalDHT message: {exc}") from exc
    data = head + body_bytes
    if len(data) > MAX_DHT_MESSAGE:
        raise LocalProtocolError("message too long", ErrorCode.LIMIT_EXCEEDED)
    return data
