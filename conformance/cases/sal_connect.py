"""Sections 5.2, 5.3.5, 5.6 to 5.8 and 5.11.3: the table, flowIDs and handshake of a server.

The harness is the client of the target's test services (Appendix C.4): it
sends SYNs to the echo and hold services and judges the SYN-ACK, the
listener's request queue, duplicate SYNs, the request timeout and the checks
of state RESPOND.  SYNs to the serviceIDs next to the listeners show that
each listener is bound to its own serviceID and transport only.  The
initiator service makes the target open flows to serviceIDs the harness
chooses, so the target's service table shows in where its SYNs go: to the
harness socket that a FORWARD rule names, by longest prefix, highest
priority and weighted choice (Section 5.6.2), and never along an expired
rule.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import time

from conformance.cases import case
from conformance.context import Context
from conformance.model import HarnessError
from conformance.salpeer import (
    ACK,
    DATAGRAM,
    ECHO_DATAGRAM_SERVICE_ID,
    ECHO_STREAM_SERVICE_ID,
    HOLD_STREAM_SERVICE_ID,
    INITIATOR_SERVICE_ID,
    NONE,
    RST,
    STREAM,
    SYN,
    UNBOUND_SERVICE_ID,
    HarnessFlow,
    Heard,
    SalPeer,
    describe_all,
    messages_of,
    seq,
    show,
)
from ref.wire import (
    Control,
    Endpoint,
    ErrorCode,
    RecordEndpoint,
    RecordFlags,
    SalPacket,
    ServiceRecord,
    SourceRoute,
    Store,
    StoreResponse,
    TransportProtocol,
    block_base,
    block_index,
    in_block,
    service_id_for_name,
    sign_record,
)

ORDER = 20

UNOBSERVABLE: dict[str, str] = {
    "SAL-TBL-1": (
        "How an entry stores the bits beyond its prefix length is internal to the table: a "
        "lookup compares only the first L bits, and no rule a harness can make the target "
        "install (the initiator's /256 rules, the rules from a record) gives one prefix "
        "twice with different trailing bits."
    ),
    "SAL-TBL-5": (
        "A rule's packet and octet counters are shown only to the host's operator, and its "
        "time of last use matters only for an idle timeout, which no rule a harness can make "
        "the target install has (the initiator's and the records' rules have hard timeouts)."
    ),
    "SAL-TBL-15": (
        "A bind is a call of the host's application interface; the target binds its test "
        "services once, at start, and a harness cannot make it bind again."
    ),
    "SAL-TBL-16": (
        "Closing a listener is a call of the host's application interface; the test services "
        "never close their listeners."
    ),
    "SAL-CONN-10": (
        "The peer serviceID of an accepted flow is reported only to the accepting application: "
        "no packet of the flow carries it and no test service sends it back."
    ),
}

#: How long after its 3 seconds a half-open flow may still be heard (timer precision).
REQUEST_TIMEOUT_SLACK = 0.1
#: When, after the SYN-ACK, the ACK is sent that must find the half-open flow gone.
AFTER_REQUEST_TIMEOUT = 3.25
#: The bound of a listener's request queue (SAL-CONN-8).
REQUEST_QUEUE = 128
#: Flows the initiator opens while two FORWARD rules of equal priority share one entry.
CHOICES = 48
#: The fewest of them each rule must draw: a uniform draw misses this with p < 2e-8.
FEWEST = 6
#: Flows the initiator opens to one serviceID in each later phase of the table case.
FOLLOWERS = 12
#: Seconds past a record's expiry before its rules are expected gone (clock skew).
EXPIRY_MARGIN = 0.25
#: A service router elsewhere, for the SOURCE extensions the harness adds (TEST-NET-1).
ROUTER_ELSEWHERE = Endpoint(ipaddress.ip_address("192.0.2.11"), 54325)
#: The initiator's outcome when no rule reaches the serviceID (Appendix C.4).
UNREACHABLE = b"service unreachable"


@case(
    "sal.connect",
    "5.8.2",
    "SAL-CONN-11",
    "SAL-EXT-23",
    "SAL-CONN-9",
    "SAL-FLOW-1",
    "SAL-HDR-4",
    needs=("sal",),
    title="A SYN to a listener draws the SYN-ACK of Section 5.8.2",
)
def syn_ack(ctx: Context) -> None:
    peer = SalPeer(ctx)
    for service_id, transport in (
        (ECHO_STREAM_SERVICE_ID, TransportProtocol.STREAM),
        (ECHO_DATAGRAM_SERVICE_ID, TransportProtocol.DATAGRAM),
    ):
        flow = peer.flow(service_id, transport)
        reply = flow.open(ack=False)
        what = f"the SYN-ACK to a {transport.name} SYN"
        ctx.require(
            "SAL-CONN-11",
            reply is not None,
            f"a {transport.name} SYN to the echo service is answered with a SYN-ACK",
            expected="SYN-ACK",
            actual=show(reply),
            fatal=True,
        )
        assert reply is not None and reply.packet is not None and reply.control is not None
        packet, control = reply.packet, reply.control
        ctx.require(
            "SAL-CONN-11",
            packet.destination_flow_id == flow.flow_id
            and control.ackno == seq(flow.iss + 1)
            and len(control.nonce) == 8
            and reply.source == peer.wire.target,
            f"{what}: Destination Flow ID Fc, ackno ISS_c + 1, sent from the target's endpoint",
            expected=f"dst {flow.flow_id:#010x}, ackno {seq(flow.iss + 1)}",
            actual=show(reply),
        )
        ctx.require(
            "SAL-HDR-4",
            packet.protocol == transport,
            f"{what} carries the flow's transport in its Protocol field",
            expected=str(int(transport)),
            actual=str(int(packet.protocol)),
        )
        ctx.require(
            "SAL-EXT-23",
            packet.destination_service == service_id and packet.source_service is None,
            f"{what} repeats the SYN's DESTINATION serviceID",
            expected=service_id.hex(),
            actual=(packet.destination_service or b"").hex() or "no DESTINATION extension",
        )
        ctx.require(
            "SAL-FLOW-1",
            packet.source_flow_id != 0,
            f"{what}: the server's flowID Fs is not zero",
            actual=f"{packet.source_flow_id:#010x}",
        )
        flow.send_control(ACK)
        flow.send_control(RST | ACK)  # leave nothing behind
    # Fresh flowIDs, nonces and ISSs for every flow (SAL-CONN-9): eight SYN-ACKs.
    seen = []
    for _ in range(8):
        flow = peer.flow()
        reply = flow.open(ack=False)
        if reply is None or reply.control is None or reply.packet is None:
            ctx.require("SAL-CONN-11", False, "a SYN is answered", actual="nothing", fatal=True)
            return
        seen.append((reply.packet.source_flow_id, reply.control.nonce, reply.control.verno))
        flow.send_control(RST, verno=flow.snd_nxt, ackno=0)
    flow_ids, nonces, isses = zip(*seen, strict=True)
    ctx.require(
        "SAL-CONN-9",
        len(set(flow_ids)) == 8 and len(set(nonces)) == 8 and len(set(isses)) == 8,
        "eight SYNs draw eight different flowIDs, nonces and ISS_s",
        actual=f"{len(set(flow_ids))} flowIDs, {len(set(nonces))} nonces, {len(set(isses))} ISSs",
    )


@case(
    "sal.connect",
    "5.8.2",
    "SAL-CONN-4",
    needs=("sal", "counters"),
    title="A SYN for a serviceID with no listener is dropped, counted NO_SERVICE",
)
def syn_without_listener(ctx: Context) -> None:
    peer = SalPeer(ctx)
    flow = peer.flow(UNBOUND_SERVICE_ID)
    peer.dropped(
        "SAL-CONN-4",
        flow.syn(),
        ErrorCode.NO_SERVICE,
        "a SYN to the conformance block's unbound serviceID",
        answered=lambda h: h.flags is not None and bool(h.flags & RST),  # SAL-CONN-5 allows one
    )


@case(
    "sal.connect",
    "5.11.3",
    "SAL-RST-1",
    "SAL-RST-2",
    needs=("sal", "counters"),
    title="A packet for no flow draws an RST, unless it is an RST or has Source Flow ID 0",
)
def packet_for_no_flow(ctx: Context) -> None:
    peer = SalPeer(ctx)
    flow = peer.flow()
    flow.peer_flow_id = ctx.rng.randrange(1, 1 << 32)  # a flowID the target never chose
    flow.snd_nxt = ctx.rng.randrange(1 << 32)
    [(_, heard)] = peer.absent([flow])  # an ACK, asked again if rate-limited (SAL-RST-3)
    rst = [h for h in heard if h.flags is not None and h.flags & RST]
    ctx.require(
        "SAL-RST-1",
        len(rst) == 1
        and rst[0].packet is not None
        and rst[0].packet.destination_flow_id == flow.flow_id,
        "an ACK for a flowID the target does not have is answered with one RST to its sender",
        expected=f"one RST to flowID {flow.flow_id:#010x}",
        actual=describe_all(heard),
    )
    for what, packet in (
        ("an RST for no flow", flow.control(RST | ACK)),
        ("an ACK with Source Flow ID 0 for no flow", flow.control(ACK, source_flow=0)),
    ):
        peer.dropped(
            "SAL-RST-2",
            packet,
            ErrorCode.UNEXPECTED_CONTROL,
            f"{what} draws no RST",
        )


@case(
    "sal.connect",
    "5.8.2",
    "SAL-CONN-11",
    needs=("sal",),
    title="A SYN that came through a service router is answered at entry 0 of its SOURCE",
)
def syn_ack_to_client_endpoint(ctx: Context) -> None:
    """The client endpoint of a SYN with a SOURCE extension is its entry 0 (Section 5.8.2).

    One harness socket plays a service router: it sends the client's SYN with
    the SOURCE extension a router adds (entry 0 the client, entry 1 itself).
    The SYN-ACK must go straight to the client, never back through the router.
    """
    client, router = SalPeer(ctx), SalPeer(ctx)
    flow = client.flow()
    route = SourceRoute(7, (client.wire.endpoint(), router.wire.endpoint()))
    router.send(dataclasses.replace(flow.syn(), source_route=route))
    flow.snd_nxt = seq(flow.iss + 1)
    reply, _ = client.wait_for(flow.is_syn_ack)
    at_router = [h for h in router.fence() if flow.ours(h)]
    ctx.require(
        "SAL-CONN-11",
        reply is not None and reply.source == client.wire.target and not at_router,
        "a SYN relayed by a router, with SOURCE entry 0 the client's endpoint: the SYN-ACK "
        "reaches the client from the target's endpoint, and nothing reaches the router",
        expected=f"a SYN-ACK at {client.wire.local}, nothing at {router.wire.local}",
        actual=f"client: {show(reply)}; router: {describe_all(at_router)}",
    )
    if reply is not None:
        flow.learn_syn_ack(reply)
        flow.send_control(RST | ACK)  # leave nothing behind


@case(
    "sal.connect",
    "5.8.4",
    "SAL-CONN-16",
    "SAL-CONN-17",
    "SAL-CONN-18",
    "SAL-EXT-26",
    needs=("sal", "counters"),
    title="A flow in RESPOND drops wrong ACKs and data, and completes on the right ACK",
)
def respond_state(ctx: Context) -> None:
    """The server's checks of Section 5.8.4, then the ACK that passes them.

    Each wrong ACK must be dropped silently under its code and leave the flow
    in RESPOND: the right ACK, sent last, still completes the handshake.  Data
    sent before that ACK must be discarded, not kept for after it: the echo
    services show what the flow took.  The completing ACK carries SERVICE and
    SOURCE extensions, which an ACK does not carry (Section 5.3.5): they must
    be ignored, and so must a SERVICE extension on a data packet.
    """
    peer = SalPeer(ctx)
    flow = peer.flow()
    if flow.open(ack=False) is None:
        raise HarnessError("no SYN-ACK from the echo stream service")
    resent = flow.is_syn_ack  # the SYN-ACK's retransmission answers no drop
    wrong = [
        (
            "SAL-CONN-16",
            flow.control(ACK, nonce=bytes(b ^ 0xFF for b in flow.nonce)),
            ErrorCode.BAD_NONCE,
            "the handshake's ACK with a nonce that is not Nc",
        ),
        (
            "SAL-CONN-17",
            flow.control(ACK, ackno=flow.rcv_nxt + 1),
            ErrorCode.BAD_SEQUENCE,
            "the handshake's ACK with ackno ISS_s + 2",
        ),
        (
            "SAL-CONN-17",
            flow.control(ACK, ackno=flow.peer_iss),
            ErrorCode.BAD_SEQUENCE,
            "the handshake's ACK with ackno ISS_s",
        ),
        (
            "SAL-CONN-17",
            flow.control(ACK, verno=flow.snd_nxt + 1),
            ErrorCode.BAD_SEQUENCE,
            "the handshake's ACK with verno ISS_c + 2",
        ),
    ]
    for requirement, packet, code, what in wrong:
        if not peer.dropped(requirement, packet, code, f"{what}, in RESPOND", answered=resent):
            flow.send_control(RST | ACK)
            return  # the flow may have left RESPOND: the rest would judge nothing
    early = b"stream data sent before the handshake's ACK"
    peer.send(flow.segment(early))  # stream_nxt stays: the harness sends it again later
    stranger = ctx.rng.randbytes(32)
    route = SourceRoute(7, (peer.wire.endpoint(), ROUTER_ELSEWHERE))
    ack = flow.control(ACK, destination_service=stranger, source_service=stranger)
    peer.send(dataclasses.replace(ack, source_route=route))
    heard = peer.fence()
    kept = [h for h in heard if flow.ours(h) and (s := h.segment) is not None and s.data]
    ctx.require(
        "SAL-CONN-18",
        not kept,
        "a stream segment sent in RESPOND, then the handshake's ACK: the segment was "
        "discarded, so nothing is echoed",
        expected="no echo",
        actual=describe_all(kept, empty="no echo"),
    )
    flow.write(early)  # the transport's retransmission, once the flow is established
    for h in peer.fence():
        flow.take(h)
    ctx.require(
        "SAL-EXT-26",
        bytes(flow.received) == early,
        "the handshake's ACK carried SERVICE (DESTINATION and SOURCE) and SOURCE extensions "
        "and completed the handshake: the data sent after it is echoed",
        expected=repr(early),
        actual=repr(bytes(flow.received)),
    )
    late = b"a data packet with a SERVICE extension"
    flow.send(dataclasses.replace(flow.segment(late), destination_service=ECHO_STREAM_SERVICE_ID))
    flow.stream_nxt = seq(flow.stream_nxt + len(late))
    for h in peer.fence():
        flow.take(h)
    ctx.require(
        "SAL-EXT-26",
        bytes(flow.received) == early + late,
        "a stream segment carrying a SERVICE extension is delivered as if it had none",
        expected=repr(early + late),
        actual=repr(bytes(flow.received)),
    )
    flow.send_control(RST | ACK)
    messages = peer.flow(ECHO_DATAGRAM_SERVICE_ID, DATAGRAM)
    if messages.open(ack=False) is None:
        raise HarnessError("no SYN-ACK from the echo datagram service")
    peer.send(messages.data(b"a message sent before the handshake's ACK"))
    messages.send_control(ACK)
    heard = peer.fence()
    after = b"a message sent after the handshake's ACK"
    peer.send(messages.data(after))
    heard += peer.fence()
    echoed = messages_of(heard, messages)
    ctx.require(
        "SAL-CONN-18",
        echoed == [after],
        "on a DATAGRAM flow, a message sent in RESPOND is discarded: only the message sent "
        "after the handshake's ACK is echoed",
        expected=repr([after]),
        actual=repr(echoed),
    )
    messages.send_control(RST | ACK)


@case(
    "sal.connect",
    "5.2",
    "SAL-HDR-8",
    "SAL-HDR-4",
    needs=("sal", "counters"),
    title="A packet of a flow with another transport's Protocol is dropped, counted MALFORMED",
)
def protocol_of_a_flow(ctx: Context) -> None:
    """The transport of a flow is fixed by its SYN (Section 5.2).

    On an established STREAM flow and an established DATAGRAM flow, packets
    whose Protocol is the other transport, or NONE with a payload, must be
    dropped silently, counted MALFORMED, and not reach the transport: the
    echo services then echo only what was sent right.  What the target sends
    on the flows carries their transport.
    """
    peer = SalPeer(ctx)
    stream = peer.connect()
    data = b"wrong Protocol"
    segment = stream.segment(data)
    for what, packet in (
        ("an ACK with Protocol DATAGRAM", stream.control(ACK, protocol=DATAGRAM)),
        (
            "a stream segment with Protocol DATAGRAM",
            dataclasses.replace(segment, protocol=DATAGRAM),
        ),
        ("a stream segment with Protocol NONE", dataclasses.replace(segment, protocol=NONE)),
        (
            # The Protocol check comes before a control packet's payload is ignored.
            "an ACK with Protocol NONE and a payload",
            stream.control(ACK, protocol=NONE, payload=b"xyz"),
        ),
    ):
        peer.dropped(
            "SAL-HDR-8", packet, ErrorCode.MALFORMED, f"{what} on an established STREAM flow"
        )
    good = b"right Protocol"
    stream.write(good)
    heard = peer.fence()
    for h in heard:
        stream.take(h)
    ctx.require(
        "SAL-HDR-8",
        bytes(stream.received) == good,
        "after the dropped segments, a segment with Protocol STREAM at the same sequence "
        "number is the one echoed",
        expected=repr(good),
        actual=repr(bytes(stream.received)),
    )
    messages = peer.connect(ECHO_DATAGRAM_SERVICE_ID, DATAGRAM)
    for what, packet in (
        ("a message with Protocol STREAM", messages.data(data, protocol=STREAM)),
        ("a message with Protocol NONE", messages.data(data, protocol=NONE)),
    ):
        peer.dropped(
            "SAL-HDR-8", packet, ErrorCode.MALFORMED, f"{what} on an established DATAGRAM flow"
        )
    peer.send(messages.data(good))
    heard += peer.fence()
    echoed = messages_of(heard, messages)
    ctx.require(
        "SAL-HDR-8",
        echoed == [good],
        "after the dropped messages, only the message with Protocol DATAGRAM is echoed",
        expected=repr([good]),
        actual=repr(echoed),
    )
    wrong = [
        h
        for flow in (stream, messages)
        for h in heard
        if flow.ours(h)
        and h.packet is not None
        and not (h.flags is not None and h.flags & RST)
        and h.packet.protocol != flow.transport
    ]
    ctx.require(
        "SAL-HDR-4",
        not wrong,
        "every packet but an RST that the target sends on a STREAM and a DATAGRAM flow "
        "carries the flow's transport in its Protocol field",
        actual=describe_all(wrong, empty="all of them do"),
    )
    stream.send_control(RST | ACK)
    messages.send_control(RST | ACK)


@case(
    "sal.connect",
    "5.8.2",
    "SAL-CONN-8",
    "SAL-FLOW-1",
    "SAL-CONN-7",
    needs=("sal", "counters"),
    title="A listener with 128 half-open flows drops the next SYN, counted QUEUE_FULL",
)
def request_queue_limit(ctx: Context) -> None:
    """129 SYNs to the hold service, none acknowledged (Section 5.8.2, step 2).

    The first 128 fill the listener's request queue, with 128 different
    flowIDs; the 129th must be dropped, counted QUEUE_FULL.  A duplicate SYN
    is handled before the queue is looked at (step 1): with the queue full, it
    still draws its SYN-ACK again.  The case then resets the 128 flows.
    """
    peer = SalPeer(ctx)
    flows = [peer.flow(HOLD_STREAM_SERVICE_ID) for _ in range(REQUEST_QUEUE + 1)]
    last = flows[-1]
    before = peer.counters()
    for flow in flows:
        flow.send(flow.syn())
        flow.snd_nxt = seq(flow.iss + 1)
    heard = peer.fence()
    change = peer.counters() - before
    answers = {
        h.packet.destination_flow_id: h for h in heard if h.packet and h.is_control(SYN | ACK)
    }
    answered = [flow for flow in flows if flow.flow_id in answers]
    ctx.require(
        "SAL-CONN-8",
        answered == flows[:-1] and change["drop.QUEUE_FULL"] >= 1,
        f"{len(flows)} SYNs to the hold service, in a burst, none acknowledged: the first "
        f"{REQUEST_QUEUE} draw SYN-ACKs, the last is dropped, counted QUEUE_FULL",
        expected=f"{REQUEST_QUEUE} SYN-ACKs, none to the last SYN, drop.QUEUE_FULL +1",
        actual=f"{len(answered)} SYN-ACKs, "
        f"{'one' if last.flow_id in answers else 'none'} to the last SYN, "
        f"drop.QUEUE_FULL +{change['drop.QUEUE_FULL']}",
    )
    for flow in answered:
        flow.learn_syn_ack(answers[flow.flow_id])
    flow_ids = [flow.peer_flow_id for flow in answered]
    ctx.require(
        "SAL-FLOW-1",
        len(set(flow_ids)) == len(flow_ids) and 0 not in flow_ids,
        f"the {len(flow_ids)} half-open flows have different flowIDs, none zero",
        actual=f"{len(set(flow_ids))} different, zero {'among' if 0 in flow_ids else 'not among'}"
        " them",
    )
    if answered:
        first = answered[0]
        before = peer.counters()
        first.send(first.syn())
        last.send(last.syn())
        heard = peer.fence()
        change = peer.counters() - before
        again = [h for h in heard if first.is_syn_ack(h)]
        assert first.syn_ack is not None
        ctx.require(
            "SAL-CONN-7",
            len(again) == 1 and again[0].packet == first.syn_ack.packet,
            "with the request queue full, a duplicate of the first SYN draws the same SYN-ACK "
            "again (duplicates are recognised before the queue is looked at)",
            expected=first.syn_ack.describe(),
            actual=describe_all(again),
        )
        ctx.require(
            "SAL-CONN-8",
            not any(last.is_syn_ack(h) for h in heard) and change["drop.QUEUE_FULL"] >= 1,
            "the last SYN, sent again while the queue is still full, is dropped again",
            expected="no SYN-ACK, drop.QUEUE_FULL +1",
            actual=f"{'a' if any(last.is_syn_ack(h) for h in heard) else 'no'} SYN-ACK, "
            f"drop.QUEUE_FULL +{change['drop.QUEUE_FULL']}",
        )
    for flow in answered:
        flow.send_control(RST | ACK)  # Section 5.11.3: the half-open flows go away
    peer.fence()


@case(
    "sal.connect",
    "5.7",
    "SAL-FLOW-3",
    needs=("sal",),
    title="A flowID is not reused right after its flow reached CLOSED",
)
def flow_id_not_reused(ctx: Context) -> None:
    """Sixteen flows, each reset (so CLOSED, Section 5.11.3) before the next SYN (SAL-FLOW-3).

    A host may reuse a flowID only 120 seconds after its flow closed; an
    allocator that hands out the flowID just freed, or the lowest free one,
    reuses it at once.  The full 120 seconds are not waited for: a flowID
    drawn at random repeats within 16 flows with a chance below 1e-7.
    """
    peer = SalPeer(ctx)
    flow_ids: list[int] = []
    for _ in range(16):
        flow = peer.flow()
        if flow.open(ack=False) is None:
            raise HarnessError("no SYN-ACK from the echo stream service")
        flow_ids.append(flow.peer_flow_id)
        flow.send_control(RST | ACK)
    ctx.require(
        "SAL-FLOW-3",
        len(set(flow_ids)) == len(flow_ids),
        "16 flows to the echo service opened one after the other, each reset before the next "
        "SYN: 16 different flowIDs",
        actual=" ".join(f"{f:#010x}" for f in flow_ids),
    )


@case(
    "sal.connect",
    "5.6.4",
    "SAL-TBL-14",
    "SAL-TBL-6",
    "SAL-CONN-4",
    needs=("sal", "counters"),
    title="Each listener takes SYNs of its own serviceID and transport only",
)
def listener_prefix(ctx: Context) -> None:
    """The test services' listeners are bound with prefix length 256 (Appendix C.4).

    A DEMUX rule of prefix length 256 covers its own serviceID only, and it is
    usable only for SYNs whose Protocol is its listener's transport (Section
    5.6.2, step 1).  A SYN to a listener's /255 neighbour with the listener's
    transport (the neighbour's listener has the other transport) and SYNs to
    the reserved indexes 4 to 6 of the block must find no usable rule: each is
    dropped, counted NO_SERVICE (an RST is allowed, SAL-CONN-5).
    """
    peer = SalPeer(ctx)
    base = block_base(ECHO_STREAM_SERVICE_ID)
    neighbour: tuple[str, ...] = ("SAL-TBL-14", "SAL-TBL-6")
    reserved: tuple[str, ...] = ("SAL-TBL-14",)
    probes = (
        (1, STREAM, "echo datagram's serviceID (the echo stream listener's /255 neighbour)"),
        (0, DATAGRAM, "echo stream's serviceID (the echo datagram listener's /255 neighbour)"),
        (3, STREAM, "initiator's serviceID (the hold listener's /255 neighbour)"),
        (2, DATAGRAM, "hold service's serviceID (the initiator's /255 neighbour)"),
        (4, STREAM, "reserved index 4 of the block"),
        (5, DATAGRAM, "reserved index 5 of the block"),
        (6, STREAM, "reserved index 6 of the block"),
    )
    before = peer.counters()
    sent: list[tuple[HarnessFlow, str, tuple[str, ...]]] = []
    for index, transport, what in probes:
        flow = peer.flow(in_block(base, index), transport)
        flow.send(flow.syn())
        judges = neighbour if index < 4 else reserved
        sent.append((flow, f"a {transport.name} SYN to the {what}", judges))
    heard = peer.fence()
    change = peer.counters() - before
    for flow, what, judges in sent:
        answers = [h for h in heard if flow.ours(h) and not (h.flags is not None and h.flags & RST)]
        for requirement in judges:
            ctx.require(
                requirement,
                not answers,
                f"{what} finds no usable DEMUX rule: no SYN-ACK",
                expected="nothing, or an RST",
                actual=describe_all(answers),
            )
        for h in answers:
            if flow.is_syn_ack(h):
                flow.learn_syn_ack(h)
                flow.send_control(RST | ACK)
    ctx.require(
        "SAL-CONN-4",
        change["drop.NO_SERVICE"] >= len(sent),
        f"the {len(sent)} SYNs are dropped, counted NO_SERVICE",
        expected=f"drop.NO_SERVICE +{len(sent)}",
        actual=f"drop.NO_SERVICE +{change['drop.NO_SERVICE']}",
    )


class _Initiated:
    """Two harness sockets, A and B, that ask the initiator service for flows (Appendix C.4).

    Every SYN the target sends them is refused at once with the RST of a host
    that has no listener (Section 5.11.3) and remembered: which socket it
    reached and for which serviceID.  A request's other outcome, when no rule
    reaches the serviceID, is the initiator's answer "service unreachable".
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.peers = (SalPeer(ctx), SalPeer(ctx))
        self.syns: list[tuple[int, bytes]] = []  # (socket index, serviceID), in arrival order
        self.unreachable = 0  # "service unreachable" answers

    def request(self, socket: int, service_id: bytes, mode: int) -> None:
        payload = service_id + bytes([TransportProtocol.DATAGRAM, mode])
        self.peers[socket].send(
            SalPacket(0, 0, DATAGRAM, destination_service=INITIATOR_SERVICE_ID, payload=payload)
        )

    def gather(self, outcomes: int) -> tuple[list[tuple[int, bytes]], int]:
        """The SYNs and "service unreachable" answers of the next ``outcomes`` requests.

        Each request has one of the two outcomes; the wait ends when all have
        come, or after the harness timeout with those that came.
        """
        syns, unreachable = len(self.syns), self.unreachable
        deadline = time.monotonic() + self.ctx.timeout
        while (
            len(self.syns) - syns + self.unreachable - unreachable < outcomes
            and time.monotonic() < deadline
        ):
            for socket, peer in enumerate(self.peers):
                while (heard := peer.hear(0.002)) is not None:
                    self._take(socket, peer, heard)
        return self.syns[syns:], self.unreachable - unreachable

    def _take(self, socket: int, peer: SalPeer, heard: Heard) -> None:
        packet, control = heard.packet, heard.control
        if packet is None:
            return
        if control is None and packet.destination_flow_id == 0:
            self.unreachable += packet.payload == UNREACHABLE
        elif control is not None and heard.is_control(SYN) and packet.destination_service:
            self.syns.append((socket, packet.destination_service))
            refusal = Control(RST | ACK, 0, seq(control.verno + 1), control.nonce)
            peer.send(SalPacket(0, packet.source_flow_id, NONE, control=refusal), heard.source)


def _split(syns: list[tuple[int, bytes]], service_id: bytes) -> tuple[int, int]:
    """How many of ``syns`` for ``service_id`` reached A and B."""
    sockets = [socket for socket, sid in syns if sid == service_id]
    return sockets.count(0), sockets.count(1)


@case(
    "sal.connect",
    "5.6.2",
    "SAL-TBL-6",
    "SAL-TBL-7",
    "SAL-TBL-2",
    "SAL-TBL-3",
    "SAL-TBL-4",
    needs=("sal", "dht"),
    title="The target's SYNs follow its service table: prefix, priority, weights and expiry",
)
def service_table(ctx: Context) -> None:
    """Where the initiator's SYNs go shows the lookup of Section 5.6.2.

    X, X2 and X3 are serviceIDs of one block that nobody registered.  A mode-0
    request from A installs a FORWARD rule X/256 -> A, which the target's SYN
    for X must follow rather than the default DELAY rule; a mode-0 request
    from B adds X/256 -> B with the same priority and weight, and the flows to
    X then split between A and B by a uniform draw.  A record for the block
    then names A with priority 200 for X, X2 and X3, and B with priority 100
    for X and X3, and expires within two seconds.  A flow to X2 makes the
    target resolve the block and install the record's rules.  X3's entry then
    holds two priorities, and every flow to X3 must go to A.  X's two rules
    are installed again: they take the record's priorities and hard timeout
    (SAL-TBL-2), so every flow to X goes to A.  Once the record has expired,
    so have all these rules: flows to X2 and X find no rule.
    """
    run = _Initiated(ctx)
    name = f"table-{ctx.rng.randrange(1 << 32):08x}.conformance.example"
    base = service_id_for_name(name)
    x, x2, x3 = (in_block(base, index) for index in ctx.rng.sample(range(8), 3))
    run.request(0, x, 0)
    first, unreachable = run.gather(1)
    if not first and not unreachable:
        raise HarnessError("the initiator answered no mode-0 request")
    ctx.require(
        "SAL-TBL-6",
        first == [(0, x)],
        "after A's mode-0 request, the flow to X follows X/256 -> A, the longest prefix, "
        "not the default DELAY rule",
        expected="one SYN for X, at A",
        actual=f"{len(first)} SYN, {unreachable} 'service unreachable'",
        fatal=True,
    )
    run.request(1, x, 0)
    syns, _ = run.gather(1)
    for _ in range(CHOICES - 1):
        run.request(0, x, 1)
    more, _ = run.gather(CHOICES - 1)
    to_a, to_b = _split(syns + more, x)
    ctx.require(
        "SAL-TBL-7",
        min(to_a, to_b) >= FEWEST,
        f"{CHOICES} flows to X while its entry holds X/256 -> A and X/256 -> B, installed "
        "alike (same priority and weight): each rule is chosen with probability 1/2",
        expected=f"at least {FEWEST} SYNs at each of A and B",
        actual=f"{to_a} at A, {to_b} at B",
    )
    expires = math.ceil(time.time() + 0.5)
    a, b = (peer.wire.local for peer in run.peers)
    mask = {i: 1 << block_index(i) for i in (x, x2, x3)}
    record = ServiceRecord(
        service_id=base,
        owner_key=b"",
        sequence=1,
        issued_at=expires - 10,
        lifetime=10,
        flags=RecordFlags(0),
        endpoints=(
            RecordEndpoint(ipaddress.ip_address(a[0]), a[1], 200, 1, mask[x] | mask[x2] | mask[x3]),
            RecordEndpoint(ipaddress.ip_address(b[0]), b[1], 100, 1, mask[x] | mask[x3]),
        ),
    )
    stored = run.peers[0].dht.request(Store(record=sign_record(record, ctx.key())))
    if stored is None or not isinstance(stored.message.body, StoreResponse):
        raise HarnessError(f"the STORE of the block's record was refused: {stored!r}")
    run.request(0, x2, 1)
    syns, unreachable = run.gather(1)
    if syns != [(0, x2)]:
        raise HarnessError(
            "a mode-1 request for X2 did not reach the endpoint of the record STOREd for its "
            f"block: {len(syns)} SYN, {unreachable} 'service unreachable'"
        )
    for _ in range(FOLLOWERS):
        run.request(0, x3, 1)
        run.request(0, x, 1)
    syns, _ = run.gather(2 * FOLLOWERS)
    if time.time() >= expires:
        raise HarnessError("the record expired before the flows that follow its rules were seen")
    to_a, to_b = _split(syns, x3)
    ctx.require(
        "SAL-TBL-6",
        (to_a, to_b) == (FOLLOWERS, 0),
        f"{FOLLOWERS} flows to X3, whose entry holds X3/256 -> A (priority 200) and "
        "X3/256 -> B (priority 100): only the highest priority is chosen",
        expected=f"{FOLLOWERS} at A, 0 at B",
        actual=f"{to_a} at A, {to_b} at B",
    )
    to_a, to_b = _split(syns, x)
    ctx.require(
        "SAL-TBL-2",
        (to_a, to_b) == (FOLLOWERS, 0),
        f"{FOLLOWERS} flows to X after the record's rules X/256 -> A (priority 200) and "
        "X/256 -> B (priority 100) were installed over the two rules the requests "
        "installed: they took the new priorities, so every flow goes to A",
        expected=f"{FOLLOWERS} at A, 0 at B",
        actual=f"{to_a} at A, {to_b} at B",
    )
    time.sleep(max(0.0, expires + EXPIRY_MARGIN - time.time()))
    run.request(0, x2, 1)
    syns, unreachable = run.gather(1)
    expired = not syns
    for requirement in ("SAL-TBL-3", "SAL-TBL-4"):
        ctx.require(
            requirement,
            expired,
            "a flow to X2 once the record expired: the rule X2/256 -> A, whose hard timeout "
            "was the record's remaining lifetime, has expired and is not selected",
            expected="no SYN for X2 (the initiator answers 'service unreachable')",
            actual=f"{len(syns)} SYN, {unreachable} 'service unreachable'",
        )
    if not expired:
        return  # rules outlive their timeouts: X's cannot show which timeout they took
    for _ in range(FOLLOWERS):
        run.request(0, x, 1)
    syns, unreachable = run.gather(FOLLOWERS)
    to_a, to_b = _split(syns, x)
    ctx.require(
        "SAL-TBL-2",
        (to_a, to_b) == (0, 0),
        f"{FOLLOWERS} flows to X once the record expired: X's two rules took the record's "
        "hard timeout when they were installed again, so they have expired too",
        expected=f"no SYN for X ({FOLLOWERS} times 'service unreachable')",
        actual=f"{to_a} at A, {to_b} at B, {unreachable} 'service unreachable'",
    )


@case(
    "sal.connect",
    "5.8.2",
    "SAL-CONN-6",
    "SAL-CONN-7",
    "SAL-CONN-12",
    "SAL-RST-1",
    needs=("sal",),
    title="A duplicate SYN draws the SYN-ACK again; a half-open flow is gone after 3 s",
)
def duplicate_syn_and_request_timeout(ctx: Context) -> None:
    """One half-open flow, from its SYN to its removal (Section 5.8.2, steps 1, 6 and 7).

    The SYN is sent again 0.5 s after the SYN-ACK: the flow must send the same
    SYN-ACK again at once, and no second flow may appear.  The retransmission
    timer keeps running, so the SYN-ACK's first retransmission comes 1 s (the
    initial RTO) after the first SYN-ACK, not after the resend.  Three seconds
    after its creation the flow must be removed silently: nothing is heard
    from it any more, and the handshake's ACK, sent at 3.25 s, finds no flow
    and draws an RST (SAL-RST-1).
    """
    peer = SalPeer(ctx)
    flow = peer.flow()
    first = flow.open(ack=False)
    if first is None or first.packet is None:
        raise HarnessError("no SYN-ACK from the echo stream service")
    start = first.at
    heard = peer.collect(max(0.0, start + 0.5 - time.monotonic()))
    resent_at = time.monotonic()
    flow.send(flow.syn())
    again, before = peer.wait_for(flow.is_syn_ack, 0.3)
    heard += before
    ctx.require(
        "SAL-CONN-7",
        again is not None and again.packet == first.packet,
        "the SYN sent again 0.5 s after the SYN-ACK (same endpoint, Fc and Nc) draws the same "
        "SYN-ACK again within 0.3 s",
        expected=first.describe(),
        actual=show(again)
        if again is None
        else f"{again.describe()} after {again.at - resent_at:.3f} s",
    )
    heard += peer.collect(max(0.0, start + AFTER_REQUEST_TIMEOUT - time.monotonic()))
    others = [
        h
        for h in heard
        if flow.is_syn_ack(h)
        and h.packet
        and h.packet.source_flow_id != first.packet.source_flow_id
    ]
    ctx.require(
        "SAL-CONN-6",
        not others,
        "the duplicate SYN creates no second flow: every SYN-ACK to Fc comes from Fs",
        expected=f"SYN-ACKs from {first.packet.source_flow_id:#010x} only",
        actual=describe_all(others, empty="from Fs only"),
    )
    resent = [h.at - start for h in heard if flow.is_syn_ack(h)]
    ctx.require(
        "SAL-CONN-7",
        bool(resent) and 0.8 <= resent[0] <= 1.3,
        "the resend does not restart the retransmission timer: the first retransmission "
        "comes about 1 s after the first SYN-ACK, not 1 s after the resend",
        expected="a retransmission 0.8 to 1.3 s after the first SYN-ACK",
        actual=", ".join(f"{t:.3f} s" for t in resent) or "no retransmission",
    )
    late = [h for h in heard if flow.ours(h) and h.at > start + 3 + REQUEST_TIMEOUT_SLACK]
    ctx.require(
        "SAL-CONN-12",
        not late,
        "the half-open flow sends nothing more once it is 3 s old",
        expected=f"nothing from {3 + REQUEST_TIMEOUT_SLACK:g} s to {AFTER_REQUEST_TIMEOUT:g} s",
        actual="; ".join(f"{h.at - start:.3f} s: {h.describe()}" for h in late) or "nothing",
    )
    flow.learn_syn_ack(first)
    flow.send_control(ACK)
    answer = [h for h in peer.fence() if flow.ours(h)]
    rst = [h for h in answer if h.flags is not None and h.flags & RST]
    for requirement in ("SAL-CONN-12", "SAL-RST-1"):
        ctx.require(
            requirement,
            len(rst) == 1 and len(answer) == 1,
            f"the handshake's ACK, sent {AFTER_REQUEST_TIMEOUT:g} s after the SYN-ACK, finds "
            "the half-open flow removed (CLOSED): it draws an RST",
            expected="one RST",
            actual=describe_all(answer),
        )
