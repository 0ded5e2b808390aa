"""One node core over real bytes: the rules of draft Sections 6.2 to 6.11.

Each test builds ServalDHT messages with :mod:`ref.wire.dht`, encodes them
(signed with a peer's Ed25519 key where the rule needs it), wraps them in a
SAL unconnected datagram to the ServalDHT serviceID and feeds them to a
:class:`~ref.chord.node.Node` that runs on :class:`WireFraming` with a host
key from a fixed seed, ``random.Random(seed)`` and a fixed clock.  What the
node sends back is decoded from bytes and checked against the draft.

:func:`ask` checks on every answer the rules that hold for any response:
one response per request (DHT-FRAME-6) sent to the observed endpoint
(DHT-FRAME-4), echoing the Transaction ID (DHT-HDR-9), carrying the node's
key (DHT-HDR-11) and a token valid for the observed address (DHT-HDR-14),
within 3 times the request for an unvalidated source (DHT-AMP-1), and
TRUNCATED only on a shortened node list (DHT-AMP-2, DHT-AMP-3).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import random
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wire.strategies import bodies, byte_mutants, dht_messages, dht_mutants, sal_mutants

from ref.chord.framing import WireFraming
from ref.chord.node import Node, NodeConfig
from ref.chord.ring import Peer, id_bytes, node_id_of
from ref.wire import (
    Body,
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
    MessageType,
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
    UnknownExtension,
    decode_dht,
    decode_sal,
    encode_dht,
    encode_record,
    encode_sal,
    public_key_bytes,
    sign_record,
)
from ref.wire.constants import (
    MAX_DHT_MESSAGE,
    MESSAGE_SIGNING_CONTEXT,
    SERVALDHT_SERVICE_ID,
    SIGNATURE_LENGTH,
    TOKEN_SECRET_LIFETIME,
)
from ref.wire.ids import service_id_for_name
from ref.wire.records import SMALL_ORDER_KEYS

NOW = 1_800_000_000.0
TID = bytes.fromhex("0102030405060708")
NO_TOKEN = bytes(16)
RING = 1 << 256

NODE_AT = Endpoint(IPv4Address("192.0.2.1"), 54325)
CLIENT = Endpoint(IPv4Address("192.0.2.7"), 40000)
NEIGHBOUR = Endpoint(IPv4Address("192.0.2.8"), 40000)  # another source address
PROVIDER = Endpoint(IPv4Address("198.51.100.9"), 5000)  # an address a registrant owns
ROUTER = Endpoint(IPv4Address("198.51.100.1"), 54325)


def private_key(seed: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)


HOST = private_key(1)
ALICE, BOB = private_key(2), private_key(3)
#: Keys of the other ring members; where each sits depends only on its seed.
PEER_KEYS = tuple(private_key(seed) for seed in range(16, 48))
PRINTER = service_id_for_name("printer")
SCANNER = service_id_for_name("scanner")


# --- the node and the exchange of datagrams ---------------------------------------------


@dataclasses.dataclass(frozen=True)
class Sent:
    """A datagram the node sent, decoded."""

    message: DhtMessage
    destination: Endpoint
    size: int  # ServalDHT message bytes (the SAL payload)


@dataclasses.dataclass(frozen=True)
class Member:
    """A ring member the node under test knows, with the private key it signs with."""

    key: Ed25519PrivateKey
    peer: Peer


def make_node(config: NodeConfig | None = None, seed: int = 0) -> Node:
    """A node that has created its own ring (DHT-BOOT-1): alone, a member."""
    node = Node(
        WireFraming(HOST), public_key_bytes(HOST), NODE_AT, random.Random(seed), NOW, config
    )
    node.start()
    assert node.datagrams_to_send() == []
    return node


@functools.cache
def members_around(node_id: int) -> tuple[Member, ...]:
    """Every peer key as a ring member, in clockwise order from ``node_id``."""
    members = [
        Member(key, Peer.of(public_key_bytes(key), Endpoint(IPv4Address(f"203.0.113.{i}"), 54325)))
        for i, key in enumerate(PEER_KEYS, start=1)
    ]
    return tuple(sorted(members, key=lambda m: (m.peer.id - node_id) % RING))


def ring_member(
    successors: int = 3, predecessors: int = 0, config: NodeConfig | None = None
) -> tuple[Node, tuple[Member, ...]]:
    """A node whose lists are set by hand to the nearest members of a fixed ring.

    Returns the node and every member in clockwise order: the first
    ``successors`` are its successor list, the last ``predecessors`` (nearest
    first, from the end) its predecessor list.
    """
    node = make_node(config)
    around = members_around(node.id)
    node.successors = [m.peer for m in around[:successors]]
    node.predecessors = [m.peer for m in reversed(around)][:predecessors]
    return node, around


def datagram(payload: bytes, route: SourceRoute | None = None) -> bytes:
    """A SAL unconnected datagram to the ServalDHT serviceID (Section 6.2)."""
    packet = SalPacket(
        0,
        0,
        TransportProtocol.DATAGRAM,
        destination_service=SERVALDHT_SERVICE_ID,
        source_route=route,
        payload=payload,
    )
    return encode_sal(packet)


def sent_by(node: Node) -> list[Sent]:
    """Decode every datagram the node has produced (it must be a valid ServalDHT message)."""
    out = []
    for data, destination in node.datagrams_to_send():
        assert isinstance(data, bytes)
        packet = decode_sal(data)
        assert packet.destination_service == SERVALDHT_SERVICE_ID  # DHT-FRAME-1
        assert (packet.source_flow_id, packet.destination_flow_id) == (0, 0)
        assert packet.control is None and packet.source_service is None
        out.append(Sent(decode_dht(packet.payload), destination, len(packet.payload)))
    return out


def exchange(
    node: Node,
    payload: bytes,
    *,
    source: Endpoint = CLIENT,
    route: SourceRoute | None = None,
    now: float = NOW,
) -> list[Sent]:
    """Deliver one encoded message and return everything the node sends in response."""
    node.receive_datagram(datagram(payload, route), source, now)
    return sent_by(node)


def request(
    body: Body,
    *,
    token: bytes = NO_TOKEN,
    signer: Ed25519PrivateKey | None = None,
    transaction_id: bytes = TID,
    flags: MessageFlags = MessageFlags(0),  # noqa: B008 (an immutable IntFlag)
) -> bytes:
    """An encoded request; a client's (zero Sender Key) unless ``signer`` signs it."""
    sender = public_key_bytes(signer) if signer is not None else bytes(32)
    message = DhtMessage(body, transaction_id, sender_key=sender, token=token, flags=flags)
    return encode_dht(message, signer)


