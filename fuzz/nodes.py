"""The ServalDHT node core as a fuzz target: datagrams in, invariants checked after each.

Theory of operation.  Every execution builds the same node: a
:class:`~ref.chord.node.Node` on :class:`~ref.chord.framing.WireFraming` with
a fixed host key, ``random.Random(0)``, the clock at :data:`NOW`, forward mode
on, and successor and predecessor lists set by hand to the nearest members of
a fixed ring whose private keys the harness holds.  The input is a sequence
of *frames*, each one control octet, a 16-bit length and a SAL datagram.  The
control octet picks the source endpoint and asks the harness for what random
bytes almost never get right, so that the mutations reach the logic behind
the checks:

========  ====================================================================
bits 0-2  the source: four clients (IPv4, IPv6, a record's endpoint address)
          and four ring members (the first two successors, the predecessor,
          a member the node does not list)
bit 3     ANSWER: a response to the node's oldest unanswered request: its
          Transaction ID, sent from where the request went, with the Sender
          Key of the member there
bit 4     TICK: first advance the clock to the node's next timer
bit 5     TOKEN: the token the node issues to the observed address
bit 6     AS_SIGNED: leave signatures as they are (otherwise a record whose
          owner key, and a SIGNED message whose sender key, the harness holds
          are signed again after the mutations)
bit 7     RAW: leave the SAL checksum as it is (otherwise it is recomputed)
========  ====================================================================

After every frame, :class:`NodeWatch` checks what the node sent and what it
holds (the node swallows bad input into its ``drop.*`` counters, so the
state is the oracle): no exception but ``RemoteProtocolError``; every
datagram it sends decodes, signatures included; at most one response, and
only to a request, echoing its Transaction ID, within three times its size
for an unvalidated source (DHT-FRAME-6, DHT-ERR-3, DHT-HDR-9, DHT-AMP-1);
timers send requests only; successor and predecessor lists in ring order
without repeats and within their lengths; a stored record verifies and
replaces an unexpired one only with the same owner and a higher sequence
(DHT-STORE-1); and every table and queue stays within a bound.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import ipaddress
import random
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from conformance import fuzz as socket_fuzz
from conformance.peer import dht_datagram
from fuzz import seeds
from fuzz.decoders import fix_checksum
from fuzz.findings import InvariantViolation
from ref.chord.framing import WireFraming, record_verifies
from ref.chord.node import Node, NodeConfig
from ref.chord.ring import Peer, distance, id_bytes, node_id_of
from ref.wire import (
    SERVALDHT_SERVICE_ID,
    DhtMessage,
    Endpoint,
    FindSuccessor,
    GetNeighbors,
    Leave,
    LocalProtocolError,
    MessageFlags,
    Neighbors,
    Ping,
    Pong,
    RecordEndpoint,
    RecordFlags,
    Rectify,
    RemoteProtocolError,
    Replicate,
    Resolve,
    SalPacket,
    ServiceRecord,
    Status,
    Store,
    TransportProtocol,
    block_base,
    decode_dht,
    decode_sal,
    encode_dht,
    public_key_bytes,
    sign_record,
)
from ref.wire.constants import (
    AMPLIFICATION_FACTOR,
    DHT_HEADER_LENGTH,
    MAX_DHT_MESSAGE,
    MAX_UDP_PAYLOAD,
    MESSAGE_SIGNING_CONTEXT,
    SIGNATURE_LENGTH,
)
from ref.wire.vectors import HOST_A, HOST_B, OWNER

NOW = float(seeds.NOW)
MAX_FRAMES = 16
MAX_FRAME = 0xFFFF

SOURCE_BITS = 0x07
ANSWER = 0x08
TICK = 0x10
TOKEN = 0x20
AS_SIGNED = 0x40
RAW = 0x80

#: Bounds on what one node may hold or send, far above what a sequence of frames needs.
MAX_OUTPUT_PER_FRAME = 64
MAX_PENDING = 256
MAX_TIMERS = 1024
MAX_EVENTS = 64
MAX_COUNTERS = 256
MAX_SOURCES = 64
MAX_FINGERS = 256


def private_key(seed: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)


HOST = private_key(1)
HOST_KEY = public_key_bytes(HOST)
NODE_AT = Endpoint(ipaddress.ip_address("192.0.2.100"), 54325)


@functools.cache
def signing_keys() -> dict[bytes, Ed25519PrivateKey]:
    """Public key -> private key for every key the harness can sign with."""
    bases = socket_fuzz.bases(seeds.SOCKET_FUZZER_SEED, seeds.NOW)
    keys = [HOST_A, HOST_B, OWNER, *(private_key(n) for n in (0x11, 0x22, 0x33))]
    keys += [key for base in bases for key in (base.signer, base.owner) if key is not None]
    keys += [private_key(n) for n in range(16, 48)]
    return {public_key_bytes(key): key for key in keys}


@functools.cache
def ring() -> tuple[Peer, ...]:
    """Every member but the node, clockwise from the node: the ring the harness holds."""
    members = [
        Peer.of(key, Endpoint(ipaddress.ip_address(f"203.0.113.{n}"), 54325))
        for n, key in enumerate(signing_keys(), start=1)
        if key != HOST_KEY
    ]
    own = node_id_of(HOST_KEY)
    return tuple(sorted(members, key=lambda peer: distance(own, peer.id)))


SUCCESSORS = 3
PREDECESSORS = 2


def successors() -> list[Peer]:
    return list(ring()[:SUCCESSORS])


def predecessors() -> list[Peer]:
    return list(reversed(ring()))[:PREDECESSORS]


@functools.cache
def sources() -> tuple[Endpoint, ...]:
    """The eight source endpoints a frame can pick."""
    address = ipaddress.ip_address
    return (
        Endpoint(address("192.0.2.7"), 40000),
        Endpoint(address("198.51.100.9"), 5000),
        Endpoint(address("2001:db8::7"), 40000),
        Endpoint(address("192.0.2.10"), 54325),  # an endpoint of the vectors' record
        successors()[0].endpoint,
        successors()[1].endpoint,
        predecessors()[0].endpoint,
        ring()[len(ring()) // 2].endpoint,  # a member the node does not list
    )


@functools.cache
def member_at() -> dict[Endpoint, Peer]:
    return {peer.endpoint: peer for peer in ring()}


def make_node(config: NodeConfig | None = None) -> Node:
    """The node every execution starts from: a ring member with hand-set lists."""
    node = Node(
        WireFraming(HOST),
        HOST_KEY,
        NODE_AT,
        random.Random(0),
        NOW,
        config or NodeConfig(forward_mode=True),
    )
    node.start()
    node.successors = successors()
    node.predecessors = predecessors()
    return node


# --- frames ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Frame:
    control: int
    datagram: bytes

    def encode(self) -> bytes:
        size = min(len(self.datagram), MAX_FRAME)
        return bytes([self.control]) + size.to_bytes(2, "big") + self.datagram[:size]


def frames(data: bytes) -> list[Frame]:
    """The frames of an input; a length past the end takes what is left."""
    out: list[Frame] = []
    offset = 0
    while offset + 3 <= len(data) and len(out) < MAX_FRAMES:
        control = data[offset]
        length = int.from_bytes(data[offset + 1 : offset + 3], "big")
        offset += 3
        out.append(Frame(control, data[offset : offset + length]))
        offset += length
    return out


def encode_frames(items: Iterable[Frame]) -> bytes:
    return b"".join(frame.encode() for frame in items)


# --- what the harness fills in --------------------------------------------------------------


def _resign_record(payload: bytes) -> bytes | None:
    """The message re-encoded with its record signed again, if the harness holds the key."""
    keys = signing_keys()
    try:
        message = decode_dht(payload, verify=False)
    except RemoteProtocolError:
        return None
    body: Any = message.body
    record = getattr(body, "record", None)
    if not isinstance(record, ServiceRecord) or record.owner_key not in keys:
        return None
    body = dataclasses.replace(body, record=sign_record(record, keys[record.owner_key]))
    signer = keys.get(message.sender_key) if message.flags & MessageFlags.SIGNED else None
    signature = None if signer is not None else message.signature
    try:
        return encode_dht(dataclasses.replace(message, body=body, signature=signature), signer)
    except LocalProtocolError:
        return None


def resign(payload: bytes) -> bytes:
    """Records and messages signed again wherever the harness holds the key."""
    again = _resign_record(payload)
    if again is not None:
        return again
    signer = signing_keys().get(payload[12 : 12 + 32])
    if (
        signer is None
        or not payload[2] & MessageFlags.SIGNED
        or len(payload) < DHT_HEADER_LENGTH + SIGNATURE_LENGTH
    ):
        return payload
    signed = payload[:-SIGNATURE_LENGTH]
    return signed + signer.sign(MESSAGE_SIGNING_CONTEXT + signed)


def patch(payload: bytes, offset: int, value: bytes) -> bytes:
    """``payload`` with ``value`` written over it at ``offset``."""
    return payload[:offset] + value + payload[offset + len(value) :]


@dataclasses.dataclass(frozen=True)
class Request:
    """A datagram the node sent: a request if ``type`` < 0x80."""

    type: int
    transaction_id: bytes
    destination: Endpoint
    payload: bytes


def read_output(data: object, destination: object) -> tuple[SalPacket, Request | None]:
    """A datagram the node sent, which must decode (with its signature)."""
    if not isinstance(data, bytes) or not isinstance(destination, Endpoint):
        raise InvariantViolation("output-type", f"{type(data).__name__} to {destination!r}")
    if len(data) > MAX_UDP_PAYLOAD:
        raise InvariantViolation("output-size", f"{len(data)} bytes")
    try:
        packet = decode_sal(data)
    except RemoteProtocolError as error:
        raise InvariantViolation("output-undecodable", f"{error}: {data.hex()}") from error
    if packet.destination_service != SERVALDHT_SERVICE_ID:
        return packet, None  # forwarded or an RST
    payload = packet.payload
    if len(payload) > MAX_DHT_MESSAGE:
        raise InvariantViolation("output-message-size", f"{len(payload)} bytes")
    try:
        message = decode_dht(payload)
    except RemoteProtocolError as error:
        raise InvariantViolation("output-undecodable", f"{error}: {payload.hex()}") from error
    return packet, Request(message.type.value, message.transaction_id, destination, payload)


# --- the watch: invariants after each step ----------------------------------------------------


def _violation(name: str, detail: str) -> InvariantViolation:
    return InvariantViolation(name, detail)


class NodeWatch:
    """Checks one node's output and state after each step (shared with the stateful tests)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.before: dict[bytes, ServiceRecord] = {}
        self.answer: Request | None = None  # the response to the latest datagram
        self.snapshot()

    def snapshot(self) -> None:
        self.before = {record.service_id: record for record in self.node.store.records()}

    def outputs(
        self, request: bytes | None, observed: Endpoint | None, validated: bool
    ) -> list[Request]:
        """Read what the node sent for one datagram (``request``, None for a timer)."""
        sent = self.node.datagrams_to_send()
        if len(sent) > MAX_OUTPUT_PER_FRAME:
            raise _violation("output-burst", f"{len(sent)} datagrams for one input")
        read = [read_output(data, destination) for data, destination in sent]
        messages = [message for _, message in read if message is not None]
        responses = [message for message in messages if message.type & 0x80]
        asked = _request_payload(request)
        if asked is None:
            if responses:
                what = "a timer" if request is None else "no request"
                raise _violation("answered-non-request", f"{what}: {responses[0].payload.hex()}")
        elif responses:
            self._response(responses, asked, observed, validated)
        self.answer = responses[0] if responses else None
        return [message for message in messages if not message.type & 0x80]

    def _response(
        self,
        responses: Sequence[Request],
        asked: bytes,
        observed: Endpoint | None,
        validated: bool,
    ) -> None:
        if len(responses) > 1:
            raise _violation("more-than-one-answer", f"{len(responses)} responses")
        answer = responses[0]
        if answer.destination != observed:
            raise _violation("answer-misdirected", f"to {answer.destination}, not {observed}")
        if answer.transaction_id != asked[4:12]:
            raise _violation("transaction-id-not-echoed", answer.payload.hex())
        if not validated and len(answer.payload) > AMPLIFICATION_FACTOR * len(asked):
            raise _violation(
                "amplification", f"{len(answer.payload)} bytes for a {len(asked)}-byte request"
            )

    def state(self) -> None:
        """The node's lists, store and tables after a step."""
        node = self.node
        self._lists()
        self._store()
        events = 0
        while node.next_event() is not None:
            events += 1
            if events > MAX_EVENTS:
                raise _violation("events-unbounded", f"more than {MAX_EVENTS} events")
        bounds = {
            "pending": (len(node._pending), MAX_PENDING),
            "timers": (len(node._timers), MAX_TIMERS),
            "counters": (len(node.counters), MAX_COUNTERS),
            "rate-limit-buckets": (len(node.limiter), MAX_SOURCES),
            "fingers": (len(node.fingers), MAX_FINGERS),
        }
        for name, (size, bound) in bounds.items():
            if size > bound:
                raise _violation(f"{name}-unbounded", f"{size} > {bound}")
        self.snapshot()

    def _lists(self) -> None:
        node = self.node
        succ, pred = node.successors, node.predecessors
        if len(succ) > node.config.successors:
            raise _violation("successor-list-length", f"{len(succ)}")
        if len(pred) > node.config.replicas:
            raise _violation("predecessor-list-length", f"{len(pred)}")
        for name, peers in (("successor", succ), ("predecessor", pred)):
            keys = [peer.key for peer in peers]
            if len(set(keys)) != len(keys):
                raise _violation(f"{name}-repeated", _describe(peers))
        if any(peer.key == node.key for peer in pred):
            raise _violation("self-predecessor", _describe(pred))
        if any(peer.key == node.key for peer in succ) and len(succ) != 1:
            raise _violation("self-among-successors", _describe(succ))
        clockwise = [distance(node.id, peer.id) for peer in succ if peer.key != node.key]
        if clockwise != sorted(clockwise):
            raise _violation("successor-order", _describe(succ))
        counter = [distance(peer.id, node.id) for peer in pred]
        if counter != sorted(counter):
            raise _violation("predecessor-order", _describe(pred))

    def _store(self) -> None:
        node = self.node
        store = node.store
        if len(store) > store.max_records:
            raise _violation("store-over-limit", f"{len(store)} records")
        owners: dict[bytes, int] = {}
        for record in store.records():
            owners[record.owner_key] = owners.get(record.owner_key, 0) + 1
            old = self.before.get(record.service_id)
            if old is record or old == record:
                continue
            if not record_verifies(record) or record.owner_key == bytes(32):
                raise _violation("record-not-verified", repr(record))
            if old is not None and node.now < old.expires_at:
                if old.owner_key != record.owner_key:
                    raise _violation("record-owner-changed", f"{old!r} -> {record!r}")
                if record.sequence <= old.sequence:
                    raise _violation("record-sequence-not-higher", f"{old!r} -> {record!r}")
        for owner, count in owners.items():
            if count > store.max_per_owner or count != store.owner_count(owner):
                raise _violation("owner-count", f"{owner.hex()}: {count}")


