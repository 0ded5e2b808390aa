"""SAL connection setup and stream throughput against asyncio TCP and raw asyncio UDP.

Everything runs in one process and one event loop on 127.0.0.1, so each
system pays the same interpreter and loop costs; rounds alternate between
the systems so that background load falls on all of them alike.

- Setup: connect, one round trip of one octet through an echo server, close
  (waiting until the close completes), repeated.  SAL: ``SalStack``
  ``open_connection`` by serviceID with a FORWARD rule to the server (no
  resolution, which ServalDHT benchmarks measure); TCP: ``asyncio``'s.
  Target: SAL within 2x of TCP.
- Throughput: one flow sends N octets one way; the receiver reads them all.
  SAL streams (reliable, ordered, flow and congestion control in Python)
  against asyncio TCP (the kernel's) and against raw asyncio UDP: datagrams
  of the same size as the SAL packets, sent as fast as the loop allows, and
  counted at the receiver (no reliability at all; what the loop and the
  kernel deliver).  Target: SAL at least half of raw UDP, at 1,232 octets
  (RECOMMENDED_MAX_PACKET: the largest packet SAL-UDP-8 lets a stream send
  on a path it knows nothing of, so what a stream uses).  16,384 octets
  (loopback is a path known to carry more) is measured for information: a
  stream of such packets is bounded by the Internet checksum computed in
  Python (SAL-CSUM-1/2, about 10 us per 16 KB at best each way), where raw
  UDP moves a whole 16 KB datagram in about 11 us.
- SAL is measured twice: with UDP segmentation offload where the kernel
  offers it (the default: a burst leaves in one ``sendmsg`` and arrives in
  one read) and with every datagram sent and read alone, as the baseline
  that shows what the offload gives.

Prints a table of figures and ratios and writes
``benchmarks/results/sal_loopback.json``.

    python benchmarks/sal_loopback.py            # full run (about a minute)
    python benchmarks/sal_loopback.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ref.sal.aio import SalStack  # noqa: E402
from ref.sal.host import HostConfig  # noqa: E402
from ref.wire.constants import BASE_HEADER_LENGTH, RECOMMENDED_MAX_PACKET  # noqa: E402
from ref.wire.ids import service_id_for_name  # noqa: E402
from ref.wire.sal import STREAM_HEADER_LENGTH  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "sal_loopback.json"
ECHO = service_id_for_name("echo.bench")
SINK = service_id_for_name("sink.bench")
SETUP_TARGET = 2.0
THROUGHPUT_TARGET = 0.5
OVERHEAD = BASE_HEADER_LENGTH + STREAM_HEADER_LENGTH


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def _one_exchange(
    opener: Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]],
) -> None:
    reader, writer = await opener()
    writer.write(b"x")
    await writer.drain()
    if await reader.readexactly(1) != b"x":
        raise RuntimeError("the echo server answered something else")
    writer.close()
    await writer.wait_closed()


async def _time_setups(opener: Any, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        await _one_exchange(opener)
    return (time.perf_counter() - start) / count


async def bench_setup(rounds: int, per_round: int) -> dict[str, Any]:
    server_stack = await SalStack.start([("127.0.0.1", 0)])
    client_stack = await SalStack.start([("127.0.0.1", 0)])
    sal_server = await server_stack.start_server(_echo, ECHO)
    client_stack.add_route(ECHO, server_stack.endpoints[0])
    tcp_server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    tcp_port = tcp_server.sockets[0].getsockname()[1]
    sal_times, tcp_times = [], []
    try:
        for _ in range(rounds):
            sal_times.append(
                await _time_setups(lambda: client_stack.open_connection(ECHO), per_round)
            )
            tcp_times.append(
                await _time_setups(
                    lambda: asyncio.open_connection("127.0.0.1", tcp_port), per_round
                )
            )
    finally:
        sal_server.close()
        tcp_server.close()
        client_stack.close()
        server_stack.close()
    sal, tcp = statistics.median(sal_times), statistics.median(tcp_times)
    return {
        "sal_ms": sal * 1000,
        "tcp_ms": tcp * 1000,
        "ratio": sal / tcp,
        "target": SETUP_TARGET,
        "met": sal / tcp <= SETUP_TARGET,
        "connections": rounds * per_round,
    }


def _sink(octets: int, done: asyncio.Future[float]) -> Callable[..., Awaitable[None]]:
    """A server callback that reads ``octets`` and records when the last arrived."""

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received = 0
        while received < octets:
            chunk = await reader.read(1 << 20)
            if not chunk:
                break
            received += len(chunk)
        done.set_result(time.perf_counter())
        writer.close()

    return sink


async def _send_all(
    writer: asyncio.StreamWriter, octets: int, done: asyncio.Future[float]
) -> float:
    """Write ``octets`` as fast as flow control allows; the rate at which they arrived."""
    block = bytes(1 << 16)
    start = time.perf_counter()
    for _ in range(octets // len(block)):
        writer.write(block)
        await writer.drain()
    end = await asyncio.wait_for(done, 300)
    writer.close()
    return octets / (end - start)


async def _sal_throughput(octets: int, packet: int, segmentation: bool = True) -> float:
    config = HostConfig(mss=packet - OVERHEAD, receive_buffer=4 << 20, send_buffer=4 << 20)
    local = [("127.0.0.1", 0)]
    server_stack = await SalStack.start(local, config=config, segmentation=segmentation)
    client_stack = await SalStack.start(local, config=config, segmentation=segmentation)
    done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    server = await server_stack.start_server(_sink(octets, done), SINK)
    client_stack.add_route(SINK, server_stack.endpoints[0])
    try:
        _, writer = await client_stack.open_connection(SINK)
        return await _send_all(writer, octets, done)
    finally:
        server.close()
        client_stack.close()
        server_stack.close()


async def _tcp_throughput(octets: int) -> float:
    done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    server = await asyncio.start_server(_sink(octets, done), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        return await _send_all(writer, octets, done)
    finally:
        server.close()


class _Counter(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.octets = 0
        self.first: float | None = None
        self.last = 0.0

    def datagram_received(self, data: bytes, addr: Any) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        self.octets += len(data)
        self.last = now


async def _udp_burst(octets: int, packet: int, burst: int) -> float:
    loop = asyncio.get_running_loop()
    receiver, counter = await loop.create_datagram_endpoint(_Counter, local_addr=("127.0.0.1", 0))
    address = receiver.get_extra_info("sockname")
    sender, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, remote_addr=address)
    payload = bytes(packet)
    try:
        for sent in range(octets // packet):
            sender.sendto(payload)
            if sent % burst == burst - 1:
                await asyncio.sleep(0)  # one loop iteration: the receiver reads
        await asyncio.sleep(0.2)
        if counter.first is None or counter.last <= counter.first:
            return 0.0
        # Payload octets comparable with the stream's: the SAL and segment headers excluded.
        useful = counter.octets * (packet - OVERHEAD) / packet
        return useful / (counter.last - counter.first)
    finally:
        sender.close()
        receiver.close()


async def _udp_throughput(octets: int, packet: int) -> float:
    """Raw asyncio UDP: datagrams of ``packet`` octets as fast as they are received.

    asyncio's datagram transport reads one datagram per readiness event, so a
    sender that outruns the receiver loses most of what it sends; the
    baseline is the best received rate over a few burst sizes (datagrams
    sent per loop iteration), which is what raw UDP can deliver at best.
    """
    rates = [await _udp_burst(octets, packet, burst) for burst in (1, 2, 4, 8, 32)]
    return max(rates)


async def bench_throughput(octets: int, packet: int, rounds: int) -> dict[str, Any]:
    sal, alone, tcp, udp = [], [], [], []
    for _ in range(rounds):
        sal.append(await _sal_throughput(octets, packet))
        alone.append(await _sal_throughput(octets, packet, segmentation=False))
        tcp.append(await _tcp_throughput(octets))
        udp.append(await _udp_throughput(octets, packet))
    sal_rate, alone_rate, tcp_rate, udp_rate = (
        statistics.median(x) for x in (sal, alone, tcp, udp)
    )
    judged = packet == RECOMMENDED_MAX_PACKET
    return {
        "packet": packet,
        "octets": octets,
        "sal_mb_s": sal_rate / 1e6,
        "sal_unsegmented_mb_s": alone_rate / 1e6,
        "tcp_mb_s": tcp_rate / 1e6,
        "udp_mb_s": udp_rate / 1e6,
        "ratio_tcp": sal_rate / tcp_rate,
        "ratio_udp": sal_rate / udp_rate,
        "ratio_udp_unsegmented": alone_rate / udp_rate,
        "target_udp": THROUGHPUT_TARGET if judged else None,
        "met": sal_rate / udp_rate >= THROUGHPUT_TARGET if judged else None,
    }


async def main_async(quick: bool) -> dict[str, Any]:
    setup = await bench_setup(rounds=3 if quick else 7, per_round=20 if quick else 100)
    print(
        f"setup: SAL {setup['sal_ms']:.2f} ms, TCP {setup['tcp_ms']:.2f} ms per connection,"
        f" ratio {setup['ratio']:.2f} (target <= {SETUP_TARGET})",
        flush=True,
    )
    throughput = []
    for packet in (RECOMMENDED_MAX_PACKET, 16384):
        octets = (8 if quick else 64) << 20
        result = await bench_throughput(octets, packet, rounds=1 if quick else 3)
        throughput.append(result)
        target = (
            f"target >= {THROUGHPUT_TARGET}" if result["target_udp"] else "for information"
        )
        print(
            f"stream, {packet}-octet packets: SAL {result['sal_mb_s']:.1f} MB/s"
            f" ({result['sal_unsegmented_mb_s']:.1f} without segmentation offload),"
            f" TCP {result['tcp_mb_s']:.1f} MB/s, raw UDP {result['udp_mb_s']:.1f} MB/s;"
            f" SAL/UDP {result['ratio_udp']:.2f} ({target}),"
            f" SAL/TCP {result['ratio_tcp']:.2f}",
            flush=True,
        )
    return {"setup": setup, "throughput": throughput}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    args = parser.parse_args(argv)
    results = asyncio.run(main_async(args.quick))
    results["machine"] = {"python": platform.python_version(), "platform": platform.platform()}
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