def answer_in(
    node: Node, sent: Sequence[Sent], payload: bytes, observed: Endpoint, validated: bool
) -> Sent:
    """The one response to ``payload`` among ``sent``, checked against the rules for all."""
    responses = [s for s in sent if s.message.type.is_response]
    assert len(responses) == 1, responses  # DHT-FRAME-6
    reply = responses[0]
    message = reply.message
    assert reply.destination == observed  # DHT-FRAME-4
    assert message.transaction_id == payload[4:12]  # DHT-HDR-9
    assert message.sender_key == node.key  # DHT-HDR-11
    assert node.tokens.valid(message.token, observed.address)  # DHT-HDR-14
    if not validated:
        assert reply.size <= 3 * len(payload)  # DHT-AMP-1
    if message.flags & MessageFlags.TRUNCATED:
        # DHT-AMP-2/3: only a shortened node list, only for an unvalidated source.
        assert not validated
        assert isinstance(message.body, FindSuccessorResponse | Neighbors | ResolveResponse)
    return reply


def ask_bytes(
    node: Node,
    payload: bytes,
    *,
    source: Endpoint = CLIENT,
    route: SourceRoute | None = None,
    now: float = NOW,
) -> Sent:
    """Deliver one encoded request and return the node's answer (see :func:`answer_in`)."""
    observed = route.entries[0] if route is not None else source
    validated = node.tokens.valid(payload[44:60], observed.address)
    sent = exchange(node, payload, source=source, route=route, now=now)
    return answer_in(node, sent, payload, observed, validated)


def ask(
    node: Node,
    body: Body,
    *,
    token: bytes = NO_TOKEN,
    signer: Ed25519PrivateKey | None = None,
    source: Endpoint = CLIENT,
    route: SourceRoute | None = None,
    now: float = NOW,
) -> Sent:
    payload = request(body, token=token, signer=signer)
    return ask_bytes(node, payload, source=source, route=route, now=now)


def error_code(reply: Sent) -> ErrorCode:
    body = reply.message.body
    assert isinstance(body, Error), body
    return ErrorCode(body.error_code)


def token_for(node: Node, source: Endpoint = CLIENT, now: float = NOW) -> bytes:
    """The token a PING from ``source`` earns (Section 6.10.1)."""
    reply = ask(node, Ping(), source=source, now=now)
    assert isinstance(reply.message.body, Pong)
    return reply.message.token


def resign(unsigned: bytes, key: Ed25519PrivateKey) -> bytes:
    """Sign hand-built bytes (header with SIGNED set, then the body) as Section 6.3 says."""
    return unsigned + key.sign(MESSAGE_SIGNING_CONTEXT + unsigned)


def with_byte(data: bytes, offset: int, value: int) -> bytes:
    return data[:offset] + bytes([value]) + data[offset + 1 :]


def snapshot(node: Node) -> tuple[object, ...]:
    """The state that a refused request must leave alone (DHT-ERR-5, DHT-STORE-2)."""
    return (
        sorted(encode_record(record) for record in node.store.records()),
        list(node.predecessors),
        list(node.successors),
        dict(node.fingers),
        len(node.cache),
        node.state,
        node.ring_complete,
    )


def record(
    owner: Ed25519PrivateKey = ALICE,
    service_id: bytes = PRINTER,
    sequence: int = 1,
    *,
    issued_at: int = int(NOW),
    lifetime: int = 3600,
    addresses: Sequence[IPv4Address | IPv6Address] = (CLIENT.address,),
) -> ServiceRecord:
    unsigned = ServiceRecord(
        service_id=service_id,
        owner_key=bytes(32),
        sequence=sequence,
        issued_at=issued_at,
        lifetime=lifetime,
        flags=RecordFlags(0),
        endpoints=tuple(RecordEndpoint(address, 5000) for address in addresses),
    )
    return sign_record(unsigned, owner)


def block_at(position: int) -> bytes:
    """A block base at (or just before) a ring position."""
    return id_bytes(position % RING & ~7)


def register(node: Node, entry: ServiceRecord) -> None:
    """Store a record through a STORE from a validated source."""
    reply = ask(node, Store(entry), token=token_for(node))
    assert reply.message.body == StoreResponse(entry.sequence)
    sent_by(node)


# --- processing order (Section 6.11, DHT-ERR-1) ---------------------------------------


def test_short_message_dropped_as_malformed_without_reply_dht_err_1_dht_err_3() -> None:
    node = make_node()
    ping = request(Ping())
    for length in (0, 1, 12, 59):
        assert exchange(node, ping[:length]) == []
    assert node.counters["drop.MALFORMED"] == 4
    assert not any(name.startswith("error_sent") for name in node.counters)


def test_response_matching_no_request_dropped_dht_hdr_10_dht_err_3() -> None:
    node = make_node()
    pong = encode_dht(DhtMessage(Pong(CLIENT), TID, sender_key=public_key_bytes(ALICE)))
    assert exchange(node, pong) == []
    assert node.counters["drop.MALFORMED"] == 1


@pytest.mark.parametrize(
    "payload",
    [
        encode_dht(DhtMessage(Pong(CLIENT), TID)),
        encode_dht(DhtMessage(Error(ErrorCode.MALFORMED, b"no"), TID)),  # DHT-MSG-19
        encode_dht(DhtMessage(Error(ErrorCode.MALFORMED), TID, public_key_bytes(ALICE)), ALICE),
        with_byte(encode_dht(DhtMessage(Pong(CLIENT), TID)), 0, 2),  # DHT-HDR-3
        with_byte(encode_dht(DhtMessage(Pong(CLIENT), TID)), 1, 0x8A),  # unassigned type
        encode_dht(DhtMessage(Pong(CLIENT), TID)) + b"\x00",  # malformed body
        encode_dht(DhtMessage(Error(ErrorCode.MALFORMED), TID)) + bytes(MAX_DHT_MESSAGE),
    ],
    ids=["pong", "error", "signed-error", "version-2", "type-0x8a", "malformed", "too-long"],
)
def test_responses_and_errors_are_never_answered_dht_err_3_dht_msg_19(payload: bytes) -> None:
    node = make_node()
    assert exchange(node, payload) == []
    assert sum(n for name, n in node.counters.items() if name.startswith("drop.")) == 1


def test_error_matching_an_outstanding_request_is_not_answered_dht_msg_19() -> None:
    node, around = ring_member(successors=3)
    node.lookup(id_bytes(around[10].peer.id))
    (query,) = sent_by(node)
    assert isinstance(query.message.body, FindSuccessor)
    peer = next(m.peer for m in around if m.peer.endpoint == query.destination)
    error = DhtMessage(
        Error(ErrorCode.INTERNAL_ERROR), query.message.transaction_id, sender_key=peer.key
    )
    sent = exchange(node, encode_dht(error), source=query.destination)
    assert node.counters["responses_received"] == 1
    assert all(not s.message.type.is_response for s in sent)  # at most a next query


