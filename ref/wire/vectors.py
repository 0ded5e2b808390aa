"""The draft's test vectors (Appendix A), built from fixed keys and values.

Ed25519 signatures are deterministic [RFC8032], so every vector, signed ones
included, is reproducible from the key seeds below.  ``spec/vectors.py``
renders these into the draft's appendix; ``tests/wire/test_draft_agreement.py``
reads the appendix back and checks it against the codec both ways.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ref.wire import dht
from ref.wire.constants import SERVALDHT_SERVICE_ID
from ref.wire.dht import DhtMessage, LookupStatus, NodeInfo, ResolveStatus, encode_dht
from ref.wire.ids import service_id_for_name
from ref.wire.records import (
    RecordEndpoint,
    RecordFlags,
    ServiceRecord,
    encode_record,
    public_key_bytes,
    sign_record,
)
from ref.wire.sal import (
    Control,
    ControlFlags,
    Endpoint,
    SalPacket,
    SourceRoute,
    StreamFlags,
    StreamSegment,
    TransportProtocol,
    UnknownExtension,
    encode_sal,
    encode_stream,
)


def _seed(label: str) -> bytes:
    return hashlib.sha256(label.encode("ascii")).digest()


#: Private key seeds: SHA-256 of these labels.
KEY_LABELS = {
    "host key A": "serval test vector host key A",
    "host key B": "serval test vector host key B",
    "owner key": "serval test vector owner key",
}
HOST_A = Ed25519PrivateKey.from_private_bytes(_seed(KEY_LABELS["host key A"]))
HOST_B = Ed25519PrivateKey.from_private_bytes(_seed(KEY_LABELS["host key B"]))
OWNER = Ed25519PrivateKey.from_private_bytes(_seed(KEY_LABELS["owner key"]))
KEY_A = public_key_bytes(HOST_A)
KEY_B = public_key_bytes(HOST_B)

ECHO = service_id_for_name("echo.example")
TXID = bytes.fromhex("8f3e2d1c0b0a0908")
TOKEN = bytes.fromhex("a1a2a3a4a5a6a7a8a9aaabacadaeafb0")
NONCE_C = bytes.fromhex("0102030405060708")
NONCE_S = bytes.fromhex("f1f2f3f4f5f6f7f8")
FLOW_C = 0x5A3C0F01
FLOW_S = 0x7E11A2B3
ISS_C = 0x1D2E3F40
ISS_S = 0x64A1B2C3
ISSUED_AT = 1_790_000_000  # 2026-09-21T14:13:20Z


def _ep(address: str, port: int = 54325) -> Endpoint:
    return Endpoint(ipaddress.ip_address(address), port)


NODE_A = NodeInfo(KEY_A, _ep("192.0.2.1"))
NODE_B = NodeInfo(KEY_B, _ep("2001:db8::b"))
NODE_C = NodeInfo(public_key_bytes(OWNER), _ep("198.51.100.7", 40000))

RECORD = sign_record(
    ServiceRecord(
        service_id=ECHO,
        owner_key=bytes(32),
        sequence=1_790_000_000_000,
        issued_at=ISSUED_AT,
        lifetime=3600,
        flags=RecordFlags(0),
        endpoints=(
            RecordEndpoint(ipaddress.ip_address("192.0.2.10"), 54325, 10, 3),
            RecordEndpoint(ipaddress.ip_address("192.0.2.11"), 54325, 10, 1),
            RecordEndpoint(ipaddress.ip_address("2001:db8::10"), 54325, 5, 1, 0x01),
            RecordEndpoint(ipaddress.ip_address("203.0.113.5"), 40000, 0, 1, 0x06),
        ),
    ),
    OWNER,
)
TOMBSTONE = sign_record(
    dataclasses.replace(
        RECORD, sequence=RECORD.sequence + 1, flags=RecordFlags.TOMBSTONE, endpoints=()
    ),
    OWNER,
)
SMALL_RECORD = sign_record(
    dataclasses.replace(RECORD, endpoints=RECORD.endpoints[:1], lifetime=600), OWNER
)


@dataclasses.dataclass(frozen=True)
class Vector:
    """One test vector: what it shows, the object, and its encoding."""

    title: str
    section: str
    format: str  # "sal", "stream", "dht" or "record"
    value: Any
    encoded: bytes


def _sal(title: str, section: str, packet: SalPacket) -> Vector:
    return Vector(title, section, "sal", packet, encode_sal(packet))


def _dht(
    title: str, body: dht.Body, signer: Ed25519PrivateKey | None = None, **header: Any
) -> Vector:
    sender = public_key_bytes(signer) if signer else header.pop("sender_key", bytes(32))
    message = DhtMessage(body=body, transaction_id=TXID, sender_key=sender, **header)
    encoded = encode_dht(message, signer)
    if signer is not None:
        message = dataclasses.replace(
            message, flags=dht.MessageFlags.SIGNED, signature=encoded[-64:]
        )
    return Vector(title, "6.4", "dht", message, encoded)


def _from_client(flags: ControlFlags, verno: int, ackno: int) -> SalPacket:
    """A control packet of the example flow, client to server."""
    control = Control(flags, verno, ackno, NONCE_C)
    return SalPacket(FLOW_C, FLOW_S, TransportProtocol.STREAM, control=control)


def _from_server(flags: ControlFlags, verno: int, ackno: int) -> SalPacket:
    """A control packet of the example flow, server to client."""
    control = Control(flags, verno, ackno, NONCE_S)
    return SalPacket(FLOW_S, FLOW_C, TransportProtocol.STREAM, control=control)


SYN = SalPacket(
    FLOW_C,
    0,
    TransportProtocol.STREAM,
    control=Control(ControlFlags.SYN, ISS_C, 0, NONCE_C),
    destination_service=ECHO,
)
SEGMENT = StreamSegment(ISS_C + 1, ISS_S + 1, StreamFlags.ACK, 256, b"GET /\r\n")


def build_vectors() -> list[Vector]:
    """Every vector of Appendix A, in appendix order."""
    return [
        _sal("SAL SYN", "5.8", SYN),
        _sal(
            "SAL SYN-ACK",
            "5.8",
            dataclasses.replace(
                _from_server(ControlFlags.SYN | ControlFlags.ACK, ISS_S, ISS_C + 1),
                destination_service=ECHO,
            ),
        ),
        _sal("SAL ACK", "5.8", _from_client(ControlFlags.ACK, ISS_C + 1, ISS_S + 1)),
        _sal(
            "SAL stream data",
            "5.14.2",
            SalPacket(FLOW_C, FLOW_S, TransportProtocol.STREAM, payload=encode_stream(SEGMENT)),
        ),
        Vector("Stream segment", "5.14.2", "stream", SEGMENT, encode_stream(SEGMENT)),
        _sal("SAL RSYN", "5.10", _from_client(ControlFlags.RSYN, ISS_C + 1, ISS_S + 1)),
        _sal(
            "SAL RSYN-ACK",
            "5.10",
            _from_server(ControlFlags.RSYN | ControlFlags.ACK, ISS_S + 1, ISS_C + 2),
        ),
        _sal(
            "SAL FIN",
            "5.11",
            _from_client(ControlFlags.FIN | ControlFlags.ACK, ISS_C + 2, ISS_S + 2),
        ),
        _sal("SAL RST", "5.11", _from_server(ControlFlags.RST, ISS_S + 2, 0)),
        _sal(
            "SAL unconnected datagram",
            "5.12",
            SalPacket(
                0,
                0,
                TransportProtocol.DATAGRAM,
                destination_service=ECHO,
                source_service=service_id_for_name("client.example"),
                payload=b"hello",
            ),
        ),
        _sal(
            "SAL SYN forwarded by a service router",
            "5.13",
            SalPacket(
                FLOW_C,
                0,
                TransportProtocol.STREAM,
                control=SYN.control,
                destination_service=ECHO,
                source_route=SourceRoute(7, (_ep("192.0.2.100", 40001), _ep("2001:db8::1"))),
            ),
        ),
        _sal(
            "SAL packet with an ignorable extension",
            "5.3.1",
            SalPacket(
                0,
                0,
                TransportProtocol.DATAGRAM,
                destination_service=ECHO,
                unknown_extensions=(UnknownExtension(0x80, bytes.fromhex("0000cafe0001")),),
                payload=b"x",
            ),
        ),
        _sal(
            "ServalDHT PING in a SAL datagram",
            "6.2",
            SalPacket(
                0,
                0,
                TransportProtocol.DATAGRAM,
                destination_service=SERVALDHT_SERVICE_ID,
                payload=encode_dht(DhtMessage(dht.Ping(), TXID)),
            ),
        ),
        _dht("PING", dht.Ping()),
        _dht("PONG", dht.Pong(_ep("203.0.113.50", 61000)), sender_key=KEY_A, token=TOKEN),
        _dht("FIND_SUCCESSOR", dht.FindSuccessor(ECHO), token=TOKEN),
        _dht(
            "FIND_SUCCESSOR_RESPONSE (DONE)",
            dht.FindSuccessorResponse(LookupStatus.DONE, (NODE_B, NODE_C)),
            sender_key=KEY_A,
            token=TOKEN,
        ),
        _dht("GET_NEIGHBORS", dht.GetNeighbors(), sender_key=KEY_B),
        _dht(
            "NEIGHBORS",
            dht.Neighbors(NODE_C, (NODE_B, NODE_A)),
            sender_key=KEY_A,
            token=TOKEN,
        ),
        _dht("RECTIFY (signed)", dht.Rectify(), HOST_B),
        _dht("RECTIFY_RESPONSE", dht.RectifyResponse(), sender_key=KEY_A),
        _dht("STORE", dht.Store(SMALL_RECORD, (TOKEN,)), token=TOKEN),
        _dht("STORE_RESPONSE", dht.StoreResponse(SMALL_RECORD.sequence), sender_key=KEY_A),
        _dht("RESOLVE", dht.Resolve(ECHO), token=TOKEN),
        _dht(
            "RESOLVE_RESPONSE (FOUND, four endpoints)",
            dht.ResolveResponse(ResolveStatus.FOUND, RECORD),
            sender_key=KEY_A,
            token=TOKEN,
        ),
        _dht(
            "RESOLVE_RESPONSE (REFER)",
            dht.ResolveResponse(ResolveStatus.REFER, None, (NODE_B,)),
            sender_key=KEY_A,
            token=TOKEN,
        ),
        _dht(
            "RESOLVE_RESPONSE (NOT_FOUND)",
            dht.ResolveResponse(ResolveStatus.NOT_FOUND),
            sender_key=KEY_A,
            token=TOKEN,
        ),
        _dht("REPLICATE (signed)", dht.Replicate(SMALL_RECORD), HOST_A),
        _dht("REPLICATE_RESPONSE", dht.ReplicateResponse(), sender_key=KEY_B),
        _dht("LEAVE (signed)", dht.Leave(NODE_C, (NODE_B,)), HOST_A),
        _dht("LEAVE_RESPONSE", dht.LeaveResponse(), sender_key=KEY_B),
        _dht("STATUS", dht.Status(), token=TOKEN),
        _dht(
            "STATUS_RESPONSE",
            dht.StatusResponse(b'{"records":1,"successors":2}'),
            sender_key=KEY_A,
            token=TOKEN,
        ),
        _dht(
            "ERROR",
            dht.Error(0x0206, b"sequence not higher than stored"),
            sender_key=KEY_A,
            token=TOKEN,
        ),
        Vector("Service Record", "6.7", "record", RECORD, encode_record(RECORD)),
        Vector("Tombstone Record", "6.7.2", "record", TOMBSTONE, encode_record(TOMBSTONE)),
    ]
