"""Structure-aware fuzzing over the socket (``serval-conform --fuzz N``).

A campaign starts from valid ServalDHT messages of every request type (and a
few responses), built with ``ref.wire`` inside SAL datagrams, and damages each
with one to three *mutations* chosen from the declared formats: the fields of
the header and of the body are found by walking the Construct ``Struct`` of
the message's layout (records and node lists included), so a mutation sets a
named field to a boundary value, rewrites a count or a length, cuts the
message at a field boundary, appends bytes, or changes the SAL extensions,
header or checksum.  The checksum is recomputed unless the mutation is the
wrong checksum itself; a signed message may be re-signed after the change, so
that the damage reaches the checks behind the signature.

The campaign is a pure function of the seed (and of the record time and local
address the caller passes): :func:`campaign` gives the same plans and bytes
for the same arguments.  Only the target's token, when a plan asks for it, is
filled in as the datagram is sent.

The oracle (:func:`judge`) asks of the answers each datagram drew:

* the target stays alive: a PING after each batch draws a PONG (DHT-MSG-8);
* a message whose header does not parse, a response or an ERROR is never
  answered (DHT-ERR-3, DHT-MSG-19), nor is a packet the SAL must drop
  (SAL-CSUM-2, SAL-HDR-2, SAL-RECV-3), nor, at its UDP source, a request that
  came with a SOURCE extension (DHT-FRAME-4);
* a request whose header parses is answered (DHT-ERR-2), once (DHT-FRAME-6),
  from the address it was sent to (DHT-FRAME-5), in a SAL unconnected
  datagram (DHT-FRAME-1) holding a message that decodes, of Version 1
  (DHT-HDR-1), not too long (DHT-FRAME-3), that echoes the Transaction ID
  (DHT-HDR-9), and whose ERROR code, if it is one, is registered (Section
  6.11, judged as DHT-ERR-2).

A failing datagram is shrunk with ``hypothesis.find`` over the plan's
mutations (drop a mutation, a simpler value, a simpler base message), sent
again and confirmed failing several times before it is reported, with a
command that replays it: ``serval-conform --target HOST:PORT --replay-hex HEX``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import math
import random
import select
import time
from collections.abc import Callable, Sequence
from typing import Any

import construct as cs
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from conformance.model import Case, CaseResult, Finding, Verdict, worst
from conformance.peer import Address, Capture, DhtPeer, Wire, dht_datagram
from conformance.requirements import requirements
from conformance.runner import alive
from ref.wire import (
    BODIES,
    SERVALDHT_SERVICE_ID,
    DhtMessage,
    Endpoint,
    Error,
    ErrorCode,
    FindSuccessor,
    GetNeighbors,
    Leave,
    MessageType,
    Neighbors,
    NodeInfo,
    Ping,
    Pong,
    RecordEndpoint,
    RecordFlags,
    Rectify,
    RemoteProtocolError,
    Replicate,
    Resolve,
    ServiceRecord,
    Status,
    Store,
    TransportProtocol,
    block_base,
    decode_dht,
    decode_sal,
    encode_dht,
    internet_checksum,
    public_key_bytes,
    sign_record,
)
from ref.wire._codec import AddressAdapter
from ref.wire.constants import (
    DHT_HEADER_LENGTH,
    MAX_ADDRESS_TOKENS,
    MAX_DHT_MESSAGE,
    MAX_ENDPOINTS,
    MAX_ERROR_REASON,
    MAX_NODES_PER_MESSAGE,
    MAX_RECORD_LIFETIME,
    MAX_SOURCE_ENTRIES,
    MAX_STATUS_LENGTH,
    MESSAGE_SIGNING_CONTEXT,
    RATE_LIMIT_BURST,
    RATE_LIMIT_PER_SOURCE,
    RECORD_SIGNING_CONTEXT,
    SIGNATURE_LENGTH,
)
from ref.wire.dht import HeaderFormat

#: Every kind of mutation the mutator makes.
KINDS = (
    "header-field",  # a header field set to a boundary value
    "body-field",  # a body field (records and node lists included) set to a boundary value
    "count-field",  # a count or length field set to another value, the data left as it was
    "list-resize",  # a node, token or endpoint list grown or shrunk, its count kept right
    "truncate",  # the message or the datagram cut at a field boundary
    "append",  # bytes appended to the message
    "flip",  # one bit flipped
    "sal-extension",  # SAL extensions: duplicates, unknown types, SOURCE, order, count
    "sal-header",  # SAL base header fields
    "checksum",  # a wrong SAL checksum
)
_WEIGHTS = (3.0, 4.0, 2.0, 1.0, 2.0, 1.0, 2.0, 2.5, 1.0, 0.5)

#: What the oracle judges, for the fuzz cases' requirement lists.
ORACLE = (
    "DHT-MSG-8",
    "DHT-ERR-3",
    "DHT-MSG-19",
    "DHT-ERR-2",
    "DHT-HDR-9",
    "DHT-HDR-1",
    "DHT-FRAME-1",
    "DHT-FRAME-3",
    "DHT-FRAME-4",
    "DHT-FRAME-5",
    "DHT-FRAME-6",
    "SAL-CSUM-2",
    "SAL-HDR-2",
    "SAL-RECV-3",
)

#: Error codes an ERROR may carry: the common and the ServalDHT codes of Section 6.11.
REGISTERED_CODES = frozenset(
    code.value for code in ErrorCode if code.value < 0x100 or 0x200 <= code.value < 0x300
)

CONFIRMATIONS = 3  # a shrunk failure is sent this many times and must fail each time
BATCH = 100  # datagrams between liveness checks
MAX_REPORTED = 6  # distinct failures shrunk and reported
SHRINK_TRIALS = 80  # datagrams the shrinker may send for one failure

_TXID = slice(4, 12)
_SAL_HEADER = 12
_DOCUMENTATION_V4 = "192.0.2."  # RFC 5737: never a real node
_DOCUMENTATION_V6 = "2001:db8::"  # RFC 3849


# --- plans ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Edit:
    """Replace ``[start, end)`` of a buffer by ``data``; None means its end."""

    start: int | None
    end: int | None
    data: bytes = b""

    def apply(self, buffer: bytes) -> bytes:
        size = len(buffer)
        start = size if self.start is None else min(self.start, size)
        end = size if self.end is None else max(start, min(self.end, size))
        return buffer[:start] + self.data + buffer[end:]


@dataclasses.dataclass(frozen=True)
class Mutation:
    """One change: of the ServalDHT message ("dht") or of the whole SAL datagram ("sal")."""

    kind: str
    layer: str
    label: str
    edits: tuple[Edit, ...] = ()
    #: For "sal-extension": the whole new extension area (Header Length follows it).
    area: bytes | None = None
    #: The integer a "set" mutation writes, with its field's width, for simpler variants.
    value: int | None = None
    width: int = 0

    def apply(self, buffer: bytes) -> bytes:
        if self.area is not None and len(buffer) >= _SAL_HEADER:
            old_end = max(_SAL_HEADER, min(len(buffer), buffer[8] * 4))
            words = (_SAL_HEADER + len(self.area)) // 4
            buffer = (
                buffer[:8] + bytes([words & 0xFF]) + buffer[9:12] + self.area + buffer[old_end:]
            )
        for edit in self.edits:
            buffer = edit.apply(buffer)
        return buffer


@dataclasses.dataclass(frozen=True)
class Plan:
    """How to make one fuzz datagram: a base message, its Transaction ID and the mutations."""

    index: int
    base: int
    txid: bytes
    mutations: tuple[Mutation, ...]
    resign: bool = False  # sign the message again after the changes
    token: bool = False  # carry the target's token in the header

    def describe(self, bases: Sequence[Base]) -> str:
        parts = [bases[self.base].name] + [f"{m.kind}: {m.label}" for m in self.mutations]
        if self.resign:
            parts.append("re-signed")
        if self.token:
            parts.append("with the target's token")
        return "; ".join(parts)


@dataclasses.dataclass(frozen=True)
class Base:
    """A valid message the mutations start from."""

    name: str
    message: DhtMessage
    signer: Ed25519PrivateKey | None = None  # signs the message
    owner: Ed25519PrivateKey | None = None  # signs its record

    def payload(self, txid: bytes, token: bytes) -> bytes:
        message = dataclasses.replace(
            self.message, transaction_id=txid, token=token, signature=None
        )
        return encode_dht(message, self.signer)


def bases(seed: int, now: int, local: str = "127.0.0.1") -> list[Base]:
    """The valid messages of a campaign: each request type, then a few responses.

    ``now`` is the record's issue time; ``local`` the address the harness sends
    from, which the STORE's record names so that a token validates it.
    """
    rng = random.Random(f"{seed}:fuzz:bases")
    member = Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))
    owner = Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))
    member_key = public_key_bytes(member)

    def node(n: int) -> NodeInfo:
        key = public_key_bytes(Ed25519PrivateKey.from_private_bytes(rng.randbytes(32)))
        return NodeInfo(key, Endpoint(ipaddress.ip_address(f"{_DOCUMENTATION_V4}{n}"), 54325))

    record = sign_record(
        ServiceRecord(
            service_id=block_base(rng.randbytes(32)),
            owner_key=bytes(32),
            sequence=rng.randrange(1, 1 << 16),
            issued_at=now - 60,
            lifetime=MAX_RECORD_LIFETIME,
            flags=RecordFlags(0),
            endpoints=(RecordEndpoint(ipaddress.ip_address(local), rng.randrange(1024, 65536)),),
        ),
        owner,
    )

    def client(body: Any) -> DhtMessage:
        return DhtMessage(body=body, transaction_id=bytes(8))

    def signed(body: Any) -> DhtMessage:
        return DhtMessage(body=body, transaction_id=bytes(8), sender_key=member_key)

    observed = Endpoint(ipaddress.ip_address(local), rng.randrange(1024, 65536))
    return [
        Base("PING", client(Ping())),
        Base("FIND_SUCCESSOR", client(FindSuccessor(rng.randbytes(32)))),
        Base("GET_NEIGHBORS", client(GetNeighbors())),
        Base("RECTIFY", signed(Rectify()), signer=member),
        Base("STORE", client(Store(record, (rng.randbytes(16),))), owner=owner),
        Base("RESOLVE", client(Resolve(record.service_id))),
        Base("REPLICATE", signed(Replicate(record)), signer=member, owner=owner),
        Base("LEAVE", signed(Leave(node(1), (node(2), node(3)))), signer=member),
        Base("STATUS", client(Status())),
        Base("PONG", signed(Pong(observed)), signer=member),
        Base("NEIGHBORS", signed(Neighbors(node(4), (node(5),))), signer=member),
        Base("ERROR", client(Error(ErrorCode.MALFORMED, b"fuzz"))),
    ]


def fix_checksum(datagram: bytes) -> bytes:
    if len(datagram) < _SAL_HEADER:
        return datagram
    zeroed = datagram[:10] + b"\x00\x00" + datagram[12:]
    return zeroed[:10] + internet_checksum(zeroed).to_bytes(2, "big") + zeroed[12:]


def resign(payload: bytes, key: Ed25519PrivateKey) -> bytes:
    """A SIGNED message's signature made again by ``key`` when it is the sender key."""
    if (
        len(payload) < DHT_HEADER_LENGTH + SIGNATURE_LENGTH
        or not payload[2] & 0x80
        or payload[12:44] != public_key_bytes(key)
    ):
        return payload
    signed = payload[:-SIGNATURE_LENGTH]
    return signed + key.sign(MESSAGE_SIGNING_CONTEXT + signed)