def test_rate_limit_before_everything_dht_rate_1_2_4() -> None:
    node = make_node()
    ping = request(Ping())
    replies = [s for _ in range(201) for s in exchange(node, ping)]
    # DHT-RATE-1: a burst of 200 is admitted; DHT-RATE-2: the 201st is dropped and counted.
    assert sum(isinstance(s.message.body, Pong) for s in replies) == 200
    limited = [s for s in replies if isinstance(s.message.body, Error)]
    assert [error_code(s) for s in limited] == [ErrorCode.RATE_LIMITED]
    assert node.counters["drop.RATE_LIMITED"] == 1
    # Beyond the rate, nothing that follows the rate check gets an answer (DHT-RATE-4:
    # no second ERROR RATE_LIMITED in the same second).
    too_long = ping + bytes(MAX_DHT_MESSAGE)
    version_2 = with_byte(ping, 0, 2)
    unknown_type = with_byte(ping, 1, 0x0A)
    bad_signature = request(Rectify(), signer=ALICE)[:-1] + b"\x00"
    unsigned = request(Rectify())
    for payload in (too_long, version_2, unknown_type, bad_signature, unsigned, ping):
        assert exchange(node, payload, now=NOW + 0.005) == []
    assert node.counters["drop.RATE_LIMITED"] == 7
    assert not any(
        name.startswith("error_sent.") and name != "error_sent.RATE_LIMITED"
        for name in node.counters
    )
    # Step 1 and step 2 come before the rate limit: counted as MALFORMED.
    assert exchange(node, ping[:59], now=NOW + 0.005) == []
    assert exchange(node, encode_dht(DhtMessage(Pong(CLIENT), TID)), now=NOW + 0.005) == []
    assert node.counters["drop.RATE_LIMITED"] == 7
    assert node.counters["drop.MALFORMED"] == 2
    # Other sources have their own buckets.
    assert isinstance(ask(node, Ping(), source=NEIGHBOUR, now=NOW + 0.005).message.body, Pong)
    # A second later the bucket has refilled by 100 and a flood earns one more ERROR.
    later = [s for _ in range(150) for s in exchange(node, ping, now=NOW + 1.005)]
    assert 99 <= sum(isinstance(s.message.body, Pong) for s in later) <= 101
    assert [error_code(s) for s in later if isinstance(s.message.body, Error)] == [
        ErrorCode.RATE_LIMITED
    ]


def test_request_longer_than_1184_bytes_limit_exceeded_dht_frame_3() -> None:
    node = make_node()
    ping = request(Ping())
    # Version 2 and an unassigned type too: the length rule (step 4) comes first.
    payload = with_byte(with_byte(ping, 0, 2), 1, 0x0A) + bytes(MAX_DHT_MESSAGE + 1 - len(ping))
    assert len(payload) == MAX_DHT_MESSAGE + 1
    assert error_code(ask_bytes(node, payload)) == ErrorCode.LIMIT_EXCEEDED
    # Exactly 1,184 bytes is a length the node accepts; this one breaks the body rule.
    assert error_code(ask_bytes(node, ping + bytes(MAX_DHT_MESSAGE - len(ping)))) == (
        ErrorCode.MALFORMED
    )


def test_version_2_request_unsupported_version_echoes_transaction_id_dht_hdr_2() -> None:
    node = make_node()
    for body in (Ping(), Status()):
        payload = with_byte(with_byte(request(body), 0, 2), 4, 0xEE)
        payload = with_byte(payload, 1, 0x0A) if isinstance(body, Status) else payload
        reply = ask_bytes(node, payload)  # checks the echoed Transaction ID
        assert error_code(reply) == ErrorCode.UNSUPPORTED_VERSION  # step 5 before step 6
        assert reply.message.transaction_id[0] == 0xEE
    # The reply is a version 1 message (decode_dht accepts only version 1).
    assert node.counters["error_sent.UNSUPPORTED_VERSION"] == 2


@pytest.mark.parametrize("kind", [0x00, 0x0A, 0x42, 0x7F])
def test_unassigned_request_type_unknown_message_type_section_6_4(kind: int) -> None:
    node = make_node()
    payload = with_byte(request(Ping()), 1, kind) + b"any body at all"
    assert error_code(ask_bytes(node, payload)) == ErrorCode.UNKNOWN_MESSAGE_TYPE


@pytest.mark.parametrize(
    "payload",
    [
        request(Ping()) + b"\x00",  # bytes after the body (DHT-HDR-15)
        request(FindSuccessor(bytes(32)))[:-1],  # a body too short
        request(Resolve(bytes(32)))[:70],
        with_byte(request(Ping()), 2, MessageFlags.SIGNED),  # no room for a signature
        # A signed RECTIFY with a byte of body: malformed (step 7) before its signature.
        resign(with_byte(request(Rectify()), 2, MessageFlags.SIGNED) + b"\x00", ALICE),
        # An unsigned RECTIFY with a body: MALFORMED (step 7) before SIGNATURE_REQUIRED.
        request(Rectify()) + b"\x00",
        # LEAVE with Has Predecessor 2 (DHT-MSG-9).
        resign(
            with_byte(request(Leave(None, ()), signer=ALICE)[:-SIGNATURE_LENGTH], 60, 2),
            ALICE,
        ),
    ],
    ids=["trailing", "short-body", "cut", "signed-empty", "rectify-body", "unsigned-body", "has-2"],
)
def test_malformed_request_answered_malformed_step_7_dht_hdr_15(payload: bytes) -> None:
    node = make_node()
    before = snapshot(node)
    assert error_code(ask_bytes(node, payload)) == ErrorCode.MALFORMED
    assert snapshot(node) == before


def test_static_rules_answered_with_their_code_step_7() -> None:
    node = make_node()
    # More than 8 address tokens: LIMIT_EXCEEDED (Section 6.4.5).
    store = request(Store(record(), address_tokens=(b"\x01" * 16,) * 8))
    nine = with_byte(store, 60, 9)
    nine = nine[:64] + b"\x02" * 16 + nine[64:]
    assert error_code(ask_bytes(node, nine)) == ErrorCode.LIMIT_EXCEEDED
    # A record whose Service ID is not a block base: BAD_SERVICE_ID (Section 6.7.1 check 1).
    plain = request(Store(record()))
    offset = 60 + 4 + 31
    assert error_code(ask_bytes(node, with_byte(plain, offset, plain[offset] | 1))) == (
        ErrorCode.BAD_SERVICE_ID
    )
    # A LEAVE naming 17 successors, unsigned: LIMIT_EXCEEDED before SIGNATURE_REQUIRED.
    infos = tuple(NodeInfo(public_key_bytes(k), NODE_AT) for k in PEER_KEYS[:16])
    leave = request(Leave(None, infos))
    seventeen = with_byte(leave, 61, 17) + leave[-52:]
    assert error_code(ask_bytes(node, seventeen)) == ErrorCode.LIMIT_EXCEEDED
    assert len(node.store) == 0


