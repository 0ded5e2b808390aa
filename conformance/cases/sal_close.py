"""Sections 5.11 and 5.15: closing and resetting flows, state by state.

The echo services close their direction once the harness has closed its
own (Appendix C.4).  On a datagram flow the harness therefore closes first
(the target goes CONNECTED, CLOSEWAIT, LASTACK); on a stream flow the
harness can end only its stream, so that the echo service ends its stream
and closes the flow before the harness does (FINWAIT1), and the harness
then picks the order: acknowledge first (FINWAIT2), close without
acknowledging (CLOSING, a simultaneous close), or both in one FIN
(TIMEWAIT).  A state shows on the wire through what the target still does:
a flow that exists ignores a harmless ACK and acknowledges a duplicate FIN;
a flow that is gone answers with an RST (SAL-RST-1); an outstanding FIN is
retransmitted.

Reports to the application are observable through the initiator service,
whose answer names how its flow ended.  The 60-second timers run only with
``--slow``.
"""

from __future__ import annotations

import time

from conformance.cases import case
from conformance.cases.sal_control import (
    CROSSING,
    acknowledges,
    answer_to,
    close_first,
    echo_datagram,
    fin_heard,
    fins,
    first_syn,
    gather,
    initiate_flows,
    judge_gone,
    numbers,
    one_reset,
    other_nonce,
    pure_acks,
    resend_of,
    target_closes_first,
)
from conformance.context import Context
from conformance.model import HarnessError
from conformance.salpeer import (
    ACK,
    FIN,
    NONE,
    RST,
    HarnessFlow,
    Heard,
    SalPeer,
    describe_all,
    seq,
)
from ref.wire import ErrorCode, SalPacket, StreamFlags

ORDER = 23

UNOBSERVABLE: dict[str, str] = {}

#: How long an acknowledged FIN must stay quiet, and an outstanding one have come again:
#: several times the 0.2 s RTO that a flow has after its handshake's sample.
QUIET = 0.7
#: The 60-second timers of Section 5.11.1, judged with this margin either way.
TIMER = 60.0
MARGIN = 5.0


def _dup_fin_acked(
    ctx: Context, peer: SalPeer, flows: dict[str, tuple[HarnessFlow, SalPacket, int]]
) -> None:
    """Each flow is in TIMEWAIT: a duplicate of the harness's FIN is acknowledged again."""
    for flow, first, _ in flows.values():
        flow.send(first)
    heard = peer.fence()
    for name, (flow, _, verno) in flows.items():
        acks = acknowledges(pure_acks(heard, flow), flow, verno)
        ctx.require(
            "SAL-CLOSE-5",
            bool(acks),
            f"flow {name} in TIMEWAIT: a duplicate of the harness's FIN (verno {verno}) is "
            "acknowledged again",
            expected=f"ACK with ackno {seq(verno + 1)}",
            actual=describe_all(h for h in heard if flow.ours(h)),
        )