def materialise(plan: Plan, bases: Sequence[Base], token: bytes = bytes(16)) -> bytes:
    """The datagram of ``plan``: deterministic for the same bases and token."""
    base = bases[plan.base]
    payload = base.payload(plan.txid, token if plan.token else bytes(16))
    for mutation in plan.mutations:
        if mutation.layer == "dht":
            payload = mutation.apply(payload)
    if plan.resign and base.signer is not None:
        payload = resign(payload, base.signer)
    datagram = dht_datagram(payload)
    wrong = False
    for mutation in plan.mutations:
        if mutation.layer == "sal":
            datagram = mutation.apply(datagram)
            wrong = wrong or mutation.kind == "checksum"
    datagram = fix_checksum(datagram)
    if wrong and len(datagram) >= _SAL_HEADER:
        datagram = datagram[:10] + bytes([datagram[10] ^ 0x01]) + datagram[11:]
    return datagram


# --- the field map: walking the Construct declarations -----------------------------------


@dataclasses.dataclass(frozen=True)
class Spot:
    """A field of an encoded message: where it is, how wide, and what it is."""

    path: str
    offset: int
    width: int
    integer: bool
    role: str  # "field", "count", "reserved" or "signature"


@dataclasses.dataclass(frozen=True)
class Span:
    """A list in an encoded message: its count field and its elements."""

    path: str
    count: Spot
    elements: tuple[tuple[int, int], ...]
    end: int


#: The draft's largest value of a field, by name, where it is below the width's maximum.
LIMITS = {
    "version": 1,
    "type": MessageType.STATUS.value,
    "node_count": MAX_NODES_PER_MESSAGE,
    "successor_count": MAX_NODES_PER_MESSAGE,
    "has_predecessor": 1,
    "record_count": 1,
    "token_count": MAX_ADDRESS_TOKENS,
    "endpoint_count": MAX_ENDPOINTS,
    "reason_length": MAX_ERROR_REASON,
    "length": MAX_STATUS_LENGTH,
    "lifetime": MAX_RECORD_LIFETIME,
    "status": 2,
}
_COUNTED = {
    "nodes": "node_count",
    "successors": "successor_count",
    "address_tokens": "token_count",
    "endpoints": "endpoint_count",
}


