"""Forwarding by service routers (draft Section 5.13): each step, each drop code.

Test names carry the requirement IDs (SAL-FWD-n).  Outputs are read back with
``decode_sal``, which also verifies the recomputed checksum.
"""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wire.strategies import controls, endpoints, sal_packets, service_ids, unknown_extensions

from ref.sal.forwarding import forward, reply_endpoint
from ref.wire import (
    Control,
    ControlFlags,
    Endpoint,
    ErrorCode,
    LocalProtocolError,
    RemoteProtocolError,
    SalPacket,
    SourceRoute,
    TransportProtocol,
    UnknownExtension,
    decode_sal,
    encode_sal,
)
from ref.wire.constants import (
    DEFAULT_HOP_LIMIT,
    DEFAULT_PORT,
    MAX_EXTENSIONS,
    MAX_SOURCE_ENTRIES,
    MAX_UDP_PAYLOAD,
)
from ref.wire.vectors import build_vectors


def ep(address: str, port: int = DEFAULT_PORT) -> Endpoint:
    return Endpoint(ipaddress.ip_address(address), port)


def router(n: int) -> Endpoint:
    """The endpoint at which router ``n`` receives (and from which it sends)."""
    return ep(f"2001:db8::{n:x}")


CLIENT = ep("192.0.2.100", 40001)
SERVICE = bytes(range(32))
SYN = SalPacket(
    source_flow_id=0x5A3C0F01,
    destination_flow_id=0,
    protocol=TransportProtocol.STREAM,
    control=Control(ControlFlags.SYN, 0x1D2E3F40, 0, bytes(range(1, 9))),
    destination_service=SERVICE,
)
DATAGRAM = SalPacket(0, 0, TransportProtocol.DATAGRAM, destination_service=SERVICE, payload=b"hi")


def hop(
    packet: SalPacket,
    n: int,
    *,
    observed: Endpoint | None = None,
    max_hops: int = DEFAULT_HOP_LIMIT,
) -> bytes:
    """Router ``n`` forwards ``packet`` to router ``n + 1``."""
    return forward(
        packet,
        observed=observed or router(n - 1),
        received_at=router(n),
        next_hop=router(n + 1),
        max_hops=max_hops,
    )


def dropped(packet: SalPacket, n: int = 1) -> ErrorCode:
    """The error code under which router ``n`` drops ``packet``."""
    with pytest.raises(RemoteProtocolError) as info:
        hop(packet, n)
    return info.value.error_code


def routed(hop_limit: int, *entries: Endpoint) -> SalPacket:
    return dataclasses.replace(SYN, source_route=SourceRoute(hop_limit, entries))


# --- SAL-FWD-6 and SAL-FWD-7: adding and extending SOURCE ----------------------------


def test_sal_fwd_6_first_router_gives_the_draft_vector_a11() -> None:
    """Forwarding vector A.1 (SYN) as the first router gives vector A.11 byte for byte."""
    vectors = {vector.title: vector for vector in build_vectors()}
    syn = decode_sal(vectors["SAL SYN"].encoded)
    out = forward(syn, observed=CLIENT, received_at=ep("2001:db8::1"), next_hop=router(2))
    assert out == vectors["SAL SYN forwarded by a service router"].encoded


@pytest.mark.parametrize("max_hops", [1, 2, DEFAULT_HOP_LIMIT, 255])
def test_sal_fwd_6_adds_source_with_configured_maximum_minus_1(max_hops: int) -> None:
    out = decode_sal(hop(SYN, 1, observed=CLIENT, max_hops=max_hops))
    assert out.source_route == SourceRoute(max_hops - 1, (CLIENT, router(1)))


def test_sal_fwd_6_default_maximum_is_8() -> None:
    out = decode_sal(hop(SYN, 1, observed=CLIENT))
    assert out.source_route == SourceRoute(7, (CLIENT, router(1)))


@pytest.mark.parametrize("max_hops", [-1, 0, 256])
def test_sal_fwd_6_configured_maximum_outside_1_to_255_is_a_caller_bug(max_hops: int) -> None:
    with pytest.raises(LocalProtocolError):
        hop(SYN, 1, max_hops=max_hops)


def test_sal_fwd_7_extends_source_and_decrements_hop_limit() -> None:
    out = decode_sal(hop(routed(5, CLIENT, router(1)), 2))
    assert out.source_route == SourceRoute(4, (CLIENT, router(1), router(2)))


def test_sal_fwd_7_ignores_the_configured_maximum() -> None:
    out = decode_sal(hop(routed(200, CLIENT, router(1)), 2, max_hops=3))
    assert out.source_route is not None
    assert out.source_route.hop_limit == 199


