"""A blocking, socket-like interface to the SAL, for threads and scripts.

Theory of operation.  A :class:`BlockingStack` runs one
:class:`~ref.sal.aio.SalStack` on an event loop of its own, in a daemon
thread.  A :class:`ServalSocket` is a handle on that stack: each blocking
call builds a coroutine over the asyncio interface (``open_connection``,
``start_server``, ``bind_datagram``, ...), hands it to the loop with
:func:`asyncio.run_coroutine_threadsafe` and waits for the result, at most
the socket's timeout.  Nothing here speaks the protocol: the errors are those
of ``ref.sal.aio`` (:class:`~ref.sal.aio.ServiceUnreachable`,
``ConnectionRefusedError``, ``ConnectionResetError``, ``TimeoutError``, ...),
and a call that runs out of time raises ``TimeoutError`` as a socket does.

Services are names (``"echo.example"``, ``"name@key"``) or 32-byte
serviceIDs.  A stream socket binds with :meth:`ServalSocket.bind` and
:meth:`ServalSocket.listen` (the listener, registered with the stack's
resolver), or connects; a datagram socket binds to receive unconnected
datagrams, answers them by passing what :meth:`ServalSocket.recvfrom`
returned to :meth:`ServalSocket.sendto`, or connects for a datagram flow.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, Literal, TypeVar, cast

from ref.sal.aio import (
    Address,
    Datagram,
    DatagramConnection,
    DatagramEndpoint,
    Log,
    SalServer,
    SalStack,
    ServiceName,
    service_id_of,
)
from ref.sal.host import HostConfig
from ref.sal.resolver import Resolver
from ref.sal.table import Rule
from ref.wire.errors import LocalProtocolError
from ref.wire.sal import Endpoint

__all__ = ["BlockingStack", "ServalSocket", "default_stack"]

T = TypeVar("T")
Kind = Literal["stream", "datagram"]


class BlockingStack:
    """A :class:`SalStack` on a background thread with its own event loop."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, thread: threading.Thread, stack: SalStack
    ) -> None:
        self.loop = loop
        self.stack = stack
        self._thread = thread
        self._closed = False

    @classmethod
    def start(
        cls,
        interfaces: Sequence[Address] = (("127.0.0.1", 0),),
        *,
        resolver: Resolver | None = None,
        config: HostConfig | None = None,
        rules: Iterable[Rule] = (),
        log: Log | None = None,
    ) -> BlockingStack:
        """Start the loop thread and a stack on it (see :meth:`SalStack.start`)."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="serval-stack", daemon=True)
        thread.start()
        starting = SalStack.start(
            interfaces, resolver=resolver, config=config, rules=rules, log=log
        )
        try:
            stack = asyncio.run_coroutine_threadsafe(starting, loop).result()
        except BaseException:
            _stop(loop, thread)
            raise
        return cls(loop, thread, stack)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def endpoints(self) -> list[Endpoint]:
        return self.call(_value(lambda: self.stack.endpoints))

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coroutine`` on the stack's loop and wait for its result.

        After ``timeout`` seconds the coroutine is cancelled and ``TimeoutError``
        raised.
        """
        if self._closed:
            coroutine.close()
            raise LocalProtocolError("the stack is closed")
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            if future.cancel() or not future.done():
                raise TimeoutError("timed out") from None
            return future.result()  # it finished just then

    def add_route(
        self, service: ServiceName, endpoint: Address, *, priority: int = 0, weight: int = 1
    ) -> Rule:
        """A FORWARD rule (see :meth:`SalStack.add_route`)."""
        add = self.stack.add_route
        return self.call(_value(lambda: add(service, endpoint, priority=priority, weight=weight)))

    def add_default_route(self, router: Address, *, priority: int = 0, weight: int = 1) -> Rule:
        """A default FORWARD rule towards a service router (SAL-TBL-17)."""
        add = self.stack.add_default_route
        return self.call(_value(lambda: add(router, priority=priority, weight=weight)))

    def registered(self, timeout: float | None = None) -> None:
        """Wait until the registrations asked so far have been tried (see ``SalStack``)."""
        self.call(self.stack.registered(), timeout)

    def close(self) -> None:
        """Close the stack (aborting its flows) and stop its thread."""
        if self._closed:
            return
        self.call(self._shut_down())
        self._closed = True
        _stop(self.loop, self._thread)

    def __enter__(self) -> BlockingStack:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def _shut_down(self) -> None:
        self.stack.close()
        await self.stack.wait_closed()
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)