class _Walker:
    def __init__(self) -> None:
        self.spots: list[Spot] = []
        self.spans: list[Span] = []

    def struct(self, struct: Any, value: Any, offset: int, path: str) -> int:
        counts: dict[str, Spot] = {}
        for sub in struct.subcons:
            name = str(sub.name)
            before = len(self.spots)
            start = offset
            offset = self.sub(sub, value[name], offset, f"{path}.{name}", name)
            if name in _COUNTED.values() and len(self.spots) > before:
                counts[name] = self.spots[-1]
            counted = _COUNTED.get(name)
            if counted in counts and isinstance(value[name], list):
                self.spans.append(
                    Span(
                        f"{path}.{name}",
                        counts[counted],
                        tuple(self._elements(start, offset, len(value[name]))),
                        offset,
                    )
                )
        return offset

    @staticmethod
    def _elements(start: int, end: int, count: int) -> list[tuple[int, int]]:
        if not count:
            return []
        size = (end - start) // count
        return [(start + i * size, start + (i + 1) * size) for i in range(count)]

    def sub(self, con: Any, value: Any, offset: int, path: str, name: str) -> int:
        role = "reserved" if name.startswith("reserved") else "field"
        while True:
            if isinstance(con, cs.Renamed):
                con = con.subcon
            elif isinstance(con, cs.Rebuild):
                role = "count"
                con = con.subcon
            elif isinstance(con, (cs.Default, cs.Const)) or (
                isinstance(con, cs.Adapter) and not isinstance(con, AddressAdapter)
            ):
                con = con.subcon
            else:
                break
        if isinstance(con, cs.Struct):
            return self.struct(con, value, offset, path)
        if isinstance(con, cs.Array):
            for index, item in enumerate(value):
                offset = self.sub(con.subcon, item, offset, f"{path}[{index}]", name)
            return offset
        if isinstance(con, cs.IfThenElse):
            if value is None:
                return offset
            return self.sub(con.thensubcon, value, offset, path, name)
        if isinstance(con, (cs.FormatField, cs.BytesInteger)):
            width = int(con.sizeof())
            self.spots.append(Spot(path, offset, width, True, role))
            return offset + width
        width = 16 if isinstance(con, AddressAdapter) else len(value)
        self.spots.append(Spot(path, offset, width, False, role))
        return offset + width


def field_map(payload: bytes) -> tuple[list[Spot], list[Span]]:
    """The fields of a ServalDHT message, from the declarations of its header and body.

    The header's fields always; the body's only when it parses with its layout.
    """
    walker = _Walker()
    if len(payload) < DHT_HEADER_LENGTH:
        return walker.spots, walker.spans
    header = HeaderFormat.parse(payload)
    walker.struct(HeaderFormat, header, 0, "header")
    signed = bool(payload[2] & 0x80)
    end = len(payload) - SIGNATURE_LENGTH if signed else len(payload)
    try:
        layout = BODIES[MessageType(payload[1])][0]
        body = payload[DHT_HEADER_LENGTH:end]
        parsed = layout.parse(body)
        inner = _Walker()
        stop = inner.struct(layout, parsed, DHT_HEADER_LENGTH, "body")
    except (ValueError, KeyError, cs.ConstructError, TypeError, IndexError):
        return walker.spots, walker.spans
    if stop != end:
        return walker.spots, walker.spans
    walker.spots += inner.spots
    walker.spans += inner.spans
    if signed and end >= DHT_HEADER_LENGTH:
        walker.spots.append(Spot("signature", end, SIGNATURE_LENGTH, False, "signature"))
    return walker.spots, walker.spans


# --- the mutator -----------------------------------------------------------------------


def _leaf(path: str) -> str:
    return path.rsplit(".", 1)[-1].split("[", 1)[0]


def boundary_values(spot: Spot, old: int) -> list[int]:
    """0, 1, the width's maximum, the draft's maximum and one more, around the old value."""
    top = (1 << 8 * spot.width) - 1
    values = [0, 1, top, top >> 1, (top >> 1) + 1, (old + 1) & top, (old - 1) & top]
    limit = LIMITS.get(_leaf(spot.path))
    if limit is not None:
        values += [limit, limit + 1]
    if spot.path == "header.type":
        values += [t.value for t in MessageType] + [0x0A, 0x7F, 0x80, 0x8A, 0xFE]
    if spot.path == "header.flags":
        values += [old ^ 0x80, old ^ 0x40, old | 0x3F]
    return sorted({v for v in values if 0 <= v <= top and v != old})


def _byte_values(rng: random.Random, spot: Spot, old: bytes) -> bytes:
    options = [bytes(spot.width), b"\xff" * spot.width]
    if spot.width == 32:
        options.append(b"\x01" + bytes(31))  # an Ed25519 point of small order
    if spot.width == 16 and _leaf(spot.path) == "address":
        options.append(bytes(10) + b"\xff\xff" + bytes(4))  # IPv4-mapped 0.0.0.0
    if old:
        at = rng.randrange(len(old))
        options.append(old[:at] + bytes([old[at] ^ rng.randrange(1, 256)]) + old[at + 1 :])
    choice = rng.choice([o for o in options if o != old] or options)
    return choice


class _State:
    """What the mutations so far made of the message and of the SAL extension area."""

    def __init__(self, base: Base, payload: bytes, area: bytes) -> None:
        self.base = base
        self.payload = payload
        self.area = area
        self._map: tuple[list[Spot], list[Span]] | None = None

    @property
    def fields(self) -> tuple[list[Spot], list[Span]]:
        if self._map is None:
            self._map = field_map(self.payload)
        return self._map

    def apply(self, mutation: Mutation) -> None:
        if mutation.layer == "dht":
            self.payload = mutation.apply(self.payload)
            self._map = None
        elif mutation.area is not None:
            self.area = mutation.area


def _record_spots(spots: list[Spot]) -> tuple[int, int] | None:
    inside = [s for s in spots if s.path.startswith("body.record.")]
    if not inside:
        return None
    return min(s.offset for s in inside), max(s.offset + s.width for s in inside)


def _dht_edit(
    state: _State, edits: tuple[Edit, ...], touches: tuple[int, int], rng: random.Random
) -> tuple[tuple[Edit, ...], str]:
    """``edits``, or when they change a record and a coin says so, the record re-signed."""
    span = _record_spots(state.fields[0])
    owner = state.base.owner
    if span is None or owner is None or not (span[0] <= touches[0] < span[1]):
        return edits, ""
    if rng.random() < 0.5:
        return edits, ""
    changed = state.payload
    for edit in edits:
        changed = edit.apply(changed)
    delta = len(changed) - len(state.payload)
    record = changed[span[0] : span[1] + delta]
    if len(record) < SIGNATURE_LENGTH:
        return edits, ""
    unsigned = record[:-SIGNATURE_LENGTH]
    record = unsigned + owner.sign(RECORD_SIGNING_CONTEXT + unsigned)
    return (Edit(span[0], span[1], record),), ", record re-signed"


def _set_field(rng: random.Random, state: _State, kind: str, spots: list[Spot]) -> Mutation | None:
    if not spots:
        return None
    spot = rng.choice(spots)
    old = state.payload[spot.offset : spot.offset + spot.width]
    if spot.integer:
        value = rng.choice(boundary_values(spot, int.from_bytes(old, "big")))
        new = value.to_bytes(spot.width, "big")
        label = f"{spot.path} = {value:#x}"
    else:
        new = _byte_values(rng, spot, old)
        value = None
        label = f"{spot.path} = {new.hex()[:16]}{'…' if len(new) > 8 else ''}"
    edits, note = _dht_edit(
        state, (Edit(spot.offset, spot.offset + spot.width, new),), (spot.offset, 0), rng
    )
    return Mutation(kind, "dht", label + note, edits, value=value, width=spot.width)