def test_sal_fwd_7_fills_source_to_12_entries() -> None:
    entries = (CLIENT, *(router(n) for n in range(1, MAX_SOURCE_ENTRIES - 1)))
    out = decode_sal(hop(routed(1, *entries), MAX_SOURCE_ENTRIES - 1))
    assert out.source_route is not None
    assert len(out.source_route.entries) == MAX_SOURCE_ENTRIES
    assert out.source_route.hop_limit == 0


def test_sal_fwd_6_forwards_unconnected_datagrams() -> None:
    out = decode_sal(hop(DATAGRAM, 1, observed=CLIENT))
    assert out == dataclasses.replace(DATAGRAM, source_route=SourceRoute(7, (CLIENT, router(1))))


# --- SAL-FWD-1, -3, -4: drops --------------------------------------------------------


@pytest.mark.parametrize("flow_id", [1, 0xFFFFFFFF])
def test_sal_fwd_1_flow_packets_are_not_forwarded(flow_id: int) -> None:
    """The draft names no code for this drop; MALFORMED, as for a flow-addressed SYN (5.5)."""
    assert dropped(dataclasses.replace(SYN, destination_flow_id=flow_id)) == ErrorCode.MALFORMED


def test_sal_fwd_3_hop_limit_0_is_dropped() -> None:
    assert dropped(routed(0, CLIENT, router(1)), 2) == ErrorCode.HOP_LIMIT_EXCEEDED


def test_sal_fwd_3_twelve_entries_are_dropped() -> None:
    entries = (CLIENT, *(router(n) for n in range(1, MAX_SOURCE_ENTRIES)))
    assert dropped(routed(100, *entries), 20) == ErrorCode.HOP_LIMIT_EXCEEDED


def test_sal_fwd_3_hop_limit_is_checked_before_loops() -> None:
    """Step 1 before step 2: a looping packet with Hop Limit 0 counts HOP_LIMIT_EXCEEDED."""
    assert dropped(routed(0, CLIENT, router(1)), 1) == ErrorCode.HOP_LIMIT_EXCEEDED


@pytest.mark.parametrize("index", [0, 1, 2])
def test_sal_fwd_4_next_hop_in_source_is_a_loop(index: int) -> None:
    entries = (CLIENT, router(1), router(2))
    with pytest.raises(RemoteProtocolError) as info:
        forward(
            routed(5, *entries), observed=router(2), received_at=router(3), next_hop=entries[index]
        )
    assert info.value.error_code == ErrorCode.LOOP_DETECTED


@pytest.mark.parametrize("index", [0, 1, 2])
def test_sal_fwd_4_receiving_router_in_source_is_a_loop(index: int) -> None:
    entries = (CLIENT, router(1), router(2))
    with pytest.raises(RemoteProtocolError) as info:
        forward(
            routed(5, *entries), observed=router(2), received_at=entries[index], next_hop=router(9)
        )
    assert info.value.error_code == ErrorCode.LOOP_DETECTED


def test_sal_fwd_4_endpoint_equality_is_address_and_port() -> None:
    """Section 5.3.4 and SAL-EXT-20: IPv4 equals its IPv4-mapped form; ports must match."""
    v4, mapped = ep("192.0.2.7"), ep("::ffff:192.0.2.7")
    with pytest.raises(RemoteProtocolError) as info:
        forward(routed(5, CLIENT, v4), observed=v4, received_at=router(2), next_hop=mapped)
    assert info.value.error_code == ErrorCode.LOOP_DETECTED
    other_port = Endpoint(v4.address, v4.port + 1)
    forward(routed(5, CLIENT, v4), observed=v4, received_at=router(2), next_hop=other_port)


def test_sal_fwd_4_no_source_no_loop_check() -> None:
    """The loop check reads the SOURCE extension as received; without one there is none."""
    out = forward(SYN, observed=CLIENT, received_at=router(1), next_hop=CLIENT)
    assert decode_sal(out).source_route == SourceRoute(7, (CLIENT, router(1)))


# --- SAL-FWD-8: limits ---------------------------------------------------------------


def with_unknown(packet: SalPacket, *sizes: int) -> SalPacket:
    """``packet`` with ignorable extensions of the given total lengths (4 to 252)."""
    extensions = tuple(UnknownExtension(0x80 + i, bytes(size - 2)) for i, size in enumerate(sizes))
    return dataclasses.replace(packet, unknown_extensions=extensions)


