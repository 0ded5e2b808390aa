"""Packet traces: short, readable scripts of ServalDHT and SAL exchanges, replayed on a target.

A trace is a text file in the spirit of packetdrill: what the harness sends,
what it expects back, and how long it waits.  The canonical traces ship in
``conformance/traces/*.trace``; each one is a case of the group
``dht.traces``, or ``sal.traces`` for a trace with SAL packet steps
(``conformance/cases/traces.py``), with the file's name as the last part
of the case ID, so every run replays them.  Example::

    # trace: ping-pong
    # title: A PING is answered by one PONG that echoes its Transaction ID
    # section: 6.4.1
    # requirements: DHT-HDR-9 DHT-MSG-8 DHT-FRAME-6
    send PING txid=$T token=0
    expect PONG txid=$T                 # judges DHT-HDR-9, the first listed
    send PING txid=$U token=0
    expect PONG txid=$U observed=self [DHT-MSG-8]
    expect nothing within 0.3 [DHT-FRAME-6]

Header
    Comment lines ``# key: value`` before the first step.  ``trace`` (the
    name, equal to the file name without ``.trace``: lower-case letters,
    digits and ``-``), ``section`` (of the draft) and ``requirements`` (the
    IDs the trace judges, space-separated) are required; ``title`` (default
    "Trace <name>") and ``needs`` (features the target must declare, see
    Appendix C) are optional.  Other lines starting with ``#`` are comments,
    and ``#`` after a step starts a comment too.

Steps, one a line, run in order on one fresh client socket:

``send MESSAGE [field=value ...] [signed]``
    One ServalDHT message, built with ``ref.wire`` and sent in a SAL
    datagram to the target.  MESSAGE is ``PING``, ``STATUS``,
    ``GET_NEIGHBORS``, ``FIND_SUCCESSOR`` (``target=``), ``RESOLVE``
    (``id=`` or ``name=``, a service name), ``PONG`` (``observed=``, default
    ``self``), ``ERROR CODE`` (a code name such as ``MALFORMED`` or a number),
    or a number such as ``0x0A``: a header of that Type with an empty body.
    Header fields: ``txid`` (default ``*``), ``token`` (default ``0``),
    ``key`` (the Sender Key: ``0``, the default, or ``member``, a ring
    member's key drawn for the trace from the seeded random source, or 64 hex
    digits), and ``version``, ``flags``, ``reserved``, which are written
    into the encoded header as given.  ``signed`` signs the message with the
    member key (it needs ``key=member`` and excludes ``version``,
    ``reserved`` and a numeric type, which would break the signature).
``send raw HEX ...``
    These bytes as the ServalDHT message (the SAL datagram around them is
    built as for any message).  Spaces are allowed; ``$NAME`` inserts a
    bound value.
``expect ALTERNATIVE [| ALTERNATIVE ...] [within SECONDS] [[REQ-ID]]``
    The next datagram from the target, waited for up to SECONDS (default:
    the run's ``--timeout``), must match one of the alternatives.  An
    alternative is a response type (``PONG``, ``NEIGHBORS``,
    ``STATUS_RESPONSE``, ...), ``ERROR [CODE]``, ``any`` (any ServalDHT
    message) or ``nothing`` (no datagram at all within SECONDS), followed
    by the fields to check.  Header fields: ``txid``, ``token``, ``key``
    (Sender Key), ``flags``.  Body fields: PONG ``observed``;
    FIND_SUCCESSOR_RESPONSE ``status`` (DONE, REFER), ``nodes`` (the count),
    ``node`` (the key of the first node); NEIGHBORS ``predecessor`` (its
    key, or ``none``), ``successors`` (the count), ``successor`` (the key
    of the first); RESOLVE_RESPONSE ``status`` (FOUND, NOT_FOUND, REFER),
    ``nodes``.  A datagram from another endpoint than the target's, or one
    that does not decode as a ServalDHT message, matches no alternative.
    The alternative ``sal KIND [field=value ...]`` matches a SAL packet
    that carries no ServalDHT message (the SERVICE extension, if any, is
    not the ServalDHT service's) whose KIND is exactly the one given, as in
    ``send sal``, with the same fields: ``service=none`` and
    ``payload=none`` require their absence, and the segment fields of a
    ``DATA`` alternative require a payload that decodes as a stream
    segment.  Alternatives are separated by ``|`` with a space on either
    side (``expect sal ACK dst=$FC | sal FIN|ACK dst=$FC``); elsewhere a
    ``|`` inside a word separates too (``PONG|ERROR``).
``send sal KIND [field=value ...]``
    One SAL packet of a flow (Section 5.3.5), built with ``ref.wire`` and
    sent as is (a trace with SAL steps must declare ``# needs: sal``).
    KIND is ``DATA`` (a data packet, no CONTROL extension) or the exact
    CONTROL flags, names among SYN, RSYN, ACK, NACK, RST, FIN joined by
    ``|``: ``SYN``, ``SYN|ACK``, ``ACK``, ``FIN|ACK``, ``RST|ACK``,
    ``RSYN``, ...  Fields: ``src`` and ``dst`` (Source and Destination
    Flow ID), ``protocol`` (``NONE``, ``DATAGRAM``, ``STREAM`` or a number;
    default ``STREAM`` for a segment, else ``DATAGRAM``), ``service`` (a
    SERVICE extension with Role DESTINATION: 64 hex digits or a test
    service of Appendix C.4, ``echo-stream``, ``echo-datagram``,
    ``hold-stream``, ``initiator``, ``unbound``; default ``none``, no
    extension), ``payload`` (hex, or ``none``, the default); a control
    packet also ``verno``, ``ackno`` and ``nonce`` (8 octets); a DATA
    packet instead of ``payload`` a stream segment (Section 5.14.2):
    ``seq``, ``ack``, ``sflags`` (``ACK``, ``FIN``, ``ACK|FIN`` or ``0``;
    default ``ACK``), ``window`` (default 256) and ``data`` (hex).  The
    32-bit numbers ``src``, ``dst``, ``verno``, ``ackno``, ``seq`` and
    ``ack`` default to 0, the nonce to zero octets.  Example, the
    client's half of a handshake::

        send sal SYN src=$FC nonce=$NC verno=$ISS service=echo-datagram
        expect sal SYN|ACK dst=$FC ackno=$ISS+1 src=$FS nonce=$NS verno=$ISSS
        send sal ACK src=$FC dst=$FS verno=$ISS+1 ackno=$ISSS+1 nonce=$NC

``wait SECONDS``
    Pause; what arrives meanwhile waits in the socket for the next expect.

Values
    Byte fields take hex of their exact length or ``0`` (all zero); numbers
    are decimal or ``0x`` hex; endpoints are ``host:port``, ``[v6]:port``
    or ``self`` (the trace's own socket).  ``*`` matches anything in an
    expect; in a send it draws fresh random bytes from the case's seeded
    random source (``txid``, ``token``, ``target``, ``id``).  ``$NAME`` is a
    capture: it binds at its first use, from the received value in an
    expect, and must match that value at every later use.  In a send, an
    unbound capture in ``txid``, ``target`` or ``id`` binds to fresh random
    bytes; any other capture a send uses must be bound by an earlier line.
    A capture bound in one alternative binds only if that alternative
    matched.  The 32-bit numbers of SAL packets are decimal in captures;
    there ``*`` and an unbound capture in a send draw a fresh random number
    (a non-zero one for ``src`` and ``dst``), and ``$NAME+N`` or
    ``$NAME-N``, N a number, is a bound capture plus or minus N modulo
    2**32, in a send or an expect (the handshake's ackno is ISS + 1).

Verdicts
    Every expect is one judgement of one requirement: the one in brackets at
    the end of the line, else the first of the header's ``requirements``.
    Each requirement of the header must be judged by some expect, and a
    bracketed one must be listed in the header, so that the case's declared
    requirements are exactly those it judges.  A match records a PASS; a
    mismatch records a violation at the requirement's level (FAIL for a
    MUST) with what was expected and what came, and ends the trace, as in
    packetdrill: later steps assume the exchange went as written.  A send
    that needs a capture its alternative did not bind is a harness ERROR.

Every mistake in a trace is a :class:`TraceError` naming ``file:line``.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import re
import time
from argparse import ArgumentTypeError
from collections.abc import Callable, Iterator
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from conformance.context import Context
from conformance.model import CaseAbort, HarnessError
from conformance.peer import Address, DhtPeer, summarise
from conformance.requirements import requirements
from ref.cli_args import host_port
from ref.wire import (
    ECHO_DATAGRAM_SERVICE_ID,
    ECHO_STREAM_SERVICE_ID,
    HOLD_STREAM_SERVICE_ID,
    INITIATOR_SERVICE_ID,
    SERVALDHT_SERVICE_ID,
    UNBOUND_SERVICE_ID,
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
    LocalProtocolError,
    LookupStatus,
    MessageFlags,
    MessageType,
    Neighbors,
    NodeInfo,
    Ping,
    Pong,
    RemoteProtocolError,
    Resolve,
    ResolveResponse,
    ResolveStatus,
    SalPacket,
    Status,
    StreamFlags,
    StreamSegment,
    TransportProtocol,
    decode_dht,
    decode_sal,
    decode_stream,
    encode_dht,
    encode_sal,
    encode_stream,
    public_key_bytes,
    service_id_for,
)

SUFFIX = ".trace"
_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")
_CAPTURE = re.compile(r"\$[A-Za-z_][A-Za-z0-9_]*")
#: A capture plus or minus a number, modulo 2**32: ``$ISS+1``.
_ARITHMETIC = re.compile(r"(\$[A-Za-z_][A-Za-z0-9_]*)([+-])(0[xX][0-9a-fA-F]+|[0-9]+)")
_DIRECTIVE = re.compile(r"#\s*(trace|title|section|requirements|needs)\s*:\s*(.*)")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+")


class TraceError(ValueError):
    """A trace that does not parse; the message starts with ``file:line:``."""


# --- what a trace is ------------------------------------------------------------------

#: (field name, value as written), in the order of the line.
Fields = tuple[tuple[str, str], ...]


@dataclasses.dataclass(frozen=True)
class Send:
    line: int
    text: str
    message: str  # a sendable type name, a number such as "0x0A", or "raw"
    fields: Fields = ()
    code: str | None = None  # of an ERROR
    signed: bool = False
    raw: tuple[str, ...] = ()  # hex chunks and captures of a raw send
    sal: str | None = None  # of a "sal" send: the control flags ("SYN|ACK") or "DATA"


@dataclasses.dataclass(frozen=True)
class Alternative:
    kind: str  # a response type name, "any", "nothing" or "sal"
    code: str | None = None  # of an ERROR; None accepts any code
    fields: Fields = ()
    sal: str | None = None  # of a "sal" alternative: the control flags or "DATA"

    def __str__(self) -> str:
        words = [self.kind, *([self.code] if self.code else []), *([self.sal] if self.sal else [])]
        return " ".join(words + [f"{name}={value}" for name, value in self.fields])


@dataclasses.dataclass(frozen=True)
class Expect:
    line: int
    text: str
    alternatives: tuple[Alternative, ...]
    within: float | None  # None: the run's timeout
    requirement: str


@dataclasses.dataclass(frozen=True)
class Wait:
    line: int
    text: str
    seconds: float


Step = Send | Expect | Wait


@dataclasses.dataclass(frozen=True)
class Trace:
    name: str
    source: str  # the file name, for messages
    title: str
    section: str
    requirements: tuple[str, ...]
    needs: tuple[str, ...]
    steps: tuple[Step, ...]
    uses_sal: bool = False  # some step sends or expects a SAL packet


# --- fields -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Spec:
    """How a field's value is written and compared."""

    kind: str  # "bytes", "int", "enum", "endpoint", "text", "hex", "service", "sflags", ...
    size: int = 0  # bytes of a "bytes" field
    words: frozenset[str] = frozenset()  # the names of an "enum"; extra literals otherwise
    random: bool = False  # "*" in a send draws random bytes
    binds: bool = False  # an unbound capture in a send draws random bytes and binds
    maximum: int = 0  # of an "int"; 0: no limit


