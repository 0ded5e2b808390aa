"""The SAL host core on an in-memory network: handshake, control channel, close, reset.

Deterministic: a seeded generator and a virtual clock (``ref.sal.sim``).  Test
names carry the requirement IDs they check.
"""

from __future__ import annotations

import dataclasses

import pytest

from ref.sal.flow import State, SubState, seq_add
from ref.sal.host import (
    Accepted,
    Closed,
    CloseReason,
    Connected,
    DatagramReceived,
    EndOfData,
    HostConfig,
    MessageReceived,
    Outgoing,
    Unreachable,
)
from ref.sal.table import Prefix, Rule
from ref.wire.constants import MAX_REQUEST_QUEUE, REQUEST_TIMEOUT, TIMEWAIT_DURATION
from ref.wire.errors import ErrorCode, LocalProtocolError
from ref.wire.ids import service_id_for_name
from ref.wire.sal import (
    Control,
    ControlFlags,
    Endpoint,
    SalPacket,
    TransportProtocol,
    decode_sal,
    encode_sal,
)

from .salnet import C1, C2, DATAGRAM, ECHO, S1, S2, STREAM, ep, pair

SYN, ACK, FIN, RST, RSYN = (
    ControlFlags.SYN,
    ControlFlags.ACK,
    ControlFlags.FIN,
    ControlFlags.RST,
    ControlFlags.RSYN,
)


def test_three_way_handshake_sal_conn_1_11_14() -> None:
    p = pair(transport=DATAGRAM)
    flow_id = p.connect(DATAGRAM)
    p.run()
    assert [e.flow_id for e in p.net.take(p.client, Connected)] == [flow_id]
    [accepted] = p.net.take(p.server, Accepted)
    assert accepted.service_id == ECHO
    syn, syn_ack, ack = p.capture.control()
    assert syn.control is not None and syn_ack.control is not None and ack.control is not None
    # SYN (Section 5.8.1): own flowID, destination 0, verno ISS, ackno 0.
    assert (syn.source_flow_id, syn.destination_flow_id) == (flow_id, 0)
    assert syn.control.flags == SYN and syn.control.ackno == 0
    assert syn.destination_service == ECHO
    # SYN-ACK (SAL-CONN-11, SAL-EXT-23).
    assert syn_ack.control.flags == SYN | ACK
    assert syn_ack.destination_flow_id == flow_id
    assert syn_ack.control.ackno == seq_add(syn.control.verno, 1)
    assert syn_ack.destination_service == ECHO
    # ACK (Section 5.8.3 step 4).
    assert ack.control.flags == ACK
    assert ack.control.verno == seq_add(syn.control.verno, 1)
    assert ack.control.ackno == seq_add(syn_ack.control.verno, 1)
    assert ack.control.nonce == syn.control.nonce
    assert p.client.flow(flow_id).state is State.CONNECTED
    assert p.server.flow(accepted.flow_id).state is State.CONNECTED
    assert p.server.flow(accepted.flow_id).peer == C1


def test_flow_ids_and_nonces_are_random_and_distinct_sal_flow_1_2() -> None:
    p = pair(transport=DATAGRAM)
    ids = {p.connect(DATAGRAM) for _ in range(50)}
    assert len(ids) == 50 and 0 not in ids
    nonces = {p.client.flow(i).own_nonce for i in ids}
    assert len(nonces) == 50


def test_connected_datagram_flow_carries_messages_both_ways_sal_dgram_9() -> None:
    p = pair(transport=DATAGRAM)
    flow_id = p.connect(DATAGRAM)
    p.run()
    server_flow = p.server_flow()
    p.client.send(flow_id, b"ping", p.net.now)
    p.client.send(flow_id, b"", p.net.now)
    p.net.service(p.client)
    p.run()
    assert p.net.take(p.server, MessageReceived) == [
        MessageReceived(server_flow, b"ping"),
        MessageReceived(server_flow, b""),
    ]
    p.server.send(server_flow, b"pong", p.net.now)
    p.net.service(p.server)
    p.run()
    assert p.net.take(p.client, MessageReceived) == [MessageReceived(flow_id, b"pong")]


