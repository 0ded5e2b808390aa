"""Section 5.10: migration, with the harness as the peer that moves.

The target has one endpoint and never moves, but it must follow a peer
that does.  The harness opens a flow from one socket and then sends the
flow's RSYN from another (a new socket is a new address and port): the
target must answer at the new endpoint, freeze its transport until the
harness acknowledges the answer there, and then send everything to the new
endpoint.  The harness watches both sockets (and a third when it moves
twice), so that a packet sent to the wrong endpoint is seen.

What the target would do when it moves itself (Section 5.10.4: starting a
migration, its RSYN, RSYN-FIN and their completion) cannot be made to
happen over the wire, and is listed in :data:`UNOBSERVABLE`.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

from conformance.cases import case
from conformance.cases.sal_transport import (
    TOLERANCE,
    carries,
    controls,
    copies_until_reset,
    data_packets,
    echo,
    pump,
    reset,
    segment_of,
    warm_up,
)
from conformance.context import Context
from conformance.model import HarnessError
from conformance.salpeer import (
    ACK,
    FIN,
    HOLD_STREAM_SERVICE_ID,
    RST,
    RSYN,
    HarnessFlow,
    Heard,
    SalPeer,
    describe_all,
    seq,
    show,
)
from ref.wire import ErrorCode

ORDER = 45

_ONE_ENDPOINT = (
    "The target has one endpoint and no test service makes it move (Appendix C.4), so it "
    "never starts a migration: "
)

UNOBSERVABLE = {
    "SAL-MIG-3": _ONE_ENDPOINT + "when it would start one cannot be observed.",
    "SAL-MIG-4": _ONE_ENDPOINT + "its RSYN is never sent.",
    "SAL-MIG-5": _ONE_ENDPOINT + "its FIN never becomes an RSYN-FIN.",
    "SAL-MIG-12": _ONE_ENDPOINT + "it is never in RSYN_SENT, so it never leaves it.",
    "SAL-MIG-14": _ONE_ENDPOINT + "it is never in RSYN_SENT, where this drop applies.",
}

#: How long the harness watches a frozen flow: past two expiries of an RTO near 0.2 s.
FREEZE_WATCH = 0.5
#: The stream's RTO after a reset (SAL-STREAM-21): the initial 1 s, less a tolerance.
RESET_RTO = 1.0 - 0.4
#: How long the retransmission limit of a migration may take (8 doublings of the RTO).
LIMIT_WAIT = 300.0


def is_control(flow: HarnessFlow, flags: int) -> Callable[[Heard], bool]:
    """A control packet of ``flow`` whose flags are exactly ``flags``."""
    return lambda heard: flow.ours(heard) and heard.is_control(flags)


def with_rsyn(heard: list[Heard]) -> list[Heard]:
    """The packets among ``heard`` that carry the RSYN flag."""
    return [h for h in heard if h.flags is not None and h.flags & RSYN]


def at_both(flow: HarnessFlow, at_new: list[Heard], at_old: list[Heard]) -> str:
    """The flow's control packets heard at the new and at the old endpoint."""
    return (
        f"new: {describe_all(controls(flow, at_new))}; old: {describe_all(controls(flow, at_old))}"
    )


def acked_at_new_only(flow: HarnessFlow, at_new: list[Heard], at_old: list[Heard]) -> bool:
    """An ACK of the flow came to the new endpoint and nothing of it to the old one."""
    return any(is_control(flow, ACK)(h) for h in at_new) and not controls(flow, at_old)


def move(flow: HarnessFlow, to: SalPeer, flags: int = RSYN) -> int:
    """Send the flow's RSYN (or ``flags``) from the socket ``to``; returns its verno."""
    verno = flow.snd_nxt
    to.send(flow.control(flags))
    flow.snd_nxt = seq(verno + 1)
    return verno