@case(
    "sal.close",
    "5.11.1",
    "SAL-CLOSE-2",
    "SAL-CLOSE-3",
    "SAL-CONN-19",
    "SAL-CLOSE-1",
    needs=("sal",),
    title="The peer closes first: CLOSEWAIT, LASTACK, and CLOSED on the ACK of the FIN",
)
def peer_closes_first(ctx: Context) -> None:
    """Two datagram echo flows, closed by a FIN without and with the ACK flag.

    Each FIN is accepted (SAL-CLOSE-2): acknowledged, and the echo service,
    told that the peer will send no more, closes too: the target's FIN
    (CLOSEWAIT, then LASTACK), which should carry the ACK flag with ackno
    rcv.nxt.  The flow lives until its FIN is acknowledged (a duplicate of
    the harness's FIN is acknowledged again), and is gone after (a harmless
    ACK draws an RST).
    """
    peer = SalPeer(ctx)
    closed: list[tuple[HarnessFlow, Heard, SalPacket, int]] = []
    for flags, what in ((FIN, "FIN without the ACK flag"), (FIN | ACK, "FIN with the ACK flag")):
        flow = echo_datagram(peer)
        verno = flow.snd_nxt
        log: list[Heard] = []
        first = flow.control(flags)
        flow.send_control(flags)
        gather(peer, fin_heard(flow), ctx.timeout, log)
        ctx.require(
            "SAL-CLOSE-2",
            bool(acknowledges(log, flow, verno)) and bool(fins(log, flow)),
            f"a {what} on a CONNECTED flow is accepted: acknowledged, and the echo "
            "service closes too (CLOSEWAIT, then LASTACK)",
            expected=f"ackno {seq(verno + 1)}, then the target's FIN",
            actual=describe_all(log),
        )
        if not fins(log, flow):
            return
        fin = fins(log, flow)[0]
        ctx.require(
            "SAL-CLOSE-1",
            fin.flags is not None and bool(fin.flags & ACK) and numbers(fin)[1] == seq(verno + 1),
            "the target's FIN carries the ACK flag with ackno rcv.nxt",
            expected=f"ACK|FIN with ackno {seq(verno + 1)}",
            actual=fin.describe(),
        )
        closed.append((flow, fin, first, verno))
    for flow, _, first, _ in closed:
        flow.send(first)
    heard = peer.fence()
    for flow, _, _, verno in closed:
        ctx.require(
            "SAL-CONN-19",
            bool(acknowledges(pure_acks(heard, flow), flow, verno)),
            "in LASTACK the flow lives until its FIN is acknowledged: a duplicate of the "
            "harness's FIN is acknowledged again",
            expected=f"ACK with ackno {seq(verno + 1)}",
            actual=describe_all(h for h in heard if flow.ours(h)),
        )
    for flow, fin, _, _ in closed:
        flow.acknowledge(fin)
    for gone, heard_flow in peer.absent([c[0] for c in closed]):
        ctx.require(
            "SAL-CLOSE-3",
            gone,
            "LASTACK, receive ACK of FIN: the flow is CLOSED, and a later packet of it "
            "draws an RST",
            expected="an RST",
            actual=describe_all(heard_flow),
        )