def test_bad_signature_answered_bad_signature_dht_msg_4_dht_msg_6() -> None:
    node = make_node()
    for body in (Ping(), Rectify(), Status()):
        signed = request(body, signer=ALICE)
        forged = signed[:-1] + bytes([signed[-1] ^ 1])
        assert error_code(ask_bytes(node, forged)) == ErrorCode.BAD_SIGNATURE
    # Signed by BOB but claiming ALICE's key.
    claimed = with_byte(request(Ping()), 2, MessageFlags.SIGNED)
    claimed = claimed[:12] + public_key_bytes(ALICE) + claimed[44:]
    assert error_code(ask_bytes(node, resign(claimed, BOB))) == ErrorCode.BAD_SIGNATURE
    # A STORE whose message signature fails is refused before its record is looked at.
    stale = record(issued_at=int(NOW) - 7200)
    signed_store = request(Store(stale), signer=ALICE)
    forged_store = signed_store[:-1] + bytes([signed_store[-1] ^ 1])
    assert error_code(ask_bytes(node, forged_store)) == ErrorCode.BAD_SIGNATURE
    # A correctly signed request of any type is processed (DHT-MSG-7).
    assert isinstance(ask(node, Ping(), signer=ALICE).message.body, Pong)


@pytest.mark.parametrize(
    "body",
    [Rectify(), Replicate(record()), Leave(None, ())],
    ids=["RECTIFY", "REPLICATE", "LEAVE"],
)
def test_signed_types_without_signature_signature_required_dht_msg_3(body: Body) -> None:
    node, around = ring_member(successors=3, predecessors=3)
    before = snapshot(node)
    sender = around[0]
    unsigned = DhtMessage(body, TID, sender_key=sender.peer.key, token=token_for(node))
    assert error_code(ask_bytes(node, encode_dht(unsigned))) == ErrorCode.SIGNATURE_REQUIRED
    assert snapshot(node) == before


@pytest.mark.parametrize("key", sorted(SMALL_ORDER_KEYS), ids=lambda key: key.hex()[:8])
@pytest.mark.parametrize("body", [Ping(), Rectify()], ids=["PING", "RECTIFY"])
def test_small_order_sender_key_fails_verification_dht_msg_5_dht_msg_20(
    key: bytes, body: Body
) -> None:
    node = make_node()
    before = snapshot(node)
    # R = the identity point and S = 0: a signature that a lax verifier accepts for
    # the identity key and for most other small-order keys.
    forged = bytes.fromhex("01" + "00" * 31) + bytes(32)
    message = DhtMessage(
        body, TID, sender_key=key, token=token_for(node), flags=MessageFlags.SIGNED
    )
    payload = encode_dht(dataclasses.replace(message, signature=forged))
    assert error_code(ask_bytes(node, payload)) == ErrorCode.BAD_SIGNATURE
    assert snapshot(node) == before


def test_reserved_header_bits_ignored_dht_hdr_5_dht_hdr_7() -> None:
    node = make_node()
    # TRUNCATED and the six reserved bits: meaningless in a request (Section 6.3).
    payload = with_byte(with_byte(request(Ping()), 2, 0x7F), 3, 0xFF)
    reply = ask_bytes(node, payload)
    assert isinstance(reply.message.body, Pong)
    assert reply.message.flags == MessageFlags(0)  # DHT-HDR-4, DHT-AMP-3


# --- every response ------------------------------------------------------------------


def test_reply_goes_to_source_entry_0_of_a_forwarded_request_dht_frame_4() -> None:
    node = make_node()
    client = Endpoint(IPv6Address("2001:db8::7"), 6000)
    route = SourceRoute(hop_limit=6, entries=(client, ROUTER))
    reply = ask(node, Ping(), source=ROUTER, route=route)  # checks destination and token
    assert reply.destination == client
    assert reply.message.body == Pong(client)  # DHT-MSG-8
    assert not node.tokens.valid(reply.message.token, ROUTER.address)
    # The token is for the client's address: presented through the router, it validates.
    status = ask(node, Status(), token=reply.message.token, source=ROUTER, route=route)
    assert isinstance(status.message.body, StatusResponse)


def test_source_service_and_ignorable_extensions_accepted_dht_frame_1() -> None:
    node = make_node()
    payload = request(Ping())
    packet = SalPacket(
        0,
        0,
        TransportProtocol.DATAGRAM,
        destination_service=SERVALDHT_SERVICE_ID,
        source_service=SERVALDHT_SERVICE_ID,
        unknown_extensions=(UnknownExtension(0x9C, b"\x00\x01"),),
        payload=payload,
    )
    node.receive_datagram(encode_sal(packet), CLIENT, NOW)
    reply = answer_in(node, sent_by(node), payload, CLIENT, validated=False)
    assert reply.message.body == Pong(CLIENT)


def test_dht_message_outside_an_unconnected_datagram_dropped_section_6_2() -> None:
    node = make_node()
    payload = request(Ping())
    for packet in (
        SalPacket(7, 0, TransportProtocol.DATAGRAM, destination_service=SERVALDHT_SERVICE_ID),
        SalPacket(0, 0, TransportProtocol.STREAM, destination_service=SERVALDHT_SERVICE_ID),
    ):
        node.receive_datagram(encode_sal(dataclasses.replace(packet, payload=payload)), CLIENT, NOW)
        assert node.datagrams_to_send() == []
    assert node.counters["drop.MALFORMED"] == 2


def test_ping_pong_with_observed_endpoint_dht_msg_8() -> None:
    node = make_node()
    for source in (CLIENT, NEIGHBOUR, Endpoint(IPv6Address("2001:db8::1"), 1)):
        reply = ask(node, Ping(), source=source)
        assert reply.message.body == Pong(source)
        assert reply.size == 80


def test_error_reply_carries_a_token_dht_hdr_14() -> None:
    node = make_node()
    reply = ask(node, Rectify())  # SIGNATURE_REQUIRED, checked by ask like every answer
    assert error_code(reply) == ErrorCode.SIGNATURE_REQUIRED
    assert reply.message.token != NO_TOKEN


# --- GET_NEIGHBORS and the amplification limit ---------------------------------------