def _bytes(size: int, *, words: tuple[str, ...] = (), fresh: bool = False) -> _Spec:
    return _Spec("bytes", size, frozenset(words), random=fresh, binds=fresh)


def _enum(*names: str) -> _Spec:
    return _Spec("enum", words=frozenset(names))


_OCTET = _Spec("int", maximum=0xFF)
_COUNT = _Spec("int")
_ENDPOINT = _Spec("endpoint", words=frozenset({"self"}))

_SEND_HEADER: dict[str, _Spec] = {
    "version": _OCTET,
    "flags": _OCTET,
    "reserved": _OCTET,
    "txid": _bytes(8, fresh=True),
    "token": dataclasses.replace(_bytes(16), random=True),
    "key": _bytes(32, words=("member",)),
}
_SEND_BODY: dict[str, dict[str, _Spec]] = {
    "PING": {},
    "STATUS": {},
    "GET_NEIGHBORS": {},
    "FIND_SUCCESSOR": {"target": _bytes(32, fresh=True)},
    "RESOLVE": {"id": _bytes(32, fresh=True), "name": _Spec("text")},
    "PONG": {"observed": _ENDPOINT},
    "ERROR": {},
}
_EXPECT_HEADER: dict[str, _Spec] = {
    "txid": _bytes(8),
    "token": _bytes(16),
    "key": _bytes(32),
    "flags": _OCTET,
}
_EXPECT_BODY: dict[str, dict[str, _Spec]] = {
    "PONG": {"observed": _ENDPOINT},
    "FIND_SUCCESSOR_RESPONSE": {
        "status": _enum(*LookupStatus.__members__),
        "nodes": _COUNT,
        "node": _bytes(32),
    },
    "NEIGHBORS": {
        "predecessor": _bytes(32, words=("none",)),
        "successors": _COUNT,
        "successor": _bytes(32),
    },
    "RESOLVE_RESPONSE": {"status": _enum(*ResolveStatus.__members__), "nodes": _COUNT},
}
_RESPONSES = frozenset(t.name for t in MessageType if t.is_response)


