"""Where a campaign starts: seed inputs and a dictionary, both derived, never written by hand.

Seeds come from three places that already hold valid (and usefully broken)
messages:

* the draft's test vectors (``ref.wire.vectors.build_vectors``), one per
  format and message type;
* the harness's traces (``conformance/traces/*.trace``), whose ``send``
  steps are built as the trace player builds them, with fixed random bytes;
* the socket fuzzer's base messages and a few of its seeded mutants
  (``conformance.fuzz``), so the in-process campaigns start where the
  network campaign's mutator reaches.

The dictionary holds the magic values of the Construct declarations: the
members of every enum and flag set at the width of the field that carries
them, every ``Const``, the extension headers (type and length octets), and
a few constants (the ServalDHT serviceID, limits as 16-bit numbers).
"""

from __future__ import annotations

import enum
import random
import types
from collections.abc import Iterable, Iterator
from typing import Any

import construct as cs
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from conformance import fuzz as socket_fuzz
from conformance import trace as traces
from conformance.model import HarnessError
from conformance.peer import dht_datagram
from ref.wire import (
    FORMATS,
    ErrorCode,
    ExtensionType,
    MessageType,
    RemoteProtocolError,
    TransportProtocol,
    decode_dht,
    decode_sal,
    encode_record,
)
from ref.wire._codec import EnumAdapter, FlagsAdapter
from ref.wire.constants import (
    MAX_DHT_MESSAGE,
    MAX_RECORD_LIFETIME,
    MAX_UDP_PAYLOAD,
    RECOMMENDED_MAX_PACKET,
    SERVALDHT_SERVICE_ID,
)
from ref.wire.sal import EndpointFormat
from ref.wire.vectors import ISSUED_AT, build_vectors

#: The clock of every seed that holds a record: a minute after the vectors' records were issued.
NOW = ISSUED_AT + 60
SOCKET_FUZZER_SEED = 1
MUTANTS = 48  # seeded mutants of the socket fuzzer among the seeds


def vectors(kind: str) -> list[bytes]:
    """The encodings of the draft's vectors of one format: sal, stream, dht or record."""
    return [vector.encoded for vector in build_vectors() if vector.format == kind]


# --- the traces' messages ---------------------------------------------------------------


class _Peer:
    """Stands in for the trace player's socket: keeps what it would send."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.wire = types.SimpleNamespace(local=("192.0.2.7", 40000))

    def send_payload(self, payload: bytes) -> None:
        self.sent.append(payload)


class _Context:
    """What the trace player asks of a context when it builds a ``send``."""

    def __init__(self, name: str) -> None:
        self.rng = random.Random(f"fuzz:{name}")
        self.peer = _Peer()

    def client(self) -> _Peer:
        return self.peer

    def key(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.rng.randbytes(32))


def trace_payloads() -> list[bytes]:
    """The ServalDHT messages the shipped traces send (steps that need an answer skipped)."""
    payloads: list[bytes] = []
    for trace in traces.shipped():
        if trace.uses_sal:
            continue  # SAL flow packets, not ServalDHT messages
        context = _Context(trace.name)
        player = traces._Player(trace, context)  # type: ignore[arg-type]
        for step in trace.steps:
            if isinstance(step, traces.Send):
                try:
                    player.send(step)
                except HarnessError:
                    continue  # it sends a value an expect would have bound
        payloads += context.peer.sent
    return payloads


# --- the socket fuzzer's messages --------------------------------------------------------


def base_payloads() -> list[bytes]:
    """The socket fuzzer's valid messages: every request type and a few responses."""
    bases = socket_fuzz.bases(SOCKET_FUZZER_SEED, NOW)
    return [base.payload(bytes(range(8)), bytes(16)) for base in bases]


def mutant_datagrams(count: int = MUTANTS) -> list[bytes]:
    """The first ``count`` datagrams of the socket fuzzer's seeded campaign."""
    bases = socket_fuzz.bases(SOCKET_FUZZER_SEED, NOW)
    plans = socket_fuzz.campaign(SOCKET_FUZZER_SEED, count, bases)
    return [socket_fuzz.materialise(plan, bases) for plan in plans]


def dht_payloads() -> list[bytes]:
    return _unique([*vectors("dht"), *trace_payloads(), *base_payloads()])


