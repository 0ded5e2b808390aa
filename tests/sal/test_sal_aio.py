"""The SAL on asyncio (ref.sal.aio): real UDP sockets on loopback, streams and datagrams.

Every stack binds port 0 on 127.0.0.1 (and 127.0.0.2 or ::1 where a test
needs a second address).  pytest has no asyncio plugin here: each test calls
asyncio.run with an overall time limit.  No assertion depends on timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import socket
import sys
import time
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

import pytest

from ref.sal import aio
from ref.sal.aio import (
    SalStack,
    ServiceUnreachable,
    open_connection,
    open_datagram_connection,
    service_id_of,
    start_server,
)
from ref.sal.host import HostConfig
from ref.sal.resolver import Registration, StaticResolver
from ref.wire.errors import LocalProtocolError
from ref.wire.ids import encode_key, key_bound_service_id, service_id_for_name

T = TypeVar("T")
ECHO = "echo.example"
LIMIT = 15.0  # seconds per test, a hang guard only


def run(main: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(main, LIMIT))


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@contextlib.asynccontextmanager
async def stacks(
    *interfaces: list[tuple[str, int]], resolver: StaticResolver | None = None
) -> AsyncIterator[list[SalStack]]:
    started: list[SalStack] = []
    try:
        for addresses in interfaces:
            started.append(await SalStack.start(addresses, resolver=resolver))
        yield started
    finally:
        for stack in started:
            stack.close()
        for stack in started:
            await stack.wait_closed()


def loopback(count: int = 2) -> list[list[tuple[str, int]]]:
    return [[("127.0.0.1", 0)] for _ in range(count)]


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Echo to the end of the stream; a flow the test tears down ends it too."""
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


