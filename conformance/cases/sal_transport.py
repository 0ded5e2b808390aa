"""Section 5.14: the transports, as the target's test services show them.

The harness is the client of the echo and hold services (Appendix C.4), and
the server of the initiator's flows.  The echo stream turns the target's
receiver into something the wire shows: what the target delivered to its
application comes back as the target's own stream, so order, duplicates and
the end of the stream are judged by comparing the echo with what was sent.
The hold stream never reads, so its acknowledgments and window show the
receiver alone, and its window can be filled to the right edge.

The harness paces itself by the target's acknowledgments where it sends a
lot, and judges timers with generous tolerances, since the machine that
runs the target may be loaded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from conformance.cases import case
from conformance.context import Context
from conformance.model import HarnessError
from conformance.salpeer import (
    ACK,
    ECHO_DATAGRAM_SERVICE_ID,
    FIN,
    HOLD_STREAM_SERVICE_ID,
    RST,
    SYN,
    WINDOW,
    HarnessFlow,
    Heard,
    SalPeer,
    describe_all,
    messages_of,
    segments_of,
    seq,
    show,
)
from ref.wire import ErrorCode, StreamFlags, StreamSegment, TransportProtocol

ORDER = 40

UNOBSERVABLE: dict[str, str] = {}

#: Slack on every timer judged, for a target on a loaded machine.
TOLERANCE = 0.15
#: The longest delay of an acknowledgment (SAL-STREAM-15).
ACK_DELAY_LIMIT = 0.2
#: The floor of the RTO (Section 5.9.3), which the stream's estimator shares (SAL-STREAM-9).
RTO_MIN = 0.2
#: The largest segment the draft's default path allows (SAL-STREAM-6): a full-sized segment.
FULL_SEGMENT = 1208
#: Octets per unit of the Window field.
UNIT = 1024
#: What a sender may send before it hears from the receiver (SAL-STREAM-4, SAL-STREAM-5).
DEFAULT_WINDOW_OCTETS = 256 * UNIT
#: Largest right edge (octets from ISS_c) the harness fills to judge SAL-STREAM-13.
FILL_LIMIT = 4 << 20
#: Octets the harness keeps unacknowledged while it fills the hold stream.
IN_FLIGHT = 64 * UNIT
#: Silence after which the harness sends again from the target's acknowledgment.
STALL = 0.3
#: How many silences in a row end a fill.
MAX_STALLS = 5
#: How long to wait for two window probes (an RTO of 1 s would need 3 s).
PROBE_WAIT = 3.5
#: How long to wait for a retransmission (an RTO of 1 s, doubled, and slack).
RETRANSMIT_WAIT = 2.5

_ACK_FIN = StreamFlags.ACK | StreamFlags.FIN
STREAM = TransportProtocol.STREAM


# --- helpers ---------------------------------------------------------------------------------


def offset(value: int, base: int) -> int:
    """How far sequence number ``value`` lies after ``base`` (modulo 2**32)."""
    return seq(value - base)


def carries(segment: StreamSegment) -> bool:
    """A segment that consumes sequence numbers: data or a FIN."""
    return bool(segment.data) or bool(segment.flags & StreamFlags.FIN)


def segment_of(flow: HarnessFlow, heard: Heard) -> StreamSegment | None:
    """The stream segment of ``heard`` if it is a data packet of ``flow``."""
    return heard.segment if flow.ours(heard) else None


def data_packets(flow: HarnessFlow, heard: Iterable[Heard]) -> list[Heard]:
    """The data packets (no CONTROL) of ``flow`` among ``heard``."""
    return [h for h in heard if flow.ours(h) and h.packet is not None and h.control is None]


def controls(flow: HarnessFlow, heard: Iterable[Heard]) -> list[Heard]:
    """The control packets of ``flow`` among ``heard``."""
    return [h for h in heard if flow.ours(h) and h.control is not None]


def pump(
    flow: HarnessFlow,
    done: Callable[[], bool],
    timeout: float,
    *,
    window: int = WINDOW,
) -> list[Heard]:
    """Hear the target until ``done()`` or a silence of ``timeout``.

    Every segment of ``flow`` that carries data or a FIN is taken (in-order
    data lands in ``flow.received``) and acknowledged at once, advertising
    ``window``.  Returns every packet heard.
    """
    heard_all: list[Heard] = []
    while not done():
        heard = flow.peer.hear(timeout)
        if heard is None:
            break
        heard_all.append(heard)
        segment = flow.take(heard)
        if segment is not None and carries(segment):
            flow.send(flow.segment(window=window))
    return heard_all


def echo(flow: HarnessFlow, data: bytes, timeout: float) -> None:
    """Write ``data`` and read its echo, acknowledging; a harness error if it does not come."""
    want = len(flow.received) + len(data)
    flow.write(data)
    pump(flow, lambda: len(flow.received) >= want, timeout)
    if bytes(flow.received[want - len(data) : want]) != data:
        raise HarnessError(f"the echo service did not echo {len(data)} octets")


def warm_up(flow: HarnessFlow, ctx: Context) -> None:
    """An echoed exchange, so that the target's stream has RTT samples (RTO near 0.2 s)."""
    for _ in range(2):
        echo(flow, ctx.rng.randbytes(200), ctx.timeout)