def _describe(peers: Sequence[Peer]) -> str:
    return ", ".join(id_bytes(peer.id).hex()[:12] for peer in peers)


def _request_payload(datagram: bytes | None) -> bytes | None:
    """The ServalDHT request in ``datagram`` that may draw an answer, or None."""
    if datagram is None:
        return None
    try:
        packet = decode_sal(datagram)
    except RemoteProtocolError:
        return None
    payload = packet.payload
    if (
        packet.destination_service != SERVALDHT_SERVICE_ID
        or packet.protocol != TransportProtocol.DATAGRAM
        or packet.control is not None
        or len(payload) < DHT_HEADER_LENGTH
        or payload[1] & 0x80
    ):
        return None
    return payload


def _observed(datagram: bytes, source: Endpoint) -> Endpoint:
    """Where an answer goes: the first SOURCE entry, else the UDP source (DHT-FRAME-4)."""
    try:
        route = decode_sal(datagram).source_route
    except RemoteProtocolError:
        return source
    return route.entries[0] if route is not None else source


# --- the harness ---------------------------------------------------------------------------


class NodeRun:
    """One execution: a fresh node, the frames delivered in order, checked after each."""

    def __init__(self) -> None:
        self.node = make_node()
        self.watch = NodeWatch(self.node)
        self.now = NOW
        self.unanswered: deque[Request] = deque(maxlen=64)

    def tick(self) -> None:
        deadline = self.node.get_timer()
        if deadline is not None:
            self.now = max(self.now, deadline)
            self.node.handle_timer(self.now)
            self.unanswered.extend(self.watch.outputs(None, None, False))
            self.watch.state()

    def deliver(self, frame: Frame) -> None:
        control = frame.control
        if control & TICK:
            self.tick()
        source = sources()[control & SOURCE_BITS]
        datagram = frame.datagram
        header = datagram[8] * 4 if len(datagram) > 8 else 0
        if 12 <= header <= len(datagram):
            payload = datagram[header:]
            if control & ANSWER and self.unanswered and len(payload) >= DHT_HEADER_LENGTH:
                asked = self.unanswered.popleft()
                source = asked.destination
                payload = patch(payload, 4, asked.transaction_id)
                member = member_at().get(source)
                if member is not None:
                    payload = patch(payload, 12, member.key)
            if control & TOKEN and len(payload) >= DHT_HEADER_LENGTH:
                where = _observed(datagram, source)
                payload = patch(payload, 44, self.node.tokens.issue(where.address))
            if not control & AS_SIGNED and len(payload) >= DHT_HEADER_LENGTH:
                payload = resign(payload)
            datagram = datagram[:header] + payload
        if not control & RAW:
            datagram = fix_checksum(datagram)
        observed = _observed(datagram, source)
        asked_payload = _request_payload(datagram)
        validated = asked_payload is not None and self.node.tokens.valid(
            asked_payload[44:60], observed.address
        )
        with contextlib.suppress(RemoteProtocolError):  # the one exception allowed out
            self.node.receive_datagram(datagram, source, self.now)
        self.unanswered.extend(self.watch.outputs(datagram, observed, validated))
        self.watch.state()


