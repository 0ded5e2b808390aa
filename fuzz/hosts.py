"""The SAL host core as a fuzz target: frames of datagrams, invariants after each.

Theory of operation.  Every execution builds the same
:class:`~ref.sal.host.Host`: two interfaces (IPv4 and IPv6), ``random.Random(0)``,
the clock at :data:`NOW`, acting as a service router, with a STREAM listener
on the vectors' serviceID (so the draft's SYN opens a flow), a DATAGRAM
listener, a FORWARD rule for a remote service and one for a routed prefix,
and one flow it opened itself (its SYN is the first thing it sends).  The
input is a sequence of frames as for the node (:mod:`fuzz.nodes`): a control
octet, a 16-bit length, a SAL datagram.  The control octet:

========  ====================================================================
bits 0-2  the source endpoint (the forwarding peers, clients of both families)
bit 3     ANSWER: carry on the conversation of the host's latest packet: its
          flowIDs swapped into the datagram, sent from where it went, and in
          a CONTROL extension the acknowledgment and sequence numbers it
          expects (its verno + 1, its ackno)
bit 4     TICK: first advance the clock to the host's next timer
bit 5     the datagram arrives at the IPv6 interface instead of the IPv4 one
bit 6     APP: afterwards the application reads and writes on every flow
bit 7     RAW: leave the SAL checksum as it is (otherwise it is recomputed)
========  ====================================================================

After every frame :class:`HostWatch` checks: no exception escapes
``receive_datagram`` or ``handle_timer``; everything the host sends decodes,
leaves from one of its interfaces and comes in bounded numbers; an RST is
never answered with an RST (SAL-RST-2); a flow never has sent more than
half the sequence space beyond what was acknowledged; tables and queues
stay bounded.  (A transition missing from the state table raises
``LocalProtocolError`` inside the host, which escapes as a finding.)
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable

from fuzz import seeds
from fuzz.decoders import fix_checksum
from fuzz.findings import InvariantViolation
from fuzz.nodes import Frame, encode_frames, frames, patch
from ref.sal.flow import HALF_SPACE, seq_diff
from ref.sal.host import Host, HostConfig, Outgoing
from ref.sal.table import Prefix, Rule
from ref.wire import (
    Control,
    ControlFlags,
    Endpoint,
    ErrorCode,
    ExtensionType,
    LocalProtocolError,
    RemoteProtocolError,
    SalPacket,
    StreamFlags,
    StreamSegment,
    TransportProtocol,
    decode_sal,
    encode_sal,
    encode_stream,
    service_id_for_name,
)
from ref.wire.constants import MAX_UDP_PAYLOAD
from ref.wire.vectors import ECHO

NOW = float(seeds.NOW)

SOURCE_BITS = 0x07
ANSWER = 0x08
TICK = 0x10
IPV6 = 0x20
APP = 0x40
RAW = 0x80

MAX_OUTPUT_PER_FRAME = 64
MAX_EVENTS = 64
MAX_FLOWS = 1024
MAX_TIMERS = 4096
MAX_RULES = 256

_address = ipaddress.ip_address
LOCAL = (Endpoint(_address("192.0.2.50"), 54321), Endpoint(_address("2001:db8::50"), 54321))
PEER = Endpoint(_address("198.51.100.20"), 54321)
ROUTER = Endpoint(_address("198.51.100.21"), 54321)
SOURCES = (
    PEER,
    ROUTER,
    Endpoint(_address("192.0.2.7"), 40000),
    Endpoint(_address("2001:db8::7"), 40000),
    Endpoint(_address("203.0.113.5"), 40000),
    Endpoint(_address("192.0.2.50"), 54321),  # one of its own endpoints
    Endpoint(_address("2001:db8::8"), 5000),
    Endpoint(_address("192.0.2.8"), 5000),
)
DATAGRAM_SERVICE = service_id_for_name("datagram.example")
REMOTE_SERVICE = service_id_for_name("remote.example")
ROUTED = service_id_for_name("routed.example")


def make_host() -> Host:
    """The host every execution starts from (its own SYN is already waiting to be read)."""
    host = Host(
        LOCAL, rng=random.Random(0), now=NOW, config=HostConfig(router=True, register=False)
    )
    host.listen(ECHO, TransportProtocol.STREAM, NOW)
    host.listen(DATAGRAM_SERVICE, TransportProtocol.DATAGRAM, NOW)
    host.table.add(Rule.forward(Prefix(REMOTE_SERVICE, 256), PEER), NOW)
    host.table.add(Rule.forward(Prefix(ROUTED, 16), ROUTER), NOW)
    host.connect(REMOTE_SERVICE, TransportProtocol.STREAM, NOW)
    return host


def _control_offset(datagram: bytes) -> int | None:
    """Where the CONTROL extension of a SAL datagram starts, if it has one."""
    end = min(len(datagram), datagram[8] * 4) if len(datagram) > 8 else 0
    offset = 12
    while offset + 2 <= end:
        kind, length = datagram[offset], datagram[offset + 1]
        if kind == ExtensionType.CONTROL and length == 20 and offset + 20 <= end:
            return offset
        if length < 4:
            return None
        offset += length
    return None


def answer(datagram: bytes, latest: bytes, control: bytes) -> bytes:
    """``datagram`` made part of the conversation of the host's ``latest`` packet.

    The flowIDs come from ``latest``; the sequence numbers from ``control``, the
    host's latest packet with a CONTROL extension, when it belongs to the same flow.
    """
    if len(datagram) < 12 or len(latest) < 12:
        return datagram
    datagram = patch(datagram, 0, latest[4:8] if latest[4:8] != bytes(4) else datagram[0:4])
    datagram = patch(datagram, 4, latest[0:4])
    mine, theirs = _control_offset(datagram), _control_offset(control)
    if mine is not None and theirs is not None and control[0:4] == latest[0:4]:
        verno = int.from_bytes(control[theirs + 4 : theirs + 8], "big")
        datagram = patch(datagram, mine + 8, ((verno + 1) % (1 << 32)).to_bytes(4, "big"))
        datagram = patch(datagram, mine + 4, control[theirs + 8 : theirs + 12])
    return datagram


class HostWatch:
    """Checks one host's output and state after each step."""

    def __init__(self, host: Host) -> None:
        self.host = host

    def outputs(self, received: bytes | None, source: Endpoint | None) -> list[Outgoing]:
        sent = self.host.datagrams_to_send()
        if len(sent) > MAX_OUTPUT_PER_FRAME:
            raise InvariantViolation("output-burst", f"{len(sent)} datagrams for one input")
        rst_in = received is not None and _is_rst(received)
        for out in sent:
            if not isinstance(out, Outgoing) or not isinstance(out.data, bytes):
                raise InvariantViolation("output-type", repr(out))
            if out.source not in self.host.interfaces:
                raise InvariantViolation("output-source", f"from {out.source}")
            if len(out.data) > MAX_UDP_PAYLOAD:
                raise InvariantViolation("output-size", f"{len(out.data)} octets")
            try:
                decode_sal(out.data)
            except RemoteProtocolError as error:
                raise InvariantViolation(
                    "output-undecodable", f"{error}: {out.data.hex()}"
                ) from error
            if rst_in and out.destination == source and _is_rst(out.data):
                raise InvariantViolation("rst-answers-rst", out.data.hex())  # SAL-RST-2
        return sent

    def state(self) -> None:
        host = self.host
        events = 0
        while host.next_event() is not None:
            events += 1
            if events > MAX_EVENTS:
                raise InvariantViolation("events-unbounded", f"more than {MAX_EVENTS} events")
        for flow in host.flows.values():
            if not 0 <= seq_diff(flow.snd_nxt, flow.snd_una) < HALF_SPACE:
                raise InvariantViolation(
                    "sent-beyond-acknowledged", f"snd.una {flow.snd_una}, snd.nxt {flow.snd_nxt}"
                )
        if not all(isinstance(code, ErrorCode) for code in host.drops):
            raise InvariantViolation("drop-counter", repr(host.drops))
        bounds = {
            "flows": (len(host.flows), MAX_FLOWS),
            "timers": (len(host._timers), MAX_TIMERS),
            "rules": (len(host.table), MAX_RULES),
        }
        for name, (size, bound) in bounds.items():
            if size > bound:
                raise InvariantViolation(f"{name}-unbounded", f"{size} > {bound}")