@case(
    "sal.close",
    "5.11.1",
    "SAL-CLOSE-3",
    "SAL-CLOSE-2",
    "SAL-CLOSE-5",
    "SAL-CTRL-5",
    needs=("sal",),
    title="The target closes first: FINWAIT2, CLOSING and TIMEWAIT in the three orders",
)
def target_closes_first_orders(ctx: Context) -> None:
    """Three stream echo flows whose target closed first (FINWAIT1), closed three ways.

    - "finwait2": the harness acknowledges the target's FIN (FINWAIT2: the
      FIN is not sent again, the flow lives), then sends its FIN without
      the ACK flag: acknowledged (TIMEWAIT).
    - "timewait": the harness sends one FIN that also acknowledges the
      target's FIN: acknowledged, and the target's FIN is not sent again
      (TIMEWAIT, not CLOSING).
    - "closing": the harness sends a FIN without the ACK flag (a
      simultaneous close): acknowledged, and the target's FIN, still
      outstanding, comes again with the same verno and its ackno
      refreshed past the harness's FIN (CLOSING); once acknowledged,
      TIMEWAIT.
    In TIMEWAIT every flow acknowledges a duplicate of the harness's FIN
    again and is still there.
    """
    peer = SalPeer(ctx)
    log: list[Heard] = []
    waiting, waiting_fin = target_closes_first(peer, log)
    direct, direct_fin = target_closes_first(peer, log)
    closing, closing_fin = target_closes_first(peer, log)
    start = time.monotonic()
    # closing: a FIN that does not acknowledge the target's FIN
    closing_verno = closing.snd_nxt
    closing_first = closing.control(FIN)
    closing.send_control(FIN)
    # finwait2: acknowledge the target's FIN
    waiting.acknowledge(waiting_fin)
    # timewait: a FIN that acknowledges the target's FIN
    direct.rcv_nxt = seq(numbers(direct_fin)[0] + 1)
    direct_verno = direct.snd_nxt
    direct_first = direct.control(FIN | ACK)
    direct.send_control(FIN | ACK)
    again = resend_of(closing_fin)
    log += peer.collect(QUIET)
    gather(peer, lambda heard: any(again(h) and h.at > start for h in heard), 2.0, log)
    quiet_for = time.monotonic() - start
    for name, flow in (("finwait2", waiting), ("timewait", direct)):
        late = [h for h in fins(log, flow) if h.at > start + CROSSING]
        ctx.require(
            "SAL-CLOSE-3",
            not late,
            f"flow {name}: FINWAIT1, receive "
            + ("ACK of FIN: FINWAIT2" if flow is waiting else "FIN with ACK of FIN: TIMEWAIT")
            + f"; the target's FIN is acknowledged and not sent again in {quiet_for:.1f} s",
            expected="no retransmission of the FIN",
            actual=describe_all(late, empty="none"),
        )
    for name, flow, verno in (
        ("timewait", direct, direct_verno),
        ("closing", closing, closing_verno),
    ):
        ctx.require(
            "SAL-CLOSE-3",
            bool(acknowledges(log, flow, verno)),
            f"flow {name}: the harness's FIN (verno {verno}) in FINWAIT1 is acknowledged",
            expected=f"ackno {seq(verno + 1)}",
            actual=describe_all(h for h in log if flow.ours(h) and h.at > start),
        )
    resent = [h for h in log if again(h) and h.at > start]
    ctx.require(
        "SAL-CLOSE-3",
        bool(resent),
        "flow closing: FINWAIT1, receive FIN, not ACK of FIN: CLOSING, where the target's "
        "FIN is still outstanding and sent again",
        expected=f"the FIN (verno {numbers(closing_fin)[0]}) again",
        actual=describe_all(h for h in log if closing.ours(h) and h.at > start),
    )
    if resent:
        ctx.require(
            "SAL-CTRL-5",
            numbers(resent[-1])[1] == seq(closing_verno + 1),
            "the retransmitted FIN keeps its verno and flags and refreshes its ackno past "
            "the harness's FIN",
            expected=f"ackno {seq(closing_verno + 1)}",
            actual=resent[-1].describe(),
        )
    # finwait2 -> TIMEWAIT on a FIN without ACK; closing -> TIMEWAIT on the ACK of its FIN.
    judge_gone(
        ctx,
        "SAL-CLOSE-3",
        waiting,
        "flow finwait2: FINWAIT2 keeps the flow while the peer has not closed",
        gone=False,
    )
    waiting_verno = waiting.snd_nxt
    waiting_first = waiting.control(FIN)
    waiting.send_control(FIN)
    closing.acknowledge(closing_fin)
    answers = [h for h in peer.fence() if waiting.ours(h)]
    waiting_acknowledged = bool(acknowledges(answers, waiting, waiting_verno))
    ctx.require(
        "SAL-CLOSE-3",
        waiting_acknowledged,
        f"flow finwait2: FINWAIT2, receive FIN (verno {waiting_verno}): acknowledge it, "
        "go to TIMEWAIT",
        expected=f"ACK with ackno {seq(waiting_verno + 1)}",
        actual=describe_all(answers),
    )
    flows = {
        "finwait2": (waiting, waiting_first, waiting_verno),
        "timewait": (direct, direct_first, direct_verno),
        "closing": (closing, closing_first, closing_verno),
    }
    there = peer.present([f[0] for f in flows.values()])
    for name, (alive, heard) in zip(flows, there, strict=True):
        ctx.require(
            "SAL-CLOSE-3",
            alive,
            f"flow {name} is in TIMEWAIT, not CLOSED: a harmless ACK draws no RST",
            expected="no RST",
            actual=describe_all(heard),
        )
    ctx.require(
        "SAL-CLOSE-2",
        waiting_acknowledged or not there[0][0],
        "flow finwait2: a FIN without the ACK flag is accepted in FINWAIT2 (it was "
        "acknowledged, or at least it changed the flow)",
        expected=f"ACK with ackno {seq(waiting_verno + 1)}",
        actual=describe_all(answers),
    )
    _dup_fin_acked(
        ctx,
        peer,
        {name: f for (name, f), (alive, _) in zip(flows.items(), there, strict=True) if alive},
    )
    for flow, _, _ in flows.values():
        flow.send_control(RST | ACK, protocol=NONE)