def run(data: bytes) -> None:
    """The ``dht-node`` harness: one fresh node, every frame of ``data``."""
    execution = NodeRun()
    for frame in frames(data):
        execution.deliver(frame)


# --- seeds ---------------------------------------------------------------------------------


def request_datagram(
    body: Any, sender: bytes = bytes(32), signer: Ed25519PrivateKey | None = None
) -> bytes:
    """A message in a SAL datagram to the ServalDHT serviceID; a client's by default."""
    message = DhtMessage(body=body, transaction_id=bytes(range(8)), sender_key=sender)
    return dht_datagram(encode_dht(message, signer))


def signed_datagram(body: Any, peer: Peer) -> bytes:
    """A message from ring member ``peer``, signed with its key."""
    return request_datagram(body, peer.key, signing_keys()[peer.key])


def responsible_record(
    sequence: int, owner: Ed25519PrivateKey = OWNER, endpoints: int = 1
) -> ServiceRecord:
    """A record for a block the node is responsible for (its own ID's block)."""
    base = block_base(id_bytes(node_id_of(HOST_KEY)))
    listed = tuple(
        RecordEndpoint(ipaddress.ip_address(f"192.0.2.{10 + n}"), 54325) for n in range(endpoints)
    )
    record = ServiceRecord(base, bytes(32), sequence, int(NOW) - 60, 3600, RecordFlags(0), listed)
    return sign_record(record, owner)


