"""The harness as a SAL host: flows to and from the target's test services (Appendix C.4).

Built on :mod:`ref.wire` only.  A :class:`SalPeer` is one harness socket that
speaks SAL to the target: it sends packets, hears the target's packets
(decoded, with the time they arrived), fences an exchange with a PING so
that silence can be judged, and reads the target's drop counters.  A
:class:`HarnessFlow` is the harness's half of one flow, either side of the
handshake: it keeps the flowIDs, nonces and control sequence numbers of
Section 5.8 and 5.9 and the stream sequence numbers of Section 5.14.2, and
builds every packet kind of Section 5.3.5 with any field overridden, so that
a case can send exactly the packet it means to, right or wrong.

The cases judge, with :meth:`Context.require`; the one judgement made here
is that of a drop (:func:`judge_drop`), which every SAL case module makes
the same way.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence

from conformance.context import Context
from conformance.model import HarnessError
from conformance.peer import Address, DhtPeer
from ref.wire import (
    ECHO_DATAGRAM_SERVICE_ID,
    ECHO_STREAM_SERVICE_ID,
    HOLD_STREAM_SERVICE_ID,
    INITIATOR_SERVICE_ID,
    SERVALDHT_SERVICE_ID,
    UNBOUND_SERVICE_ID,
    Control,
    ControlFlags,
    DhtMessage,
    ErrorCode,
    Ping,
    RemoteProtocolError,
    SalPacket,
    StreamFlags,
    StreamSegment,
    TransportProtocol,
    decode_dht,
    decode_sal,
    decode_stream,
    encode_sal,
    encode_stream,
)

__all__ = [
    "ECHO_DATAGRAM_SERVICE_ID",
    "ECHO_STREAM_SERVICE_ID",
    "HOLD_STREAM_SERVICE_ID",
    "INITIATOR_SERVICE_ID",
    "UNBOUND_SERVICE_ID",
    "HarnessFlow",
    "Heard",
    "SalPeer",
    "seq",
]

SYN, RSYN, ACK, NACK, RST, FIN = (
    ControlFlags.SYN,
    ControlFlags.RSYN,
    ControlFlags.ACK,
    ControlFlags.NACK,
    ControlFlags.RST,
    ControlFlags.FIN,
)
STREAM, DATAGRAM, NONE = (
    TransportProtocol.STREAM,
    TransportProtocol.DATAGRAM,
    TransportProtocol.NONE,
)
#: After a fence's PONG, how long to keep listening for a late answer.
GRACE = 0.05
#: Seconds after which a target's per-second RST budget (SAL-RST-3) is surely renewed.
RST_RATE_WINDOW = 1.1
#: The window the harness advertises, in 1024-octet units (the default, 256 KB).
WINDOW = 256


def seq(value: int) -> int:
    """``value`` modulo 2**32: sequence numbers wrap (Section 5)."""
    return value & 0xFFFFFFFF


@dataclasses.dataclass
class Heard:
    """A datagram from the target, decoded as SAL when it is SAL."""

    data: bytes
    source: Address
    at: float  # time.monotonic() on arrival
    packet: SalPacket | None

    @property
    def flags(self) -> ControlFlags | None:
        """The CONTROL flags, or None for a packet without CONTROL."""
        control = self.packet.control if self.packet is not None else None
        return control.flags if control is not None else None

    @property
    def control(self) -> Control | None:
        return self.packet.control if self.packet is not None else None

    @property
    def segment(self) -> StreamSegment | None:
        """The stream segment of a STREAM data packet, None otherwise (or if malformed)."""
        packet = self.packet
        if packet is None or packet.control is not None or packet.protocol != STREAM:
            return None
        try:
            return decode_stream(packet.payload)
        except RemoteProtocolError:
            return None

    def is_control(self, flags: int) -> bool:
        """A control packet whose flags are exactly ``flags``."""
        return self.flags is not None and int(self.flags) == int(flags)

    def describe(self) -> str:
        packet = self.packet
        if packet is None:
            return f"{len(self.data)} octets that are not a SAL packet"
        parts = [f"src {packet.source_flow_id:#010x} dst {packet.destination_flow_id:#010x}"]
        parts.append(f"protocol {int(packet.protocol)}")
        if packet.control is not None:
            c = packet.control
            parts.append(
                f"CONTROL {_flag_names(c.flags)} verno {c.verno} ackno {c.ackno} "
                f"nonce {c.nonce.hex()}"
            )
        segment = self.segment
        if segment is not None:
            parts.append(
                f"segment seq {segment.sequence} ack {segment.acknowledgment} "
                f"flags {int(segment.flags):#04x} window {segment.window} "
                f"+{len(segment.data)} octets"
            )
        elif packet.payload:
            parts.append(f"payload {len(packet.payload)} octets")
        return ", ".join(parts)


def _flag_names(flags: int) -> str:
    names = [f.name for f in ControlFlags if flags & f and f.name]
    return "|".join(names) or "none"


def show(heard: Heard | None) -> str:
    return "nothing" if heard is None else heard.describe()


def describe_all(heard: Iterable[Heard], empty: str = "nothing") -> str:
    """Every packet of ``heard`` described, or ``empty`` when there is none."""
    return "; ".join(h.describe() for h in heard) or empty


def read_counters(ctx: Context, peer: DhtPeer) -> collections.Counter[str]:
    """The target's counters (feature "counters"), read with STATUS from ``peer``."""
    counters = ctx.counters(peer)
    if counters is None:
        raise HarnessError("the STATUS report has no counters object (feature counters)")
    return collections.Counter(counters)


