"""SAL wire formats (draft Section 5): base header, extensions, stream segments.

One ``decode_sal``/``encode_sal`` boundary.  Extensions travel in canonical
order (ascending type; the destination SERVICE before the source SERVICE);
unknown types below 0x80 are must-understand and reject the packet, unknown
types from 0x80 up are skipped and kept so a forwarder can pass them on.
"""

from __future__ import annotations

import dataclasses
import struct
from enum import IntEnum, IntFlag
from typing import Any

import construct as cs

from ref.wire._codec import (
    AddressAdapter,
    EnumAdapter,
    FlagsAdapter,
    IPAddress,
    decoding,
    encoding,
    local,
    remote,
)
from ref.wire.constants import (
    BASE_HEADER_LENGTH,
    EXTENSION_ALIGNMENT,
    FIRST_IGNORABLE_EXTENSION_TYPE,
    MAX_EXTENSIONS,
    MAX_SOURCE_ENTRIES,
    MAX_UDP_PAYLOAD,
    NONCE_LENGTH,
    SERVICE_ID_LENGTH,
)
from ref.wire.errors import ErrorCode
from ref.wire.fast import DERIVED, INTERPRETED, Engine, fixed_struct


class TransportProtocol(IntEnum):
    """Values of the base header's Protocol field (draft Section 5.2)."""

    NONE = 0
    DATAGRAM = 1
    STREAM = 2


class ExtensionType(IntEnum):
    """SAL extension types (draft Section 5.3)."""

    CONTROL = 1
    SERVICE = 2
    SOURCE = 3


class ControlFlags(IntFlag):
    """Flags of the CONTROL extension (draft Section 5.3.2)."""

    SYN = 0x80
    RSYN = 0x40
    ACK = 0x20
    NACK = 0x10
    RST = 0x08
    FIN = 0x04


class ServiceRole(IntEnum):
    """Which end of the exchange a SERVICE extension names (draft Section 5.3.3)."""

    DESTINATION = 1
    SOURCE = 2


class StreamFlags(IntFlag):
    """Flags of a stream segment (draft Section 5.14.2)."""

    ACK = 0x80
    FIN = 0x40


# --- declarations ------------------------------------------------------------

BaseHeaderFormat = cs.Struct(
    "source_flow_id" / cs.Int32ub,
    "destination_flow_id" / cs.Int32ub,
    "header_length" / cs.Int8ub,
    "protocol" / cs.Int8ub,
    "checksum" / cs.Int16ub,
)

EndpointFormat = cs.Struct(
    "address" / AddressAdapter(),
    "port" / cs.Int16ub,
    "reserved" / cs.Default(cs.Int16ub, 0),
)

ExtensionHeaderFormat = cs.Struct(
    "type" / cs.Int8ub,
    "length" / cs.Rebuild(cs.Int8ub, lambda this: 4 + len(this.body)),
    "type_specific" / cs.Bytes(2),
    "body" / cs.Bytes(lambda this: this.length - 4),
)

ControlExtensionFormat = cs.Struct(
    "type" / cs.Const(ExtensionType.CONTROL.value, cs.Int8ub),
    "length" / cs.Const(20, cs.Int8ub),
    "flags" / FlagsAdapter(cs.Int8ub, ControlFlags),
    "reserved" / cs.Default(cs.Int8ub, 0),
    "verno" / cs.Int32ub,
    "ackno" / cs.Int32ub,
    "nonce" / cs.Bytes(NONCE_LENGTH),
)

ServiceExtensionFormat = cs.Struct(
    "type" / cs.Const(ExtensionType.SERVICE.value, cs.Int8ub),
    "length" / cs.Const(36, cs.Int8ub),
    "role" / EnumAdapter(cs.Int8ub, ServiceRole),
    "reserved" / cs.Default(cs.Int8ub, 0),
    "service_id" / cs.Bytes(SERVICE_ID_LENGTH),
)

_ENDPOINT_SIZE = EndpointFormat.sizeof()