def reset(flow: HarnessFlow) -> None:
    """Leave nothing behind: an RST with the flow's own nonce (Section 5.11.3)."""
    flow.send_control(RST | ACK)


def copies_until_reset(
    peer: SalPeer, flow: HarnessFlow, is_copy: Callable[[Heard], bool], timeout: float
) -> tuple[int, Heard | None]:
    """How many packets ``is_copy`` heard at ``peer`` before the RST of ``flow``, and that RST.

    For a flow that must fail at the retransmission limit: the packet never
    acknowledged comes 9 times, then the RST (within ``timeout``).
    """
    copies = 0
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        heard = peer.hear(left)
        if heard is None:
            break
        if is_copy(heard):
            copies += 1
        elif flow.is_reset(heard):
            return copies, heard
    return copies, None


class Octets:
    """The target's stream as heard: octets by offset from its ISS, and where its FIN lies."""

    def __init__(self, iss: int) -> None:
        self.iss = iss
        self.octets: dict[int, int] = {}
        self.conflicts = 0  # octets heard twice with different values
        self.fins: set[int] = set()

    def add(self, segment: StreamSegment) -> None:
        start = offset(segment.sequence, self.iss)
        for index, octet in enumerate(segment.data):
            if self.octets.setdefault(start + index, octet) != octet:
                self.conflicts += 1
        if segment.flags & StreamFlags.FIN:
            self.fins.add(start + len(segment.data))

    def prefix(self) -> bytes:
        """The octets heard from offset 0 up to the first gap."""
        out = bytearray()
        while (octet := self.octets.get(len(out))) is not None:
            out.append(octet)
        return bytes(out)

    def beyond(self, end: int) -> int:
        """How many octets were heard at offsets ``end`` and later."""
        return sum(1 for key in self.octets if key >= end)


# --- Section 5.14: data in the handshake states ------------------------------------------------


def stream_of(ctx: Context, flow: HarnessFlow, heard: Iterable[Heard], *, client: bool) -> Octets:
    """The target's stream on ``flow`` as heard, counted from its first data octet.

    That octet must carry the target's ISS (SAL-STREAM-2): ISS_c as the
    client (its SYN's verno), ISS_s as the server (its SYN-ACK's verno).
    Counting from it judges a wrong ISS once, here, and not in every offset.
    """
    segments = segments_of(heard, flow)
    carrying = [s for s in segments if s.data]
    iss = "ISS_c" if client else "ISS_s"
    ctx.require(
        "SAL-STREAM-2",
        bool(carrying) and carrying[0].sequence == flow.peer_iss,
        f"the {'client' if client else 'server'}'s first data octet has the sequence number "
        f"{iss} (its {'SYN' if client else 'SYN-ACK'}'s verno)",
        expected=f"sequence {flow.peer_iss}",
        actual=(
            f"sequence {carrying[0].sequence} ({offset(carrying[0].sequence, flow.peer_iss)} "
            f"after {iss})"
            if carrying
            else "no data"
        ),
    )
    octets = Octets(carrying[0].sequence if carrying else flow.peer_iss)
    for segment in segments:
        octets.add(segment)
    return octets


@case(
    "sal.transport",
    "5.14",
    "SAL-FLOW-4",
    "SAL-FLOW-5",
    needs=("sal",),
    title="Stream data sent to a flow in RESPOND is discarded; nothing is sent before CONNECTED",
)
def data_in_respond_is_discarded(ctx: Context) -> None:
    """The harness sends stream data between the SYN-ACK and its ACK.

    The target's flow is in RESPOND: it must neither pass the data to the
    echo service (SAL-FLOW-4), which would send it back once the handshake
    completes, nor send any data packet before CONNECTED (SAL-FLOW-5).  After
    the ACK the harness sends other octets at the same sequence numbers: the
    echo must be those, not the early ones.
    """
    peer = SalPeer(ctx)
    flow = peer.flow()
    if flow.open(ack=False) is None:
        raise HarnessError("no SYN-ACK from the echo stream service")
    early, late = b"EARLY-DATA", b"LATE-DATA!"
    flow.send(flow.segment(early))  # at ISS_c, as the first octets of the stream
    heard = peer.fence()
    sent = data_packets(flow, heard)
    ctx.require(
        "SAL-FLOW-5",
        not sent,
        "a flow in RESPOND that received stream data sends no data packet",
        expected="no data packet before the handshake's ACK",
        actual=describe_all(sent) if sent else "none",
    )
    flow.send_control(ACK)
    flow.send(flow.segment(late))
    flow.stream_nxt = seq(flow.stream_nxt + len(late))
    pump(flow, lambda: len(flow.received) >= len(late), ctx.timeout)
    got = bytes(flow.received)
    ctx.require(
        "SAL-FLOW-4",
        got == late,
        f"{len(early)} octets sent in RESPOND at ISS_c are discarded; the {len(late)} sent at the "
        "same sequence numbers after the ACK are the ones echoed",
        expected=repr(late),
        actual=repr(got) if got else "no echo",
    )
    reset(flow)


