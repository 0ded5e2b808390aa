"""The conformance test services (Appendix C.4) on the in-memory network.

A client host talks to a target host running :class:`ConformanceServices`; the
integration test tests/integration/test_sal_target.py runs the same services
inside ``serval-node --test-services`` over real sockets.
"""

from __future__ import annotations

import random

from ref.sal.host import (
    Closed,
    CloseReason,
    Connected,
    DatagramReceived,
    EndOfData,
    Host,
    HostConfig,
    MessageReceived,
)
from ref.sal.resolver import Registration, StaticResolver
from ref.sal.sim import SalNetwork
from ref.sal.table import Prefix, Rule
from ref.sal.testservices import ConformanceServices
from ref.wire.constants import (
    ECHO_DATAGRAM_SERVICE_ID,
    ECHO_STREAM_SERVICE_ID,
    HOLD_STREAM_SERVICE_ID,
    INITIATOR_SERVICE_ID,
)
from ref.wire.sal import TransportProtocol

from .salnet import C1, S1, S2

STREAM, DATAGRAM = TransportProtocol.STREAM, TransportProtocol.DATAGRAM
CALLER = bytes(range(32))  # the client's own serviceID for unconnected datagrams


def _network(*, resolver: StaticResolver | None = None) -> tuple[SalNetwork, Host, Host]:
    net = SalNetwork(random.Random(5), resolver=resolver)
    config = HostConfig(register=False)
    client = net.add_host((C1,), config)
    target = net.add_host((S1,), config)
    services = ConformanceServices(target, net.now)
    target.table.add(Rule.delay(), net.now)
    net.applications[id(target)] = services.handle
    for service_id in (
        ECHO_STREAM_SERVICE_ID,
        ECHO_DATAGRAM_SERVICE_ID,
        HOLD_STREAM_SERVICE_ID,
        INITIATOR_SERVICE_ID,
    ):
        client.table.add(Rule.forward(Prefix(service_id), S1), net.now)
    client.listen(CALLER, DATAGRAM, net.now)
    net.service(target)
    return net, client, target


def _read_all(net: SalNetwork, host: Host, flow_id: int) -> bytes:
    received = bytearray()
    for _ in range(200):
        net.run_for(0.5)
        received += host.read(flow_id, now=net.now)
        if any(isinstance(e, EndOfData) and e.flow_id == flow_id for e in net.events_of(host)):
            received += host.read(flow_id, now=net.now)
            break
    return bytes(received)


def test_echo_stream_sends_everything_back_then_closes() -> None:
    net, client, _ = _network()
    flow_id = client.connect(ECHO_STREAM_SERVICE_ID, STREAM, net.now)
    net.service(client)
    net.run_for(0.5)
    payload = random.Random(1).randbytes(200_000)
    sent = 0
    while sent < len(payload):
        sent += client.send(flow_id, payload[sent : sent + 65536], net.now)
        net.service(client)
        net.run_for(0.05)
    client.close(flow_id, net.now)
    net.service(client)
    assert _read_all(net, client, flow_id) == payload
    net.run_for(5)
    closed = [e for e in net.events_of(client) if isinstance(e, Closed)]
    assert [e.reason for e in closed] == [CloseReason.CLOSED]


def test_echo_datagram_answers_flows_and_unconnected_datagrams() -> None:
    net, client, _ = _network()
    flow_id = client.connect(ECHO_DATAGRAM_SERVICE_ID, DATAGRAM, net.now)
    net.service(client)
    net.run_for(0.5)
    for message in (b"a", b"bb" * 500, b""):
        client.send(flow_id, message, net.now)
        net.service(client)
    net.run_for(0.5)
    messages = [e.data for e in net.events_of(client) if isinstance(e, MessageReceived)]
    assert messages == [b"a", b"bb" * 500, b""]
    client.sendto(ECHO_DATAGRAM_SERVICE_ID, b"ping", net.now, source_service=CALLER)
    net.service(client)
    net.run_for(0.5)
    datagrams = [e for e in net.events_of(client) if isinstance(e, DatagramReceived)]
    assert [d.data for d in datagrams] == [b"ping"]
    assert datagrams[0].source_service == ECHO_DATAGRAM_SERVICE_ID


def test_hold_stream_never_reads_so_the_window_closes() -> None:
    net, client, target = _network()
    flow_id = client.connect(HOLD_STREAM_SERVICE_ID, STREAM, net.now)
    net.service(client)
    net.run_for(0.5)
    accepted = 0
    for _ in range(200):
        accepted += client.send(flow_id, bytes(65536), net.now)
        net.service(client)
        net.run_for(0.2)
    buffered = target.config.receive_buffer + client.config.send_buffer
    assert target.config.receive_buffer <= accepted <= buffered  # the target took no more
    assert not [e for e in net.events_of(client) if isinstance(e, Closed)]


def _initiate(net: SalNetwork, client: Host, request: bytes) -> list[bytes]:
    client.sendto(INITIATOR_SERVICE_ID, request, net.now, source_service=CALLER)
    net.service(client)
    net.run_for(3)
    return [
        e.data
        for e in net.take(client, DatagramReceived)
        if e.source_service == INITIATOR_SERVICE_ID
    ]


def test_initiator_mode_0_connects_to_the_requester_sends_and_echoes() -> None:
    net, client, _ = _network()
    called = random.Random(2).randbytes(32)
    client.listen(called, STREAM, net.now)
    assert _initiate(net, client, called + bytes([STREAM, 0]) + b"first") == []
    accepted = [e for e in net.events_of(client) if type(e).__name__ == "Accepted"]
    assert len(accepted) == 1
    flow_id = accepted[0].flow_id
    assert client.read(flow_id, now=net.now) == b"first"
    client.send(flow_id, b"back", net.now)
    client.close(flow_id, net.now)
    net.service(client)
    assert _read_all(net, client, flow_id) == b"back"
    net.run_for(2)
    answers = [e.data for e in net.take(client, DatagramReceived)]
    assert answers == [b"closed"]


def test_initiator_reports_refusal_and_bad_requests() -> None:
    net, client, _ = _network()
    nobody = random.Random(3).randbytes(32)  # routed to the client, which has no listener
    assert _initiate(net, client, nobody + bytes([DATAGRAM, 0])) == [b"connection refused"]
    for bad in (b"short", nobody + bytes([9, 0]), nobody + bytes([STREAM, 2])):
        assert _initiate(net, client, bad) == [b"bad request"]


def test_initiator_mode_1_resolves_through_the_resolver() -> None:
    clock = [0.0]
    resolver = StaticResolver(clock=lambda: clock[0])
    net, client, target = _network(resolver=resolver)
    clock[0] = net.now
    unknown = random.Random(4).randbytes(32)
    assert _initiate(net, client, unknown + bytes([STREAM, 1])) == [b"service unreachable"]
    known = random.Random(5).randbytes(32)
    second = net.add_host((S2,), HostConfig(register=False))
    second.listen(known, DATAGRAM, net.now)
    resolver.add(Registration(known, S2))
    answers = _initiate(net, client, known + bytes([DATAGRAM, 1]) + b"hi")
    assert answers == []
    assert [e.data for e in net.events_of(second) if isinstance(e, MessageReceived)] == [b"hi"]
    # The services took the target's events: none is left for another application.
    assert not [e for e in net.events_of(target) if isinstance(e, Connected)]
