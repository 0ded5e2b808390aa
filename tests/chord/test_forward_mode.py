"""Forward mode (draft Section 6.9.3): SYNs carried along the ring to the provider."""

from __future__ import annotations

import random
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ref.chord.node import Node, NodeConfig
from ref.chord.ring import id_of
from ref.chord.sim import Network, Truth, install_ideal_state
from ref.wire.constants import MAX_SOURCE_ENTRIES
from ref.wire.errors import ErrorCode
from ref.wire.ids import block_base, in_block, service_id_for_name
from ref.wire.records import RecordEndpoint, RecordFlags, ServiceRecord, sign_record
from ref.wire.sal import (
    Control,
    ControlFlags,
    Endpoint,
    SalPacket,
    TransportProtocol,
    decode_sal,
    encode_sal,
)

OWNER = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


class Host:
    """A bare SAL host in the simulated network: it records what it receives."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.received: list[tuple[SalPacket, Endpoint]] = []

    def receive_datagram(self, data: Any, source: Endpoint, now: float) -> None:
        self.received.append((decode_sal(data), source))

    def datagrams_to_send(self) -> list[Any]:
        return []

    def get_timer(self) -> None:
        return None


def syn(service_id: bytes, flow_id: int = 7) -> bytes:
    return encode_sal(
        SalPacket(
            source_flow_id=flow_id,
            destination_flow_id=0,
            protocol=TransportProtocol.STREAM,
            control=Control(ControlFlags.SYN, verno=41, ackno=0, nonce=b"\x11" * 8),
            destination_service=service_id,
        )
    )


@pytest.fixture
def ring() -> tuple[Network, list[Node]]:
    network = Network(random.Random(5))
    config = NodeConfig(forward_mode=True)
    nodes = []
    for _ in range(24):
        node = network.add_node(config, start=False)
        node.successors = [node.me]
        node._become_member()
        network.flush(node)
        nodes.append(node)
    install_ideal_state(network)
    return network, nodes


def attach(network: Network) -> Host:
    host = Host(network.new_endpoint())
    network.hosts[host.endpoint] = host  # type: ignore[assignment]
    return host


def register(network: Network, name: str, provider: Host, mask: int = 0xFF) -> bytes:
    service_id = service_id_for_name(name)
    record = sign_record(
        ServiceRecord(
            service_id=service_id,
            owner_key=b"",
            sequence=1,
            issued_at=int(network.now),
            lifetime=3600,
            flags=RecordFlags(0),
            endpoints=(
                RecordEndpoint(provider.endpoint.address, provider.endpoint.port,
                               service_mask=mask),
            ),
        ),
        OWNER,
    )
    for node in network.members():
        if node.is_member(id_of(service_id)):
            node.store.offer(
                record, network.now, verify=lambda r: True, responsible=lambda s: True
            )
    return service_id


def test_syn_reaches_the_provider_with_the_client_in_entry_zero(
    ring: tuple[Network, list[Node]],
) -> None:
    """DHT-FWD-2, SAL-FWD-6/7: hop by hop along the ring, SOURCE records the path."""
    network, nodes = ring
    client, provider = attach(network), attach(network)
    service_id = register(network, "echo.example", provider)
    far = max(nodes, key=lambda n: (id_of(service_id) - n.id) % (1 << 256))
    network.send(syn(service_id), client.endpoint, far.endpoint)
    network.run_for(2)
    assert len(provider.received) == 1
    packet, _ = provider.received[0]
    assert packet.source_route is not None
    assert packet.source_route.entries[0] == client.endpoint
    hops = len(packet.source_route.entries) - 1
    assert 1 <= hops < MAX_SOURCE_ENTRIES
    assert packet.control == Control(ControlFlags.SYN, 41, 0, b"\x11" * 8)
    assert sum(n.counters["forwarded"] for n in nodes) == hops


def test_unregistered_service_is_refused_with_an_rst(ring: tuple[Network, list[Node]]) -> None:
    """Step 2 of 6.9.3: a replica-set member drops NO_SERVICE and answers the SYN's client."""
    network, nodes = ring
    client = attach(network)
    service_id = service_id_for_name("nobody.example")
    network.send(syn(service_id, flow_id=9), client.endpoint, nodes[0].endpoint)
    network.run_for(2)
    [(rst, _)] = client.received
    assert rst.control is not None
    assert rst.control.flags == ControlFlags.RST | ControlFlags.ACK
    assert rst.control.ackno == 42 and rst.control.nonce == b"\x11" * 8
    assert rst.destination_flow_id == 9 and rst.source_flow_id == 0
    first = Truth(nodes).successor(id_of(block_base(service_id)))
    assert first.counters[f"drop.{ErrorCode.NO_SERVICE.name}"] >= 1


def test_an_id_the_record_does_not_serve_is_not_forwarded(
    ring: tuple[Network, list[Node]],
) -> None:
    """DHT-RES-8 for routers: only endpoints whose mask has the ID's bit."""
    network, _ = ring
    client, provider = attach(network), attach(network)
    service_id = register(network, "masked.example", provider, mask=0b1)
    holder = next(n for n in network.members() if n.store.get(service_id, network.now))
    network.send(syn(in_block(service_id, 2)), client.endpoint, holder.endpoint)
    network.run_for(2)
    assert provider.received == []
    assert [p.control.flags for p, _ in client.received if p.control] == [
        ControlFlags.RST | ControlFlags.ACK
    ]


def test_a_node_without_forward_mode_drops_foreign_packets() -> None:
    network = Network(random.Random(1))
    node = network.add_node()
    client = attach(network)
    network.send(syn(service_id_for_name("x.example")), client.endpoint, node.endpoint)
    network.run_for(1)
    assert node.counters[f"drop.{ErrorCode.NO_SERVICE.name}"] == 1
    assert client.received == []