def test_alone_node_reports_itself_as_its_successor_dht_msg_10() -> None:
    node = make_node()
    reply = ask(node, GetNeighbors())
    assert reply.message.body == Neighbors(None, (node.me.info(),))


def test_get_neighbors_validated_gets_whole_list_dht_msg_10_dht_amp_3() -> None:
    node, around = ring_member(successors=8, predecessors=2)
    reply = ask(node, GetNeighbors(), token=token_for(node))
    assert reply.message.body == Neighbors(
        around[-1].peer.info(), tuple(m.peer.info() for m in around[:8])
    )
    assert not reply.message.flags & MessageFlags.TRUNCATED
    assert reply.size > 3 * 60


def test_get_neighbors_unvalidated_truncated_prefix_dht_amp_1_dht_amp_2() -> None:
    node, around = ring_member(successors=8, predecessors=2)
    reply = ask(node, GetNeighbors())  # 60 bytes: at most 180 back
    body = reply.message.body
    assert isinstance(body, Neighbors)
    assert reply.message.flags & MessageFlags.TRUNCATED
    assert reply.size <= 180
    # The last successors go first, then the predecessor: a correct prefix.
    assert body.predecessor == around[-1].peer.info()
    assert body.successors == tuple(m.peer.info() for m in around[: len(body.successors)])
    assert len(body.successors) == 1


def test_find_successor_unvalidated_done_cut_to_4_entries_section_6_10_2() -> None:
    node, around = ring_member(successors=8)
    target = id_bytes(around[0].peer.id)
    reply = ask(node, FindSuccessor(target))  # 92 bytes: at most 276 back
    assert reply.message.body == FindSuccessorResponse(
        LookupStatus.DONE, tuple(m.peer.info() for m in around[:4])
    )
    assert reply.message.flags & MessageFlags.TRUNCATED
    full = ask(node, FindSuccessor(target), token=token_for(node))
    assert full.message.body == FindSuccessorResponse(
        LookupStatus.DONE, tuple(m.peer.info() for m in around[:8])
    )
    assert not full.message.flags & MessageFlags.TRUNCATED


def test_large_non_list_answer_needs_a_token_dht_amp_1_dht_msg_17() -> None:
    node = make_node()
    big = record(addresses=[IPv4Address(f"192.0.2.{i}") for i in range(7, 11)])
    small = record(BOB, SCANNER, addresses=[CLIENT.address, NEIGHBOUR.address])
    node.store.offer(big, NOW, verify=ServiceRecord.verify, responsible=lambda _: True)
    node.store.offer(small, NOW, verify=ServiceRecord.verify, responsible=lambda _: True)
    # A RESOLVE is 92 bytes: a FOUND with 2 endpoints (264 bytes) fits, 4 do not.
    assert ask(node, Resolve(SCANNER)).message.body == ResolveResponse(
        ResolveStatus.FOUND, record=small
    )
    refused = ask(node, Resolve(PRINTER))
    assert error_code(refused) == ErrorCode.ADDRESS_NOT_VALIDATED
    assert not refused.message.flags & MessageFlags.TRUNCATED
    # The ERROR's token validates the repeat.
    found = ask(node, Resolve(PRINTER), token=refused.message.token)
    assert found.message.body == ResolveResponse(ResolveStatus.FOUND, record=big)
    assert found.size == 312
    # STATUS likewise (DHT-MSG-17 allows the refusal; the size rule requires it here).
    assert error_code(ask(node, Status())) == ErrorCode.ADDRESS_NOT_VALIDATED
    status = ask(node, Status(), token=token_for(node))
    assert isinstance(status.message.body, StatusResponse)
    report = json.loads(status.message.body.report)
    assert report["node_id"] == id_bytes(node.id).hex()


# --- tokens (Section 6.10.1) -------------------------------------------------------------


def validated_now(node: Node, token: bytes, source: Endpoint, now: float) -> bool:
    """Whether the node treats a STATUS with ``token`` from ``source`` as validated."""
    reply = ask(node, Status(), token=token, source=source, now=now)
    return isinstance(reply.message.body, StatusResponse)


def test_token_valid_after_one_rotation_invalid_after_two_dht_token_1_2() -> None:
    node = make_node()
    token = token_for(node)
    assert validated_now(node, token, CLIENT, NOW)
    first = node.tokens.rotates_at
    assert first == NOW + TOKEN_SECRET_LIFETIME
    node.handle_timer(first)  # DHT-TOKEN-1: a new secret every 300 s
    assert node.tokens.rotates_at == first + TOKEN_SECRET_LIFETIME
    assert validated_now(node, token, CLIENT, first)
    fresh = token_for(node, now=first)
    assert fresh != token
    node.handle_timer(node.tokens.rotates_at)
    assert not validated_now(node, token, CLIENT, node.now)  # DHT-TOKEN-2
    assert validated_now(node, fresh, CLIENT, node.now)


def test_token_for_another_address_invalid_dht_token_2_dht_token_4() -> None:
    node = make_node()
    token = token_for(node, CLIENT)
    assert not validated_now(node, token, NEIGHBOUR, NOW)
    assert not validated_now(node, NO_TOKEN, CLIENT, NOW)
    # Tokens prove an address, not a port.
    assert validated_now(node, token, Endpoint(CLIENT.address, 1), NOW)


# --- RECTIFY and LEAVE -------------------------------------------------------------------


def test_rectify_from_unvalidated_source_changes_nothing_dht_msg_12() -> None:
    node, around = ring_member(successors=3)
    closer = around[-1]  # nearer than the current predecessor
    node.predecessors = [around[-2].peer, around[-3].peer]
    before = snapshot(node)
    reply = ask(node, Rectify(), signer=closer.key, source=closer.peer.endpoint)
    assert error_code(reply) == ErrorCode.ADDRESS_NOT_VALIDATED
    assert snapshot(node) == before
    assert node.datagrams_to_send() == []
    # A token for another address does not help.
    reply = ask(
        node, Rectify(), signer=closer.key, token=token_for(node), source=closer.peer.endpoint
    )
    assert error_code(reply) == ErrorCode.ADDRESS_NOT_VALIDATED
    assert snapshot(node) == before


def test_validated_rectify_from_closer_node_adopted_dht_msg_11_dht_ring_8() -> None:
    node, around = ring_member(successors=3)
    closer, current, farther = around[-1], around[-2], around[-3]
    node.predecessors = [current.peer, farther.peer]
    token = token_for(node, closer.peer.endpoint)
    reply = ask(node, Rectify(), signer=closer.key, token=token, source=closer.peer.endpoint)
    assert reply.message.body == RectifyResponse()
    assert node.predecessors == [closer.peer, current.peer, farther.peer]