def answer_of(ctx: Context, flow: HarnessFlow, peer: SalPeer, what: str) -> Heard:
    """The target's RSYN-ACK at ``peer`` (SAL-MIG-9); the case ends without it."""
    heard, _ = peer.wait_for(is_control(flow, RSYN | ACK))
    ctx.require(
        "SAL-MIG-9",
        heard is not None,
        f"{what} is answered with an RSYN-ACK at that socket",
        expected="RSYN|ACK",
        actual="nothing",
        fatal=True,
    )
    assert heard is not None
    return heard


@case(
    "sal.migration",
    "5.10.4",
    "SAL-MIG-9",
    "SAL-MIG-10",
    "SAL-MIG-2",
    "SAL-MIG-6",
    "SAL-MIG-13",
    needs=("sal",),
    title="An RSYN from a new endpoint is answered there; old copies never move the flow back",
)
def move_is_answered_at_new_endpoint(ctx: Context) -> None:
    """The simple case of Section 5.10.2, with a delayed copy of the RSYN from the old endpoint.

    The RSYN from the new socket is a move: the target answers it with a
    new RSYN-ACK (verno its snd.nxt, ackno past the RSYN) sent to the new
    endpoint only.  A copy of the RSYN from the old endpoint, before and
    after the move completes, is a duplicate whose RSYN is not fresh: it is
    only acknowledged, at the new endpoint, and the flow stays there.
    """
    old, new = SalPeer(ctx), SalPeer(ctx)
    flow = old.connect()
    rsyn = flow.control(RSYN)
    verno = move(flow, new)
    answer, _ = new.wait_for(lambda h: flow.ours(h) and h.control is not None)
    at_old = old.fence()
    ctx.require(
        "SAL-MIG-2",
        answer is not None and not controls(flow, at_old),
        "the answer to a move, sent while the candidate endpoint is set, goes to the candidate",
        expected="a control packet at the new endpoint, nothing at the old one",
        actual=f"new: {show(answer)}; old: {describe_all(controls(flow, at_old))}",
    )
    ctx.require(
        "SAL-MIG-9",
        answer is not None
        and answer.is_control(RSYN | ACK)
        and answer.source == new.wire.target
        and not controls(flow, at_old),
        "an RSYN sent from a new socket is answered with an RSYN-ACK to that socket only",
        expected="RSYN|ACK at the new endpoint, nothing at the old one",
        actual=f"new: {show(answer)}; old: {describe_all(controls(flow, at_old))}",
        fatal=True,
    )
    assert answer is not None and answer.control is not None
    ctx.require(
        "SAL-MIG-10",
        answer.control.verno == flow.rcv_nxt and answer.control.ackno == seq(verno + 1),
        "with nothing outstanding, the answer is a new RSYN-ACK: verno snd.nxt, ackno past the "
        "RSYN",
        expected=f"verno {flow.rcv_nxt}, ackno {seq(verno + 1)}",
        actual=show(answer),
    )
    # A delayed copy of the RSYN from the old endpoint, while the move is incomplete.
    old.send(rsyn)
    at_old = old.fence()
    at_new = new.fence()
    moved = with_rsyn(controls(flow, at_old))
    ctx.require(
        "SAL-MIG-6",
        not moved,
        "a copy of the RSYN from the old endpoint (rcv.rsyn set) is not processed as a move",
        expected="no RSYN-ACK to the old endpoint",
        actual=f"old: {describe_all(controls(flow, at_old))}",
    )
    if moved:  # the old endpoint is now the candidate: the rest would judge a different run
        reset(flow)
        return
    ctx.require(
        "SAL-MIG-2",
        acked_at_new_only(flow, at_new, at_old),
        "while the candidate endpoint is set, the ACK of a duplicate RSYN goes to it",
        expected="an ACK at the new endpoint, nothing at the old one",
        actual=at_both(flow, at_new, at_old),
    )
    flow.peer = new
    flow.acknowledge(answer)
    new.fence()
    # The same copy once the move is complete: still not fresh, so it cannot move the flow back.
    old.send(rsyn)
    at_old = old.fence()
    at_new = new.fence()
    moved = with_rsyn(controls(flow, at_old + at_new))
    ctx.require(
        "SAL-MIG-6",
        not moved,
        "a copy of the old RSYN after the move completed is not processed as a move",
        expected="no RSYN-ACK at either endpoint",
        actual=at_both(flow, at_new, at_old),
    )
    if moved:
        reset(flow)
        return
    ctx.require(
        "SAL-MIG-13",
        acked_at_new_only(flow, at_new, at_old),
        "after the move, the target acknowledges the old copy at the new peer endpoint",
        expected="an ACK at the new endpoint, nothing at the old one",
        actual=at_both(flow, at_new, at_old),
    )
    data = ctx.rng.randbytes(300)
    flow.write(data)
    pump(flow, lambda: len(flow.received) >= len(data), ctx.timeout)
    at_old = old.fence()
    ctx.require(
        "SAL-MIG-13",
        bytes(flow.received) == data and not data_packets(flow, at_old),
        "after the move, the echo of data sent from the new endpoint comes to the new endpoint",
        expected=f"the {len(data)} octets at the new endpoint, nothing at the old one",
        actual=f"{len(flow.received)} octets at the new endpoint; "
        f"old: {describe_all(data_packets(flow, at_old))}",
    )
    reset(flow)


