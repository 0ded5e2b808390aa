"""Sections 5.1 to 5.5 and 5.12: the SAL as a ServalDHT node shows it.

A ServalDHT node receives its messages in SAL unconnected datagrams
(Section 6.2), so the SAL's carriage, header, extension, checksum and
receive-processing rules are observable at it: a well-formed PING inside a
SAL datagram that breaks one of them must be dropped silently and counted
under the error code the draft names (feature "counters"), and one that
keeps them must be answered.

How a drop is observed: the case sends the packet and then, from the same
socket, a well-formed PING (the fence).  Datagrams are processed in the
order they arrive, so once the fence's PONG is back (and a short grace has
passed), anything the target sent in answer to the packet has arrived too.
The counters are read with STATUS before and after.
"""

from __future__ import annotations

import collections
import ipaddress
import struct
import time
from collections.abc import Iterable

from conformance.cases import case
from conformance.context import Context
from conformance.expect import AnyReply, Reply
from conformance.model import HarnessError
from conformance.peer import Address, DhtPeer, describe
from conformance.salpeer import judge_drop, read_counters
from ref.wire import (
    SERVALDHT_SERVICE_ID,
    DhtMessage,
    ErrorCode,
    MessageType,
    Ping,
    Pong,
    RemoteProtocolError,
    decode_dht,
    decode_sal,
    internet_checksum,
)

ORDER = 1

#: How long to wait, after the fence's answer, for a late answer to the probed packet.
GRACE = 0.05

DATAGRAM, STREAM = 1, 2
CONTROL, SERVICE, SOURCE = 1, 2, 3
DESTINATION, SOURCE_ROLE = 1, 2
SYN, ACK, NACK, FIN = 0x80, 0x20, 0x10, 0x04
MAX_UDP_PAYLOAD = 65507
NO_FLOW = 0x1A2B3C4D  # a Destination Flow ID that names no flow of the target

UNOBSERVABLE = {
    "SAL-UDP-1": (
        "The target is reached at one address of one family; whether the implementation "
        "could also be run over the other family is not visible on that address."
    ),
    "SAL-UDP-9": (
        "The harness receives through UDP sockets, which verify and hide the UDP checksum, "
        "and loopback delivery leaves checksums to offload, so its presence cannot be judged."
    ),
    "SAL-UDP-12": (
        "Whether raw IP carriage is used outside controlled experiments is a deployment "
        "decision, not a property of any packet."
    ),
    "SAL-UDP-13": (
        "Endpoints of raw IP carriage appear only where the target uses raw IP, which a "
        "test over UDP cannot make it do."
    ),
    "SAL-DGRAM-1": (
        "Which service table lookup chose a datagram's destination is internal to the "
        "sender; the wire shows only where the datagram went."
    ),
    "SAL-DGRAM-2": (
        "The report of an unreachable service goes to the local application, and the "
        "absence of a datagram that was never sent cannot be told from a quiet host."
    ),
    "SAL-FWD-2": (
        "The target contract gives a unicast address; a test cannot make a link-layer "
        "broadcast reach the target, nor see how the target's link layer received a packet."
    ),
}


# --- building packets ----------------------------------------------------------------------


def service(
    service_id: bytes = SERVALDHT_SERVICE_ID,
    *,
    role: int = DESTINATION,
    reserved: int = 0,
    length: int = 36,
) -> bytes:
    """A SERVICE extension (Section 5.3.3); ``length`` other than 36 pads or cuts the ID."""
    body = (service_id + bytes(max(0, length - 36)))[: length - 4]
    return bytes([SERVICE, length, role, reserved]) + body


def extension(kind: int, length: int = 4, *, fill: int = 0, declared: int | None = None) -> bytes:
    """An extension of ``kind`` with ``length`` octets (its Length field ``declared``)."""
    head = bytes([kind, length if declared is None else declared])
    return head + bytes([fill]) * (length - 2)