def _is_rst(datagram: bytes) -> bool:
    try:
        control = decode_sal(datagram).control
    except RemoteProtocolError:
        return False
    return control is not None and bool(control.flags & ControlFlags.RST)


class HostRun:
    """One execution: a fresh host, the frames delivered in order, checked after each."""

    def __init__(self) -> None:
        self.host = make_host()
        self.watch = HostWatch(self.host)
        self.now = NOW
        self.latest = self.latest_control = b""
        self.latest_to = LOCAL[0]
        self._sent(self.watch.outputs(None, None))
        self.watch.state()

    def _sent(self, out: Iterable[Outgoing]) -> None:
        for packet in out:
            self.latest = packet.data
            self.latest_to = packet.destination
            if _control_offset(packet.data) is not None:
                self.latest_control = packet.data

    def deliver(self, frame: Frame) -> None:
        control = frame.control
        host = self.host
        if control & TICK:
            deadline = host.get_timer()
            if deadline is not None:
                self.now = max(self.now, deadline)
                host.handle_timer(self.now)
                self._sent(self.watch.outputs(None, None))
        source = SOURCES[control & SOURCE_BITS]
        datagram = frame.datagram
        if control & ANSWER and self.latest:
            datagram = answer(datagram, self.latest, self.latest_control)
            source = self.latest_to
        if not control & RAW:
            datagram = fix_checksum(datagram)
        local = LOCAL[1] if control & IPV6 else LOCAL[0]
        host.receive_datagram(datagram, source=source, local=local, now=self.now)
        self._sent(self.watch.outputs(datagram, source))
        if control & APP:
            self.application()
        self.watch.state()

    def application(self) -> None:
        """What an application does with every flow: read all, write a little."""
        for flow_id in list(self.host.flows):
            try:
                self.host.read(flow_id, now=self.now)
                self.host.send(flow_id, b"x" * 100, self.now)
            except LocalProtocolError:
                continue
        self._sent(self.watch.outputs(None, None))


