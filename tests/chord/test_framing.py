"""How a node's messages travel, and the ring arithmetic under them.

- :func:`ref.chord.framing.message_size` is the length of the encoding
  (Sections 6.3 and 6.4), for every body type, signed and unsigned;
- :class:`WireFraming` carries real SAL datagrams (Section 6.2) and
  :class:`ObjectFraming` applies the same signature rules to objects
  (DHT-MSG-4, DHT-MSG-5, DHT-MSG-20);
- the interval functions of :mod:`ref.chord.ring` match the definitions of
  Section 6.1.5, checked by walking a small ring and by hypothesis on the
  real one, and ``extend`` follows "Extending a list" of Section 6.5.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from wire.strategies import body_strategies, dht_messages

from ref.chord import ring
from ref.chord.framing import (
    Frame,
    Inbound,
    ObjectFraming,
    WireFraming,
    datagram_size,
    message_size,
)
from ref.chord.ring import (
    Peer,
    closest_preceding,
    distance,
    extend,
    in_closed_open,
    in_half_open,
    in_open,
)
from ref.wire import (
    BODIES,
    Body,
    Control,
    ControlFlags,
    DhtMessage,
    Endpoint,
    Error,
    ErrorCode,
    FindSuccessor,
    FindSuccessorResponse,
    GetNeighbors,
    Leave,
    LeaveResponse,
    LookupStatus,
    MessageFlags,
    Neighbors,
    NodeInfo,
    Ping,
    Pong,
    RecordEndpoint,
    RecordFlags,
    Rectify,
    RectifyResponse,
    RemoteProtocolError,
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
    TransportProtocol,
    decode_dht,
    decode_sal,
    encode_dht,
    encode_sal,
    public_key_bytes,
    sign_record,
)
from ref.wire.constants import (
    MAX_ADDRESS_TOKENS,
    MAX_DHT_MESSAGE,
    MAX_ENDPOINTS,
    MAX_ERROR_REASON,
    MAX_NODES_PER_MESSAGE,
    MAX_STATUS_LENGTH,
    SERVALDHT_SERVICE_ID,
)
from ref.wire.records import SMALL_ORDER_KEYS

RING = 1 << 256
HOST = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
OTHER = Ed25519PrivateKey.from_private_bytes(b"\x02" * 32)
HOST_KEY = public_key_bytes(HOST)
SOURCE = Endpoint(IPv4Address("192.0.2.7"), 40000)
TID = bytes(range(8))


# --- message_size (Sections 6.3, 6.4) ----------------------------------------------------


def largest_bodies() -> Iterator[Body]:
    """Every body type, with each list at its maximum length and the minimal forms too."""
    nodes = tuple(
        NodeInfo(bytes([i]) * 32, Endpoint(IPv6Address(f"2001:db8::{i + 1}"), 54325))
        for i in range(MAX_NODES_PER_MESSAGE)
    )
    endpoints = tuple(
        RecordEndpoint(IPv4Address(f"192.0.2.{i + 1}"), 5000 + i) for i in range(MAX_ENDPOINTS)
    )
    unsigned = ServiceRecord(
        service_id=bytes(32),
        owner_key=bytes(32),
        sequence=7,
        issued_at=1_800_000_000,
        lifetime=3600,
        flags=RecordFlags(0),
        endpoints=endpoints,
    )
    large = sign_record(unsigned, OTHER)
    small = sign_record(dataclasses.replace(unsigned, endpoints=endpoints[:1]), OTHER)
    tombstone = sign_record(
        dataclasses.replace(unsigned, flags=RecordFlags.TOMBSTONE, endpoints=()), OTHER
    )
    tokens = tuple(bytes([i]) * 16 for i in range(MAX_ADDRESS_TOKENS))
    yield from (
        Ping(),
        Pong(SOURCE),
        FindSuccessor(bytes(32)),
        FindSuccessorResponse(LookupStatus.DONE, nodes),
        FindSuccessorResponse(LookupStatus.REFER, nodes[:1]),
        GetNeighbors(),
        Neighbors(nodes[0], nodes),
        Neighbors(None, ()),
        Neighbors(None, nodes[:3]),
        Rectify(),
        RectifyResponse(),
        Store(large, tokens),
        Store(small),
        StoreResponse(2**64 - 1),
        Resolve(bytes(32)),
        ResolveResponse(ResolveStatus.FOUND, record=large),
        ResolveResponse(ResolveStatus.FOUND, record=tombstone),
        ResolveResponse(ResolveStatus.NOT_FOUND),
        ResolveResponse(ResolveStatus.REFER, nodes=nodes),
        Replicate(large),
        Replicate(tombstone),
        ReplicateResponse(),
        Leave(nodes[0], nodes),
        Leave(None, nodes[:2]),
        LeaveResponse(),
        Status(),
        StatusResponse(b"{" + b" " * (MAX_STATUS_LENGTH - 2) + b"}"),
        StatusResponse(b""),
        Error(ErrorCode.RATE_LIMITED, b"x" * MAX_ERROR_REASON),
        Error(ErrorCode.MALFORMED),
    )


def test_representative_set_covers_every_body_type() -> None:
    assert {type(body) for body in largest_bodies()} == {cls for _, cls in BODIES.values()}


@pytest.mark.parametrize("body", list(largest_bodies()), ids=lambda body: type(body).__name__)
def test_message_size_is_encoded_length_section_6_4(body: Body) -> None:
    message = DhtMessage(body, TID, sender_key=HOST_KEY, token=b"\x05" * 16)
    plain = encode_dht(message)
    signed = encode_dht(message, HOST)
    assert message_size(message) == len(plain)
    assert len(signed) <= MAX_DHT_MESSAGE  # DHT-FRAME-3: every message fits
    # Marked SIGNED (as ObjectFraming sends it) or carrying its signature (as decoded).
    assert message_size(dataclasses.replace(message, flags=MessageFlags.SIGNED)) == len(signed)
    assert message_size(decode_dht(signed)) == len(signed)
    assert message_size(decode_dht(plain)) == len(plain)


@settings(max_examples=300, deadline=None)
@given(
    message=dht_messages(
        st.one_of(list(body_strategies(max_nodes=16, max_endpoints=16, max_report=1024).values()))
    )
)
def test_message_size_matches_encoding_for_any_message(message: DhtMessage) -> None:
    assert message_size(message) == len(encode_dht(message))


# --- WireFraming (Section 6.2) -------------------------------------------------------------


def test_wire_encode_is_a_sal_datagram_to_servaldht_dht_frame_1() -> None:
    framing = WireFraming(HOST)
    message = DhtMessage(FindSuccessor(bytes(32)), TID, sender_key=HOST_KEY)
    for sign in (False, True):
        data, size = framing.encode(message, sign=sign)
        packet = decode_sal(data)
        assert (packet.source_flow_id, packet.destination_flow_id) == (0, 0)
        assert packet.protocol is TransportProtocol.DATAGRAM
        assert packet.destination_service == SERVALDHT_SERVICE_ID
        assert packet.source_service is None and packet.control is None
        assert packet.source_route is None
        assert size == len(packet.payload) == message_size(message) + 64 * sign
        assert len(data) == datagram_size(size)
        decoded = decode_dht(packet.payload)  # verifies a signature
        assert bool(decoded.flags & MessageFlags.SIGNED) is sign
        assert decoded.body == message.body


def test_wire_open_reads_header_and_observed_endpoint_dht_frame_4() -> None:
    framing = WireFraming(HOST)
    payload = encode_dht(
        DhtMessage(Ping(), TID, sender_key=public_key_bytes(OTHER), token=b"\x07" * 16), OTHER
    )
    client = Endpoint(IPv6Address("2001:db8::7"), 6000)
    for route, observed in ((None, SOURCE), (SourceRoute(5, (client, SOURCE)), client)):
        packet = SalPacket(
            0,
            0,
            TransportProtocol.DATAGRAM,
            destination_service=SERVALDHT_SERVICE_ID,
            source_route=route,
            payload=payload,
        )
        inbound = framing.open(encode_sal(packet), SOURCE)
        assert inbound == Inbound(
            source=SOURCE,
            observed=observed,
            version=1,
            type=0x01,
            flags=MessageFlags.SIGNED,
            transaction_id=TID,
            sender_key=public_key_bytes(OTHER),
            token=b"\x07" * 16,
            size=len(payload),
            payload=payload,
        )
        assert framing.decode(inbound).body == Ping()
        # A wrong signature is found by decode, not by open (Section 6.11, step 8).
        forged = dataclasses.replace(inbound, payload=payload[:-1] + bytes([payload[-1] ^ 1]))
        with pytest.raises(RemoteProtocolError) as caught:
            framing.decode(forged)
        assert caught.value.error_code == ErrorCode.BAD_SIGNATURE


def servaldht_datagram(payload: bytes, **fields: Any) -> bytes:
    packet = SalPacket(
        0, 0, TransportProtocol.DATAGRAM, destination_service=SERVALDHT_SERVICE_ID, payload=payload
    )
    return encode_sal(dataclasses.replace(packet, **fields))


def test_wire_open_refuses_what_is_not_a_servaldht_datagram_section_6_2() -> None:
    framing = WireFraming(HOST)
    ping = encode_dht(DhtMessage(Ping(), TID))
    control = Control(ControlFlags.SYN, 1, 0, bytes(8))
    for data in (
        servaldht_datagram(ping[:59]),  # shorter than the header (Section 6.11 step 1)
        servaldht_datagram(ping, source_flow_id=1),
        servaldht_datagram(ping, destination_flow_id=1),
        servaldht_datagram(ping, protocol=TransportProtocol.STREAM),
        servaldht_datagram(ping, control=control),
        servaldht_datagram(ping)[:-61],  # the SAL header itself is cut
    ):
        with pytest.raises(RemoteProtocolError):
            framing.open(data, SOURCE)
    frame = Frame(DhtMessage(Ping(), TID), None, None, 60)
    with pytest.raises(RemoteProtocolError):
        framing.open(frame, SOURCE)
    # Another service's datagram is handed back as a SAL packet.
    other = SalPacket(0, 0, TransportProtocol.DATAGRAM, destination_service=bytes(32))
    assert framing.open(encode_sal(other), SOURCE) == other


def test_wire_framing_without_key_sends_zero_sender_key_dht_hdr_12() -> None:
    assert WireFraming(None).public_key == bytes(32)


# --- ObjectFraming -----------------------------------------------------------------------


def test_object_framing_marks_signed_frames_with_its_key() -> None:
    framing = ObjectFraming(HOST_KEY)
    message = DhtMessage(Rectify(), TID, sender_key=HOST_KEY)
    frame, size = framing.encode(message, sign=True)
    assert frame.signer == HOST_KEY
    assert frame.message.flags & MessageFlags.SIGNED
    assert size == frame.size == len(encode_dht(message, HOST))
    inbound = framing.open(frame, SOURCE)
    assert isinstance(inbound, Inbound)
    assert (inbound.type, inbound.size, inbound.observed) == (0x04, size, SOURCE)
    assert framing.decode(inbound) == frame.message
    unsigned, size = framing.encode(message, sign=False)
    assert unsigned.signer is None and size == len(encode_dht(message))
    inbound = framing.open(unsigned, SOURCE)
    assert isinstance(inbound, Inbound) and framing.decode(inbound) == message


def refused(frame: Frame) -> ErrorCode:
    framing = ObjectFraming(public_key_bytes(OTHER))
    inbound = framing.open(frame, SOURCE)
    assert isinstance(inbound, Inbound)
    with pytest.raises(RemoteProtocolError) as caught:
        framing.decode(inbound)
    return caught.value.error_code


def test_object_framing_refuses_signed_flag_without_sender_signature_dht_msg_4() -> None:
    message = DhtMessage(Rectify(), TID, sender_key=HOST_KEY, flags=MessageFlags.SIGNED)
    size = message_size(message)
    assert refused(Frame(message, None, None, size)) == ErrorCode.BAD_SIGNATURE
    other = public_key_bytes(OTHER)
    assert refused(Frame(message, None, other, size)) == ErrorCode.BAD_SIGNATURE


@pytest.mark.parametrize("key", sorted(SMALL_ORDER_KEYS), ids=lambda key: key.hex()[:8])
def test_object_framing_refuses_small_order_sender_keys_dht_msg_5_dht_msg_20(key: bytes) -> None:
    # The simulator refuses what the wire refuses: no signature by such a key counts.
    message = DhtMessage(Rectify(), TID, sender_key=key, flags=MessageFlags.SIGNED)
    assert refused(Frame(message, None, key, message_size(message))) == ErrorCode.BAD_SIGNATURE


def test_object_framing_refuses_oversized_frames_dht_frame_3() -> None:
    message = DhtMessage(Ping(), TID)
    assert refused(Frame(message, None, None, MAX_DHT_MESSAGE + 1)) == ErrorCode.LIMIT_EXCEEDED


def test_object_framing_open_routes_bytes() -> None:
    framing = ObjectFraming(HOST_KEY)
    with pytest.raises(RemoteProtocolError):
        framing.open(servaldht_datagram(encode_dht(DhtMessage(Ping(), TID))), SOURCE)
    other = SalPacket(0, 0, TransportProtocol.DATAGRAM, destination_service=bytes(32))
    assert framing.open(encode_sal(other), SOURCE) == other
    forwarded = Endpoint(IPv4Address("198.51.100.1"), 1)
    frame = Frame(DhtMessage(Ping(), TID), forwarded, None, 60)
    inbound = framing.open(frame, SOURCE)
    assert isinstance(inbound, Inbound) and inbound.observed == forwarded


# --- ring intervals (Section 6.1.5) -----------------------------------------------------------

SMALL = 16


def walk(a: int, b: int) -> list[int]:
    """Identifiers met going clockwise from a (excluded) to b (included), once round."""
    met = []
    x = a
    while True:
        x = (x + 1) % SMALL
        met.append(x)
        if x == b:
            return met


def test_intervals_match_walking_a_small_ring(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ring, "RING", SMALL)
    for a in range(SMALL):
        for b in range(SMALL):
            half_open = set(walk(a, b))  # (a, b]: the whole ring when a == b
            open_ = half_open - {b}  # (a, b): the whole ring but a when a == b
            closed_open = {a} | open_ if a != b else {a}  # [a, b)
            assert distance(a, b) == len(walk(a, b)) % SMALL
            for x in range(SMALL):
                assert in_half_open(x, a, b) is (x in half_open), (x, a, b)
                assert in_open(x, a, b) is (x in open_), (x, a, b)
                assert in_closed_open(x, a, b) is (x in closed_open), (x, a, b)


def identifiers() -> st.SearchStrategy[int]:
    edges = st.sampled_from([0, 1, 2**255 - 1, 2**255, RING - 2, RING - 1])
    return st.one_of(st.integers(0, RING - 1), edges)


def d(a: int, b: int) -> int:
    return (b - a) % RING


@settings(max_examples=500, deadline=None)
@given(a=identifiers(), b=identifiers(), x=identifiers(), shift=st.sampled_from([0, 1, -1]))
def test_intervals_match_the_draft_definitions(a: int, b: int, x: int, shift: int) -> None:
    # shift puts x at or next to an end of the interval now and then.
    for point in (x, (a + shift) % RING, (b + shift) % RING):
        if a != b:
            assert in_half_open(point, a, b) is (0 < d(a, point) <= d(a, b))
            assert in_open(point, a, b) is (0 < d(a, point) < d(a, b))
        else:
            assert in_half_open(point, a, b)
            assert in_open(point, a, b) is (point != a)
        assert in_closed_open(point, a, b) is (point == a or (a != b and 0 < d(a, point) < d(a, b)))
    assert distance(a, b) == d(a, b)
    assert distance(a, a) == 0


# --- extend and closest_preceding (Sections 6.5, 6.6) -----------------------------------------


def peer(identifier: int) -> Peer:
    """A peer with a chosen node ID (the key only has to be unique)."""
    key = identifier.to_bytes(32, "big")
    endpoint = Endpoint(IPv4Address("192.0.2.1"), 1 + identifier % 60000)
    return Peer(key, endpoint, identifier, NodeInfo(key, endpoint))


OWNER = 1000
A, B, C, D, E = (peer(OWNER + step) for step in (10, 20, 30, 40, 50))
BEHIND = peer(OWNER - 5)  # just before the owner: farther than all of the above


def test_extend_appends_in_order_skips_duplicates_stops_and_keeps_r() -> None:
    me = peer(OWNER)
    assert extend(OWNER, [A], [B, C], 8) == [A, B, C]
    assert extend(OWNER, [], [A, B], 8) == [A, B]
    assert extend(OWNER, [A, B], [A, B, C], 8) == [A, B, C]  # already in L: skipped
    assert extend(OWNER, [A], [B, me, C], 8) == [A, B]  # n itself: stop
    assert extend(OWNER, [A], [C, B, D], 8) == [A, C]  # not farther: stop (wrapped)
    assert extend(OWNER, [C], [A, D], 8) == [C]
    assert extend(OWNER, [A], [B, C, D, E], 3) == [A, B, C]  # the first r
    assert extend(OWNER, [A], [B, BEHIND], 8) == [A, B, BEHIND]
    assert extend(OWNER, [BEHIND], [A], 8) == [BEHIND]  # A is nearer: the list wrapped
    assert extend(OWNER, [A, B, C], [D], 2) == [A, B]


def extend_by_the_draft(owner: int, base: list[Peer], candidates: list[Peer], r: int) -> list[Peer]:
    result = list(base)
    for x in candidates:
        if any(p.key == x.key for p in result):
            continue
        if x.id == owner or (result and d(owner, x.id) <= d(owner, result[-1].id)):
            break
        result.append(x)
    return result[:r]


@settings(max_examples=300, deadline=None)
@given(
    owner=st.integers(0, 63),
    base=st.lists(st.integers(0, 63), max_size=4, unique=True),
    candidates=st.lists(st.integers(0, 63), max_size=12),
    r=st.integers(3, 16),
)
def test_extend_matches_the_draft(
    owner: int, base: list[int], candidates: list[int], r: int
) -> None:
    # A valid base: ordered by distance from the owner, without the owner.
    ordered = sorted((i for i in base if i != owner), key=lambda i: d(owner, i))
    base_peers = [peer(i) for i in ordered]
    candidate_peers = [peer(i) for i in candidates]
    result = extend(owner, base_peers, candidate_peers, r)
    assert result == extend_by_the_draft(owner, base_peers, candidate_peers, r)
    # The invariants the rule keeps (DHT-RING-14 to -16).
    distances = [d(owner, p.id) for p in result]
    assert distances == sorted(set(distances)) and 0 not in distances
    assert len(result) <= r
    assert result[: len(base_peers)] == base_peers[:r]


@settings(max_examples=200, deadline=None)
@given(
    owner=identifiers(),
    target=identifiers(),
    ids=st.lists(identifiers(), max_size=10),
    count=st.integers(1, 16),
)
def test_closest_preceding_by_the_definition(
    owner: int, target: int, ids: list[int], count: int
) -> None:
    peers = [peer(i) for i in ids]
    # The nodes m in (n, t), the one with the smallest d(m, t) first.
    between = {i for i in ids if (0 < d(owner, i) < d(owner, target) or owner == target != i)}
    expected = sorted(between, key=lambda i: d(i, target))[:count]
    assert [p.id for p in closest_preceding(owner, target, peers, count)] == expected