def test_validated_rectify_from_farther_node_answered_and_probes_predecessor() -> None:
    node, around = ring_member(successors=3)
    current, farther = around[-1], around[-2]
    node.predecessors = [current.peer]
    token = token_for(node, farther.peer.endpoint)
    payload = request(Rectify(), signer=farther.key, token=token)
    sent = exchange(node, payload, source=farther.peer.endpoint)
    reply = answer_in(node, sent, payload, farther.peer.endpoint, validated=True)
    assert reply.message.body == RectifyResponse()  # DHT-MSG-11: answered in every case
    assert node.predecessors == [current.peer]
    # Rectify (Section 6.5): the current predecessor is pinged before any change.
    probes = [s for s in sent if not s.message.type.is_response]
    assert [(s.message.body, s.destination) for s in probes] == [(Ping(), current.peer.endpoint)]


def test_rectify_from_current_predecessor_updates_its_endpoint_section_6_5() -> None:
    node, around = ring_member(successors=3)
    current = around[-1]
    node.predecessors = [current.peer, around[-2].peer]
    moved = Endpoint(IPv4Address("203.0.113.200"), 6000)
    token = token_for(node, moved)
    reply = ask(node, Rectify(), signer=current.key, token=token, source=moved)
    assert reply.message.body == RectifyResponse()
    assert node.predecessors == [Peer.of(current.peer.key, moved), around[-2].peer]


def test_leave_from_unvalidated_source_changes_nothing_dht_msg_15() -> None:
    node, around = ring_member(successors=3, predecessors=2)
    leaver = around[0]
    before = snapshot(node)
    body = Leave(None, tuple(m.peer.info() for m in around[1:4]))
    reply = ask(node, body, signer=leaver.key, source=leaver.peer.endpoint)
    assert error_code(reply) == ErrorCode.ADDRESS_NOT_VALIDATED
    assert snapshot(node) == before


def test_validated_leave_of_successor_replaces_it_section_6_5() -> None:
    node, around = ring_member(successors=3, predecessors=2)
    leaver = around[0]
    body = Leave(node.me.info(), tuple(m.peer.info() for m in around[1:4]))
    token = token_for(node, leaver.peer.endpoint)
    reply = ask(node, body, signer=leaver.key, token=token, source=leaver.peer.endpoint)
    assert reply.message.body == LeaveResponse()
    assert node.successors == [m.peer for m in around[1:4]]


# --- STORE (Sections 6.4.5, 6.7.1, 6.8) --------------------------------------------------


def refused_store(
    node: Node,
    store: Store,
    code: ErrorCode,
    *,
    token: bytes = NO_TOKEN,
    source: Endpoint = CLIENT,
) -> None:
    """A STORE refused with ``code``: nothing changes and nothing is replicated."""
    before = snapshot(node)
    payload = request(store, token=token)
    sent = exchange(node, payload, source=source)
    reply = answer_in(node, sent, payload, source, node.tokens.valid(token, source.address))
    assert error_code(reply) == code  # DHT-STORE-1
    assert snapshot(node) == before  # DHT-STORE-2, DHT-ERR-5
    assert sent == [reply]  # no REPLICATE


def test_store_success_replies_sequence_and_replicates_dht_msg_13_dht_repl_4() -> None:
    node, around = ring_member(successors=3)
    entry = record(sequence=42)
    payload = request(Store(entry), token=token_for(node))
    sent = exchange(node, payload)
    reply = answer_in(node, sent, payload, CLIENT, validated=True)
    assert sent[0] == reply  # before any replication
    assert reply.message.body == StoreResponse(42)
    assert node.store.get(PRINTER, NOW) == entry
    # Without predecessors the node heads the replica set: itself and 2 successors.
    replicates = sent[1:]
    assert sorted(s.destination.address for s in replicates) == sorted(
        m.peer.endpoint.address for m in around[:2]
    )
    for s in replicates:
        assert s.message.body == Replicate(entry)
        assert s.message.flags & MessageFlags.SIGNED  # verified by decode_dht
        assert s.message.sender_key == node.key
    # A repeat is accepted without change and replicated no further.
    payload = request(Store(entry), token=token_for(node))
    sent = exchange(node, payload)
    assert [s.message.body for s in sent] == [StoreResponse(42)]


def test_store_replicates_to_the_view_of_the_replica_set_dht_repl_4() -> None:
    node, around = ring_member(successors=3, predecessors=3)
    p1, p2, p3 = around[-1], around[-2], around[-3]
    cases = [
        (block_at(p1.peer.id + 8 * 16), [around[0], around[1]]),  # first replica
        (block_at(p2.peer.id + 8 * 16), [p1, around[0]]),  # second: [p1, n, s1]
        (block_at(p3.peer.id + 8 * 16), [p2, p1]),  # third: [p2, p1, n]
    ]
    for block, view in cases:
        entry = record(service_id=block)
        payload = request(Store(entry), token=token_for(node))
        sent = exchange(node, payload)
        assert answer_in(node, sent, payload, CLIENT, True).message.body == StoreResponse(1)
        replicated = sorted(str(s.destination.address) for s in sent[1:])
        assert replicated == sorted(str(m.peer.endpoint.address) for m in view)
        assert all(s.message.body == Replicate(entry) for s in sent[1:])


def test_store_from_ipv4_mapped_source_validates_its_ipv4_address_dht_token_6() -> None:
    # Section 6.10.1: an IPv4 address is its IPv4-mapped IPv6 form, as a dual-stack
    # socket reports it; the observed address and the record's address are the same.
    node, _ = ring_member(successors=3)
    mapped = Endpoint(IPv6Address("::ffff:192.0.2.7"), 40000)
    token = token_for(node, mapped)
    assert ask(node, Store(record()), token=token, source=mapped).message.body == (StoreResponse(1))


def test_store_refused_bad_signature_section_6_7_1_check_2() -> None:
    node, _ = ring_member(successors=3)
    entry = record()
    forged = dataclasses.replace(entry, sequence=2)  # the signature covers the sequence
    refused_store(node, Store(forged), ErrorCode.BAD_SIGNATURE, token=token_for(node))
    unsigned = dataclasses.replace(entry, owner_key=bytes(32))
    refused_store(node, Store(unsigned), ErrorCode.BAD_SIGNATURE, token=token_for(node))


def test_store_refused_record_expired_section_6_7_1_check_3() -> None:
    node, _ = ring_member(successors=3)
    token = token_for(node)
    old = record(issued_at=int(NOW) - 3600, lifetime=3600)  # expires at NOW: expired
    refused_store(node, Store(old), ErrorCode.RECORD_EXPIRED, token=token)
    ahead = record(issued_at=int(NOW) + 301)
    refused_store(node, Store(ahead), ErrorCode.RECORD_EXPIRED, token=token)
    # 300 s ahead is within the tolerated skew.
    assert ask(node, Store(record(issued_at=int(NOW) + 300)), token=token).message.body == (
        StoreResponse(1)
    )