def endpoint_bytes(address: Address, *, reserved: int = 0) -> bytes:
    """The 20-octet Endpoint of ``address`` (IPv4-mapped for IPv4, Section 5.3.4)."""
    ip = ipaddress.ip_address(address[0])
    packed = ip.packed if ip.version == 6 else bytes(10) + b"\xff\xff" + ip.packed
    return packed + struct.pack("!HH", address[1], reserved)


def source_extension(
    entries: Iterable[Address], *, hop_limit: int = 7, reserved: int = 0, entry_reserved: int = 0
) -> bytes:
    body = b"".join(endpoint_bytes(e, reserved=entry_reserved) for e in entries)
    return bytes([SOURCE, 4 + len(body), hop_limit, reserved]) + body


def control(
    flags: int, *, verno: int = 1, ackno: int = 0, nonce: bytes = bytes(8), length: int = 20
) -> bytes:
    body = struct.pack("!II", verno, ackno) + nonce
    body = (body + bytes(max(0, length - 20)))[: length - 4]
    return bytes([CONTROL, length, flags, 0]) + body


def sal(
    *extensions: bytes,
    payload: bytes = b"",
    source_flow: int = 0,
    destination_flow: int = 0,
    protocol: int = DATAGRAM,
    header_words: int | None = None,
    checksum: int | None = None,
) -> bytes:
    """A SAL packet; its checksum is computed (Section 5.4) unless ``checksum`` is given."""
    area = b"".join(extensions)
    words = (12 + len(area)) // 4 if header_words is None else header_words
    head = struct.pack("!IIBBH", source_flow, destination_flow, words, protocol, 0)
    data = head + area + payload
    value = internet_checksum(data) if checksum is None else checksum
    return data[:10] + struct.pack("!H", value) + data[12:]


def address_of(endpoint: Address) -> Address:
    return (str(ipaddress.ip_address(endpoint[0])), endpoint[1])


# --- observing ----------------------------------------------------------------------------


class Probe:
    """One client socket that sends packets to the target and judges drops by the counters."""

    def __init__(self, ctx: Context, peer: DhtPeer | None = None) -> None:
        ctx.needs("counters")
        self.ctx = ctx
        self.peer = peer or ctx.client()
        self.counts = self.read_counters()

    def ping(self) -> tuple[bytes, bytes]:
        """A well-formed PING (ServalDHT bytes) and its Transaction ID."""
        message = self.peer.message(Ping())
        return self.peer.encode(message), message.transaction_id

    def read_counters(self) -> collections.Counter[str]:
        return read_counters(self.ctx, self.peer)

    def exchange(self, data: bytes, *, to: Address | None = None) -> list[bytes]:
        """Send ``data`` then the fence; return what came back other than the fence's PONG."""
        wire = self.peer.wire
        wire.send(data, to)
        fence = self.peer.message(Ping())
        wire.send(_datagram(self.peer.encode(fence)))
        answers: list[bytes] = []
        fenced = False
        for got, source in incoming(self.peer, self.ctx.timeout):
            message = _dht(got)
            if (
                not fenced
                and source == wire.target
                and message is not None
                and message.transaction_id == fence.transaction_id
            ):
                self.peer.tokens[source] = message.token
                fenced = True
                break
            answers.append(got)
        if not fenced:
            raise HarnessError("the target did not answer the fence PING")
        answers.extend(got for got, _ in incoming(self.peer, GRACE))
        return answers

    def dropped(self, requirement: str, data: bytes, code: ErrorCode, detail: str) -> bool:
        """Judge that ``data`` is dropped silently and counted under ``code``."""
        answers = self.exchange(data)
        before, self.counts = self.counts, self.read_counters()
        return judge_drop(
            self.ctx,
            requirement,
            code,
            detail,
            answers=[describe(a) for a in answers],
            change=self.counts - before,
        )

    def answered(self, requirement: str, data: bytes, transaction_id: bytes, detail: str) -> bool:
        """Judge that the PING in ``data`` is answered with a PONG."""
        self.peer.wire.send(data)
        reply = self.peer.await_response(transaction_id)
        return self.ctx.expect(requirement, reply, Reply(MessageType.PONG), detail=detail)


def _datagram(payload: bytes, *extensions: bytes) -> bytes:
    return sal(service(), *extensions, payload=payload)


