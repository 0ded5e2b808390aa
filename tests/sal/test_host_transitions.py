"""Every row of the state table (Section 5.15) for flows, taken by the host core.

Each case brings a flow into a state over the in-memory network, cuts the
network, applies one event (a packet forged with the peer's real values, an
application call or the passage of time) and checks that the host counted
that row and ended in the row's next state.  A last test checks that the
cases cover every row whose state has a flow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from ref.sal.flow import TRANSITIONS, Event, Flow, State, seq_add
from ref.sal.host import Host
from ref.wire.sal import Control, ControlFlags, SalPacket, TransportProtocol, encode_sal

from .salnet import C1, C2, DATAGRAM, ECHO, S1, Pair, pair

SYN, ACK, FIN, RST = ControlFlags.SYN, ControlFlags.ACK, ControlFlags.FIN, ControlFlags.RST
S, E = State, Event


@dataclass
class Scene:
    p: Pair
    host: Host
    flow: Flow
    cut: list[bool]

    def inject(
        self, control: Control | None, *, payload: bytes = b"", service: bool = False
    ) -> None:
        flow = self.flow
        protocol = TransportProtocol.NONE if control and control.flags & RST else flow.transport
        packet = SalPacket(
            flow.peer_flow_id,
            flow.local_flow_id,
            protocol,
            control=control,
            destination_service=ECHO if service else None,
            payload=payload,
        )
        source = flow.peer or (S1 if self.host is self.p.client else C1)
        local = self.flow.local
        self.host.receive_datagram(
            encode_sal(packet), source=source, local=local, now=self.p.net.now
        )
        self.p.net.service(self.host)

    def peer_control(
        self, flags: ControlFlags, *, verno: int | None = None, ackno: int | None = None
    ) -> Control:
        flow = self.flow
        assert flow.peer_nonce is not None
        return Control(
            flags,
            flow.rcv_nxt if verno is None else verno,
            flow.snd_nxt if ackno is None else ackno,
            flow.peer_nonce,
        )


def _scene(state: State, *, client_side: bool = True) -> Scene:
    """A DATAGRAM flow in ``state`` with the network cut after getting there."""
    cut = [False]
    p = pair(transport=DATAGRAM, drop=lambda out, now: not cut[0], client_interfaces=(C1, C2))
    client_flow = p.client.connect(ECHO, DATAGRAM, p.net.now)
    p.net.service(p.client)
    if state is S.REQUEST:
        cut[0] = True
        return Scene(p, p.client, p.client.flows[client_flow], cut)
    if state is S.RESPOND:
        p.run(0.015)  # the SYN-ACK is on its way; the client's ACK will be lost
        cut[0] = True
        p.run(0.01)
        [flow] = p.server.flows.values()
        return Scene(p, p.server, flow, cut)
    p.run(0.5)
    server_flow = p.server_flow()
    flows = {"client": p.client.flows[client_flow], "server": p.server.flows[server_flow]}
    host, other = (p.client, p.server) if client_side else (p.server, p.client)
    mine = client_flow if client_side else server_flow
    theirs = server_flow if client_side else client_flow
    if state is S.CONNECTED:
        pass
    elif state is S.FINWAIT1:
        cut[0] = True
        host.close(mine, p.net.now)
    elif state is S.FINWAIT2:
        host.close(mine, p.net.now)
        p.net.service(host)
        p.run(0.5)
    elif state is S.CLOSEWAIT:
        other.close(theirs, p.net.now)
        p.net.service(other)
        p.run(0.5)
    elif state is S.LASTACK:
        other.close(theirs, p.net.now)
        p.net.service(other)
        p.run(0.5)
        cut[0] = True
        host.close(mine, p.net.now)
    elif state is S.CLOSING:
        host.close(mine, p.net.now)
        other.close(theirs, p.net.now)
        p.net.service(host)
        p.net.service(other)
        p.run(0.005)  # both FINs are on their way; the ACKs they draw will be lost
        cut[0] = True
        p.run(0.01)
    elif state is S.TIMEWAIT:
        host.close(mine, p.net.now)
        p.net.service(host)
        p.run(0.5)
        other.close(theirs, p.net.now)
        p.net.service(other)
        p.run(0.5)
    cut[0] = True
    p.net.service(host)
    flow = flows["client" if client_side else "server"]
    assert flow.state is state, (flow.state, state)
    return Scene(p, host, flow, cut)


def _migrate_then_wait(seconds: float) -> Callable[[Scene], None]:
    def act(scene: Scene) -> None:
        scene.host.migrate(scene.flow.local_flow_id, C2, scene.p.net.now)
        scene.p.net.service(scene.host)
        scene.p.run(seconds)

    return act


def _wait(seconds: float) -> Callable[[Scene], None]:
    return lambda scene: scene.p.run(seconds)


def _app(name: str) -> Callable[[Scene], None]:
    def act(scene: Scene) -> None:
        getattr(scene.host, name)(scene.flow.local_flow_id, scene.p.net.now)
        scene.p.net.service(scene.host)

    return act


def _data(scene: Scene) -> None:
    scene.inject(None, payload=b"data")


def _rst(scene: Scene) -> None:
    flow = scene.flow
    nonce = flow.peer_nonce or flow.own_nonce  # REQUEST: the echo of a peer without the flow
    scene.inject(Control(RST, 0, 0, nonce))


def _fin(*, ack: bool) -> Callable[[Scene], None]:
    def act(scene: Scene) -> None:
        flow = scene.flow
        ackno = flow.snd_nxt if ack else flow.snd_una
        scene.inject(scene.peer_control(FIN | ACK, ackno=ackno))

    return act


def _ack_of_outstanding(scene: Scene) -> None:
    scene.inject(scene.peer_control(ACK))


def _fin_dup(scene: Scene) -> None:
    flow = scene.flow
    scene.inject(scene.peer_control(FIN | ACK, verno=seq_add(flow.rcv_nxt, -1), ackno=flow.snd_una))


def _syn_ack(*, valid: bool) -> Callable[[Scene], None]:
    def act(scene: Scene) -> None:
        flow = scene.flow
        ackno = seq_add(flow.iss, 1 if valid else 7)
        control = Control(SYN | ACK, 0x1000, ackno, b"servernc")
        packet = SalPacket(
            0x77, flow.local_flow_id, flow.transport, control=control, destination_service=ECHO
        )
        scene.host.receive_datagram(
            encode_sal(packet), source=S1, local=flow.local, now=scene.p.net.now
        )
        scene.p.net.service(scene.host)

    return act


def _syn_ack_dup(scene: Scene) -> None:
    flow = scene.flow
    scene.inject(
        scene.peer_control(SYN | ACK, verno=flow.irs, ackno=seq_add(flow.iss, 1)), service=True
    )


def _handshake_ack(*, valid: bool, fin: bool = False) -> Callable[[Scene], None]:
    def act(scene: Scene) -> None:
        flow = scene.flow
        flags = FIN | ACK if fin else ACK
        ackno = seq_add(flow.iss, 1 if valid else 5)
        scene.inject(scene.peer_control(flags, verno=flow.rcv_nxt, ackno=ackno))

    return act


A = Callable[[Scene], None]
CASES: dict[tuple[State, Event], tuple[A, bool]] = {
    # (state, event): (how, on the client side)
    (S.REQUEST, E.RCV_SYNACK_VALID): (_syn_ack(valid=True), True),
    (S.REQUEST, E.RCV_SYNACK_INVALID): (_syn_ack(valid=False), True),
    (S.REQUEST, E.RCV_RST_VALID): (_rst, True),
    (S.REQUEST, E.RCV_DATA): (_data, True),
    (S.REQUEST, E.RTO): (_wait(1.5), True),
    (S.REQUEST, E.RTO_LIMIT): (_wait(300), True),
    (S.REQUEST, E.APP_CLOSE): (_app("close"), True),
    (S.REQUEST, E.APP_ABORT): (_app("abort"), True),
    (S.RESPOND, E.RCV_ACK_VALID): (_handshake_ack(valid=True), False),
    (S.RESPOND, E.RCV_FIN_HANDSHAKE): (_handshake_ack(valid=True, fin=True), False),
    (S.RESPOND, E.RCV_ACK_INVALID): (_handshake_ack(valid=False), False),
    (S.RESPOND, E.RCV_DATA): (_data, False),
    (S.RESPOND, E.RCV_RST_VALID): (_rst, False),
    (S.RESPOND, E.RTO): (_wait(1.5), False),
    (S.RESPOND, E.REQUEST_TIMEOUT): (_wait(3.5), False),
    (S.CONNECTED, E.RCV_DATA): (_data, True),
    (S.CONNECTED, E.RCV_SYNACK_DUP): (_syn_ack_dup, True),
    (S.CONNECTED, E.RCV_FIN): (_fin(ack=False), True),
    (S.CONNECTED, E.APP_CLOSE): (_app("close"), True),
    (S.CONNECTED, E.RCV_RST_VALID): (_rst, True),
    (S.CONNECTED, E.RTO): (_migrate_then_wait(1.5), True),
    (S.CONNECTED, E.RTO_LIMIT): (_migrate_then_wait(300), True),
    (S.CONNECTED, E.APP_ABORT): (_app("abort"), True),
    (S.FINWAIT1, E.RCV_ACK_OF_FIN): (_ack_of_outstanding, True),
    (S.FINWAIT1, E.RCV_FIN_NOT_ACK_OF_FIN): (_fin(ack=False), True),
    (S.FINWAIT1, E.RCV_FIN_WITH_ACK_OF_FIN): (_fin(ack=True), True),
    (S.FINWAIT1, E.RCV_DATA): (_data, True),
    (S.FINWAIT1, E.RCV_RST_VALID): (_rst, True),
    (S.FINWAIT1, E.RTO): (_wait(1.5), True),
    (S.FINWAIT1, E.RTO_LIMIT): (_wait(300), True),
    (S.FINWAIT1, E.APP_ABORT): (_app("abort"), True),
    (S.FINWAIT2, E.RCV_FIN): (_fin(ack=True), True),
    (S.FINWAIT2, E.RCV_DATA): (_data, True),
    (S.FINWAIT2, E.STATE_TIMEOUT): (_wait(61), True),
    (S.FINWAIT2, E.RCV_RST_VALID): (_rst, True),
    (S.FINWAIT2, E.RTO): (_migrate_then_wait(1.5), True),
    (S.FINWAIT2, E.APP_ABORT): (_app("abort"), True),
    (S.CLOSING, E.RCV_ACK_OF_FIN): (_ack_of_outstanding, True),
    (S.CLOSING, E.RCV_DATA): (_data, True),
    (S.CLOSING, E.RCV_RST_VALID): (_rst, True),
    (S.CLOSING, E.RTO): (_wait(1.5), True),
    (S.CLOSING, E.RTO_LIMIT): (_wait(300), True),
    (S.CLOSING, E.APP_ABORT): (_app("abort"), True),
    (S.TIMEWAIT, E.RCV_FIN_DUP): (_fin_dup, True),
    (S.TIMEWAIT, E.RCV_DATA): (_data, True),
    (S.TIMEWAIT, E.STATE_TIMEOUT): (_wait(61), True),
    (S.TIMEWAIT, E.RCV_RST_VALID): (_rst, True),
    (S.TIMEWAIT, E.APP_ABORT): (_app("abort"), True),
    (S.CLOSEWAIT, E.APP_CLOSE): (_app("close"), True),
    (S.CLOSEWAIT, E.RCV_DATA): (_data, True),
    (S.CLOSEWAIT, E.RCV_RST_VALID): (_rst, True),
    (S.CLOSEWAIT, E.RTO): (_migrate_then_wait(1.5), True),
    (S.CLOSEWAIT, E.RTO_LIMIT): (_migrate_then_wait(300), True),
    (S.CLOSEWAIT, E.APP_ABORT): (_app("abort"), True),
    (S.LASTACK, E.RCV_ACK_OF_FIN): (_ack_of_outstanding, False),
    (S.LASTACK, E.RCV_DATA): (_data, False),
    (S.LASTACK, E.RCV_RST_VALID): (_rst, False),
    (S.LASTACK, E.RTO): (_wait(1.5), False),
    (S.LASTACK, E.RTO_LIMIT): (_wait(300), False),
    (S.LASTACK, E.APP_ABORT): (_app("abort"), False),
}


@pytest.mark.parametrize(
    ("state", "event"), list(CASES), ids=[f"{s.value}-{e.value}" for s, e in CASES]
)
def test_the_host_takes_each_row_of_the_state_table_sal_conn_19(state: State, event: Event) -> None:
    how, client_side = CASES[(state, event)]
    scene = _scene(state, client_side=client_side)
    how(scene)
    assert scene.host.transitions[(state, event)] >= 1
    expected = TRANSITIONS[(state, event)]
    if expected is S.CLOSED:
        assert scene.flow.local_flow_id not in scene.host.flows
    else:
        assert scene.host.flows[scene.flow.local_flow_id].state is expected


#: Rows no run of the protocol can take, with the reason.
UNREACHABLE = {
    # A move's retransmissions need at least 0.2 * (2^9 - 1) = 102 s to run out (SAL-CTRL-15),
    # and the FIN-WAIT-2 timeout ends the flow after 60 s (SAL-CLOSE-6).
    (S.FINWAIT2, E.RTO_LIMIT),
}


def test_fin_wait_2_timeout_comes_before_a_moves_retransmission_limit() -> None:
    scene = _scene(S.FINWAIT2)
    _migrate_then_wait(300)(scene)
    assert scene.host.transitions[(S.FINWAIT2, E.STATE_TIMEOUT)] == 1
    assert scene.host.transitions[(S.FINWAIT2, E.RTO)] >= 5
    assert scene.host.transitions[(S.FINWAIT2, E.RTO_LIMIT)] == 0


def test_the_cases_cover_every_row_with_a_flow() -> None:
    rows = {key for key in TRANSITIONS if key[0] not in (S.CLOSED, S.LISTEN)}
    assert rows == set(CASES) | UNREACHABLE