def judge_drop(
    ctx: Context,
    requirement: str,
    code: ErrorCode,
    detail: str,
    *,
    answers: Sequence[str],
    change: collections.Counter[str],
    others: bool = False,
    recv3: bool = True,
) -> bool:
    """Judge that the target dropped a packet, counted under ``code``.

    ``answers`` describes what the target sent back that the draft does not
    allow (``others``: it allows some, which were left out), and ``change``
    is how its counters moved.  With ``recv3`` the silence is judged under
    SAL-RECV-3 as well.
    """
    name = f"drop.{code.name}"
    drops = ", ".join(f"{k} +{v}" for k, v in sorted(change.items()) if k.startswith("drop."))
    heard = "; ".join(answers) or "no packet"
    if others:
        dropped, expected = "dropped", f"{name} +1 and no other answer"
    else:
        dropped, expected = "dropped silently", f"silence and {name} +1"
    if recv3:
        ctx.require(
            "SAL-RECV-3",
            not answers,
            f"no packet answers a dropped packet: {detail}",
            expected="no packet",
            actual=heard,
        )
    return ctx.require(
        requirement,
        not answers and change[name] >= 1,
        f"{detail}: {dropped}, counted {code.name}",
        expected=expected,
        actual=f"{heard}; {drops or 'no drop counted'}",
    )


