"""Section 5.9: the control channel, judged on the FINs of the target's echo services.

The control packets a test can make the target send are its SYN-ACK, its
FIN, the ACKs of what the harness sends, and (when the harness moves) an
RSYN-ACK.  The echo services close their direction once the harness has
closed its own (Appendix C.4), so the harness controls when the target's
FIN is due, whether it is acknowledged, and what else is outstanding.
The cases read the numbers of those packets against the harness's own
(Section 5.9.1), send packets that fail each check of Section 5.9.2 and
watch them dropped without effect (the silence judged under the check's
own requirement; SAL-RECV-3 is left to the packet and connection cases),
and time the target's retransmissions (Section 5.9.3).

Timing is judged with wide margins: target and harness share a machine
that may be loaded.  The retransmission limit (minutes) runs only with
``--slow``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable

from conformance.cases import case
from conformance.context import Context
from conformance.model import HarnessError
from conformance.salpeer import (
    ACK,
    DATAGRAM,
    ECHO_DATAGRAM_SERVICE_ID,
    FIN,
    NONE,
    RST,
    RSYN,
    SYN,
    HarnessFlow,
    Heard,
    SalPeer,
    describe_all,
    seq,
)
from ref.wire import ErrorCode, TransportProtocol

ORDER = 22

UNOBSERVABLE: dict[str, str] = {}

#: The first retransmission of a FIN sent with the initial RTO of 1 s (SAL-CTRL-12), with margin.
INITIAL_RTO_RANGE = (0.8, 2.5)
#: The RTO after one sample of a few milliseconds is the 0.2 s minimum; this much later is late.
SAMPLED_RTO_SLACK = 0.6
#: How long to wait for a first retransmission, so that a wrong initial RTO is measured.
FIRST_WAIT = 4.0
#: A retransmission sent just before the harness's acknowledgment arrived may cross it.
CROSSING = 0.05
#: A doubled RTO (SAL-CTRL-15): the second gap over the first, with margin.
DOUBLING_RANGE = (1.6, 2.6)


# --- shared by the control and close cases ---------------------------------------------


def has_fin(flow: HarnessFlow) -> Callable[[Heard], bool]:
    """A control packet of ``flow`` with the FIN flag."""
    return lambda h: flow.ours(h) and h.flags is not None and bool(h.flags & FIN)


def fins(heard: Iterable[Heard], flow: HarnessFlow) -> list[Heard]:
    return [h for h in heard if has_fin(flow)(h)]


def fin_heard(flow: HarnessFlow) -> Callable[[list[Heard]], bool]:
    """Whether the target's FIN on ``flow`` is among the packets heard."""
    return lambda heard: bool(fins(heard, flow))


def pure_acks(heard: Iterable[Heard], flow: HarnessFlow) -> list[Heard]:
    return [h for h in heard if flow.ours(h) and h.is_control(ACK)]


def acknowledges(heard: Iterable[Heard], flow: HarnessFlow, verno: int) -> list[Heard]:
    """The control packets of ``flow`` whose ACK flag acknowledges the harness's ``verno``."""
    return [
        h
        for h in heard
        if flow.ours(h)
        and h.flags is not None
        and h.flags & ACK
        and not h.flags & RST
        and h.control is not None
        and h.control.ackno == seq(verno + 1)
    ]


def numbers(heard: Heard) -> tuple[int, int]:
    """(verno, ackno) of a control packet."""
    control = heard.control
    assert control is not None
    return control.verno, control.ackno


def gather(
    peer: SalPeer, done: Callable[[list[Heard]], bool], timeout: float, log: list[Heard]
) -> None:
    """Hear into ``log`` until ``done(log)`` or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while not done(log) and (left := deadline - time.monotonic()) > 0:
        heard = peer.hear(left)
        if heard is None:
            return
        log.append(heard)


def wait_fin(peer: SalPeer, flow: HarnessFlow, log: list[Heard], timeout: float) -> Heard:
    """The target's first FIN on ``flow`` (heard into ``log``); a harness error without it."""
    gather(peer, fin_heard(flow), timeout, log)
    found = fins(log, flow)
    if not found:
        raise HarnessError(
            f"the echo service sent no FIN on flow {flow.flow_id:#010x} after the harness "
            f"closed its side; heard {describe_all(log)}"
        )
    return found[0]


def close_first(
    peer: SalPeer, flow: HarnessFlow, log: list[Heard], flags: int = FIN | ACK
) -> Heard:
    """The harness closes ``flow`` (a datagram echo flow) and returns the target's FIN."""
    flow.send_control(flags)
    return wait_fin(peer, flow, log, peer.ctx.timeout)


