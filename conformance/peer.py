"""The peers the harness plays, over real UDP sockets, and the capture of every datagram.

:class:`Wire` is one UDP socket aimed at the target; every datagram it sends
or receives is appended to the run's :class:`Capture`, tagged with the case
that was running, which is what the exchange log, the pcapng file and the
differential mode read.

:class:`DhtPeer` speaks ServalDHT on a wire through ``ref.wire`` only: a
client with a zero Sender Key, or a ring member with its own Ed25519 host
key.  It remembers the last token the target gave it (DHT-TOKEN-5), can send
any bytes it likes (the cases craft malformed messages), and, as a member,
answers the target's requests the way a minimal conforming node would, so
that the target can stabilize with it, replicate to it and check it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import random
import select
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ref.wire import (
    SERVALDHT_SERVICE_ID,
    Body,
    DhtMessage,
    Endpoint,
    Error,
    ErrorCode,
    FindSuccessor,
    FindSuccessorResponse,
    GetNeighbors,
    Leave,
    LeaveResponse,
    LookupStatus,
    MessageType,
    Neighbors,
    NodeInfo,
    Ping,
    Pong,
    Rectify,
    RectifyResponse,
    RemoteProtocolError,
    Replicate,
    ReplicateResponse,
    SalPacket,
    SourceRoute,
    Status,
    StatusResponse,
    TransportProtocol,
    decode_dht,
    decode_sal,
    encode_dht,
    encode_sal,
    node_id,
    public_key_bytes,
)
from ref.wire.sal import UnknownExtension

Address = tuple[str, int]


@dataclasses.dataclass
class Datagram:
    """One captured datagram."""

    time: float  # seconds since the start of the run
    outbound: bool  # sent by the harness
    local: Address
    remote: Address
    data: bytes
    case: str
    note: str = ""

    def describe(self) -> str:
        arrow = "->" if self.outbound else "<-"
        where = f"{_text(self.local)} {arrow} {_text(self.remote)}"
        return f"{self.time:9.4f} {where} {describe(self.data)}"


def _text(address: Address) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Capture:
    """Every datagram of a run, in order; the runner sets :attr:`case` as cases start."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.datagrams: list[Datagram] = []
        self.case = ""

    def add(self, outbound: bool, local: Address, remote: Address, data: bytes) -> Datagram:
        entry = Datagram(time.monotonic() - self.start, outbound, local, remote, data, self.case)
        self.datagrams.append(entry)
        return entry

    def of_case(self, case: str) -> list[Datagram]:
        return [d for d in self.datagrams if d.case == case]


def describe(data: bytes) -> str:
    """A one-line summary of a datagram: SAL packet kind and, inside, the ServalDHT message."""
    try:
        packet = decode_sal(data)
    except RemoteProtocolError as error:
        return f"undecodable SAL packet ({error}), {len(data)} bytes"
    if packet.destination_service != SERVALDHT_SERVICE_ID or not packet.payload:
        flags = packet.control.flags.name if packet.control else "datagram"
        service = (packet.destination_service or b"").hex()[:16]
        return f"SAL {flags} to {service}…, {len(data)} bytes"
    return describe_dht(packet.payload)


def describe_dht(payload: bytes) -> str:
    try:
        message = decode_dht(payload)
    except RemoteProtocolError as error:
        kind = payload[1] if len(payload) > 1 else None
        return f"malformed ServalDHT message type {kind} ({error}), {len(payload)} bytes"
    return f"{summarise(message)}, {len(payload)} bytes"


def summarise(message: DhtMessage) -> str:
    body = message.body
    text = f"{message.type.name} txid={message.transaction_id.hex()}"
    if isinstance(body, Error):
        try:
            code = ErrorCode(body.error_code).name
        except ValueError:
            code = f"0x{body.error_code:04X}"
        text += f" {code} {body.reason.decode('utf-8', 'replace')!r}"
    elif isinstance(body, (FindSuccessorResponse,)):
        text += f" {body.status.name} nodes={len(body.nodes)}"
    status = getattr(body, "status", None)
    if status is not None and not isinstance(body, FindSuccessorResponse):
        text += f" {status.name}"
    if message.flags:
        text += f" flags={message.flags!r}"
    return text


def _source_address(family: socket.AddressFamily, target: Address) -> str:
    """The local address the host's routes pick for sending to ``target``."""
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect(target)  # UDP: chooses a route and a source, sends nothing
        address: str = probe.getsockname()[0]
    return address