def test_close_both_sides_reaches_timewait_then_closed_sal_close_1_4() -> None:
    p = pair(transport=DATAGRAM)
    flow_id = p.connect(DATAGRAM)
    p.run()
    server_flow = p.server_flow()
    p.client.close(flow_id, p.net.now)
    p.net.service(p.client)
    p.run()
    assert p.client.flow(flow_id).state is State.FINWAIT2
    assert p.net.take(p.server, EndOfData) == [EndOfData(server_flow)]
    assert p.server.flow(server_flow).state is State.CLOSEWAIT
    fin = p.capture.control(C1)[-1]
    assert fin.control is not None and fin.control.flags == FIN | ACK  # SAL-CLOSE-1
    p.server.close(server_flow, p.net.now)
    p.net.service(p.server)
    p.run()
    assert p.net.take(p.server, Closed) == [Closed(server_flow, CloseReason.CLOSED)]
    assert server_flow not in p.server.flows  # LASTACK -> CLOSED
    assert p.net.take(p.client, Closed) == [Closed(flow_id, CloseReason.CLOSED)]
    assert p.client.flows[flow_id].state is State.TIMEWAIT
    p.run(TIMEWAIT_DURATION + 1)
    assert flow_id not in p.client.flows


def test_simultaneous_close_goes_through_closing_sal_close_3() -> None:
    p = pair(transport=DATAGRAM)
    flow_id = p.connect(DATAGRAM)
    p.run()
    server_flow = p.server_flow()
    p.client.close(flow_id, p.net.now)
    p.server.close(server_flow, p.net.now)
    p.net.service(p.client)
    p.net.service(p.server)
    p.run(0.015)  # both FINs have crossed; the ACKs are in flight
    assert p.client.flows[flow_id].state in (State.CLOSING, State.TIMEWAIT)
    p.run()
    assert p.client.flows[flow_id].state is State.TIMEWAIT
    assert p.server.flows[server_flow].state is State.TIMEWAIT


def test_syn_for_unknown_service_is_refused_with_rst_sal_conn_4_5_rst_6() -> None:
    p = pair(transport=STREAM)
    other = service_id_for_name("nothing.example")
    p.client.table.add(Rule.forward(Prefix(other), S1), p.net.now)
    flow_id = p.connect(STREAM, other)
    p.run()
    assert p.server.drops[ErrorCode.NO_SERVICE] == 1
    rst = p.capture.control(S1)[-1]
    assert rst.control is not None
    assert rst.control.flags == RST | ACK and rst.source_flow_id == 0  # Section 5.11.3
    assert rst.destination_flow_id == flow_id
    assert rst.protocol == TransportProtocol.NONE
    assert p.net.take(p.client, Closed) == [Closed(flow_id, CloseReason.REFUSED)]


def test_connect_without_rule_reports_unreachable_and_sends_nothing_sal_conn_2() -> None:
    p = pair()
    with pytest.raises(Unreachable):
        p.client.connect(service_id_for_name("nowhere.example"), STREAM, p.net.now)
    assert p.client.datagrams_to_send() == [] and not p.client.flows


def test_syn_retransmission_schedule_and_failure_sal_ctrl_15_16() -> None:
    p = pair(drop=lambda out, now: out.source != S1)  # every server packet is lost
    flow_id = p.connect(STREAM)
    start = p.net.now
    p.run(300)
    sent = [round(t - start) for t, out, _ in p.capture.packets if out.source == C1]
    assert sent == [0, 1, 3, 7, 15, 31, 63, 123, 183]
    [closed] = p.net.take(p.client, Closed)
    assert closed.reason is CloseReason.TIMEOUT
    # REQUEST fails without an RST (SAL-CTRL-16).
    assert all(p.control is None or not p.control.flags & RST for _, _, p in p.capture.packets)
    assert flow_id not in p.client.flows


def test_lost_syn_ack_is_retransmitted_by_the_server_and_rtt_follows_karn_sal_ctrl_13() -> None:
    lost = {"syn_ack": 1}

    def drop_first_syn_ack(out: Outgoing, now: float) -> bool:
        packet = decode_sal(out.data)
        if packet.control is not None and packet.control.flags == SYN | ACK and lost["syn_ack"]:
            lost["syn_ack"] -= 1
            return False
        return True

    p = pair(drop=drop_first_syn_ack, transport=DATAGRAM)
    flow_id = p.connect(DATAGRAM)
    p.run(3)
    assert [e.flow_id for e in p.net.take(p.client, Connected)] == [flow_id]
    # Both sides' first packets were answered after a retransmission: no RTT sample yet.
    server_flow = p.server_flow()
    assert p.server.flow(server_flow).rto.srtt is None