@case(
    "sal.transport",
    "5.14",
    "SAL-FLOW-4",
    "SAL-FLOW-5",
    "SAL-STREAM-2",
    needs=("sal",),
    title="The target as client: no data before CONNECTED, data in REQUEST discarded",
)
def data_in_request_is_discarded(ctx: Context) -> None:
    """The initiator (Appendix C.4) connects to the harness and has data to send at once.

    Before the harness answers the SYN, the target's flow is in REQUEST: it
    must not send its data (SAL-FLOW-5), and stream data the harness sends
    to it must be discarded (SAL-FLOW-4).  After the SYN-ACK, its first data
    octet has sequence ISS_c, its SYN's verno (SAL-STREAM-2), and the echo
    that follows is of what the harness sent after the handshake.
    """
    peer = SalPeer(ctx)
    service_id = ctx.rng.randbytes(32)
    first, early, late = b"HELLO", b"EARLY", b"LATE!"
    peer.initiate(service_id, STREAM, reply_to=ctx.rng.randbytes(32), data=first)
    syn, _ = peer.wait_for(
        lambda h: (
            h.is_control(SYN)
            and h.packet is not None
            and h.packet.destination_service == service_id
        )
    )
    if syn is None:
        raise HarnessError("the initiator service sent no SYN")
    flow = HarnessFlow.accept(peer, syn)
    flow.send(flow.segment(early))
    heard = peer.fence()
    sent = data_packets(flow, heard)
    ctx.require(
        "SAL-FLOW-5",
        not sent,
        f"a flow in REQUEST with {len(first)} octets to send sends no data packet before the "
        "SYN-ACK",
        expected="no data packet",
        actual=describe_all(sent) if sent else "none",
    )
    flow.send_syn_ack()
    flow.send(flow.segment(late))
    flow.stream_nxt = seq(flow.stream_nxt + len(late))
    want = len(first) + len(late)
    heard = pump(flow, lambda: len(flow.received) >= want, ctx.timeout)
    got = stream_of(ctx, flow, heard, client=True).prefix()
    ctx.require(
        "SAL-FLOW-4",
        got == first + late,
        f"the {len(early)} octets sent in REQUEST are discarded: the initiator sends its data, "
        "then echoes the octets sent after the handshake",
        expected=repr(first + late),
        actual=repr(got) if got else "no data",
    )
    reset(flow)


# --- Section 5.14.1: datagrams -----------------------------------------------------------------


@case(
    "sal.transport",
    "5.14.1",
    "SAL-DGRAM-9",
    needs=("sal",),
    title="A datagram flow delivers each message whole, alone and unacknowledged",
)
def datagram_messages_one_by_one(ctx: Context) -> None:
    """Messages of several sizes, one empty, sent back to back on an echo datagram flow.

    Each must come back as one packet with the same payload: nothing split,
    merged or lost on loopback, and no packet other than the echoes, since
    the datagram transport acknowledges nothing.
    """
    peer = SalPeer(ctx)
    flow = peer.connect(ECHO_DATAGRAM_SERVICE_ID, TransportProtocol.DATAGRAM)
    rng = ctx.rng
    messages = [b"", b"a", rng.randbytes(1000), b"bc", rng.randbytes(37), bytes(12), b"a"]
    for message in messages:
        flow.send(flow.data(message))
    heard: list[Heard] = []
    while len(data_packets(flow, heard)) < len(messages):
        one = peer.hear()
        if one is None:
            break
        heard.append(one)
    heard += peer.fence()
    echoes = messages_of(heard, flow)
    others = controls(flow, heard)
    ctx.require(
        "SAL-DGRAM-9",
        sorted(echoes) == sorted(messages) and not others,
        f"{len(messages)} messages (sizes {[len(m) for m in messages]}) come back as as many "
        "packets with the same payloads, and nothing else",
        expected=f"{len(messages)} echoes, sizes {sorted(len(m) for m in messages)}",
        actual=f"{len(echoes)} echoes, sizes {sorted(len(e) for e in echoes)}"
        + (f"; also {describe_all(others)}" if others else ""),
    )
    reset(flow)


# --- Section 5.14.2: streams ------------------------------------------------------------------


@case(
    "sal.transport",
    "5.14.2",
    "SAL-STREAM-1",
    needs=("sal", "counters"),
    title="A STREAM data packet shorter than the segment header is dropped, counted MALFORMED",
)
def short_stream_payload(ctx: Context) -> None:
    peer = SalPeer(ctx)
    flow = peer.connect()
    for size in (11, 1):
        peer.dropped(
            "SAL-STREAM-1",
            flow.data(ctx.rng.randbytes(size)),
            ErrorCode.MALFORMED,
            f"a STREAM data packet with a {size}-octet payload on an established flow",
        )
    reset(flow)


