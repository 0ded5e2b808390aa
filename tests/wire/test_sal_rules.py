"""SAL wire rules (draft Section 5): checksum, header length, extension layout and order.

The checksum is checked against a plain RFC 1071 loop written here; layouts are
checked byte by byte against the draft's figures.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ref.wire import (
    Control,
    ControlFlags,
    Endpoint,
    ErrorCode,
    RemoteProtocolError,
    SalPacket,
    SourceRoute,
    TransportProtocol,
    UnknownExtension,
    decode_sal,
    encode_sal,
    internet_checksum,
)
from ref.wire.constants import MAX_UDP_PAYLOAD

from .strategies import SAL as SAL_CODEC
from .strategies import (
    controls,
    encodings,
    endpoints,
    fix_checksum,
    ipv4_addresses,
    ipv6_addresses,
    patch,
    sal_extensions,
    service_ids,
    unknown_extensions,
    with_extensions,
)


def rfc1071(data: bytes) -> int:
    """RFC 1071 done the long way: 16-bit words, end-around carry, complement."""
    total = 0
    for offset in range(0, len(data), 2):
        high = data[offset]
        low = data[offset + 1] if offset + 1 < len(data) else 0
        total += high << 8 | low
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


# --- checksum ----------------------------------------------------------------------


@given(data=st.binary(max_size=300))
def test_checksum_matches_rfc1071(data: bytes) -> None:
    assert internet_checksum(data) == rfc1071(data)


@given(data=st.binary(min_size=1, max_size=300).filter(lambda d: len(d) % 2 == 1))
def test_checksum_of_odd_lengths_pads_with_zero(data: bytes) -> None:
    assert internet_checksum(data) == rfc1071(data) == internet_checksum(data + b"\x00")


@pytest.mark.parametrize("length", [0, 1, 2, 3, 12, 13, 1000])
def test_checksum_of_zeros(length: int) -> None:
    assert internet_checksum(bytes(length)) == rfc1071(bytes(length)) == 0xFFFF


@pytest.mark.parametrize("length", [1, 2, 3, 4, 12, 13, 1000])
def test_checksum_of_ones(length: int) -> None:
    assert internet_checksum(b"\xff" * length) == rfc1071(b"\xff" * length)


def test_checksum_example_of_rfc1071() -> None:
    # RFC 1071, Section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
    assert internet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0xFFFF - 0xDDF2


@given(data=st.binary(max_size=300).filter(lambda d: len(d) % 2 == 0))
def test_data_with_its_checksum_sums_to_zero(data: bytes) -> None:
    assert internet_checksum(data + internet_checksum(data).to_bytes(2, "big")) == 0


# --- header length and extension layout ----------------------------------------------


@given(pair=encodings(SAL_CODEC))
def test_encoded_layout(pair: tuple[SalPacket, bytes]) -> None:
    """Checksum, base header, header length and extensions of any packet, byte by byte."""
    packet, encoded = pair
    assert internet_checksum(encoded) == 0
    assert rfc1071(encoded) == 0
    zeroed = patch(encoded, 10, b"\x00\x00")
    assert int.from_bytes(encoded[10:12], "big") == rfc1071(zeroed)
    assert fix_checksum(encoded) == encoded
    chunks = sal_extensions(encoded)
    assert encoded[8] * 4 == 12 + sum(len(chunk) for chunk in chunks)
    assert all(len(chunk) % 4 == 0 and chunk[1] == len(chunk) for chunk in chunks)
    assert encoded[encoded[8] * 4 :] == packet.payload
    present = [
        packet.control,
        packet.destination_service,
        packet.source_service,
        packet.source_route,
    ]
    assert len(chunks) == sum(p is not None for p in present) + len(packet.unknown_extensions)
    assert int.from_bytes(encoded[0:4], "big") == packet.source_flow_id
    assert int.from_bytes(encoded[4:8], "big") == packet.destination_flow_id
    assert encoded[9] == packet.protocol
    expected: list[bytes] = []
    if packet.control is not None:
        c = packet.control
        expected.append(
            bytes([1, 20, c.flags, 0])
            + c.verno.to_bytes(4, "big")
            + c.ackno.to_bytes(4, "big")
            + c.nonce
        )
    if packet.destination_service is not None:
        expected.append(bytes([2, 36, 1, 0]) + packet.destination_service)
    if packet.source_service is not None:
        expected.append(bytes([2, 36, 2, 0]) + packet.source_service)
    if packet.source_route is not None:
        route = packet.source_route
        entries = b"".join(endpoint_bytes(e) for e in route.entries)
        expected.append(bytes([3, 4 + len(entries), route.hop_limit, 0]) + entries)
    expected += [bytes([u.type, 2 + len(u.value)]) + u.value for u in packet.unknown_extensions]
    assert sal_extensions(encoded) == expected


def endpoint_bytes(endpoint: Endpoint) -> bytes:
    address = endpoint.address
    if isinstance(address, ipaddress.IPv4Address):
        packed = bytes(10) + b"\xff\xff" + address.packed
    else:
        packed = address.packed
    return packed + endpoint.port.to_bytes(2, "big") + b"\x00\x00"


def test_unconnected_datagram_shape() -> None:
    # Section 5.12: SERVICE(destination), SERVICE(source), no CONTROL, flowIDs 0.
    destination = hashlib.sha256(b"echo.example").digest()
    source = hashlib.sha256(b"client.example").digest()
    packet = SalPacket(
        0,
        0,
        TransportProtocol.DATAGRAM,
        destination_service=destination,
        source_service=source,
        payload=b"hello",
    )
    encoded = encode_sal(packet)
    assert encoded[:10] == bytes(8) + bytes([21, 1])
    assert encoded[12:48] == bytes([2, 36, 1, 0]) + destination
    assert encoded[48:84] == bytes([2, 36, 2, 0]) + source
    assert encoded[84:] == b"hello"
    assert len(encoded) == 89
    received = decode_sal(encoded)
    assert received.control is None
    assert received == packet


def test_minimal_packet() -> None:
    encoded = encode_sal(SalPacket(0, 0, TransportProtocol.NONE))
    assert encoded == bytes(8) + bytes([3, 0]) + (0xFFFF - 0x0300).to_bytes(2, "big")
    assert decode_sal(encoded) == SalPacket(0, 0, TransportProtocol.NONE)


@given(control=controls())
def test_control_flags_keep_reserved_bits(control: Control) -> None:
    packet = SalPacket(1, 2, TransportProtocol.STREAM, control=control)
    received = decode_sal(encode_sal(packet)).control
    assert received == control
    assert received is not None and int(received.flags) == int(control.flags)


@given(protocol=st.integers(0, 255))
def test_protocol_numbers(protocol: int) -> None:
    decoded = decode_sal(encode_sal(SalPacket(0, 0, protocol))).protocol
    assert decoded == protocol
    if protocol in {p.value for p in TransportProtocol}:
        assert decoded is TransportProtocol(protocol)


# --- ignorable extensions -------------------------------------------------------------


@given(extensions=st.lists(unknown_extensions(max_words=3), max_size=8))
def test_ignorable_extensions_are_kept_in_type_order(
    extensions: list[UnknownExtension],
) -> None:
    packet = SalPacket(1, 2, TransportProtocol.DATAGRAM, unknown_extensions=tuple(extensions))
    encoded = encode_sal(packet)
    in_order = tuple(sorted(extensions, key=lambda e: e.type))  # stable: equal types keep order
    assert [chunk[0] for chunk in sal_extensions(encoded)] == [e.type for e in in_order]
    received = decode_sal(encoded)
    assert received.unknown_extensions == in_order
    # a forwarder that re-encodes what it received passes them on unchanged
    assert encode_sal(received) == encoded


@given(pair=encodings(SAL_CODEC), extension=unknown_extensions(max_words=3))
def test_ignorable_extension_added_on_the_wire(
    pair: tuple[SalPacket, bytes], extension: UnknownExtension
) -> None:
    packet, encoded = pair
    chunks = sal_extensions(encoded)
    if len(chunks) == 8:
        return
    chunk = bytes([extension.type, 2 + len(extension.value)]) + extension.value
    position = sum(1 for c in chunks if c[0] <= extension.type)  # still in order
    received = decode_sal(with_extensions(encoded, [*chunks[:position], chunk, *chunks[position:]]))
    index = position - sum(1 for c in chunks if c[0] < 0x80)
    unknown = packet.unknown_extensions
    expected = (*unknown[:index], extension, *unknown[index:])
    assert received == dataclasses.replace(packet, unknown_extensions=expected)


# --- addresses ---------------------------------------------------------------------------


@given(address=ipv4_addresses(), port=st.integers(0, 0xFFFF))
def test_ipv4_travels_ipv4_mapped(address: ipaddress.IPv4Address, port: int) -> None:
    route = SourceRoute(8, (Endpoint(address, port),))
    encoded = encode_sal(SalPacket(0, 0, TransportProtocol.STREAM, source_route=route))
    entry = sal_extensions(encoded)[0][4:]
    assert entry[:12] == bytes(10) + b"\xff\xff"
    assert entry[12:16] == address.packed
    assert entry[16:] == port.to_bytes(2, "big") + b"\x00\x00"
    mapped = ipaddress.IPv6Address(entry[:16])
    assert mapped.ipv4_mapped == address
    assert decode_sal(encoded).source_route == route


@given(address=ipv6_addresses())
def test_ipv6_travels_as_is(address: ipaddress.IPv6Address) -> None:
    route = SourceRoute(8, (Endpoint(address, 1),))
    encoded = encode_sal(SalPacket(0, 0, TransportProtocol.STREAM, source_route=route))
    assert sal_extensions(encoded)[0][4:20] == address.packed
    assert decode_sal(encoded).source_route == route


@given(address=ipv4_addresses())
def test_ipv4_mapped_ipv6_is_read_back_as_ipv4(address: ipaddress.IPv4Address) -> None:
    mapped = ipaddress.IPv6Address(b"\x00" * 10 + b"\xff\xff" + address.packed)
    as_v6 = SalPacket(0, 0, 1, source_route=SourceRoute(1, (Endpoint(mapped, 1),)))
    as_v4 = SalPacket(0, 0, 1, source_route=SourceRoute(1, (Endpoint(address, 1),)))
    assert encode_sal(as_v6) == encode_sal(as_v4)
    assert decode_sal(encode_sal(as_v6)) == as_v4


@given(entries=st.lists(endpoints(), min_size=1, max_size=12))
def test_source_extension_length(entries: list[Endpoint]) -> None:
    route = SourceRoute(3, tuple(entries))
    encoded = encode_sal(SalPacket(0, 0, TransportProtocol.STREAM, source_route=route))
    (chunk,) = sal_extensions(encoded)
    assert chunk[1] == 4 + 20 * len(entries)
    assert chunk[2] == 3


# --- malformed headers ----------------------------------------------------------------


def error_code(data: bytes) -> ErrorCode:
    with pytest.raises(RemoteProtocolError) as info:
        decode_sal(data)
    return info.value.error_code


BASE = encode_sal(SalPacket(1, 2, TransportProtocol.DATAGRAM, payload=b"payload!"))


@pytest.mark.parametrize("words", [0, 1, 2, 6, 255])
def test_header_length_out_of_range(words: int) -> None:
    # below 3 words, or beyond the 20-byte packet (5 words fits)
    assert error_code(fix_checksum(patch(BASE, 8, bytes([words])))) is ErrorCode.MALFORMED


@pytest.mark.parametrize("length", [0, 1, 11])
def test_shorter_than_the_base_header(length: int) -> None:
    assert error_code(BASE[:length]) is ErrorCode.MALFORMED


def test_larger_than_a_udp_payload() -> None:
    big = encode_sal(SalPacket(0, 0, 1, payload=bytes(MAX_UDP_PAYLOAD - 12)))
    assert decode_sal(big).payload == bytes(MAX_UDP_PAYLOAD - 12)
    assert error_code(fix_checksum(big + b"\x00\x00")) is ErrorCode.MALFORMED


@pytest.mark.parametrize(
    "chunk",
    [
        bytes([1, 24]) + bytes(22),  # CONTROL of the wrong length
        bytes([2, 36, 0, 0]) + bytes(32),  # SERVICE role 0
        bytes([2, 36, 3, 0]) + bytes(32),  # SERVICE role 3
        bytes([2, 40, 1, 0]) + bytes(36),  # SERVICE of the wrong length
        bytes([3, 4, 8, 0]),  # SOURCE without entries
        bytes([3, 28, 8, 0]) + bytes(24),  # SOURCE of 4 + 24 bytes
        bytes([0x80, 0, 0, 0]),  # length 0
        bytes([0x80, 2, 0, 0]),  # length below 4
        bytes([0x80, 6, 0, 0, 0, 0, 0, 0]),  # length not a multiple of 4
        bytes([0x80, 12, 0, 0]),  # length past the header
    ],
    ids=lambda chunk: chunk[:4].hex(),
)
def test_malformed_extensions(chunk: bytes) -> None:
    assert error_code(with_extensions(BASE, [chunk])) is ErrorCode.MALFORMED


@given(destination=service_ids(), source=service_ids())
def test_services_decode_by_role(destination: bytes, source: bytes) -> None:
    packet = SalPacket(0, 0, 1, destination_service=destination, source_service=source)
    received = decode_sal(encode_sal(packet))
    assert (received.destination_service, received.source_service) == (destination, source)
    only_source = dataclasses.replace(packet, destination_service=None)
    assert decode_sal(encode_sal(only_source)).destination_service is None


def test_control_reserved_is_sent_as_zero() -> None:
    control = Control(ControlFlags(0xFF), 0xFFFFFFFF, 0xFFFFFFFF, b"\xff" * 8)
    (chunk,) = sal_extensions(encode_sal(SalPacket(0, 0, 2, control=control)))
    assert chunk[3] == 0