def target_closes_first(peer: SalPeer, log: list[Heard]) -> tuple[HarnessFlow, Heard]:
    """A stream echo flow whose target closes first: its FIN is outstanding (FINWAIT1).

    The harness ends its stream (Section 5.14.2); the echo service then ends
    its own and, once the harness acknowledged it, closes: the SAL FIN
    comes while the harness has not closed the flow.
    """
    flow = peer.connect()
    log += flow.end_stream()
    if not flow.peer_fin:
        raise HarnessError(f"the stream echo did not end its stream; heard {describe_all(log)}")
    return flow, wait_fin(peer, flow, log, peer.ctx.timeout)


def close_after_drops(
    ctx: Context, peer: SalPeer, flow: HarnessFlow, requirement: str, detail: str
) -> Heard:
    """Close ``flow`` and judge that the packets dropped before changed nothing.

    The harness's FIN, with the verno it would have had anyway, must be new:
    acknowledged and answered by the target's FIN, which is returned.
    """
    verno = flow.snd_nxt
    log: list[Heard] = []
    fin = close_first(peer, flow, log)
    ctx.require(
        requirement,
        bool(acknowledges(log, flow, verno)),
        detail,
        expected=f"ackno {seq(verno + 1)}, then the target's FIN",
        actual=describe_all(log),
    )
    return fin


def judge_gone(
    ctx: Context, requirement: str, flow: HarnessFlow, detail: str, *, gone: bool = True
) -> bool:
    """Judge that the target no longer has ``flow`` (its probe draws an RST), or still has it."""
    [(holds, heard)] = (flow.peer.absent if gone else flow.peer.present)([flow])
    return ctx.require(
        requirement,
        holds,
        detail,
        expected="an RST" if gone else "no RST",
        actual=describe_all(heard),
    )


def one_reset(ctx: Context, resets: list[Heard], failed: str, watched: str = "") -> None:
    """A flow that failed sends one RST to its peer (SAL-CLOSE-7), never again (SAL-CLOSE-8)."""
    ctx.require(
        "SAL-CLOSE-7",
        len(resets) == 1,
        f"{failed} sends one RST to its peer",
        expected="exactly one RST",
        actual=describe_all(resets),
    )
    ctx.require(
        "SAL-CLOSE-8",
        len(resets) <= 1,
        f"the RST of {failed} is never retransmitted{watched}",
        expected="one RST",
        actual=describe_all(resets),
    )


def resend_of(original: Heard) -> Callable[[Heard], bool]:
    """A packet with the same flowIDs, flags and verno as ``original``: a retransmission."""
    packet, control = original.packet, original.control
    assert packet is not None and control is not None

    def matches(heard: Heard) -> bool:
        return (
            heard.packet is not None
            and heard.control is not None
            and heard.packet.destination_flow_id == packet.destination_flow_id
            and heard.control.verno == control.verno
            and heard.flags == control.flags
        )

    return matches


def syn_to(service_id: bytes) -> Callable[[Heard], bool]:
    """A SYN the target sends to ``service_id`` (a flow of its initiator service)."""
    return lambda h: (
        h.packet is not None and h.is_control(SYN) and h.packet.destination_service == service_id
    )


def initiate_flows(peer: SalPeer, count: int, log: list[Heard]) -> list[tuple[bytes, bytes]]:
    """Ask the initiator for ``count`` datagram flows to the harness at once (mode 0).

    Hears into ``log`` until a SYN for each has come (a harness error if one
    does not) and returns their (serviceID, reply_to) pairs, in order.
    """
    rng = peer.ctx.rng
    asked = [(rng.randbytes(32), rng.randbytes(32)) for _ in range(count)]
    for service_id, reply_to in asked:
        peer.initiate(service_id, TransportProtocol.DATAGRAM, reply_to=reply_to)

    def all_heard(heard: list[Heard]) -> bool:
        return all(any(syn_to(service_id)(h) for h in heard) for service_id, _ in asked)

    gather(peer, all_heard, peer.ctx.timeout, log)
    if not all_heard(log):
        raise HarnessError(f"the initiator service sent no SYN: {describe_all(log)}")
    return asked


def first_syn(service_id: bytes, log: list[Heard]) -> Heard:
    """The first SYN to ``service_id`` in ``log`` (one :func:`initiate_flows` waited for)."""
    return next(h for h in log if syn_to(service_id)(h))


def answer_to(reply_to: bytes) -> Callable[[Heard], bool]:
    """The initiator service's answer naming how its flow ended, sent to ``reply_to``."""
    return lambda h: (
        h.packet is not None and h.control is None and h.packet.destination_service == reply_to
    )


def other_nonce(nonce: bytes) -> bytes:
    return bytes(b ^ 0x5A for b in nonce)


def echo_datagram(peer: SalPeer) -> HarnessFlow:
    return peer.connect(ECHO_DATAGRAM_SERVICE_ID, DATAGRAM)


# --- Section 5.9.1 and 5.9.2 -------------------------------------------------------------