@case(
    "sal.migration",
    "5.10.1",
    "SAL-MIG-1",
    "SAL-FLOW-5",
    "SAL-MIG-2",
    "SAL-MIG-9",
    "SAL-MIG-13",
    "SAL-STREAM-21",
    needs=("sal",),
    title="The transport is frozen until a move completes, then resumes towards the new endpoint",
)
def transport_frozen_during_move(ctx: Context) -> None:
    """A move while the target has echo data unacknowledged and more to send.

    Until the harness acknowledges the RSYN-ACK, the target must send no
    data packet at all, neither the retransmission its timer (near 0.2 s
    after the exchanges before) would send nor the echo of data that
    arrives meanwhile (SAL-MIG-1, SAL-FLOW-5), and every control packet
    goes to the new endpoint (SAL-MIG-2).  After the acknowledgment, its
    data goes to the new endpoint (SAL-MIG-13), and its RTT estimator starts
    afresh: no retransmission within 0.6 s of the one that follows the
    resumption, as an RTO of 1 s allows (SAL-STREAM-21).
    """
    old, new = SalPeer(ctx), SalPeer(ctx)
    flow = old.connect()
    warm_up(flow, ctx)
    flow.write(ctx.rng.randbytes(600))
    first, _ = old.wait_for(lambda h: (s := segment_of(flow, h)) is not None and bool(s.data))
    first_segment = None if first is None else first.segment
    if first_segment is None:
        raise HarnessError("the echo stream service did not echo 600 octets")
    move(flow, new)
    answer = answer_of(ctx, flow, new, "an RSYN from a new socket")
    later = ctx.rng.randbytes(400)
    flow.write(later)  # from the old endpoint, acknowledging nothing new
    frozen = old.collect(FREEZE_WATCH) + old.fence()
    frozen_new = new.fence()
    both = frozen + frozen_new
    moving = [h for h in data_packets(flow, both) if (s := h.segment) is None or carries(s)]
    ctx.require(
        "SAL-MIG-1",
        not moving,
        f"for {FREEZE_WATCH} s after its RSYN-ACK, with 600 octets unacknowledged and 400 more "
        "to echo, the target sends and retransmits no data",
        expected="no data at either endpoint",
        actual=describe_all(moving) if moving else "none",
    )
    ctx.require(
        "SAL-FLOW-5",
        not data_packets(flow, both),
        "the transport sends no data packet while the migration sub-state is not INITIAL",
        expected="no data packet",
        actual=describe_all(data_packets(flow, both)) if data_packets(flow, both) else "none",
    )
    ctx.require(
        "SAL-MIG-2",
        not controls(flow, frozen)
        and all(h.is_control(RSYN | ACK) for h in controls(flow, frozen_new)),
        "every control packet sent while the move is incomplete goes to the new endpoint",
        expected="RSYN-ACKs at the new endpoint, nothing at the old one",
        actual=f"old: {describe_all(controls(flow, frozen))}; "
        f"new: {describe_all(controls(flow, frozen_new))}",
    )
    flow.peer = new
    flow.acknowledge(answer)
    acked_at = time.monotonic()
    copies: list[float] = []
    resumed: list[Heard] = []
    deadline = acked_at + ctx.timeout + 1.0
    while (left := deadline - time.monotonic()) > 0:
        heard = new.hear(left)
        if heard is None:
            break
        segment = segment_of(flow, heard)
        if segment is None or not carries(segment):
            continue
        resumed.append(heard)
        if segment.sequence == first_segment.sequence and segment.data:
            copies.append(heard.at)
            if len(copies) == 1:
                deadline = heard.at + RESET_RTO + TOLERANCE
    at_old = old.fence()
    ctx.require(
        "SAL-MIG-13",
        bool(resumed) and not data_packets(flow, at_old),
        "once the RSYN-ACK is acknowledged, the transport resumes towards the new endpoint",
        expected="data at the new endpoint, nothing at the old one",
        actual=f"{len(resumed)} data segments at the new endpoint; old: "
        + describe_all(data_packets(flow, at_old)),
    )
    if copies:
        gaps = [b - a for a, b in itertools.pairwise(copies)]
        ctx.require(
            "SAL-STREAM-21",
            not gaps or gaps[0] >= RESET_RTO,
            "after the move the stream's RTO is the initial 1 s again: the oldest segment is not "
            "sent again within 0.6 s of its first sending after the move",
            expected=f"no second copy within {RESET_RTO:g} s",
            actual=", ".join(f"{g:.3f} s" for g in gaps) or "one copy only",
        )
    reset(flow)


