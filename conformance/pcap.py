"""Every datagram of a run as a pcapng file that Wireshark opens without complaint.

The file is written by hand: one Section Header Block, one Interface
Description Block of link type RAW (101, so IPv4 and IPv6 packets can mix)
with microsecond timestamps, and one Enhanced Packet Block per captured
datagram.  The harness only sees UDP payloads, so each SAL datagram gets a
synthetic IPv4 or IPv6 header and a UDP header built from the datagram's
local and remote endpoints (the harness's socket is the source of what it
sent, the target the source of what it received), with a correct IPv4
header checksum and a correct UDP checksum.  Each packet carries the
direction flag of the Enhanced Packet Block and a comment::

    case dht.header.version-2-request verdict PASS: PING txid=..., 60 bytes

Datagrams the harness sent outside any case (the probe and the liveness
checks) are commented ``harness <what>: ...``.  Timestamps are the capture
times relative to the start of the run, placed on the wall clock so that the
last datagram is stamped with the time of writing.

Format: https://www.ietf.org/archive/id/draft-ietf-opsawg-pcapng-03.html
(Sections 4.1 to 4.3).
"""

from __future__ import annotations

import ipaddress
import struct
import time
from collections.abc import Sequence
from pathlib import Path

from conformance.peer import Address, Datagram, describe

LINKTYPE_RAW = 101

SECTION_HEADER = 0x0A0D0D0A
INTERFACE_DESCRIPTION = 0x00000001
ENHANCED_PACKET = 0x00000006
BYTE_ORDER_MAGIC = 0x1A2B3C4D

OPT_ENDOFOPT = 0
OPT_COMMENT = 1
SHB_USERAPPL = 4
IF_NAME = 2
IF_TSRESOL = 9
EPB_FLAGS = 2
EPB_INBOUND = 0b01
EPB_OUTBOUND = 0b10

UDP = 17
TTL = 64
IPV4_DONT_FRAGMENT = 0x4000

_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def write_pcapng(path: Path, datagrams: Sequence[Datagram], verdicts: dict[str, str]) -> None:
    """Write ``datagrams`` to ``path``, each commented with its case and that case's verdict."""
    last = max((d.time for d in datagrams), default=0.0)
    start = time.time() - last
    blocks = [_section_header(), _interface_description()]
    for number, datagram in enumerate(datagrams):
        blocks.append(
            _enhanced_packet(
                timestamp=start + datagram.time,
                packet=ip_udp_packet(datagram, identification=number & 0xFFFF),
                outbound=datagram.outbound,
                comment=comment(datagram, verdicts),
            )
        )
    path.write_bytes(b"".join(blocks))


def comment(datagram: Datagram, verdicts: dict[str, str]) -> str:
    """``case <id> verdict <VERDICT>: <summary>`` for a packet of a case."""
    verdict = verdicts.get(datagram.case)
    if verdict is None:
        head = f"harness {datagram.case}" if datagram.case else "harness"
    else:
        head = f"case {datagram.case} verdict {verdict}"
    note = f" ({datagram.note})" if datagram.note else ""
    return f"{head}: {describe(datagram.data)}{note}"


# --- IP and UDP ---------------------------------------------------------------------


def ip_udp_packet(datagram: Datagram, *, identification: int = 0) -> bytes:
    """The datagram's payload in a UDP header in an IPv4 or IPv6 header, checksums correct."""
    source, destination = datagram.local, datagram.remote
    if not datagram.outbound:
        source, destination = destination, source
    source_address, destination_address = _same_family(_address(source), _address(destination))
    udp_length = 8 + len(datagram.data)
    if udp_length > 0xFFFF:
        raise ValueError(f"a UDP datagram of {udp_length} bytes does not fit its header")
    header = struct.pack("!HHHH", source[1], destination[1], udp_length, 0)
    if isinstance(source_address, ipaddress.IPv4Address):
        pseudo = (
            source_address.packed
            + destination_address.packed
            + struct.pack("!xBH", UDP, udp_length)
        )
    else:
        pseudo = (
            source_address.packed
            + destination_address.packed
            + struct.pack("!I3xB", udp_length, UDP)
        )
    # RFC 768: a computed checksum of zero is sent as all ones (zero means "none").
    checksum = internet_checksum(pseudo + header + datagram.data) or 0xFFFF
    udp = header[:6] + struct.pack("!H", checksum) + datagram.data
    if isinstance(source_address, ipaddress.IPv4Address):
        if 20 + udp_length > 0xFFFF:
            raise ValueError(f"an IPv4 packet of {20 + udp_length} bytes does not fit its header")
        ip = struct.pack(
            "!BBHHHBBH4s4s",
            0x45,  # version 4, 5 words of header
            0,
            20 + udp_length,
            identification,
            IPV4_DONT_FRAGMENT,
            TTL,
            UDP,
            0,
            source_address.packed,
            destination_address.packed,
        )
        ip = ip[:10] + struct.pack("!H", internet_checksum(ip)) + ip[12:]
    else:
        ip = struct.pack(
            "!IHBB16s16s",
            6 << 28,  # version 6, traffic class 0, flow label 0
            udp_length,
            UDP,
            TTL,
            source_address.packed,
            destination_address.packed,
        )
    return ip + udp


def internet_checksum(data: bytes) -> int:
    """The 16-bit one's complement of the one's complement sum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _address(endpoint: Address) -> _IPAddress:
    return ipaddress.ip_address(endpoint[0].split("%", 1)[0])


def _same_family(a: _IPAddress, b: _IPAddress) -> tuple[_IPAddress, _IPAddress]:
    """Both addresses in one family: IPv4 stays IPv4 unless the other side is IPv6."""
    if type(a) is type(b):
        return a, b
    return _as_ipv6(a), _as_ipv6(b)


def _as_ipv6(address: _IPAddress) -> ipaddress.IPv6Address:
    if isinstance(address, ipaddress.IPv6Address):
        return address
    return ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + address.packed)


# --- pcapng blocks ------------------------------------------------------------------


def _block(block_type: int, body: bytes) -> bytes:
    length = 12 + len(body)
    return struct.pack("<II", block_type, length) + body + struct.pack("<I", length)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + _pad(value)


def _options(*options: bytes) -> bytes:
    return b"".join(options) + struct.pack("<HH", OPT_ENDOFOPT, 0)


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def _section_header() -> bytes:
    body = struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1)  # version 1.0, length unknown
    return _block(SECTION_HEADER, body + _options(_option(SHB_USERAPPL, b"serval-conform")))


def _interface_description() -> bytes:
    body = struct.pack("<HHI", LINKTYPE_RAW, 0, 0)  # no snapshot length limit
    options = _options(_option(IF_NAME, b"serval-conform"), _option(IF_TSRESOL, b"\x06"))
    return _block(INTERFACE_DESCRIPTION, body + options)


def _enhanced_packet(*, timestamp: float, packet: bytes, outbound: bool, comment: str) -> bytes:
    micros = round(timestamp * 1_000_000)
    body = struct.pack(
        "<IIIII", 0, micros >> 32, micros & 0xFFFFFFFF, len(packet), len(packet)
    ) + _pad(packet)
    direction = EPB_OUTBOUND if outbound else EPB_INBOUND
    options = _options(
        _option(OPT_COMMENT, comment.encode("utf-8")),
        _option(EPB_FLAGS, struct.pack("<I", direction)),
    )
    return _block(ENHANCED_PACKET, body + options)