def run(data: bytes) -> None:
    """The ``sal-host`` harness: one fresh host, every frame of ``data``."""
    execution = HostRun()
    for frame in frames(data):
        execution.deliver(frame)


# --- seeds -----------------------------------------------------------------------------


def host_seeds() -> list[bytes]:
    """Handshakes both ways, stream data, datagrams, routed packets, and the SAL vectors."""
    client_nonce = bytes(range(8))
    syn = SalPacket(
        0x1111,
        0,
        TransportProtocol.STREAM,
        control=Control(ControlFlags.SYN, 1000, 0, client_nonce),
        destination_service=ECHO,
    )
    ack = SalPacket(
        0x1111, 0, TransportProtocol.STREAM, control=Control(ControlFlags.ACK, 0, 0, client_nonce)
    )
    segment = StreamSegment(1001, 0, StreamFlags.ACK, 64, b"GET /\r\n")
    data = SalPacket(0x1111, 0, TransportProtocol.STREAM, payload=encode_stream(segment))
    fin = SalPacket(
        0x1111,
        0,
        TransportProtocol.STREAM,
        control=Control(ControlFlags.FIN | ControlFlags.ACK, 0, 0, client_nonce),
    )
    syn_ack = SalPacket(
        0x2222,
        0,
        TransportProtocol.STREAM,
        control=Control(ControlFlags.SYN | ControlFlags.ACK, 5000, 0, client_nonce),
        destination_service=REMOTE_SERVICE,
    )
    datagram = SalPacket(
        0, 0, TransportProtocol.DATAGRAM, destination_service=DATAGRAM_SERVICE, payload=b"hi"
    )
    routed = SalPacket(
        0, 0, TransportProtocol.DATAGRAM, destination_service=ROUTED[:2] + bytes(30), payload=b"r"
    )
    sequences = [
        [Frame(2, encode_sal(syn)), Frame(2 | ANSWER, encode_sal(ack)), Frame(2 | APP, b"")],
        [
            Frame(2, encode_sal(syn)),
            Frame(2 | ANSWER, encode_sal(ack)),
            Frame(2 | ANSWER | APP, encode_sal(data)),
            Frame(2 | ANSWER, encode_sal(fin)),
            Frame(TICK, b""),
        ],
        [Frame(ANSWER | APP, encode_sal(syn_ack)), Frame(TICK | APP, b"")],
        [Frame(3 | IPV6 | APP, encode_sal(datagram))],
        [Frame(4, encode_sal(routed))],
        [Frame(TICK, b""), Frame(TICK, b""), Frame(TICK, b"")],
    ]
    for vector in seeds.vectors("sal"):
        sequences.append([Frame(2, vector)])
    for mutant in seeds.mutant_datagrams(16):
        sequences.append([Frame(2 | RAW, mutant)])
    return [encode_frames(sequence) for sequence in sequences]