SourceExtensionFormat = cs.Struct(
    "type" / cs.Const(ExtensionType.SOURCE.value, cs.Int8ub),
    "length" / cs.Rebuild(cs.Int8ub, lambda this: 4 + _ENDPOINT_SIZE * len(this.entries)),
    "hop_limit" / cs.Int8ub,
    "reserved" / cs.Default(cs.Int8ub, 0),
    "entries" / cs.Array(lambda this: (this.length - 4) // _ENDPOINT_SIZE, EndpointFormat),
)

StreamHeaderFormat = cs.Struct(
    "sequence" / cs.Int32ub,
    "acknowledgment" / cs.Int32ub,
    "flags" / FlagsAdapter(cs.Int8ub, StreamFlags),
    "reserved" / cs.Default(cs.Int8ub, 0),
    "window" / cs.Int16ub,
)
STREAM_HEADER_LENGTH = StreamHeaderFormat.sizeof()


# --- objects -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """An address and UDP port (the 20-byte Endpoint format)."""

    address: IPAddress
    port: int


@dataclasses.dataclass(frozen=True)
class Control:
    """The CONTROL extension: flags, control sequence numbers and the nonce."""

    flags: ControlFlags
    verno: int
    ackno: int
    nonce: bytes


@dataclasses.dataclass(frozen=True)
class SourceRoute:
    """The SOURCE extension: the client and the forwarders a packet passed."""

    hop_limit: int
    entries: tuple[Endpoint, ...]


@dataclasses.dataclass(frozen=True)
class UnknownExtension:
    """An ignorable extension (type 0x80 or higher) this codec does not know."""

    type: int
    value: bytes


@dataclasses.dataclass(frozen=True)
class SalPacket:
    """A whole SAL packet: base header fields, extensions and payload."""

    source_flow_id: int
    destination_flow_id: int
    protocol: TransportProtocol | int
    control: Control | None = None
    destination_service: bytes | None = None
    source_service: bytes | None = None
    source_route: SourceRoute | None = None
    unknown_extensions: tuple[UnknownExtension, ...] = ()
    payload: bytes = b""


@dataclasses.dataclass(frozen=True)
class StreamSegment:
    """A segment of the stream transport (the payload of a STREAM packet)."""

    sequence: int
    acknowledgment: int
    flags: StreamFlags
    window: int
    data: bytes = b""


# --- checksum ----------------------------------------------------------------


def internet_checksum(data: bytes) -> int:
    """The 16-bit ones' complement checksum of RFC 1071.

    Because 2**16 is 1 modulo 0xFFFF, the ones' complement sum of the 16-bit
    words equals the whole buffer, read as one integer, modulo 0xFFFF.
    """
    number = int.from_bytes(data, "big")
    return _checksum_of(number << 8 if len(data) % 2 else number)  # the pad octet


def _checksum_of(number: int) -> int:
    """The checksum of a buffer read as the integer ``number`` (padded to even length).

    Reading a buffer as the sum of integers of even-length pieces (each
    shifted by a multiple of 16 bits, which is 1 modulo 0xFFFF) gives the same
    result, which is how :func:`encode_stream_packet` sums its parts apart.
    """
    total = number % 0xFFFF
    if total == 0 and number:
        total = 0xFFFF
    return ~total & 0xFFFF


# --- codec -------------------------------------------------------------------


def _with_checksum(data: bytes) -> bytes:
    """``data``, a packet with a zero Checksum field, with its checksum put in (SAL-CSUM-1)."""
    return data[:10] + internet_checksum(data).to_bytes(2, "big") + data[12:]


def decode_sal(data: bytes) -> SalPacket:
    """Decode one SAL packet (a UDP payload); raise only ``RemoteProtocolError``."""
    packet = _decode_common(data)
    return packet if packet is not None else _decode_sal(data, DERIVED)


def decode_sal_interpreted(data: bytes) -> SalPacket:
    """:func:`decode_sal` through Construct's interpreter (the fast path's reference)."""
    return _decode_sal(data, INTERPRETED)


def _decode_sal(data: bytes, engine: Engine) -> SalPacket:
    with decoding("SAL packet"):
        remote(len(data) <= MAX_UDP_PAYLOAD, "packet larger than a UDP payload")
        remote(len(data) >= BASE_HEADER_LENGTH, "shorter than the base header")
        base = engine.parse(BaseHeaderFormat, data)
        header_bytes = base.header_length * 4
        remote(header_bytes >= BASE_HEADER_LENGTH, "header length below 3 words")
        remote(header_bytes <= len(data), "header length beyond the packet")
        remote(
            internet_checksum(data) == 0,
            "checksum does not verify",
            ErrorCode.BAD_CHECKSUM,
        )
        fields = _decode_extensions(data[BASE_HEADER_LENGTH:header_bytes], engine)
        return SalPacket(
            source_flow_id=base.source_flow_id,
            destination_flow_id=base.destination_flow_id,
            protocol=_protocol(base.protocol),
            payload=data[header_bytes:],
            **fields,
        )


def _protocol(value: int) -> TransportProtocol | int:
    try:
        return TransportProtocol(value)
    except ValueError:
        return value


_KNOWN_FORMATS: dict[int, cs.Struct] = {
    ExtensionType.CONTROL: ControlExtensionFormat,
    ExtensionType.SERVICE: ServiceExtensionFormat,
    ExtensionType.SOURCE: SourceExtensionFormat,
}


def _decode_extensions(area: bytes, engine: Engine) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    unknown: list[UnknownExtension] = []
    offset = 0
    previous: tuple[int, int] | None = None
    count = 0
    while offset < len(area):
        count += 1
        remote(count <= MAX_EXTENSIONS, "too many extensions", ErrorCode.LIMIT_EXCEEDED)
        remote(offset + 2 <= len(area), "truncated extension header")
        ext_type, length = area[offset], area[offset + 1]
        remote(length >= 4 and length % EXTENSION_ALIGNMENT == 0, "bad extension length")
        remote(offset + length <= len(area), "extension runs past the header")
        chunk = area[offset : offset + length]
        offset += length
        key = (ext_type, chunk[2] if ext_type == ExtensionType.SERVICE else 0)
        remote(
            previous is None or key > previous or (key == previous and key[0] >= 0x80),
            "extensions out of order or repeated",
            ErrorCode.EXTENSION_ORDER,
        )
        previous = key
        fmt = _KNOWN_FORMATS.get(ext_type)
        if fmt is None:
            remote(
                ext_type >= FIRST_IGNORABLE_EXTENSION_TYPE,
                f"unknown must-understand extension type {ext_type}",
                ErrorCode.UNKNOWN_CRITICAL_EXTENSION,
            )
            generic = engine.parse_exact(ExtensionHeaderFormat, chunk)
            unknown.append(UnknownExtension(ext_type, generic.type_specific + generic.body))
            continue
        if ext_type == ExtensionType.CONTROL:
            fields["control"] = engine.load(fmt, Control, chunk)
        elif ext_type == ExtensionType.SERVICE:
            parsed = engine.parse_exact(fmt, chunk)
            name = (
                "destination_service"
                if parsed.role == ServiceRole.DESTINATION
                else "source_service"
            )
            fields[name] = parsed.service_id
        else:
            source_route = engine.load(fmt, SourceRoute, chunk)
            remote(
                (length - 4) % _ENDPOINT_SIZE == 0 and (length - 4) // _ENDPOINT_SIZE >= 1,
                "SOURCE extension length is not 4 + 20 * N with N >= 1",
            )
            remote(
                (length - 4) // _ENDPOINT_SIZE <= MAX_SOURCE_ENTRIES,
                "SOURCE extension has too many entries",
                ErrorCode.LIMIT_EXCEEDED,
            )
            fields["source_route"] = source_route
    if unknown:
        fields["unknown_extensions"] = tuple(unknown)
    return fields


def encode_sal(packet: SalPacket) -> bytes:
    """Encode a SAL packet with its checksum; raise only ``LocalProtocolError``."""
    data = _encode_common(packet)
    return data if data is not None else _encode_sal(packet, DERIVED)


def encode_sal_interpreted(packet: SalPacket) -> bytes:
    """:func:`encode_sal` through Construct's interpreter (the fast path's reference)."""
    return _encode_sal(packet, INTERPRETED)


def _encode_sal(packet: SalPacket, engine: Engine) -> bytes:
    with encoding("SAL packet"):
        parts = []
        if packet.control is not None:
            parts.append(engine.dump(ControlExtensionFormat, packet.control))
        for role, service_id in (
            (ServiceRole.DESTINATION, packet.destination_service),
            (ServiceRole.SOURCE, packet.source_service),
        ):
            if service_id is not None:
                local(len(service_id) == SERVICE_ID_LENGTH, "a serviceID is 32 bytes")
                parts.append(
                    engine.build(ServiceExtensionFormat, {"role": role, "service_id": service_id})
                )
        if packet.source_route is not None:
            entries = len(packet.source_route.entries)
            local(1 <= entries <= MAX_SOURCE_ENTRIES, "SOURCE holds 1 to 12 entries")
            parts.append(engine.dump(SourceExtensionFormat, packet.source_route))
        for ext in sorted(packet.unknown_extensions, key=lambda e: e.type):
            local(ext.type >= FIRST_IGNORABLE_EXTENSION_TYPE, "unknown types start at 0x80")
            local(len(ext.value) % 4 == 2, "extension length must be a multiple of 4")
            parts.append(
                engine.build(
                    ExtensionHeaderFormat,
                    {"type": ext.type, "type_specific": ext.value[:2], "body": ext.value[2:]},
                )
            )
        local(len(parts) <= MAX_EXTENSIONS, "too many extensions", ErrorCode.LIMIT_EXCEEDED)
        extensions = b"".join(parts)
        header_length = (BASE_HEADER_LENGTH + len(extensions)) // 4
        header = engine.build(
            BaseHeaderFormat,
            {
                "source_flow_id": packet.source_flow_id,
                "destination_flow_id": packet.destination_flow_id,
                "header_length": header_length,
                "protocol": int(packet.protocol),
                "checksum": 0,
            },
        )
        data = header + extensions + packet.payload
        local(len(data) <= MAX_UDP_PAYLOAD, "packet larger than a UDP payload")
        return _with_checksum(data)


def decode_stream(payload: bytes) -> StreamSegment:
    """Decode the payload of a STREAM packet into a segment."""
    if type(payload) is bytes and len(payload) >= STREAM_HEADER_LENGTH:
        sequence, acknowledgment, flags, _, window = _STREAM_HEADER.unpack_from(payload)
        return StreamSegment(
            sequence, acknowledgment, _STREAM_FLAGS[flags], window, payload[STREAM_HEADER_LENGTH:]
        )
    return _decode_stream(payload, DERIVED)


def decode_stream_interpreted(payload: bytes) -> StreamSegment:
    """:func:`decode_stream` through Construct's interpreter (the fast path's reference)."""
    return _decode_stream(payload, INTERPRETED)


def _decode_stream(payload: bytes, engine: Engine) -> StreamSegment:
    with decoding("stream segment"):
        remote(len(payload) >= STREAM_HEADER_LENGTH, "shorter than the stream header")
        header = engine.parse(StreamHeaderFormat, payload)
        return StreamSegment(
            sequence=header.sequence,
            acknowledgment=header.acknowledgment,
            flags=header.flags,
            window=header.window,
            data=payload[STREAM_HEADER_LENGTH:],
        )


def encode_stream(segment: StreamSegment) -> bytes:
    """Encode a stream segment (header and data)."""
    header = _stream_header(segment)
    return header + segment.data if header is not None else _encode_stream(segment, DERIVED)


def _stream_header(segment: StreamSegment) -> bytes | None:
    """The segment header of a segment the shortcut can vouch for, or None."""
    if type(segment) is not StreamSegment or type(segment.data) is not bytes:
        return None
    try:
        return _STREAM_HEADER.pack(
            segment.sequence, segment.acknowledgment, segment.flags, 0, segment.window
        )
    except (struct.error, TypeError):
        return None  # the general path says what is wrong


def encode_stream_packet(
    source_flow_id: int, destination_flow_id: int, segment: StreamSegment
) -> bytes:
    """A STREAM data packet of a flow, without extensions, carrying ``segment``.

    The same octets as ``encode_sal(SalPacket(source_flow_id,
    destination_flow_id, TransportProtocol.STREAM, payload=encode_stream(segment)))``
    (which is what anything this shortcut cannot vouch for goes through),
    written in one step: the commonest packet of all, built without the
    intermediate objects and copies.
    """
    header = _stream_header(segment)
    if header is not None and _STREAM_PACKET_HEADERS + len(segment.data) <= MAX_UDP_PAYLOAD:
        data = segment.data
        try:
            base = _BASE_HEADER.pack(
                source_flow_id, destination_flow_id, _PLAIN_WORDS, TransportProtocol.STREAM, 0
            )
        except (struct.error, TypeError):
            pass  # the general path says what is wrong
        else:
            body = int.from_bytes(data, "big")
            checksum = _checksum_of(
                int.from_bytes(base + header, "big") + (body << 8 if len(data) % 2 else body)
            )
            return b"".join((base[:10], checksum.to_bytes(2, "big"), header, data))
    packet = SalPacket(
        source_flow_id,
        destination_flow_id,
        TransportProtocol.STREAM,
        payload=encode_stream(segment),
    )
    return encode_sal(packet)


def encode_stream_interpreted(segment: StreamSegment) -> bytes:
    """:func:`encode_stream` through Construct's interpreter (the fast path's reference)."""
    return _encode_stream(segment, INTERPRETED)


def _encode_stream(segment: StreamSegment, engine: Engine) -> bytes:
    with encoding("stream segment"):
        return engine.dump(StreamHeaderFormat, segment) + segment.data


# --- the shortcut for the commonest packets --------------------------------------
#
# Nearly every packet of a flow is a data packet without extensions or a control
# packet with only CONTROL.  For those two shapes the codec reads and writes the
# fields with the structs derived from the declarations above and applies the
# same checks as the general path; any other input, and any input the shortcut
# would reject, takes the general path, which then decodes it or says precisely
# why not.  tests/wire/test_sal_shortcut.py holds the two paths to the same
# results, and the differential fuzz campaign (sal-diff) does so at scale.

_BASE_HEADER = fixed_struct(BaseHeaderFormat)
_CONTROL_EXTENSION = fixed_struct(ControlExtensionFormat)
_STREAM_HEADER = fixed_struct(StreamHeaderFormat)
_CONTROL_LENGTH = ControlExtensionFormat.sizeof()
_PLAIN_WORDS = BASE_HEADER_LENGTH // 4
_CONTROL_WORDS = (BASE_HEADER_LENGTH + _CONTROL_LENGTH) // 4
_CONTROL_END = BASE_HEADER_LENGTH + _CONTROL_LENGTH
_STREAM_PACKET_HEADERS = BASE_HEADER_LENGTH + STREAM_HEADER_LENGTH
_PROTOCOLS: dict[int, TransportProtocol] = {p.value: p for p in TransportProtocol}
#: What FlagsAdapter makes of each octet (unknown bits kept), made once: the
#: flags of a Control built from an int (``CONTROL_FLAGS[value]``).
CONTROL_FLAGS = tuple(ControlFlags(value) for value in range(256))
_STREAM_FLAGS = tuple(StreamFlags(value) for value in range(256))


def _decode_common(data: bytes) -> SalPacket | None:
    """A valid packet of the two common shapes, or None for the general path."""
    if type(data) is not bytes or not BASE_HEADER_LENGTH <= len(data) <= MAX_UDP_PAYLOAD:
        return None
    words = data[8]
    if words == _PLAIN_WORDS:
        control = None
    elif (
        words == _CONTROL_WORDS
        and len(data) >= _CONTROL_END
        and data[BASE_HEADER_LENGTH] == ExtensionType.CONTROL
        and data[BASE_HEADER_LENGTH + 1] == _CONTROL_LENGTH
    ):
        _, _, flags, _, verno, ackno, nonce = _CONTROL_EXTENSION.unpack_from(
            data, BASE_HEADER_LENGTH
        )
        control = Control(CONTROL_FLAGS[flags], verno, ackno, nonce)
    else:
        return None
    if internet_checksum(data) != 0:
        return None
    source, destination, _, protocol, _ = _BASE_HEADER.unpack_from(data)
    return SalPacket(
        source,
        destination,
        _PROTOCOLS.get(protocol, protocol),
        control,
        payload=data[words * 4 :],
    )


def _encode_common(packet: SalPacket) -> bytes | None:
    """The bytes of a packet of the two common shapes, or None for the general path."""
    if (
        type(packet) is not SalPacket
        or packet.destination_service is not None
        or packet.source_service is not None
        or packet.source_route is not None
        or packet.unknown_extensions
        or type(packet.payload) is not bytes
    ):
        return None
    control = packet.control
    try:
        if control is None:
            head = _BASE_HEADER.pack(
                packet.source_flow_id, packet.destination_flow_id, _PLAIN_WORDS, packet.protocol, 0
            )
        elif type(control) is Control and len(control.nonce) == NONCE_LENGTH:
            head = _BASE_HEADER.pack(
                packet.source_flow_id,
                packet.destination_flow_id,
                _CONTROL_WORDS,
                packet.protocol,
                0,
            ) + _CONTROL_EXTENSION.pack(
                ExtensionType.CONTROL,
                _CONTROL_LENGTH,
                control.flags,
                0,
                control.verno,
                control.ackno,
                control.nonce,
            )
        else:
            return None
    except (struct.error, TypeError):
        return None  # the general path says what is wrong
    data = head + packet.payload
    if len(data) > MAX_UDP_PAYLOAD:
        return None
    return _with_checksum(data)