async def digest_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read to the end, answer with the length and SHA-256 of what arrived."""
    hasher, count = hashlib.sha256(), 0
    while data := await reader.read(1 << 20):
        hasher.update(data)
        count += len(data)
    writer.write(count.to_bytes(8, "big") + hasher.digest())
    await writer.drain()
    writer.close()


def payload(size: int) -> bytes:
    block = hashlib.sha256(b"serval").digest() * 2048  # 64 KiB, not periodic in 1 KiB
    return (block * (size // len(block) + 1))[:size]


async def send_all(writer: asyncio.StreamWriter, data: bytes, chunk: int = 65536) -> None:
    for offset in range(0, len(data), chunk):
        writer.write(data[offset : offset + chunk])
        await writer.drain()
    writer.write_eof()


async def transfer(segmentation: bool, size: int = 1 << 20) -> tuple[SalStack, SalStack, int]:
    """A digest-checked transfer of ``size`` octets.

    Returns the two stacks, closed, for their counters, and how many segments
    the sender retransmitted.
    """
    server_stack = await SalStack.start(segmentation=segmentation)
    client_stack = await SalStack.start(segmentation=segmentation)
    try:
        await start_server(digest_server, ECHO, stack=server_stack)
        client_stack.add_route(ECHO, server_stack.endpoints[0])
        reader, writer = await open_connection(ECHO, stack=client_stack)
        data = payload(size)
        await send_all(writer, data)
        answer = await reader.readexactly(40)
        assert int.from_bytes(answer[:8], "big") == len(data)
        assert answer[8:] == hashlib.sha256(data).digest()
        stream = client_stack.host.flows[writer.get_extra_info("flow_id")].stream
        assert stream is not None
        retransmitted = stream.retransmissions + stream.fast_retransmits
        writer.close()
        await writer.wait_closed()
    finally:
        for stack in (server_stack, client_stack):
            stack.close()
            await stack.wait_closed()
    return server_stack, client_stack, retransmitted


# --- streams by name -----------------------------------------------------------------------


def test_echo_by_service_name_through_a_shared_resolver_sal_tbl_18() -> None:
    """A client stack resolves the name through its default DELAY rule and connects."""

    async def main() -> None:
        resolver = StaticResolver(clock=time.time)
        async with stacks(*loopback(), resolver=resolver) as (server_stack, client_stack):
            server = await start_server(echo, ECHO, stack=server_stack)
            serving = asyncio.create_task(server.serve_forever())
            await server_stack.registered()
            reader, writer = await open_connection(ECHO, stack=client_stack)
            for message in (b"hello", b"serval" * 1000, b"x"):
                writer.write(message)
                await writer.drain()
                assert await reader.readexactly(len(message)) == message
            assert writer.get_extra_info("peername") == (
                "127.0.0.1",
                server_stack.endpoints[0].port,
            )
            assert writer.get_extra_info("sockname") == (
                "127.0.0.1",
                client_stack.endpoints[0].port,
            )
            assert writer.get_extra_info("service") == service_id_for_name(ECHO)
            writer.write_eof()
            assert await reader.read() == b""  # the server's FIN follows ours
            writer.close()
            await writer.wait_closed()
            assert server.is_serving()
            serving.cancel()  # serve_forever's cancellation closes the server
            with pytest.raises(asyncio.CancelledError):
                await serving
            assert not server.is_serving()
            await server.wait_closed()

    run(main())


def test_service_id_and_key_bound_names_are_accepted() -> None:
    service_id = service_id_for_name(ECHO)
    assert service_id_of(ECHO) == service_id_of(service_id) == service_id
    owner = bytes(range(32))
    bound = key_bound_service_id(owner, ECHO)
    assert service_id_of(f"{ECHO}@{encode_key(owner)}") == bound
    with pytest.raises(LocalProtocolError):
        service_id_of(b"short")


def test_binding_registers_and_closing_withdraws_sal_tbl_23() -> None:
    async def main() -> None:
        resolver = StaticResolver(clock=time.time)
        service_id = service_id_for_name(ECHO)
        async with stacks(*loopback(1), resolver=resolver) as (stack,):
            server = await start_server(echo, ECHO, stack=stack)
            await stack.registered()
            record = resolver.record(service_id)
            assert record is not None
            assert [(str(e.address), e.port) for e in record.endpoints] == [
                ("127.0.0.1", stack.endpoints[0].port)
            ]
            assert (record.endpoints[0].priority, record.endpoints[0].weight) == (255, 1)
            # A new local endpoint is registered too, and withdrawn when it goes.
            added = await stack.add_interface("127.0.0.2")
            await stack.registered()
            record = resolver.record(service_id)
            assert record is not None and len(record.endpoints) == 2
            stack.remove_interface(added)
            await stack.registered()
            record = resolver.record(service_id)
            assert record is not None and len(record.endpoints) == 1
            server.close()
            await server.wait_closed()
            assert resolver.record(service_id) is None

    run(main())


def test_registration_failure_is_reported_by_registered() -> None:
    class Refusing(StaticResolver):
        async def register(self, registration: Registration) -> None:
            raise RuntimeError("refused")

    async def main() -> None:
        events: list[dict[str, Any]] = []
        stack = await SalStack.start(
            [("127.0.0.1", 0)], resolver=Refusing(clock=time.time), log=events.append
        )
        try:
            await stack.start_server(echo, ECHO)
            with pytest.raises(RuntimeError, match="refused"):
                await stack.registered()
            assert events[0]["event"] == "register_failed"
            await stack.registered()  # reported once
        finally:
            stack.close()
            await stack.wait_closed()

    run(main())


# --- failures ----------------------------------------------------------------------------


def test_unknown_name_is_unreachable_at_once_sal_tbl_22() -> None:
    async def main() -> None:
        resolver = StaticResolver(clock=time.time)
        async with stacks(*loopback(1), resolver=resolver) as (stack,):
            with pytest.raises(ServiceUnreachable, match="not registered"):
                await open_connection("nobody.example", stack=stack)
            with pytest.raises(ServiceUnreachable):
                await open_datagram_connection("nobody.example", stack=stack)
        async with stacks(*loopback(1)) as (stack,):  # no resolver: no DELAY rule
            with pytest.raises(ServiceUnreachable):
                await open_connection("nobody.example", stack=stack)  # SAL-CONN-2
            with pytest.raises(ServiceUnreachable):
                stack.sendto("nobody.example", b"lost")  # SAL-DGRAM-2

    run(main())


def test_resolver_that_fails_makes_the_service_unreachable() -> None:
    class Broken(StaticResolver):
        async def resolve(self, service_id: bytes) -> None:
            raise OSError("no route to the ring")

    async def main() -> None:
        async with stacks(*loopback(1), resolver=Broken(clock=time.time)) as (stack,):
            with pytest.raises(ServiceUnreachable, match="resolver unreachable"):
                await open_connection(ECHO, stack=stack)

    run(main())


def test_bound_rule_without_listener_is_refused_sal_conn_5() -> None:
    async def main() -> None:
        async with stacks(*loopback()) as (server_stack, client_stack):
            client_stack.add_route(ECHO, server_stack.endpoints[0])
            with pytest.raises(ConnectionRefusedError):
                await open_connection(ECHO, stack=client_stack)

    run(main())


def test_abort_resets_the_peer_sal_close_7() -> None:
    async def main() -> None:
        aborted = asyncio.Event()

        async def abort_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readexactly(4)
            writer.transport.abort()
            aborted.set()

        async with stacks(*loopback()) as (server_stack, client_stack):
            await start_server(abort_at_once, ECHO, stack=server_stack)
            client_stack.add_route(ECHO, server_stack.endpoints[0])
            reader, writer = await open_connection(ECHO, stack=client_stack)
            writer.write(b"ping")
            await aborted.wait()
            with pytest.raises(ConnectionResetError):
                await reader.read()
            with pytest.raises(ConnectionResetError):
                writer.write(b"more")
                await writer.drain()
            writer.close()

    run(main())


def test_closing_the_stack_aborts_its_flows() -> None:
    async def main() -> None:
        outcome: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

        async def read_until_reset(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            try:
                await reader.read()
            except ConnectionError as error:
                outcome.set_result(error)
            else:
                outcome.set_result(None)
            writer.close()

        async with stacks(*loopback()) as (server_stack, client_stack):
            await start_server(read_until_reset, ECHO, stack=server_stack)
            client_stack.add_route(ECHO, server_stack.endpoints[0])
            reader, writer = await open_connection(ECHO, stack=client_stack)
            client_stack.close()
            with pytest.raises(ConnectionAbortedError):
                await reader.read()
            assert isinstance(await outcome, ConnectionResetError)  # the RST (SAL-CLOSE-7)
            writer.close()

    run(main())


# --- flow control and bulk data ------------------------------------------------------------


def test_backpressure_drain_waits_for_a_reader_that_does_not_read_sal_stream_18() -> None:
    """The receiver stops reading: its window closes, the sender's buffers fill, drain
    waits; then it reads, and every octet arrives once, in order."""

    async def main() -> None:
        accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
        accepted = asyncio.Queue()

        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await accepted.put((reader, writer))

        async with stacks(*loopback()) as (server_stack, client_stack):
            await start_server(hold, ECHO, stack=server_stack)
            client_stack.add_route(ECHO, server_stack.endpoints[0])
            _, writer = await open_connection(ECHO, stack=client_stack)
            server_reader, server_writer = await accepted.get()
            data = payload(12 << 20)
            written = 0
            while written < len(data):
                writer.write(data[written : written + 65536])
                written += 65536
                try:
                    await asyncio.wait_for(writer.drain(), 1.0)
                except TimeoutError:
                    break  # drain waits: the receiver holds everything it can
            # Nothing read: at most the receiver's buffers (core + StreamReader) and the
            # sender's (core + transport) hold data, far less than the 12 MB offered.
            assert written < len(data)
            assert writer.transport.get_write_buffer_size() > 0
            sending = asyncio.create_task(send_all(writer, data[written:]))
            received = await server_reader.readexactly(len(data))
            assert received == data
            assert await server_reader.read() == b""
            await sending
            server_writer.close()
            writer.close()

    run(main())


def test_closing_without_reading_lets_a_blocked_sender_finish() -> None:
    """A receiver that closes with data unread discards it, so a sender blocked on its
    closed window finishes instead of waiting forever (Section 5.11.1)."""

    async def main() -> None:
        accepted: asyncio.Queue[asyncio.StreamWriter] = asyncio.Queue()

        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await accepted.put(writer)

        async with stacks(*loopback()) as (server_stack, client_stack):
            server = await start_server(hold, ECHO, stack=server_stack)
            async with server:
                client_stack.add_route(ECHO, server_stack.endpoints[0])
                reader, writer = await open_connection(ECHO, stack=client_stack)
                server_writer = await accepted.get()
                sending = asyncio.create_task(send_all(writer, payload(4 << 20)))
                while not writer.transport.get_write_buffer_size():
                    await asyncio.sleep(0.01)  # until the sender is blocked
                server_writer.close()
                await sending
                assert await reader.read() == b""
                writer.close()
            assert not server.is_serving()

    run(main())


def test_large_transfer_arrives_complete_and_in_order_sal_stream_12() -> None:
    run(transfer(segmentation=True, size=4 << 20))


def test_custom_protocol_on_a_sal_transport() -> None:
    """create_connection/create_server take any asyncio.Protocol, as asyncio's do."""

    class Collect(asyncio.Protocol):
        def __init__(self) -> None:
            self.data = bytearray()
            self.done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        def data_received(self, data: bytes) -> None:
            self.data += data

        def eof_received(self) -> bool:
            self.done.set_result(bytes(self.data))
            return False  # close our side too

    async def main() -> None:
        collectors: asyncio.Queue[Collect] = asyncio.Queue()

        def factory() -> Collect:
            collector = Collect()
            collectors.put_nowait(collector)
            return collector

        async with stacks(*loopback()) as (server_stack, client_stack):
            await server_stack.create_server(factory, ECHO)
            client_stack.add_route(ECHO, server_stack.endpoints[0])
            transport, _ = await client_stack.create_connection(asyncio.Protocol, ECHO)
            transport.writelines([b"one ", b"two ", b"three"])
            transport.write_eof()
            assert transport.can_write_eof()
            assert await (await collectors.get()).done == b"one two three"
            transport.close()

    run(main())