@case(
    "sal.migration",
    "5.10.4",
    "SAL-MIG-9",
    "SAL-MIG-11",
    "SAL-MIG-13",
    needs=("sal",),
    title="A second move replaces the candidate; the outstanding RSYN-ACK follows it",
)
def second_move_replaces_candidate(ctx: Context) -> None:
    """The harness moves to a second socket, then to a third before completing.

    The RSYN from the third is a move again: the target's outstanding
    RSYN-ACK gets the new ackno, keeps its verno, and goes to the third
    socket at once (SAL-MIG-11), which becomes the candidate (SAL-MIG-9)
    and, after the ACK, the peer endpoint (SAL-MIG-13).
    """
    first_peer, second_peer, third_peer = SalPeer(ctx), SalPeer(ctx), SalPeer(ctx)
    flow = first_peer.connect()
    verno = move(flow, second_peer)
    answer = answer_of(ctx, flow, second_peer, "an RSYN from a second socket")
    assert answer.control is not None
    again = move(flow, third_peer)
    merged, _ = third_peer.wait_for(lambda h: flow.ours(h) and h.control is not None)
    at_first = first_peer.fence()
    at_second = second_peer.fence()
    stray = controls(flow, at_first) + [
        h
        for h in controls(flow, at_second)
        if not (
            h.is_control(RSYN | ACK) and h.control is not None and h.control.ackno == seq(verno + 1)
        )
    ]
    ctx.require(
        "SAL-MIG-9",
        merged is not None and not stray,
        "the RSYN of a second move makes the third socket the candidate: the answer goes there",
        expected="the answer at the third socket; nothing new at the first two",
        actual=f"third: {show(merged)}; others: {describe_all(stray)}",
    )
    ctx.require(
        "SAL-MIG-11",
        merged is not None
        and merged.control is not None
        and merged.is_control(RSYN | ACK)
        and merged.control.verno == answer.control.verno
        and merged.control.ackno == seq(again + 1),
        "the outstanding RSYN-ACK is sent again at once, same verno, ackno past the second RSYN",
        expected=f"RSYN|ACK verno {answer.control.verno} ackno {seq(again + 1)}",
        actual=show(merged),
    )
    if merged is None:
        reset(flow)
        return
    flow.peer = third_peer
    flow.acknowledge(merged)
    data = ctx.rng.randbytes(200)
    flow.write(data)
    pump(flow, lambda: len(flow.received) >= len(data), ctx.timeout)
    elsewhere = data_packets(flow, first_peer.fence() + second_peer.fence())
    ctx.require(
        "SAL-MIG-13",
        bytes(flow.received) == data and not elsewhere,
        "the candidate of the second move becomes the peer endpoint: the echo goes there",
        expected=f"the {len(data)} octets at the third socket only",
        actual=f"{len(flow.received)} octets there; elsewhere: {describe_all(elsewhere)}",
    )
    reset(flow)


