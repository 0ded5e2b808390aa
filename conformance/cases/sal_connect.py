"""Sections 5.7 and 5.8: flowIDs and connection establishment, with the target as server.

The harness is the client of the target's test services (Appendix C.4): it
sends SYNs to the echo services and judges the SYN-ACK, the handshake's
checks on the server side, and the handling of SYNs nobody listens for.
"""

from __future__ import annotations

from conformance.cases import case
from conformance.context import Context
from conformance.salpeer import (
    ACK,
    ECHO_DATAGRAM_SERVICE_ID,
    ECHO_STREAM_SERVICE_ID,
    RST,
    SYN,
    UNBOUND_SERVICE_ID,
    SalPeer,
    seq,
    show,
)
from ref.wire import ErrorCode, TransportProtocol

ORDER = 20

UNOBSERVABLE: dict[str, str] = {}


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
    peer.send(flow.control(ACK))
    heard = peer.fence()
    rst = [h for h in heard if h.flags is not None and h.flags & RST]
    ctx.require(
        "SAL-RST-1",
        len(rst) == 1
        and rst[0].packet is not None
        and rst[0].packet.destination_flow_id == flow.flow_id,
        "an ACK for a flowID the target does not have is answered with one RST to its sender",
        expected=f"one RST to flowID {flow.flow_id:#010x}",
        actual="; ".join(h.describe() for h in heard) or "nothing",
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
    _ = SYN