# --- migration -----------------------------------------------------------------------------


def test_migration_in_the_middle_of_a_transfer_sal_mig_4() -> None:
    """The client moves its end from 127.0.0.1 to 127.0.0.2 while sending 3 MB."""

    async def main() -> None:
        async with stacks([("127.0.0.1", 0)], [("127.0.0.1", 0), ("127.0.0.2", 0)]) as (
            server_stack,
            client_stack,
        ):
            peers: list[asyncio.StreamWriter] = []

            async def digest_and_keep(
                reader: asyncio.StreamReader, writer: asyncio.StreamWriter
            ) -> None:
                peers.append(writer)
                await digest_server(reader, writer)

            await start_server(digest_and_keep, ECHO, stack=server_stack)
            client_stack.add_route(ECHO, server_stack.endpoints[0])
            reader, writer = await open_connection(ECHO, stack=client_stack)
            old, new = client_stack.endpoints
            assert writer.get_extra_info("sockname") == ("127.0.0.1", old.port)
            data = payload(3 << 20)
            half = len(data) // 2
            for offset in range(0, half, 65536):
                writer.write(data[offset : offset + 65536])
                await writer.drain()
            client_stack.migrate(writer, ("127.0.0.2", new.port))
            await send_all(writer, data[half:])
            answer = await reader.readexactly(40)
            assert int.from_bytes(answer[:8], "big") == len(data)
            assert answer[8:] == hashlib.sha256(data).digest()
            assert writer.get_extra_info("sockname") == ("127.0.0.2", new.port)
            assert peers[0].get_extra_info("peername") == ("127.0.0.2", new.port)
            writer.close()

    run(main())