def test_sal_fwd_8_ninth_extension_is_dropped() -> None:
    eight = with_unknown(SYN, *[4] * (MAX_EXTENSIONS - 2))  # CONTROL, SERVICE and 6 more
    assert dropped(eight) == ErrorCode.LIMIT_EXCEEDED
    seven = with_unknown(SYN, *[4] * (MAX_EXTENSIONS - 3))
    assert len(decode_sal(hop(seven, 1)).unknown_extensions) == MAX_EXTENSIONS - 3


# SYN: 12 + 20 + 36 = 68 octets of header; a new SOURCE adds 44, an entry 20.
@pytest.mark.parametrize(
    ("packet", "growth"),
    [(SYN, 44), (routed(5, CLIENT, router(9)), 20)],
    ids=["added", "extended"],
)
def test_sal_fwd_8_header_length_above_255_words_is_dropped(packet: SalPacket, growth: int) -> None:
    base = len(encode_sal(packet))
    room = 1020 - base - growth  # octets left for ignorable extensions
    out = hop(with_unknown(packet, 252, 252, 252, room - 3 * 252), 1)
    assert len(out) == 1020 and out[8] == 255
    too_long = with_unknown(packet, 252, 252, 252, room - 3 * 252 + 4)
    assert dropped(too_long) == ErrorCode.LIMIT_EXCEEDED


@pytest.mark.parametrize(
    ("packet", "growth"),
    [(SYN, 44), (routed(5, CLIENT, router(9)), 20)],
    ids=["added", "extended"],
)
def test_sal_fwd_8_packet_above_65507_octets_is_dropped(packet: SalPacket, growth: int) -> None:
    room = MAX_UDP_PAYLOAD - len(encode_sal(packet)) - growth
    fitting = dataclasses.replace(packet, payload=bytes(room))
    assert len(hop(fitting, 1)) == MAX_UDP_PAYLOAD
    too_big = dataclasses.replace(packet, payload=bytes(room + 1))
    assert dropped(too_big) == ErrorCode.LIMIT_EXCEEDED


# --- SAL-FWD-9: everything else unchanged ---------------------------------------------


def test_sal_fwd_9_keeps_ignorable_extensions_in_order_and_the_payload() -> None:
    unknown = (
        UnknownExtension(0x80, bytes.fromhex("0000cafe0001")),
        UnknownExtension(0x80, bytes.fromhex("0000beef0002")),  # same type: order kept
        UnknownExtension(0x91, b"\x01\x02"),
        UnknownExtension(0xFF, bytes(range(10))),
    )
    packet = dataclasses.replace(
        SYN, source_service=bytes(32), unknown_extensions=unknown, payload=b"early data"
    )
    out = hop(packet, 1, observed=CLIENT)
    assert decode_sal(out) == dataclasses.replace(
        packet, source_route=SourceRoute(7, (CLIENT, router(1)))
    )
    # SOURCE sits after the SERVICE extensions and before type 0x80 (canonical order).
    assert out[12 + 20 + 36 + 36] == 3


# --- chains, loops and answers ---------------------------------------------------------


def test_sal_fwd_3_chain_of_8_routers_then_the_9th_refuses() -> None:
    """With the default maximum, 8 routers forward and the 9th drops; SOURCE holds 9 entries."""
    packet = SYN
    for n in range(1, DEFAULT_HOP_LIMIT + 1):
        packet = decode_sal(hop(packet, n, observed=CLIENT if n == 1 else None))
        assert packet.source_route is not None
        assert packet.source_route.hop_limit == DEFAULT_HOP_LIMIT - n
    assert packet.source_route == SourceRoute(0, (CLIENT, *(router(n) for n in range(1, 9))))
    assert dataclasses.replace(packet, source_route=None) == SYN
    assert dropped(packet, DEFAULT_HOP_LIMIT + 1) == ErrorCode.HOP_LIMIT_EXCEEDED
    # SAL-FWD-10: the server answers the client, not the last router.
    assert reply_endpoint(packet, observed=router(8)) == CLIENT


def test_sal_fwd_4_loop_between_three_routers_dies() -> None:
    """R1 -> R2 -> R3 -> R1: R3 refuses to send back to R1, and R1 refuses it anyway."""
    at_r2 = decode_sal(hop(SYN, 1, observed=CLIENT))
    at_r3 = decode_sal(hop(at_r2, 2))
    with pytest.raises(RemoteProtocolError) as info:
        forward(at_r3, observed=router(2), received_at=router(3), next_hop=router(1))
    assert info.value.error_code == ErrorCode.LOOP_DETECTED
    # Had R3 skipped the check (or reached R1 by another address), R1 sees itself listed.
    looped = forward(at_r3, observed=router(2), received_at=router(3), next_hop=ep("2001:db8::99"))
    with pytest.raises(RemoteProtocolError) as info:
        forward(decode_sal(looped), observed=router(3), received_at=router(1), next_hop=router(4))
    assert info.value.error_code == ErrorCode.LOOP_DETECTED


