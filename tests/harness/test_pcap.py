"""The pcapng export, read back by a minimal reader written here from the format's text."""

from __future__ import annotations

import dataclasses
import ipaddress
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from conformance.pcap import write_pcapng
from conformance.peer import Datagram, dht_datagram
from ref.wire import DhtMessage, ErrorCode, Ping, encode_dht
from ref.wire import Error as ErrorBody

SHB, IDB, EPB = 0x0A0D0D0A, 1, 6


@dataclasses.dataclass
class Packet:
    timestamp: int  # microseconds
    data: bytes
    comment: str
    flags: int


def _options(data: bytes) -> dict[int, bytes]:
    """Options up to opt_endofopt; each value padded to 32 bits."""
    options: dict[int, bytes] = {}
    offset = 0
    while offset < len(data):
        code, length = struct.unpack_from("<HH", data, offset)
        offset += 4
        if code == 0:
            assert length == 0
            assert offset == len(data), "bytes after opt_endofopt"
            return options
        options[code] = data[offset : offset + length]
        offset += length + (-length % 4)
    raise AssertionError("options without opt_endofopt")


def read_pcapng(data: bytes) -> list[Packet]:
    """Every Enhanced Packet Block of a little-endian pcapng file with one RAW interface."""
    packets: list[Packet] = []
    offset = 0
    kinds = []
    while offset < len(data):
        kind, length = struct.unpack_from("<II", data, offset)
        assert length % 4 == 0 and length >= 12, f"block length {length}"
        (trailer,) = struct.unpack_from("<I", data, offset + length - 4)
        assert trailer == length, "the two block lengths differ"
        body = data[offset + 8 : offset + length - 4]
        kinds.append(kind)
        if kind == SHB:
            magic, major, minor, section = struct.unpack_from("<IHHq", body)
            assert (magic, major, minor, section) == (0x1A2B3C4D, 1, 0, -1)
            _options(body[16:])
        elif kind == IDB:
            link, reserved, _snaplen = struct.unpack_from("<HHI", body)
            assert (link, reserved) == (101, 0)
            assert _options(body[8:]).get(9, b"\x06") == b"\x06"  # microseconds
        elif kind == EPB:
            interface, high, low, captured, original = struct.unpack_from("<IIIII", body)
            assert interface == 0 and captured == original
            packet = body[20 : 20 + captured]
            padded = 20 + captured + (-captured % 4)
            assert body[20 + captured : padded] == b"\0" * (-captured % 4)
            options = _options(body[padded:])
            (flags,) = struct.unpack("<I", options[2])
            packets.append(Packet((high << 32) | low, packet, options[1].decode(), flags))
        offset += length
    assert offset == len(data)
    assert kinds[:2] == [SHB, IDB] and set(kinds[2:]) <= {EPB}
    return packets