def _header_field(rng: random.Random, state: _State) -> Mutation | None:
    spots = [s for s in state.fields[0] if s.path.startswith("header.")]
    return _set_field(rng, state, "header-field", spots)


def _body_field(rng: random.Random, state: _State) -> Mutation | None:
    spots = [s for s in state.fields[0] if s.role != "count" and not s.path.startswith("header.")]
    return _set_field(rng, state, "body-field", spots) or _header_field(rng, state)


def _count_field(rng: random.Random, state: _State) -> Mutation | None:
    spots = [s for s in state.fields[0] if s.role == "count"]
    return _set_field(rng, state, "count-field", spots) or _flip(rng, state)


def _list_resize(rng: random.Random, state: _State) -> Mutation | None:
    spans = [s for s in state.fields[1] if s.elements]
    if not spans:
        return _count_field(rng, state)
    span = rng.choice(spans)
    limit = LIMITS.get(_leaf(span.count.path), 0xFF)
    count = rng.choice(
        sorted({0, 1, len(span.elements) + 1, limit, limit + 1} - {len(span.elements)})
    )
    top = (1 << 8 * span.count.width) - 1
    count = min(count, top)
    items = [state.payload[a:b] for a, b in span.elements]
    data = b"".join(items[i % len(items)] for i in range(count))
    start = span.elements[0][0]
    edits: tuple[Edit, ...] = (
        Edit(
            span.count.offset,
            span.count.offset + span.count.width,
            count.to_bytes(span.count.width, "big"),
        ),
        Edit(start, span.end, data),
    )
    edits, note = _dht_edit(state, edits, (span.count.offset, 0), rng)
    return Mutation("list-resize", "dht", f"{span.path}: {count} entries{note}", edits)


def _truncate(rng: random.Random, state: _State) -> Mutation | None:
    if rng.random() < 0.25:
        cut = rng.choice([0, 1, 8, 11, 12, 13, 16, 47, 48, 48 + 30, 48 + 59])
        return Mutation("truncate", "sal", f"datagram cut to {cut} bytes", (Edit(cut, None),))
    size = len(state.payload)
    cuts = {0, 1, 4, 12, 44, DHT_HEADER_LENGTH - 1, DHT_HEADER_LENGTH, size - 1}
    for spot in state.fields[0]:
        cuts |= {spot.offset, spot.offset + spot.width - 1}
    choices = sorted(c for c in cuts if 0 <= c < size)
    if not choices:
        return None
    cut = rng.choice(choices)
    return Mutation("truncate", "dht", f"message cut to {cut} bytes", (Edit(cut, None),))


def _append(rng: random.Random, state: _State) -> Mutation | None:
    size = len(state.payload)
    options = [
        b"\x00",
        bytes(4),
        rng.randbytes(rng.randrange(1, 17)),
        bytes(max(1, MAX_DHT_MESSAGE - size)),
        bytes(max(1, MAX_DHT_MESSAGE + 1 - size)),
    ]
    data = rng.choice(options)
    return Mutation(
        "append", "dht", f"{len(data)} bytes appended", (Edit(None, None, data),), width=len(data)
    )


def _flip(rng: random.Random, state: _State) -> Mutation | None:
    if not state.payload:
        return None
    bit = rng.randrange(8 * len(state.payload))
    at = bit // 8
    new = bytes([state.payload[at] ^ (0x80 >> bit % 8)])
    return Mutation("flip", "dht", f"bit {bit} flipped", (Edit(at, at + 1, new),))


def _service(role: int, service_id: bytes) -> bytes:
    return bytes([2, 36, role, 0]) + service_id


def _source(rng: random.Random, entries: int) -> bytes:
    body = bytearray([3, (4 + 20 * entries) & 0xFF, rng.choice([0, 1, 8, 255]), 0])
    for n in range(entries):
        address = ipaddress.ip_address(
            f"{_DOCUMENTATION_V4}{n + 10}" if n % 2 == 0 else f"{_DOCUMENTATION_V6}{n + 10:x}"
        )
        packed = (
            address.packed if address.version == 6 else bytes(10) + b"\xff\xff" + address.packed
        )
        body += packed + rng.randrange(1, 65536).to_bytes(2, "big") + bytes(2)
    return bytes(body)


def _ignorable(rng: random.Random, kind: int | None = None, words: int = 1) -> bytes:
    kind = kind if kind is not None else rng.choice([0x80, 0x9C, 0xFF])
    return bytes([kind, 4 * words, 0, 0]) + rng.randbytes(4 * words - 4)


def _sal_extension(rng: random.Random, state: _State) -> Mutation | None:
    service = _service(1, SERVALDHT_SERVICE_ID)
    choice = rng.randrange(14)
    if choice == 0:
        label, area = "SERVICE twice", service + service
    elif choice == 1:
        label, area = "a SOURCE-role SERVICE added", service + _service(2, rng.randbytes(32))
    elif choice == 2:
        label, area = "SOURCE-role SERVICE first", _service(2, rng.randbytes(32)) + service
    elif choice == 3:
        kind = rng.choice([0, 4, 0x41, 0x7F])
        words = rng.choice([1, 2])
        label = f"must-understand extension type {kind:#x} added"
        area = service + bytes([kind, 4 * words]) + bytes(4 * words - 2)
    elif choice == 4:
        kind = rng.choice([0x80, 0xA5, 0xFF])
        label, area = f"ignorable extension type {kind:#x} added", service + _ignorable(rng, kind)
    elif choice == 5:
        label, area = "ignorable extension before SERVICE", _ignorable(rng) + service
    elif choice == 6:
        entries = rng.choice([0, 1, MAX_SOURCE_ENTRIES, MAX_SOURCE_ENTRIES + 1])
        label, area = f"SOURCE with {entries} entries", service + _source(rng, entries)
    elif choice == 7:
        label, area = "SOURCE before SERVICE", _source(rng, 1) + service
    elif choice == 8:
        count = rng.choice([7, 8])
        label = f"{count + 1} extensions"
        area = service + b"".join(_ignorable(rng, 0x80 + n) for n in range(count))
    elif choice == 9:
        flags = rng.choice([0x80, 0x20, 0x08, 0x00, 0xFF])
        control = bytes([1, 20, flags, 0]) + rng.randbytes(16)
        label, area = f"CONTROL with flags {flags:#04x}", control + service
    elif choice == 10:
        length = rng.choice([0, 2, 3, 32, 35, 40, 255])
        label, area = f"SERVICE Length {length}", service[:1] + bytes([length]) + service[2:]
    elif choice == 11:
        label, area = "no extension", b""
    elif choice == 12:
        role = rng.choice([0, 3, 0xFF])
        label, area = f"SERVICE Role {role}", service[:2] + bytes([role]) + service[3:]
    else:
        label, area = "another serviceID", _service(1, rng.randbytes(32))
    return Mutation("sal-extension", "sal", label, area=area)