def test_half_open_flow_times_out_silently_sal_conn_12() -> None:
    def drop_client_acks(out: Outgoing, now: float) -> bool:
        control = decode_sal(out.data).control
        return out.source != C1 or control is None or control.flags == SYN

    p = pair(drop=drop_client_acks, transport=DATAGRAM)
    p.connect(DATAGRAM)
    p.run(0.05)
    assert len(p.server.flows) == 1
    p.run(REQUEST_TIMEOUT)
    assert not p.server.flows
    assert not p.net.take(p.server, Accepted)


def test_duplicate_syn_makes_no_new_flow_sal_conn_6_7() -> None:
    p = pair(drop=lambda out, now: out.source != S1, transport=DATAGRAM)
    p.connect(DATAGRAM)
    p.run(0.5)
    [flow] = p.server.flows.values()
    p.run(1.0)  # the client's SYN at 1 s is a duplicate: the same flow answers it
    assert list(p.server.flows.values()) == [flow]
    assert flow.outstanding is not None and flow.outstanding.retransmitted  # Karn's rule
    syn_acks = [pk for pk in p.capture.control(S1) if pk.control and pk.control.flags == SYN | ACK]
    assert len(syn_acks) == 3  # the first, the answer to the duplicate, the server's RTO


def _inject(p, packet: SalPacket, source, destination) -> None:  # type: ignore[no-untyped-def]
    p.net.call_at(
        p.net.now,
        lambda: p.net._deliver(Outgoing(encode_sal(packet), source, destination)),
    )
    p.run(0.001)


@pytest.mark.parametrize("flags", [RST, RSYN, FIN | ACK, RSYN | ACK])
def test_forged_control_with_wrong_nonce_changes_nothing_sal_ctrl_6_rst_5(flags: int) -> None:
    p = pair(transport=DATAGRAM)
    flow_id = p.connect(DATAGRAM)
    p.run()
    server_flow = p.server.flow(p.server_flow())
    before = dataclasses.replace(server_flow)
    attacker = ep("203.0.113.66", 666)
    packet = SalPacket(
        flow_id,
        server_flow.local_flow_id,
        DATAGRAM,
        control=Control(ControlFlags(flags), server_flow.rcv_nxt, server_flow.snd_nxt, b"\x00" * 8),
    )
    _inject(p, packet, attacker, S1)
    after = p.server.flow(server_flow.local_flow_id)
    assert (after.state, after.substate, after.peer, after.candidate, after.rcv_nxt) == (
        before.state,
        before.substate,
        before.peer,
        None,
        before.rcv_nxt,
    )
    assert p.server.drops[ErrorCode.BAD_NONCE] == 1
    p.run()
    assert after.state is State.CONNECTED


def test_syn_flood_is_bounded_by_the_request_queue_sal_conn_8() -> None:
    p = pair(transport=STREAM)
    for n in range(MAX_REQUEST_QUEUE + 20):
        syn = SalPacket(
            n + 1,
            0,
            STREAM,
            control=Control(SYN, n, 0, n.to_bytes(8, "big")),
            destination_service=ECHO,
        )
        p.server.receive_datagram(
            encode_sal(syn), source=ep("203.0.113.1", 1000 + n), local=S1, now=p.net.now
        )
    assert len(p.server.flows) == MAX_REQUEST_QUEUE
    assert p.server.drops[ErrorCode.QUEUE_FULL] == 20


def test_packet_for_no_flow_draws_an_rst_unless_rst_or_zero_source_sal_rst_1_2() -> None:
    p = pair()
    stray = SalPacket(7, 0x1234, STREAM, control=Control(ACK, 5, 9, b"n" * 8))
    p.server.receive_datagram(encode_sal(stray), source=C1, local=S1, now=p.net.now)
    [out] = p.server.datagrams_to_send()
    rst = decode_sal(out.data)
    assert rst.control == Control(RST, 9, 0, b"n" * 8)
    assert (rst.source_flow_id, rst.destination_flow_id) == (0x1234, 7)
    assert p.server.drops[ErrorCode.UNEXPECTED_CONTROL] == 1
    for packet in (
        SalPacket(7, 0x1234, TransportProtocol.NONE, control=Control(RST, 5, 9, b"n" * 8)),
        SalPacket(0, 0x1234, STREAM, control=Control(ACK, 5, 9, b"n" * 8)),
    ):
        p.server.receive_datagram(encode_sal(packet), source=C1, local=S1, now=p.net.now)
    assert p.server.datagrams_to_send() == []