def _sum(data: bytes) -> int:
    data += b"\0" * (len(data) % 2)
    total = 0
    for index in range(0, len(data), 2):
        total += (data[index] << 8) | data[index + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return total


@dataclasses.dataclass
class Udp:
    source: tuple[str, int]
    destination: tuple[str, int]
    payload: bytes


def open_ip_udp(packet: bytes) -> Udp:
    """The UDP datagram in an IPv4 or IPv6 packet, every checksum verified."""
    if packet[0] >> 4 == 4:
        header_length = (packet[0] & 0x0F) * 4
        assert header_length == 20
        total, protocol = struct.unpack_from("!H", packet, 2)[0], packet[9]
        assert total == len(packet) and protocol == 17
        assert _sum(packet[:20]) == 0xFFFF, "IPv4 header checksum"
        source, destination = packet[12:16], packet[16:20]
        udp = packet[20:]
        pseudo = source + destination + bytes([0, 17]) + struct.pack("!H", len(udp))
    else:
        assert packet[0] >> 4 == 6
        length, next_header = struct.unpack_from("!HB", packet, 4)
        assert next_header == 17 and length == len(packet) - 40
        source, destination = packet[8:24], packet[24:40]
        udp = packet[40:]
        pseudo = source + destination + struct.pack("!I", len(udp)) + bytes([0, 0, 0, 17])
    source_port, destination_port, udp_length, checksum = struct.unpack_from("!HHHH", udp)
    assert udp_length == len(udp)
    assert checksum != 0, "a zero UDP checksum means none (and is not allowed in IPv6)"
    assert _sum(pseudo + udp) == 0xFFFF, "UDP checksum"
    return Udp(
        (str(ipaddress.ip_address(source)), source_port),
        (str(ipaddress.ip_address(destination)), destination_port),
        udp[8:],
    )


def _ping(txid: int) -> bytes:
    return dht_datagram(encode_dht(DhtMessage(Ping(), txid.to_bytes(8, "big"))))


HARNESS_V4 = ("127.0.0.1", 40001)
TARGET_V4 = ("127.0.0.1", 54325)
HARNESS_V6 = ("::1", 40002)
TARGET_V6 = ("::1", 54325)


def _datagrams() -> list[Datagram]:
    error = dht_datagram(encode_dht(DhtMessage(ErrorBody(ErrorCode.MALFORMED, b"odd"), bytes(8))))
    return [
        Datagram(0.0, True, HARNESS_V4, TARGET_V4, _ping(1), "harness.probe"),
        Datagram(0.25, True, HARNESS_V4, TARGET_V4, _ping(2), "dht.x.first"),
        Datagram(0.2501, False, HARNESS_V4, TARGET_V4, error, "dht.x.first"),
        Datagram(1.5, True, HARNESS_V6, TARGET_V6, _ping(3), "dht.x.second"),
        Datagram(1.75, False, HARNESS_V6, TARGET_V6, b"\x01\x02\x03", "dht.x.second"),
        Datagram(2.0, True, HARNESS_V4, TARGET_V4, b"", "dht.x.second", note="empty"),
    ]


def test_the_file_reads_back_with_checksums_addresses_and_comments(tmp_path: Path) -> None:
    path = tmp_path / "run.pcapng"
    datagrams = _datagrams()
    write_pcapng(path, datagrams, {"dht.x.first": "PASS", "dht.x.second": "FAIL"})
    packets = read_pcapng(path.read_bytes())
    assert len(packets) == len(datagrams)
    for packet, datagram in zip(packets, datagrams, strict=True):
        udp = open_ip_udp(packet.data)
        assert udp.payload == datagram.data
        sent = (datagram.local, datagram.remote)
        assert (udp.source, udp.destination) == (sent if datagram.outbound else sent[::-1])
        assert packet.flags & 0b11 == (0b10 if datagram.outbound else 0b01)
    assert packets[0].comment.startswith("harness harness.probe: PING txid=0000000000000001")
    assert packets[1].comment.startswith("case dht.x.first verdict PASS: PING txid=")
    assert packets[2].comment.startswith("case dht.x.first verdict PASS: ERROR")
    assert "MALFORMED" in packets[2].comment
    assert packets[4].comment.startswith("case dht.x.second verdict FAIL: undecodable SAL")
    assert packets[5].comment.endswith("(empty)")
    assert packets[0].data[0] >> 4 == 4 and packets[3].data[0] >> 4 == 6


def test_timestamps_keep_the_capture_times_in_microseconds(tmp_path: Path) -> None:
    path = tmp_path / "run.pcapng"
    datagrams = _datagrams()
    write_pcapng(path, datagrams, {})
    packets = read_pcapng(path.read_bytes())
    for packet, datagram in zip(packets, datagrams, strict=True):
        elapsed = packet.timestamp - packets[0].timestamp
        assert abs(elapsed - round(datagram.time * 1_000_000)) <= 1


def test_a_computed_udp_checksum_of_zero_is_sent_as_all_ones(tmp_path: Path) -> None:
    # Choose the last two payload bytes so that the one's complement sum is 0xFFFF.
    source, destination = HARNESS_V4, TARGET_V4
    payload = bytearray(b"serval" + b"\0\0")
    udp = struct.pack("!HHHH", source[1], destination[1], 8 + len(payload), 0)
    pseudo = (
        ipaddress.ip_address(source[0]).packed
        + ipaddress.ip_address(destination[0]).packed
        + bytes([0, 17])
        + struct.pack("!H", 8 + len(payload))
    )
    partial = _sum(pseudo + udp + bytes(payload))
    payload[-2:] = struct.pack("!H", 0xFFFF - partial)
    assert _sum(pseudo + udp + bytes(payload)) == 0xFFFF
    path = tmp_path / "zero.pcapng"
    write_pcapng(path, [Datagram(0.0, True, source, destination, bytes(payload), "c")], {})
    (packet,) = read_pcapng(path.read_bytes())
    assert packet.data[26:28] == b"\xff\xff"
    assert open_ip_udp(packet.data).payload == payload


def test_ipv4_and_ipv6_endpoints_of_one_datagram_share_a_family(tmp_path: Path) -> None:
    path = tmp_path / "mixed.pcapng"
    write_pcapng(path, [Datagram(0.0, True, ("127.0.0.1", 1), ("::1", 2), b"x", "c")], {})
    (packet,) = read_pcapng(path.read_bytes())
    udp = open_ip_udp(packet.data)
    mapped = ipaddress.IPv6Address(udp.source[0]).ipv4_mapped
    assert (mapped, udp.source[1]) == (ipaddress.IPv4Address("127.0.0.1"), 1)
    assert udp.destination == ("::1", 2)


def test_an_empty_run_is_a_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.pcapng"
    write_pcapng(path, [], {})
    assert read_pcapng(path.read_bytes()) == []


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_tshark_reads_the_file_without_checksum_errors(tmp_path: Path) -> None:
    path = tmp_path / "run.pcapng"
    write_pcapng(path, _datagrams(), {"dht.x.first": "PASS"})
    result = subprocess.run(
        [
            "tshark",
            "-r",
            str(path),
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "udp.check_checksum:TRUE",
            "-V",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "dht.x.first verdict PASS" in result.stdout
    assert "[Bad" not in result.stdout and "incorrect" not in result.stdout.lower()


@pytest.mark.parametrize("module", ["dpkt", "scapy"])
def test_a_third_party_reader_agrees(module: str, tmp_path: Path) -> None:
    pytest.importorskip(module, reason=f"{module} is not installed (not a dependency)")
    path = tmp_path / "run.pcapng"
    datagrams = _datagrams()
    write_pcapng(path, datagrams, {})
    if module == "dpkt":
        import dpkt  # type: ignore[import-not-found]

        with path.open("rb") as stream:
            payloads = [bytes(frame) for _, frame in dpkt.pcapng.Reader(stream)]
    else:
        from scapy.utils import rdpcap  # type: ignore[import-not-found]

        payloads = [bytes(frame) for frame in rdpcap(str(path))]
    assert [open_ip_udp(p).payload for p in payloads] == [d.data for d in datagrams]