@case(
    "sal.close",
    "5.11.3",
    "SAL-RST-5",
    "SAL-RST-6",
    "SAL-RST-7",
    needs=("sal", "counters"),
    title="An RST is accepted with the peer's nonce or an echo of the host's own, never another",
)
def reset_nonce(ctx: Context) -> None:
    """RSTs with a foreign and a zero nonce, then with the target's nonce, then with the harness's.

    The first two are dropped, counted BAD_NONCE, and the flow survives
    (a challenge ACK may answer them, SAL-RST-7).  An RST that echoes the
    target's own nonce (what a host without the flow sends) and one with
    the harness's nonce (what an aborting peer sends) are accepted, and
    the flow is gone: a later packet of it draws an RST.
    """
    peer = SalPeer(ctx)
    flow = echo_datagram(peer)

    def challenge(heard: Heard) -> bool:
        return flow.ours(heard) and heard.is_control(ACK)

    heard: list[Heard] = []
    for what, nonce in (("a foreign nonce", other_nonce(flow.nonce)), ("a zero nonce", bytes(8))):
        peer.dropped(
            "SAL-RST-5",
            flow.control(RST | ACK, nonce=nonce, protocol=NONE),
            ErrorCode.BAD_NONCE,
            f"an RST|ACK with {what} on a CONNECTED flow",
            answered=challenge,
            log=heard,
        )
    ctx.require(
        "SAL-RST-7",
        any(challenge(h) for h in heard),
        "an RST dropped for its nonce on a CONNECTED flow draws a challenge ACK",
        expected="an ACK on the flow",
        actual=describe_all(heard),
    )
    judge_gone(
        ctx,
        "SAL-RST-5",
        flow,
        "the dropped RSTs left the flow as it was: a harmless ACK draws no RST",
        gone=False,
    )
    other = echo_datagram(peer)
    for target, what, fields in (
        (flow, "the target's own nonce (an echo)", {"nonce": flow.peer_nonce, "ackno": 0}),
        (other, "the harness's nonce (the peer's)", {}),
    ):
        before = peer.counters()
        target.send_control(RST if fields else RST | ACK, protocol=NONE, **fields)
        heard = peer.fence()
        refused = (peer.counters() - before)["drop.BAD_NONCE"]
        ctx.require(
            "SAL-RST-5",
            not refused,
            f"an RST with {what} is accepted, not dropped for its nonce",
            expected="drop.BAD_NONCE unchanged",
            actual=f"drop.BAD_NONCE +{refused}; {describe_all(heard)}",
        )
        judge_gone(
            ctx,
            "SAL-RST-6",
            target,
            f"on accepting an RST with {what} the flow moves to CLOSED: a later packet "
            "draws an RST",
        )


