"""Sections 5.6.3, 5.6.5, 5.8.1 and 5.8.3: the target as a client, made to connect by the initiator.

The initiator test service (Appendix C.4) makes the target open a flow to a
serviceID the harness names, so that the harness plays the server.  In
mode 0 the target routes the serviceID to the requester's socket with a
FORWARD rule: the harness receives the target's SYN, judges it, and answers
it with SYN-ACKs right and wrong (Sections 5.8.1 and 5.8.3).  In mode 1 the
target resolves the serviceID through its ServalDHT ring (a DELAY rule,
Section 5.6.3) and installs rules from the record it finds (Section 5.6.5):
the harness registers records whose endpoints are its own sockets and
watches which socket the SYN reaches.  When the flow ends, the target
answers the request with a datagram that names what its application
learned ("connection refused", "service unreachable", ...).

The target starts alone in its ring, so it resolves from its own store at
once.  The cases about a resolution in progress (one per serviceID, the
parking limits of SAL-TBL-9 and SAL-TBL-13) need a resolution that takes
time: there a harness member enters the ring just before the target, the
serviceID's block lies between the two, so that the target asks the member
(the only node it knows that precedes the block), and the member answers
when the case decides.
"""

from __future__ import annotations

import ipaddress
import math
import select
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from conformance.cases import case
from conformance.cases.dht_records import block, stored
from conformance.cases.dht_ring import Ring, block_between, ident, registrant
from conformance.context import Context
from conformance.model import HarnessError
from conformance.peer import Address, DhtPeer, default_responder
from conformance.salpeer import (
    ACK,
    FIN,
    RST,
    RSYN,
    SYN,
    HarnessFlow,
    Heard,
    SalPeer,
    describe_all,
    seq,
    show,
)
from ref.wire import (
    Body,
    Control,
    ControlFlags,
    DhtMessage,
    ErrorCode,
    MessageType,
    RecordEndpoint,
    RecordFlags,
    Resolve,
    ResolveResponse,
    ResolveStatus,
    SalPacket,
    ServiceRecord,
    TransportProtocol,
    encode_dht,
    sign_record,
)

ORDER = 24
GROUP = "sal.client"

UNOBSERVABLE: dict[str, str] = {}

DATAGRAM, STREAM = TransportProtocol.DATAGRAM, TransportProtocol.STREAM
#: The outcome the initiator names when its application learned the service is unreachable.
UNREACHABLE = b"service unreachable"
#: A Service Mask that serves the whole block (Section 6.1.3).
WHOLE_BLOCK = 0xFF
#: How long a SYN retransmission may take: the initial RTO is 1 s (Section 5.9).
RETRANSMISSION_WAIT = 2.5
#: The parking bound of SAL-TBL-13, and the limit of SAL-TBL-9.
PARK_LIMIT = 2.0
MAX_PARKED = 1024
#: ISS values closer than this in either direction look sequential, not random (SAL-CONN-1).
ISS_SPREAD = 1 << 10


# --- the initiator ----------------------------------------------------------------------------


class Initiator:
    """Requests to the initiator service, and their outcomes.

    Every request carries a SOURCE serviceID of the case, to which the
    target addresses the outcome datagram (Appendix C.4, Section 5.12).
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.reply_to = ctx.rng.randbytes(32)

    def ask(
        self,
        peer: SalPeer,
        service_id: bytes,
        *,
        mode: int,
        transport: TransportProtocol = DATAGRAM,
        data: bytes = b"",
    ) -> None:
        """Ask the target to connect to ``service_id`` (mode 0: towards ``peer``; 1: resolved)."""
        peer.initiate(service_id, transport, reply_to=self.reply_to, mode=mode, data=data)

    def syn(
        self,
        peer: SalPeer,
        service_id: bytes,
        *,
        transport: TransportProtocol = DATAGRAM,
        data: bytes = b"",
    ) -> Heard:
        """Ask in mode 0 and return the target's SYN at ``peer``; a harness error without it."""
        self.ask(peer, service_id, mode=0, transport=transport, data=data)
        syn = wait_syn(peer, service_id)
        if syn is None:
            raise HarnessError(f"the target sent no SYN for a mode-0 request ({transport.name})")
        return syn

    def is_outcome(self, heard: Heard) -> bool:
        packet = heard.packet
        return (
            packet is not None
            and packet.control is None
            and packet.destination_flow_id == 0
            and packet.destination_service == self.reply_to
        )

    def outcome(self, peer: SalPeer, timeout: float | None = None) -> bytes | None:
        """The payload of the next outcome datagram at ``peer``; None on silence."""
        heard, _ = peer.wait_for(self.is_outcome, timeout)
        return None if heard is None or heard.packet is None else heard.packet.payload

    def outcomes(self, heard: Iterable[Heard]) -> list[bytes]:
        return [h.packet.payload for h in heard if h.packet is not None and self.is_outcome(h)]

    def refuse(self, server: SalPeer, syn: Heard, requester: SalPeer) -> None:
        """Refuse ``syn`` from ``server``; wait for the outcome so that the flow is gone."""
        refuse(server, syn)
        if self.outcome(requester, max(self.ctx.timeout, 1.0)) is None:
            raise HarnessError("no outcome datagram after the harness refused the target's SYN")


def is_syn(heard: Heard, service_id: bytes | None = None) -> bool:
    """A SYN (flags exactly SYN, Destination Flow ID 0), to ``service_id`` if given."""
    packet = heard.packet
    return (
        packet is not None
        and heard.is_control(SYN)
        and packet.destination_flow_id == 0
        and (service_id is None or packet.destination_service == service_id)
    )


def syns(heard: Iterable[Heard], service_id: bytes | None = None) -> list[Heard]:
    return [h for h in heard if is_syn(h, service_id)]


def wait_syn(peer: SalPeer, service_id: bytes, timeout: float | None = None) -> Heard | None:
    heard, _ = peer.wait_for(lambda h: is_syn(h, service_id), timeout)
    return heard