def test_removing_an_interface_moves_its_flows_sal_tbl_23() -> None:
    """The server gives up the endpoint its flow uses; the flow follows it elsewhere."""

    async def main() -> None:
        async with stacks([("127.0.0.1", 0), ("127.0.0.2", 0)], [("127.0.0.1", 0)]) as (
            server_stack,
            client_stack,
        ):
            await start_server(echo, ECHO, stack=server_stack)
            first, second = server_stack.endpoints
            client_stack.add_route(ECHO, first)
            reader, writer = await open_connection(ECHO, stack=client_stack)
            writer.write(b"before")
            assert await reader.readexactly(6) == b"before"
            server_stack.remove_interface(first)
            data = payload(1 << 20)
            sending = asyncio.create_task(send_all(writer, data))
            assert await reader.readexactly(len(data)) == data
            await sending
            assert writer.get_extra_info("peername") == ("127.0.0.2", second.port)
            writer.close()

    run(main())


# --- datagrams ---------------------------------------------------------------------------


def test_connected_datagram_flow_sal_dgram_9() -> None:
    async def main() -> None:
        async with stacks(*loopback()) as (server_stack, client_stack):
            endpoint = await server_stack.bind_datagram(ECHO)
            client_stack.add_route(ECHO, server_stack.endpoints[0])
            connection = await open_datagram_connection(ECHO, stack=client_stack)
            connection.send(b"first")
            served = await endpoint.accept()
            assert await served.recv() == b"first"
            for message in (b"", b"second", b"x" * 1000):
                served.send(message)
                assert await connection.recv() == message  # whole, one by one
            served.close()
            with pytest.raises(EOFError):
                await connection.recv()
            connection.close()
            with pytest.raises(ConnectionAbortedError):
                await connection.recv()
            endpoint.close()

    run(main())