def incoming(peer: DhtPeer, timeout: float) -> Iterable[tuple[bytes, Address]]:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        got = peer.wire.receive(left)
        if got is None:
            return
        yield got


def _dht(data: bytes) -> DhtMessage | None:
    try:
        return decode_dht(decode_sal(data).payload)
    except RemoteProtocolError:
        return None


def ping_datagram(probe: Probe, *extensions: bytes, **fields: int) -> tuple[bytes, bytes]:
    """A SAL datagram to the ServalDHT serviceID carrying a PING, with ``extensions``."""
    payload, transaction_id = probe.ping()
    return sal(*extensions, payload=payload, **fields), transaction_id


# --- Section 5.4: checksum ------------------------------------------------------------------


@case(
    "sal.packets",
    "5.4",
    "SAL-CSUM-2",
    "SAL-RECV-1",
    "SAL-RECV-3",
    title="A datagram whose checksum does not verify is dropped silently, counted BAD_CHECKSUM",
)
def bad_checksum(ctx: Context) -> None:
    probe = Probe(ctx)
    good, _ = ping_datagram(probe, service())
    wrong = struct.unpack_from("!H", good, 10)[0] ^ 0x0100
    data = good[:10] + struct.pack("!H", wrong) + good[12:]
    probe.dropped("SAL-CSUM-2", data, ErrorCode.BAD_CHECKSUM, "a PING with a wrong checksum")
    flipped = bytearray(good)
    flipped[-1] ^= 0x40  # the last octet of the payload
    probe.dropped(
        "SAL-CSUM-2", bytes(flipped), ErrorCode.BAD_CHECKSUM, "a PING with one payload bit flipped"
    )
    # Step 2 (checksum) comes before step 3 (extensions).
    bad, _ = ping_datagram(probe, service(), extension(0x04), checksum=0x1234)
    probe.dropped(
        "SAL-RECV-1",
        bad,
        ErrorCode.BAD_CHECKSUM,
        "a datagram with a wrong checksum and an unknown must-understand extension",
    )


@case(
    "sal.packets",
    "5.4",
    "SAL-CSUM-2",
    title="The checksum covers an odd-length packet padded with zero, and 0x0000 is a value",
)
def checksum_odd_length_and_zero(ctx: Context) -> None:
    probe = Probe(ctx)
    payload, transaction_id = probe.ping()
    data = sal(service(), payload=payload + b"\x00")
    assert len(data) % 2 == 1
    probe.peer.wire.send(data)
    reply = probe.peer.await_response(transaction_id)
    ctx.expect(
        "SAL-CSUM-2",
        reply,
        AnyReply(),
        detail=f"a datagram of {len(data)} octets (odd) whose payload is a PING plus one octet "
        "reaches ServalDHT (any answer)",
    )
    # Choose two octets of the Transaction ID so that the computed checksum is 0x0000.
    payload, _ = probe.ping()
    blank = bytearray(payload)
    blank[4:6] = b"\0\0"
    value = struct.unpack_from("!H", sal(service(), payload=bytes(blank)), 10)[0]
    blank[4:6] = struct.pack("!H", value)
    data = sal(service(), payload=bytes(blank))
    if struct.unpack_from("!H", data, 10)[0] != 0:
        raise HarnessError("could not build a packet whose checksum is 0x0000")
    probe.answered(
        "SAL-CSUM-2",
        data,
        bytes(blank[4:12]),
        "a PING datagram whose correct checksum is 0x0000",
    )
    blank[6] ^= 0x01
    probe.dropped(
        "SAL-CSUM-2",
        sal(service(), payload=bytes(blank), checksum=0),
        ErrorCode.BAD_CHECKSUM,
        "a PING datagram whose Checksum field is 0x0000 but does not verify (no 'no checksum')",
    )


# --- Sections 5.1, 5.2 and 5.5: lengths -----------------------------------------------------