@case(
    "sal.transport",
    "5.14.2",
    "SAL-STREAM-2",
    "SAL-STREAM-3",
    "SAL-STREAM-19",
    needs=("sal",),
    title="The echo stream starts at ISS_s, acknowledges in every segment, and ends with a FIN",
)
def echo_stream(ctx: Context) -> None:
    """3,000 octets and a FIN to the echo stream service.

    The echo's first octet must carry ISS_s (SAL-STREAM-2).  Every segment
    must carry the ACK flag and an Acknowledgment no less than the echoed
    octets and no more than what was sent; the FIN segment, sent after the
    target received the harness's FIN, acknowledges everything and the FIN
    (SAL-STREAM-3).  The echo service closes only when its application
    learned the end of the stream: the FIN after the echo shows it
    (SAL-STREAM-19).
    """
    peer = SalPeer(ctx)
    flow = peer.connect()
    data = ctx.rng.randbytes(3000)
    flow.write(data)
    flow.send_fin_segment()
    heard = pump(flow, lambda: flow.peer_fin, ctx.timeout)
    segments = segments_of(heard, flow)
    octets = stream_of(ctx, flow, heard, client=False)
    base = octets.iss
    total = len(data) + 1
    wrong = []
    for segment in segments:
        acked = offset(segment.acknowledgment, flow.iss)
        end = offset(segment.sequence, base) + len(segment.data)
        fin = bool(segment.flags & StreamFlags.FIN)
        if (
            not segment.flags & StreamFlags.ACK
            or not end <= acked <= total
            or (fin and acked != total)
        ):
            wrong.append(
                f"seq +{offset(segment.sequence, base)} flags "
                f"{int(segment.flags):#04x} ack +{acked}"
            )
    ctx.require(
        "SAL-STREAM-3",
        bool(segments) and not wrong,
        f"every segment of the echo of {len(data)} octets and a FIN has the ACK flag and "
        "acknowledges at least what it echoes, and the FIN segment everything",
        expected=f"ACK flag; ack between the echoed octets and +{total}; +{total} with the FIN",
        actual="; ".join(wrong[:5]) or ("no segment" if not segments else "as expected"),
    )
    ctx.require(
        "SAL-STREAM-19",
        octets.fins == {len(data)} and octets.prefix() == data,
        "the echo service closes its stream after echoing everything: its FIN follows the "
        f"{len(data)} octets",
        expected=f"the {len(data)} octets, then the FIN at +{len(data)}",
        actual=f"{len(octets.prefix())} octets in order; FIN at "
        + (", ".join(f"+{f}" for f in sorted(octets.fins)) or "none"),
    )
    reset(flow)


@case(
    "sal.transport",
    "5.14.2",
    "SAL-STREAM-4",
    needs=("sal",),
    title="The target sends no octet beyond the harness's advertised window",
)
def respects_advertised_window(ctx: Context) -> None:
    """The harness advertises a window of 1 unit (1,024 octets) and sends 4,096 octets.

    The echo must come in steps.  The harness moves its edge in lockstep:
    it advertises an edge, fences, and only then takes the echo and
    advertises the next edge, so everything heard in a round was sent by a
    target that knew at most the edge of that round, and no octet may lie
    at or beyond it.
    """
    peer = SalPeer(ctx)
    flow = peer.connect()
    data = ctx.rng.randbytes(4096)
    for start in range(0, len(data), UNIT):
        flow.send(flow.segment(data[start : start + UNIT], window=1))
        flow.stream_nxt = seq(flow.stream_nxt + UNIT)
    beyond: list[str] = []
    segments = 0
    quiet = 0
    while len(flow.received) < len(data) and quiet < 3:
        edge = offset(flow.stream_rcv, flow.peer_iss) + UNIT  # the edge last advertised
        heard = peer.fence()
        if not data_packets(flow, heard):
            heard += peer.collect(STALL)  # a target that waits for a timer
        taken = False
        for one in heard:
            segment = segment_of(flow, one)
            if segment is None:
                continue
            segments += 1
            end = offset(segment.sequence, flow.peer_iss) + len(segment.data)
            if segment.data and end > edge:
                beyond.append(f"octets up to +{end} with the edge at +{edge}")
            if flow.take(one) is not None and segment.data:
                taken = True
        quiet = 0 if taken else quiet + 1
        flow.send(flow.segment(window=1))
    if bytes(flow.received) != data:
        raise HarnessError(
            f"the echo stalled at {len(flow.received)} of {len(data)} octets with a 1-unit window"
        )
    ctx.require(
        "SAL-STREAM-4",
        not beyond,
        f"the echo of {len(data)} octets to a harness advertising 1 unit stays within "
        f"Acknowledgment + 1024 ({segments} segments)",
        expected="no octet at or beyond the advertised edge",
        actual="; ".join(beyond[:5]) or "none beyond",
    )
    reset(flow)


class Filler:
    """The harness sending to the hold stream: the target's acknowledgments and edges."""

    def __init__(self, flow: HarnessFlow) -> None:
        self.flow = flow
        self.acked = 0  # highest Acknowledgment heard, octets from ISS_c
        self.latest_edge = DEFAULT_WINDOW_OCTETS  # right edge of the last segment heard
        self.furthest_edge = 0  # the furthest right edge ever advertised
        self.sent = 0  # one past the furthest octet sent

    def send(self, start: int, end: int) -> None:
        """Send the octets from ``start`` to ``end`` in 1024-octet segments."""
        flow = self.flow
        for at in range(start, end, UNIT):
            size = min(UNIT, end - at)
            flow.send(flow.segment(bytes(size), sequence=flow.iss + at))
        self.sent = max(self.sent, end)

    def note(self, heard: Heard) -> None:
        segment = segment_of(self.flow, heard)
        if segment is None or not segment.flags & StreamFlags.ACK:
            return
        acked = offset(segment.acknowledgment, self.flow.iss)
        if acked > 1 << 31:  # before ISS_c: nothing new
            return
        self.acked = max(self.acked, acked)
        self.latest_edge = acked + segment.window * UNIT
        self.furthest_edge = max(self.furthest_edge, self.latest_edge)

    def burst(self, end: int) -> None:
        """Send up to ``end`` without waiting for anything, paced so that little is lost."""
        for start in range(self.sent, end, 16 * UNIT):
            self.send(start, min(end, start + 16 * UNIT))
            time.sleep(0.002)

    def fill(self, end: int) -> None:
        """Send until the target has acknowledged ``end``, again from its ACK after a silence."""
        peer = self.flow.peer
        nxt = self.acked
        stalls = 0
        while self.acked < end and stalls < MAX_STALLS:
            if nxt < min(end, self.acked + IN_FLIGHT):
                stop = min(end, self.acked + IN_FLIGHT)
                self.send(nxt, stop)
                nxt = stop
            heard = peer.hear(STALL)
            if heard is None:
                stalls += 1
                nxt = self.acked
                continue
            stalls = 0
            self.note(heard)
            nxt = max(nxt, self.acked)

    def settle(self) -> None:
        """Take every acknowledgment that arrives until a fence."""
        for heard in self.flow.peer.fence():
            self.note(heard)


