"""Fixtures for SAL host tests: two hosts on an in-memory network, and packet readers."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from ref.sal.host import Host, HostConfig, Outgoing
from ref.sal.resolver import StaticResolver
from ref.sal.sim import SalNetwork
from ref.sal.table import Prefix, Rule
from ref.wire.ids import service_id_for_name
from ref.wire.sal import Endpoint, SalPacket, TransportProtocol, decode_sal

ECHO = service_id_for_name("echo.example")
STREAM, DATAGRAM = TransportProtocol.STREAM, TransportProtocol.DATAGRAM


def ep(address: str, port: int = 54325) -> Endpoint:
    return Endpoint(ipaddress.ip_address(address), port)


C1, C2, C3 = ep("192.0.2.1", 40000), ep("192.0.2.2", 40000), ep("2001:db8::c", 40000)
S1, S2 = ep("198.51.100.1"), ep("198.51.100.2")


@dataclass
class Capture:
    """Every datagram on the network, decoded, with its time."""

    packets: list[tuple[float, Outgoing, SalPacket]] = field(default_factory=list)

    def __call__(self, outgoing: Outgoing, now: float) -> bool:
        self.packets.append((now, outgoing, decode_sal(outgoing.data)))
        return True

    def control(self, source: Endpoint | None = None) -> list[SalPacket]:
        return [
            packet
            for _, out, packet in self.packets
            if packet.control is not None and (source is None or out.source == source)
        ]

    def flags(self, source: Endpoint | None = None) -> list[int]:
        return [int(p.control.flags) for p in self.control(source) if p.control is not None]


@dataclass
class Pair:
    """A client host and a server host with a listener, and the network between them."""

    net: SalNetwork
    client: Host
    server: Host
    listener: int
    capture: Capture

    def connect(self, transport: TransportProtocol = STREAM, service: bytes = ECHO) -> int:
        flow_id = self.client.connect(service, transport, self.net.now)
        self.net.service(self.client)
        return flow_id

    def server_flow(self) -> int:
        from ref.sal.host import Accepted

        accepted = [e for e in self.net.events_of(self.server) if isinstance(e, Accepted)]
        assert accepted, "the server accepted no flow"
        return accepted[-1].flow_id

    def run(self, seconds: float = 1.0) -> None:
        self.net.run_for(seconds)


def pair(
    *,
    seed: int = 1,
    transport: TransportProtocol = STREAM,
    latency: float = 0.01,
    loss: float = 0.0,
    duplicate: float = 0.0,
    jitter: float = 0.0,
    client_interfaces: tuple[Endpoint, ...] = (C1,),
    config: HostConfig | None = None,
    via_resolver: bool = False,
    drop: Callable[[Outgoing, float], bool] | None = None,
) -> Pair:
    """A client that reaches ``echo.example`` on the server by a FORWARD rule (or DELAY)."""
    rng = random.Random(seed)
    net = SalNetwork(
        rng,
        latency=latency,
        loss=loss,
        duplicate=duplicate,
        jitter=jitter,
        resolver=StaticResolver(clock=lambda: net.now) if via_resolver else None,
    )
    capture = Capture()
    net.taps.append(capture)
    if drop is not None:
        net.taps.append(drop)
    config = config or HostConfig(register=via_resolver)
    client = net.add_host(client_interfaces, config)
    server = net.add_host((S1,), config)
    listener = server.listen(ECHO, transport, net.now)
    net.service(server)
    if via_resolver:
        client.table.add(Rule.delay(), net.now)
    else:
        client.table.add(Rule.forward(Prefix(ECHO), S1), net.now)
    return Pair(net, client, server, listener, capture)