def refuse(peer: SalPeer, syn: Heard) -> None:
    """Answer a SYN with the RST of a host without the service (Section 5.11.3)."""
    packet, control = syn.packet, syn.control
    assert packet is not None and control is not None
    rst = Control(ControlFlags(RST | ACK), 0, seq(control.verno + 1), control.nonce)
    peer.send(SalPacket(0, packet.source_flow_id, TransportProtocol.NONE, control=rst), syn.source)


def some_id(base: bytes, index: int) -> bytes:
    """The serviceID of ``index`` (0 to 7) in the block of ``base`` (Section 6.1.3)."""
    return base[:-1] + bytes([base[-1] & 0xF8 | index])


def at(
    socket: Address, mask: int = WHOLE_BLOCK, priority: int = 0, weight: int = 1
) -> RecordEndpoint:
    """A record endpoint for a harness socket."""
    return RecordEndpoint(ipaddress.ip_address(socket[0]), socket[1], priority, weight, mask)


def record(
    owner: Ed25519PrivateKey,
    base: bytes,
    endpoints: Sequence[RecordEndpoint],
    *,
    sequence: int,
    lifetime: int = 600,
    issued_at: int | None = None,
) -> ServiceRecord:
    """A record for the block of ``base`` signed by ``owner``; a tombstone without endpoints."""
    return sign_record(
        ServiceRecord(
            service_id=base,
            owner_key=bytes(32),
            sequence=sequence,
            issued_at=int(time.time()) if issued_at is None else issued_at,
            lifetime=lifetime,
            flags=RecordFlags(0) if endpoints else RecordFlags.TOMBSTONE,
            endpoints=tuple(endpoints),
        ),
        owner,
    )


def drops(before: Mapping[str, int], after: Mapping[str, int], code: ErrorCode) -> int:
    name = f"drop.{code.name}"
    return after.get(name, 0) - before.get(name, 0)