@case(
    "sal.packets",
    "5.2",
    "SAL-HDR-1",
    "SAL-RECV-1",
    "SAL-RECV-3",
    title="A Header Length below 3 or beyond the packet, or a packet under 12 octets, is MALFORMED",
)
def header_length(ctx: Context) -> None:
    probe = Probe(ctx)
    for words in (0, 2):
        data, _ = ping_datagram(probe, service(), header_words=words)
        probe.dropped("SAL-HDR-1", data, ErrorCode.MALFORMED, f"a PING with Header Length {words}")
    payload, _ = probe.ping()
    words = (12 + 36 + len(payload)) // 4 + 1
    data = sal(service(), payload=payload, header_words=words)
    probe.dropped(
        "SAL-HDR-1",
        data,
        ErrorCode.MALFORMED,
        f"a PING datagram of {len(data)} octets with Header Length {words} ({4 * words} octets)",
    )
    probe.dropped("SAL-RECV-1", data[:11], ErrorCode.MALFORMED, "an 11-octet packet")
    # Step 1 (lengths) comes before step 2 (checksum).
    data, _ = ping_datagram(probe, service(), header_words=2, checksum=0x1234)
    probe.dropped(
        "SAL-RECV-1",
        data,
        ErrorCode.MALFORMED,
        "a PING with Header Length 2 and a wrong checksum",
    )


@case(
    "sal.packets",
    "5.1",
    "SAL-UDP-6",
    title="A SAL packet of 65,507 octets reaches the ServalDHT node (it answers)",
)
def largest_packet(ctx: Context) -> None:
    peer = ctx.client()
    message = peer.message(Ping())
    payload = peer.encode(message)
    data = sal(service(), payload=payload + bytes(MAX_UDP_PAYLOAD - 48 - len(payload)))
    assert len(data) == MAX_UDP_PAYLOAD
    peer.wire.send(data)
    reply = peer.await_response(message.transaction_id)
    ctx.expect(
        "SAL-UDP-6",
        reply,
        AnyReply(),
        detail="a 65,507-octet datagram whose payload is a PING followed by zeros "
        "(ServalDHT answers it, LIMIT_EXCEEDED or otherwise)",
    )


# --- Section 5.3.1: the extension walk ------------------------------------------------------


@case(
    "sal.packets",
    "5.3.1",
    "SAL-EXT-8",
    "SAL-RECV-3",
    title="Unknown extension types below 0x80, type 0 included, drop the packet",
)
def unknown_critical_extension(ctx: Context) -> None:
    probe = Probe(ctx)
    for kind in (0x04, 0x7F):
        data, _ = ping_datagram(probe, service(), extension(kind, 8))
        probe.dropped(
            "SAL-EXT-8",
            data,
            ErrorCode.UNKNOWN_CRITICAL_EXTENSION,
            f"a PING datagram with an extension of type 0x{kind:02X}",
        )
    data, _ = ping_datagram(probe, extension(0x00), service())
    probe.dropped(
        "SAL-EXT-8",
        data,
        ErrorCode.UNKNOWN_CRITICAL_EXTENSION,
        "a PING datagram whose first extension has type 0",
    )


@case(
    "sal.packets",
    "5.3.1",
    "SAL-EXT-9",
    "SAL-EXT-8",
    title="Ignorable extensions (0x80 and up), repeated or up to 8 in all, do not stop a PING",
)
def ignorable_extensions(ctx: Context) -> None:
    probe = Probe(ctx)
    layouts = {
        "one extension of type 0x80": [extension(0x80)],
        "an extension of type 0xFF with a 32-octet body": [extension(0xFF, 36, fill=0xA5)],
        "two extensions of type 0x80": [extension(0x80), extension(0x80, 8)],
        "seven ignorable extensions (8 in all)": [extension(0x80 + i, 4) for i in range(7)],
    }
    for what, extensions in layouts.items():
        data, transaction_id = ping_datagram(probe, service(), *extensions)
        probe.answered("SAL-EXT-9", data, transaction_id, f"a PING datagram with {what}")