def _sal_header(rng: random.Random, state: _State) -> Mutation | None:
    field = rng.choice(["source_flow_id", "destination_flow_id", "header_length", "protocol"])
    if field in ("source_flow_id", "destination_flow_id"):
        at = 0 if field == "source_flow_id" else 4
        value = rng.choice([1, 0x7FFFFFFF, 0xFFFFFFFF])
        new = value.to_bytes(4, "big")
        return Mutation(
            "sal-header",
            "sal",
            f"{field} = {value:#x}",
            (Edit(at, at + 4, new),),
            value=value,
            width=4,
        )
    if field == "header_length":
        current = (_SAL_HEADER + len(state.area)) // 4
        value = rng.choice(sorted({0, 1, 2, 3, current - 1, current + 1, 255} - {current}))
        return Mutation(
            "sal-header",
            "sal",
            f"Header Length = {value}",
            (Edit(8, 9, bytes([value & 0xFF])),),
            value=value & 0xFF,
            width=1,
        )
    value = rng.choice([0, 2, 3, 0xFF])
    return Mutation(
        "sal-header",
        "sal",
        f"Protocol = {value}",
        (Edit(9, 10, bytes([value])),),
        value=value,
        width=1,
    )


def _checksum(rng: random.Random, state: _State) -> Mutation | None:
    return Mutation("checksum", "sal", "wrong checksum")


_GENERATORS: dict[str, Callable[[random.Random, _State], Mutation | None]] = {
    "header-field": _header_field,
    "body-field": _body_field,
    "count-field": _count_field,
    "list-resize": _list_resize,
    "truncate": _truncate,
    "append": _append,
    "flip": _flip,
    "sal-extension": _sal_extension,
    "sal-header": _sal_header,
    "checksum": _checksum,
}


def plan(seed: int, index: int, bases: Sequence[Base]) -> Plan:
    """The plan of datagram ``index`` of the campaign of ``seed``: a pure function."""
    rng = random.Random(f"{seed}:fuzz:{index}")
    base_index = rng.randrange(len(bases))
    base = bases[base_index]
    txid = rng.randbytes(8)
    token = rng.random() < 0.3
    count = rng.choices([1, 2, 3], weights=[6, 3, 1])[0]
    state = _State(base, base.payload(txid, bytes(16)), _service(1, SERVALDHT_SERVICE_ID))
    mutations: list[Mutation] = []
    for _ in range(count):
        kind = rng.choices(KINDS, weights=_WEIGHTS)[0]
        mutation = _GENERATORS[kind](rng, state) or _flip(rng, state)
        if mutation is None:
            continue
        mutations.append(mutation)
        state.apply(mutation)
    resign_it = base.signer is not None and rng.random() < 0.5
    return Plan(index, base_index, txid, tuple(mutations), resign_it, token)


def campaign(seed: int, count: int, bases: Sequence[Base]) -> list[Plan]:
    """The ``count`` plans of the campaign of ``seed``."""
    return [plan(seed, index, bases) for index in range(count)]


# --- the oracle ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Violation:
    """A requirement the answers to one datagram broke."""

    requirement: str
    what: str  # "answered", "silent", "content", "duplicate", "liveness"
    detail: str


@dataclasses.dataclass(frozen=True)
class Expect:
    """What may come back for a datagram, by the draft."""

    answer: str  # "forbidden", "required" or "any"
    requirement: str | None  # the rule that forbids or requires an answer
    reason: str
    txid: bytes | None = None  # the Transaction ID an answer echoes


def expectation(datagram: bytes) -> Expect:
    """Classify a datagram by what the draft lets a receiver do with it."""
    try:
        packet = decode_sal(datagram)
    except RemoteProtocolError as error:
        code = "SAL-CSUM-2" if error.error_code == ErrorCode.BAD_CHECKSUM else "SAL-RECV-3"
        return Expect("forbidden", code, f"a SAL packet the receiver drops ({error})")
    if packet.destination_service != SERVALDHT_SERVICE_ID:
        return Expect("any", None, "not addressed to the ServalDHT serviceID")
    if int(packet.protocol) not in {p.value for p in TransportProtocol}:
        return Expect("forbidden", "SAL-HDR-2", f"an unknown Protocol {int(packet.protocol)}")
    payload = packet.payload
    txid = payload[_TXID] if len(payload) >= 12 else None
    if (
        packet.protocol != TransportProtocol.DATAGRAM
        or packet.control is not None
        or packet.source_flow_id
        or packet.destination_flow_id
    ):
        return Expect("any", None, "not a SAL unconnected datagram", txid)
    if len(payload) < DHT_HEADER_LENGTH:
        return Expect("forbidden", "DHT-ERR-3", "a message whose header does not parse")
    if payload[1] == MessageType.ERROR:
        return Expect("forbidden", "DHT-MSG-19", "an ERROR")
    if payload[1] >= 0x80:
        return Expect("forbidden", "DHT-ERR-3", f"a response (Type {payload[1]:#04x})")
    if packet.source_route is not None:
        return Expect(
            "forbidden", "DHT-FRAME-4", "a request with a SOURCE extension (answered at entry 0)"
        )
    return Expect("required", "DHT-ERR-2", f"a request (Type {payload[1]:#04x})", txid)


def _answer_problem(data: bytes, expect: Expect) -> Violation | None:
    """What is wrong with one ServalDHT response, or None."""
    packet = decode_sal(data)
    if (
        packet.source_flow_id
        or packet.destination_flow_id
        or packet.protocol != TransportProtocol.DATAGRAM
        or packet.control is not None
    ):
        return Violation("DHT-FRAME-1", "content", "the answer is not a SAL unconnected datagram")
    payload = packet.payload
    if len(payload) > MAX_DHT_MESSAGE:
        return Violation("DHT-FRAME-3", "content", f"a {len(payload)}-byte answer")
    if payload[0] != 1:
        return Violation("DHT-HDR-1", "content", f"an answer of Version {payload[0]}")
    try:
        message = decode_dht(payload)
    except RemoteProtocolError as error:
        return Violation("DHT-ERR-2", "content", f"the answer does not decode: {error}")
    if expect.txid is not None and message.transaction_id != expect.txid:
        return Violation(
            "DHT-HDR-9",
            "content",
            f"the answer's Transaction ID {message.transaction_id.hex()} is not the "
            f"request's {expect.txid.hex()}",
        )
    body = message.body
    if isinstance(body, Error) and body.error_code not in REGISTERED_CODES:
        return Violation(
            "DHT-ERR-2", "content", f"an ERROR with the unregistered code {body.error_code:#06x}"
        )
    return None


def _is_response(data: bytes) -> bool:
    """Is ``data`` a SAL datagram to the ServalDHT serviceID carrying a response?"""
    try:
        packet = decode_sal(data)
    except RemoteProtocolError:
        return False
    payload = packet.payload
    return (
        packet.destination_service == SERVALDHT_SERVICE_ID
        and len(payload) >= 2
        and not (len(payload) >= DHT_HEADER_LENGTH and payload[1] < 0x80)
    )


Answer = tuple[bytes, Address]