class Wire:
    """A UDP socket bound to a free port, sending to the target and capturing everything."""

    def __init__(self, target: Address, capture: Capture, source: str | None = None) -> None:
        family = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        # Bound to the address the target sees, never a wildcard: members announce
        # this endpoint in their Node Info.
        try:
            self.sock.bind((source or _source_address(family, target), 0))
        except OSError:
            self.sock.close()
            raise
        self.target = target
        self.capture = capture
        self.local: Address = self.sock.getsockname()[:2]

    def send(self, data: bytes, to: Address | None = None) -> None:
        destination = to or self.target
        self.capture.add(True, self.local, destination, data)
        self.sock.sendto(data, destination)

    def receive(self, timeout: float) -> tuple[bytes, Address] | None:
        """The next datagram within ``timeout`` seconds, or None."""
        if timeout > 0 and not select.select([self.sock], [], [], timeout)[0]:
            return None
        try:
            data, source = self.sock.recvfrom(65535)
        except (BlockingIOError, ConnectionRefusedError):
            return None  # an ICMP error from an earlier send
        address: Address = (source[0], source[1])
        self.capture.add(False, self.local, address, data)
        return data, address

    def endpoint(self) -> Endpoint:
        return Endpoint(ipaddress.ip_address(self.local[0]), self.local[1])

    def close(self) -> None:
        self.sock.close()


@dataclasses.dataclass
class Received:
    """A ServalDHT message that arrived, with its raw bytes."""

    message: DhtMessage
    payload: bytes  # the ServalDHT message bytes (the SAL payload)
    packet: SalPacket
    source: Address
    latency: float


def dht_datagram(
    payload: bytes,
    *,
    source_route: SourceRoute | None = None,
    unknown: tuple[UnknownExtension, ...] = (),
) -> bytes:
    """``payload`` as a SAL unconnected datagram to the ServalDHT serviceID (Section 6.2)."""
    return encode_sal(
        SalPacket(
            source_flow_id=0,
            destination_flow_id=0,
            protocol=TransportProtocol.DATAGRAM,
            destination_service=SERVALDHT_SERVICE_ID,
            source_route=source_route,
            unknown_extensions=unknown,
            payload=payload,
        )
    )


Responder = Callable[["DhtPeer", DhtMessage, Address], Body | None]