@case(
    "sal.packets",
    "5.3.1",
    "SAL-EXT-8",
    "SAL-RECV-3",
    title="Extensions out of canonical order, or known ones repeated, are EXTENSION_ORDER",
)
def extension_order(ctx: Context) -> None:
    probe = Probe(ctx)
    someone = ("192.0.2.1", 5000)
    layouts = {
        "an ignorable extension before SERVICE": [extension(0x80), service()],
        "two SERVICE extensions with Role DESTINATION": [service(), service()],
        "SERVICE Role SOURCE before Role DESTINATION": [
            service(role=SOURCE_ROLE),
            service(),
        ],
        "SOURCE before SERVICE": [source_extension([someone]), service()],
        "type 0x81 before type 0x80": [service(), extension(0x81), extension(0x80)],
        "type 0 after SERVICE (order is checked before type)": [service(), extension(0x00)],
    }
    for what, extensions in layouts.items():
        data, _ = ping_datagram(probe, *extensions)
        probe.dropped("SAL-EXT-8", data, ErrorCode.EXTENSION_ORDER, f"a PING datagram with {what}")


@case(
    "sal.packets",
    "5.3.1",
    "SAL-EXT-8",
    "SAL-RECV-3",
    title="Bad extension lengths are MALFORMED, a ninth extension LIMIT_EXCEEDED (count first)",
)
def extension_lengths(ctx: Context) -> None:
    probe = Probe(ctx)
    layouts = {
        "an extension of Length 0": [extension(0x80, 4, declared=0)],
        "an extension of Length 2": [extension(0x80, 4, declared=2)],
        "an extension of Length 6": [extension(0x80, 8, declared=6)],
        "an extension that runs past the header": [extension(0x80, 4, declared=8)],
    }
    for what, extensions in layouts.items():
        data, _ = ping_datagram(probe, service(), *extensions)
        probe.dropped("SAL-EXT-8", data, ErrorCode.MALFORMED, f"a PING datagram with {what}")
    nine = [extension(0x80) for _ in range(8)]
    data, _ = ping_datagram(probe, service(), *nine)
    probe.dropped("SAL-EXT-8", data, ErrorCode.LIMIT_EXCEEDED, "a PING datagram with 9 extensions")
    data, _ = ping_datagram(probe, service(), *nine[:7], extension(0x80, 4, declared=6))
    probe.dropped(
        "SAL-EXT-8",
        data,
        ErrorCode.LIMIT_EXCEEDED,
        "a PING datagram whose ninth extension also has Length 6",
    )


# --- Sections 5.3.2 to 5.3.4: the known extensions -----------------------------------------

#: A must-understand extension after the one under test: a receiver that does not check
#: the format drops the packet as UNKNOWN_CRITICAL_EXTENSION instead of MALFORMED.
_TRAILER = extension(0x04)


@case(
    "sal.packets",
    "5.3.2",
    "SAL-EXT-11",
    "SAL-EXT-16",
    "SAL-EXT-17",
    "SAL-EXT-18",
    "SAL-RECV-3",
    title="CONTROL, SERVICE and SOURCE extensions of the wrong length or Role are MALFORMED",
)
def known_extension_formats(ctx: Context) -> None:
    probe = Probe(ctx)
    here = address_of(probe.peer.wire.local)
    # Length 28: one entry and 4 more octets (Length - 4 is not a multiple of 20).
    long_source = bytearray(source_extension([here]) + bytes(4))
    long_source[1] = 28
    layouts = [
        ("SAL-EXT-11", "a CONTROL extension of Length 24", [control(ACK, length=24), service()]),
        ("SAL-EXT-16", "a SERVICE extension of Length 40", [service(length=40)]),
        ("SAL-EXT-16", "a SERVICE extension of Length 32", [service(length=32)]),
        ("SAL-EXT-17", "a SERVICE extension with Role 3", [service(), service(role=3)]),
        ("SAL-EXT-17", "a SERVICE extension with Role 0", [service(role=0), service()]),
        ("SAL-EXT-18", "a SOURCE extension of Length 4", [service(), extension(SOURCE, 4)]),
        ("SAL-EXT-18", "a SOURCE extension of Length 28", [service(), bytes(long_source)]),
    ]
    for requirement, what, extensions in layouts:
        data, _ = ping_datagram(probe, *extensions, _TRAILER)
        probe.dropped(
            requirement,
            data,
            ErrorCode.MALFORMED,
            f"a PING datagram with {what}, then an extension of type 0x04",
        )