def close_echo_stream(flow: HarnessFlow, ctx: Context) -> Heard:
    """End the harness's stream, acknowledge the echo's FIN, and return the target's SAL FIN."""
    flow.send_fin_segment()
    pump(flow, lambda: flow.peer_fin, ctx.timeout)
    fin, _ = flow.wait_control(FIN | ACK)
    if fin is None or fin.control is None:
        raise HarnessError("the echo stream service did not close its flow")
    return fin


@case(
    "sal.migration",
    "5.10.4",
    "SAL-MIG-11",
    "SAL-MIG-7",
    needs=("sal", "counters"),
    title="A move while the target's FIN is outstanding draws an RSYN-FIN-ACK; none in TIMEWAIT",
)
def move_while_fin_outstanding(ctx: Context) -> None:
    """The echo service closes; the harness moves instead of acknowledging the SAL FIN.

    The target (FINWAIT1, FIN outstanding) must add RSYN and ACK to its
    FIN, keep its verno, refresh its ackno and send it at once to the new
    endpoint, and retransmit it there (SAL-MIG-11).  After the move and the
    close complete, the target is in TIMEWAIT, where a fresh RSYN is
    dropped, counted UNEXPECTED_CONTROL (SAL-MIG-7).
    """
    old, new = SalPeer(ctx), SalPeer(ctx)
    flow = old.connect()
    echo(flow, ctx.rng.randbytes(100), ctx.timeout)
    fin = close_echo_stream(flow, ctx)
    assert fin.control is not None
    verno = move(flow, new)
    merged, _ = new.wait_for(lambda h: flow.ours(h) and h.control is not None)
    at_old = old.fence()
    ctx.require(
        "SAL-MIG-11",
        merged is not None
        and merged.control is not None
        and merged.is_control(RSYN | FIN | ACK)
        and merged.control.verno == fin.control.verno
        and merged.control.ackno == seq(verno + 1)
        and not with_rsyn(controls(flow, at_old)),
        "with its FIN outstanding, the target answers an RSYN from a new socket with its FIN "
        "turned into an RSYN-FIN-ACK, same verno, sent there",
        expected=f"RSYN|FIN|ACK verno {fin.control.verno} ackno {seq(verno + 1)} at the new "
        "endpoint",
        actual=f"new: {show(merged)}; old: {describe_all(controls(flow, at_old))}",
    )
    if merged is None:
        reset(flow)
        return
    again, _ = new.wait_for(is_control(flow, RSYN | FIN | ACK), 1.0 + TOLERANCE)
    at_old = old.fence()
    ctx.require(
        "SAL-MIG-11",
        again is not None and not controls(flow, at_old),
        "the merged packet is retransmitted to the new endpoint",
        expected="RSYN|FIN|ACK again at the new endpoint, nothing at the old one",
        actual=f"new: {show(again)}; old: {describe_all(controls(flow, at_old))}",
    )
    flow.peer = new
    flow.acknowledge(merged)  # FINWAIT2, at the new endpoint
    flow.send_control(FIN | ACK)  # TIMEWAIT
    closing, _ = new.wait_for(is_control(flow, ACK))
    if closing is None:
        raise HarnessError("the target did not acknowledge the harness's FIN")
    new.fence()
    new.dropped(
        "SAL-MIG-7",
        flow.control(RSYN),
        ErrorCode.UNEXPECTED_CONTROL,
        "a fresh RSYN for a flow in TIMEWAIT",
    )
    at_old = old.fence()
    ctx.require(
        "SAL-MIG-7",
        not controls(flow, at_old),
        "the RSYN in TIMEWAIT is not answered at the old endpoint either",
        expected="nothing",
        actual=describe_all(controls(flow, at_old)),
    )