def judge(datagram: bytes, answers: Sequence[Answer], target: Address) -> list[Violation]:
    """The requirements broken by the ``answers`` (data, source) to ``datagram``."""
    expect = expectation(datagram)
    responses = [(data, source) for data, source in answers if _is_response(data)]
    if expect.answer == "forbidden" and responses:
        assert expect.requirement is not None
        return [Violation(expect.requirement, "answered", f"{expect.reason} was answered")]
    violations = []
    if expect.answer == "required" and not responses:
        violations.append(Violation("DHT-ERR-2", "silent", f"{expect.reason} was not answered"))
    if len(responses) > 1 and expect.answer == "required":
        violations.append(
            Violation("DHT-FRAME-6", "duplicate", f"{len(responses)} answers to one request")
        )
    for data, source in responses[:1]:
        if source != target:
            violations.append(
                Violation("DHT-FRAME-5", "content", f"the answer came from {source}, not {target}")
            )
        problem = _answer_problem(data, expect)
        if problem is not None:
            violations.append(problem)
    return violations


def judged(datagram: bytes) -> list[str]:
    """The requirements that the answers to ``datagram`` are judged by."""
    expect = expectation(datagram)
    if expect.answer == "forbidden":
        return [expect.requirement] if expect.requirement else []
    if expect.answer == "required":
        return [
            "DHT-ERR-2",
            "DHT-FRAME-6",
            "DHT-FRAME-5",
            "DHT-FRAME-1",
            "DHT-FRAME-3",
            "DHT-HDR-1",
            "DHT-HDR-9",
        ]
    return []


# --- sending ---------------------------------------------------------------------------