@case(
    "sal.control",
    "5.9.1",
    "SAL-CTRL-1",
    "SAL-CTRL-2",
    "SAL-CTRL-3",
    "SAL-CTRL-10",
    "SAL-CTRL-11",
    needs=("sal",),
    title="A FIN exchange numbers every control packet, and a duplicate FIN is re-acknowledged",
)
def fin_exchange(ctx: Context) -> None:
    """The verno and ackno of the target's ACK and FIN, before and after a duplicate.

    After the handshake the target's snd.nxt is ISS_s + 1 and its rcv.nxt
    the harness's FIN's verno.  The harness closes a datagram echo flow:
    the target acknowledges the FIN (an ACK with verno snd.nxt, or its own
    FIN's ACK flag) and sends its FIN with verno ISS_s + 1.  The harness
    then sends its FIN again, unchanged: a duplicate, which the target must
    acknowledge again (now with verno ISS_s + 2) without taking it as new
    (ackno unchanged) or processing its FIN again (no FIN with a new verno).
    """
    peer = SalPeer(ctx)
    flow = echo_datagram(peer)
    verno, next_verno = flow.snd_nxt, seq(flow.peer_iss + 1)
    first = flow.send_control(FIN | ACK)
    log: list[Heard] = []
    fin = wait_fin(peer, flow, log, ctx.timeout)
    log += peer.fence()
    what = f"the harness's FIN (verno {verno})"
    ctx.require(
        "SAL-CTRL-10",
        bool(acknowledges(log, flow, verno)),
        f"{what} is acknowledged, by an ACK or by the ACK flag of the target's FIN",
        expected=f"ackno {seq(verno + 1)} with the ACK flag",
        actual=describe_all(log),
    )
    before_fin = [h for h in pure_acks(log, flow) if h.at <= fin.at]
    ctx.require(
        "SAL-CTRL-3",
        all(numbers(h) == (numbers(fin)[0], seq(verno + 1)) for h in before_fin),
        "an ACK sent before the target's FIN has verno snd.nxt, which the ACK leaves for "
        "the FIN, and ackno rcv.nxt, past the harness's FIN",
        expected=f"verno {numbers(fin)[0]} (the FIN's), ackno {seq(verno + 1)}",
        actual=describe_all(before_fin, empty="no pure ACK (the FIN acknowledged it)"),
    )
    ctx.require(
        "SAL-CTRL-1",
        numbers(fin)[0] == next_verno,
        "the target's FIN, its first sequence-consuming packet after the SYN-ACK, "
        "has verno ISS_s + 1",
        expected=f"verno {next_verno}",
        actual=fin.describe(),
    )
    if fin.flags is not None and fin.flags & ACK:
        ctx.require(
            "SAL-CTRL-2",
            numbers(fin)[1] == seq(verno + 1),
            "the target's FIN with the ACK flag has ackno rcv.nxt, past the harness's FIN",
            expected=f"ackno {seq(verno + 1)}",
            actual=fin.describe(),
        )
    retransmitted = resend_of(fin)
    after: list[Heard] = []
    for attempt in ("first", "second"):
        flow.send(first)
        heard = peer.fence()
        acks = pure_acks(heard, flow)
        what = f"the {attempt} duplicate of the harness's FIN (verno {verno}), in LASTACK"
        ctx.require(
            "SAL-CTRL-10",
            bool(acks),
            f"{what} is acknowledged again with an ACK",
            expected=f"ACK with ackno {seq(verno + 1)}",
            actual=describe_all(heard),
        )
        after += acks
        ctx.require(
            "SAL-CTRL-3",
            all(numbers(h) == (numbers(after[0])[0], seq(verno + 1)) for h in after),
            f"the ACK of {what} has ackno rcv.nxt and leaves snd.nxt unchanged: every ACK "
            "after the FIN has the same verno",
            expected=f"ackno {seq(verno + 1)}, one verno",
            actual=describe_all(after, empty="no ACK"),
        )
        ctx.require(
            "SAL-CTRL-1",
            all(numbers(h)[0] == seq(next_verno + 1) for h in acks),
            f"once its FIN (verno {next_verno}) is sent, the target's snd.nxt is one past it",
            expected=f"ACK verno {seq(next_verno + 1)}",
            actual=describe_all(acks, empty="no ACK"),
        )
        new = [h for h in heard if flow.ours(h) and not retransmitted(h) and h not in acks]
        ctx.require(
            "SAL-CTRL-11",
            all(numbers(h)[1] == seq(verno + 1) for h in acks) and not new,
            f"{what} is not taken as new or processed again: ackno stays rcv.nxt and "
            "nothing but the ACK (or a retransmission of the target's FIN) answers it",
            expected=f"ACK with ackno {seq(verno + 1)} only",
            actual=describe_all(heard),
        )
    flow.acknowledge(fin)