@case(
    "sal.migration",
    "5.10.4",
    "SAL-MIG-7",
    needs=("sal", "counters"),
    title="An RSYN for a flow in RESPOND is dropped, counted UNEXPECTED_CONTROL",
)
def rsyn_in_respond(ctx: Context) -> None:
    """The harness moves before it has acknowledged the SYN-ACK.

    A flow in RESPOND is not established: an RSYN, alone or with the ACK
    that would complete the handshake, must be dropped and counted, and
    draws nothing at either endpoint.
    """
    old, new = SalPeer(ctx), SalPeer(ctx)
    flow = old.flow()
    if flow.open(ack=False) is None:
        raise HarnessError("no SYN-ACK from the echo stream service")
    for flags, what in ((RSYN, "an RSYN"), (RSYN | ACK, "an RSYN-ACK acknowledging the SYN-ACK")):
        new.dropped(
            "SAL-MIG-7",
            flow.control(flags),
            ErrorCode.UNEXPECTED_CONTROL,
            f"{what} from a new socket for a flow in RESPOND",
        )
    at_old = old.fence()
    ctx.require(
        "SAL-MIG-7",
        not with_rsyn(controls(flow, at_old)),
        "the RSYNs in RESPOND draw no RSYN-ACK at the old endpoint",
        expected="no RSYN-ACK",
        actual=describe_all(controls(flow, at_old)),
    )
    flow.send_control(RST)


@case(
    "sal.migration",
    "5.10.4",
    "SAL-MIG-6",
    needs=("sal",),
    title="An RSYN-FIN repeating an accepted FIN is fresh once, and only once",
)
def rsyn_fin_after_fin(ctx: Context) -> None:
    """The harness closes, then moves as if the target's ACK of its FIN were lost.

    Its RSYN-FIN has the FIN's verno (rcv.nxt - 1) and the target accepted
    the plain FIN (rcv.rsyn false): the RSYN is fresh and is answered with
    an RSYN-ACK at the new endpoint.  A copy of the same RSYN-FIN then
    finds rcv.rsyn set: it is only acknowledged.  The hold service keeps
    the target's side open, so nothing else happens meanwhile.
    """
    old, new = SalPeer(ctx), SalPeer(ctx)
    flow = old.connect(HOLD_STREAM_SERVICE_ID)
    flow.send_fin_segment()
    end = flow.stream_nxt

    def acknowledges_fin(heard: Heard) -> bool:
        segment = segment_of(flow, heard)
        return segment is not None and segment.acknowledgment == end

    acked, _ = old.wait_for(acknowledges_fin)
    if acked is None:
        raise HarnessError("the hold stream did not acknowledge the harness's stream FIN")
    verno = flow.snd_nxt
    flow.send_control(FIN | ACK)
    if old.wait_for(is_control(flow, ACK))[0] is None:
        raise HarnessError("the target did not acknowledge the harness's FIN")
    rsyn_fin = flow.control(RSYN | FIN | ACK, verno=verno)  # the FIN, moved
    new.send(rsyn_fin)
    answer, _ = new.wait_for(lambda h: flow.ours(h) and h.control is not None)
    at_old = old.fence()
    ctx.require(
        "SAL-MIG-6",
        answer is not None
        and answer.control is not None
        and answer.is_control(RSYN | ACK)
        and answer.control.ackno == seq(verno + 1)
        and not controls(flow, at_old),
        "an RSYN-FIN repeating the accepted FIN, from a new socket, is a fresh RSYN: it draws "
        "an RSYN-ACK there",
        expected=f"RSYN|ACK ackno {seq(verno + 1)} at the new endpoint",
        actual=f"new: {show(answer)}; old: {describe_all(controls(flow, at_old))}",
    )
    if answer is None:
        reset(flow)
        return
    new.send(rsyn_fin)
    heard = new.fence()
    before = [h for h in controls(flow, heard) if h.at <= new.fenced_at]
    ctx.require(
        "SAL-MIG-6",
        any(h.is_control(ACK) for h in before) and not with_rsyn(before),
        "a copy of the RSYN-FIN, once rcv.rsyn is set, is only acknowledged",
        expected="an ACK, no RSYN-ACK",
        actual=describe_all(before),
    )
    flow.peer = new
    flow.acknowledge(answer)
    new.fence()
    reset(flow)