class Pacer:
    """A token bucket below the target's declared rate limit (DHT-RATE-1), so that no
    request is dropped for its rate and every silence means something."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = max(1.0, 0.95 * rate)
        self.burst = max(1.0, min(burst / 2, self.rate))
        self.level = 0.0
        self.then = time.monotonic()

    def delay(self) -> float:
        """Seconds to wait before the next request may go."""
        now = time.monotonic()
        self.level = min(self.burst, self.level + (now - self.then) * self.rate)
        self.then = now
        return 0.0 if self.level >= 1.0 else (1.0 - self.level) / self.rate

    def take(self) -> None:
        self.delay()
        self.level -= 1.0


def counts_as_request(datagram: bytes) -> bool:
    try:
        packet = decode_sal(datagram)
    except RemoteProtocolError:
        return False
    payload = packet.payload
    return (
        packet.destination_service == SERVALDHT_SERVICE_ID
        and len(payload) >= DHT_HEADER_LENGTH
        and payload[1] < 0x80
    )


@dataclasses.dataclass
class Observation:
    """One datagram sent and what came back to its socket."""

    plan: Plan
    datagram: bytes
    answers: list[Answer]
    violations: list[Violation] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Failure:
    """A failure: the input that first showed it, the shrunk input, its confirmation."""

    violation: Violation
    original: Observation
    datagram: bytes
    description: str
    mutations: int
    confirmed: int
    tries: int
    shrink_trials: int

    @property
    def case_id(self) -> str:
        return f"fuzz.{self.violation.requirement.lower()}-{self.violation.what}"


@dataclasses.dataclass
class Campaign:
    """What a fuzz campaign did and found."""

    seed: int
    target: Address
    bases: list[Base]
    observations: list[Observation]
    batches: int
    alive_before: bool
    dead_after: int | None  # the index after which the target stopped answering PING
    findings: list[Failure]
    others: dict[tuple[str, str], int]  # failures beyond MAX_REPORTED, counted
    duration: float
    sent: int
    planned: int = 0

    @property
    def rate(self) -> float:
        return self.sent / self.duration if self.duration else 0.0


FuzzProgress = Callable[[int, int], None]


class Fuzzer:
    """Sends a campaign to a target, judges the answers, shrinks and confirms failures."""

    def __init__(
        self,
        address: Address,
        capture: Capture,
        *,
        seed: int,
        timeout: float,
        rate_limit: tuple[float, float] | None = None,
        now: int | None = None,
        confirmations: int = CONFIRMATIONS,
        batch: int = BATCH,
    ) -> None:
        self.address = address
        self.capture = capture
        self.seed = seed
        self.timeout = timeout
        rate, burst = rate_limit or (RATE_LIMIT_PER_SOURCE, RATE_LIMIT_BURST)
        self.pacer = Pacer(rate, burst)
        self.now = int(time.time()) if now is None else now
        self.confirmations = confirmations
        self.batch = batch
        local = "::1" if ":" in address[0] else "127.0.0.1"
        self.bases = bases(seed, self.now, local)
        self.token = bytes(16)
        self.latency = 0.0

    # --- the campaign ---------------------------------------------------------------

    def run(self, count: int, progress: FuzzProgress | None = None) -> Campaign:
        started = time.monotonic()
        self.capture.case = "fuzz.campaign"
        plans = campaign(self.seed, count, self.bases)
        self.pacer.take()
        before = alive(self.address, self.capture, self.timeout)
        observations: list[Observation] = []
        dead_after: int | None = None
        batches = 0
        sent = 0
        if before:
            self.token = self._token()
            observations, dead_after, batches, sent = self._send_all(plans, progress)
        for observation in observations:
            observation.violations = judge(observation.datagram, observation.answers, self.address)
        findings, others = self._findings(observations, dead_after is None)
        return Campaign(
            seed=self.seed,
            target=self.address,
            bases=self.bases,
            observations=observations,
            batches=batches,
            alive_before=before,
            dead_after=dead_after,
            findings=findings,
            others=others,
            duration=time.monotonic() - started,
            sent=sent,
            planned=count,
        )

    def _token(self) -> bytes:
        self.pacer.take()
        peer = DhtPeer(Wire(self.address, self.capture), random.Random(self.seed), self.timeout)
        try:
            reply = peer.request(Ping())
        finally:
            peer.close()
        return reply.message.token if reply is not None else bytes(16)

    def _send_all(
        self, plans: Sequence[Plan], progress: FuzzProgress | None
    ) -> tuple[list[Observation], int | None, int, int]:
        window = self.timeout
        size = max(16, min(256, math.ceil(window * self.pacer.rate * 2)))
        wires = [Wire(self.address, self.capture) for _ in range(size)]
        by_socket = {wire.sock: n for n, wire in enumerate(wires)}
        current: list[int | None] = [None] * size
        deadline = [0.0] * size
        sent_at = [0.0] * size
        observations: list[Observation] = []
        latencies: list[float] = []

        def poll(wait: float) -> None:
            ready = select.select(list(by_socket), [], [], max(0.0, wait))[0]
            for sock in ready:
                slot = by_socket[sock]
                got = wires[slot].receive(0)
                owner = current[slot]
                if got is not None and owner is not None:
                    observations[owner].answers.append(got)
                    latencies.append(time.monotonic() - sent_at[slot])

        dead_after: int | None = None
        batches = 0
        sent = 0
        try:
            for plan_ in plans:
                datagram = materialise(plan_, self.bases, self.token)
                if counts_as_request(datagram):
                    while (pause := self.pacer.delay()) > 0:
                        poll(pause)
                    self.pacer.take()
                slot = plan_.index % size
                while (left := deadline[slot] - time.monotonic()) > 0:
                    poll(left)
                poll(0)
                observations.append(Observation(plan_, datagram, []))
                current[slot] = len(observations) - 1
                sent_at[slot] = time.monotonic()
                deadline[slot] = sent_at[slot] + window
                wires[slot].send(datagram)
                sent += 1
                poll(0)
                done = len(observations)
                if done % self.batch == 0 or done == len(plans):
                    batches += 1
                    self.pacer.take()
                    if not alive(self.address, self.capture, self.timeout):
                        dead_after = done - 1
                        break
                    self.capture.case = "fuzz.campaign"
                if progress is not None:
                    progress(done, len(plans))
            while (left := max(deadline) - time.monotonic()) > 0:
                poll(left)
            poll(0)
        finally:
            for wire in wires:
                wire.close()
        self.latency = max(latencies, default=0.0)
        return observations, dead_after, batches, sent

    # --- one datagram at a time -----------------------------------------------------

    def trial(
        self, datagram: bytes, window: float, decisive: Violation | None = None
    ) -> list[Answer]:
        """Send ``datagram`` from a fresh socket and collect what comes back in ``window``.

        With ``decisive``, return as soon as the answers settle whether it is broken again.
        """
        if counts_as_request(datagram):
            while (pause := self.pacer.delay()) > 0:
                time.sleep(pause)
            self.pacer.take()
        wire = Wire(self.address, self.capture)
        answers: list[Answer] = []
        try:
            wire.send(datagram)
            end = time.monotonic() + window
            while (left := end - time.monotonic()) > 0:
                got = wire.receive(left)
                if got is None:
                    break
                answers.append(got)
                if (
                    decisive is not None
                    and decisive.what in ("answered", "silent", "content")
                    and _is_response(got[0])
                ):
                    break
        finally:
            wire.close()
        return answers

    def fails(self, datagram: bytes, violation: Violation, window: float) -> bool:
        answers = self.trial(datagram, window, violation)
        found = judge(datagram, answers, self.address)
        return any(
            v.requirement == violation.requirement and v.what == violation.what for v in found
        )

    # --- shrinking and confirming ---------------------------------------------------

    def _findings(
        self, observations: Sequence[Observation], target_alive: bool
    ) -> tuple[list[Failure], dict[tuple[str, str], int]]:
        first: dict[tuple[str, str], tuple[Observation, Violation]] = {}
        counts: dict[tuple[str, str], int] = {}
        for observation in observations:
            for violation in observation.violations:
                key = (violation.requirement, violation.what)
                counts[key] = counts.get(key, 0) + 1
                first.setdefault(key, (observation, violation))
        findings: list[Failure] = []
        others: dict[tuple[str, str], int] = {}
        for number, (key, (observation, violation)) in enumerate(first.items()):
            if number >= MAX_REPORTED or not target_alive:
                others[key] = counts[key]
                continue
            findings.append(self.reduce(observation, violation))
        return findings, others

    def reduce(self, observation: Observation, violation: Violation) -> Failure:
        """Shrink a failing input, then confirm it (or the original) by sending it again."""
        case_id = f"fuzz.{violation.requirement.lower()}-{violation.what}"
        self.capture.case = f"{case_id}.shrink"
        plan_, datagram, trials = self.shrink(observation.plan, violation)
        self.capture.case = case_id
        confirmed = self.confirm(datagram, violation)
        if confirmed < self.confirmations and datagram != observation.datagram:
            plan_, datagram = observation.plan, observation.datagram
            confirmed = self.confirm(datagram, violation)
        return Failure(
            violation=violation,
            original=observation,
            datagram=datagram,
            description=plan_.describe(self.bases),
            mutations=len(plan_.mutations),
            confirmed=confirmed,
            tries=self.confirmations,
            shrink_trials=trials,
        )

    def confirm(self, datagram: bytes, violation: Violation) -> int:
        return sum(self.fails(datagram, violation, self.timeout) for _ in range(self.confirmations))

    def shrink(self, failing: Plan, violation: Violation) -> tuple[Plan, bytes, int]:
        """The smallest variant of ``failing`` that still breaks ``violation``'s requirement.

        After a greedy pass that drops each mutation in turn, ``hypothesis.find``
        searches the plans made of what is left by dropping mutations, taking
        simpler values or a smaller base message, and shrinks what it finds; of
        every failing datagram seen, the shortest wins.
        """
        from hypothesis import HealthCheck, Phase, find, settings
        from hypothesis import strategies as st
        from hypothesis.errors import NoSuchExample

        window = min(self.timeout, max(0.15, 10 * self.latency))
        results: dict[bytes, bool] = {}
        best = (failing, materialise(failing, self.bases, self.token))
        trials = 0

        def key(item: tuple[Plan, bytes]) -> tuple[int, int, int]:
            return (len(item[1]), len(item[0].mutations), item[0].base)

        def condition(candidate: Plan) -> bool:
            nonlocal best, trials
            datagram = materialise(candidate, self.bases, self.token)
            if datagram not in results:
                if trials >= SHRINK_TRIALS:
                    return False
                trials += 1
                results[datagram] = self.fails(datagram, violation, window)
                if results[datagram] and key((candidate, datagram)) < key(best):
                    best = (candidate, datagram)
            return results[datagram]

        # A greedy pass first: without each mutation in turn.
        reduced = failing
        for mutation in failing.mutations:
            fewer = tuple(m for m in reduced.mutations if m is not mutation)
            if fewer and condition(dataclasses.replace(reduced, mutations=fewer)):
                reduced = dataclasses.replace(reduced, mutations=fewer)
        space = _shrink_space(reduced, self.bases, st)
        with contextlib.suppress(NoSuchExample):
            find(
                space,
                condition,
                settings=settings(
                    max_examples=40,
                    database=None,
                    deadline=None,
                    phases=(Phase.generate, Phase.shrink),
                    suppress_health_check=list(HealthCheck),
                ),
                random=random.Random(f"{self.seed}:shrink:{failing.index}"),
            )
        return best[0], best[1], trials


def _simpler(mutation: Mutation) -> list[Mutation]:
    """Variants of ``mutation`` that make a smaller or plainer input, then itself."""
    variants: list[Mutation] = []
    if mutation.value is not None and mutation.width and len(mutation.edits) == 1:
        edit = mutation.edits[0]
        for value in (0, 1):
            if value < mutation.value:
                variants.append(
                    dataclasses.replace(
                        mutation,
                        label=f"{mutation.label.split(' = ')[0]} = {value:#x}",
                        edits=(Edit(edit.start, edit.end, value.to_bytes(mutation.width, "big")),),
                        value=value,
                    )
                )
    if mutation.kind == "append" and mutation.width > 1:
        variants.append(
            dataclasses.replace(
                mutation, label="1 byte appended", edits=(Edit(None, None, b"\x00"),), width=1
            )
        )
    if mutation.kind == "truncate":
        cut = mutation.edits[0].start or 0
        for smaller in (0, 12, DHT_HEADER_LENGTH - 1, DHT_HEADER_LENGTH):
            if smaller < cut:
                variants.append(
                    dataclasses.replace(
                        mutation,
                        label=mutation.label.rsplit(" to ", 1)[0] + f" to {smaller} bytes",
                        edits=(Edit(smaller, None),),
                    )
                )
    return [*variants, mutation]


def _shrink_space(failing: Plan, bases_: Sequence[Base], st: Any) -> Any:
    """Plans made of ``failing``: mutations dropped or simpler, a simpler base message."""
    header_only = all(
        m.layer == "sal"
        or m.kind in ("append", "truncate")
        or all(e.start is not None and e.start < DHT_HEADER_LENGTH for e in m.edits)
        for m in failing.mutations
    )
    size = {n: len(base.payload(bytes(8), bytes(16))) for n, base in enumerate(bases_)}
    smaller = sorted((n for n in size if size[n] < size[failing.base]), key=size.__getitem__)
    choices = [*(smaller if header_only else []), failing.base]
    options = [st.one_of(st.none(), st.sampled_from(_simpler(m))) for m in failing.mutations]
    flags = [False, True] if failing.resign else [False]
    tokens = [False, True] if failing.token else [False]

    def build(parts: tuple[Any, ...]) -> Plan:
        base, mutations, resign_it, token = parts
        return dataclasses.replace(
            failing,
            base=base,
            mutations=tuple(m for m in mutations if m is not None),
            resign=resign_it and bases_[base].signer is not None,
            token=token,
        )

    return st.tuples(
        st.sampled_from(choices),
        st.tuples(*options),
        st.sampled_from(flags),
        st.sampled_from(tokens),
    ).map(build)


# --- replay -----------------------------------------------------------------------------


def replay(
    address: Address, capture: Capture, datagram: bytes, *, timeout: float
) -> tuple[list[Answer], list[Violation], bool]:
    """Send one datagram, judge its answers with the fuzz oracle, check liveness after."""
    capture.case = "fuzz.replay"
    fuzzer = Fuzzer(address, capture, seed=0, timeout=timeout)
    answers = fuzzer.trial(datagram, timeout)
    violations = judge(datagram, answers, address)
    return answers, violations, alive(address, capture, timeout)


def replay_command(target: str, datagram: bytes) -> str:
    return f"serval-conform --target {target} --replay-hex {datagram.hex()}"


# --- results ----------------------------------------------------------------------------


def _not_rerunnable(ctx: Any) -> None:
    raise RuntimeError("fuzz cases are made by a campaign, not run on their own")


def _case(case_id: str, title: str, reqs: Sequence[str]) -> Case:
    sections = sorted({requirements()[r].section for r in reqs if r in requirements()})
    return Case(
        id=case_id,
        title=title,
        section=", ".join(sections[:3]) or "6.11",
        requirements=tuple(reqs),
        group="fuzz",
        run=_not_rerunnable,
    )


def results(report: Campaign, target: str) -> list[CaseResult]:
    """The campaign as CaseResults (group "fuzz"), each with the command that replays it."""
    judged_counts: dict[str, int] = {}
    for observation in report.observations:
        for requirement in judged(observation.datagram):
            judged_counts[requirement] = judged_counts.get(requirement, 0) + 1
    broken = {f.violation.requirement for f in report.findings} | {k[0] for k in report.others}
    findings: list[Finding] = []
    sent = len(report.observations)
    if not report.alive_before:
        findings.append(
            Finding(None, Verdict.ERROR, "the target did not answer PING before fuzzing")
        )
    elif report.dead_after is not None:
        start = report.dead_after - (report.dead_after % BATCH)
        suspects = report.observations[start : report.dead_after + 1]
        findings.append(
            Finding(
                "DHT-MSG-8",
                Verdict.FAIL,
                f"the target stopped answering PING after fuzz datagrams {start} to "
                f"{report.dead_after}; they cannot be shrunk against a dead target: "
                + " ".join(o.datagram.hex() for o in suspects[-5:]),
                expected="PONG",
                actual="no answer to three PINGs",
            )
        )
    else:
        findings.append(
            Finding(
                "DHT-MSG-8",
                Verdict.PASS,
                f"a PING drew a PONG after each of {report.batches} batches of {sent} datagrams",
            )
        )
    for requirement in ORACLE:
        if requirement in judged_counts and requirement not in broken:
            findings.append(
                Finding(
                    requirement,
                    Verdict.PASS,
                    f"held for the {judged_counts[requirement]} fuzz datagrams it judges",
                )
            )
    for (requirement, what), count in report.others.items():
        findings.append(
            Finding(
                requirement,
                Verdict.FAIL if report.dead_after is None else Verdict.ERROR,
                f"{count} fuzz datagrams broke it ({what}); not shrunk (see the findings above)",
            )
        )
    title = (
        f"{sent} mutated datagrams (seed {report.seed}), {report.rate:.0f}/s, "
        f"liveness after each batch of {BATCH}"
    )
    campaign_case = _case("fuzz.campaign", title, ORACLE)
    out = [
        CaseResult(
            campaign_case,
            worst(f.verdict for f in findings),
            findings,
            report.duration,
            report.seed,
            replay=f"serval-conform --target {target} --seed {report.seed} "
            f"--fuzz {report.planned or sent}",
        )
    ]
    for found in report.findings:
        violation = found.violation
        command = replay_command(target, found.datagram)
        confirmed = found.confirmed == found.tries
        detail = (
            f"{violation.detail}; input: {found.description} ({len(found.datagram)} bytes, "
            f"{found.mutations} mutations; first seen as fuzz datagram {found.original.plan.index}"
            f" of {len(found.original.datagram)} bytes; {found.shrink_trials} shrink trials); "
            f"failed {found.confirmed} of {found.tries} re-sends; datagram "
            f"{found.datagram.hex()}; replay: {command}"
        )
        verdict = Verdict.FAIL if confirmed else Verdict.ERROR
        if not confirmed:
            detail = "not reproducible: " + detail
        findings_ = [
            Finding(
                violation.requirement,
                verdict,
                detail,
                expected=_expected(violation),
                actual=violation.detail,
            )
        ]
        case = _case(found.case_id, f"fuzz: {violation.detail}", (violation.requirement,))
        out.append(CaseResult(case, verdict, findings_, 0.0, report.seed, command))
    return out


def _expected(violation: Violation) -> str:
    return {
        "answered": "no answer",
        "silent": "an answer (the response or ERROR)",
        "duplicate": "one answer",
        "content": "a well-formed answer echoing the request",
    }.get(violation.what, "")


def replay_result(
    datagram: bytes, answers: Sequence[Answer], violations: Sequence[Violation], still_alive: bool
) -> CaseResult:
    """The judgement of one replayed datagram as a CaseResult (case "fuzz.replay")."""
    findings = [
        Finding(v.requirement, Verdict.FAIL, v.detail, _expected(v), v.detail) for v in violations
    ]
    broken = {v.requirement for v in violations}
    for requirement in judged(datagram):
        if requirement not in broken:
            findings.append(
                Finding(requirement, Verdict.PASS, f"held ({len(answers)} datagrams came back)")
            )
    findings.append(
        Finding(
            "DHT-MSG-8",
            Verdict.PASS if still_alive else Verdict.FAIL,
            "a PING after the datagram drew a PONG"
            if still_alive
            else "the target stopped answering PING after the datagram",
        )
    )
    reqs = sorted({f.requirement for f in findings if f.requirement})
    case = _case("fuzz.replay", f"replay of a {len(datagram)}-byte datagram", reqs)
    return CaseResult(case, worst(f.verdict for f in findings), findings, 0.0, 0)


def parse_hex(text: str) -> bytes:
    """A datagram given as hexadecimal (spaces and a 0x prefix allowed)."""
    cleaned = "".join(text.split()).removeprefix("0x")
    return bytes.fromhex(cleaned)