def sal_datagrams() -> list[bytes]:
    """SAL packets: the vectors, every DHT seed in a datagram, and mutants."""
    wrapped = [dht_datagram(payload) for payload in dht_payloads()]
    return _unique([*vectors("sal"), *wrapped, *mutant_datagrams()])


def stream_segments() -> list[bytes]:
    """Stream segments: the vectors and the payloads of STREAM packets among the SAL vectors."""
    payloads = [
        decode_sal(data).payload
        for data in vectors("sal")
        if decode_sal(data).protocol == TransportProtocol.STREAM
    ]
    return _unique([*vectors("stream"), *(p for p in payloads if p)])


def records() -> list[bytes]:
    """Records: the vectors and the records inside the DHT seeds."""
    found = vectors("record")
    for payload in dht_payloads():
        try:
            message = decode_dht(payload, verify=False)
        except RemoteProtocolError:
            continue
        inner = getattr(message.body, "record", None)
        if inner is not None:
            found.append(encode_record(inner))
    return _unique(found)


def _unique(items: Iterable[bytes]) -> list[bytes]:
    return list(dict.fromkeys(items))


# --- the dictionary ---------------------------------------------------------------------------


def _walk(con: Any) -> Iterator[Any]:
    """Every construct inside ``con``, ``con`` first."""
    yield con
    for name in ("subcon", "thensubcon", "elsesubcon"):
        inner = getattr(con, name, None)
        if isinstance(inner, cs.Construct):
            yield from _walk(inner)
    for inner in getattr(con, "subcons", ()):
        yield from _walk(inner)


def _unwrapped(con: Any) -> Any:
    return con.subcon if isinstance(con, cs.Renamed) else con


def _width(con: Any) -> int | None:
    try:
        return int(con.sizeof())
    except (cs.SizeofError, KeyError, AttributeError):
        return None


def _members(kind: type[enum.Enum]) -> list[int]:
    values = {int(member.value) for member in kind}
    if issubclass(kind, enum.IntFlag):
        values.add(sum(values))
    return sorted(values)


#: Integer fields that carry an enum the declaration reads as a plain integer (the
#: decoder checks the value): (enum, width in octets).
_PLAIN_ENUMS: tuple[tuple[type[enum.Enum], int], ...] = (
    (MessageType, 1),
    (ExtensionType, 1),
    (TransportProtocol, 1),
    (ErrorCode, 2),
)


def dictionary() -> list[bytes]:
    """Magic values from the declarations, in a stable order, without repeats."""
    entries: list[bytes] = []
    for fmt in FORMATS.values():
        for con in _walk(fmt):
            if isinstance(con, EnumAdapter | FlagsAdapter):
                width = _width(con)
                kind = con.enum_type if isinstance(con, EnumAdapter) else con.flag_type
                if width:
                    entries += [value.to_bytes(width, "big") for value in _members(kind)]
            elif isinstance(con, cs.Const):
                entries.append(bytes(con.build(None)))
    for kind, width in _PLAIN_ENUMS:
        entries += [value.to_bytes(width, "big") for value in _members(kind)]
    for fmt in FORMATS.values():
        # An extension's type and length octets, where the declaration fixes both.
        head = [_unwrapped(con) for con in fmt.subcons[:2]]
        if len(head) == 2 and all(isinstance(con, cs.Const) for con in head):
            entries.append(b"".join(bytes(con.build(None)) for con in head))
    source = bytes([ExtensionType.SOURCE, 4 + EndpointFormat.sizeof()])  # one entry
    entries.append(source)
    entries.append(SERVALDHT_SERVICE_ID)
    for limit in (MAX_DHT_MESSAGE, RECOMMENDED_MAX_PACKET, MAX_UDP_PAYLOAD):
        entries += [limit.to_bytes(2, "big"), (limit + 1).to_bytes(2, "big")]
    entries.append(MAX_RECORD_LIFETIME.to_bytes(4, "big"))
    entries.append(b"\x00" * 10 + b"\xff\xff")  # the IPv4-mapped prefix of an address field
    return _unique(entries)


def dictionary_text(entries: Iterable[bytes]) -> str:
    """The entries in libFuzzer's ``-dict`` format."""
    lines = []
    for number, entry in enumerate(entries):
        escaped = "".join(f"\\x{octet:02x}" for octet in entry)
        lines.append(f'magic_{number}="{escaped}"')
    return "\n".join(lines) + "\n"