@case(
    "sal.close",
    "5.11.3",
    "SAL-RST-6",
    "SAL-CONN-19",
    needs=("sal",),
    title="A valid RST closes the flow in every state, reporting refused or reset",
)
def reset_each_state(ctx: Context) -> None:
    """One flow in each state the harness can bring the target to, each reset.

    RESPOND (no handshake ACK), CONNECTED, CLOSEWAIT (the harness closed
    and does not acknowledge the echo's end of stream, so the echo cannot
    close), LASTACK, FINWAIT1, FINWAIT2, CLOSING and TIMEWAIT: each moves
    to CLOSED on a valid RST, so a later packet of it draws an RST.  Two
    flows the target opens (initiator service) report the outcome: an RST
    in REQUEST is "connection refused", one in CONNECTED "connection reset".
    """
    peer = SalPeer(ctx)
    log: list[Heard] = []
    flows: dict[str, HarnessFlow] = {}
    respond = peer.flow()
    if respond.open(ack=False) is None:
        raise HarnessError("no SYN-ACK from the stream echo service")
    flows["RESPOND"] = respond
    flows["CONNECTED"] = echo_datagram(peer)
    closewait = peer.connect()
    closewait.send_fin_segment()
    gather(
        peer,
        lambda heard: any(
            closewait.ours(h) and (s := h.segment) is not None and bool(s.flags & StreamFlags.FIN)
            for h in heard
        ),
        ctx.timeout,
        log,
    )
    closewait_verno = closewait.snd_nxt
    closewait.send_control(FIN | ACK)
    gather(
        peer, lambda heard: bool(acknowledges(heard, closewait, closewait_verno)), ctx.timeout, log
    )
    flows["CLOSEWAIT"] = closewait
    lastack = echo_datagram(peer)
    close_first(peer, lastack, log)
    flows["LASTACK"] = lastack
    finwait1, _ = target_closes_first(peer, log)
    flows["FINWAIT1"] = finwait1
    finwait2, fin = target_closes_first(peer, log)
    finwait2.acknowledge(fin)
    flows["FINWAIT2"] = finwait2
    closing, _ = target_closes_first(peer, log)
    verno = closing.snd_nxt
    closing.send_control(FIN)
    gather(peer, lambda heard: bool(acknowledges(heard, closing, verno)), ctx.timeout, log)
    flows["CLOSING"] = closing
    timewait, fin = target_closes_first(peer, log)
    timewait.rcv_nxt = seq(numbers(fin)[0] + 1)
    verno = timewait.snd_nxt
    timewait.send_control(FIN | ACK)
    gather(peer, lambda heard: bool(acknowledges(heard, timewait, verno)), ctx.timeout, log)
    flows["TIMEWAIT"] = timewait
    # Two flows of the target's own: refused in REQUEST, reset in CONNECTED.
    (refused_id, reply_refused), (reset_id, reply_reset) = initiate_flows(peer, 2, log)
    refused_syn, reset_syn = first_syn(refused_id, log), first_syn(reset_id, log)
    server = HarnessFlow.accept(peer, reset_syn)
    server.send_syn_ack()
    gather(
        peer,
        lambda heard: any(server.ours(h) and h.is_control(ACK) for h in heard),
        ctx.timeout,
        log,
    )
    # Every RST: the harness's nonce and an echo of the target's alternate.
    refuser = HarnessFlow.accept(peer, refused_syn)
    refuser.send(
        refuser.control(
            RST | ACK,
            source_flow=0,
            verno=0,
            ackno=refuser.peer_iss + 1,
            nonce=refuser.peer_nonce,
            protocol=NONE,
        )
    )
    server.send_control(RST | ACK, protocol=NONE)
    for index, flow in enumerate(flows.values()):
        nonce = flow.nonce if index % 2 else flow.peer_nonce
        flow.send_control(RST | ACK, nonce=nonce, protocol=NONE)
    log += peer.fence()
    for state, (gone, heard) in zip(flows, peer.absent(list(flows.values())), strict=True):
        for requirement in ("SAL-RST-6", "SAL-CONN-19"):
            ctx.require(
                requirement,
                gone,
                f"{state}, receive a valid RST: the flow is CLOSED, a later packet of it "
                "draws an RST",
                expected="an RST",
                actual=describe_all(heard),
            )

    gather(
        peer,
        lambda heard: (
            any(answer_to(reply_refused)(h) for h in heard)
            and any(answer_to(reply_reset)(h) for h in heard)
        ),
        ctx.timeout,
        log,
    )
    for reply_to, want, state in (
        (reply_refused, b"connection refused", "REQUEST"),
        (reply_reset, b"connection reset", "CONNECTED"),
    ):
        answer = next((h for h in log if answer_to(reply_to)(h)), None)
        packet = answer.packet if answer is not None else None
        ctx.require(
            "SAL-RST-6",
            packet is not None and packet.payload == want,
            f"an RST accepted in {state} is reported to the application as "
            f"{want.decode()!r} (the initiator's answer)",
            expected=repr(want),
            actual=repr(packet.payload) if packet is not None else "no answer",
        )


