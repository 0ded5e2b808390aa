"""The blocking socket-like interface (ref.sal.sockets) on real loopback sockets.

Each stack runs its own event loop on a background thread; servers run in
threads of the test, as a blocking program would.  Timeouts only guard
against hangs; no assertion depends on timing.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from ref.sal import sockets
from ref.sal.aio import ServiceUnreachable
from ref.sal.resolver import StaticResolver
from ref.sal.sockets import BlockingStack, ServalSocket
from ref.wire.errors import LocalProtocolError
from ref.wire.ids import service_id_for_name

ECHO = "echo.example"
GUARD = 10.0  # seconds: a blocking call that takes longer has hung


@pytest.fixture
def pair() -> Iterator[tuple[BlockingStack, BlockingStack]]:
    resolver = StaticResolver(clock=time.time)
    server = BlockingStack.start([("127.0.0.1", 0)], resolver=resolver)
    client = BlockingStack.start([("127.0.0.1", 0)], resolver=resolver)
    try:
        yield server, client
    finally:
        client.close()
        server.close()


def in_thread(work: Callable[[], None]) -> Callable[[], None]:
    """Run ``work`` in a thread; the returned join() re-raises what it raised."""
    failures: list[BaseException] = []

    def target() -> None:
        try:
            work()
        except BaseException as error:
            failures.append(error)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()

    def join() -> None:
        thread.join(GUARD)
        assert not thread.is_alive()
        if failures:
            raise failures[0]

    return join


def serve_echo(listener: ServalSocket, connections: int) -> None:
    for _ in range(connections):
        connection, _ = listener.accept()
        with connection:
            while data := connection.recv(65536):
                connection.sendall(data)


def test_blocking_echo_server_thread_and_client(pair: tuple[BlockingStack, BlockingStack]) -> None:
    server_stack, client_stack = pair
    listener = ServalSocket("stream", stack=server_stack)
    listener.settimeout(GUARD)
    listener.bind(ECHO)
    listener.listen()
    server_stack.registered(GUARD)
    join = in_thread(lambda: serve_echo(listener, 2))
    data = hashlib.sha256(b"blocking").digest() * 20000  # 640 kB
    for _ in range(2):
        with ServalSocket("stream", stack=client_stack) as client:
            client.settimeout(GUARD)
            client.connect(ECHO)
            assert client.getpeername() == ("127.0.0.1", server_stack.endpoints[0].port)
            sender = in_thread(lambda: client.sendall(data))
            received = bytearray()
            while len(received) < len(data):
                chunk = client.recv(1 << 20)
                assert chunk
                received += chunk
            sender()
            assert received == data
    join()
    listener.close()


def test_accepted_socket_reports_its_peer(pair: tuple[BlockingStack, BlockingStack]) -> None:
    server_stack, client_stack = pair
    with ServalSocket("stream", stack=server_stack) as listener:
        listener.settimeout(GUARD)
        listener.bind(ECHO)
        listener.listen(1)
        server_stack.registered(GUARD)
        with ServalSocket("stream", stack=client_stack) as client:
            client.settimeout(GUARD)
            client.connect(ECHO)
            connection, peer = listener.accept()
            assert peer == client.getsockname()
            client.sendall(b"ping")
            assert connection.recv(4) == b"ping"
            connection.close()
            assert client.recv(10) == b""  # the server's FIN


def test_errors_are_the_asyncio_ones(pair: tuple[BlockingStack, BlockingStack]) -> None:
    server_stack, client_stack = pair
    with ServalSocket("stream", stack=client_stack) as client:
        client.settimeout(GUARD)
        with pytest.raises(ServiceUnreachable):
            client.connect("nobody.example")
    client_stack.add_route("refused.example", server_stack.endpoints[0])
    with ServalSocket("stream", stack=client_stack) as client:
        client.settimeout(GUARD)
        with pytest.raises(ConnectionRefusedError):
            client.connect("refused.example")
    with ServalSocket("stream", stack=client_stack) as client, pytest.raises(LocalProtocolError):
        client.recv(1)


def test_timeout_raises_timeout_error(pair: tuple[BlockingStack, BlockingStack]) -> None:
    server_stack, _ = pair
    with ServalSocket("stream", stack=server_stack) as listener:
        listener.bind(ECHO)
        listener.listen()
        listener.settimeout(0.05)
        with pytest.raises(TimeoutError):
            listener.accept()  # nobody connects


def test_unconnected_datagrams_and_answers(pair: tuple[BlockingStack, BlockingStack]) -> None:
    server_stack, client_stack = pair
    with (
        ServalSocket("datagram", stack=server_stack) as server,
        ServalSocket("datagram", stack=client_stack) as client,
    ):
        server.settimeout(GUARD)
        client.settimeout(GUARD)
        server.bind("time.example")
        client.bind("asker.example")
        server_stack.registered(GUARD)
        client.sendto(b"what time is it?", "time.example")
        data, request = server.recvfrom(100)
        assert data == b"what time is it?"
        assert request.source_service == service_id_for_name("asker.example")
        server.sendto(b"time to test", request)
        data, answer = client.recvfrom(4)
        assert data == b"time"  # truncated to bufsize
        assert answer.source_service == service_id_for_name("time.example")


def test_connected_datagram_socket(pair: tuple[BlockingStack, BlockingStack]) -> None:
    server_stack, client_stack = pair
    with (
        ServalSocket("datagram", stack=server_stack) as server,
        ServalSocket("datagram", stack=client_stack) as client,
    ):
        server.settimeout(GUARD)
        client.settimeout(GUARD)
        server.bind("flow.example")
        server_stack.registered(GUARD)
        client.connect("flow.example")
        assert client.send(b"one message") == 11
        assert client.getpeername() == ("127.0.0.1", server_stack.endpoints[0].port)
        flow, peer = server.accept()
        assert peer == client.getsockname()
        flow.settimeout(GUARD)
        assert flow.recv(100) == b"one message"
        flow.send(b"")  # an empty message is a message (Section 5.14.1)
        assert client.recv(100) == b""
        flow.close()
        with pytest.raises(EOFError):
            client.recv(100)


def test_socket_kind_is_checked() -> None:
    with pytest.raises(LocalProtocolError):
        ServalSocket("raw", stack=None)  # type: ignore[arg-type]


def test_sockets_without_a_stack_share_the_default_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sockets, "_default", None)
    try:
        with ServalSocket("datagram") as server, ServalSocket("datagram") as client:
            assert server.stack is client.stack is sockets.default_stack()
            server.settimeout(GUARD)
            server.bind("local.example")
            client.sendto(b"same host", "local.example")  # its own DEMUX rule
            assert server.recvfrom(100)[0] == b"same host"
    finally:
        sockets.default_stack().close()