class SalPeer:
    """One harness socket speaking SAL to the target, with fences and counters."""

    def __init__(self, ctx: Context, *, source: str | None = None) -> None:
        ctx.needs("sal")
        self.ctx = ctx
        self.dht: DhtPeer = ctx.client(source)
        self.wire = self.dht.wire
        self._backlog: collections.deque[Heard] = collections.deque()
        self._fence_ids: set[bytes] = set()
        #: When the last fence's PONG arrived: what came before it has ``at`` <= this.
        self.fenced_at = 0.0

    # --- sending and hearing -----------------------------------------------------------

    def send(self, packet: SalPacket | bytes, to: Address | None = None) -> None:
        self.wire.send(packet if isinstance(packet, bytes) else encode_sal(packet), to)

    def hear(self, timeout: float | None = None) -> Heard | None:
        """The next datagram from the target (not a fence's PONG) within ``timeout``."""
        if self._backlog:
            return self._backlog.popleft()
        deadline = time.monotonic() + (self.ctx.timeout if timeout is None else timeout)
        while (left := deadline - time.monotonic()) > 0:
            got = self.wire.receive(left)
            if got is None:
                return None
            heard = self._heard(*got)
            if heard is not None:
                return heard
        return None

    def wait_for(
        self, matches: Callable[[Heard], bool], timeout: float | None = None
    ) -> tuple[Heard | None, list[Heard]]:
        """The first packet that ``matches`` within ``timeout``, and those heard before it."""
        deadline = time.monotonic() + (self.ctx.timeout if timeout is None else timeout)
        others: list[Heard] = []
        while (left := deadline - time.monotonic()) > 0:
            heard = self.hear(left)
            if heard is None:
                break
            if matches(heard):
                return heard, others
            others.append(heard)
        return None, others

    def collect(self, duration: float) -> list[Heard]:
        """Everything heard during ``duration`` seconds."""
        heard: list[Heard] = []
        deadline = time.monotonic() + duration
        while (left := deadline - time.monotonic()) > 0:
            got = self.hear(left)
            if got is None:
                break
            heard.append(got)
        return heard

    def fence(self) -> list[Heard]:
        """Send a PING and return what arrives before its PONG (plus a short grace).

        The target processes one socket's datagrams in order, so once the
        PONG is back everything it sent in answer to earlier packets has
        arrived, and an empty list means it answered nothing.
        """
        message = self.dht.message(Ping())
        self._fence_ids.add(message.transaction_id)
        ping = SalPacket(
            0,
            0,
            DATAGRAM,
            destination_service=SERVALDHT_SERVICE_ID,
            payload=self.dht.encode(message),
        )
        self.send(ping)
        heard = list(self._backlog)
        self._backlog.clear()
        deadline = time.monotonic() + self.ctx.timeout
        while message.transaction_id in self._fence_ids:
            left = deadline - time.monotonic()
            got = self.wire.receive(left) if left > 0 else None
            if got is None:
                raise HarnessError("the target did not answer the fence PING")
            one = self._heard(*got)
            if one is not None:
                heard.append(one)
        heard.extend(self.collect(GRACE))
        return heard

    def counters(self) -> collections.Counter[str]:
        """The target's counters (feature "counters"), read from this socket."""
        return read_counters(self.ctx, self.dht)

    def dropped(
        self,
        requirement: str,
        packet: SalPacket | bytes,
        code: ErrorCode,
        detail: str,
        *,
        to: Address | None = None,
        answered: Callable[[Heard], bool] | None = None,
        recv3: bool = True,
        log: list[Heard] | None = None,
    ) -> bool:
        """Judge that the target drops ``packet``, counted under ``code`` (:func:`judge_drop`).

        The packet must draw no answer, or only packets for which
        ``answered`` is true (an RST or a challenge ACK the draft asks for,
        a retransmission that was due anyway); without ``answered`` the
        silence is judged under SAL-RECV-3 too, unless ``recv3`` is false.
        Every packet heard is added to ``log``.
        """
        before = self.counters()
        self.send(packet, to)
        heard = self.fence()
        if log is not None:
            log += heard
        return judge_drop(
            self.ctx,
            requirement,
            code,
            detail,
            answers=[h.describe() for h in heard if answered is None or not answered(h)],
            change=self.counters() - before,
            others=answered is not None,
            recv3=recv3 and answered is None,
        )

    def absent(self, flows: Sequence[HarnessFlow]) -> list[tuple[bool, list[Heard]]]:
        """For each flow, whether the target has no such flow (its probe draws an RST).

        Each flow's :meth:`HarnessFlow.probe_packet` goes from this socket;
        the packets of the flow heard are returned with the answer.  RST
        answers are rate-limited (SAL-RST-3), so the flows whose probe drew
        none are asked once more after a second.
        """
        heard = self._probe(flows)
        silent = [f for f in flows if not any(f.is_reset(h) for h in heard)]
        if silent:
            time.sleep(RST_RATE_WINDOW)
            heard += self._probe(silent)
        return [(any(f.is_reset(h) for h in heard), [h for h in heard if f.ours(h)]) for f in flows]

    def present(self, flows: Sequence[HarnessFlow]) -> list[tuple[bool, list[Heard]]]:
        """For each flow, whether the target still has it: its probe draws no RST."""
        heard = self._probe(flows)
        return [
            (not any(f.is_reset(h) for h in heard), [h for h in heard if f.ours(h)]) for f in flows
        ]

    def _probe(self, flows: Iterable[HarnessFlow]) -> list[Heard]:
        for flow in flows:
            self.send(flow.probe_packet(), flow.destination)
        return self.fence()

    def _heard(self, data: bytes, source: Address) -> Heard | None:
        try:
            packet = decode_sal(data)
        except RemoteProtocolError:
            return Heard(data, source, time.monotonic(), None)
        if packet.destination_service == SERVALDHT_SERVICE_ID and packet.control is None:
            message = _dht(packet.payload)
            if message is not None and message.transaction_id in self._fence_ids:
                self._fence_ids.discard(message.transaction_id)
                self.fenced_at = time.monotonic()
                self.dht.tokens[source] = message.token
                return None
        return Heard(data, source, time.monotonic(), packet)

    # --- flows ------------------------------------------------------------------------

    def flow(
        self,
        service_id: bytes = ECHO_STREAM_SERVICE_ID,
        transport: TransportProtocol = STREAM,
    ) -> HarnessFlow:
        """A new client flow to ``service_id`` (not yet opened)."""
        return HarnessFlow(self, service_id, transport)

    def connect(
        self,
        service_id: bytes = ECHO_STREAM_SERVICE_ID,
        transport: TransportProtocol = STREAM,
    ) -> HarnessFlow:
        """A flow through the whole handshake; a harness error if the target does not answer."""
        flow = self.flow(service_id, transport)
        if flow.open() is None:
            raise HarnessError(f"no SYN-ACK from the target's test service {service_id.hex()[:16]}")
        return flow

    def initiate(
        self,
        service_id: bytes,
        transport: TransportProtocol,
        *,
        reply_to: bytes,
        mode: int = 0,
        data: bytes = b"",
    ) -> None:
        """Ask the initiator service to open a flow to ``service_id`` (Appendix C.4).

        In mode 0 the target routes ``service_id`` to this socket, so its SYN
        comes here; the outcome is answered to the serviceID ``reply_to``.
        """
        payload = service_id + bytes([int(transport), mode]) + data
        self.send(
            SalPacket(
                0,
                0,
                DATAGRAM,
                destination_service=INITIATOR_SERVICE_ID,
                source_service=reply_to,
                payload=payload,
            )
        )

    def close(self) -> None:
        self.dht.close()