@case(
    "sal.packets",
    "5.3.1",
    "SAL-EXT-7",
    title="Reserved fields of the SERVICE and SOURCE extensions and of Endpoints are ignored",
)
def reserved_fields_ignored(ctx: Context) -> None:
    probe = Probe(ctx)
    data, transaction_id = ping_datagram(probe, service(reserved=0xFF))
    probe.answered(
        "SAL-EXT-7", data, transaction_id, "a PING datagram whose SERVICE Reserved octet is 0xFF"
    )
    here = address_of(probe.peer.wire.local)
    route = source_extension([here, ("192.0.2.7", 54325)], reserved=0xFF, entry_reserved=0xFFFF)
    data, transaction_id = ping_datagram(probe, service(), route)
    probe.answered(
        "SAL-EXT-7",
        data,
        transaction_id,
        "a PING datagram with a SOURCE extension whose Reserved fields are all ones",
    )


# --- Section 5.5: classification ------------------------------------------------------------


@case(
    "sal.packets",
    "5.5",
    "SAL-RECV-1",
    "SAL-HDR-2",
    "SAL-RECV-3",
    title="Datagrams with a Source Flow ID, a Protocol other than DATAGRAM or no destination "
    "are MALFORMED",
)
def datagram_classification(ctx: Context) -> None:
    probe = Probe(ctx)
    data, _ = ping_datagram(probe, service(), source_flow=0x01020304)
    probe.dropped("SAL-RECV-1", data, ErrorCode.MALFORMED, "a PING datagram with a Source Flow ID")
    for value, name in ((0, "NONE"), (STREAM, "STREAM")):
        data, _ = ping_datagram(probe, service(), protocol=value)
        probe.dropped(
            "SAL-RECV-1", data, ErrorCode.MALFORMED, f"a PING datagram with Protocol {name}"
        )
    data, _ = ping_datagram(probe, service(), protocol=0xC7)
    probe.dropped(
        "SAL-HDR-2", data, ErrorCode.MALFORMED, "a PING datagram with the unknown Protocol 199"
    )
    data, _ = ping_datagram(probe)
    probe.dropped(
        "SAL-RECV-1", data, ErrorCode.MALFORMED, "a PING after a base header without extensions"
    )
    data, _ = ping_datagram(probe, service(role=SOURCE_ROLE))
    probe.dropped(
        "SAL-RECV-1",
        data,
        ErrorCode.MALFORMED,
        "a PING datagram whose only SERVICE extension has Role SOURCE",
    )


@case(
    "sal.packets",
    "5.5",
    "SAL-EXT-15",
    "SAL-EXT-13",
    "SAL-EXT-7",
    "SAL-RECV-1",
    "SAL-RECV-2",
    "SAL-RECV-3",
    title="CONTROL flags are checked before the flow lookup; NACK and reserved bits are ignored",
)
def control_flags(ctx: Context) -> None:
    probe = Probe(ctx)
    someone = ctx.rng.randbytes(32)

    def flow_packet(flags: int) -> bytes:
        return sal(control(flags), destination_flow=NO_FLOW, protocol=STREAM)

    probe.dropped(
        "SAL-RECV-2",
        flow_packet(ACK),
        ErrorCode.UNEXPECTED_CONTROL,
        "an ACK (Source Flow ID 0) to a Destination Flow ID that names no flow",
    )
    for flags, name in ((0, "no flag"), (SYN | FIN, "SYN|FIN"), (ACK | 0x08 | FIN, "RST|ACK|FIN")):
        probe.dropped(
            "SAL-EXT-15",
            flow_packet(flags),
            ErrorCode.MALFORMED,
            f"a control packet with flags {name} to a Destination Flow ID",
        )
    probe.dropped(
        "SAL-EXT-13",
        flow_packet(ACK | NACK),
        ErrorCode.UNEXPECTED_CONTROL,
        "an ACK|NACK (a valid ACK once NACK is ignored) that names no flow",
    )
    probe.dropped(
        "SAL-EXT-7",
        flow_packet(ACK | 0x01),
        ErrorCode.UNEXPECTED_CONTROL,
        "an ACK with a reserved flag bit (a valid ACK once it is ignored) that names no flow",
    )
    syn = control(SYN, verno=5, nonce=ctx.rng.randbytes(8))
    cases = [
        ("a SYN addressed to a Destination Flow ID", [syn, service(someone)], NO_FLOW, 7),
        ("a SYN|ACK with Destination Flow ID 0", [control(SYN | ACK), service(someone)], 0, 7),
        ("a SYN without a destination SERVICE extension", [syn], 0, 7),
        ("a SYN with Source Flow ID 0", [syn, service(someone)], 0, 0),
    ]
    for what, extensions, destination, source in cases:
        data = sal(*extensions, destination_flow=destination, source_flow=source, protocol=STREAM)
        probe.dropped("SAL-RECV-1", data, ErrorCode.MALFORMED, what)