def test_unconnected_datagrams_and_replies_sal_dgram_6_sal_dgram_7() -> None:
    async def main() -> None:
        async with stacks(*loopback()) as (server_stack, client_stack):
            server = await server_stack.bind_datagram(ECHO)
            client = await client_stack.bind_datagram("client.example")
            client_stack.add_route(ECHO, server_stack.endpoints[0])
            client.sendto(ECHO, b"question")
            request = await server.recvfrom()
            assert request.data == b"question"
            assert request.sender == client_stack.endpoints[0]
            assert request.source_service == service_id_for_name("client.example")  # SAL-DGRAM-3
            server.reply(request, b"answer")
            data, sender, source_service = await client.recvfrom()
            assert (data, sender) == (b"answer", server_stack.endpoints[0])
            assert source_service == service_id_for_name(ECHO)  # SAL-DGRAM-8
            # Without a source serviceID the reply goes to the destination serviceID (-7).
            client_stack.sendto(ECHO, b"anonymous")
            request = await server.recvfrom()
            assert request.source_service is None
            server.close()
            client.close()
            with pytest.raises(ConnectionAbortedError):
                await client.recvfrom()

    run(main())


def test_datagrams_through_the_resolver() -> None:
    async def main() -> None:
        resolver = StaticResolver(clock=time.time)
        async with stacks(*loopback(), resolver=resolver) as (server_stack, client_stack):
            server = await server_stack.bind_datagram(ECHO)
            await server_stack.registered()
            client_stack.sendto(ECHO, b"parked, then sent")  # waits on the DELAY rule
            assert (await server.recvfrom()).data == b"parked, then sent"

    run(main())


