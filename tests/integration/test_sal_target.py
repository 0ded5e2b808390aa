"""A node with the test services (Appendix C.4) over real sockets, with ref.sal as the client.

The in-memory tests of :mod:`ref.sal.testservices` live in tests/sal; here the
whole target (node, host, dispatcher, STATUS) runs on a loopback socket and a
SalStack talks to it as any SAL client would.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ref.chord.aio import DhtClient, NodeServer, start_node
from ref.sal.aio import SalStack
from ref.wire.constants import (
    ECHO_DATAGRAM_SERVICE_ID,
    ECHO_STREAM_SERVICE_ID,
    INITIATOR_SERVICE_ID,
)
from ref.wire.sal import (
    Control,
    ControlFlags,
    SalPacket,
    TransportProtocol,
    decode_sal,
    encode_sal,
)

LIMIT = 30.0


def run(main: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(main, LIMIT))


async def _target() -> NodeServer:
    return await start_node("127.0.0.1", 0, key=Ed25519PrivateKey.generate(), test_services=True)


def _address(server: NodeServer) -> tuple[str, int]:
    return (str(server.endpoint.address), server.endpoint.port)


def test_echo_stream_and_datagram_and_status() -> None:
    async def main() -> None:
        server = await _target()
        stack = await SalStack.start([("127.0.0.1", 0)])
        try:
            stack.add_route(ECHO_STREAM_SERVICE_ID, _address(server))
            stack.add_route(ECHO_DATAGRAM_SERVICE_ID, _address(server))
            payload = os.urandom(300_000)
            reader, writer = await stack.open_connection(ECHO_STREAM_SERVICE_ID)
            writer.write(payload)
            writer.write_eof()
            assert await reader.read() == payload  # everything back, then the end
            writer.close()
            connection = await stack.open_datagram_connection(ECHO_DATAGRAM_SERVICE_ID)
            for message in (b"one", b"two" * 400, b""):
                connection.send(message)
                assert await connection.recv() == message
            connection.close()
            client = await DhtClient.connect([server.endpoint])
            report = await client.status(server.endpoint)
            client.close()
            assert isinstance(report, dict)
            assert "sal" in report["features"] and "dht" in report["features"]
        finally:
            stack.close()
            server.close()

    run(main())


def test_flow_packets_reach_the_host_and_its_drops_reach_status() -> None:
    async def main() -> None:
        server = await _target()
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        try:
            # An ACK for a flow the target does not have: RST back, UNEXPECTED_CONTROL counted.
            ack = Control(ControlFlags.ACK, 1, 1, bytes(8))
            stray = SalPacket(0x0BAD, 0x1234, TransportProtocol.STREAM, control=ack)
            await loop.sock_sendto(sock, encode_sal(stray), _address(server))
            answer = decode_sal(await asyncio.wait_for(loop.sock_recv(sock, 2048), 5))
            assert answer.control is not None and answer.control.flags & ControlFlags.RST
            assert answer.destination_flow_id == 0x0BAD
            assert server.node.status()["counters"]["drop"]["UNEXPECTED_CONTROL"] == 1
        finally:
            sock.close()
            server.close()

    run(main())


def test_initiator_connects_back_and_reports_the_outcome() -> None:
    async def main() -> None:
        server = await _target()
        stack = await SalStack.start([("127.0.0.1", 0)])
        service = os.urandom(32)
        accepted: asyncio.Queue[bytes] = asyncio.Queue()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"hello")
            await writer.drain()
            accepted.put_nowait(await reader.readexactly(len(b"first" + b"hello")))
            writer.close()

        try:
            await stack.start_server(serve, service)
            stack.add_route(INITIATOR_SERVICE_ID, _address(server))
            endpoint = await stack.bind_datagram(os.urandom(32))
            request = service + bytes([TransportProtocol.STREAM, 0]) + b"first"
            endpoint.sendto(INITIATOR_SERVICE_ID, request)
            # The target sent "first", then echoed our "hello".
            assert await accepted.get() == b"firsthello"
            assert (await endpoint.recvfrom()).data == b"closed"
            endpoint.sendto(INITIATOR_SERVICE_ID, b"short")
            assert (await endpoint.recvfrom()).data == b"bad request"
        finally:
            stack.close()
            server.close()

    run(main())
