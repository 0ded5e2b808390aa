"""Sections 5.13 and 6.9.3: a ServalDHT node in forward mode as a SAL service router.

The target (feature "forward") starts alone in its ring, so it is in the
replica set of every block.  The harness plays the owner, who STOREs a
signed record whose one endpoint is a socket of the harness (the provider,
from the same address as the STORE, so the address is validated, Section
6.10.1), and the client, who sends SYNs and datagrams for the record's
serviceID to the target.  A forwarded packet is compared octet for octet
with the packet the draft says the router must send.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import time

from conformance.cases import case
from conformance.cases.sal_packets import (
    ACK,
    DATAGRAM,
    SOURCE_ROLE,
    STREAM,
    SYN,
    Probe,
    address_of,
    control,
    extension,
    incoming,
    sal,
    service,
    source_extension,
)
from conformance.context import Context
from conformance.expect import show
from conformance.model import HarnessError
from conformance.peer import describe
from ref.wire import (
    ControlFlags,
    ErrorCode,
    RecordEndpoint,
    RecordFlags,
    RemoteProtocolError,
    ServiceRecord,
    Store,
    StoreResponse,
    decode_sal,
    internet_checksum,
    service_id_for_name,
    sign_record,
)

ORDER = 2

#: Hop Limit of the SOURCE extension a first router adds: the default maximum 8, less 1.
FIRST_HOP_LIMIT = 7
_MAPPED = bytes(10) + b"\xff\xff"
#: Addresses of routers and clients elsewhere (TEST-NET-1, RFC 5737).
CLIENT_FAR, ROUTER_FAR = ("192.0.2.10", 40000), ("192.0.2.11", 54325)


class Router:
    """The target as a service router for one registered serviceID, and the harness around it."""

    def __init__(self, ctx: Context, *, register: bool = True) -> None:
        ctx.needs("forward")
        self.ctx = ctx
        self.probe = Probe(ctx)  # the client
        self.provider = ctx.client()
        self.node = address_of(ctx.target.address)
        self.client = address_of(self.probe.peer.wire.local)
        name = f"fwd-{ctx.rng.randrange(1 << 32):08x}.conformance.example"
        self.service_id = service_id_for_name(name)
        if register:
            self.register(self.record())

    def record(self) -> ServiceRecord:
        where = self.provider.wire.local
        return sign_record(
            ServiceRecord(
                service_id=self.service_id,
                owner_key=b"",
                sequence=1,
                issued_at=int(time.time()),
                lifetime=600,
                flags=RecordFlags(0),
                endpoints=(RecordEndpoint(ipaddress.ip_address(where[0]), where[1]),),
            ),
            self.ctx.key(),
        )

    def register(self, record: ServiceRecord) -> None:
        reply = self.provider.request(Store(record=record))
        if reply is None or not isinstance(reply.message.body, StoreResponse):
            raise HarnessError(f"the STORE of the provider's record was refused: {show(reply)}")

    def forwarded(self, data: bytes) -> bytes | None:
        """Send ``data`` from the client; what reaches the provider, if anything."""
        self.probe.peer.wire.send(data)
        got = next(iter(incoming(self.provider, self.ctx.timeout)), None)
        return None if got is None else got[0]

    def refused(self, requirement: str, data: bytes, code: ErrorCode, detail: str) -> None:
        """Judge that ``data`` is dropped, counted ``code``, and not forwarded."""
        self.probe.dropped(requirement, data, code, detail)
        leaked = [got for got, _ in incoming(self.provider, 0)]
        self.ctx.require(
            requirement,
            not leaked,
            f"{detail}: nothing reaches the provider",
            expected="nothing at the provider",
            actual=describe(leaked[0]) if leaked else "nothing at the provider",
        )


def _syn(router: Router, *extensions: bytes, flow: int, verno: int, nonce: bytes) -> bytes:
    return sal(
        control(SYN, verno=verno, nonce=nonce),
        service(router.service_id),
        *extensions,
        source_flow=flow,
        protocol=STREAM,
    )


def _entries(data: bytes) -> list[bytes]:
    """The raw 20-octet entries of the SOURCE extension of ``data``, if any."""
    offset, end = 12, 4 * data[8]
    while offset + 2 <= end:
        kind, length = data[offset], data[offset + 1]
        if length < 4:
            break
        if kind == 3:
            chunk = data[offset + 4 : offset + length]
            return [chunk[i : i + 20] for i in range(0, len(chunk), 20)]
        offset += length
    return []


# --- Section 5.13: forwarding -------------------------------------------------------------


@case(
    "sal.forward",
    "5.13",
    "DHT-FWD-2",
    "SAL-FWD-6",
    "SAL-FWD-9",
    "SAL-EXT-10",
    "SAL-CSUM-3",
    "SAL-EXT-19",
    needs=("forward",),
    title="A SYN for a registered serviceID reaches the provider with a new SOURCE extension",
)
def syn_forwarded(ctx: Context) -> None:
    router = Router(ctx)
    flow, verno, nonce = (
        ctx.rng.randrange(1, 1 << 32),
        ctx.rng.randrange(1 << 32),
        ctx.rng.randbytes(8),
    )
    caller = ctx.rng.randbytes(32)
    hint = extension(0x90, 8, fill=0x5A)
    syn = _syn(router, service(caller, role=SOURCE_ROLE), hint, flow=flow, verno=verno, nonce=nonce)
    got = router.forwarded(syn)
    ctx.require(
        "DHT-FWD-2",
        got is not None,
        "the SYN is forwarded to the record's endpoint",
        expected="a SYN at the provider",
        actual="a packet" if got is not None else "nothing",
    )
    if got is None:
        return
    route = source_extension([router.client, router.node], hop_limit=FIRST_HOP_LIMIT)
    expected = _syn(
        router, service(caller, role=SOURCE_ROLE), route, hint, flow=flow, verno=verno, nonce=nonce
    )
    try:
        packet = decode_sal(got)
    except RemoteProtocolError as error:
        ctx.require("DHT-FWD-2", False, f"the forwarded SYN decodes ({error})", actual=got.hex())
        return
    ctx.require(
        "SAL-CSUM-3",
        internet_checksum(got) == 0,
        "the forwarded packet's checksum verifies",
        actual=got[10:12].hex(),
    )
    source = packet.source_route
    ctx.require(
        "SAL-FWD-6",
        source is not None
        and source.hop_limit == FIRST_HOP_LIMIT
        and [address_of((str(e.address), e.port)) for e in source.entries]
        == [router.client, router.node],
        "SOURCE added with Hop Limit 7, entry 0 the client's observed endpoint, entry 1 the "
        "endpoint at which the router received the SYN",
        expected=f"Hop Limit 7, entries {[router.client, router.node]}",
        actual="no SOURCE"
        if source is None
        else f"Hop Limit {source.hop_limit}, entries "
        f"{[(str(e.address), e.port) for e in source.entries]}",
    )
    ctx.require(
        "SAL-EXT-19",
        all(entry[:12] == _MAPPED for entry in _entries(got)),
        "the IPv4 addresses of the SOURCE entries are in the IPv4-mapped form",
        actual=" ".join(entry[:16].hex() for entry in _entries(got)),
    )
    ctx.require(
        "SAL-EXT-10",
        bytes(hint) in got[4 * got[8] - len(hint) : 4 * got[8]],
        "the ignorable extension 0x90 passes unchanged, last",
        actual=got[12 : 4 * got[8]].hex(),
    )
    ctx.require(
        "SAL-FWD-9",
        got == expected,
        "everything but Header Length, Checksum and the new SOURCE extension is unchanged, "
        "and SOURCE sits after the SERVICE extensions, before type 0x90",
        expected=expected.hex(),
        actual=got.hex(),
    )


@case(
    "sal.forward",
    "5.13",
    "DHT-FWD-2",
    "SAL-FWD-7",
    "SAL-HDR-3",
    needs=("forward",),
    title="A forwarded datagram's SOURCE is extended and its unknown Protocol kept",
)
def datagram_source_extended(ctx: Context) -> None:
    router = Router(ctx)
    payload = ctx.rng.randbytes(33)
    sent = sal(
        service(router.service_id),
        source_extension([CLIENT_FAR, ROUTER_FAR], hop_limit=5),
        payload=payload,
        protocol=0xC7,
    )
    got = router.forwarded(sent)
    ctx.require(
        "DHT-FWD-2",
        got is not None,
        "a datagram (Protocol 199, SOURCE with Hop Limit 5) is forwarded to the provider",
        actual="a packet" if got is not None else "nothing",
    )
    if got is None:
        return
    route = source_extension([CLIENT_FAR, ROUTER_FAR, router.node], hop_limit=4)
    expected = sal(service(router.service_id), route, payload=payload, protocol=0xC7)
    ctx.require(
        "SAL-HDR-3",
        len(got) > 9 and got[9] == 0xC7,
        "the unknown Protocol value passes unchanged",
        actual=str(got[9]) if len(got) > 9 else got.hex(),
    )
    ctx.require(
        "SAL-FWD-7",
        got == expected,
        "Hop Limit reduced to 4, the router's endpoint appended as entry 2, nothing else changed",
        expected=expected.hex(),
        actual=got.hex(),
    )


@case(
    "sal.forward",
    "5.13",
    "SAL-FWD-3",
    "DHT-FWD-2",
    needs=("forward", "counters"),
    title="A packet whose SOURCE has Hop Limit 0 or 12 entries is dropped, HOP_LIMIT_EXCEEDED",
)
def hop_limit_exhausted(ctx: Context) -> None:
    router = Router(ctx)
    syn = _syn(
        router,
        source_extension([router.client, ROUTER_FAR], hop_limit=0),
        flow=ctx.rng.randrange(1, 1 << 32),
        verno=1,
        nonce=ctx.rng.randbytes(8),
    )
    router.refused(
        "SAL-FWD-3", syn, ErrorCode.HOP_LIMIT_EXCEEDED, "a SYN whose SOURCE has Hop Limit 0"
    )
    far = [(f"192.0.2.{20 + i}", 54325) for i in range(11)]
    data = sal(
        service(router.service_id),
        source_extension([router.client, *far], hop_limit=3),
        payload=b"x",
    )
    router.refused(
        "DHT-FWD-2",
        data,
        ErrorCode.HOP_LIMIT_EXCEEDED,
        "a datagram whose SOURCE holds 12 entries (Hop Limit 3)",
    )


@case(
    "sal.forward",
    "5.13",
    "SAL-FWD-4",
    "DHT-FWD-2",
    needs=("forward", "counters"),
    title="A packet whose SOURCE lists the next hop or the router is dropped, LOOP_DETECTED",
)
def loop_detected(ctx: Context) -> None:
    router = Router(ctx)
    provider = address_of(router.provider.wire.local)
    for listed, what in ((provider, "the next hop (the provider)"), (router.node, "the router")):
        data = sal(
            service(router.service_id),
            source_extension([router.client, listed, ROUTER_FAR], hop_limit=5),
            payload=b"loop",
        )
        router.refused(
            "SAL-FWD-4", data, ErrorCode.LOOP_DETECTED, f"a datagram whose SOURCE lists {what}"
        )
    data = sal(
        service(router.service_id),
        source_extension([CLIENT_FAR, router.node], hop_limit=6),
        payload=b"loop",
    )
    router.refused(
        "DHT-FWD-2", data, ErrorCode.LOOP_DETECTED, "a datagram that comes back to the router"
    )


@case(
    "sal.forward",
    "5.13",
    "SAL-FWD-8",
    "SAL-UDP-7",
    needs=("forward", "counters"),
    title="A packet that SOURCE would push past 8 extensions, 255 words or 65,507 octets is "
    "LIMIT_EXCEEDED",
)
def forwarding_limits(ctx: Context) -> None:
    router = Router(ctx)
    seven = [extension(0x80 + i) for i in range(7)]
    data = sal(service(router.service_id), *seven, payload=b"eight")
    router.refused(
        "SAL-FWD-8",
        data,
        ErrorCode.LIMIT_EXCEEDED,
        "a datagram with 8 extensions and no SOURCE (adding one makes 9)",
    )
    far = [(f"192.0.2.{40 + i}", 54325) for i in range(10)]
    padding = [extension(0x80, 252), extension(0x81, 252), extension(0x82, 240)]
    data = sal(
        service(router.service_id),
        source_extension([CLIENT_FAR, *far], hop_limit=5),
        *padding,
        payload=b"wide",
    )
    assert len(data) - 4 == 1016  # a header of 254 words; one more entry makes 259
    router.refused(
        "SAL-FWD-8",
        data,
        ErrorCode.LIMIT_EXCEEDED,
        "a datagram with a 254-word header that one more SOURCE entry pushes past 255 words",
    )
    head = sal(service(router.service_id))
    data = sal(service(router.service_id), payload=bytes(65500 - len(head)))
    router.refused(
        "SAL-UDP-7",
        data,
        ErrorCode.LIMIT_EXCEEDED,
        "a datagram of 65,500 octets that a new SOURCE extension would make 65,544",
    )


@case(
    "sal.forward",
    "5.13",
    "SAL-FWD-1",
    needs=("forward", "counters"),
    title="Packets with a Destination Flow ID are never forwarded, even with a SERVICE extension",
)
def flow_packets_not_forwarded(ctx: Context) -> None:
    router = Router(ctx)
    flow = ctx.rng.randrange(1, 1 << 32)
    packets = {
        "an ACK": sal(
            control(ACK), service(router.service_id), destination_flow=flow, protocol=STREAM
        ),
        "a data packet": sal(
            service(router.service_id), payload=b"data", destination_flow=flow, protocol=DATAGRAM
        ),
    }
    for what, data in packets.items():
        router.refused(
            "SAL-FWD-1",
            data,
            ErrorCode.UNEXPECTED_CONTROL,
            f"{what} (Source Flow ID 0) to Destination Flow ID {flow} naming the "
            "registered serviceID",
        )


# --- Section 6.9.3: forward mode ------------------------------------------------------------


@case(
    "sal.forward",
    "6.9.3",
    "DHT-FWD-1",
    "SAL-RST-4",
    "SAL-UDP-5",
    "SAL-HDR-5",
    "SAL-HDR-7",
    "SAL-EXT-12",
    "SAL-EXT-14",
    "SAL-EXT-24",
    "SAL-EXT-25",
    "SAL-CSUM-1",
    "SAL-RECV-2",
    needs=("forward", "counters"),
    title="A SYN for an unregistered serviceID is refused with an RST to its client (step 2)",
)
def unregistered_syn_refused(ctx: Context) -> None:
    router = Router(ctx, register=False)
    answering = ctx.client()
    entry0 = address_of(answering.wire.local)
    for via, listen in ((None, router.probe.peer), (entry0, answering)):
        flow, verno, nonce = (
            ctx.rng.randrange(1, 1 << 32),
            ctx.rng.randrange(1 << 32),
            ctx.rng.randbytes(8),
        )
        extra = [] if via is None else [source_extension([via, ROUTER_FAR], hop_limit=6)]
        # The ackno of a SYN (ACK clear) is to be ignored: a non-zero one changes nothing.
        syn = sal(
            control(SYN, verno=verno, ackno=0xDEADBEEF, nonce=nonce),
            service(router.service_id),
            *extra,
            source_flow=flow,
            protocol=STREAM,
            payload=b"" if via is None else b"a payload to be ignored",
        )
        before = router.probe.counts
        router.probe.peer.wire.send(syn)
        got = next(iter(incoming(listen, ctx.timeout)), None)
        router.probe.counts = router.probe.read_counters()
        where = "its observed endpoint" if via is None else "entry 0 of its SOURCE extension"
        ctx.require(
            "SAL-RECV-2",
            router.probe.counts["drop.NO_SERVICE"] > before["drop.NO_SERVICE"],
            "the SYN for an unregistered serviceID is counted NO_SERVICE",
        )
        ctx.require(
            "DHT-FWD-1",
            got is not None,
            f"a replica-set member answers the SYN with an RST at {where} (Section 6.9.3 step 2)",
            actual=describe(got[0]) if got else "nothing",
        )
        if got is None:
            continue
        data, source = got
        ctx.require(
            "SAL-UDP-5",
            source == router.probe.peer.wire.target,
            f"the RST comes from the node to {where}",
            actual=str(source),
        )
        expected = sal(
            control(
                ControlFlags.RST | ControlFlags.ACK,
                verno=0,
                ackno=(verno + 1) % (1 << 32),
                nonce=nonce,
            ),
            source_flow=0,
            destination_flow=flow,
            protocol=0,
        )
        _judge_rst(ctx, data, expected)
        if via is not None:
            ctx.require(
                "SAL-EXT-25",
                data == expected,
                "a SYN that carries a payload is refused like any other SYN",
                expected=expected.hex(),
                actual=data.hex(),
            )
    data = sal(service(router.service_id), payload=b"nobody")
    router.probe.dropped(
        "SAL-RECV-2", data, ErrorCode.NO_SERVICE, "a datagram for an unregistered serviceID"
    )


def _judge_rst(ctx: Context, data: bytes, expected: bytes) -> None:
    ctx.require(
        "SAL-CSUM-1",
        len(data) >= 12 and internet_checksum(data) == 0,
        "the RST's checksum verifies",
    )
    header = 4 * data[8] if len(data) >= 12 else 0
    ctx.require(
        "SAL-HDR-5",
        len(data) >= 12 and data[9] == 0,
        "the RST has Protocol NONE",
        actual=str(data[9]) if len(data) > 9 else data.hex(),
    )
    ctx.require(
        "SAL-HDR-7",
        len(data) == header,
        "no payload after Protocol NONE",
        actual=f"{len(data) - header} octets",
    )
    ctx.require(
        "SAL-EXT-24",
        len(data) == header,
        "no payload in a control packet",
        actual=f"{len(data) - header} octets",
    )
    has_control = len(data) >= 32 and data[12] == 1 and data[13] == 20
    flags = data[14] if has_control else 0
    ackno = int.from_bytes(data[20:24], "big") if has_control else None
    ctx.require("SAL-EXT-12", not flags & 0x10, "the NACK flag is zero", actual=f"0x{flags:02X}")
    ctx.require(
        "SAL-EXT-14",
        flags == expected[14] and ackno == int.from_bytes(expected[20:24], "big"),
        "the SYN's ackno (ACK clear) is ignored: RST|ACK with ackno = verno + 1",
        expected=expected[12:32].hex(),
        actual=data[12:32].hex(),
    )
    ctx.require(
        "SAL-RST-4",
        data == expected,
        "Source Flow ID 0, Destination Flow ID the SYN's, RST|ACK, verno 0, ackno the SYN's "
        "verno + 1, the SYN's nonce, no other extension",
        expected=expected.hex(),
        actual=data.hex(),
    )


@case(
    "sal.forward",
    "6.9.3",
    "DHT-FWD-3",
    needs=("forward",),
    title="No FORWARD rule comes from a record with a bad signature",
)
def unverified_record(ctx: Context) -> None:
    router = Router(ctx, register=False)
    record = router.record()
    broken = bytearray(record.signature)
    broken[0] ^= 0x01
    forged = dataclasses.replace(record, signature=bytes(broken))
    router.provider.request(Store(record=forged))  # refused, BAD_SIGNATURE (Section 6.7.1)
    syn = _syn(router, flow=ctx.rng.randrange(1, 1 << 32), verno=1, nonce=ctx.rng.randbytes(8))
    got = router.forwarded(syn)
    ctx.require(
        "DHT-FWD-3",
        got is None,
        "a SYN for a block whose only record was offered with a bad signature is not "
        "forwarded to that record's endpoint",
        expected="nothing at the provider",
        actual=describe(got) if got else "nothing at the provider",
    )