@case(
    "sal.transport",
    "5.14.2",
    "SAL-STREAM-5",
    "SAL-STREAM-14",
    "SAL-STREAM-13",
    needs=("sal",),
    title="The hold stream takes 256 KB at once, and nothing beyond its right edge",
)
def receive_window(ctx: Context) -> None:
    """The hold service never reads, so its receive buffer fills.

    The harness sends 262,144 octets without waiting for the target, as a
    sender may before it hears from the receiver (SAL-STREAM-4): all must
    be acknowledged (SAL-STREAM-5), with an Acknowledgment that never passes
    what was sent (SAL-STREAM-14).  Then it fills the window to the edge the
    target advertises and sends 2,048 octets more, from the target's
    Acknowledgment: they lie beyond every edge it advertised and must be
    discarded, so the Acknowledgment must not pass that edge
    (SAL-STREAM-13).
    """
    peer = SalPeer(ctx)
    flow = peer.connect(HOLD_STREAM_SERVICE_ID)
    filler = Filler(flow)
    filler.burst(DEFAULT_WINDOW_OCTETS)
    filler.fill(DEFAULT_WINDOW_OCTETS)
    filler.settle()
    ctx.require(
        "SAL-STREAM-5",
        filler.acked >= DEFAULT_WINDOW_OCTETS,
        f"{DEFAULT_WINDOW_OCTETS} octets sent at once to a new flow are all received",
        expected=f"Acknowledgment ISS_c + {DEFAULT_WINDOW_OCTETS}",
        actual=f"Acknowledgment ISS_c + {filler.acked}",
    )
    ctx.require(
        "SAL-STREAM-14",
        filler.acked == DEFAULT_WINDOW_OCTETS,
        f"the Acknowledgment after {DEFAULT_WINDOW_OCTETS} octets is the first octet not received",
        expected=f"ISS_c + {DEFAULT_WINDOW_OCTETS}",
        actual=f"ISS_c + {filler.acked}",
    )
    if filler.furthest_edge > FILL_LIMIT:
        reset(flow)
        return  # a window too large to fill here: SAL-STREAM-13 is judged elsewhere
    for _ in range(8):  # the edge moves while the window closes; follow it
        goal = filler.latest_edge
        if goal <= filler.acked:
            break
        filler.fill(goal)
        filler.settle()
    if filler.acked < filler.latest_edge:
        raise HarnessError(
            f"the hold stream stopped at ISS_c + {filler.acked} below its edge "
            f"ISS_c + {filler.latest_edge}"
        )
    edge = filler.furthest_edge
    start = filler.acked
    filler.send(start, max(edge, start) + 2 * UNIT)
    filler.settle()
    for heard in peer.collect(ACK_DELAY_LIMIT + 0.05):
        filler.note(heard)
    ctx.require(
        "SAL-STREAM-13",
        filler.acked <= edge,
        f"octets sent from ISS_c + {start} to ISS_c + {max(edge, start) + 2 * UNIT}, beyond the "
        f"furthest right edge the target advertised (ISS_c + {edge}), are discarded",
        expected=f"Acknowledgment at most ISS_c + {edge}",
        actual=f"Acknowledgment ISS_c + {filler.acked}",
    )
    reset(flow)