@case(
    "sal.control",
    "5.9.2",
    "SAL-CTRL-6",
    needs=("sal", "counters"),
    title="A control packet with a nonce other than the peer's is dropped, counted BAD_NONCE",
)
def bad_nonce(ctx: Context) -> None:
    """FINs with a foreign nonce, with the target's own nonce, and an ACK with a foreign one.

    Each must be dropped before it has any effect (Section 5.9.2, check 1):
    the harness's FIN that follows, with the right nonce and the same verno,
    is then new, acknowledged, and closes the flow.  The target's own nonce
    is valid only in an RST (Section 5.11.3), never in another packet.
    """
    peer = SalPeer(ctx)
    flow = echo_datagram(peer)
    verno = flow.snd_nxt
    foreign = other_nonce(flow.nonce)
    for detail, packet in (
        ("a FIN|ACK with a foreign nonce", flow.control(FIN | ACK, nonce=foreign)),
        ("a FIN|ACK with the target's own nonce", flow.control(FIN | ACK, nonce=flow.peer_nonce)),
        ("a FIN without ACK with a foreign nonce", flow.control(FIN, nonce=foreign)),
        ("an ACK with a foreign nonce", flow.control(ACK, nonce=foreign)),
    ):
        peer.dropped("SAL-CTRL-6", packet, ErrorCode.BAD_NONCE, detail, recv3=False)
    fin = close_after_drops(
        ctx,
        peer,
        flow,
        "SAL-CTRL-6",
        f"the dropped packets changed nothing: the FIN with the right nonce and verno {verno} "
        "is new, acknowledged, and answered by the target's FIN",
    )
    flow.acknowledge(fin)


@case(
    "sal.control",
    "5.9.2",
    "SAL-CTRL-7",
    needs=("sal", "counters"),
    title="A packet that acknowledges a verno never sent is dropped, counted BAD_SEQUENCE",
)
def ackno_never_sent(ctx: Context) -> None:
    """Acknowledgments one and more past snd.una, with and without an outstanding packet.

    With nothing outstanding (after the handshake, snd.una = ISS_s + 1), an
    ackno of snd.una + 1 (d = 1) or snd.una + 2^30 acknowledges what the
    target never sent; with its FIN outstanding (snd.una = its verno), an
    ackno of snd.una + 2 does.  None of these packets may have an effect:
    the FIN with the right ackno is then new, and the flow still closes
    normally.
    """
    peer = SalPeer(ctx)
    flow = echo_datagram(peer)
    una = seq(flow.peer_iss + 1)
    verno = flow.snd_nxt
    peer.dropped(
        "SAL-CTRL-7",
        flow.control(ACK, ackno=una + 1),
        ErrorCode.BAD_SEQUENCE,
        f"an ACK with ackno {seq(una + 1)} (d = 1) while nothing is outstanding",
        recv3=False,
    )
    peer.dropped(
        "SAL-CTRL-7",
        flow.control(FIN | ACK, ackno=una + (1 << 30)),
        ErrorCode.BAD_SEQUENCE,
        f"a FIN|ACK with ackno {seq(una + (1 << 30))} (d = 2^30)",
        recv3=False,
    )
    fin = close_after_drops(
        ctx,
        peer,
        flow,
        "SAL-CTRL-7",
        f"the dropped packets changed nothing: the FIN|ACK with ackno {una} "
        f"and verno {verno} is new and acknowledged",
    )
    fin_verno = numbers(fin)[0]
    peer.dropped(
        "SAL-CTRL-7",
        flow.control(ACK, ackno=fin_verno + 2),
        ErrorCode.BAD_SEQUENCE,
        f"an ACK with ackno {seq(fin_verno + 2)} (d = 2) while the target's FIN "
        f"(verno {fin_verno}) is outstanding",
        answered=resend_of(fin),
    )
    flow.acknowledge(fin)


@case(
    "sal.control",
    "5.9.2",
    "SAL-CTRL-8",
    needs=("sal", "counters"),
    title="A sequence-consuming packet ahead of rcv.nxt is dropped, counted BAD_SEQUENCE",
)
def verno_ahead(ctx: Context) -> None:
    """FINs 1, 2^30 and 2^31 - 1 ahead of the target's rcv.nxt, then the FIN at rcv.nxt.

    With a window of one packet the harness cannot legitimately be ahead;
    the dropped FINs must leave rcv.nxt where it was, so the FIN at rcv.nxt
    is new and acknowledged.
    """
    peer = SalPeer(ctx)
    flow = echo_datagram(peer)
    verno = flow.snd_nxt
    for ahead in (1, 1 << 30, (1 << 31) - 1):
        peer.dropped(
            "SAL-CTRL-8",
            flow.control(FIN | ACK, verno=verno + ahead),
            ErrorCode.BAD_SEQUENCE,
            f"a FIN|ACK with verno {seq(verno + ahead)}, {ahead} ahead of rcv.nxt {verno}",
            recv3=False,
        )
    fin = close_after_drops(
        ctx,
        peer,
        flow,
        "SAL-CTRL-8",
        f"the dropped FINs left rcv.nxt at {verno}: the FIN with that verno is new and "
        "acknowledged",
    )
    flow.acknowledge(fin)