@case(
    "sal.migration",
    "5.10.4",
    "SAL-MIG-8",
    needs=("sal",),
    title="An RSYN-ACK from the peer endpoint is an answer: only acknowledged",
)
def answer_is_only_acknowledged(ctx: Context) -> None:
    """A new RSYN with the ACK flag from the peer's own endpoint.

    It is not a move (the source is the peer endpoint and the ACK flag is
    set): the target must only acknowledge it, with a plain ACK, and keep
    its transport running, so the echo of data sent next comes at once.
    """
    peer = SalPeer(ctx)
    flow = peer.connect()
    verno = flow.snd_nxt
    flow.send_control(RSYN | ACK)
    heard = peer.fence()
    answers = controls(flow, heard)
    data = ctx.rng.randbytes(200)
    flow.write(data)
    pump(flow, lambda: len(flow.received) >= len(data), ctx.timeout)
    ctx.require(
        "SAL-MIG-8",
        len(answers) == 1
        and answers[0].is_control(ACK)
        and answers[0].control is not None
        and answers[0].control.ackno == seq(verno + 1)
        and bytes(flow.received) == data,
        "an RSYN-ACK from the peer endpoint draws one ACK and leaves the transport running",
        expected=f"one ACK with ackno {seq(verno + 1)}, then the echo of {len(data)} octets",
        actual=f"{describe_all(answers)}; echo of {len(flow.received)} octets",
    )
    reset(flow)


@case(
    "sal.migration",
    "5.10.4",
    "SAL-MIG-15",
    needs=("sal",),
    slow=True,
    title="A move never completed fails the flow at the retransmission limit, with an RST",
)
def move_fails_at_retransmission_limit(ctx: Context) -> None:
    """The harness moves and never acknowledges the RSYN-ACK (up to about 4 minutes).

    The target retransmits its RSYN-ACK 8 times to the new endpoint, then
    sends an RST there and closes the flow: an ACK for the flow afterwards
    draws the RST of a packet for no flow.
    """
    old, new = SalPeer(ctx), SalPeer(ctx)
    flow = old.connect()
    move(flow, new)
    copies, rst = copies_until_reset(new, flow, is_control(flow, RSYN | ACK), LIMIT_WAIT)
    at_old = old.fence()
    [(closed, after)] = new.absent([flow])
    ctx.require(
        "SAL-MIG-15",
        copies == 9 and rst is not None and not controls(flow, at_old) and closed,
        "an RSYN-ACK never acknowledged is sent 9 times (8 retransmissions), then an RST goes "
        "to the new endpoint and the flow is closed",
        expected="9 RSYN-ACKs, an RST, then an RST for a packet of the closed flow",
        actual=f"{copies} RSYN-ACKs, then {show(rst)}; afterwards {describe_all(after)}; old: "
        f"{describe_all(controls(flow, at_old))}",
    )