_default: BlockingStack | None = None
_default_lock = threading.Lock()


def default_stack() -> BlockingStack:
    """The process's shared stack on 127.0.0.1, started at first use, without resolver."""
    global _default
    with _default_lock:
        if _default is None or _default.closed:
            _default = BlockingStack.start()
        return _default


class ServalSocket:
    """A socket for one SAL flow or listener: ``kind`` "stream" or "datagram"."""

    def __init__(self, kind: Kind = "stream", *, stack: BlockingStack | None = None) -> None:
        if kind not in ("stream", "datagram"):
            raise LocalProtocolError(f'a socket is "stream" or "datagram", not {kind!r}')
        self.kind = kind
        self.stack = stack or default_stack()
        self._timeout: float | None = None
        self._service: bytes | None = None  # bound serviceID
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._server: SalServer | None = None
        self._backlog: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] | None
        self._backlog = None
        self._endpoint: DatagramEndpoint | None = None
        self._connection: DatagramConnection | None = None
        self._closed = False

    # --- options ---------------------------------------------------------------------------

    def settimeout(self, timeout: float | None) -> None:
        """Seconds a blocking call may take (None: no limit), then ``TimeoutError``."""
        if timeout is not None and timeout < 0:
            raise ValueError("a timeout is None or a number >= 0")
        self._timeout = timeout

    def gettimeout(self) -> float | None:
        return self._timeout

    # --- binding and connecting ---------------------------------------------------------------

    def bind(self, service: ServiceName) -> None:
        """Name this socket: a datagram socket starts receiving, a stream socket listens
        on :meth:`listen` and names itself as the source of the flows it opens."""
        self._check_open()
        if self._service is not None:
            raise LocalProtocolError("the socket is bound already")
        service_id = service_id_of(service)
        if self.kind == "datagram":
            self._endpoint = self._call(self.stack.stack.bind_datagram(service_id))
        self._service = service_id

    def listen(self, backlog: int = 16) -> None:
        """Bind the listener (SAL-TBL-14); at most ``backlog`` flows wait for accept()."""
        self._check_open()
        if self.kind != "stream" or self._service is None or self._server is not None:
            raise LocalProtocolError("listen() needs a bound stream socket")
        self._server = self._call(self._listen(self._service, max(1, backlog)))

    def accept(self) -> tuple[ServalSocket, tuple[str, int]]:
        """The next flow opened to this socket's service: a connected socket, and the
        peer's address and port.  A bound datagram socket accepts datagram flows."""
        accepted = ServalSocket(self.kind, stack=self.stack)
        accepted._service = self._service
        if self._endpoint is not None:
            accepted._connection = self._call(self._endpoint.accept())
        elif self._backlog is not None:
            accepted._reader, accepted._writer = self._call(self._backlog.get())
        else:
            raise LocalProtocolError("accept() needs a listening or bound datagram socket")
        return accepted, accepted.getpeername()

    def connect(self, service: ServiceName) -> None:
        """Open a flow to ``service`` (Section 5.8): a stream or a datagram flow."""
        self._check_open()
        if self._writer is not None or self._connection is not None:
            raise LocalProtocolError("the socket is connected already")
        stack = self.stack.stack
        if self.kind == "stream":
            opening = stack.open_connection(service, source_service=self._service)
            self._reader, self._writer = self._call(opening)
        else:
            opening_flow = stack.open_datagram_connection(service, source_service=self._service)
            self._connection = self._call(opening_flow)

    # --- data ------------------------------------------------------------------------------------

    def send(self, data: bytes) -> int:
        """Send on the connected flow; returns the octets taken (all of them)."""
        self.sendall(data)
        return len(data)

    def sendall(self, data: bytes) -> None:
        if self._writer is not None:
            self._call(_write(self._writer, data))
        elif self._connection is not None:
            connection = self._connection
            self._call(_value(lambda: connection.send(data)))
        else:
            raise LocalProtocolError("the socket is not connected")

    def recv(self, bufsize: int) -> bytes:
        """Up to ``bufsize`` octets of the stream (b"" at its end), or the next message.

        A datagram flow raises ``EOFError`` once the peer has closed it.
        """
        if self._reader is not None:
            return self._call(self._reader.read(bufsize))
        if self._connection is not None:
            return self._call(self._connection.recv())[:bufsize]
        return self.recvfrom(bufsize)[0]

    def sendto(self, data: bytes, address: ServiceName | Datagram) -> None:
        """Send an unconnected datagram to a service, or answer a received one.

        ``address`` is a service, or the second item :meth:`recvfrom` returned
        (the answer goes straight back, SAL-DGRAM-7).
        """
        self._check_open()
        if self.kind != "datagram":
            raise LocalProtocolError("sendto() needs a datagram socket")
        endpoint, stack = self._endpoint, self.stack.stack
        if isinstance(address, Datagram):
            if endpoint is None:
                raise LocalProtocolError("only a bound socket receives datagrams to answer")
            self._call(_value(lambda: endpoint.reply(address, data)))
            return
        source = self._service
        self._call(_value(lambda: stack.sendto(address, data, source_service=source)))

    def recvfrom(self, bufsize: int) -> tuple[bytes, Datagram]:
        """The next unconnected datagram: its first ``bufsize`` octets, and the datagram
        (``data``, ``sender``, ``source_service``) to answer with :meth:`sendto`."""
        endpoint = self._endpoint
        if endpoint is None:
            raise LocalProtocolError("recvfrom() needs a bound datagram socket")
        datagram = self._call(endpoint.recvfrom())
        return datagram.data[:bufsize], datagram

    # --- names and closing ----------------------------------------------------------------------

    def getpeername(self) -> tuple[str, int]:
        if self._writer is not None:
            return cast(tuple[str, int], self._writer.get_extra_info("peername"))
        if self._connection is not None and self._connection.peer is not None:
            peer = self._connection.peer
            return str(peer.address), peer.port
        raise LocalProtocolError("the socket is not connected")

    def getsockname(self) -> tuple[str, int]:
        if self._writer is not None:
            return cast(tuple[str, int], self._writer.get_extra_info("sockname"))
        if self._connection is not None and self._connection.local is not None:
            local = self._connection.local
            return str(local.address), local.port
        first = self.stack.endpoints[0]
        return str(first.address), first.port

    def close(self) -> None:
        """Close the flow (its FIN follows the data sent) or the listener."""
        if self._closed:
            return
        self._closed = True
        if not self.stack.closed:
            self.stack.call(self._close())

    def __enter__(self) -> ServalSocket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- on the loop ---------------------------------------------------------------------------

    async def _listen(self, service_id: bytes, backlog: int) -> SalServer:
        waiting: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
        waiting = asyncio.Queue(backlog)

        def arrived(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                waiting.put_nowait((reader, writer))
            except asyncio.QueueFull:
                writer.transport.abort()

        self._backlog = waiting
        return await self.stack.stack.start_server(arrived, service_id)

    async def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._connection is not None:
            self._connection.close()
        if self._endpoint is not None:
            self._endpoint.close()
        if self._server is not None:
            self._server.close()
            while self._backlog is not None and not self._backlog.empty():
                _, writer = self._backlog.get_nowait()
                writer.transport.abort()
            await self._server.wait_closed()

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.stack.call(coroutine, self._timeout)

    def _check_open(self) -> None:
        if self._closed:
            raise LocalProtocolError("the socket is closed")


async def _value(function: Callable[[], T]) -> T:
    """Run a plain call on the loop thread (the stack's objects live there)."""
    return function()


async def _write(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()


def _stop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.close()