def _dht(payload: bytes) -> DhtMessage | None:
    try:
        return decode_dht(payload)
    except RemoteProtocolError:
        return None


class HarnessFlow:
    """The harness's half of one flow: identifiers, nonces and sequence numbers.

    As a client (the usual case) it is made by :meth:`SalPeer.flow`; as a
    server it is made by :meth:`accept` from a SYN the target sent.
    """

    def __init__(self, peer: SalPeer, service_id: bytes, transport: TransportProtocol) -> None:
        rng = peer.ctx.rng
        self.peer = peer
        self.service_id = service_id
        self.transport = transport
        self.flow_id = rng.randrange(1, 1 << 32)  # own flowID (Fc)
        self.nonce = rng.randbytes(8)  # own nonce (Nc)
        self.iss = rng.randrange(1 << 32)  # own ISS
        self.snd_nxt = self.iss
        self.rcv_nxt = 0
        self.peer_flow_id = 0  # Fs once the SYN-ACK arrived
        self.peer_nonce = b""
        self.peer_iss = 0
        self.syn_ack: Heard | None = None
        # Stream state: what the harness sent and received.
        self.stream_nxt = self.iss  # next stream sequence number to send
        self.stream_rcv = 0  # next stream octet expected
        self.received = bytearray()
        self.peer_fin = False
        self.destination: Address | None = None  # where packets go (the target by default)

    # --- building packets ----------------------------------------------------------------

    def control(
        self,
        flags: int,
        *,
        verno: int | None = None,
        ackno: int | None = None,
        nonce: bytes | None = None,
        protocol: int | None = None,
        source_flow: int | None = None,
        destination_flow: int | None = None,
        destination_service: bytes | None = None,
        source_service: bytes | None = None,
        payload: bytes = b"",
    ) -> SalPacket:
        """A control packet of this flow; unspecified fields are the flow's current ones."""
        return SalPacket(
            self.flow_id if source_flow is None else source_flow,
            self.peer_flow_id if destination_flow is None else destination_flow,
            self.transport if protocol is None else protocol,
            control=Control(
                ControlFlags(flags),
                self.snd_nxt if verno is None else seq(verno),
                self.rcv_nxt if ackno is None else seq(ackno),
                self.nonce if nonce is None else nonce,
            ),
            destination_service=destination_service,
            source_service=source_service,
            payload=payload,
        )

    def syn(self, **overrides: object) -> SalPacket:
        """The SYN of Section 5.8.1 (verno ISS, ackno 0, DESTINATION serviceID)."""
        fields: dict[str, object] = {
            "verno": self.iss,
            "ackno": 0,
            "destination_flow": 0,
            "destination_service": self.service_id,
        }
        fields.update(overrides)
        return self.control(SYN, **fields)  # type: ignore[arg-type]

    def data(
        self,
        payload: bytes = b"",
        *,
        protocol: int | None = None,
        source_flow: int | None = None,
        destination_flow: int | None = None,
    ) -> SalPacket:
        """A data packet (no extension) carrying ``payload`` as is."""
        return SalPacket(
            self.flow_id if source_flow is None else source_flow,
            self.peer_flow_id if destination_flow is None else destination_flow,
            self.transport if protocol is None else protocol,
            payload=payload,
        )

    def segment(
        self,
        data: bytes = b"",
        *,
        sequence: int | None = None,
        acknowledgment: int | None = None,
        flags: int = StreamFlags.ACK,
        window: int = WINDOW,
    ) -> SalPacket:
        """A STREAM data packet: one segment at the flow's stream position by default."""
        segment = StreamSegment(
            self.stream_nxt if sequence is None else seq(sequence),
            self.stream_rcv if acknowledgment is None else seq(acknowledgment),
            StreamFlags(flags),
            window,
            data,
        )
        return self.data(encode_stream(segment))

    # --- acting -------------------------------------------------------------------------

    def send(self, packet: SalPacket | bytes) -> None:
        self.peer.send(packet, self.destination)

    def send_control(self, flags: int, **fields: object) -> SalPacket:
        """Send a control packet; a sequence-consuming one (not a pure ACK) advances snd.nxt."""
        packet = self.control(flags, **fields)  # type: ignore[arg-type]
        self.send(packet)
        if int(flags) & (SYN | RSYN | FIN) and "verno" not in fields:
            self.snd_nxt = seq(self.snd_nxt + 1)
        return packet

    def open(self, *, ack: bool = True, timeout: float | None = None) -> Heard | None:
        """Send the SYN and wait for the SYN-ACK; answer it with the ACK when ``ack``."""
        self.send(self.syn())
        self.snd_nxt = seq(self.iss + 1)
        reply, _ = self.peer.wait_for(self.is_syn_ack, timeout)
        if reply is None:
            return None
        self.learn_syn_ack(reply)
        if ack:
            self.send_control(ACK)
        return reply

    def is_syn_ack(self, heard: Heard) -> bool:
        packet = heard.packet
        return (
            packet is not None
            and heard.is_control(SYN | ACK)
            and packet.destination_flow_id == self.flow_id
        )

    def learn_syn_ack(self, heard: Heard) -> None:
        packet, control = heard.packet, heard.control
        assert packet is not None and control is not None
        self.syn_ack = heard
        self.peer_flow_id = packet.source_flow_id
        self.peer_nonce = control.nonce
        self.peer_iss = control.verno
        self.rcv_nxt = seq(control.verno + 1)
        self.stream_rcv = control.verno

    @classmethod
    def accept(cls, peer: SalPeer, syn: Heard) -> HarnessFlow:
        """The harness as the server of a SYN the target sent (initiator service)."""
        packet, control = syn.packet, syn.control
        assert packet is not None and control is not None and packet.destination_service
        flow = cls(peer, packet.destination_service, TransportProtocol(packet.protocol))
        flow.peer_flow_id = packet.source_flow_id
        flow.peer_nonce = control.nonce
        flow.peer_iss = control.verno
        flow.rcv_nxt = seq(control.verno + 1)
        flow.stream_rcv = control.verno
        flow.destination = syn.source
        return flow

    def syn_ack_packet(self, **overrides: object) -> SalPacket:
        """The SYN-ACK of Section 5.8.2 for a flow made by :meth:`accept`."""
        fields: dict[str, object] = {"verno": self.iss, "destination_service": self.service_id}
        fields.update(overrides)
        return self.control(SYN | ACK, **fields)  # type: ignore[arg-type]

    def send_syn_ack(self) -> SalPacket:
        """Send the SYN-ACK of a flow made by :meth:`accept`; snd.nxt is then ISS + 1."""
        packet = self.syn_ack_packet()
        self.send(packet)
        self.snd_nxt = seq(self.iss + 1)
        return packet

    def ours(self, heard: Heard) -> bool:
        """A packet of this flow (addressed to its flowID)."""
        return heard.packet is not None and heard.packet.destination_flow_id == self.flow_id

    def wait_control(
        self, flags: int, timeout: float | None = None
    ) -> tuple[Heard | None, list[Heard]]:
        """The next control packet of this flow with exactly ``flags``."""
        return self.peer.wait_for(lambda h: self.ours(h) and h.is_control(flags), timeout)

    def acknowledge(self, heard: Heard) -> None:
        """Take a sequence-consuming packet the target sent: rcv.nxt past it, then ACK."""
        control = heard.control
        assert control is not None
        self.rcv_nxt = seq(control.verno + 1)
        self.send_control(ACK)

    def is_reset(self, heard: Heard) -> bool:
        """An RST addressed to this flow."""
        return self.ours(heard) and heard.flags is not None and bool(heard.flags & RST)

    def probe_packet(self) -> SalPacket:
        """An ACK that changes nothing, to ask whether the target still has the flow.

        Its ackno is the target's ISS, which acknowledges nothing new in any
        state (not even the SYN-ACK of a flow in RESPOND), so a flow that
        exists stays silent (an old acknowledgment, or in RESPOND an ACK
        that is not the handshake's), while a target without the flow
        answers with an RST (SAL-RST-1).
        """
        return self.control(ACK, ackno=self.peer_iss)

    def end_stream(self, timeout: float | None = None) -> list[Heard]:
        """Close the harness's stream and wait for the target's (Section 5.14.2).

        Sends a FIN segment, takes what the target sends until its FIN
        segment, and acknowledges it; ``peer_fin`` says whether it came.
        Returns every packet heard, of any flow.
        """
        self.send_fin_segment()
        heard_all: list[Heard] = []
        deadline = time.monotonic() + (self.peer.ctx.timeout if timeout is None else timeout)
        while not self.peer_fin and (left := deadline - time.monotonic()) > 0:
            heard = self.peer.hear(left)
            if heard is None:
                break
            heard_all.append(heard)
            self.take(heard)
        if self.peer_fin:
            self.send(self.segment())
        return heard_all

    # --- the stream ------------------------------------------------------------------------

    def send_fin_segment(self) -> None:
        """End the harness's stream: a FIN segment, which takes one sequence number."""
        self.send(self.segment(flags=StreamFlags.ACK | StreamFlags.FIN))
        self.stream_nxt = seq(self.stream_nxt + 1)

    def write(self, data: bytes, *, chunk: int = 1024) -> None:
        """Send ``data`` as in-order segments (within the default window)."""
        for start in range(0, len(data), chunk):
            piece = data[start : start + chunk]
            self.send(self.segment(piece))
            self.stream_nxt = seq(self.stream_nxt + len(piece))

    def take(self, heard: Heard) -> StreamSegment | None:
        """Account for a segment the target sent: in-order data is appended to ``received``."""
        segment = heard.segment
        if segment is None or not self.ours(heard):
            return None
        if segment.sequence == self.stream_rcv and segment.data:
            self.received += segment.data
            self.stream_rcv = seq(self.stream_rcv + len(segment.data))
        if segment.flags & StreamFlags.FIN and seq(segment.sequence + len(segment.data)) == (
            self.stream_rcv
        ):
            self.peer_fin = True
            self.stream_rcv = seq(self.stream_rcv + 1)
        return segment

    def read(self, count: int, timeout: float | None = None) -> list[Heard]:
        """Receive until ``count`` octets arrived in order, acknowledging each segment.

        Returns every packet heard; stops early on silence for ``timeout``.
        """
        heard_all: list[Heard] = []
        while len(self.received) < count:
            heard = self.peer.hear(timeout)
            if heard is None:
                break
            heard_all.append(heard)
            if self.take(heard) is not None:
                self.send(self.segment())
        return heard_all


def segments_of(heard: Iterable[Heard], flow: HarnessFlow) -> list[StreamSegment]:
    """The stream segments of ``flow`` among ``heard``."""
    return [s for h in heard if flow.ours(h) and (s := h.segment) is not None]


def messages_of(heard: Iterable[Heard], flow: HarnessFlow) -> list[bytes]:
    """The payloads of the data packets of ``flow`` among ``heard`` (its messages)."""
    return [
        h.packet.payload
        for h in heard
        if flow.ours(h) and h.packet is not None and h.packet.control is None
    ]