_NodeList = FindSuccessorResponse | ResolveResponse

# --- SAL packets ------------------------------------------------------------------------

#: The test services of Appendix C.4, by the names a trace gives them.
SAL_SERVICES: dict[str, bytes] = {
    "echo-stream": ECHO_STREAM_SERVICE_ID,
    "echo-datagram": ECHO_DATAGRAM_SERVICE_ID,
    "hold-stream": HOLD_STREAM_SERVICE_ID,
    "initiator": INITIATOR_SERVICE_ID,
    "unbound": UNBOUND_SERVICE_ID,
}
_SEQ = _Spec("int", maximum=0xFFFFFFFF, random=True, binds=True)  # 32 bits, modulo 2**32
_FLOW = dataclasses.replace(_SEQ)  # a flowID: "*" draws a non-zero one
_SAL_COMMON: dict[str, _Spec] = {
    "src": _FLOW,
    "dst": _FLOW,
    "protocol": _Spec("protocol"),
    "service": _Spec("service", 32, frozenset({"none"})),
    "payload": _Spec("hex", words=frozenset({"none"})),
}
_SAL_CONTROL: dict[str, _Spec] = {
    "verno": _SEQ,
    "ackno": _SEQ,
    "nonce": _bytes(8, fresh=True),
}
_SAL_SEGMENT: dict[str, _Spec] = {
    "seq": _SEQ,
    "ack": _SEQ,
    "sflags": _Spec("sflags"),
    "window": _Spec("int", maximum=0xFFFF),
    "data": _Spec("hex"),
}

#: The window a stream segment advertises unless the trace says (1024-octet units).
SAL_WINDOW = 256


def _sal_fields(kind: str) -> dict[str, _Spec]:
    return _SAL_COMMON | (_SAL_SEGMENT if kind == "DATA" else _SAL_CONTROL)


def _flag_text(flags: int, names: type[ControlFlags] | type[StreamFlags]) -> str:
    """Flags as their names joined by ``|``, in the order of the header, or ``0``."""
    words = [flag.name for flag in names if flags & flag and flag.name]
    rest = flags & ~sum(int(flag) for flag in names)
    return "|".join(words + ([f"0x{rest:02X}"] if rest else [])) or "0"


def _flag_value(text: str, names: type[ControlFlags] | type[StreamFlags]) -> int:
    """``ACK|FIN``, ``0`` or a number; ValueError names the flags otherwise."""
    if re.fullmatch(r"[0-9]+|0[xX][0-9a-fA-F]+", text):
        value = int(text, 0)
        if value > 0xFF:
            raise ValueError("out of range")
        return value
    value = 0
    for word in text.upper().split("|"):
        if word not in names.__members__:
            raise ValueError(f"expected flags among {', '.join(names.__members__)}, joined by |")
        value |= names[word]
    return value


def _protocol_text(protocol: int) -> str:
    try:
        return TransportProtocol(protocol).name
    except ValueError:
        return str(int(protocol))


def _sal_kind(packet: SalPacket) -> str:
    return "DATA" if packet.control is None else _flag_text(packet.control.flags, ControlFlags)


def _segment(packet: SalPacket) -> StreamSegment | None:
    try:
        return decode_stream(packet.payload)
    except RemoteProtocolError:
        return None