# --- IPv6 and routers ------------------------------------------------------------------------


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6_streams_and_datagrams() -> None:
    async def main() -> None:
        resolver = StaticResolver(clock=time.time)
        six = [("::1", 0)]
        async with stacks(six, six, resolver=resolver) as (server_stack, client_stack):
            await start_server(echo, ECHO, stack=server_stack)
            datagrams = await server_stack.bind_datagram("dgram.example")
            await server_stack.registered()
            reader, writer = await open_connection(ECHO, stack=client_stack)
            writer.write(b"over IPv6")
            assert await reader.readexactly(9) == b"over IPv6"
            assert writer.get_extra_info("peername") == ("::1", server_stack.endpoints[0].port)
            client_stack.sendto("dgram.example", b"v6 datagram")
            request = await datagrams.recvfrom()
            assert str(request.sender.address) == "::1"
            writer.close()

    run(main())


def test_default_route_through_a_service_router_sal_tbl_17() -> None:
    async def main() -> None:
        async with stacks(*loopback(2)) as (server_stack, client_stack):
            router = await SalStack.start([("127.0.0.1", 0)], config=HostConfig(router=True))
            try:
                await start_server(echo, ECHO, stack=server_stack)
                router.add_route(ECHO, server_stack.endpoints[0])
                client_stack.add_default_route(router.endpoints[0])
                reader, writer = await open_connection(ECHO, stack=client_stack)
                writer.write(b"via the router")
                assert await reader.readexactly(14) == b"via the router"
                # The SYN-ACK came from the server itself (SAL-FWD-1, SAL-FWD-10).
                assert writer.get_extra_info("peername")[1] == server_stack.endpoints[0].port
                assert router.host.activity["forwarded"] == 1
                writer.close()
            finally:
                router.close()

    run(main())


def test_cancelled_connect_leaves_no_flow() -> None:
    async def main() -> None:
        async with stacks(*loopback(1)) as (stack,):
            silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # never answers
            silent.bind(("127.0.0.1", 0))
            try:
                stack.add_route(ECHO, silent.getsockname())
                attempt = asyncio.create_task(open_connection(ECHO, stack=stack))
                await asyncio.sleep(0.05)
                attempt.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await attempt
                assert not stack.host.flows
            finally:
                silent.close()

    run(main())


# --- segmentation offload (UDP_SEGMENT / UDP_GRO) ------------------------------------------


def offload_available() -> bool:
    """Whether this kernel batches UDP datagrams: both socket options and one segmented send."""
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b,
    ):
        try:
            b.bind(("127.0.0.1", 0))
            b.setsockopt(socket.SOL_UDP, aio.UDP_GRO, 1)
            size = (100).to_bytes(2, sys.byteorder)
            a.sendmsg([bytes(200)], [(socket.SOL_UDP, aio.UDP_SEGMENT, size)], 0, b.getsockname())
        except (OSError, AttributeError):
            return False
    return True


needs_offload = pytest.mark.skipif(
    not offload_available(), reason="the kernel does not batch UDP (UDP_SEGMENT, UDP_GRO)"
)


@needs_offload
def test_a_burst_leaves_in_segmented_sends_and_arrives_whole() -> None:
    server_stack, client_stack, _ = run(transfer(segmentation=True))
    assert client_stack.counters["segmented_sends"] > 0
    assert server_stack.counters["coalesced_reads"] > 0
    assert not client_stack.counters["segmentation_refused"]


def test_without_segmentation_every_datagram_goes_alone() -> None:
    server_stack, client_stack, _ = run(transfer(segmentation=False))
    for stack in (server_stack, client_stack):
        assert not stack.counters["segmented_sends"]
        assert not stack.counters["coalesced_reads"]