@case(
    "sal.transport",
    "5.14.2",
    "SAL-STREAM-8",
    needs=("sal",),
    title="Against a zero window the target probes with one octet, backing off",
)
def zero_window_probes(ctx: Context) -> None:
    """The harness sends 2,000 octets advertising a window of 0.

    The echo service has data to send and no window: the target must probe
    with segments of one octet at the left edge when its retransmission
    timer expires, the second after about twice the first interval (its
    RTO near 0.2 s after the exchanges before).  The harness answers each
    probe with the window still 0, then opens it and takes the echo.
    """
    peer = SalPeer(ctx)
    flow = peer.connect()
    warm_up(flow, ctx)
    data = ctx.rng.randbytes(2000)
    left = flow.stream_rcv
    for start in range(0, len(data), 1000):
        flow.send(flow.segment(data[start : start + 1000], window=0))
        flow.stream_nxt = seq(flow.stream_nxt + 1000)
    started = time.monotonic()
    probes: list[tuple[float, StreamSegment]] = []
    deadline = started + PROBE_WAIT
    while len(probes) < 2 and (remaining := deadline - time.monotonic()) > 0:
        heard = peer.hear(remaining)
        if heard is None:
            break
        segment = segment_of(flow, heard)
        if segment is not None and carries(segment):
            probes.append((heard.at, segment))
            flow.send(flow.segment(window=0))  # still closed: the probe octet is not taken
    shapes = [
        f"+{offset(s.sequence, left)} {len(s.data)} octet(s) at {at - started:.3f} s"
        for at, s in probes
    ]
    good = all(len(s.data) == 1 and s.sequence == left for _, s in probes)
    backs_off = False
    if len(probes) == 2:
        first = probes[0][0] - started
        second = probes[1][0] - probes[0][0]
        backs_off = first >= RTO_MIN - TOLERANCE / 3 and second >= 1.25 * first
    ctx.require(
        "SAL-STREAM-8",
        len(probes) == 2 and good and backs_off,
        "with data to send and a zero window, the target probes with one octet at the left edge "
        "when its timer expires, the second probe after a longer interval than the first",
        expected="two 1-octet probes at +0, the second interval at least 1.25 times the first",
        actual="; ".join(shapes) or f"no probe within {PROBE_WAIT} s",
    )
    flow.send(flow.segment())  # open the window
    want = len(flow.received) + len(data)
    pump(flow, lambda: len(flow.received) >= want, ctx.timeout)
    if bytes(flow.received[-len(data) :]) != data:
        raise HarnessError("the echo did not complete once the window opened")
    reset(flow)


@case(
    "sal.transport",
    "5.14.2",
    "SAL-STREAM-9",
    needs=("sal",),
    title="Unacknowledged data is retransmitted from the oldest octet after an RTO",
)
def retransmits_oldest(ctx: Context) -> None:
    """The harness takes the echo of 3,000 octets without acknowledging it.

    The target's stream must send the oldest unacknowledged octets again
    when its retransmission timer expires: not before the RTO floor of
    0.2 s (its RTO near the floor after the exchanges before), and
    starting at the oldest.
    """
    peer = SalPeer(ctx)
    flow = peer.connect()
    warm_up(flow, ctx)
    oldest = flow.stream_rcv
    data = ctx.rng.randbytes(3000)
    flow.write(data, chunk=1000)
    first_seen: dict[int, float] = {}
    retransmission: tuple[float, StreamSegment] | None = None
    deadline = time.monotonic() + RETRANSMIT_WAIT
    while retransmission is None and (remaining := deadline - time.monotonic()) > 0:
        heard = peer.hear(remaining)
        if heard is None:
            break
        segment = segment_of(flow, heard)
        if segment is None or not segment.data:
            continue
        if segment.sequence in first_seen:
            retransmission = (heard.at, segment)
        else:
            first_seen[segment.sequence] = heard.at
    if retransmission is None:
        ctx.require(
            "SAL-STREAM-9",
            False,
            f"the echo of {len(data)} octets, never acknowledged, is retransmitted",
            expected="a retransmission",
            actual=f"none within {RETRANSMIT_WAIT} s",
        )
    else:
        at, segment = retransmission
        gap = at - first_seen[segment.sequence]
        ctx.require(
            "SAL-STREAM-9",
            segment.sequence == oldest
            and segment.data == data[: len(segment.data)]
            and gap >= RTO_MIN - TOLERANCE / 3,
            f"the echo of {len(data)} octets, never acknowledged, is retransmitted after an RTO "
            "starting with the oldest octet",
            expected=f"the octets at +0 again, at least {RTO_MIN:g} s after their first sending",
            actual=f"+{offset(segment.sequence, oldest)} ({len(segment.data)} octets) "
            f"{gap:.3f} s after their first sending",
        )
    flow.stream_rcv = seq(oldest + len(data))
    flow.send(flow.segment())
    reset(flow)


@case(
    "sal.transport",
    "5.14.2",
    "SAL-STREAM-11",
    needs=("sal",),
    slow=True,
    title="Data never acknowledged fails the flow after 8 retransmissions, with an RST",
)
def retransmission_limit(ctx: Context) -> None:
    """The harness never acknowledges the echo: the flow must fail (up to 255 s).

    The target retransmits the same data 8 times, and when the timer
    expires again it reports the timeout, sends an RST and closes the flow.
    """
    peer = SalPeer(ctx)
    flow = peer.connect()
    warm_up(flow, ctx)
    oldest = flow.stream_rcv
    flow.write(ctx.rng.randbytes(100))

    def is_copy(heard: Heard) -> bool:
        segment = segment_of(flow, heard)
        return segment is not None and bool(segment.data) and segment.sequence == oldest

    copies, rst = copies_until_reset(peer, flow, is_copy, 300.0)
    ctx.require(
        "SAL-STREAM-11",
        rst is not None and copies == 9,
        "100 octets echoed and never acknowledged are sent 9 times (8 retransmissions), then "
        "the flow ends with an RST",
        expected="9 copies, then an RST",
        actual=f"{copies} copies, then {show(rst)}",
    )