@case(
    "sal.close",
    "5.11.1",
    "SAL-CLOSE-4",
    "SAL-CLOSE-5",
    "SAL-CLOSE-6",
    "SAL-CLOSE-7",
    "SAL-CLOSE-8",
    "SAL-CONN-19",
    "SAL-TIMER-1",
    needs=("sal",),
    slow=True,
    title="TIME-WAIT lasts 60 s and restarts on a duplicate FIN; FIN-WAIT-2 gives up after 60 s",
)
def long_timers(ctx: Context) -> None:
    """Three flows whose target closed first, watched for about 100 seconds.

    - "timewait": TIMEWAIT at t = 0: still there at 60 - 5 s (a harmless ACK
      draws nothing), gone at 60 + 5 s (it draws an RST).
    - "restarted": TIMEWAIT at t = 0, a duplicate FIN at 30 s, acknowledged
      again and restarting the 60 s: still there at 90 - 5 s, gone at
      90 + 5 s.
    - "finwait2": FINWAIT2 at t = 0 (the harness never closes): after
      60 s the target sends one RST, never repeated, and the flow is gone.
    """
    peer = SalPeer(ctx)
    log: list[Heard] = []
    entered: dict[str, tuple[HarnessFlow, SalPacket, int]] = {}
    for name in ("timewait", "restarted"):
        flow, fin = target_closes_first(peer, log)
        flow.rcv_nxt = seq(numbers(fin)[0] + 1)
        verno = flow.snd_nxt
        first = flow.control(FIN | ACK)
        flow.send_control(FIN | ACK)
        entered[name] = (flow, first, verno)
    waiting, fin = target_closes_first(peer, log)
    waiting.acknowledge(fin)
    start = time.monotonic()
    timewait, restarted = entered["timewait"][0], entered["restarted"][0]

    def at(moment: float) -> None:
        log.extend(peer.collect(max(0.0, start + moment - time.monotonic())))

    def check(requirement: str, flow: HarnessFlow, moment: float, gone: bool, why: str) -> None:
        at(moment)
        judge_gone(ctx, requirement, flow, f"{why} (at {moment:.0f} s)", gone=gone)

    at(30.0)
    restarted_first, restarted_verno = entered["restarted"][1], entered["restarted"][2]
    restarted.send(restarted_first)
    heard = peer.fence()
    log += heard
    ctx.require(
        "SAL-CLOSE-5",
        bool(acknowledges(pure_acks(heard, restarted), restarted, restarted_verno)),
        "a duplicate FIN in TIMEWAIT is acknowledged again",
        expected=f"ACK with ackno {seq(restarted_verno + 1)}",
        actual=describe_all(heard),
    )
    restart = time.monotonic() - start
    check("SAL-CLOSE-4", timewait, TIMER - MARGIN, False, "flow timewait is still in TIMEWAIT")
    check(
        "SAL-CONN-19",
        timewait,
        TIMER + MARGIN,
        True,
        "TIMEWAIT, timeout (60 s): flow timewait is CLOSED, a harmless ACK draws an RST",
    )
    resets = [h for h in log if waiting.is_reset(h)]
    ctx.require(
        "SAL-CLOSE-6",
        bool(resets) and TIMER - MARGIN <= resets[0].at - start <= TIMER + MARGIN,
        "a flow 60 s in FINWAIT2 gives up with an RST",
        expected=f"an RST after {TIMER:.0f} s",
        actual=f"{describe_all(resets)} at "
        + (f"{resets[0].at - start:.1f} s" if resets else "never"),
    )
    if resets:
        ctx.require(
            "SAL-TIMER-1",
            TIMER - MARGIN <= resets[0].at - start <= TIMER + MARGIN,
            "FINWAIT2_TIMEOUT is 60 s",
            expected=f"{TIMER:.0f} s",
            actual=f"{resets[0].at - start:.1f} s",
        )
    check(
        "SAL-CLOSE-5",
        restarted,
        restart + TIMER - MARGIN,
        False,
        "the duplicate FIN at 30 s restarted the 60 s of TIMEWAIT: flow restarted is there",
    )
    check(
        "SAL-CONN-19",
        restarted,
        restart + TIMER + MARGIN,
        True,
        "the restarted TIMEWAIT ended: flow restarted is CLOSED",
    )
    resets = [h for h in log if waiting.is_reset(h)]
    one_reset(
        ctx,
        resets,
        "a flow that gives up in FINWAIT2",
        f" (watched for {time.monotonic() - start - TIMER:.0f} s)",
    )
    judge_gone(
        ctx,
        "SAL-CONN-19",
        waiting,
        "FINWAIT2, timeout (60 s): the flow is CLOSED, a later packet of it draws an RST",
    )