def test_rst_answers_are_rate_limited_per_address_sal_rst_3() -> None:
    p = pair()
    for n in range(50):
        stray = SalPacket(7, 0x1234 + n, STREAM, control=Control(ACK, 5, 9, b"n" * 8))
        p.server.receive_datagram(encode_sal(stray), source=C1, local=S1, now=p.net.now)
    assert len(p.server.datagrams_to_send()) == 10


def test_delay_rule_resolves_through_the_resolver_sal_tbl_9_11() -> None:
    p = pair(via_resolver=True, transport=DATAGRAM)
    flow_id = p.connect(DATAGRAM)
    p.run()
    assert [e.flow_id for e in p.net.take(p.client, Connected)] == [flow_id]
    assert p.net.resolver is not None and p.net.resolver.resolutions == 1
    # The FORWARD rule installed from the record serves the next connect without a resolution.
    p.connect(DATAGRAM)
    p.run()
    assert p.net.resolver.resolutions == 1


def test_unregistered_service_fails_the_connect_as_unreachable() -> None:
    p = pair(via_resolver=True)
    flow_id = p.connect(STREAM, service_id_for_name("nobody.example"))
    p.run()
    [closed] = p.net.take(p.client, Closed)
    assert closed == Closed(flow_id, CloseReason.UNREACHABLE, "the service is not registered")
    assert p.client.drops[ErrorCode.NO_SERVICE] == 1


def test_closing_the_listener_unregisters_it_sal_tbl_16() -> None:
    p = pair(via_resolver=True)
    assert p.net.resolver is not None and p.net.resolver.record(ECHO) is not None
    p.server.close_listener(p.listener, p.net.now)
    p.net.service(p.server)
    assert p.net.resolver.record(ECHO) is None
    with pytest.raises(LocalProtocolError):
        p.server.close_listener(p.listener, p.net.now)


def test_unconnected_datagram_and_direct_reply_sal_dgram_1_6_7() -> None:
    p = pair(transport=DATAGRAM)
    mine = service_id_for_name("client.example")
    p.client.sendto(ECHO, b"hello", p.net.now, source_service=mine)
    p.net.service(p.client)
    p.run()
    [request] = p.net.take(p.server, DatagramReceived)
    assert (request.data, request.sender, request.source_service) == (b"hello", C1, mine)
    p.client.listen(mine, DATAGRAM, p.net.now)
    p.server.reply(request, b"world", p.net.now)
    p.net.service(p.server)
    p.run()
    [reply] = p.net.take(p.client, DatagramReceived)
    assert (reply.data, reply.service_id, reply.source_service) == (b"world", mine, ECHO)


def test_datagram_for_unbound_service_is_dropped_silently_sal_dgram_5() -> None:
    p = pair(transport=DATAGRAM)
    packet = SalPacket(0, 0, DATAGRAM, destination_service=bytes(32), payload=b"x")
    p.server.receive_datagram(encode_sal(packet), source=C1, local=S1, now=p.net.now)
    assert p.server.drops[ErrorCode.NO_SERVICE] == 1
    assert p.server.datagrams_to_send() == []


def test_migration_moves_the_flow_and_the_peer_follows_sal_mig_4_12_13() -> None:
    p = pair(transport=DATAGRAM, client_interfaces=(C1, C2))
    flow_id = p.connect(DATAGRAM)
    p.run()
    server_flow = p.server_flow()
    p.client.migrate(flow_id, C2, p.net.now)
    p.net.service(p.client)
    assert p.client.flow(flow_id).substate is SubState.RSYN_SENT
    p.run()
    assert p.client.flow(flow_id).substate is SubState.INITIAL
    assert p.client.flow(flow_id).local == C2
    assert p.server.flow(server_flow).peer == C2
    assert p.server.flow(server_flow).substate is SubState.INITIAL
    p.client.send(flow_id, b"from C2", p.net.now)
    p.net.service(p.client)
    p.run()
    assert p.net.take(p.server, MessageReceived)[-1].data == b"from C2"