@case(
    "sal.transport",
    "5.14.2",
    "SAL-STREAM-12",
    "SAL-STREAM-14",
    "SAL-STREAM-3",
    "SAL-STREAM-19",
    needs=("sal",),
    title="Segments out of order, overlapping and repeated are echoed in order, each octet once",
)
def out_of_order_and_duplicates(ctx: Context) -> None:
    """5,000 octets in pieces sent out of order, some twice, some overlapping.

    The FIN rides on the last piece, sent second.  Before any octet arrived
    in order, an acknowledgment must name ISS_c (SAL-STREAM-3); no
    acknowledgment may pass the first octet not yet sent in order, and once
    everything arrived it is one past the FIN (SAL-STREAM-14).  The echo
    must be the 5,000 octets exactly (SAL-STREAM-12), and the echo service
    may close only once the gap before the FIN is filled (SAL-STREAM-19).
    """
    peer = SalPeer(ctx)
    flow = peer.connect()
    data = ctx.rng.randbytes(5000)
    steps = [
        (2000, 3000),
        (4000, 5000),  # with the FIN
        (0, 1000),
        (2000, 3000),
        (500, 1500),
        (1000, 2000),
        (2500, 3500),
        (3000, 4000),
        (0, 1000),
    ]
    fin_at = len(data)
    received: set[int] = set()
    in_order = 0
    octets = Octets(flow.peer_iss)
    too_far: list[str] = []
    acks: list[int] = []
    early_fin = False
    for index, (start, end) in enumerate(steps):
        fin = end == fin_at
        flow.stream_nxt = seq(flow.iss + max(flow_offset(flow), end + (1 if fin else 0)))
        flow.send(
            flow.segment(
                data[start:end],
                sequence=flow.iss + start,
                flags=_ACK_FIN if fin else StreamFlags.ACK,
            )
        )
        received.update(range(start, end))
        while in_order in received:
            in_order += 1
        point = in_order + (1 if in_order == fin_at else 0)
        wait = ACK_DELAY_LIMIT + TOLERANCE if index == 0 else 0.02
        heard = pump_once(flow, wait, stop_at_first=index == 0)
        for one in heard:
            segment = segment_of(flow, one)
            if segment is None:
                continue
            octets.add(segment)
            acked = offset(segment.acknowledgment, flow.iss)
            acks.append(acked)
            if acked > point:
                too_far.append(f"ack +{acked} after step {index + 1}, in order up to +{point}")
            if segment.flags & StreamFlags.FIN and in_order < fin_at:
                early_fin = True
    first_ack = acks[0] if acks else None
    heard = pump(flow, lambda: flow.peer_fin, ctx.timeout)
    for one in heard:
        segment = segment_of(flow, one)
        if segment is not None:
            octets.add(segment)
            acks.append(offset(segment.acknowledgment, flow.iss))
    if first_ack is not None:
        ctx.require(
            "SAL-STREAM-3",
            first_ack == 0,
            "the acknowledgment of an out-of-order first segment, before any octet arrived in "
            "order, is the harness's ISS",
            expected="Acknowledgment ISS_c",
            actual=f"ISS_c + {first_ack}",
        )
    ctx.require(
        "SAL-STREAM-14",
        not too_far and bool(acks) and acks[-1] == fin_at + 1,
        "acknowledgments never pass the first octet missing, and end one past the FIN",
        expected=f"each ack at most the in-order point; the last ISS_c + {fin_at + 1}",
        actual="; ".join(too_far[:3]) or (f"last ack ISS_c + {acks[-1]}" if acks else "no ack"),
    )
    echoed = octets.prefix()
    ctx.require(
        "SAL-STREAM-12",
        echoed == data and octets.beyond(len(data)) == 0 and octets.conflicts == 0,
        f"the echo of {len(steps)} pieces sent out of order, overlapping and repeated is the "
        f"{len(data)} octets, each once, in order",
        expected=f"the {len(data)} octets, nothing more",
        actual=f"{len(echoed)} octets in order"
        + (" (different octets)" if echoed != data[: len(echoed)] else "")
        + f", {octets.beyond(len(data))} beyond, {octets.conflicts} conflicting",
    )
    ctx.require(
        "SAL-STREAM-19",
        not early_fin and octets.fins == {fin_at},
        "the end of the stream is signalled once every octet up to the FIN arrived, not when the "
        "FIN arrived out of order",
        expected=f"the echo's FIN at +{fin_at}, after the gap was filled",
        actual=("a FIN before the gap was filled; " if early_fin else "")
        + "FIN at "
        + (", ".join(f"+{f}" for f in sorted(octets.fins)) or "none"),
    )
    reset(flow)


def flow_offset(flow: HarnessFlow) -> int:
    """The harness's next stream sequence number, as an offset from its ISS."""
    return offset(flow.stream_nxt, flow.iss)


def pump_once(flow: HarnessFlow, wait: float, *, stop_at_first: bool = False) -> list[Heard]:
    """What the target sends within ``wait`` seconds, its data taken and acknowledged."""
    heard_all: list[Heard] = []
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        heard = flow.peer.hear(left)
        if heard is None:
            break
        heard_all.append(heard)
        segment = flow.take(heard)
        if segment is not None and carries(segment):
            flow.send(flow.segment())
        if stop_at_first and segment is not None:
            break
    return heard_all


def acknowledges(flow: HarnessFlow, point: int) -> Callable[[Heard], bool]:
    """A segment of ``flow`` whose Acknowledgment is ISS_c + ``point``."""

    def matches(heard: Heard) -> bool:
        segment = segment_of(flow, heard)
        return segment is not None and offset(segment.acknowledgment, flow.iss) == point

    return matches