def test_store_refused_not_responsible_dht_repl_3_section_6_7_1_check_4() -> None:
    node, around = ring_member(successors=3, predecessors=3)
    # A block just after the node is outside (p3, n]: not a member of its replica set.
    outside = record(service_id=block_at(node.id + (1 << 200)))
    refused_store(node, Store(outside), ErrorCode.NOT_RESPONSIBLE, token=token_for(node))
    # A block in (p3, n] is accepted.
    inside = record(service_id=block_at(around[-3].peer.id + 8 * 16))
    assert ask(node, Store(inside), token=token_for(node)).message.body == StoreResponse(1)


def test_store_refused_address_not_validated_dht_token_6() -> None:
    node, _ = ring_member(successors=3)
    elsewhere = record(addresses=[PROVIDER.address])
    # An address other than the observed one, without a token for it.
    refused_store(node, Store(elsewhere), ErrorCode.ADDRESS_NOT_VALIDATED, token=token_for(node))
    # The observed address itself, from a source that is not validated.
    refused_store(node, Store(record()), ErrorCode.ADDRESS_NOT_VALIDATED)
    # A token for a third address does not validate this one.
    wrong = Store(elsewhere, address_tokens=(token_for(node, NEIGHBOUR),))
    refused_store(node, wrong, ErrorCode.ADDRESS_NOT_VALIDATED, token=token_for(node))
    # Two addresses, only one of them validated.
    both = record(addresses=[CLIENT.address, PROVIDER.address])
    refused_store(
        node,
        Store(both, address_tokens=(token_for(node, PROVIDER),)),
        ErrorCode.ADDRESS_NOT_VALIDATED,
    )
    # A PING from the provider's address earns the token that validates it, whoever
    # sends the STORE.
    provider_token = token_for(node, PROVIDER)
    reply = ask(node, Store(elsewhere, address_tokens=(provider_token,)))
    assert reply.message.body == StoreResponse(1)
    assert node.store.get(PRINTER, NOW) == elsewhere


def test_store_refused_not_owner_and_stale_sequence_section_6_7_1_checks_6_7() -> None:
    node, _ = ring_member(successors=3)
    register(node, record(ALICE, sequence=5))
    token = token_for(node)
    refused_store(node, Store(record(BOB, sequence=6)), ErrorCode.NOT_OWNER, token=token)
    for sequence in (4, 5):
        changed = record(ALICE, sequence=sequence, addresses=[CLIENT.address, CLIENT.address])
        refused_store(node, Store(changed), ErrorCode.STALE_SEQUENCE, token=token)
    newer = record(ALICE, sequence=6)
    assert ask(node, Store(newer), token=token).message.body == StoreResponse(6)
    assert node.store.get(PRINTER, NOW) == newer  # DHT-STORE-3


def test_store_refused_limit_exceeded_section_6_7_1_check_8() -> None:
    node, _ = ring_member(successors=3, config=NodeConfig(max_records=2, max_per_owner=1))
    register(node, record(ALICE, PRINTER))
    token = token_for(node)
    refused_store(node, Store(record(ALICE, SCANNER)), ErrorCode.LIMIT_EXCEEDED, token=token)
    register(node, record(BOB, SCANNER))
    third = record(private_key(4), service_id_for_name("plotter"))
    refused_store(node, Store(third), ErrorCode.LIMIT_EXCEEDED, token=token)
    # Replacing a stored record adds nothing to the counts.
    assert ask(node, Store(record(ALICE, PRINTER, 2)), token=token).message.body == (
        StoreResponse(2)
    )


# --- REPLICATE (Section 6.8) -------------------------------------------------------------


def test_replicate_from_non_neighbour_not_responsible_dht_repl_6() -> None:
    node, around = ring_member(successors=3, predecessors=3)
    entry = record(service_id=block_at(around[-1].peer.id + 8 * 16))
    # A stranger, and the third predecessor (beyond the first k - 1 = 2).
    for sender in (around[10], around[-3]):
        before = snapshot(node)
        token = token_for(node, sender.peer.endpoint)
        reply = ask(
            node, Replicate(entry), signer=sender.key, token=token, source=sender.peer.endpoint
        )
        assert error_code(reply) == ErrorCode.NOT_RESPONSIBLE
        assert snapshot(node) == before


def test_replicate_from_successor_or_predecessor_stored_dht_repl_7() -> None:
    node, around = ring_member(successors=3, predecessors=3)
    for sender, owner, offset in ((around[0], ALICE, 8000), (around[-2], BOB, 16000)):
        entry = record(owner, block_at(around[-1].peer.id + offset))
        reply = ask(node, Replicate(entry), signer=sender.key, source=sender.peer.endpoint)
        assert reply.message.body == ReplicateResponse()  # needs no token
        assert node.store.get(entry.service_id, NOW) == entry
        # A REPLICATE is not validated for addresses (Section 6.8) and not re-replicated.
        assert node.datagrams_to_send() == []
    # A refusal of a replicated record carries the code of Section 6.7.1.
    conflicting = record(BOB, block_at(around[-1].peer.id + 8 * 1000), sequence=9)
    before = snapshot(node)
    reply = ask(node, Replicate(conflicting), signer=around[0].key, source=around[0].peer.endpoint)
    assert error_code(reply) == ErrorCode.NOT_OWNER
    assert snapshot(node) == before


# --- RESOLVE (Section 6.9.1) -------------------------------------------------------------


def test_resolve_found_from_store_or_cache_dht_res_1() -> None:
    node, around = ring_member(successors=3, predecessors=3)
    inside = record(service_id=block_at(around[-3].peer.id + 8 * 16))
    register(node, inside)
    reply = ask(node, Resolve(inside.service_id[:-1] + bytes([inside.service_id[-1] | 5])))
    assert reply.message.body == ResolveResponse(ResolveStatus.FOUND, record=inside)
    # A cached record is FOUND even for a block outside the node's range.
    far = record(BOB, block_at(around[12].peer.id))
    node.cache.put(far, NOW)
    assert ask(node, Resolve(far.service_id)).message.body == ResolveResponse(
        ResolveStatus.FOUND, record=far
    )


def test_resolve_not_found_only_as_member_dht_res_2() -> None:
    node, around = ring_member(successors=3, predecessors=3)
    inside = block_at(around[-2].peer.id + 8 * 16)
    assert ask(node, Resolve(inside)).message.body == ResolveResponse(ResolveStatus.NOT_FOUND)
    # Just after the node: its first successor heads the replica set; REFER with the
    # first k successors.
    after = block_at(node.id + (1 << 200))
    assert ask(node, Resolve(after)).message.body == ResolveResponse(
        ResolveStatus.REFER, nodes=tuple(m.peer.info() for m in around[:3])
    )