def test_simultaneous_migration_sal_mig_9_11() -> None:
    p = pair(transport=DATAGRAM, client_interfaces=(C1, C2))
    p.net.attach(p.server, ep("198.51.100.9"))
    flow_id = p.connect(DATAGRAM)
    p.run()
    server_flow = p.server_flow()
    p.client.migrate(flow_id, C2, p.net.now)
    p.server.migrate(server_flow, ep("198.51.100.9"), p.net.now)
    p.net.service(p.client)
    p.net.service(p.server)
    p.run(0.015)
    assert p.client.flow(flow_id).substate is SubState.RSYN_SENT_RECV
    p.run()
    client, server = p.client.flow(flow_id), p.server.flow(server_flow)
    assert (client.substate, server.substate) == (SubState.INITIAL, SubState.INITIAL)
    assert client.peer == ep("198.51.100.9") and server.peer == C2


def test_state_table_refuses_new_fin_in_closewait_sal_conn_20() -> None:
    p = pair(transport=DATAGRAM)
    flow_id = p.connect(DATAGRAM)
    p.run()
    p.client.close(flow_id, p.net.now)
    p.net.service(p.client)
    p.run()
    server_flow = p.server.flow(p.server_flow())
    client_flow = p.client.flows[flow_id]
    second_fin = SalPacket(
        flow_id,
        server_flow.local_flow_id,
        DATAGRAM,
        control=Control(FIN | ACK, client_flow.snd_nxt, server_flow.snd_nxt, client_flow.own_nonce),
    )
    _inject(p, second_fin, C1, S1)
    assert p.server.drops[ErrorCode.UNEXPECTED_CONTROL] == 1
    assert server_flow.state is State.CLOSEWAIT


def test_host_with_config_router_forwards_syns_sal_fwd_6() -> None:
    p = pair(transport=DATAGRAM)
    router_endpoint = ep("198.51.100.50")
    router = p.net.add_host((router_endpoint,), HostConfig(router=True, register=False))
    router.table.add(Rule.forward(Prefix(ECHO), S1), p.net.now)
    p.client.table.remove(next(iter(p.client.table)).key)
    p.client.table.add(Rule.forward(Prefix(ECHO, 0), router_endpoint), p.net.now)
    flow_id = p.connect(DATAGRAM)
    p.run()
    assert [e.flow_id for e in p.net.take(p.client, Connected)] == [flow_id]
    forwarded = [pk for _, out, pk in p.capture.packets if out.source == router_endpoint]
    assert forwarded and forwarded[0].source_route is not None
    assert forwarded[0].source_route.entries == (C1, router_endpoint)
    # The SYN-ACK went straight to the client (SAL-FWD-10).
    syn_ack = next(
        o for _, o, pk in p.capture.packets if pk.control and pk.control.flags == SYN | ACK
    )
    assert (syn_ack.source, syn_ack.destination) == (S1, C1)


def test_a_retransmitted_syn_avoids_the_instance_that_did_not_answer_sal_conn_3_21() -> None:
    """Two instances of equal weight, one of them (S2) dead: every SYN that went
    to S2 is retransmitted after its RTO to S1, the one not yet tried, and so
    every connection is up after at most one retransmission."""
    p = pair(seed=7)
    p.client.table.add(Rule.forward(Prefix(ECHO), S2), p.net.now)  # no host at S2
    flows = [p.connect(STREAM) for _ in range(16)]
    start = p.net.now
    p.run(2.5)  # one RTO (1 s) and a round trip, well before the second (at 3 s)
    connected = {event.flow_id for event in p.net.take(p.client, Connected)}
    assert connected == set(flows)
    syns: dict[int, list[Endpoint]] = {}
    times: dict[int, list[float]] = {}
    for when, out, packet in p.capture.packets:
        if packet.control is not None and packet.control.flags == SYN:
            syns.setdefault(packet.source_flow_id, []).append(out.destination)
            times.setdefault(packet.source_flow_id, []).append(round(when - start))
    first_to_dead = [flow for flow in flows if syns[flow][0] == S2]
    assert first_to_dead and len(first_to_dead) < len(flows)  # the seed tries both
    for flow in flows:
        expected = [S2, S1] if flow in first_to_dead else [S1]
        assert syns[flow] == expected
        assert times[flow] == [0, 1][: len(expected)]