@case(
    "sal.control",
    "5.15",
    "SAL-CTRL-9",
    "SAL-CONN-20",
    needs=("sal", "counters"),
    title="A control packet the flow's state does not accept is dropped before any effect",
)
def unexpected_control(ctx: Context) -> None:
    """A new SYN-ACK in CONNECTED, and a new FIN that acknowledges the FIN in LASTACK.

    Both pass the nonce, acknowledgment and sequence checks, and the state
    table has no row for them (Section 5.15): they are protocol errors,
    dropped and counted UNEXPECTED_CONTROL with no effect at all.  So the
    SYN-ACK consumes no verno (the harness's FIN with the same verno is then
    new and closes the flow), and the acknowledgment the second FIN
    carries is not taken (the flow stays in LASTACK and acknowledges a
    duplicate of the harness's first FIN).
    """
    peer = SalPeer(ctx)
    flow = echo_datagram(peer)
    verno = flow.snd_nxt
    syn_ack = flow.control(SYN | ACK, ackno=flow.peer_iss + 1, destination_service=flow.service_id)
    peer.dropped(
        "SAL-CONN-20",
        syn_ack,
        ErrorCode.UNEXPECTED_CONTROL,
        f"a SYN-ACK with the new verno {verno} on a CONNECTED flow",
        recv3=False,
    )
    first = flow.control(FIN | ACK)
    fin = close_after_drops(
        ctx,
        peer,
        flow,
        "SAL-CTRL-9",
        f"the dropped SYN-ACK consumed no verno: the FIN with verno {verno} is new, "
        "acknowledged and answered by the target's FIN",
    )
    fin_verno = numbers(fin)[0]
    second = flow.control(FIN | ACK, verno=verno + 1, ackno=fin_verno + 1)
    peer.dropped(
        "SAL-CONN-20",
        second,
        ErrorCode.UNEXPECTED_CONTROL,
        f"a new FIN (verno {seq(verno + 1)}) in LASTACK, acknowledging the target's FIN",
        answered=resend_of(fin),
    )
    flow.send(first)
    heard = peer.fence()
    ctx.require(
        "SAL-CTRL-9",
        bool(acknowledges(pure_acks(heard, flow), flow, verno)),
        "the dropped FIN's acknowledgment had no effect: the flow is still in LASTACK and "
        "acknowledges a duplicate of the harness's first FIN",
        expected=f"ACK with ackno {seq(verno + 1)}",
        actual=describe_all(heard),
    )
    flow.acknowledge(fin)


@case(
    "sal.control",
    "5.9.1",
    "SAL-CTRL-4",
    "SAL-CTRL-5",
    "SAL-CTRL-15",
    needs=("sal",),
    title="A FIN that becomes due while an RSYN-ACK is outstanding waits for its acknowledgment",
)
def one_outstanding(ctx: Context) -> None:
    """The window of one packet, made visible by a move (Section 5.10).

    The harness moves a datagram echo flow (an RSYN from a new socket): the
    target answers with an RSYN-ACK, which the harness leaves unacknowledged
    while it closes with a FIN without the ACK flag.  The echo service closes
    at once, but the target's FIN must wait: no FIN until the RSYN-ACK is
    acknowledged, and then a FIN with the next verno.  Meanwhile the
    retransmitted RSYN-ACK keeps its verno and flags, its ackno refreshed to
    acknowledge the harness's FIN.
    """
    peer = SalPeer(ctx)
    flow = echo_datagram(peer)
    moved = SalPeer(ctx)
    flow.peer = moved
    flow.send_control(RSYN)
    answer, log = moved.wait_for(
        lambda h: flow.ours(h) and h.flags is not None and bool(h.flags & RSYN), ctx.timeout
    )
    if answer is None or answer.control is None:
        raise HarnessError(f"the target did not answer the harness's move: {describe_all(log)}")
    log.append(answer)
    answer_verno = answer.control.verno
    verno = flow.snd_nxt
    flow.send_control(FIN)  # not acknowledging the RSYN-ACK
    again = resend_of(answer)
    gather(
        moved,
        lambda heard: any(again(h) and h.at > answer.at for h in heard),
        INITIAL_RTO_RANGE[1],
        log,
    )
    early = fins(log, flow)
    ctx.require(
        "SAL-CTRL-4",
        not early,
        f"while its RSYN-ACK (verno {answer_verno}) is unacknowledged, the target sends no FIN, "
        "although its echo service closed",
        expected="no FIN",
        actual=describe_all(early, empty="no FIN"),
    )
    resent = [h for h in log if again(h) and h is not answer]
    ctx.require(
        "SAL-CTRL-15",
        bool(resent),
        f"the unacknowledged RSYN-ACK (verno {answer_verno}) is sent again",
        expected=f"RSYN|ACK verno {answer_verno} again within {INITIAL_RTO_RANGE[1]} s",
        actual=describe_all(log),
    )
    if resent:
        ctx.require(
            "SAL-CTRL-5",
            all(numbers(h)[1] == seq(verno + 1) for h in resent),
            "the retransmitted RSYN-ACK keeps its verno and flags and refreshes its ackno to "
            f"rcv.nxt, past the harness's FIN (verno {verno})",
            expected=f"RSYN|ACK verno {answer_verno} ackno {seq(verno + 1)}",
            actual=describe_all(resent),
        )
    flow.acknowledge(answer)
    after: list[Heard] = []
    fin = wait_fin(moved, flow, after, ctx.timeout)
    ctx.require(
        "SAL-CTRL-4",
        numbers(fin)[0] == seq(answer_verno + 1),
        "once the RSYN-ACK is acknowledged, the FIN that waited goes out with the next verno",
        expected=f"FIN verno {seq(answer_verno + 1)}",
        actual=fin.describe(),
    )
    flow.acknowledge(fin)


