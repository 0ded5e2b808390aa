"""Forwarding by service routers (draft Section 5.13), as a pure function.

Theory of operation: a router has done receive processing (Section 5.5,
steps 1-5), refused link-layer broadcasts (SAL-FWD-2), looked the
destination serviceID up and picked a FORWARD rule, possibly again without
the rules whose Endpoint the SOURCE extension lists (SAL-FWD-5).  Then
:func:`forward` takes the decoded packet and three endpoints and applies the
remaining steps: it checks the hop limit and the loops, adds or extends the
SOURCE extension, checks the packet's limits and encodes it with a fresh
checksum.  The caller sends the bytes to ``next_hop`` from ``received_at``.

Every drop is a :class:`RemoteProtocolError` whose ``error_code`` names the
counter (SAL-RECV-2).  :class:`LocalProtocolError` means a caller bug: a
configured maximum outside 1-255, or endpoints or a packet that cannot be
encoded.  The SAL host and the ServalDHT node's forward mode (Section 6.9.3)
share this code.
"""

from __future__ import annotations

import dataclasses

from ref.wire.constants import (
    BASE_HEADER_LENGTH,
    DEFAULT_HOP_LIMIT,
    MAX_EXTENSIONS,
    MAX_SOURCE_ENTRIES,
    MAX_UDP_PAYLOAD,
)
from ref.wire.errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from ref.wire.sal import (
    ControlExtensionFormat,
    Endpoint,
    EndpointFormat,
    SalPacket,
    ServiceExtensionFormat,
    SourceRoute,
    encode_sal,
)

MAX_HOP_LIMIT = 0xFF  # the 8-bit Hop Limit field (Section 5.3.4)
_MAX_HEADER_WORDS = 0xFF  # the 8-bit Header Length field (Section 5.2)
_EXTENSION_HEADER = 4  # Type, Length and two type-specific octets (Section 5.3.1)
_CONTROL_SIZE = ControlExtensionFormat.sizeof()
_SERVICE_SIZE = ServiceExtensionFormat.sizeof()
_ENDPOINT_SIZE = EndpointFormat.sizeof()
_V4_MAPPED_PREFIX = bytes(10) + b"\xff\xff"


def forward(
    packet: SalPacket,
    *,
    observed: Endpoint,
    received_at: Endpoint,
    next_hop: Endpoint,
    max_hops: int = DEFAULT_HOP_LIMIT,
) -> bytes:
    """The bytes to send to ``next_hop`` for ``packet``, or a counted drop.

    ``observed`` is the packet's source endpoint as received, ``received_at``
    the local endpoint it arrived at, ``max_hops`` the configured maximum of
    SAL-FWD-6.  Raises ``RemoteProtocolError`` with the drop's error code.
    """
    if not 1 <= max_hops <= MAX_HOP_LIMIT:
        raise LocalProtocolError(f"the configured maximum hop limit {max_hops} is not 1-255")
    # SAL-FWD-1: flow packets travel between the hosts, never through a router.
    if packet.destination_flow_id != 0:
        raise RemoteProtocolError("only SYNs and datagrams (Destination Flow ID 0) are forwarded")
    route = packet.source_route
    if route is None:
        # SAL-FWD-6
        route = SourceRoute(max_hops - 1, (observed, received_at))
    else:
        # SAL-FWD-3
        if route.hop_limit == 0 or len(route.entries) >= MAX_SOURCE_ENTRIES:
            raise RemoteProtocolError(
                f"SOURCE has Hop Limit {route.hop_limit} and {len(route.entries)} entries",
                ErrorCode.HOP_LIMIT_EXCEEDED,
            )
        # SAL-FWD-4
        listed = {_endpoint_key(entry) for entry in route.entries}
        if _endpoint_key(next_hop) in listed:
            raise RemoteProtocolError("the next hop is in SOURCE", ErrorCode.LOOP_DETECTED)
        if _endpoint_key(received_at) in listed:
            raise RemoteProtocolError("this router is in SOURCE", ErrorCode.LOOP_DETECTED)
        # SAL-FWD-7
        route = SourceRoute(route.hop_limit - 1, (*route.entries, received_at))
    # SAL-FWD-9: only the SOURCE extension changes; encode_sal keeps the rest
    # (unknown extensions in order) and puts SOURCE in its canonical place.
    forwarded = dataclasses.replace(packet, source_route=route)
    _check_limits(forwarded)
    return encode_sal(forwarded)  # Section 5.13 step 7: a new checksum


def reply_endpoint(packet: SalPacket, observed: Endpoint) -> Endpoint:
    """Where to answer ``packet``: SOURCE entry 0, else the observed source.

    SAL-FWD-10 for SYNs and datagrams, DHT-FRAME-4 for ServalDHT requests.
    """
    if packet.source_route is None:
        return observed
    return packet.source_route.entries[0]


def _check_limits(packet: SalPacket) -> None:
    """SAL-FWD-8: the grown packet must still fit the SAL's limits."""
    known = (packet.control, packet.destination_service, packet.source_service, packet.source_route)
    extensions = sum(part is not None for part in known) + len(packet.unknown_extensions)
    if extensions > MAX_EXTENSIONS:
        raise RemoteProtocolError(f"{extensions} extensions with SOURCE", ErrorCode.LIMIT_EXCEEDED)
    header = _header_size(packet)
    if header // 4 > _MAX_HEADER_WORDS:
        raise RemoteProtocolError(
            f"Header Length of {header // 4} words with SOURCE", ErrorCode.LIMIT_EXCEEDED
        )
    size = header + len(packet.payload)
    if size > MAX_UDP_PAYLOAD:
        raise RemoteProtocolError(f"{size} octets with SOURCE", ErrorCode.LIMIT_EXCEEDED)


def _header_size(packet: SalPacket) -> int:
    """Octets of the header that ``encode_sal`` writes for ``packet`` (Section 5.2)."""
    size = BASE_HEADER_LENGTH
    if packet.control is not None:
        size += _CONTROL_SIZE
    services = (packet.destination_service, packet.source_service)
    size += _SERVICE_SIZE * sum(service is not None for service in services)
    if packet.source_route is not None:
        size += _EXTENSION_HEADER + _ENDPOINT_SIZE * len(packet.source_route.entries)
    # An unknown extension's value holds its type-specific octets and body.
    return size + sum(2 + len(ext.value) for ext in packet.unknown_extensions)


def _endpoint_key(endpoint: Endpoint) -> tuple[bytes, int]:
    """Address and Port as the wire carries them, which decide equality (Section 5.3.4).

    So IPv4 equals its IPv4-mapped form (SAL-EXT-20) and an IPv6 zone is ignored.
    """
    address = endpoint.address
    packed = address.packed if address.version == 6 else _V4_MAPPED_PREFIX + address.packed
    return packed, endpoint.port