def test_sal_fwd_10_reply_endpoint() -> None:
    """SAL-FWD-10 and DHT-FRAME-4: SOURCE entry 0, else the observed source."""
    assert reply_endpoint(DATAGRAM, observed=CLIENT) == CLIENT
    forwarded = decode_sal(hop(DATAGRAM, 1, observed=CLIENT))
    assert reply_endpoint(forwarded, observed=router(1)) == CLIENT


# --- properties ------------------------------------------------------------------------


@given(
    packet=sal_packets(),
    observed=endpoints(),
    received_at=endpoints(),
    next_hop=endpoints(),
    max_hops=st.integers(1, 255),
)
def test_forward_changes_only_source_or_drops(
    packet: SalPacket,
    observed: Endpoint,
    received_at: Endpoint,
    next_hop: Endpoint,
    max_hops: int,
) -> None:
    """SAL-FWD-9: bytes that decode to the same packet but SOURCE, or a counted drop."""
    packet = dataclasses.replace(packet, destination_flow_id=0)
    try:
        out = forward(
            packet, observed=observed, received_at=received_at, next_hop=next_hop, max_hops=max_hops
        )
    except RemoteProtocolError as error:
        assert error.error_code in {
            ErrorCode.HOP_LIMIT_EXCEEDED,
            ErrorCode.LOOP_DETECTED,
            ErrorCode.LIMIT_EXCEEDED,
        }
        return
    route = packet.source_route
    expected = (
        SourceRoute(max_hops - 1, (observed, received_at))
        if route is None
        else SourceRoute(route.hop_limit - 1, (*route.entries, received_at))
    )
    assert decode_sal(out) == dataclasses.replace(packet, source_route=expected)


POOL = tuple(ep(f"2001:db8:1::{n}") for n in range(MAX_SOURCE_ENTRIES))


@st.composite
def large_packets(draw: st.DrawFn) -> SalPacket:
    """Packets near the limits of SAL-FWD-8: big extensions and payloads, no loops."""
    control = draw(st.none() | controls())
    services = draw(st.lists(st.none() | service_ids(), min_size=2, max_size=2))
    route = draw(
        st.none()
        | st.builds(
            SourceRoute,
            hop_limit=st.integers(1, 255),
            entries=st.lists(st.sampled_from(POOL), min_size=1, max_size=11, unique=True).map(
                tuple
            ),
        )
    )
    known = sum(part is not None for part in (control, *services, route))
    unknown = draw(st.lists(unknown_extensions(max_words=62), max_size=MAX_EXTENSIONS - known))
    size = draw(st.integers(0, MAX_UDP_PAYLOAD) | st.integers(MAX_UDP_PAYLOAD - 1200, 65507))
    packet = SalPacket(
        0,
        0,
        TransportProtocol.STREAM,
        control=control,
        destination_service=services[0],
        source_service=services[1],
        source_route=route,
        unknown_extensions=tuple(sorted(unknown, key=lambda ext: ext.type)),
    )
    # The drawn packet must itself be legal: drop extensions, trim the payload.
    while True:
        try:
            room = MAX_UDP_PAYLOAD - len(encode_sal(packet))
        except LocalProtocolError:
            packet = dataclasses.replace(packet, unknown_extensions=packet.unknown_extensions[:-1])
        else:
            return dataclasses.replace(packet, payload=bytes(min(size, room)))


@given(packet=large_packets())
def test_sal_fwd_8_limits_agree_with_the_encoder(packet: SalPacket) -> None:
    """forward() drops LIMIT_EXCEEDED exactly when the grown packet cannot be encoded."""
    received_at, next_hop = ep("2001:db8:2::1"), ep("2001:db8:2::2")
    route = packet.source_route
    grown = (
        SourceRoute(7, (CLIENT, received_at))
        if route is None
        else SourceRoute(route.hop_limit - 1, (*route.entries, received_at))
    )
    try:
        expected: bytes | None = encode_sal(dataclasses.replace(packet, source_route=grown))
    except LocalProtocolError:
        expected = None
    try:
        out = forward(packet, observed=CLIENT, received_at=received_at, next_hop=next_hop)
    except RemoteProtocolError as error:
        assert error.error_code == ErrorCode.LIMIT_EXCEEDED
        assert expected is None
    else:
        assert out == expected
