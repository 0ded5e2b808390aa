"""Forward mode: a ServalDHT node acting as a SAL service router (draft 6.9.3).

A SYN or unconnected datagram for a serviceID that the node has no rule for
is carried toward the block's replica set along the ring, and from the first
node that holds the record straight to the provider.  The forwarding steps
themselves (SOURCE extension, loop check, hop limit) are ``ref.sal``'s
(:func:`ref.sal.forwarding.forward`), and the rules installed from records
live in a ``ref.sal`` service table, so there is one copy of the SAL's
router logic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ref.chord.abuse import RateLimiter
from ref.chord.framing import record_verifies
from ref.chord.ring import closest_preceding, id_of, in_half_open
from ref.sal.forwarding import forward, reply_endpoint
from ref.sal.table import LookupMode, RuleType, ServiceTable
from ref.wire.constants import REFER_NODES
from ref.wire.errors import ErrorCode, RemoteProtocolError
from ref.wire.ids import block_base
from ref.wire.sal import (
    Control,
    ControlFlags,
    Endpoint,
    SalPacket,
    TransportProtocol,
    encode_sal,
)

if TYPE_CHECKING:
    from ref.chord.node import Node

#: SAL-RST-3: RSTs in answer to packets, per address.
RST_RATE = 10.0


class ForwardMode:
    """The service router of one node: its table, and the rules of Section 6.9.3."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.table = ServiceTable(node.rng)
        self._rst_limiter = RateLimiter(RST_RATE, RST_RATE)

    def receive(self, packet: SalPacket, source: Endpoint) -> None:
        node = self.node
        control = packet.control
        is_syn = (
            control is not None
            and control.flags & ControlFlags.SYN
            and not control.flags & ControlFlags.ACK
        )
        is_datagram = control is None  # of any Protocol value: SAL-HDR-3
        service_id = packet.destination_service
        if packet.destination_flow_id or service_id is None or not (is_syn or is_datagram):
            # SAL-FWD-1: routers carry only SYNs and unconnected datagrams.
            node.drop(ErrorCode.UNEXPECTED_CONTROL, "not a SYN or datagram", source)
            return
        base = block_base(service_id)
        block = id_of(base)
        now = node.now
        self.table.expire(now)
        record = node.store.get(base, now) or node.cache.get(base, now)
        if record is not None and not record.is_tombstone and record_verifies(record):
            # Step 1 (DHT-FWD-3: only a verified record installs rules).
            self.table.install_record(record, now)
            rule = self.table.lookup(
                service_id, now, protocol=packet.protocol, mode=LookupMode.ALL_RULES,
                octets=len(packet.payload),
            )
            if rule is not None and rule.type is RuleType.FORWARD:
                assert isinstance(rule.target, Endpoint)
                self._forward(packet, source, rule.target)
                return
        if record is not None or node.is_member(block):
            # Step 2: a replica-set member knows the service does not exist.
            node.drop(ErrorCode.NO_SERVICE, "service not registered", source)
            if is_syn:
                self._refuse(packet, source)
            return
        # Step 3: toward the block, along the ring; no rule is installed.
        first = node.successors[0] if node.successors else None
        if first is not None and in_half_open(block, node.id, first.id):
            next_hop = first
        else:
            hops = closest_preceding(node.id, block, node.lookup_candidates(block), REFER_NODES)
            if not hops:
                node.drop(ErrorCode.NO_SERVICE, "no route toward the block", source)
                return
            next_hop = hops[0]
        self._forward(packet, source, next_hop.endpoint)

    def _forward(self, packet: SalPacket, source: Endpoint, next_hop: Endpoint) -> None:
        node = self.node
        try:
            data = forward(
                packet, observed=source, received_at=node.endpoint, next_hop=next_hop
            )  # DHT-FWD-2
        except RemoteProtocolError as error:
            node.drop(error.error_code, str(error), source)
            return
        node.counters["forwarded"] += 1
        node.send_raw(data, next_hop)

    def _refuse(self, syn: SalPacket, source: Endpoint) -> None:
        """An RST in answer to a SYN (Section 5.11.3), rate-limited (SAL-RST-3)."""
        control = syn.control
        assert control is not None
        if syn.source_flow_id == 0:
            return  # SAL-RST-2
        destination = reply_endpoint(syn, source)
        if not self._rst_limiter.admit(destination.address, self.node.now):
            return
        rst = SalPacket(
            source_flow_id=0,
            destination_flow_id=syn.source_flow_id,
            protocol=TransportProtocol.NONE,
            control=Control(
                flags=ControlFlags.RST | ControlFlags.ACK,
                verno=0,
                ackno=(control.verno + 1) % (1 << 32),
                nonce=control.nonce,
            ),
        )
        self.node.send_raw(encode_sal(rst), destination)