@case(
    "sal.transport",
    "5.14.2",
    "SAL-STREAM-15",
    needs=("sal",),
    title="A lone segment is acknowledged within 200 ms",
)
def acknowledgment_delay(ctx: Context) -> None:
    """Three times, one 100-octet segment to the hold stream, which sends no data.

    Nothing but the acknowledgment timer makes the target answer, so the
    time to the acknowledgment is its delay: at most 200 ms (plus a
    tolerance for a loaded machine).
    """
    peer = SalPeer(ctx)
    flow = peer.connect(HOLD_STREAM_SERVICE_ID)
    delays: list[float | None] = []
    for _ in range(3):
        sent_at = time.monotonic()
        flow.write(ctx.rng.randbytes(100))
        heard, _ = peer.wait_for(
            acknowledges(flow, flow_offset(flow)), ACK_DELAY_LIMIT + TOLERANCE + 0.5
        )
        delays.append(None if heard is None else heard.at - sent_at)
    shown = ", ".join("none" if d is None else f"{d * 1000:.0f} ms" for d in delays)
    limit = ACK_DELAY_LIMIT + TOLERANCE
    ctx.require(
        "SAL-STREAM-15",
        all(d is not None and d <= limit for d in delays),
        "each of three lone 100-octet segments is acknowledged within 200 ms",
        expected=f"at most {ACK_DELAY_LIMIT * 1000:.0f} ms (+{TOLERANCE * 1000:.0f} ms tolerance)",
        actual=shown,
    )
    reset(flow)


@case(
    "sal.transport",
    "5.14.2",
    "SAL-STREAM-16",
    needs=("sal",),
    title="Every second full-sized segment is acknowledged at once",
)
def acknowledges_every_second_segment(ctx: Context) -> None:
    """Three times, two full-sized segments to the hold stream, then a fence.

    The acknowledgment of the pair may not wait for the delayed-ACK timer:
    it must arrive before the fence's PONG, which the target sends after
    processing the two segments.
    """
    peer = SalPeer(ctx)
    flow = peer.connect(HOLD_STREAM_SERVICE_ID)
    late: list[str] = []
    for pair in range(3):
        flow.write(ctx.rng.randbytes(2 * FULL_SEGMENT), chunk=FULL_SEGMENT)
        point = flow_offset(flow)
        heard = peer.fence()
        before = [h for h in heard if h.at <= peer.fenced_at]
        acked = [
            offset(s.acknowledgment, flow.iss)
            for h in before
            if (s := segment_of(flow, h)) is not None
        ]
        if point not in acked:
            late.append(f"pair {pair + 1}: acks before the PONG {acked or 'none'}")
    ctx.require(
        "SAL-STREAM-16",
        not late,
        f"each pair of {FULL_SEGMENT}-octet segments is acknowledged before a PING sent after "
        "it is answered",
        expected="an ACK of both segments before the PONG, three times",
        actual="; ".join(late) or "as expected",
    )
    reset(flow)


@case(
    "sal.transport",
    "5.14.2",
    "SAL-STREAM-20",
    needs=("sal",),
    title="The SAL FIN waits until the stream's FIN and data are acknowledged",
)
def sal_fin_after_stream_fin(ctx: Context) -> None:
    """The echo service closes after the harness's FIN; the harness delays its acknowledgment.

    While the echo, or only its FIN, is unacknowledged, the target must
    not send its SAL FIN; once the harness acknowledges the stream's FIN,
    the SAL FIN follows.
    """
    peer = SalPeer(ctx)
    flow = peer.connect()
    data = ctx.rng.randbytes(500)
    flow.write(data)
    flow.send_fin_segment()

    def stream_fin(heard: Heard) -> bool:
        segment = segment_of(flow, heard)
        return segment is not None and bool(segment.flags & StreamFlags.FIN)

    fin_segment, heard = peer.wait_for(stream_fin)
    if fin_segment is None:
        raise HarnessError("the echo stream service did not close its stream")
    heard += [fin_segment, *peer.fence(), *peer.collect(0.2)]
    unacked = [h for h in controls(flow, heard) if h.flags is not None and h.flags & FIN]
    base = flow.peer_iss
    flow.send(flow.segment(acknowledgment=base + len(data)))  # the data, not the FIN
    heard = peer.fence() + peer.collect(0.1)
    fin_unacked = [h for h in controls(flow, heard) if h.flags is not None and h.flags & FIN]
    flow.stream_rcv = seq(base + len(data) + 1)
    flow.send(flow.segment())
    sal_fin, _ = peer.wait_for(
        lambda h: flow.ours(h) and h.flags is not None and bool(h.flags & FIN)
    )
    ctx.require(
        "SAL-STREAM-20",
        not unacked and not fin_unacked and sal_fin is not None,
        f"no SAL FIN while the echo of {len(data)} octets and its FIN, then its FIN alone, are "
        "unacknowledged; the SAL FIN once they are",
        expected="no FIN, no FIN, then a FIN",
        actual=f"{describe_all(unacked) if unacked else 'none'}; "
        f"{describe_all(fin_unacked) if fin_unacked else 'none'}; {show(sal_fin)}",
    )
    if sal_fin is not None and sal_fin.control is not None:
        flow.rcv_nxt = seq(sal_fin.control.verno + 1)
        flow.send_control(FIN | ACK)
    else:
        reset(flow)