def _sal_text(packet: SalPacket) -> str:
    """A SAL packet in the words of a trace line."""
    words = [
        f"sal {_sal_kind(packet)} src={packet.source_flow_id} dst={packet.destination_flow_id}",
        f"protocol={_protocol_text(packet.protocol)}",
    ]
    if packet.control is not None:
        control = packet.control
        words.append(f"verno={control.verno} ackno={control.ackno} nonce={control.nonce.hex()}")
    if packet.destination_service is not None:
        words.append(f"service={packet.destination_service.hex()}")
    segment = _segment(packet) if packet.protocol == TransportProtocol.STREAM else None
    if packet.control is None and segment is not None:
        words.append(
            f"seq={segment.sequence} ack={segment.acknowledgment} "
            f"sflags={_flag_text(segment.flags, StreamFlags)} window={segment.window} "
            f"data={segment.data.hex() or '(none)'}"
        )
    elif packet.payload:
        words.append(f"payload={packet.payload.hex()}")
    return " ".join(words)


def _control(packet: SalPacket) -> Control:
    assert packet.control is not None  # the parser allows these fields on control kinds only
    return packet.control


def _segment_field(packet: SalPacket, name: str) -> str:
    segment = _segment(packet)
    if segment is None:
        return "(not a stream segment)"
    return {
        "seq": lambda: str(segment.sequence),
        "ack": lambda: str(segment.acknowledgment),
        "sflags": lambda: _flag_text(segment.flags, StreamFlags),
        "window": lambda: str(segment.window),
        "data": lambda: segment.data.hex(),
    }[name]()


#: Expect field of a SAL packet -> its value in a received packet, as text.
_SAL_ACTUAL: dict[str, Callable[[SalPacket], str]] = {
    "src": lambda p: str(p.source_flow_id),
    "dst": lambda p: str(p.destination_flow_id),
    "protocol": lambda p: _protocol_text(p.protocol),
    "service": lambda p: p.destination_service.hex() if p.destination_service else "none",
    "verno": lambda p: str(_control(p).verno),
    "ackno": lambda p: str(_control(p).ackno),
    "nonce": lambda p: _control(p).nonce.hex(),
    "payload": lambda p: p.payload.hex() or "none",
    **{name: functools.partial(_segment_field, name=name) for name in _SAL_SEGMENT},
}


def _first_key(nodes: tuple[NodeInfo, ...]) -> str:
    return nodes[0].key.hex() if nodes else "none"


#: Expect field -> its value in a received message, as text.  The parser lets a
#: body field appear only under the response types that have it.
_ACTUAL: dict[str, Callable[[DhtMessage], str]] = {
    "txid": lambda m: m.transaction_id.hex(),
    "token": lambda m: m.token.hex(),
    "key": lambda m: m.sender_key.hex(),
    "flags": lambda m: str(int(m.flags)),
    "observed": lambda m: _endpoint_text(m.body.observed) if isinstance(m.body, Pong) else "",
    "status": lambda m: m.body.status.name if isinstance(m.body, _NodeList) else "",
    "nodes": lambda m: str(len(m.body.nodes)) if isinstance(m.body, _NodeList) else "",
    "node": lambda m: _first_key(m.body.nodes) if isinstance(m.body, _NodeList) else "",
    "predecessor": lambda m: (
        m.body.predecessor.key.hex()
        if isinstance(m.body, Neighbors) and m.body.predecessor is not None
        else "none"
    ),
    "successors": lambda m: str(len(m.body.successors)) if isinstance(m.body, Neighbors) else "",
    "successor": lambda m: _first_key(m.body.successors) if isinstance(m.body, Neighbors) else "",
}


def _endpoint_text(endpoint: Endpoint | Address) -> str:
    if isinstance(endpoint, Endpoint):
        address, port = endpoint.address, endpoint.port
    else:
        address, port = ipaddress.ip_address(endpoint[0].split("%", 1)[0]), endpoint[1]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