class DhtPeer:
    """A ServalDHT client (no key) or ring member (with a host key) facing the target."""

    def __init__(
        self,
        wire: Wire,
        rng: random.Random,
        timeout: float,
        key: Ed25519PrivateKey | None = None,
    ) -> None:
        self.wire = wire
        self.rng = rng
        self.timeout = timeout
        self.key = key
        self.public_key = public_key_bytes(key) if key is not None else bytes(32)
        self.tokens: dict[Address, bytes] = {}
        #: Requests the target sent to this peer, in order (a member's inbox).
        self.requests: list[Received] = []
        #: Messages that arrived unasked for and were not requests (stray responses).
        self.strays: list[Received] = []
        #: Datagrams from the target that did not decode, with the reason.
        self.undecodable: list[tuple[bytes, str]] = []
        self.responder: Responder | None = default_responder if key is not None else None
        # What a member tells the target about its neighbours.
        self.predecessor: NodeInfo | None = None
        self.successors: list[NodeInfo] = []

    # --- identity -------------------------------------------------------------------

    @property
    def node_id(self) -> bytes:
        return node_id(self.public_key)

    @property
    def info(self) -> NodeInfo:
        return NodeInfo(key=self.public_key, endpoint=self.wire.endpoint())

    # --- building -------------------------------------------------------------------

    def transaction_id(self) -> bytes:
        return self.rng.randbytes(8)

    def message(
        self,
        body: Body,
        *,
        transaction_id: bytes | None = None,
        token: bytes | None = None,
        to: Address | None = None,
    ) -> DhtMessage:
        return DhtMessage(
            body=body,
            transaction_id=transaction_id or self.transaction_id(),
            sender_key=self.public_key,
            token=self.tokens.get(to or self.wire.target, bytes(16)) if token is None else token,
        )

    def encode(self, message: DhtMessage, *, sign: bool = False) -> bytes:
        """The ServalDHT bytes of ``message``, signed with the host key when asked."""
        return encode_dht(message, self.key if sign else None)

    # --- exchanges ------------------------------------------------------------------

    def send_payload(self, payload: bytes, to: Address | None = None, **extensions: Any) -> None:
        self.wire.send(dht_datagram(payload, **extensions), to)

    def request(
        self,
        body: Body,
        *,
        sign: bool = False,
        token: bytes | None = None,
        to: Address | None = None,
        validate: bool = True,
        timeout: float | None = None,
    ) -> Received | None:
        """Send a request and wait for its response; repeat it once with the token when refused.

        With ``validate``, an ERROR ADDRESS_NOT_VALIDATED is answered by the same
        request (same transaction ID) with the token that came with it, as a
        requester does (Section 6.10.2).
        """
        message = self.message(body, token=token, to=to)
        sent = time.monotonic()
        self.send_payload(self.encode(message, sign=sign), to)
        reply = self.await_response(message.transaction_id, to=to, timeout=timeout)
        if (
            validate
            and reply is not None
            and isinstance(reply.message.body, Error)
            and reply.message.body.error_code == ErrorCode.ADDRESS_NOT_VALIDATED
            and token is None
        ):
            message = dataclasses.replace(message, token=reply.message.token)
            self.send_payload(self.encode(message, sign=sign), to)
            reply = self.await_response(message.transaction_id, to=to, timeout=timeout)
        if reply is not None:
            reply.latency = time.monotonic() - sent
        return reply

    def send_raw(self, payload: bytes, to: Address | None = None, **extensions: Any) -> bytes:
        """Send ServalDHT bytes as they are; return the transaction ID at bytes 4..12."""
        self.send_payload(payload, to, **extensions)
        return payload[4:12]

    def await_response(
        self, transaction_id: bytes, *, to: Address | None = None, timeout: float | None = None
    ) -> Received | None:
        """The response to ``transaction_id`` from ``to`` (the target), or None on silence.

        Requests from the target that arrive meanwhile are answered by the
        responder and kept in :attr:`requests`.
        """
        source = to or self.wire.target
        for received in self.receive(timeout):
            message = received.message
            if message.transaction_id == transaction_id and received.source == source:
                return received
            self.strays.append(received)
        return None

    def receive(self, timeout: float | None = None) -> Iterator[Received]:
        """Responses that arrive within ``timeout``; the target's requests are served meanwhile."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        start = time.monotonic()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            got = self.wire.receive(left)
            if got is None:
                return
            data, source = got
            received = self._open(data, source, time.monotonic() - start)
            if received is None:
                continue
            if received.message.type.value < 0x80:
                self.requests.append(received)
                self._serve(received)
                continue
            self.tokens[source] = received.message.token
            yield received

    def drain(self, duration: float) -> None:
        """Serve the target's requests for ``duration`` seconds."""
        for received in self.receive(duration):
            self.strays.append(received)

    def _open(self, data: bytes, source: Address, latency: float) -> Received | None:
        try:
            packet = decode_sal(data)
            if packet.destination_service != SERVALDHT_SERVICE_ID:
                return None
            message = decode_dht(packet.payload)
        except RemoteProtocolError as error:
            self.undecodable.append((data, str(error)))
            return None
        return Received(message, packet.payload, packet, source, latency)

    def _serve(self, request: Received) -> None:
        if self.responder is None:
            return
        body = self.responder(self, request.message, request.source)
        if body is None:
            return
        reply = DhtMessage(
            body=body,
            transaction_id=request.message.transaction_id,
            sender_key=self.public_key,
            token=bytes(16),
        )
        self.send_payload(encode_dht(reply), request.source)

    def leave(self, successor: NodeInfo) -> Received | None:
        """Leave the target's ring gracefully (a signed LEAVE, Section 6.4.8).

        A node that has left stops answering (Section 6.4.8): an answer to a
        stabilization request sent just before the LEAVE would put it back.
        """
        self.responder = None
        successors = tuple(self.successors) or (successor,)
        return self.request(Leave(predecessor=self.predecessor, successors=successors), sign=True)

    def close(self) -> None:
        self.wire.close()


def default_responder(peer: DhtPeer, message: DhtMessage, source: Address) -> Body | None:
    """How a minimal member answers the target (Section 6.4)."""
    body = message.body
    if isinstance(body, Ping):
        return Pong(observed=Endpoint(ipaddress.ip_address(source[0]), source[1]))
    if isinstance(body, GetNeighbors):
        return Neighbors(
            predecessor=peer.predecessor, successors=tuple(peer.successors[:16]) or (peer.info,)
        )
    if isinstance(body, Rectify):
        return RectifyResponse()
    if isinstance(body, Replicate):
        return ReplicateResponse()
    if isinstance(body, Leave):
        return LeaveResponse()
    if isinstance(body, Status):
        return StatusResponse(report=b"{}")
    if isinstance(body, FindSuccessor):
        nodes = tuple(peer.successors[:1]) or (peer.info,)
        return FindSuccessorResponse(status=LookupStatus.DONE, nodes=nodes)
    if message.type == MessageType.ERROR:
        return None
    return Error(error_code=ErrorCode.UNKNOWN_MESSAGE_TYPE)