# --- Section 5.9.3 -------------------------------------------------------------------------


@case(
    "sal.control",
    "5.9.3",
    "SAL-CTRL-12",
    "SAL-CTRL-13",
    "SAL-CTRL-14",
    "SAL-CTRL-15",
    "SAL-CTRL-5",
    "SAL-TIMER-1",
    "SAL-CLOSE-8",
    needs=("sal",),
    title="An unacknowledged FIN is sent again after the RTO, doubling; RSTs are never resent",
)
def retransmission(ctx: Context) -> None:
    """The target's FIN on three flows, timed over about three seconds.

    - Flow "unsampled": its SYN-ACK was sent twice (the harness repeated its
      SYN), so by Karn's rule the handshake gives no RTT sample and the RTO
      is still the initial 1 s: the FIN comes again after about 1 s, then
      about 2 s later (doubled), with the same verno and flags.
    - Flow "sampled": its handshake ACK went back at once, a sample of a few
      milliseconds: RTO = SRTT + 4 RTTVAR is below the 0.2 s minimum, so the
      FIN comes again after about 0.2 s.  This also shows that the target
      takes samples, so the first flow's 1 s is Karn's rule at work.
    - Flow "acknowledged": a stream flow whose target closed first; the
      harness acknowledges its FIN (FINWAIT2, the flow lives on): the timer
      stops and the FIN never comes again.
    - A packet for no flow draws one RST, which is never repeated.
    """
    peer = SalPeer(ctx)
    log: list[Heard] = []
    unsampled = peer.flow(ECHO_DATAGRAM_SERVICE_ID, DATAGRAM)
    if unsampled.open(ack=False) is None:
        raise HarnessError("no SYN-ACK from the datagram echo service")
    unsampled.send(unsampled.syn())
    again, others = peer.wait_for(unsampled.is_syn_ack, ctx.timeout)
    log += others
    if again is None:
        raise HarnessError("the datagram echo service did not resend its SYN-ACK to a repeated SYN")
    unsampled.send_control(ACK)
    sampled = echo_datagram(peer)
    acknowledged, fin_acknowledged = target_closes_first(peer, log)
    acknowledged.acknowledge(fin_acknowledged)
    acknowledged_at = time.monotonic()
    stray = peer.flow()
    stray.peer_flow_id = ctx.rng.randrange(1, 1 << 32)
    peer.send(stray.control(ACK))
    closers = (unsampled, sampled)
    vernos = [flow.snd_nxt for flow in closers]
    for flow in closers:
        flow.send_control(FIN | ACK)
    deadline = time.monotonic() + ctx.timeout + FIRST_WAIT
    while (left := deadline - time.monotonic()) > 0:
        heard = peer.hear(left)
        if heard is None:
            break
        log.append(heard)
        slow = fins(log, unsampled)
        if len(slow) >= 3:
            break
        if len(slow) == 1:
            deadline = slow[0].at + FIRST_WAIT
        elif len(slow) == 2:
            gap = slow[1].at - slow[0].at
            deadline = slow[1].at + max(INITIAL_RTO_RANGE[1], DOUBLING_RANGE[1] * gap) + 0.1
    window_end = time.monotonic()
    log += peer.fence()
    slow, fast = fins(log, unsampled), fins(log, sampled)
    if not slow or not fast:
        raise HarnessError(f"the datagram echo service sent no FIN: {describe_all(log)}")
    # Same verno and flags, current ackno (SAL-CTRL-5, SAL-CTRL-15).
    for name, sent, verno in (("unsampled", slow, vernos[0]), ("sampled", fast, vernos[1])):
        resent = sent[1:]
        ctx.require(
            "SAL-CTRL-5",
            all(resend_of(sent[0])(h) for h in resent),
            f"flow {name}: every retransmission of the target's FIN keeps its verno and flags",
            expected=sent[0].describe(),
            actual=describe_all(resent, empty="no retransmission"),
        )
        ctx.require(
            "SAL-CTRL-15",
            bool(resent) and all(numbers(h)[1] == seq(verno + 1) for h in resent),
            f"flow {name}: the unacknowledged FIN is sent again with the current ackno "
            f"({seq(verno + 1)}, past the harness's FIN)",
            expected="the same FIN again",
            actual=describe_all(resent, empty=f"none within {window_end - sent[0].at:.2f} s"),
        )
    ctx.require(
        "SAL-CTRL-14",
        len(slow) >= 2,
        "the retransmission timer starts when the FIN is sent: an unacknowledged FIN is sent again",
        expected=f"a retransmission within {FIRST_WAIT} s",
        actual=describe_all(slow),
    )
    fast_gap = fast[1].at - fast[0].at if len(fast) >= 2 else None
    samples = fast_gap is not None and fast_gap < INITIAL_RTO_RANGE[0]
    if fast_gap is not None:
        low, high = 0.15, 0.2 + SAMPLED_RTO_SLACK
        ctx.require(
            "SAL-CTRL-12",
            low <= fast_gap <= high,
            "after one RTT sample of a few milliseconds the RTO is its 0.2 s minimum: the "
            "FIN of flow sampled comes again after about 0.2 s",
            expected=f"between {low} and {high} s",
            actual=f"{fast_gap:.3f} s",
        )
        ctx.require(
            "SAL-TIMER-1",
            fast_gap >= low,
            "the RTO is never below RTO_MIN = 0.2 s",
            expected=f"at least {low} s",
            actual=f"{fast_gap:.3f} s",
        )
    if len(slow) >= 2:
        first_gap = slow[1].at - slow[0].at
        low, high = INITIAL_RTO_RANGE
        if samples:
            ctx.require(
                "SAL-CTRL-13",
                first_gap >= low,
                "no RTT sample is taken from a SYN-ACK that was sent twice: the FIN of flow "
                "unsampled waits the initial RTO, not the sampled one",
                expected=f"at least {low} s (flow sampled: {fast_gap:.3f} s)",
                actual=f"{first_gap:.3f} s",
            )
        if first_gap >= low or not samples:
            for requirement in ("SAL-CTRL-12", "SAL-TIMER-1"):
                ctx.require(
                    requirement,
                    low <= first_gap <= high,
                    "before any RTT sample the RTO is RTO_INITIAL = 1 s: the first "
                    "retransmission of the FIN of flow unsampled",
                    expected=f"between {low} and {high} s",
                    actual=f"{first_gap:.3f} s",
                )
        if len(slow) >= 3:
            second_gap = slow[2].at - slow[1].at
            ctx.require(
                "SAL-CTRL-15",
                DOUBLING_RANGE[0] * first_gap <= second_gap <= DOUBLING_RANGE[1] * first_gap,
                "the RTO doubles after each retransmission: the second gap is twice the first",
                expected=f"about {2 * first_gap:.2f} s",
                actual=f"{second_gap:.3f} s",
            )
        else:
            ctx.require(
                "SAL-CTRL-15",
                False,
                "the FIN of flow unsampled is sent a second time, after the doubled RTO",
                expected="a second retransmission",
                actual=describe_all(slow),
            )
    late = [h for h in fins(log, acknowledged) if h.at > acknowledged_at + CROSSING]
    ctx.require(
        "SAL-CTRL-14",
        not late,
        "the timer stops when the outstanding packet is acknowledged: the acknowledged FIN "
        f"(FINWAIT2) is not sent again in {window_end - acknowledged_at:.1f} s",
        expected="no retransmission",
        actual=describe_all(late, empty="none"),
    )
    rsts = [h for h in log if stray.is_reset(h)]
    ctx.require(
        "SAL-CLOSE-8",
        len(rsts) == 1,
        f"the RST that answers a packet for no flow is sent once, never again in "
        f"{window_end - (rsts[0].at if rsts else window_end):.1f} s",
        expected="exactly one RST",
        actual=describe_all(rsts, empty="no RST"),
    )
    for flow, sent in ((unsampled, slow), (sampled, fast)):
        flow.acknowledge(sent[0])
    acknowledged.send_control(RST | ACK, protocol=NONE)