# --- Section 5.12: unconnected datagrams ---------------------------------------------------


@case(
    "sal.packets",
    "5.12",
    "SAL-DGRAM-5",
    "SAL-RECV-3",
    title="A datagram to a serviceID the node does not serve is dropped, counted NO_SERVICE",
)
def datagram_to_unknown_service(ctx: Context) -> None:
    probe = Probe(ctx)
    payload, _ = probe.ping()
    data = sal(service(ctx.rng.randbytes(32)), payload=payload)
    probe.dropped(
        "SAL-DGRAM-5",
        data,
        ErrorCode.NO_SERVICE,
        "a PING in a datagram to an unregistered serviceID that is not ServalDHT's",
    )


@case(
    "sal.packets",
    "5.13",
    "SAL-FWD-10",
    "SAL-UDP-5",
    "SAL-DGRAM-6",
    "SAL-EXT-20",
    "SAL-UDP-14",
    title="A PING that came through service routers is answered at SOURCE entry 0, directly",
)
def reply_to_source_entry_zero(ctx: Context) -> None:
    sender, client, router = ctx.client(), ctx.client(), ctx.client()
    entry0, hop = address_of(client.wire.local), address_of(router.wire.local)
    message = sender.message(Ping())
    sender.wire.send(
        sal(service(), source_extension([entry0, hop], hop_limit=6), payload=sender.encode(message))
    )
    reply = client.await_response(message.transaction_id)
    ctx.expect(
        "SAL-FWD-10",
        reply,
        Reply(MessageType.PONG),
        detail="a PING sent from A with SOURCE entries [B (IPv4-mapped), R]: the PONG reaches B",
    )
    ctx.expect(
        "SAL-EXT-20",
        reply,
        AnyReply(),
        detail="entry 0 holds ::ffff:127.0.0.1, which is the IPv4 address the answer reaches",
    )
    ctx.expect("SAL-UDP-14", reply, AnyReply(), detail="a PING sent over UDP is answered over UDP")
    strays = [got for got, _ in incoming(sender, GRACE)]
    strays += [got for got, _ in incoming(router, 0)]
    ctx.require(
        "SAL-UDP-5",
        reply is not None and not strays,
        "the answer goes to entry 0 only, not to the observed source nor the router",
        expected="one PONG at B, nothing at A or R",
        actual=("PONG at B" if reply is not None else "nothing at B")
        + (f"; also {describe(strays[0])}" if strays else ""),
    )
    if reply is not None and isinstance(reply.message.body, Pong):
        observed = reply.message.body.observed
        ctx.require(
            "SAL-DGRAM-6",
            (str(observed.address), observed.port) == entry0,
            "ServalDHT was given entry 0 as the sender's endpoint (the PONG's Observed)",
            expected=f"{entry0[0]}:{entry0[1]}",
            actual=f"{observed.address}:{observed.port}",
        )


