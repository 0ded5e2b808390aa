"""Steps 4 and 5 of SAL receive processing (draft Section 5.5) at a ServalDHT node.

Regression tests: the node used to count flow packets and packets without a
destination SERVICE extension as NO_SERVICE (or hand them to forward mode),
never checked the CONTROL flag combinations, and in forward mode refused to
forward datagrams of a Protocol it does not know (SAL-HDR-3).
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from ref.chord.framing import WireFraming
from ref.sal.receive import classify
from ref.wire.constants import SERVALDHT_SERVICE_ID
from ref.wire.errors import ErrorCode, RemoteProtocolError
from ref.wire.sal import Control, ControlFlags, Endpoint, SalPacket, TransportProtocol, encode_sal

from .test_forward_mode import attach, register
from .test_forward_mode import ring as ring  # the fixture

SOMEONE = Endpoint(ipaddress.ip_address("127.0.0.1"), 4000)
OTHER_SERVICE = bytes(range(32))
F = ControlFlags


def _control(flags: int) -> Control:
    return Control(ControlFlags(flags), verno=1, ackno=0, nonce=bytes(8))


def _code(packet: SalPacket) -> ErrorCode | None:
    try:
        WireFraming(None).open(encode_sal(packet), SOMEONE)
    except RemoteProtocolError as error:
        return error.error_code
    return None


@pytest.mark.parametrize(
    ("packet", "code"),
    [
        # Step 4: flag combinations, NACK and the reserved bits removed (SAL-EXT-15, -13).
        (SalPacket(0, 9, TransportProtocol.STREAM, control=_control(0)), ErrorCode.MALFORMED),
        (SalPacket(0, 9, 2, control=_control(F.SYN | F.FIN)), ErrorCode.MALFORMED),
        (SalPacket(0, 9, 2, control=_control(F.ACK | F.NACK)), ErrorCode.UNEXPECTED_CONTROL),
        (SalPacket(0, 9, 2, control=_control(F.ACK | 0x01)), ErrorCode.UNEXPECTED_CONTROL),
        # Step 5: a flow packet matches no flow of a node; a SYN is never for a flowID.
        (
            SalPacket(0, 9, 1, destination_service=SERVALDHT_SERVICE_ID, payload=b"x" * 60),
            ErrorCode.UNEXPECTED_CONTROL,
        ),
        (
            SalPacket(7, 9, 2, control=_control(F.SYN), destination_service=OTHER_SERVICE),
            ErrorCode.MALFORMED,
        ),
        (
            SalPacket(0, 0, 2, control=_control(F.SYN), destination_service=OTHER_SERVICE),
            ErrorCode.MALFORMED,
        ),
        (SalPacket(7, 0, 2, control=_control(F.SYN)), ErrorCode.MALFORMED),
        (
            SalPacket(0, 0, 2, control=_control(F.SYN | F.ACK), destination_service=OTHER_SERVICE),
            ErrorCode.MALFORMED,
        ),
        (SalPacket(0, 0, 1, payload=b"x" * 60), ErrorCode.MALFORMED),
        (
            SalPacket(0, 0, 1, source_service=SERVALDHT_SERVICE_ID, payload=b"x" * 60),
            ErrorCode.MALFORMED,
        ),
        (SalPacket(5, 0, 1, destination_service=OTHER_SERVICE), ErrorCode.MALFORMED),
    ],
)
def test_receive_steps_4_and_5(packet: SalPacket, code: ErrorCode) -> None:
    assert _code(packet) == code


def test_syns_and_datagrams_of_any_protocol_pass_classification() -> None:
    syn = SalPacket(7, 0, 0xC7, control=_control(F.SYN), destination_service=OTHER_SERVICE)
    datagram = SalPacket(0, 0, 0xC7, destination_service=OTHER_SERVICE, payload=b"x")
    assert classify(syn) is syn
    assert classify(datagram) is datagram
    assert isinstance(WireFraming(None).open(encode_sal(datagram), SOMEONE), SalPacket)


def test_forward_mode_passes_a_datagram_of_unknown_protocol(ring: Any) -> None:
    """SAL-HDR-3: a router forwards whatever Protocol value a datagram carries."""
    network, nodes = ring
    client, provider = attach(network), attach(network)
    service_id = register(network, "unknown-protocol.example", provider)
    datagram = SalPacket(0, 0, 0xC7, destination_service=service_id, payload=b"hello")
    network.send(encode_sal(datagram), client.endpoint, nodes[0].endpoint)
    network.run_for(2)
    [(packet, _)] = provider.received
    assert packet.protocol == 0xC7 and packet.payload == b"hello"