@case(
    "sal.control",
    "5.9.3",
    "SAL-CTRL-16",
    "SAL-CTRL-12",
    "SAL-CLOSE-7",
    "SAL-CLOSE-8",
    "SAL-TIMER-1",
    needs=("sal",),
    slow=True,
    title="At the retransmission limit the flow fails: a timeout, one RST unless in REQUEST",
)
def retransmission_limit(ctx: Context) -> None:
    """Two flows the target opens (initiator service) and the harness never completes.

    - Flow "request": the harness never answers the target's SYN.  With no
      sample the SYN goes at 0, 1, 3, 7, 15, 31, 63, 123 and 183 s (the RTO
      doubles up to its 60 s maximum) and the attempt fails at 243 s: a
      timeout is reported (the initiator's answer "timed out") and, in
      REQUEST, no RST is sent.
    - Flow "lastack": a datagram flow the harness accepts and closes; it
      never acknowledges the target's FIN.  After 8 retransmissions the flow
      fails: the target sends exactly one RST, never repeated, reports a
      timeout, and the flow is gone.
    """
    peer = SalPeer(ctx)
    log: list[Heard] = []
    (requested, reply_request), (closing, reply_closing) = initiate_flows(peer, 2, log)
    flow = HarnessFlow.accept(peer, first_syn(closing, log))
    flow.send_syn_ack()
    gather(
        peer, lambda heard: any(flow.ours(h) and h.is_control(ACK) for h in heard), ctx.timeout, log
    )
    flow.send_control(FIN | ACK)
    fin = wait_fin(peer, flow, log, ctx.timeout)

    gather(
        peer,
        lambda heard: (
            any(answer_to(reply_request)(h) for h in heard)
            and any(answer_to(reply_closing)(h) for h in heard)
        ),
        300.0,
        log,
    )
    log += peer.collect(5.0)
    # The REQUEST flow: nine SYNs, the RTO doubling to its 60 s maximum, then "timed out".
    sent = [h for h in log if syn_to(requested)(h)]
    gaps = [b.at - a.at for a, b in itertools.pairwise(sent)]
    schedule = [1, 2, 4, 8, 16, 32, 60, 60]
    ctx.require(
        "SAL-CTRL-16",
        len(sent) == 9,
        "a SYN that is never answered is sent 9 times in all (8 retransmissions), no more",
        expected="9 SYNs",
        actual=f"{len(sent)} SYNs, gaps {', '.join(f'{g:.1f}' for g in gaps)} s",
    )
    ctx.require(
        "SAL-CTRL-12",
        len(gaps) == len(schedule)
        and all(
            0.8 * want <= got <= 1.25 * want + 0.5 for want, got in zip(schedule, gaps, strict=True)
        ),
        "the RTO starts at 1 s, doubles on each expiry and stops at its 60 s maximum",
        expected=f"gaps {schedule} s",
        actual=f"gaps {', '.join(f'{g:.1f}' for g in gaps)} s",
    )
    answers = [h for h in log if answer_to(reply_request)(h)]
    packet = answers[0].packet if answers else None
    ctx.require(
        "SAL-CTRL-16",
        packet is not None and packet.payload == b"timed out",
        "the attempt fails at the limit and a timeout is reported to the application "
        "(the initiator's answer)",
        expected='"timed out"',
        actual=repr(packet.payload) if packet is not None else "no answer",
    )
    if sent and answers:
        ctx.require(
            "SAL-TIMER-1",
            180 <= answers[0].at - sent[0].at <= 300,
            "with RTO_INITIAL 1 s, RTO_MAX 60 s and MAX_CONTROL_RETRANSMITS 8 a SYN "
            "attempt fails after 243 s",
            expected="about 243 s",
            actual=f"{answers[0].at - sent[0].at:.1f} s",
        )
    request_flow_ids = {h.packet.source_flow_id for h in sent if h.packet is not None}
    rst_request = [
        h
        for h in log
        if h.packet is not None
        and h.flags is not None
        and h.flags & RST
        and h.packet.source_flow_id in request_flow_ids
    ]
    ctx.require(
        "SAL-CTRL-16",
        not rst_request,
        "a flow that fails in REQUEST sends no RST",
        expected="no RST",
        actual=describe_all(rst_request, empty="none"),
    )
    # The LASTACK flow: 8 retransmissions of the FIN, one RST, "timed out", gone.
    resent = [h for h in fins(log, flow) if h is not fin]
    resets = [h for h in log if flow.is_reset(h)]
    ctx.require(
        "SAL-CTRL-16",
        len(resent) == 8 and len(resets) >= 1 and resets[0].at > resent[-1].at,
        "a FIN that is never acknowledged is sent again 8 times, then the flow fails with an RST",
        expected="8 retransmissions, then an RST",
        actual=f"{len(resent)} retransmissions; {describe_all(resets, empty='no RST')}",
    )
    one_reset(ctx, resets, "a flow that fails")
    answers = [h for h in log if answer_to(reply_closing)(h)]
    packet = answers[0].packet if answers else None
    ctx.require(
        "SAL-CTRL-16",
        packet is not None and packet.payload == b"timed out",
        "a flow that fails reports a timeout to the application (the initiator's answer)",
        expected='"timed out"',
        actual=repr(packet.payload) if packet is not None else "no answer",
    )
    judge_gone(
        ctx, "SAL-CTRL-16", flow, "a flow that failed is CLOSED: a later packet of it draws an RST"
    )