@case(
    "sal.packets",
    "5.12",
    "SAL-DGRAM-7",
    "SAL-UDP-5",
    "SAL-HDR-6",
    "SAL-CSUM-1",
    "SAL-EXT-1",
    "SAL-EXT-2",
    "SAL-EXT-3",
    "SAL-EXT-4",
    "SAL-EXT-5",
    "SAL-EXT-6",
    "SAL-EXT-21",
    title="The answer to a PING is a well-formed unconnected datagram to the observed endpoint",
)
def reply_format(ctx: Context) -> None:
    peer = ctx.client()
    message = peer.message(Ping())
    peer.wire.send(sal(service(), payload=peer.encode(message)))
    got = next(iter(incoming(peer, ctx.timeout)), None)
    if got is None:
        raise HarnessError("no answer to a PING")
    data, source = got
    ctx.require(
        "SAL-UDP-5",
        source == peer.wire.target,
        "the answer comes from the target to the PING's observed source endpoint",
        expected=str(peer.wire.target),
        actual=str(source),
    )
    ctx.require(
        "SAL-CSUM-1",
        len(data) >= 12 and internet_checksum(data) == 0,
        "the answer's checksum verifies (Section 5.4)",
        actual=data[10:12].hex(),
    )
    words = data[8] if len(data) >= 12 else 0
    area = data[12 : 4 * words]
    walk = _walk(area) if 12 <= 4 * words <= len(data) else None
    ctx.require(
        "SAL-EXT-2",
        walk is not None,
        "the header area holds whole extensions exactly, as Header Length says",
        actual=f"Header Length {words}, extension area {area.hex()}",
    )
    if walk is None:
        return
    kinds = [kind for kind, _ in walk]
    keys = [(kind, chunk[2] if kind == SERVICE else 0) for kind, chunk in walk]
    ctx.require("SAL-EXT-3", len(walk) <= 8, "at most 8 extensions", actual=str(len(walk)))
    ctx.require("SAL-EXT-1", 0 not in kinds, "no extension of type 0", actual=str(kinds))
    ctx.require(
        "SAL-EXT-4", keys == sorted(keys), "extensions in canonical order", actual=str(keys)
    )
    ctx.require(
        "SAL-EXT-5",
        len(set(k for k in keys if k[0] < 0x80)) == len([k for k in keys if k[0] < 0x80]),
        "no known extension twice",
        actual=str(keys),
    )
    ctx.require("SAL-EXT-21", SOURCE not in kinds, "no SOURCE extension on the node's own answer")
    services = [chunk for kind, chunk in walk if kind == SERVICE]
    ctx.require(
        "SAL-EXT-6",
        all(len(chunk) > 3 and chunk[3] == 0 for chunk in services),
        "the SERVICE extension's Reserved octet is zero",
        actual=" ".join(chunk[:4].hex() for chunk in services),
    )
    source_flow, destination_flow, _, protocol = struct.unpack_from("!IIBB", data)
    ctx.require(
        "SAL-HDR-6",
        protocol == DATAGRAM,
        "the answer, an unconnected datagram, has Protocol DATAGRAM",
        actual=str(protocol),
    )
    destination = [chunk[4:] for chunk in services if chunk[2] == DESTINATION]
    ctx.require(
        "SAL-DGRAM-7",
        source_flow == 0
        and destination_flow == 0
        and CONTROL not in kinds
        and destination == [SERVALDHT_SERVICE_ID],
        "the answer is an unconnected datagram (flowIDs 0, no CONTROL) whose destination is "
        "the request's destination serviceID (ServalDHT's)",
        actual=f"flowIDs {source_flow}/{destination_flow}, extensions {kinds}, "
        f"destination {[d.hex()[:16] for d in destination]}",
    )


def _walk(area: bytes) -> list[tuple[int, bytes]] | None:
    """The extensions of a header area, or None when they do not fill it exactly."""
    found: list[tuple[int, bytes]] = []
    offset = 0
    while offset < len(area):
        if offset + 2 > len(area):
            return None
        length = area[offset + 1]
        if length < 4 or length % 4 or offset + length > len(area):
            return None
        found.append((area[offset], area[offset : offset + length]))
        offset += length
    return found