def test_resolve_refer_closest_preceding_3_nodes_dht_res_3() -> None:
    node, around = ring_member(successors=3, predecessors=3)
    node.fingers = {200: around[8].peer, 230: around[12].peer, 250: around[20].peer}
    target = around[14].peer.id - 1
    reply = ask(node, Resolve(block_at(target)))
    body = reply.message.body
    assert isinstance(body, ResolveResponse) and body.status is ResolveStatus.REFER
    assert body.nodes == tuple(
        peer.info() for peer in (around[12].peer, around[8].peer, around[2].peer)
    )


# --- FIND_SUCCESSOR (Section 6.6) --------------------------------------------------------


def brute_force_refer(node: Node, target: int, count: int = 3) -> tuple[NodeInfo, ...]:
    """Step 4 by the definitions of Section 6.1.5: known nodes in (n, t), nearest t first."""
    known = {p.key: p for p in [*node.fingers.values(), *node.successors, *node.predecessors]}
    between = [p for p in known.values() if 0 < (p.id - node.id) % RING < (target - node.id) % RING]
    between.sort(key=lambda p: (target - p.id) % RING)
    return tuple(p.info() for p in between[:count])


def test_find_successor_alone_step_1_dht_lookup_1() -> None:
    node = make_node()
    for target in (0, node.id, node.id + 1, RING - 1):
        reply = ask(node, FindSuccessor(id_bytes(target % RING)))
        assert reply.message.body == FindSuccessorResponse(LookupStatus.DONE, (node.me.info(),))


def test_find_successor_steps_2_to_4_dht_lookup_1_to_4() -> None:
    node, around = ring_member(successors=3, predecessors=2)
    node.fingers = {i: around[i // 20].peer for i in (200, 220, 240)}
    node.fingers[255] = around[16].peer
    token = token_for(node)
    successors = tuple(m.peer.info() for m in around[:3])
    first, predecessor = around[0].peer.id, around[-1].peer.id

    def answer(target: int) -> FindSuccessorResponse:
        reply = ask(node, FindSuccessor(id_bytes(target % RING)), token=token)
        body = reply.message.body
        assert isinstance(body, FindSuccessorResponse)
        return body

    # Step 2: t in (n, s_j], the list from the first such entry on.
    for target in (node.id + 1, first):
        assert answer(target) == FindSuccessorResponse(LookupStatus.DONE, successors)
    for j in (1, 2):
        for target in (around[j - 1].peer.id + 1, around[j].peer.id):
            assert answer(target) == FindSuccessorResponse(LookupStatus.DONE, successors[j:])
    # Step 3 (DHT-LOOKUP-2, taken here): t in (p, n].
    for target in (predecessor + 1, node.id):
        assert answer(target) == FindSuccessorResponse(
            LookupStatus.DONE, (node.me.info(), *successors)
        )
    # Step 4: REFER with the closest preceding nodes, 3 of them (DHT-LOOKUP-3, -4).
    for target in (predecessor, around[16].peer.id + 1, around[27].peer.id):
        body = answer(target)
        assert body.status is LookupStatus.REFER
        assert body.nodes == brute_force_refer(node, target)
        assert len(body.nodes) == 3
        assert all(
            0 < (node_id_of(info.key) - node.id) % RING < (target - node.id) % RING
            for info in body.nodes
        )
    # Just past the last successor, all three are eligible, the last first.
    last = around[2].peer.id
    assert answer(last + 1) == FindSuccessorResponse(
        LookupStatus.REFER, tuple(reversed(successors))
    )
    assert node.datagrams_to_send() == []


def test_find_successor_with_16_successors_done_carries_at_most_16() -> None:
    config = NodeConfig(successors=16)
    node, around = ring_member(successors=16, predecessors=1, config=config)
    token = token_for(node)
    reply = ask(node, FindSuccessor(id_bytes(node.id)), token=token)  # step 3
    body = reply.message.body
    assert isinstance(body, FindSuccessorResponse) and body.status is LookupStatus.DONE
    assert body.nodes == (node.me.info(), *(m.peer.info() for m in around[:15]))


# --- robustness: no exception leaves the core ---------------------------------------------

REQUEST_TYPES = [t for t in MessageType if not t.is_response]


def requests() -> st.SearchStrategy[bytes]:
    """Valid encoded requests of every type, signed or not."""
    return dht_messages(bodies(*REQUEST_TYPES)).map(encode_dht)


def check_any_reply(node: Node, payload: bytes, sent: list[Sent]) -> None:
    """What holds for any input: at most one response, valid, to the source, within 3x."""
    responses = [s for s in sent if s.message.type.is_response]
    assert len(responses) <= 1
    if len(payload) < 60 or payload[1] & 0x80:
        assert responses == []  # DHT-ERR-3
        return
    for reply in responses:
        answer_in(node, sent, payload, CLIENT, node.tokens.valid(payload[44:60], CLIENT.address))
        try:
            decode_dht(payload)
        except RemoteProtocolError as error:
            # A request that does not decode gets the decoder's code (Section 6.11).
            assert error_code(reply) == error.error_code


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.one_of(
        st.binary(max_size=200),
        st.binary(max_size=200).map(datagram),
        dht_messages().map(lambda m: datagram(encode_dht(m))),
        requests().flatmap(lambda payload: sal_mutants(datagram(payload))),
    )
)
def test_random_bytes_and_damaged_datagrams_never_raise(data: bytes) -> None:
    node, _ = ring_member(successors=3, predecessors=2)
    node.receive_datagram(data, CLIENT, NOW)
    for out, _destination in node.datagrams_to_send():
        assert isinstance(out, bytes)
        decode_dht(decode_sal(out).payload)


@st.composite
def mutated_requests(draw: st.DrawFn) -> bytes:
    encoded = draw(requests())
    return draw(st.one_of(dht_mutants(encoded), byte_mutants(encoded), st.just(encoded)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=mutated_requests())
def test_mutated_requests_never_raise_and_replies_decode(payload: bytes) -> None:
    node, _ = ring_member(successors=3, predecessors=2)
    before = snapshot(node)
    sent = exchange(node, payload)
    check_any_reply(node, payload, sent)
    if not any(isinstance(s.message.body, StoreResponse | ReplicateResponse) for s in sent):
        # DHT-ERR-5; unvalidated RECTIFY and LEAVE change nothing either (DHT-MSG-12, -15).
        assert snapshot(node) == before