def _code_text(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"0x{code:04X}"


def _code_value(text: str) -> int:
    return ErrorCode[text].value if text in ErrorCode.__members__ else int(text, 16)


# --- parsing ----------------------------------------------------------------------------


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.line = 0
        self.bound: set[str] = set()
        self.needs_sal = False  # the header declares the feature "sal"
        self.uses_sal = False  # a step sends or expects a SAL packet

    def error(self, problem: str) -> TraceError:
        return TraceError(f"{self.source}:{self.line}: {problem}")

    def value(self, name: str, text: str, spec: _Spec, *, send: bool) -> str:
        """``text`` checked and normalised: captures and ``*`` as written, literals canonical."""
        if _CAPTURE.fullmatch(text):
            if send and text not in self.bound and not spec.binds:
                raise self.error(f"{name}={text}: {text} is not bound by an earlier line")
            self.bound.add(text)
            return text
        arithmetic = _ARITHMETIC.fullmatch(text)
        if arithmetic and spec.maximum == 0xFFFFFFFF:
            capture, sign, number = arithmetic.groups()
            if capture not in self.bound:
                raise self.error(f"{name}={text}: {capture} is not bound by an earlier line")
            return f"{capture}{sign}{int(number, 0) & 0xFFFFFFFF}"
        if arithmetic:
            raise self.error(f"{name}={text}: arithmetic only on 32-bit numbers")
        if text.startswith("$"):
            raise self.error(f"{text!r} is not a capture name ($ and a letter, digits, _)")
        if text == "*":
            if send and not spec.random:
                raise self.error(f"{name}=* has no meaning in a send")
            return text
        if text in spec.words and spec.kind != "enum":
            return text
        try:
            return self._literal(spec, text)
        except ValueError as problem:
            raise self.error(f"{name}={text}: {problem}") from None

    @staticmethod
    def _literal(spec: _Spec, text: str) -> str:
        if spec.kind == "bytes":
            if text == "0":
                return "00" * spec.size
            if not _HEX.fullmatch(text) or len(text) != 2 * spec.size:
                raise ValueError(f"expected {spec.size} bytes in hex, or 0")
            return text.lower()
        if spec.kind == "int":
            number = int(text, 0)
            if number < 0 or (spec.maximum and number > spec.maximum):
                raise ValueError("out of range")
            return str(number)
        if spec.kind == "enum":
            if text.upper() not in spec.words:
                raise ValueError(f"expected one of {', '.join(sorted(spec.words))}")
            return text.upper()
        if spec.kind == "service":
            if text.lower() in SAL_SERVICES:
                return SAL_SERVICES[text.lower()].hex()
            return _Parser._literal(_bytes(32), text)
        if spec.kind == "hex":
            if not _HEX.fullmatch(text):
                raise ValueError("expected hex (an even number of digits)")
            return text.lower()
        if spec.kind == "sflags":
            return _flag_text(_flag_value(text, StreamFlags), StreamFlags)
        if spec.kind == "protocol":
            if text.upper() in TransportProtocol.__members__:
                return text.upper()
            try:
                number = int(text, 0)
            except ValueError:
                number = -1
            if not 0 <= number <= 0xFF:
                raise ValueError("expected NONE, DATAGRAM, STREAM or a number from 0 to 255")
            return _protocol_text(number)
        if spec.kind == "endpoint":
            try:
                return _endpoint_text(host_port(text, port_zero=True))
            except ArgumentTypeError as problem:
                raise ValueError(str(problem)) from None
        try:
            service_id_for(text)
        except LocalProtocolError as problem:
            raise ValueError(str(problem)) from None
        return text

    def fields(self, words: list[str], specs: dict[str, _Spec], *, send: bool) -> Fields:
        fields: list[tuple[str, str]] = []
        for word in words:
            name, equals, text = word.partition("=")
            if not equals or not text:
                raise self.error(f"expected field=value, got {word!r}")
            if name not in specs:
                raise self.error(f"no field {name!r} here (fields: {', '.join(specs)})")
            if any(name == seen for seen, _ in fields):
                raise self.error(f"field {name!r} given twice")
            fields.append((name, self.value(name, text, specs[name], send=send)))
        return tuple(fields)

    def send(self, text: str, words: list[str]) -> Send:
        if not words:
            raise self.error("send what?")
        message, rest = words[0], words[1:]
        if message == "sal":
            kind, fields = self.sal(rest, send=True)
            return Send(self.line, text, "sal", fields, sal=kind)
        if message == "raw":
            chunks = []
            for chunk in rest:
                if _CAPTURE.fullmatch(chunk):
                    if chunk not in self.bound:
                        raise self.error(f"{chunk} is not bound by an earlier line")
                elif not _HEX.fullmatch(chunk):
                    raise self.error(f"{chunk!r} is not hex (an even number of digits)")
                chunks.append(chunk)
            if not chunks:
                raise self.error("send raw needs the bytes, in hex")
            return Send(self.line, text, "raw", raw=tuple(chunks))
        code = None
        if message in _SEND_BODY:
            body = _SEND_BODY[message]
            if message == "ERROR":
                if not rest or "=" in rest[0]:
                    raise self.error("send ERROR needs an error code, e.g. send ERROR MALFORMED")
                code, rest = self.code(rest[0]), rest[1:]
        elif re.fullmatch(r"0[xX][0-9a-fA-F]{1,2}", message):
            message, body = f"0x{int(message, 16):02X}", {}
        else:
            sendable = ", ".join(_SEND_BODY)
            raise self.error(f"cannot send {message!r} (send {sendable}, a number, raw or sal)")
        signed = "signed" in rest
        rest = [word for word in rest if word != "signed"]
        fields = self.fields(rest, _SEND_HEADER | body, send=True)
        names = {name for name, _ in fields}
        if signed and dict(fields).get("key") != "member":
            raise self.error("signed needs key=member")
        if signed and (names & {"version", "reserved"} or message.startswith("0x")):
            raise self.error("signed cannot go with version, reserved or a numeric type")
        if {"id", "name"} <= names:
            raise self.error("give RESOLVE an id or a name, not both")
        return Send(self.line, text, message, fields, code, signed)

    def sal(self, words: list[str], *, send: bool) -> tuple[str, Fields]:
        """The KIND and fields of a SAL packet, after ``send sal`` or ``expect sal``."""
        self.uses_sal = True
        if not self.needs_sal:
            raise self.error("a trace with SAL packets needs '# needs: sal' in its header")
        if not words:
            raise self.error("sal needs a KIND: control flags such as SYN|ACK, or DATA")
        kind = words[0].upper()
        if kind != "DATA":
            try:
                flags = _flag_value(kind, ControlFlags)
            except ValueError:
                flags = 0
            if not flags or re.fullmatch(r"[0-9].*", kind):
                raise self.error(
                    f"no SAL packet kind {words[0]!r} (DATA, or control flags among"
                    f" {', '.join(ControlFlags.__members__)} joined by |, such as SYN|ACK)"
                )
            kind = _flag_text(flags, ControlFlags)
        fields = self.fields(words[1:], _sal_fields(kind), send=send)
        names = {name for name, _ in fields}
        if "payload" in names and names & set(_SAL_SEGMENT):
            raise self.error("give a DATA packet a payload or stream segment fields, not both")
        return kind, fields

    def code(self, text: str) -> str:
        """An error code by name, or a number (shown by name when it has one)."""
        if text in ErrorCode.__members__:
            return text
        try:
            number = int(text, 0)
        except ValueError:
            number = -1
        if not 0 <= number <= 0xFFFF:
            raise self.error(f"no error code {text!r} (a name such as MALFORMED, or a number)")
        return _code_text(number)

    def expect(self, text: str, words: list[str], default: str) -> Expect:
        requirement = default
        opening = next((i for i, word in enumerate(words) if word.startswith("[")), None)
        if opening is not None:
            bracket = " ".join(words[opening:])
            if not re.fullmatch(r"\[[A-Z0-9-]+\]", bracket):
                raise self.error(f"expected one requirement ID in brackets at the end: {bracket}")
            requirement, words = bracket[1:-1], words[:opening]
            if requirement not in requirements():
                raise self.error(f"no requirement {requirement!r} in the draft")
        within = None
        if len(words) >= 2 and words[-2] == "within":
            within = self.seconds(words[-1])
            words = words[:-2]
        if "within" in words:
            raise self.error("'within SECONDS' comes after the alternatives")
        # Alternatives are separated by a "|" standing alone; outside a SAL
        # alternative, whose flags contain "|" (SYN|ACK), any "|" separates.
        groups: list[list[str]] = [[]]
        for word in words:
            if word == "|":
                groups.append([])
            else:
                groups[-1].append(word)
        parts: list[list[str]] = []
        for group in groups:
            if group and group[0] == "sal":
                parts.append(group)
            else:
                parts += [part.split() for part in " ".join(group).split("|")]
        alternatives = [self.alternative(part) for part in parts]
        return Expect(self.line, text, tuple(alternatives), within, requirement)

    def alternative(self, words: list[str]) -> Alternative:
        if not words:
            raise self.error("an empty alternative")
        kind, rest = words[0], words[1:]
        if kind == "sal":
            sal, fields = self.sal(rest, send=False)
            return Alternative(kind, fields=fields, sal=sal)
        if kind == "nothing":
            if rest:
                raise self.error("nothing takes no fields")
            return Alternative(kind)
        if kind != "any" and kind not in _RESPONSES:
            raise self.error(
                f"cannot expect {kind!r} (a response type, ERROR, any, nothing or sal)"
            )
        code = None
        if kind == "ERROR" and rest and "=" not in rest[0]:
            code, rest = self.code(rest[0]), rest[1:]
        body = _EXPECT_BODY.get(kind, {})
        return Alternative(kind, code, self.fields(rest, _EXPECT_HEADER | body, send=False))

    def seconds(self, text: str) -> float:
        try:
            seconds = float(text)
        except ValueError:
            seconds = -1.0
        if not 0 <= seconds <= 60:
            raise self.error(f"{text!r} is not a number of seconds from 0 to 60")
        return seconds


def parse(text: str, source: str = "<trace>") -> Trace:
    """Parse a trace; a mistake raises :class:`TraceError` naming ``source:line``."""
    parser = _Parser(source)
    header: dict[str, str] = {}
    header_lines: dict[str, int] = {}
    steps: list[Step] = []
    judged: set[str] = set()
    default = ""
    for number, line in enumerate(text.splitlines(), start=1):
        parser.line = number
        stripped = line.strip()
        directive = _DIRECTIVE.fullmatch(stripped)
        if directive:
            key, value = directive.groups()
            if steps:
                raise parser.error(f"header line '# {key}:' after the first step")
            if key in header:
                raise parser.error(f"'# {key}:' given twice")
            header[key], header_lines[key] = value.strip(), number
            continue
        words = stripped.split()
        for index, word in enumerate(words):
            if word.startswith("#"):
                words = words[:index]
                break
        if not words:
            continue
        if not steps:
            default = _check_header(parser, header)
            parser.needs_sal = "sal" in header.get("needs", "").split()
        command, rest = words[0], words[1:]
        step_text = " ".join(words)
        if command == "send":
            steps.append(parser.send(step_text, rest))
        elif command == "expect":
            expect = parser.expect(step_text, rest, default)
            if expect.requirement not in header["requirements"].split():
                raise parser.error(
                    f"{expect.requirement} is not in the header's requirements; add it there"
                )
            judged.add(expect.requirement)
            steps.append(expect)
        elif command == "wait":
            if len(rest) != 1:
                raise parser.error("wait takes one number of seconds")
            steps.append(Wait(number, step_text, parser.seconds(rest[0])))
        else:
            raise parser.error(f"unknown step {command!r} (send, expect or wait)")
    if not steps:
        parser.line = len(text.splitlines())
        raise parser.error("a trace needs steps, and an expect among them")
    listed = tuple(header["requirements"].split())
    unjudged = [r for r in listed if r not in judged]
    if unjudged:
        parser.line = header_lines["requirements"]
        raise parser.error(f"no expect judges {' '.join(unjudged)}")
    return Trace(
        name=header["trace"],
        source=source,
        title=header.get("title") or f"Trace {header['trace']}",
        section=header["section"],
        requirements=listed,
        needs=tuple(header.get("needs", "").split()),
        steps=tuple(steps),
        uses_sal=parser.uses_sal,
    )


def _check_header(parser: _Parser, header: dict[str, str]) -> str:
    """The default requirement, once the header is complete."""
    for key in ("trace", "section", "requirements"):
        if not header.get(key):
            raise parser.error(f"the header lacks '# {key}:' before the first step")
    if not _NAME.fullmatch(header["trace"]):
        raise parser.error(f"trace name {header['trace']!r}: use a-z, 0-9 and -")
    listed = header["requirements"].split()
    known = requirements()
    for requirement in listed:
        if requirement not in known:
            raise parser.error(f"no requirement {requirement!r} in the draft")
    return listed[0]


def load(path: Path | Traversable) -> Trace:
    """Parse a trace file; its ``# trace:`` name must be its file name."""
    trace = parse(path.read_text("utf-8"), path.name)
    if trace.name != path.name.removesuffix(SUFFIX):
        raise TraceError(f"{path.name}:1: '# trace: {trace.name}' differs from the file name")
    return trace


def shipped() -> list[Trace]:
    """The canonical traces of ``conformance/traces``, by name."""
    folder = resources.files("conformance").joinpath("traces")
    found = [entry for entry in folder.iterdir() if entry.name.endswith(SUFFIX)]
    return [load(entry) for entry in sorted(found, key=lambda entry: entry.name)]


# --- replay -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Arrival:
    """One datagram from the target: the message, or why it is not one."""

    source: Address
    message: DhtMessage | None
    problem: str = ""
    packet: SalPacket | None = None  # a SAL packet that carries no ServalDHT message

    def show(self) -> str:
        if self.packet is not None:
            return _sal_text(self.packet)
        if self.message is None:
            return self.problem
        message = self.message
        return f"{summarise(message)} token={message.token.hex()} key={message.sender_key.hex()}"


class _Player:
    def __init__(self, trace: Trace, ctx: Context) -> None:
        self.trace = trace
        self.ctx = ctx
        self.peer: DhtPeer = ctx.client()
        self.bindings: dict[str, str] = {}
        self._member: Ed25519PrivateKey | None = None

    @property
    def member(self) -> Ed25519PrivateKey:
        if self._member is None:
            self._member = self.ctx.key()
        return self._member

    def where(self, step: Step) -> str:
        return f"{self.trace.source}:{step.line}"

    # --- send ---------------------------------------------------------------------

    def send(self, step: Send) -> None:
        if step.message == "sal":
            self.peer.wire.send(encode_sal(self.sal_packet(step)))
            return
        if step.message == "raw":
            payload = bytes.fromhex("".join(self.bound(step, chunk) for chunk in step.raw))
        else:
            payload = self.build(step)
        self.peer.send_payload(payload)

    def bound(self, step: Step, capture: str) -> str:
        if not _CAPTURE.fullmatch(capture):
            return capture
        if capture not in self.bindings:
            raise HarnessError(
                f"{self.where(step)}: {capture} is not bound (the alternative that binds it"
                " did not match)"
            )
        return self.bindings[capture]

    def field_bytes(self, step: Send, name: str, default: str) -> bytes:
        specs = (
            _sal_fields(step.sal) if step.sal else _SEND_HEADER | _SEND_BODY.get(step.message, {})
        )
        spec = specs[name]
        text = dict(step.fields).get(name, default)
        if text == "*":
            return self.ctx.rng.randbytes(spec.size)
        if text == "0":
            return bytes(spec.size)
        if text == "member":
            return public_key_bytes(self.member)
        if _CAPTURE.fullmatch(text) and text not in self.bindings and spec.binds:
            self.bindings[text] = self.ctx.rng.randbytes(spec.size).hex()
        value = bytes.fromhex(self.bound(step, text))
        if len(value) != spec.size:
            raise HarnessError(f"{self.where(step)}: {name} needs {spec.size} bytes, {text} has")
        return value

    def number(self, where: str, name: str, text: str, bindings: dict[str, str]) -> int:
        """A 32-bit field's value: a literal, a bound capture or ``$NAME+N``."""
        arithmetic = _ARITHMETIC.fullmatch(text)
        if arithmetic:
            capture, sign, offset = arithmetic.groups()
            base = self.number(where, name, capture, bindings)
            return (base + int(offset) * (1 if sign == "+" else -1)) & 0xFFFFFFFF
        if _CAPTURE.fullmatch(text):
            if text not in bindings:
                raise HarnessError(
                    f"{where}: {text} is not bound (the alternative that binds it did not match)"
                )
            text = bindings[text]
        try:
            return int(text, 0)
        except ValueError:
            raise HarnessError(f"{where}: {name}={text} is not a number") from None

    def sal_number(self, step: Send, name: str) -> int:
        fields = dict(step.fields)
        text = fields.get(name, "0")
        low = 1 if name in ("src", "dst") else 0  # a fresh flowID is not zero
        if text == "*" or (_CAPTURE.fullmatch(text) and text not in self.bindings):
            value = self.ctx.rng.randrange(low, 1 << 32)
            if text != "*":
                self.bindings[text] = str(value)
            return value
        return self.number(self.where(step), name, text, self.bindings)

    def sal_packet(self, step: Send) -> SalPacket:
        """The SAL packet of a ``send sal`` line; unset numbers are 0."""
        assert step.sal is not None
        fields = dict(step.fields)
        stream = bool(set(fields) & set(_SAL_SEGMENT))
        protocol_text = fields.get("protocol", "STREAM" if stream else "DATAGRAM")
        protocol = (
            TransportProtocol[protocol_text]
            if protocol_text in TransportProtocol.__members__
            else int(protocol_text)
        )
        service = fields.get("service", "none")
        control = None
        if step.sal != "DATA":
            control = Control(
                ControlFlags(_flag_value(step.sal, ControlFlags)),
                self.sal_number(step, "verno"),
                self.sal_number(step, "ackno"),
                self.field_bytes(step, "nonce", "0"),
            )
        written = self.bound(step, fields.get("payload", "none"))
        payload = b"" if written == "none" else bytes.fromhex(written)
        if stream:
            payload = encode_stream(
                StreamSegment(
                    self.sal_number(step, "seq"),
                    self.sal_number(step, "ack"),
                    StreamFlags(_flag_value(fields.get("sflags", "ACK"), StreamFlags)),
                    int(fields.get("window", str(SAL_WINDOW))),
                    bytes.fromhex(self.bound(step, fields.get("data", ""))),
                )
            )
        return SalPacket(
            self.sal_number(step, "src"),
            self.sal_number(step, "dst"),
            protocol,
            control=control,
            destination_service=(
                None if service == "none" else bytes.fromhex(self.bound(step, service))
            ),
            payload=payload,
        )

    def body(self, step: Send) -> Body:
        fields = dict(step.fields)
        if step.message == "FIND_SUCCESSOR":
            return FindSuccessor(self.field_bytes(step, "target", "*"))
        if step.message == "RESOLVE":
            if "name" in fields:
                return Resolve(service_id_for(fields["name"]))
            return Resolve(self.field_bytes(step, "id", "*"))
        if step.message == "PONG":
            observed = fields.get("observed", "self")
            host, port = self.peer.wire.local if observed == "self" else host_port(observed)
            return Pong(Endpoint(ipaddress.ip_address(host.split("%", 1)[0]), port))
        if step.message == "ERROR":
            assert step.code is not None
            return Error(_code_value(step.code))
        return {"STATUS": Status(), "GET_NEIGHBORS": GetNeighbors()}.get(step.message, Ping())

    def build(self, step: Send) -> bytes:
        """Encoded by ``ref.wire``, then the header octets the trace sets written over it."""
        fields = dict(step.fields)
        octets = {
            offset: int(self.bound(step, fields[name]))
            for offset, name in enumerate(("version", "type", "flags", "reserved"))
            if name in fields
        }
        if step.message.startswith("0x"):
            octets[1] = int(step.message, 16)
        flags = MessageFlags(octets.pop(2, 0)) if step.signed else MessageFlags(0)
        message = DhtMessage(
            body=self.body(step),
            transaction_id=self.field_bytes(step, "txid", "*"),
            sender_key=self.field_bytes(step, "key", "0"),
            token=self.field_bytes(step, "token", "0"),
            flags=flags,
        )
        data = bytearray(encode_dht(message, self.member if step.signed else None))
        for offset, value in octets.items():
            data[offset] = value
        return bytes(data)

    # --- expect -------------------------------------------------------------------

    def arrivals(self, timeout: float) -> Iterator[_Arrival]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            got = self.peer.wire.receive(left)
            if got is None:
                return
            data, source = got
            try:
                packet = decode_sal(data)
            except RemoteProtocolError as error:
                yield _Arrival(source, None, f"an undecodable datagram ({error})")
                continue
            if packet.destination_service != SERVALDHT_SERVICE_ID:
                problem = f"a SAL packet not for the ServalDHT service ({_sal_text(packet)})"
                yield _Arrival(source, None, problem, packet)
                continue
            try:
                yield _Arrival(source, decode_dht(packet.payload))
            except RemoteProtocolError as error:
                yield _Arrival(source, None, f"an undecodable datagram ({error})")

    def expect(self, step: Expect) -> None:
        within = self.ctx.timeout if step.within is None else step.within
        arrival = next(self.arrivals(within), None)
        reasons = []
        for alternative in step.alternatives:
            bindings = dict(self.bindings)
            reason = self.match(step, alternative, arrival, bindings)
            if reason is None:
                self.bindings = bindings
                self.ctx.require(step.requirement, True, f"{self.where(step)}: {step.text}")
                return
            reasons.append(f"not {alternative.sal or alternative.kind}: {reason}")
        actual = f"nothing within {within:g} s" if arrival is None else arrival.show()
        self.ctx.require(
            step.requirement,
            False,
            f"{self.where(step)}: {step.text} ({'; '.join(reasons)})",
            expected=" | ".join(str(a) for a in step.alternatives) + f" within {within:g} s",
            actual=actual,
        )
        raise CaseAbort(f"{self.where(step)}: the target did not do as the trace expects")

    def match(
        self,
        step: Expect,
        alternative: Alternative,
        arrival: _Arrival | None,
        bindings: dict[str, str],
    ) -> str | None:
        """None when ``arrival`` matches, else why not; captures bind into ``bindings``."""
        if alternative.kind == "nothing":
            return None if arrival is None else "got a datagram"
        if arrival is None:
            return "got no datagram"
        if _endpoint_text(arrival.source) != _endpoint_text(self.ctx.target.address):
            return f"it came from {_endpoint_text(arrival.source)}, not the target's endpoint"
        if alternative.kind == "sal":
            packet = arrival.packet
            if packet is None:
                shown = arrival.show() if arrival.message else arrival.problem
                return f"got {shown}, not a SAL packet of a flow"
            if _sal_kind(packet) != alternative.sal:
                return f"got {_sal_kind(packet)}"
            return self.compare(step, alternative, lambda name: _SAL_ACTUAL[name](packet), bindings)
        message = arrival.message
        if message is None:
            return arrival.problem
        if alternative.kind != "any" and message.type.name != alternative.kind:
            return f"got {message.type.name}"
        if alternative.code is not None:
            assert isinstance(message.body, Error)
            code = _code_text(message.body.error_code)
            if code != alternative.code:
                return f"error code {code}"
        return self.compare(step, alternative, lambda name: _ACTUAL[name](message), bindings)

    def compare(
        self,
        step: Expect,
        alternative: Alternative,
        actual_of: Callable[[str], str],
        bindings: dict[str, str],
    ) -> str | None:
        """None when every field matches, else why not; captures bind into ``bindings``."""
        for name, expected in alternative.fields:
            actual = actual_of(name)
            if _ARITHMETIC.fullmatch(expected):
                value = str(self.number(self.where(step), name, expected, bindings))
                if actual != value:
                    return f"{name} is {actual}, expected {expected} = {value}"
                continue
            if expected == "self":
                expected = _endpoint_text(self.peer.wire.local)
            if expected == "*":
                continue
            if _CAPTURE.fullmatch(expected):
                if expected not in bindings:
                    bindings[expected] = actual
                    continue
                if bindings[expected] != actual:
                    return f"{name} is {actual}, {expected} is {bindings[expected]}"
            elif actual != expected:
                return f"{name} is {actual}, expected {expected}"
        return None


def replay(trace: Trace, ctx: Context) -> None:
    """Run ``trace`` against ``ctx.target``, judging each expect (see the module's docstring)."""
    player = _Player(trace, ctx)
    for step in trace.steps:
        if isinstance(step, Send):
            player.send(step)
        elif isinstance(step, Expect):
            player.expect(step)
        else:
            time.sleep(step.seconds)
