"""Packet traces: short, readable scripts of ServalDHT exchanges, replayed against a target.

A trace is a text file in the spirit of packetdrill: what the harness sends,
what it expects back, and how long it waits.  The canonical traces ship in
``conformance/traces/*.trace``; each one is a case of the group
``dht.traces`` (``conformance/cases/traces.py``), with the file's name as
the last part of the case ID, so every run replays them.  Example::

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
    matched.

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
    SERVALDHT_SERVICE_ID,
    Body,
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
    Status,
    decode_dht,
    decode_sal,
    encode_dht,
    public_key_bytes,
    service_id_for,
)

SUFFIX = ".trace"
_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")
_CAPTURE = re.compile(r"\$[A-Za-z_][A-Za-z0-9_]*")
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


@dataclasses.dataclass(frozen=True)
class Alternative:
    kind: str  # a response type name, "any" or "nothing"
    code: str | None = None  # of an ERROR; None accepts any code
    fields: Fields = ()

    def __str__(self) -> str:
        words = [self.kind, *([self.code] if self.code else [])]
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


# --- fields -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Spec:
    """How a field's value is written and compared."""

    kind: str  # "bytes", "int", "enum", "endpoint" or "text"
    size: int = 0  # bytes of a "bytes" field
    words: frozenset[str] = frozenset()  # the names of an "enum"; extra literals otherwise
    random: bool = False  # "*" in a send draws random bytes
    binds: bool = False  # an unbound capture in a send draws random bytes and binds


def _bytes(size: int, *, words: tuple[str, ...] = (), fresh: bool = False) -> _Spec:
    return _Spec("bytes", size, frozenset(words), random=fresh, binds=fresh)


def _enum(*names: str) -> _Spec:
    return _Spec("enum", words=frozenset(names))


_OCTET = _Spec("int")
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

    def error(self, problem: str) -> TraceError:
        return TraceError(f"{self.source}:{self.line}: {problem}")

    def value(self, name: str, text: str, spec: _Spec, *, send: bool) -> str:
        """``text`` checked and normalised: captures and ``*`` as written, literals canonical."""
        if _CAPTURE.fullmatch(text):
            if send and text not in self.bound and not spec.binds:
                raise self.error(f"{name}={text}: {text} is not bound by an earlier line")
            self.bound.add(text)
            return text
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
            if number < 0 or (spec is _OCTET and number > 0xFF):
                raise ValueError("out of range")
            return str(number)
        if spec.kind == "enum":
            if text.upper() not in spec.words:
                raise ValueError(f"expected one of {', '.join(sorted(spec.words))}")
            return text.upper()
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
            raise self.error(f"cannot send {message!r} (send {sendable}, a number or raw)")
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
        alternatives = []
        for part in " ".join(words).split("|"):
            alternatives.append(self.alternative(part.split()))
        return Expect(self.line, text, tuple(alternatives), within, requirement)

    def alternative(self, words: list[str]) -> Alternative:
        if not words:
            raise self.error("an empty alternative")
        kind, rest = words[0], words[1:]
        if kind == "nothing":
            if rest:
                raise self.error("nothing takes no fields")
            return Alternative(kind)
        if kind != "any" and kind not in _RESPONSES:
            raise self.error(f"cannot expect {kind!r} (a response type, ERROR, any or nothing)")
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

    def show(self) -> str:
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
        spec = (_SEND_HEADER | _SEND_BODY.get(step.message, {}))[name]
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
                if packet.destination_service != SERVALDHT_SERVICE_ID:
                    yield _Arrival(source, None, "a SAL packet not for the ServalDHT service")
                    continue
                yield _Arrival(source, decode_dht(packet.payload))
            except RemoteProtocolError as error:
                yield _Arrival(source, None, f"an undecodable datagram ({error})")

    def expect(self, step: Expect) -> None:
        within = self.ctx.timeout if step.within is None else step.within
        arrival = next(self.arrivals(within), None)
        reasons = []
        for alternative in step.alternatives:
            bindings = dict(self.bindings)
            reason = self.match(alternative, arrival, bindings)
            if reason is None:
                self.bindings = bindings
                self.ctx.require(step.requirement, True, f"{self.where(step)}: {step.text}")
                return
            reasons.append(f"not {alternative.kind}: {reason}")
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
        self, alternative: Alternative, arrival: _Arrival | None, bindings: dict[str, str]
    ) -> str | None:
        """None when ``arrival`` matches, else why not; captures bind into ``bindings``."""
        if alternative.kind == "nothing":
            return None if arrival is None else "got a datagram"
        if arrival is None:
            return "got no datagram"
        if _endpoint_text(arrival.source) != _endpoint_text(self.ctx.target.address):
            return f"it came from {_endpoint_text(arrival.source)}, not the target's endpoint"
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
        for name, expected in alternative.fields:
            actual = _ACTUAL[name](message)
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