def gather(
    peers: Sequence[SalPeer],
    seconds: float,
    until: Callable[[list[Heard]], bool] = lambda heard: False,
    members: Sequence[DhtPeer] = (),
) -> list[tuple[SalPeer, Heard]]:
    """What reaches ``peers``, each with the socket it reached, for ``seconds`` or ``until``.

    Meanwhile the ring ``members`` answer the target's requests.
    """
    gathered: list[tuple[SalPeer, Heard]] = []
    heard: list[Heard] = []
    for peer in peers:  # what a fence or a wait already read
        while (early := peer.hear(0)) is not None:
            gathered.append((peer, early))
            heard.append(early)
    serving = {m.wire.sock: m for m in members}
    sal = {p.wire.sock: p for p in peers}
    deadline = time.monotonic() + seconds
    while not until(heard) and (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([*serving, *sal], [], [], left)
        for sock in readable:
            if sock in serving:
                serving[sock].drain(0.001)
            elif (one := sal[sock].hear(0.001)) is not None:
                gathered.append((sal[sock], one))
                heard.append(one)
    return gathered


# --- mode 0: the harness as the server ------------------------------------------------------


@case(
    GROUP,
    "5.8.1",
    "SAL-CONN-1",
    needs=("sal",),
    title="The target's SYNs carry a fresh non-zero flowID, nonce and random ISS each",
)
def syn_choices(ctx: Context) -> None:
    """Six requests in mode 0 make the target send six SYNs to the harness.

    SAL-CONN-1: each flow gets a non-zero flowID Fc not in use by the others
    (all six are open at once until refused), a nonce of its own and an ISS
    from a secure generator.  Randomness cannot be proven from six samples,
    but a constant, a counter or a clock can be caught: the ISSs must be
    distinct and no two closer than 1024 (a chance of about 1e-5 for random
    ones), and the nonces distinct.
    """
    peer = SalPeer(ctx)
    initiator = Initiator(ctx)
    seen: list[Heard] = []
    for index in range(6):
        service_id = ctx.rng.randbytes(32)
        transport = STREAM if index % 2 else DATAGRAM
        seen.append(initiator.syn(peer, service_id, transport=transport))
    for syn in seen:
        initiator.refuse(peer, syn, peer)
    flow_ids = [h.packet.source_flow_id for h in seen if h.packet is not None]
    nonces = [h.control.nonce for h in seen if h.control is not None]
    isses = [h.control.verno for h in seen if h.control is not None]
    ctx.require(
        "SAL-CONN-1",
        0 not in flow_ids and len(set(flow_ids)) == len(seen),
        "six flows open at once have six different non-zero flowIDs Fc (Section 5.7)",
        expected="6 distinct non-zero Source Flow IDs",
        actual=", ".join(f"{f:#010x}" for f in flow_ids),
    )
    ctx.require(
        "SAL-CONN-1",
        len(set(nonces)) == len(seen) and bytes(8) not in nonces,
        "each SYN carries its own 8-octet nonce Nc",
        expected="6 distinct non-zero nonces",
        actual=", ".join(n.hex() for n in nonces),
    )
    close = [
        (a, b)
        for i, a in enumerate(isses)
        for b in isses[i + 1 :]
        if min(seq(a - b), seq(b - a)) < ISS_SPREAD
    ]
    ctx.require(
        "SAL-CONN-1",
        not close,
        "the six ISS_c (the SYNs' verno) look random: distinct, no two within "
        f"{ISS_SPREAD} of each other",
        expected="6 ISSs far apart",
        actual=", ".join(str(i) for i in isses),
    )


@case(
    GROUP,
    "5.8.3",
    "SAL-CONN-13",
    needs=("sal", "counters"),
    title="A client in REQUEST drops every SYN-ACK that fails a check, then takes the right one",
)
def syn_ack_checks(ctx: Context) -> None:
    """SYN-ACKs that fail one check each are dropped BAD_SEQUENCE; the flow stays in REQUEST.

    The checks of Section 5.8.3: flags exactly SYN|ACK, ackno ISS_c + 1,
    Source Flow ID not zero, a DESTINATION extension with the SYN's
    serviceID.  A control packet with other flags (ACK, FIN|ACK, RSYN|ACK)
    fails too.  Nothing may answer them; the SYN's retransmission (after
    1 s) is the only packet the target may send meanwhile.  Then the right
    SYN-ACK must still complete the handshake with the ACK of step 4.
    """
    peer = SalPeer(ctx)
    initiator = Initiator(ctx)
    service_id = ctx.rng.randbytes(32)
    data = b"sent once CONNECTED"
    syn = initiator.syn(peer, service_id, data=data)
    flow = HarnessFlow.accept(peer, syn)
    iss_c, client_flow = flow.peer_iss, flow.peer_flow_id
    other = ctx.rng.randbytes(32)
    wrong: list[tuple[str, SalPacket]] = [
        ("ackno ISS_c + 2", flow.syn_ack_packet(ackno=iss_c + 2)),
        ("ackno ISS_c", flow.syn_ack_packet(ackno=iss_c)),
        ("Source Flow ID 0", flow.syn_ack_packet(source_flow=0)),
        ("no DESTINATION extension", flow.syn_ack_packet(destination_service=None)),
        ("the DESTINATION of another serviceID", flow.syn_ack_packet(destination_service=other)),
        ("flags ACK", flow.control(ACK, verno=flow.iss, destination_service=service_id)),
        ("flags FIN|ACK", flow.control(FIN | ACK, verno=flow.iss, destination_service=service_id)),
        (
            "flags RSYN|ACK",
            flow.control(RSYN | ACK, verno=flow.iss, destination_service=service_id),
        ),
    ]
    for what, packet in wrong:
        if not peer.dropped(
            "SAL-CONN-13",
            packet,
            ErrorCode.BAD_SEQUENCE,
            f"a SYN-ACK-like answer to the target's SYN with {what}, in REQUEST",
            to=syn.source,
            answered=lambda h: is_syn(h, service_id),  # the SYN's own retransmission
        ):
            return  # the flow may have left REQUEST: the other checks would not test it
    flow.send_syn_ack()
    ack, _ = flow.wait_control(ACK)
    reply, control = (ack.packet, ack.control) if ack is not None else (None, None)
    ctx.require(
        "SAL-CONN-13",
        reply is not None
        and control is not None
        and reply.source_flow_id == client_flow
        and control.verno == seq(iss_c + 1)
        and control.ackno == seq(flow.iss + 1)
        and control.nonce == flow.peer_nonce,
        "after the eight wrong answers the flow is still in REQUEST: the right SYN-ACK draws "
        "the ACK of step 4 (verno ISS_c + 1, ackno ISS_s + 1, nonce Nc)",
        expected=f"ACK verno {seq(iss_c + 1)} ackno {seq(flow.iss + 1)}",
        actual=show(ack),
    )
    flow.send_control(RST | ACK)
    initiator.outcome(peer)


@case(
    GROUP,
    "5.8.3",
    "SAL-CONN-14",
    "SAL-CONN-15",
    needs=("sal",),
    title="A SYN-ACK from another endpoint is accepted; a repeated one draws the same ACK",
)
def syn_ack_from_elsewhere(ctx: Context) -> None:
    """The SYN goes to one harness socket and the SYN-ACK comes from another.

    SAL-CONN-14: the target accepts it whatever its source, so the ACK and
    the flow's first message go to the SYN-ACK's source.  SAL-CONN-15: the
    same SYN-ACK sent again, once in CONNECTED and once after both sides
    sent their FIN (so that the target's snd.nxt and rcv.nxt have moved), is
    answered each time with the handshake's ACK, octet for octet, and
    nothing else.
    """
    requester, server = SalPeer(ctx), SalPeer(ctx)
    initiator = Initiator(ctx)
    service_id = ctx.rng.randbytes(32)
    data = b"first message"
    flow = HarnessFlow.accept(server, initiator.syn(requester, service_id, data=data))
    syn_ack = flow.send_syn_ack()
    ack, _ = flow.wait_control(ACK)
    message, _ = server.wait_for(lambda h: flow.ours(h) and h.control is None)
    ctx.require(
        "SAL-CONN-14",
        ack is not None
        and ack.control is not None
        and ack.control.ackno == seq(flow.iss + 1)
        and message is not None
        and message.packet is not None
        and message.packet.payload == data,
        "a valid SYN-ACK sent from another socket than the one the SYN went to is accepted: "
        "the ACK and the flow's first message go to the SYN-ACK's source",
        expected=f"ACK ackno {seq(flow.iss + 1)}, then the message {data!r}",
        actual=f"{show(ack)}; {show(message)}",
        fatal=True,
    )
    assert ack is not None
    stray = [h for h in requester.fence() if not initiator.is_outcome(h)]
    ctx.require(
        "SAL-CONN-14",
        not stray,
        "nothing of the flow goes to the endpoint the SYN was sent to",
        expected="nothing at the SYN's destination",
        actual=describe_all(stray),
    )

    def repeated(when: str, fin: Heard | None = None) -> None:
        flow.send(syn_ack)
        heard = [h for h in server.fence() if fin is None or h.data != fin.data]
        ctx.require(
            "SAL-CONN-15",
            [h.data for h in heard] == [ack.data],
            f"the SYN-ACK sent again {when} is answered with the handshake's ACK, octet for "
            "octet, and nothing else",
            expected=ack.data.hex(),
            actual="; ".join(f"{h.describe()} ({h.data.hex()})" for h in heard) or "nothing",
        )

    repeated("in CONNECTED")
    flow.send_control(FIN | ACK)
    fin, _ = server.wait_for(lambda h: flow.ours(h) and bool((h.flags or 0) & FIN))
    if fin is None:
        raise HarnessError("the initiator's flow did not close after the harness's FIN")
    repeated("after both FINs", fin)  # a retransmission of the target's FIN may cross it
    flow.acknowledge(fin)
    initiator.outcome(requester)


# --- mode 1: rules from resolution ----------------------------------------------------------


@case(
    GROUP,
    "5.6.3",
    "SAL-TBL-12",
    "SAL-CONN-2",
    needs=("sal", "counters"),
    title="A SYN parked for a serviceID nobody registered is dropped, counted NO_SERVICE",
)
def unregistered_service(ctx: Context) -> None:
    """Mode 1 for a serviceID no record covers: the resolution fails.

    SAL-TBL-12: the parked SYN is dropped, counted NO_SERVICE, and reaches
    nobody.  The target's application may learn at once that the service is
    unreachable (SAL-TBL-22, a MAY); if it does, the draft treats the flow
    as for a failed lookup (SAL-CONN-2): the report is "service
    unreachable" and nothing has been sent.  A target that rather lets the
    SYN's retransmissions run is not judged on SAL-CONN-2 here (its lookup
    never fails: the DELAY rule catches every serviceID without a rule).
    """
    peer = SalPeer(ctx)
    initiator = Initiator(ctx)
    service_id = ctx.rng.randbytes(32)
    before = peer.counters()
    initiator.ask(peer, service_id, mode=1)
    heard = peer.fence()
    outcomes = initiator.outcomes(heard)
    if not outcomes:
        heard.extend(peer.collect(0.5))
        outcomes = initiator.outcomes(heard)
    after = peer.counters()
    sent = [h for h in heard if not initiator.is_outcome(h)]
    ctx.require(
        "SAL-TBL-12",
        drops(before, after, ErrorCode.NO_SERVICE) >= 1 and not sent,
        "the SYN to an unregistered serviceID, parked while the target resolved it, is "
        "dropped when the resolution fails, counted NO_SERVICE",
        expected="drop.NO_SERVICE +1, no SYN",
        actual=f"drop.NO_SERVICE +{drops(before, after, ErrorCode.NO_SERVICE)}; "
        + (describe_all(sent, empty="no SYN")),
    )
    if outcomes:
        ctx.require(
            "SAL-CONN-2",
            outcomes == [UNREACHABLE] and not sent,
            "the target's application learns that the service is unreachable and nothing is sent",
            expected=UNREACHABLE.decode(),
            actual=", ".join(repr(o) for o in outcomes),
        )


@case(
    GROUP,
    "5.6.5",
    "SAL-TBL-19",
    "SAL-TBL-11",
    "SAL-CONN-3",
    "SAL-TBL-21",
    needs=("sal", "counters"),
    title="Rules from records: Service Masks, expiry, newer records, retransmitted SYNs",
)
def record_rules(ctx: Context) -> None:
    """The SYNs go where the target's records say, and follow the records' changes.

    Two blocks L and K, records of one owner each, sockets A and B of the
    harness; L[i] is the serviceID of index i of block L.

    - Record L.1: A serves index 0 only (Service Mask 0x01).  A SYN to L[0]
      reaches A (SAL-TBL-19, a rule of length 256).  A SYN to L[1] is
      parked, the resolution finds L.1, whose rules do not cover index 1,
      so the second lookup selects the DELAY rule again: the SYN is
      dropped, counted NO_SERVICE (SAL-TBL-11).
    - Record K.1: A serves the whole block, and K.1 expires within 0.2 to
      0.8 s.  A SYN to K[0] reaches A; the harness does not answer it.
    - The owners store L.2 and K.2 (higher Sequences): B serves the whole
      of each block.  The target has not resolved them yet.
    - Once K.1 has expired, a SYN to K[1] reaches B: K.1's rules ended with
      its lifetime (hard timeout = remaining lifetime, SAL-TBL-19).
    - The flow to K[0] retransmits its SYN after its RTO (1 s): looked up
      again (SAL-CONN-3), it reaches B, not A where the first SYN went.
      The flow to L[1] retransmits too: looked up again, its SYN starts a
      resolution that finds L.2 and reaches B.
    - A SYN to L[0] now reaches B, not A: installing L.2 removed L.1's rule
      for index 0 first (SAL-TBL-21), which would otherwise win as the
      longer prefix.
    """
    registrar = registrant(ctx)
    requester, first, second = SalPeer(ctx), SalPeer(ctx), SalPeer(ctx)
    initiator = Initiator(ctx)
    l_owner, k_owner = ctx.key(), ctx.key()
    l_base, k_base = block(ctx), block(ctx)
    l0, l1 = some_id(l_base, 0), some_id(l_base, 1)
    k0, k1 = some_id(k_base, 0), some_id(k_base, 1)
    a, b = first.wire.local, second.wire.local

    kept: dict[SalPeer, list[Heard]] = {first: [], second: []}

    def take(peer: SalPeer, matches: Callable[[Heard], bool], timeout: float) -> Heard | None:
        """The first packet at ``peer`` that ``matches``, keeping the others for later."""
        for earlier in kept[peer]:
            if matches(earlier):
                kept[peer].remove(earlier)
                return earlier
        heard, others = peer.wait_for(matches, timeout)
        kept[peer].extend(others)
        return heard

    def stray(peer: SalPeer, service_id: bytes) -> list[Heard]:
        """The SYNs to ``service_id`` that reached ``peer`` so far."""
        kept[peer].extend(peer.fence())
        found = syns(kept[peer], service_id)
        kept[peer] = [h for h in kept[peer] if h not in found]
        return found

    stored(ctx, registrar, record(l_owner, l_base, [at(a, 0x01)], sequence=1), "record L.1")
    initiator.ask(requester, l0, mode=1)
    syn = take(first, lambda h: is_syn(h, l0), RETRANSMISSION_WAIT)
    ctx.require(
        "SAL-TBL-19",
        syn is not None,
        "record L.1 names A with Service Mask 0x01: a SYN to index 0 of the block reaches A",
        expected="a SYN at A",
        actual=show(syn),
        fatal=True,
    )
    assert syn is not None
    initiator.refuse(first, syn, requester)

    before = requester.counters()
    initiator.ask(requester, l1, mode=1)
    heard = requester.fence() + stray(first, l1) + stray(second, l1)
    after = requester.counters()
    ctx.require(
        "SAL-TBL-11",
        drops(before, after, ErrorCode.NO_SERVICE) >= 1 and not syns(heard),
        "a SYN to index 1, which record L.1 does not serve, finds the DELAY rule again after "
        "the resolution and is dropped, counted NO_SERVICE (not parked a second time)",
        expected="drop.NO_SERVICE +1, no SYN",
        actual=f"drop.NO_SERVICE +{drops(before, after, ErrorCode.NO_SERVICE)}; "
        f"{describe_all(heard)}",
    )

    # K.1 ends at the next full second, 0.2 to 0.8 s away: before K[0]'s SYN is retransmitted.
    while not 0.2 <= time.time() % 1 <= 0.8:
        time.sleep(0.05)
    expiry = math.floor(time.time()) + 1
    brief = record(k_owner, k_base, [at(a)], sequence=1, issued_at=expiry - 1, lifetime=1)
    stored(ctx, registrar, brief, "record K.1")
    initiator.ask(requester, k0, mode=1)
    unanswered = take(first, lambda h: is_syn(h, k0), ctx.timeout)
    if unanswered is None:
        raise HarnessError("the SYN to index 0 of block K did not reach A of record K.1")
    asked = time.monotonic()
    stored(ctx, registrar, record(l_owner, l_base, [at(b)], sequence=2), "record L.2")
    stored(ctx, registrar, record(k_owner, k_base, [at(b)], sequence=2), "record K.2")

    time.sleep(max(0.0, expiry + 0.05 - time.time()))
    initiator.ask(requester, k1, mode=1)
    at_b = take(second, lambda h: is_syn(h, k1), ctx.timeout)
    at_a = stray(first, k1)
    expired = at_b is not None and not at_a
    ctx.require(
        "SAL-TBL-19",
        expired,
        "once record K.1 has expired its rules are gone (hard timeout = the remaining "
        "lifetime): a SYN to index 1 of block K is resolved again and reaches B of K.2",
        expected="a SYN at B, none at A",
        actual=f"at B: {show(at_b)}; at A: {show(at_a[0]) if at_a else 'nothing'}",
    )
    for syn in [*at_a, *([at_b] if at_b else [])]:
        initiator.refuse(second if syn is at_b else first, syn, requester)

    wait = RETRANSMISSION_WAIT - (time.monotonic() - asked)
    k_syn = take(second, lambda h: is_syn(h, k0), wait)
    l_syn = take(second, lambda h: is_syn(h, l1), max(0.3, wait))
    k_again = [k_syn] if k_syn is not None else []
    l_again = [l_syn] if l_syn is not None else []
    retransmitted = k_again + l_again
    to_a = stray(first, k0)
    if expired:
        ctx.require(
            "SAL-CONN-3",
            bool(k_again)
            and not to_a
            and k_again[0].packet is not None
            and unanswered.packet is not None
            and k_again[0].packet.source_flow_id == unanswered.packet.source_flow_id,
            "the SYN to index 0 of block K, first sent to A, is retransmitted after K.1's rules "
            "expired: looked up again, the retransmission reaches B",
            expected=f"the flow {show(unanswered)} retransmits its SYN to B",
            actual=f"at B: {show(k_again[0]) if k_again else 'nothing'}; "
            f"at A: {show(to_a[0]) if to_a else 'nothing'}",
        )
    ctx.require(
        "SAL-CONN-3",
        bool(l_again),
        "the SYN to index 1 of block L, dropped after resolution, is retransmitted and looked "
        "up again: the retransmission starts a resolution that finds L.2 and reaches B",
        expected="a SYN to index 1 of block L at B",
        actual=show(l_again[0]) if l_again else "nothing",
    )
    for syn in retransmitted:
        initiator.refuse(second, syn, requester)
    for syn in to_a:
        initiator.refuse(first, syn, requester)

    initiator.ask(requester, l0, mode=1)
    at_b = take(second, lambda h: is_syn(h, l0), ctx.timeout)
    at_a = stray(first, l0)
    ctx.require(
        "SAL-TBL-21",
        at_b is not None and not at_a,
        "after record L.2 replaced L.1, a SYN to index 0 reaches B: L.1's rule for index 0 (to A, "
        "a longer prefix) was removed first",
        expected="a SYN at B, none at A",
        actual=f"at B: {show(at_b)}; at A: {show(at_a[0]) if at_a else 'nothing'}",
    )
    for syn in [*at_a, *([at_b] if at_b else [])]:
        initiator.refuse(second if syn is at_b else first, syn, requester)


@case(
    GROUP,
    "5.6.5",
    "SAL-TBL-19",
    needs=("sal",),
    title="Rules from a record keep each endpoint's priority and Service Mask",
)
def record_endpoints(ctx: Context) -> None:
    """One record with three endpoints; the SYNs go where priority and masks say.

    A (priority 1, weight 1000) and B (priority 2, weight 1) serve the whole
    block, C (priority 0) index 2 only.  SAL-TBL-19: the whole-block
    endpoints become rules of length 253 with their priorities, so every
    SYN to indexes 0, 1, 3 and 4 reaches B, the higher priority (were the
    priorities lost, A's weight would draw almost every SYN); C's mask
    becomes a rule of length 256 for index 2, so the SYN to index 2 reaches
    C, the longer prefix, despite its lower priority.
    """
    registrar = registrant(ctx)
    requester, low, high, single = SalPeer(ctx), SalPeer(ctx), SalPeer(ctx), SalPeer(ctx)
    initiator = Initiator(ctx)
    base = block(ctx)
    endpoints = [
        at(low.wire.local, priority=1, weight=1000),
        at(high.wire.local, priority=2),
        at(single.wire.local, 0x04),
    ]
    three = record(ctx.key(), base, endpoints, sequence=1)
    stored(ctx, registrar, three, "the record with three endpoints")
    sockets = {"A": low, "B": high, "C": single}
    indexes = {some_id(base, index): index for index in (0, 1, 2, 3, 4)}
    for service_id in indexes:
        initiator.ask(requester, service_id, mode=1)
    names = {peer: name for name, peer in sockets.items()}
    arrived = gather(list(names), max(ctx.timeout, 1.0), lambda heard: len(syns(heard)) >= 5)
    arrived += [(peer, heard) for peer in names for heard in peer.fence()]  # and no more
    where: dict[int, list[str]] = {}
    for peer, syn in arrived:
        packet = syn.packet
        if is_syn(syn) and packet is not None and packet.destination_service in indexes:
            where.setdefault(indexes[packet.destination_service], []).append(names[peer])
            initiator.refuse(peer, syn, requester)
    seen = ", ".join(f"index {i}: {'+'.join(where.get(i, [])) or 'nowhere'}" for i in sorted(where))
    ctx.require(
        "SAL-TBL-19",
        all(where.get(i) == ["B"] for i in (0, 1, 3, 4)),
        "the whole-block endpoints' rules keep their priorities: every SYN to indexes 0, 1, 3 "
        "and 4 reaches B (priority 2), none A (priority 1, weight 1000)",
        expected="index 0, 1, 3, 4: B",
        actual=seen or "no SYN",
    )
    ctx.require(
        "SAL-TBL-19",
        where.get(2) == ["C"],
        "an endpoint with Service Mask 0x04 gets a rule of length 256 for index 2: the SYN to "
        "index 2 reaches C, the longer prefix, despite its lower priority",
        expected="index 2: C",
        actual=seen or "no SYN",
    )


@case(
    GROUP,
    "5.6.5",
    "SAL-TBL-21",
    needs=("sal",),
    title="A tombstone removes the rules of the record it deletes",
)
def tombstone(ctx: Context) -> None:
    """A block's record is deleted; the target learns the tombstone and must drop the rules.

    Record 1 names socket A for index 0 (Service Mask 0x01) and the target
    installs its rule.  The owner then stores a tombstone.  A request for
    index 1 (no rule: resolved) makes the target learn the tombstone, so it
    must remove record 1's rules without replacement (SAL-TBL-21): a
    request for index 0 then reaches nobody.
    """
    owner = ctx.key()
    registrar = registrant(ctx)
    requester, first = SalPeer(ctx), SalPeer(ctx)
    initiator = Initiator(ctx)
    base = block(ctx)
    index0, index1 = some_id(base, 0), some_id(base, 1)
    stored(
        ctx, registrar, record(owner, base, [at(first.wire.local, 0x01)], sequence=1), "record 1"
    )
    initiator.ask(requester, index0, mode=1)
    syn = wait_syn(first, index0)
    if syn is None:
        raise HarnessError("the SYN to index 0 did not reach the endpoint of the record")
    initiator.refuse(first, syn, requester)

    stored(ctx, registrar, record(owner, base, [], sequence=2), "the tombstone")
    initiator.ask(requester, index1, mode=1)
    learned = initiator.outcome(requester)
    initiator.ask(requester, index0, mode=1)
    late = syns(first.fence(), index0)
    outcome = None if late else initiator.outcome(requester)
    late += syns(first.fence(), index0)
    ctx.require(
        "SAL-TBL-21",
        not late,
        "after the target resolved the block to its tombstone, a SYN to index 0 reaches "
        "nobody: the rule from the deleted record was removed",
        expected="no SYN at A",
        actual=f"{show(late[0]) if late else 'no SYN at A'}; outcome {outcome!r} "
        f"(index 1: {learned!r})",
    )
    for syn in late[:1]:
        initiator.refuse(first, syn, requester)


# --- a resolution in progress: a ring member that answers when told ---------------------------


Request = tuple[DhtMessage, Address]


def holding(held: list[Request]) -> Callable[[DhtPeer, DhtMessage, Address], Body | None]:
    """A member's responder that keeps RESOLVE requests unanswered in ``held``."""

    def respond(peer: DhtPeer, message: DhtMessage, source: Address) -> Body | None:
        if message.type == MessageType.RESOLVE:
            held.append((message, source))
            return None
        return default_responder(peer, message, source)

    return respond


def answer(member: DhtPeer, request: Request, body: Body) -> None:
    """Answer a held request now."""
    message, source = request
    reply = DhtMessage(
        body=body,
        transaction_id=message.transaction_id,
        sender_key=member.public_key,
        token=bytes(16),
    )
    member.send_payload(encode_dht(reply), source)


def resolves(held: Iterable[Request], base: bytes) -> list[Request]:
    """The held RESOLVEs for the block of ``base``, one per transaction ID."""
    found: dict[bytes, Request] = {}
    for message, source in held:
        body = message.body
        if isinstance(body, Resolve) and some_id(body.service_id, 0) == some_id(base, 0):
            found.setdefault(message.transaction_id, (message, source))
    return list(found.values())


class Resolver:
    """The target and one harness member just before it; the member holds every RESOLVE.

    A block between the member and the target is one the target looks up
    by asking the member, the only node it knows that precedes the block.
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.ring = Ring(ctx, 1)
        self.member = self.ring.members[0]
        self.held: list[Request] = []
        self.member.responder = holding(self.held)
        self.others: list[DhtPeer] = []  # members outside the ring, named in REFER answers

    def block(self) -> bytes:
        return block_between(self.ctx, ident(self.member.node_id), self.ring.id)

    def outsider(self, held: list[Request]) -> DhtPeer:
        """A member the target does not know, that holds the RESOLVEs it gets."""
        peer = self.ctx.member()
        peer.responder = holding(held)
        self.others.append(peer)
        return peer

    def pump(
        self,
        seconds: float,
        peers: Sequence[SalPeer] = (),
        until: Callable[[list[Heard]], bool] = lambda heard: False,
    ) -> list[Heard]:
        """Serve the members and gather what reaches ``peers``, for ``seconds`` or ``until``."""
        members = [self.member, *self.others]
        return [heard for _, heard in gather(peers, seconds, until, members)]

    def wait_resolve(self, held: list[Request], base: bytes, seconds: float) -> Request:
        self.pump(seconds, until=lambda _: bool(resolves(held, base)))
        asked = resolves(held, base)
        if not asked:
            raise HarnessError(
                "the target did not send a RESOLVE for the block to the ring member before it: "
                "its resolution cannot be held in progress"
            )
        return asked[0]


@contextmanager
def resolver(ctx: Context) -> Iterator[Resolver]:
    """A :class:`Resolver` whose member leaves when the case ends, however it ends."""
    ring = Resolver(ctx)
    try:
        ring.ring.enter(ring.member)
        yield ring
    finally:
        if ring.ring.live:
            ring.ring.dissolve()


@case(
    GROUP,
    "5.6.3",
    "SAL-TBL-10",
    "SAL-TBL-11",
    needs=("sal",),
    title="Three SYNs for one serviceID wait for one resolution and all go out when it succeeds",
)
def one_resolution(ctx: Context) -> None:
    """Three mode-1 requests for one serviceID while its resolution is in progress.

    SAL-TBL-10: the target starts one resolution (the ring member gets one
    RESOLVE, counted by transaction ID: a retransmitted request is the same
    resolution) and parks the three SYNs behind it.  SAL-TBL-11: when the
    member answers FOUND with a record naming socket P, every parked SYN is
    looked up again and reaches P at once: three SYNs with three flowIDs,
    well before the flows would retransmit them.
    """
    with resolver(ctx) as ring:
        requester, provider = SalPeer(ctx), SalPeer(ctx)
        initiator = Initiator(ctx)
        base = ring.block()
        service_id = some_id(base, ctx.rng.randrange(8))
        for _ in range(3):
            initiator.ask(requester, service_id, mode=1)
        requester.fence()
        first = ring.wait_resolve(ring.held, base, 0.5)
        ring.pump(0.1)
        asked = resolves(ring.held, base)
        ctx.require(
            "SAL-TBL-10",
            len(asked) == 1,
            "three SYNs for one serviceID, parked while it is resolved, start one resolution",
            expected="1 RESOLVE for the block at the ring member",
            actual=f"{len(asked)} RESOLVEs",
        )
        found = record(ctx.key(), base, [at(provider.wire.local)], sequence=1)
        answer(ring.member, first, ResolveResponse(status=ResolveStatus.FOUND, record=found))
        # Well before the SYNs' retransmissions, about 1 s after the requests.
        gathered = ring.pump(0.4, [provider], lambda heard: len(syns(heard)) >= 3)
        released = syns(gathered, service_id)
        flow_ids = {h.packet.source_flow_id for h in released if h.packet is not None}
        ctx.require(
            "SAL-TBL-11",
            len(released) == 3 and len(flow_ids) == 3,
            "when the resolution succeeds every parked SYN is looked up again at once: the "
            "three flows' SYNs reach the endpoint of the record",
            expected="3 SYNs with 3 flowIDs at the record's endpoint",
            actual=describe_all(released, empty="no SYN"),
        )
        for syn in released:
            refuse(provider, syn)
        if len(released) == 3:
            ring.pump(1.0, [requester], lambda heard: len(initiator.outcomes(heard)) >= 3)


@case(
    GROUP,
    "5.6.5",
    "SAL-TBL-20",
    needs=("sal",),
    title="A record whose lifetime has run out installs no rule",
)
def expired_record(ctx: Context) -> None:
    """The ring member answers the target's RESOLVE with a record that expired 10 s ago.

    The record is otherwise valid (signed by its owner, for the right
    block) and names socket P.  SAL-TBL-20: the target must not install
    rules from it, so the SYN never reaches P.  (A resolver that refuses
    the expired record itself, as the checks of Section 6.9.1 ask, keeps
    the host from seeing it at all: the wire shows the same.)
    """
    with resolver(ctx) as ring:
        requester, provider = SalPeer(ctx), SalPeer(ctx)
        initiator = Initiator(ctx)
        base = ring.block()
        service_id = some_id(base, ctx.rng.randrange(8))
        initiator.ask(requester, service_id, mode=1)
        asked = ring.wait_resolve(ring.held, base, 0.5)
        old = int(time.time()) - 70
        expired = record(
            ctx.key(),
            base,
            [at(provider.wire.local)],
            sequence=1,
            issued_at=old,
            lifetime=60,
        )
        answer(ring.member, asked, ResolveResponse(status=ResolveStatus.FOUND, record=expired))
        gathered = ring.pump(
            1.5, [provider, requester], lambda heard: bool(initiator.outcomes(heard))
        )
        reached = syns(gathered, service_id)
        ctx.require(
            "SAL-TBL-20",
            not reached,
            "a record that expired 10 s ago, offered by the resolver, draws no SYN to its endpoint",
            expected="no SYN at the expired record's endpoint",
            actual=(describe_all(reached, empty="no SYN"))
            + f"; outcome {initiator.outcomes(gathered)}",
        )
        for syn in reached:
            refuse(provider, syn)


@case(
    GROUP,
    "5.6.3",
    "SAL-TBL-13",
    needs=("sal", "counters"),
    title="A SYN parked for 2 seconds without a result is dropped, counted NO_SERVICE",
)
def parked_two_seconds(ctx: Context) -> None:
    """A resolution that takes 2.4 s: the SYN parked at its start must not outlive 2 s.

    The ring member answers the RESOLVE after 0.9 s with a referral to a
    second harness member, which refers after another 0.9 s to a third,
    which answers FOUND (socket P) 2.4 s after the request.  SAL-TBL-13: at
    2.3 s, with the resolution still in progress, the SYN parked at 0 s has
    been dropped, counted NO_SERVICE; and when the resolution succeeds at
    most one SYN goes out (the retransmission parked at about 1 s), not the
    first SYN as well.
    """
    with resolver(ctx) as ring:
        requester, provider = SalPeer(ctx), SalPeer(ctx)
        probe = SalPeer(ctx)  # reads the counters
        initiator = Initiator(ctx)
        second_held: list[Request] = []
        third_held: list[Request] = []
        second, third = ring.outsider(second_held), ring.outsider(third_held)
        base = ring.block()
        service_id = some_id(base, ctx.rng.randrange(8))
        before = probe.counters()
        initiator.ask(requester, service_id, mode=1)
        start = time.monotonic()
        heard: list[Heard] = []

        def until(moment: float) -> None:
            heard.extend(ring.pump(start + moment - time.monotonic(), [requester, provider]))

        first = ring.wait_resolve(ring.held, base, 0.5)
        until(0.9)
        refer = ResolveResponse(status=ResolveStatus.REFER, nodes=(second.info,))
        answer(ring.member, first, refer)
        asked = ring.wait_resolve(second_held, base, 0.5)
        until(1.8)
        answer(second, asked, ResolveResponse(status=ResolveStatus.REFER, nodes=(third.info,)))
        last = ring.wait_resolve(third_held, base, 0.4)
        until(PARK_LIMIT + 0.3)
        middle = probe.counters()
        if initiator.outcomes(heard) or syns(heard):
            raise HarnessError(
                "the target's resolution ended before 2 s: "
                + "; ".join(h.describe() for h in heard)
            )
        ctx.require(
            "SAL-TBL-13",
            drops(before, middle, ErrorCode.NO_SERVICE) >= 1,
            "2.3 s after the request, its resolution still in progress, the SYN parked at the "
            "start has been dropped, counted NO_SERVICE",
            expected="drop.NO_SERVICE +1",
            actual=f"drop.NO_SERVICE +{drops(before, middle, ErrorCode.NO_SERVICE)}",
        )
        found = record(ctx.key(), base, [at(provider.wire.local)], sequence=1)
        answer(third, last, ResolveResponse(status=ResolveStatus.FOUND, record=found))
        released = syns(ring.pump(0.3, [provider]), service_id)
        ctx.require(
            "SAL-TBL-13",
            len(released) <= 1,
            "when the resolution succeeds at 2.4 s, the SYN parked at 0 s is gone: at most one "
            "SYN (the retransmission parked at 1 s) reaches the record's endpoint",
            expected="at most 1 SYN",
            actual=describe_all(released, empty="no SYN"),
        )
        for syn in released[:1]:
            refuse(provider, syn)
        if released:
            ring.pump(1.0, [requester], lambda got: bool(initiator.outcomes(got)))


@case(
    GROUP,
    "5.6.3",
    "SAL-TBL-9",
    "SAL-TBL-10",
    "SAL-TBL-12",
    needs=("sal", "counters"),
    title="1024 parked SYNs fill the DELAY queue; when the resolution fails they are dropped",
)
def parked_limit(ctx: Context) -> None:
    """1025 requests for one serviceID while its resolution is held.

    SAL-TBL-10: one resolution for the 1024 SYNs.  SAL-TBL-9: with 1024
    packets parked (nothing else is parked at the target), the 1025th SYN is
    dropped, counted QUEUE_FULL.  SAL-TBL-12: when the ring member answers
    NOT_FOUND, the 1024 parked SYNs are dropped, counted NO_SERVICE.  The
    requests go in batches, each fenced, so that the target's socket buffer
    never overflows; all 1025 are in within 0.8 s, before the member's
    silence could end the resolution.
    """
    with resolver(ctx) as ring:
        requester, last = SalPeer(ctx), SalPeer(ctx)
        probe = SalPeer(ctx)  # reads the counters
        initiator = Initiator(ctx)
        base = ring.block()
        service_id = some_id(base, ctx.rng.randrange(8))
        before = probe.counters()
        start = time.monotonic()
        for batch in range(0, MAX_PARKED, 128):
            for _ in range(min(128, MAX_PARKED - batch)):
                initiator.ask(requester, service_id, mode=1)
            requester.fence()
        full = probe.counters()
        initiator.ask(last, service_id, mode=1)
        last.fence()
        after = probe.counters()
        if time.monotonic() - start > 0.8:
            raise HarnessError("1025 requests took more than 0.8 s: the resolution may have ended")
        ring.pump(0.05)
        asked = resolves(ring.held, base)
        ctx.require(
            "SAL-TBL-10",
            len(asked) == 1,
            "1025 SYNs for one serviceID parked while it is resolved start one resolution",
            expected="1 RESOLVE for the block at the ring member",
            actual=f"{len(asked)} RESOLVEs",
        )
        parked = MAX_PARKED - drops(before, full, ErrorCode.QUEUE_FULL)
        ctx.require(
            "SAL-TBL-9",
            drops(full, after, ErrorCode.QUEUE_FULL) >= 1,
            f"with the {parked} SYNs of 1024 requests parked, one more SYN for the same "
            "serviceID is dropped, counted QUEUE_FULL",
            expected="drop.QUEUE_FULL +1",
            actual=f"drop.QUEUE_FULL +{drops(full, after, ErrorCode.QUEUE_FULL)}",
        )
        not_found = ResolveResponse(status=ResolveStatus.NOT_FOUND)
        for request in asked:
            answer(ring.member, request, not_found)
        ring.member.responder = lambda peer, message, source: (
            not_found
            if message.type == MessageType.RESOLVE
            else default_responder(peer, message, source)
        )
        ring.pump(0.3)
        failed = probe.counters()
        ctx.require(
            "SAL-TBL-12",
            drops(after, failed, ErrorCode.NO_SERVICE) >= parked,
            f"when the resolution fails the {parked} parked SYNs are dropped, counted NO_SERVICE",
            expected=f"drop.NO_SERVICE +{parked}",
            actual=f"drop.NO_SERVICE +{drops(after, failed, ErrorCode.NO_SERVICE)}",
        )
        # The 1025th flow retransmits its SYN, which the member now answers NOT_FOUND.
        ring.pump(RETRANSMISSION_WAIT, [last], lambda heard: bool(initiator.outcomes(heard)))