@needs_offload
def test_a_segmented_send_puts_the_same_datagrams_on_the_wire() -> None:
    """Runs break at another destination and after a shorter datagram; the order is kept."""

    async def main() -> None:
        async with stacks(*loopback(1)) as (stack,):
            plain = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
            try:
                for sock in plain:
                    sock.bind(("127.0.0.1", 0))
                    sock.settimeout(5)
                first, second = (aio.endpoint_of(*sock.getsockname()) for sock in plain)
                interface = next(iter(stack._interfaces.values()))
                sent = [
                    (bytes([1]) * 300, first),
                    (bytes([2]) * 300, first),
                    (bytes([3]) * 120, first),  # shorter: ends the run
                    (bytes([4]) * 300, first),
                    (bytes([5]) * 300, second),  # another destination
                    (bytes([6]) * 300, second),
                    (bytes([7]) * 400, second),  # longer than the run's size
                ]
                for data, destination in sent:
                    interface.send(data, destination)
                interface.flush()
                for sock, destination in zip(plain, (first, second), strict=True):
                    expected = [data for data, to in sent if to == destination]
                    assert [sock.recv(65536) for _ in expected] == expected
                # [1, 2, 3] and [5, 6] leave segmented; 4 and 7 alone
                assert stack.counters["segmented_sends"] == 2
            finally:
                for sock in plain:
                    sock.close()

    run(main())


@needs_offload
def test_a_run_stops_at_the_size_of_one_ip_datagram() -> None:
    """60 datagrams of 1,300 octets (78,000) leave in two sends: 50 (65,000 octets), then 10."""

    async def main() -> None:
        async with stacks(*loopback(1)) as (stack,):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as plain:
                plain.bind(("127.0.0.1", 0))
                plain.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
                plain.settimeout(5)
                destination = aio.endpoint_of(*plain.getsockname())
                interface = next(iter(stack._interfaces.values()))
                sent = [bytes([n]) * 1300 for n in range(60)]
                for data in sent:
                    interface.send(data, destination)
                interface.flush()
                assert [plain.recv(65536) for _ in sent] == sent
                assert stack.counters["segmented_sends"] == 2
                assert not stack.counters["send_errors"]

    run(main())


@needs_offload
def test_a_path_that_cannot_segment_falls_back_and_loses_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*args: object) -> int:
        raise OSError(errno.EIO, "no segmentation offload on this path")

    async def main() -> tuple[SalStack, SalStack, int]:
        original = SalStack.start

        async def start(*args: Any, **kwargs: Any) -> SalStack:
            stack = await original(*args, **kwargs)
            for interface in stack._interfaces.values():
                interface.sock = RefusingSocket(interface.sock, refuse)
            return stack

        monkeypatch.setattr(SalStack, "start", start)
        return await transfer(segmentation=True, size=256 << 10)

    _, client_stack, retransmitted = run(main())
    assert client_stack.counters["segmentation_refused"] == 1
    assert not client_stack.counters["segmented_sends"]
    assert retransmitted == 0  # the refused run went out datagram by datagram at once


@needs_offload
def test_a_host_that_stopped_segmenting_still_cuts_apart_what_it_receives() -> None:
    """The client no longer segments its own sends; the echo server's runs still arrive."""

    async def main() -> None:
        async with stacks(*loopback()) as (server_stack, client_stack):
            for interface in client_stack._interfaces.values():
                interface.segmenting = False  # as after a refused run (the test above)
            await start_server(echo, ECHO, stack=server_stack)
            client_stack.add_route(ECHO, server_stack.endpoints[0])
            reader, writer = await open_connection(ECHO, stack=client_stack)
            data = payload(256 << 10)
            await send_all(writer, data)
            assert await reader.readexactly(len(data)) == data
            writer.close()
            await writer.wait_closed()
            assert server_stack.counters["segmented_sends"] > 0
            assert client_stack.counters["coalesced_reads"] > 0
            assert not client_stack.counters["segmented_sends"]

    run(main())


class RefusingSocket:
    """A socket whose ``sendmsg`` fails as a path without segmentation offload does."""

    def __init__(self, sock: socket.socket, sendmsg: Any) -> None:
        self._sock = sock
        self.sendmsg = sendmsg

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)