def node_seeds() -> list[bytes]:
    """Frames that reach every handler, the record store and the node's own requests."""
    succ, pred, far = successors(), predecessors(), ring()[len(ring()) // 2]
    client, provider = 0, 3
    record = responsible_record(5)
    store = request_datagram(Store(record, ()))
    out: list[list[Frame]] = [
        [Frame(client, request_datagram(Ping()))],
        [Frame(client, request_datagram(FindSuccessor(bytes(32))))],
        [Frame(client, request_datagram(GetNeighbors()))],
        [Frame(client, request_datagram(Status()))],
        [Frame(client, request_datagram(Resolve(record.service_id)))],
        [
            Frame(provider | TOKEN, store),
            Frame(client, request_datagram(Resolve(record.service_id))),
            Frame(
                provider | TOKEN, request_datagram(Store(responsible_record(6, endpoints=2), ()))
            ),
            Frame(provider | TOKEN, request_datagram(Store(responsible_record(4), ()))),
            Frame(
                provider | TOKEN, request_datagram(Store(responsible_record(7, owner=HOST_A), ()))
            ),
        ],
        [Frame(4, signed_datagram(Replicate(responsible_record(9)), succ[0]))],
        [Frame(7 | TOKEN, signed_datagram(Rectify(), far))],
        [
            Frame(
                4 | TOKEN,
                signed_datagram(
                    Leave(pred[0].info(), tuple(p.info() for p in ring()[3:6])), succ[0]
                ),
            )
        ],
        [
            Frame(TICK, request_datagram(Ping())),
            Frame(
                ANSWER,
                signed_datagram(
                    Neighbors(pred[0].info(), tuple(p.info() for p in ring()[1:6])), succ[0]
                ),
            ),
            Frame(ANSWER, signed_datagram(Pong(NODE_AT), succ[0])),
            Frame(TICK, request_datagram(Ping())),
        ],
    ]
    for payload in seeds.dht_payloads():
        out.append([Frame(client | TOKEN, dht_datagram(payload))])
    for datagram in seeds.mutant_datagrams(24):
        out.append([Frame(client | RAW | AS_SIGNED, datagram)])
    return [encode_frames(sequence) for sequence in out]
