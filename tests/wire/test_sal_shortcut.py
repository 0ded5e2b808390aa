"""The SAL codec's shortcut for its commonest packets gives what the general path gives.

Data packets without extensions and control packets with only CONTROL are
read and written with structs derived from the declarations
(``ref.wire.sal._decode_common``/``_encode_common``).  The shortcut must be
taken for every such packet, must return exactly the general path's result
when it is taken, and must leave every input it cannot vouch for to the
general path, which then decodes it or raises its precise error.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ref.wire import LocalProtocolError, RemoteProtocolError
from ref.wire.fast import DERIVED
from ref.wire.sal import (
    Control,
    ControlFlags,
    SalPacket,
    StreamFlags,
    StreamSegment,
    TransportProtocol,
    _decode_common,
    _decode_sal,
    _encode_common,
    _encode_sal,
    decode_sal,
    decode_sal_interpreted,
    decode_stream,
    encode_sal,
    encode_stream,
    encode_stream_packet,
)

from .strategies import (
    byte_mutants,
    controls,
    fix_checksum,
    optional,
    protocols,
    sal_mutants,
    sal_packets,
    stream_segments,
    uints,
)


@st.composite
def common_packets(draw: st.DrawFn) -> SalPacket:
    """Packets of the two common shapes: no extension, or CONTROL alone."""
    return SalPacket(
        source_flow_id=draw(uints(32)),
        destination_flow_id=draw(uints(32)),
        protocol=draw(protocols()),
        control=draw(optional(controls())),
        payload=draw(st.binary(max_size=1400)),
    )


def general_decode(data: bytes) -> SalPacket | type[RemoteProtocolError]:
    try:
        return _decode_sal(data, DERIVED)
    except RemoteProtocolError:
        return RemoteProtocolError


@given(common_packets())
def test_the_shortcut_is_taken_and_agrees_for_common_packets(packet: SalPacket) -> None:
    data = _encode_common(packet)
    assert data is not None
    assert data == _encode_sal(packet, DERIVED) == encode_sal(packet)
    decoded = _decode_common(data)
    assert decoded is not None
    assert decoded == packet == decode_sal_interpreted(data)
    assert type(decoded.protocol) is type(decode_sal_interpreted(data).protocol)


@given(sal_packets())
def test_packets_with_other_extensions_take_the_general_path(packet: SalPacket) -> None:
    data = encode_sal(packet)
    common = packet.destination_service is None and packet.source_service is None
    common = common and packet.source_route is None and not packet.unknown_extensions
    assert (_encode_common(packet) is not None) == common
    assert (_decode_common(data) is not None) == common
    assert decode_sal(data) == packet


@settings(max_examples=300)
@given(
    common_packets().flatmap(
        lambda p: st.one_of(byte_mutants(encode_sal(p)), sal_mutants(encode_sal(p)))
    )
)
def test_damage_is_left_to_the_general_path(data: bytes) -> None:
    # Either the shortcut vouches for the input and says what the general path
    # says, or it declines; it never accepts what the general path rejects.
    shortcut = _decode_common(data)
    expected = general_decode(data)
    if shortcut is not None:
        assert shortcut == expected
    if expected is RemoteProtocolError:
        with pytest.raises(RemoteProtocolError):
            decode_sal(data)
    else:
        assert decode_sal(data) == expected


def test_a_bad_checksum_is_counted_by_the_general_path() -> None:
    data = bytearray(encode_sal(SalPacket(1, 2, TransportProtocol.STREAM, payload=b"x")))
    data[-1] ^= 0x01
    assert _decode_common(bytes(data)) is None
    with pytest.raises(RemoteProtocolError, match="checksum") as caught:
        decode_sal(bytes(data))
    assert caught.value.error_code.name == "BAD_CHECKSUM"


def test_a_control_length_other_than_twenty_is_not_taken() -> None:
    control = Control(ControlFlags.ACK, 1, 2, bytes(8))
    data = bytearray(encode_sal(SalPacket(1, 2, TransportProtocol.STREAM, control)))
    data[13] = 24
    damaged = fix_checksum(bytes(data))
    assert _decode_common(damaged) is None
    with pytest.raises(RemoteProtocolError):
        decode_sal(damaged)


UNFIT: list[tuple[str, Any]] = [
    ("source_flow_id", 1 << 32),
    ("source_flow_id", -1),
    ("source_flow_id", 1.0),
    ("protocol", 256),
    ("payload", "text"),
    ("payload", bytearray(b"x")),
]


@pytest.mark.parametrize(("field", "value"), UNFIT)
def test_unfit_values_are_left_to_the_general_path(field: str, value: Any) -> None:
    packet = dataclasses.replace(SalPacket(1, 2, TransportProtocol.STREAM), **{field: value})
    assert _encode_common(packet) is None
    general: Any
    try:
        general = _encode_sal(packet, DERIVED)
    except LocalProtocolError:
        general = LocalProtocolError
    if general is LocalProtocolError:
        with pytest.raises(LocalProtocolError):
            encode_sal(packet)
    else:
        assert encode_sal(packet) == general


@pytest.mark.parametrize("nonce", [b"short", bytes(9)])
def test_a_nonce_of_another_length_is_left_to_the_general_path(nonce: bytes) -> None:
    packet = SalPacket(1, 2, TransportProtocol.STREAM, Control(ControlFlags.ACK, 1, 2, nonce))
    assert _encode_common(packet) is None
    with pytest.raises(LocalProtocolError):
        encode_sal(packet)


@given(
    st.builds(
        StreamSegment,
        sequence=uints(32),
        acknowledgment=uints(32),
        flags=uints(8).map(StreamFlags),
        window=uints(16),
        data=st.binary(max_size=1400),
    )
)
def test_stream_segments_round_trip_through_the_shortcut(segment: StreamSegment) -> None:
    data = encode_stream(segment)
    decoded = decode_stream(data)
    assert decoded == segment
    assert type(decoded.flags) is StreamFlags


def _stream_packet_the_long_way(source: int, destination: int, segment: StreamSegment) -> bytes:
    payload = encode_stream(segment)
    return encode_sal(SalPacket(source, destination, TransportProtocol.STREAM, payload=payload))


@settings(max_examples=300)
@given(
    source=st.one_of(uints(32), st.integers(min_value=-1, max_value=2**33)),
    destination=uints(32),
    segment=stream_segments(max_data=1500),
)
def test_encode_stream_packet_writes_what_encode_sal_writes(
    source: int, destination: int, segment: StreamSegment
) -> None:
    """The same octets, or the same error (a flowID out of range, a packet too large)."""
    try:
        expected = _stream_packet_the_long_way(source, destination, segment)
    except LocalProtocolError as error:
        with pytest.raises(LocalProtocolError) as raised:
            encode_stream_packet(source, destination, segment)
        assert str(raised.value) == str(error)
    else:
        assert encode_stream_packet(source, destination, segment) == expected


@pytest.mark.parametrize("size", [0, 1, 2, 1207, 1208, 65535 - 24, 65535 - 23])
def test_encode_stream_packet_at_the_edges_of_size_and_parity(size: int) -> None:
    segment = StreamSegment(2**32 - 1, 0, StreamFlags.ACK | StreamFlags.FIN, 65535, b"\xff" * size)
    try:
        expected = _stream_packet_the_long_way(1, 2**32 - 1, segment)
    except LocalProtocolError:
        with pytest.raises(LocalProtocolError):
            encode_stream_packet(1, 2**32 - 1, segment)
    else:
        assert encode_stream_packet(1, 2**32 - 1, segment) == expected
        assert decode_sal(expected).payload == encode_stream(segment)
