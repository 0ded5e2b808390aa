"""SAL receive processing that does not need a flow table (Section 5.5, steps 4 and 5).

Every host runs these checks on a packet that has decoded: the CONTROL flags
must be one of the valid combinations, and a packet is then a flow packet, a
SYN or an unconnected datagram.  :func:`classify` serves a host that keeps no
flows, such as a ServalDHT node: a flow packet matches no flow and is dropped
(step 6); :func:`packet_kind` serves the SAL host, which looks flows up.
"""

from __future__ import annotations

from enum import Enum

from ref.wire.errors import ErrorCode, RemoteProtocolError
from ref.wire.sal import Control, ControlFlags, SalPacket

_SYN, _RSYN, _ACK, _RST, _FIN = (
    ControlFlags.SYN,
    ControlFlags.RSYN,
    ControlFlags.ACK,
    ControlFlags.RST,
    ControlFlags.FIN,
)
#: The eleven valid CONTROL flag combinations, NACK and reserved bits removed (SAL-EXT-15).
_VALID_FLAGS = frozenset(
    int(flags)
    for flags in (
        _SYN,
        _SYN | _ACK,
        _ACK,
        _RSYN,
        _RSYN | _ACK,
        _FIN,
        _FIN | _ACK,
        _RSYN | _FIN,
        _RSYN | _FIN | _ACK,
        _RST,
        _RST | _ACK,
    )
)
_IGNORED_FLAGS = 0x10 | 0x02 | 0x01  # NACK (SAL-EXT-13) and the reserved bits (SAL-EXT-7)


class PacketKind(Enum):
    """What step 5 of Section 5.5 makes of a packet."""

    FLOW = "flow"  # a non-zero Destination Flow ID: look the flow up (step 6)
    SYN = "syn"
    DATAGRAM = "datagram"  # an unconnected datagram


def flags_of(control: Control) -> int:
    """The CONTROL flags that take part in the combinations: NACK and reserved bits removed."""
    return int(control.flags) & ~_IGNORED_FLAGS


def packet_kind(packet: SalPacket) -> PacketKind:
    """Steps 4 and 5 of SAL receive processing (Section 5.5); raises the counted drop."""
    control = packet.control
    flags = None if control is None else flags_of(control)
    if flags is not None and flags not in _VALID_FLAGS:
        raise RemoteProtocolError(f"CONTROL flags 0x{flags:02X}")  # step 4, SAL-EXT-15
    if packet.destination_flow_id:
        if flags == _SYN:
            raise RemoteProtocolError("a SYN addressed to a flowID")
        return PacketKind.FLOW
    if flags == _SYN:
        if packet.destination_service is None or packet.source_flow_id == 0:
            raise RemoteProtocolError("a SYN without destination serviceID or Source Flow ID")
        return PacketKind.SYN
    if flags is None and packet.destination_service is not None:
        if packet.source_flow_id:
            raise RemoteProtocolError("an unconnected datagram with a Source Flow ID")
        return PacketKind.DATAGRAM
    raise RemoteProtocolError("neither a flow packet, a SYN nor an unconnected datagram")


def classify(packet: SalPacket) -> SalPacket:
    """Steps 4 and 5 for a host without flows: returns a SYN or an unconnected datagram.

    A ServalDHT node has no flow table, so every packet addressed to a flowID
    matches no flow and is dropped, counted UNEXPECTED_CONTROL (step 6).
    """
    if packet_kind(packet) is PacketKind.FLOW:
        raise RemoteProtocolError("no flow for the packet", ErrorCode.UNEXPECTED_CONTROL)
    return packet
