"""Run a SAL host core on asyncio: UDP sockets, one timer, and the application interface.

Theory of operation.  A :class:`SalStack` owns one :class:`~ref.sal.host.Host`
core and one non-blocking UDP socket per interface (IPv4 or IPv6).  The
sockets are bound first and their bound endpoints become the core's
interfaces.  Every input reaches the core in one of three ways: a batch of
datagrams read from a socket, the stack's single loop timer, or an
application call.  After a batch of datagrams and after the timer, the stack
*services* the core once: it hands every event to its owner (a stream
transport, a datagram flow, a server, a resolver task), sends what the core
produced from the socket of each datagram's source endpoint, and re-arms the
timer for :meth:`Host.get_timer`.  Application calls only mark the core for
service at the next turn of the loop, so a burst of writes costs one service.
The core keeps Unix time (records carry Unix times), converted to the loop's
clock when the timer is armed.  The timer is re-armed only for an earlier
deadline: a timer that fires early finds nothing due and arms again.

Sockets are read with ``loop.add_reader`` rather than a datagram transport so
that one readiness callback takes up to :data:`READ_BATCH` datagrams and the
core is serviced once for all of them (a datagram transport reads one per
turn of the loop).  This needs a selector event loop (the default on Unix).
Where Linux offers UDP segmentation offload, a service's datagrams to one
destination leave in as few ``sendmsg`` calls as the kernel allows and
arrive coalesced, cut apart here (:class:`_Interface`); the datagrams on the
wire are the same.  ``SalStack.start(..., segmentation=False)`` turns it off.

Applications see asyncio's own objects.  A stream flow is an
:class:`asyncio.Transport` (:class:`SalTransport`) under any protocol, so
:func:`open_connection` and :func:`start_server` return the standard
``StreamReader``/``StreamWriter`` pair.  Flow control is real: bytes the
core's send buffer refuses wait in the transport and pause the protocol's
writing above the high-water mark until ``Writable``; a transport whose
reading is paused stops reading from the core, so the SAL window closes and
the peer stops sending.  A flow that ends badly raises the exception of its
:class:`~ref.sal.host.CloseReason` (:func:`error_for`) in the reader, in
``drain`` and in a pending connect.

Resolution and registration (Sections 5.6.3, 5.6.4) run as tasks against the
stack's :class:`~ref.sal.resolver.Resolver`; with a resolver the stack
installs a default DELAY rule (SAL-TBL-18), without one it has none, so an
unknown serviceID is unreachable at once.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import ipaddress
import random
import socket
import sys
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, NamedTuple, cast

from ref.sal.flow import Flow
from ref.sal.host import (
    Accepted,
    Closed,
    CloseReason,
    Connected,
    DatagramReceived,
    EndOfData,
    Host,
    HostConfig,
    MessageReceived,
    Migrated,
    Readable,
    RegisterNeeded,
    ResolveNeeded,
    Unreachable,
    UnregisterNeeded,
    Writable,
)
from ref.sal.resolver import Registration, Resolver
from ref.sal.stream import Buffer
from ref.sal.table import DEFAULT_PREFIX, Prefix, Rule, canonical_endpoint
from ref.wire.constants import DEMUX_PRIORITY, DEMUX_WEIGHT, SERVICE_ID_LENGTH
from ref.wire.errors import ErrorCode, LocalProtocolError, ServalError
from ref.wire.ids import service_id_for
from ref.wire.sal import Endpoint, TransportProtocol

__all__ = [
    "Datagram",
    "DatagramConnection",
    "DatagramEndpoint",
    "SalServer",
    "SalStack",
    "SalTransport",
    "ServiceUnreachable",
    "endpoint_of",
    "error_for",
    "open_connection",
    "open_datagram_connection",
    "service_id_of",
    "start_server",
]

Log = Callable[[dict[str, Any]], None]
ServiceName = str | bytes  # a name ("echo.example", "name@key") or a 32-byte serviceID
Address = tuple[str, int] | Endpoint

READ_BATCH = 128  # datagrams taken per readiness callback before the core is serviced
READ_CHUNK = 1 << 18  # octets taken from the core per read
SOCKET_BUFFER = 4 << 20  # asked for SO_RCVBUF/SO_SNDBUF (the kernel may cap it)
RESOLVE_TIMEOUT = 10.0  # a resolution that takes longer fails as "resolver unreachable"
STREAM_LIMIT = 1 << 16  # StreamReader limit, as asyncio's
HIGH_WATER = 1 << 16  # write buffer limits, as asyncio's
MAX_QUEUED_MESSAGES = 1024  # received datagrams held for the application; more are dropped
MAX_SEND_BACKLOG = 4096  # datagrams held while a socket's send buffer is full
MAX_CACHED_ADDRESSES = 4096  # per socket, each way between socket addresses and Endpoints
UDP_SEGMENT, UDP_GRO = 103, 104  # Linux socket options at SOL_UDP (<linux/udp.h>)
MAX_SEGMENTS = 64  # datagrams per segmented send (the kernel's UDP_MAX_SEGMENTS)
MAX_SEGMENTED_OCTETS = 65_000  # octets per segmented send, within one IP datagram
_MAX_COALESCED = 65_535  # octets one read takes: a datagram, or a coalesced run
_ANCILLARY_SPACE = socket.CMSG_SPACE(4) if hasattr(socket, "CMSG_SPACE") else 0
_NO_OFFLOAD = frozenset({errno.EIO, errno.EINVAL, errno.ENOPROTOOPT, errno.EOPNOTSUPP})
_STREAM, _DATAGRAM = TransportProtocol.STREAM, TransportProtocol.DATAGRAM


class ServiceUnreachable(ServalError, ConnectionError):
    """No rule reaches the service, or its resolution failed (SAL-CONN-2, SAL-TBL-22)."""


def error_for(reason: CloseReason, detail: str = "") -> Exception | None:
    """The exception an application sees for a flow that ended with ``reason``."""
    if reason is CloseReason.CLOSED:
        return None
    text = f"{reason.value}: {detail}" if detail else reason.value
    kind = {
        CloseReason.REFUSED: ConnectionRefusedError,
        CloseReason.RESET: ConnectionResetError,
        CloseReason.TIMEOUT: TimeoutError,
        CloseReason.UNREACHABLE: ServiceUnreachable,
        CloseReason.ABORTED: ConnectionAbortedError,
    }[reason]
    return kind(text)


def service_id_of(service: ServiceName) -> bytes:
    """The serviceID of a name (plain or ``name@key``) or of a 32-byte serviceID."""
    if isinstance(service, str):
        return service_id_for(service)
    if len(service) != SERVICE_ID_LENGTH:
        raise LocalProtocolError(
            f"a serviceID is {SERVICE_ID_LENGTH} bytes, got {len(service)}",
            ErrorCode.BAD_SERVICE_ID,
        )
    return bytes(service)


@functools.lru_cache(maxsize=4096)
@functools.lru_cache(maxsize=4096)
def endpoint_of(host: str, port: int) -> Endpoint:
    """The Endpoint of a socket address; IPv4-mapped IPv6 becomes IPv4."""
    return canonical_endpoint(Endpoint(ipaddress.ip_address(host), port))


def _endpoint(address: Address) -> Endpoint:
    if isinstance(address, Endpoint):
        return canonical_endpoint(address)
    return endpoint_of(address[0], address[1])


def _address_text(endpoint: Endpoint) -> tuple[str, int]:
    return str(endpoint.address), endpoint.port


# --- sockets -------------------------------------------------------------------------------


class _Interface:
    """One bound UDP socket: reads datagrams in batches into the core, sends from it.

    Where the kernel offers UDP segmentation (Linux: UDP_SEGMENT and UDP_GRO),
    consecutive datagrams to the same destination, all of one size but the
    last, leave in one ``sendmsg`` that the kernel cuts into
    datagrams, and datagrams that arrive so coalesced are cut apart again
    here: a stream's burst of full-sized segments costs one system call each
    way instead of one per packet.  The datagrams on the wire are exactly
    those sent one at a time.  Without the offload, or once a batched send
    fails for want of it, each datagram is sent alone.
    """

    def __init__(self, stack: SalStack, sock: socket.socket, endpoint: Endpoint) -> None:
        self.stack = stack
        self.endpoint = endpoint
        self.sock = sock
        self._ipv6 = sock.family == socket.AF_INET6
        self._addresses: dict[Endpoint, tuple[str, int]] = {}
        self._sources: dict[Any, Endpoint] = {}  # socket address -> Endpoint, parsed once
        self._backlog: deque[tuple[bytes, tuple[str, int]]] = deque()
        self._loop = stack.loop
        # Reads honour coalescing for the socket's life once it is asked for; sends may
        # stop segmenting (a path that refuses it) while peers still send runs.
        self.coalescing = stack.segmentation and _enable_coalescing(sock)
        self.segmenting = self.coalescing
        self._run: list[bytes] = []  # datagrams waiting to leave in one segmented send
        self._run_to: tuple[str, int] = ("", 0)
        self._run_size = 0  # the size of every datagram of the run but its last
        self._loop.add_reader(sock.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        stack = self.stack
        receive = stack.host.receive_datagram
        recvfrom, recvmsg = self.sock.recvfrom, self.sock.recvmsg
        coalescing = self.coalescing
        local = self.endpoint
        sources = self._sources
        now = time.time()
        taken = 0
        while taken < READ_BATCH:
            taken += 1
            try:
                if coalescing:
                    data, ancillary, _, address = recvmsg(_MAX_COALESCED, _ANCILLARY_SPACE)
                else:
                    (data, address), ancillary = recvfrom(_MAX_COALESCED), None
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # an ICMP error reported on the socket
                stack.counters["receive_errors"] += 1
                continue
            source = sources.get(address) or self._source(address)
            if source is None:
                continue
            size = _segment_size(ancillary) if ancillary else 0
            if 0 < size < len(data):  # a coalesced run: cut it apart
                stack.counters["coalesced_reads"] += 1
                for start in range(0, len(data), size):
                    receive(data[start : start + size], source=source, local=local, now=now)
                taken += len(data) // size
            else:
                receive(data, source=source, local=local, now=now)
        stack.service()

    def _source(self, address: Any) -> Endpoint | None:
        """The endpoint of a socket address not seen before (None: not an IP address)."""
        try:
            source = endpoint_of(address[0], address[1])
        except ValueError:
            return None
        if len(self._sources) >= MAX_CACHED_ADDRESSES:
            self._sources.clear()
        self._sources[address] = source
        return source

    def send(self, data: bytes, destination: Endpoint) -> None:
        """Send ``data``, or hold it for the segmented send :meth:`flush` makes."""
        address = self._addresses.get(destination)
        if address is None:
            if len(self._addresses) >= MAX_CACHED_ADDRESSES:
                self._addresses.clear()
            address = self._addresses[destination] = self._socket_address(destination)
        if not self.segmenting:
            self._send_one(data, address)
            return
        run, size = self._run, len(data)
        if run and (
            address != self._run_to
            or size > self._run_size
            or len(run[-1]) < self._run_size  # a shorter datagram ends a run
            or len(run) == MAX_SEGMENTS
            or len(run) * self._run_size + size > MAX_SEGMENTED_OCTETS
        ):
            self.flush()
        if not run:
            self._run_to, self._run_size = address, size
        run.append(data)

    def flush(self) -> None:
        """Send the datagrams :meth:`send` holds: one system call for the whole run."""
        run = self._run
        if not run:
            return
        address = self._run_to
        if len(run) == 1 or self._backlog:
            for data in run:
                self._send_one(data, address)
            run.clear()
            return
        segment = [(socket.SOL_UDP, UDP_SEGMENT, self._run_size.to_bytes(2, sys.byteorder))]
        try:
            self.sock.sendmsg([b"".join(run)], segment, 0, address)
            self.stack.counters["segmented_sends"] += 1
        except (BlockingIOError, InterruptedError):
            for data in run:
                self._queue(data, address)
            self._loop.add_writer(self.sock.fileno(), self._on_writable)
        except OSError as error:
            if error.errno in _NO_OFFLOAD:  # the path cannot segment: send them alone
                self.segmenting = False
                self.stack.counters["segmentation_refused"] += 1
                for data in run:
                    self._send_one(data, address)
            else:
                self.stack.counters["send_errors"] += 1
        run.clear()

    def _send_one(self, data: bytes, address: tuple[str, int]) -> None:
        if self._backlog:
            self._queue(data, address)
            return
        try:
            self.sock.sendto(data, address)
        except (BlockingIOError, InterruptedError):
            self._queue(data, address)
            self._loop.add_writer(self.sock.fileno(), self._on_writable)
        except OSError:  # unreachable network, refused: the core's timers deal with it
            self.stack.counters["send_errors"] += 1

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            self._loop.remove_reader(self.sock.fileno())
            self._loop.remove_writer(self.sock.fileno())
            self.sock.close()

    def _queue(self, data: bytes, address: tuple[str, int]) -> None:
        if len(self._backlog) >= MAX_SEND_BACKLOG:
            self.stack.counters["send_dropped"] += 1  # as a full socket buffer would
            return
        self._backlog.append((data, address))

    def _on_writable(self) -> None:
        backlog = self._backlog
        while backlog:
            data, address = backlog[0]
            try:
                self.sock.sendto(data, address)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.stack.counters["send_errors"] += 1
            backlog.popleft()
        self._loop.remove_writer(self.sock.fileno())

    def _socket_address(self, endpoint: Endpoint) -> tuple[str, int]:
        address = endpoint.address
        if self._ipv6 and isinstance(address, ipaddress.IPv4Address):
            return f"::ffff:{address}", endpoint.port  # a dual-stack socket
        return str(address), endpoint.port


def _enable_coalescing(sock: socket.socket) -> bool:
    """Ask the kernel to hand over coalesced datagrams (UDP_GRO); False where it cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        sock.setsockopt(socket.SOL_UDP, UDP_GRO, 1)
    except OSError:
        return False
    return True


def _segment_size(ancillary: list[tuple[int, int, bytes]]) -> int:
    """The size of the datagrams a coalesced read holds (0: one datagram)."""
    for level, kind, value in ancillary:
        if level == socket.SOL_UDP and kind == UDP_GRO:
            return int.from_bytes(value[:4], sys.byteorder)
    return 0


def bind_udp(
    host: str, port: int, *, buffer: int | None = SOCKET_BUFFER
) -> tuple[socket.socket, Endpoint]:
    """A non-blocking UDP socket bound to ``host`` (an IP literal) and ``port`` (0: any).

    An IPv6 wildcard takes IPv4 too; ``buffer`` is asked for as SO_RCVBUF and
    SO_SNDBUF (None: the system's).  Returns the socket and its bound endpoint.
    """
    ip = ipaddress.ip_address(host)
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6 and ip.is_unspecified:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # IPv4 too
        if buffer is not None:
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                sock.setsockopt(socket.SOL_SOCKET, option, buffer)
        sock.bind((host, port))
        sock.setblocking(False)
        bound = sock.getsockname()
    except OSError:
        sock.close()
        raise
    return sock, endpoint_of(bound[0], bound[1])


def _bind(address: Address) -> tuple[socket.socket, Endpoint]:
    host, port = _address_text(address) if isinstance(address, Endpoint) else address
    return bind_udp(host, port)


# --- flow owners ---------------------------------------------------------------------------


class _FlowOwner:
    """What receives a flow's events: a stream transport or a datagram flow."""

    flow_id: int

    def _on_connected(self) -> None:
        pass

    def _on_readable(self) -> None:
        pass

    def _on_writable(self) -> None:
        pass

    def _on_message(self, data: bytes) -> None:
        pass

    def _on_end_of_data(self) -> None:
        pass

    def _on_closed(self, reason: CloseReason, detail: str) -> None:
        pass

    def _on_migrated(self, local: Endpoint, peer: Endpoint) -> None:
        pass


class SalTransport(_FlowOwner, asyncio.Transport):
    """A stream flow as an asyncio transport (Section 5.14.2).

    ``get_extra_info`` knows ``peername`` and ``sockname`` (address and port,
    updated by migrations), ``service`` (the serviceID connected to),
    ``peer_service`` (the client's source serviceID, if it sent one) and
    ``flow_id``.  ``write_eof`` ends the outgoing stream (the SAL's close,
    Section 5.11.1) and reading continues; ``close`` does the same and stops
    delivering data; ``abort`` resets the flow (SAL-CLOSE-7).
    """

    def __init__(self, stack: SalStack, flow_id: int, protocol: asyncio.BaseProtocol) -> None:
        super().__init__()
        self.flow_id = flow_id
        self._stack = stack
        self._host = stack.host
        self._loop = stack.loop
        self._protocol = cast(asyncio.Protocol, protocol)
        self.connected: asyncio.Future[None] = self._loop.create_future()
        self._pending = bytearray()  # octets written that the core's send buffer refused
        self._high, self._low = HIGH_WATER, HIGH_WATER // 4
        self._writing_paused = False
        self._shutdown = False  # write_eof or close: the core closes once _pending is empty
        self._closing = False  # close or abort: nothing more is delivered
        self._reading_paused = False
        self._held = bytearray()  # data taken from the core after the peer finished
        self._peer_finished = False
        self._eof_delivered = False
        self._flow_gone = False  # the core reported the flow closed
        self._lost = False  # connection_lost was called or scheduled

    # --- asyncio.Transport -------------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def is_closing(self) -> bool:
        return self._closing or self._lost

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = cast(asyncio.Protocol, protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def is_reading(self) -> bool:
        return not self._reading_paused and not self._closing

    def pause_reading(self) -> None:
        self._reading_paused = True

    def resume_reading(self) -> None:
        if self._reading_paused:
            self._reading_paused = False
            self._loop.call_soon(self._resume)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low
        self._maybe_pause_writing()
        self._maybe_resume_writing()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low, self._high

    def get_write_buffer_size(self) -> int:
        return len(self._pending)

    def write(self, data: Buffer) -> None:
        if self._shutdown:
            raise RuntimeError("cannot write after write_eof() or close()")
        if not data or self._lost or self._flow_gone:
            return  # as asyncio: writes after the connection is lost are dropped
        if self._pending:
            self._pending += data
        else:
            accepted = self._host.send(self.flow_id, data, time.time())
            if accepted < len(data):
                self._pending += memoryview(data)[accepted:]
            self._stack.kick()
        self._maybe_pause_writing()

    def write_eof(self) -> None:
        if self._shutdown:
            return
        self._shutdown = True
        self._close_when_flushed()

    def can_write_eof(self) -> bool:
        return True

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._held.clear()
        self._on_readable()  # discard what waits in the core, or a blocked peer never ends
        if not self._shutdown:
            self._shutdown = True
            self._close_when_flushed()
        if not self._pending:
            self._lose(None)

    def abort(self) -> None:
        if self._lost and self._flow_gone:
            return
        self._closing = self._shutdown = True
        self._pending.clear()
        self._held.clear()
        if not self._flow_gone:
            self._flow_gone = True
            self._stack.forget(self.flow_id)
            self._host.abort(self.flow_id, time.time())
            self._stack.kick()
        self._lose(None)

    # --- core events ---------------------------------------------------------------------

    def _on_connected(self) -> None:
        self._extra: dict[str, Any] = {"flow_id": self.flow_id}
        flow = self._stack.flow_entry(self.flow_id)
        if flow is not None:  # else it ended at once: its Closed event follows
            server = flow.listener is not None
            self._extra["service"] = flow.local_service if server else flow.peer_service
            self._extra["peer_service"] = flow.peer_service if server else None
            if flow.peer is not None:
                self._on_migrated(flow.local, flow.peer)
        self._protocol.connection_made(self)
        if not self.connected.done():
            self.connected.set_result(None)

    def _on_migrated(self, local: Endpoint, peer: Endpoint) -> None:
        self._extra["sockname"] = _address_text(local)
        self._extra["peername"] = _address_text(peer)

    def _on_readable(self) -> None:
        if not self._closing:
            self._deliver()
            return
        if self._stack.knows_flow(self.flow_id):
            while self._host.read(self.flow_id, READ_CHUNK, now=time.time()):
                pass  # nobody reads any more: keep the window open until the peer's FIN
            self._stack.kick()

    def _on_writable(self) -> None:
        if self._pending and not self._flow_gone:
            accepted = self._host.send(self.flow_id, self._pending, time.time())
            del self._pending[:accepted]
        if not self._pending:
            if self._shutdown:
                self._close_when_flushed()
            if self._closing:
                self._lose(None)
        self._maybe_resume_writing()

    def _on_end_of_data(self) -> None:
        self._take_the_rest()
        self._peer_finished = True
        self._deliver()

    def _on_closed(self, reason: CloseReason, detail: str) -> None:
        self._flow_gone = True
        error = error_for(reason, detail)
        if not self.connected.done():
            self.connected.set_exception(error or ConnectionAbortedError(reason.value))
            return
        if reason is CloseReason.CLOSED:
            self._take_the_rest()
            self._peer_finished = True
            self._deliver()
            return
        self._held.clear()
        self._pending.clear()
        self._lose(error)

    # --- internals -------------------------------------------------------------------------

    def _take_the_rest(self) -> None:
        """After the peer's end, move what the core holds here (the flow may leave the core)."""
        if self._closing:
            return
        try:
            while data := self._host.read(self.flow_id, READ_CHUNK, now=time.time()):
                self._held += data
        except LocalProtocolError:  # the core removed the flow
            pass

    def _deliver(self) -> None:
        """Hand data, then the end of the peer's data, to the protocol while it reads."""
        protocol = self._protocol
        while not self._reading_paused and not self._closing:
            if self._held:
                data = bytes(self._held)
                self._held.clear()
            elif self._peer_finished:
                self._deliver_eof()
                return
            else:
                data = self._host.read(self.flow_id, READ_CHUNK, now=time.time())
                if not data:
                    return
            protocol.data_received(data)

    def _deliver_eof(self) -> None:
        if not self._eof_delivered:
            self._eof_delivered = True
            if not self._protocol.eof_received():
                self.close()
        if self._flow_gone and not self._closing:
            self._lose(None)  # both directions ended: the connection is over

    def _resume(self) -> None:
        if self._lost:
            return
        self._deliver()
        self._stack.kick()  # reading reopened the window: the update goes out

    def _close_when_flushed(self) -> None:
        if self._pending or self._flow_gone:
            return
        self._host.close(self.flow_id, time.time())
        self._stack.kick()

    def _lose(self, error: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._loop.call_soon(self._protocol.connection_lost, error)

    def _maybe_pause_writing(self) -> None:
        if not self._writing_paused and len(self._pending) > self._high:
            self._writing_paused = True
            self._protocol.pause_writing()

    def _maybe_resume_writing(self) -> None:
        if self._writing_paused and len(self._pending) <= self._low:
            self._writing_paused = False
            self._protocol.resume_writing()


class DatagramConnection(_FlowOwner):
    """A connected datagram flow (Section 5.14.1): whole messages to and from one peer.

    :meth:`recv` raises :class:`EOFError` once the peer has closed and every
    message has been taken, the flow's error (:func:`error_for`) if it failed,
    and ``ConnectionAbortedError`` after :meth:`close`.
    """

    def __init__(self, stack: SalStack, flow_id: int) -> None:
        self.flow_id = flow_id
        self._stack = stack
        self._host = stack.host
        self.connected: asyncio.Future[None] = stack.loop.create_future()
        self._messages: deque[bytes] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._error: Exception | None = None
        self._peer_finished = False
        self._closed = False
        self.local: Endpoint | None = None
        self.peer: Endpoint | None = None
        self.dropped = 0  # messages dropped because the application did not take them

    def send(self, data: Buffer) -> None:
        """Send one message (SAL-DGRAM-9); it may be lost, as any datagram."""
        if self._closed or self._error is not None:
            raise self._error or ConnectionAbortedError("the flow is closed")
        self._host.send(self.flow_id, bytes(data), time.time())
        self._stack.kick()

    async def recv(self) -> bytes:
        """The next message."""
        while not self._messages:
            if self._closed:
                raise ConnectionAbortedError("the flow is closed")
            if self._error is not None:
                raise self._error
            if self._peer_finished:
                raise EOFError("the peer closed the flow")
            self._waiter = self._stack.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._messages.popleft()

    def close(self) -> None:
        """Close the flow: the SAL sends its FIN at once (Section 5.14.1)."""
        if self._closed:
            return
        self._closed = True
        if self._error is None and self._stack.knows_flow(self.flow_id):
            self._host.close(self.flow_id, time.time())
            self._stack.kick()
        self._wake()

    async def __aenter__(self) -> DatagramConnection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def _on_connected(self) -> None:
        flow = self._stack.flow_entry(self.flow_id)
        if flow is not None:
            self.local, self.peer = flow.local, flow.peer
        if not self.connected.done():
            self.connected.set_result(None)

    def _on_migrated(self, local: Endpoint, peer: Endpoint) -> None:
        self.local, self.peer = local, peer

    def _on_message(self, data: bytes) -> None:
        if len(self._messages) >= MAX_QUEUED_MESSAGES:
            self.dropped += 1
            return
        self._messages.append(data)
        self._wake()

    def _on_end_of_data(self) -> None:
        self._peer_finished = True
        self._wake()

    def _on_closed(self, reason: CloseReason, detail: str) -> None:
        error = error_for(reason, detail)
        if not self.connected.done():
            self.connected.set_exception(error or ConnectionAbortedError())
            return
        self._peer_finished = True
        if not self._closed:
            self._error = error
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


Flowish = int | asyncio.StreamWriter | SalTransport | DatagramConnection


# --- listeners ---------------------------------------------------------------------------


class _Listening:
    handle: int
    service_id: bytes

    def close(self) -> None:
        raise NotImplementedError

    def _on_accepted(self, event: Accepted) -> None:
        raise NotImplementedError

    def _on_datagram(self, event: DatagramReceived) -> None:
        pass


class SalServer(_Listening):
    """A stream listener bound to a serviceID (Section 5.6.4), as asyncio's ``Server``."""

    def __init__(
        self,
        stack: SalStack,
        handle: int,
        service_id: bytes,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
    ) -> None:
        self.handle = handle
        self.service_id = service_id
        self._stack = stack
        self._factory = protocol_factory
        self._closed: asyncio.Future[None] = stack.loop.create_future()

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._stack.loop

    def is_serving(self) -> bool:
        return not self._closed.done()

    def close(self) -> None:
        """Unbind (SAL-TBL-16) and withdraw the registrations; open connections stay."""
        if self._closed.done():
            return
        self._closed.set_result(None)
        self._stack.unlisten(self.handle)

    async def wait_closed(self) -> None:
        """Wait until the server is closed and its withdrawals have been tried."""
        await asyncio.shield(self._closed)
        await self._stack.settled()

    async def start_serving(self) -> None:
        """Listening starts at bind: nothing to do (asyncio's interface)."""

    async def serve_forever(self) -> None:
        try:
            await asyncio.shield(self._closed)
        except asyncio.CancelledError:
            self.close()
            raise

    async def __aenter__(self) -> SalServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
        await self.wait_closed()

    def _on_accepted(self, event: Accepted) -> None:
        transport = SalTransport(self._stack, event.flow_id, self._factory())
        self._stack.adopt(transport)
        transport._on_connected()


class Datagram(NamedTuple):
    """An unconnected datagram as :meth:`DatagramEndpoint.recvfrom` returns it (SAL-DGRAM-6)."""

    data: bytes
    sender: Endpoint
    source_service: bytes | None


class DatagramEndpoint(_Listening):
    """A datagram listener bound to a serviceID: unconnected datagrams and datagram flows."""

    def __init__(self, stack: SalStack, handle: int, service_id: bytes) -> None:
        self.handle = handle
        self.service_id = service_id
        self._stack = stack
        self._received: deque[Datagram] = deque()
        self._flows: deque[DatagramConnection] = deque()
        self._arrived_at: dict[Endpoint, Endpoint] = {}  # sender -> our endpoint it reached
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self.dropped = 0

    async def recvfrom(self) -> Datagram:
        """The next unconnected datagram: ``(data, sender, source_service)``."""
        while not self._received:
            await self._wait()
        return self._received.popleft()

    async def accept(self) -> DatagramConnection:
        """The next connected datagram flow opened to this serviceID."""
        while not self._flows:
            await self._wait()
        return self._flows.popleft()

    def reply(self, request: Datagram, data: Buffer) -> None:
        """Answer ``request`` directly, without a lookup (SAL-DGRAM-7, SAL-DGRAM-8)."""
        local = self._arrived_at.get(request.sender)
        if local is None:
            local = self._stack.interface_for(request.sender)
        answer = DatagramReceived(
            self.handle, b"", request.sender, local, self.service_id, request.source_service
        )
        self._stack.host.reply(answer, bytes(data), time.time())
        self._stack.kick()

    def sendto(self, service: ServiceName, data: Buffer) -> None:
        """Send an unconnected datagram naming this serviceID as its source (SAL-DGRAM-3)."""
        self._stack.sendto(service, data, source_service=self.service_id)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stack.unlisten(self.handle)
        while self._flows:
            self._flows.popleft().close()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionAbortedError("the endpoint is closed"))

    async def __aenter__(self) -> DatagramEndpoint:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    async def _wait(self) -> None:
        if self._closed:
            raise ConnectionAbortedError("the endpoint is closed")
        self._waiter = self._stack.loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _on_datagram(self, event: DatagramReceived) -> None:
        if len(self._received) >= MAX_QUEUED_MESSAGES:
            self.dropped += 1
            return
        if len(self._arrived_at) >= MAX_QUEUED_MESSAGES:
            self._arrived_at.clear()
        self._arrived_at[event.sender] = event.local
        self._received.append(Datagram(event.data, event.sender, event.source_service))
        self._wake()

    def _on_accepted(self, event: Accepted) -> None:
        connection = DatagramConnection(self._stack, event.flow_id)
        self._stack.adopt(connection)
        connection._on_connected()
        self._flows.append(connection)
        self._wake()


# --- the stack -------------------------------------------------------------------------------


class SalStack:
    """One SAL host core on asyncio, with its sockets, timer, flows and listeners."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        host: Host,
        bound: Iterable[tuple[socket.socket, Endpoint]],
        resolver: Resolver | None,
        log: Log | None,
        segmentation: bool = True,
    ) -> None:
        self.loop = loop
        self.host = host
        self.resolver = resolver
        self.segmentation = segmentation
        self.counters: Counter[str] = Counter()
        self._log = log
        self._interfaces = {endpoint: _Interface(self, sock, endpoint) for sock, endpoint in bound}
        self._flows: dict[int, _FlowOwner] = {}
        self._listeners: dict[int, _Listening] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for = float("inf")
        self._servicing = False
        self._kicked = False
        self._closed = False
        self._resolutions: set[asyncio.Task[None]] = set()
        self._registering: dict[Registration, asyncio.Task[None]] = {}
        self._registration_failures: list[Exception] = []
        self._handlers: dict[type, Callable[[Any], None]] = {
            Connected: self._on_connected,
            Accepted: self._on_accepted,
            Readable: self._on_readable,
            Writable: self._on_writable,
            MessageReceived: self._on_message,
            EndOfData: self._on_end_of_data,
            Closed: self._on_closed,
            Migrated: self._on_migrated,
            DatagramReceived: self._on_datagram,
            ResolveNeeded: self._on_resolve_needed,
            RegisterNeeded: self._on_register_needed,
            UnregisterNeeded: self._on_unregister_needed,
        }

    @classmethod
    async def start(
        cls,
        interfaces: Sequence[Address] = (("127.0.0.1", 0),),
        *,
        resolver: Resolver | None = None,
        config: HostConfig | None = None,
        rules: Iterable[Rule] = (),
        log: Log | None = None,
        segmentation: bool = True,
    ) -> SalStack:
        """Bind a UDP socket per interface (port 0 picks one) and start the core on them.

        With a ``resolver`` the stack installs a default DELAY rule (SAL-TBL-18)
        and registers what it binds (Section 5.6.4); ``rules`` are installed too.
        ``segmentation=False`` sends and reads every datagram alone even where
        the kernel could batch them (:class:`_Interface`).
        """
        if not interfaces:
            raise LocalProtocolError("a stack needs at least one interface")
        bound: list[tuple[socket.socket, Endpoint]] = []
        try:
            for address in interfaces:
                bound.append(_bind(address))
        except OSError:
            for sock, _ in bound:
                sock.close()
            raise
        now = time.time()
        rng = random.SystemRandom()  # SAL-FLOW-2, SAL-CONN-1, SAL-TBL-8
        host = Host([endpoint for _, endpoint in bound], rng=rng, now=now, config=config)
        stack = cls(asyncio.get_running_loop(), host, bound, resolver, log, segmentation)
        if resolver is not None:
            host.table.add(Rule.delay(), now)
        for rule in rules:
            host.table.add(rule, now)
        stack.service()
        return stack

    # --- configuration -------------------------------------------------------------------

    @property
    def endpoints(self) -> list[Endpoint]:
        """The bound local endpoints, in the order given."""
        return list(self.host.interfaces)

    def add_rule(self, rule: Rule) -> Rule:
        installed = self.host.table.add(rule, time.time())
        self.kick()
        return installed

    def add_route(
        self, service: ServiceName, endpoint: Address, *, priority: int = 0, weight: int = 1
    ) -> Rule:
        """A FORWARD rule: SYNs and datagrams for ``service`` go to ``endpoint``."""
        prefix = Prefix(service_id_of(service))
        return self.add_rule(
            Rule.forward(prefix, _endpoint(endpoint), priority=priority, weight=weight)
        )

    def add_default_route(self, router: Address, *, priority: int = 0, weight: int = 1) -> Rule:
        """A default FORWARD rule towards a service router (SAL-TBL-17)."""
        return self.add_rule(
            Rule.forward(DEFAULT_PREFIX, _endpoint(router), priority=priority, weight=weight)
        )

    async def add_interface(self, host: str, port: int = 0) -> Endpoint:
        """Bind a new local endpoint; listeners register it (Section 5.6.4)."""
        self._check_open()
        sock, endpoint = _bind((host, port))
        self._interfaces[endpoint] = _Interface(self, sock, endpoint)
        self.host.add_interface(endpoint, time.time())
        self.kick()
        return endpoint

    def remove_interface(self, address: Address) -> None:
        """Give up a local endpoint: its flows migrate, its registrations are withdrawn."""
        endpoint = _endpoint(address)
        self.host.remove_interface(endpoint, time.time())
        self.service()  # the RSYNs leave from the other endpoints
        interface = self._interfaces.pop(endpoint, None)
        if interface is not None:
            interface.close()

    def migrate(self, flow: Flowish, local: Address) -> None:
        """Move a flow's local end to one of the stack's endpoints (Section 5.10)."""
        self.host.migrate(_flow_id(flow), _endpoint(local), time.time())
        self.kick()

    def interface_for(self, peer: Endpoint) -> Endpoint:
        """The first local endpoint of ``peer``'s address family."""
        for endpoint in self.host.interfaces:
            if endpoint.address.version == peer.address.version:
                return endpoint
        raise LocalProtocolError(f"no IPv{peer.address.version} endpoint to answer {peer}")

    def status(self) -> dict[str, Any]:
        status = self.host.status()
        status["adapter"] = dict(self.counters)
        return status

    # --- streams ---------------------------------------------------------------------------

    async def create_connection(
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        service: ServiceName,
        *,
        local: Address | None = None,
        source_service: ServiceName | None = None,
    ) -> tuple[SalTransport, asyncio.BaseProtocol]:
        """Open a stream flow to ``service`` (Section 5.8) under a protocol, as asyncio's."""
        transport = cast(
            SalTransport,
            await self._connect(
                _STREAM,
                service,
                local,
                source_service,
                lambda flow_id: SalTransport(self, flow_id, protocol_factory()),
            ),
        )
        return transport, transport.get_protocol()

    async def create_server(
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        service: ServiceName,
        *,
        priority: int = DEMUX_PRIORITY,
        weight: int = DEMUX_WEIGHT,
    ) -> SalServer:
        """Bind a stream listener (SAL-TBL-14); each accepted flow gets a new protocol."""
        service_id = service_id_of(service)
        handle = self._listen(service_id, _STREAM, priority, weight)
        server = SalServer(self, handle, service_id, protocol_factory)
        self._listeners[handle] = server
        return server

    async def open_connection(
        self,
        service: ServiceName,
        *,
        local: Address | None = None,
        source_service: ServiceName | None = None,
        limit: int = STREAM_LIMIT,
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """:func:`asyncio.open_connection` for a service."""
        reader = asyncio.StreamReader(limit=limit)
        transport, protocol = await self.create_connection(
            lambda: asyncio.StreamReaderProtocol(reader),
            service,
            local=local,
            source_service=source_service,
        )
        writer = asyncio.StreamWriter(transport, protocol, reader, self.loop)
        return reader, writer

    async def start_server(
        self,
        client_connected_cb: Callable[
            [asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None] | None
        ],
        service: ServiceName,
        *,
        priority: int = DEMUX_PRIORITY,
        weight: int = DEMUX_WEIGHT,
        limit: int = STREAM_LIMIT,
    ) -> SalServer:
        """:func:`asyncio.start_server` for a service: bind, register, serve."""

        def factory() -> asyncio.StreamReaderProtocol:
            reader = asyncio.StreamReader(limit=limit)
            return asyncio.StreamReaderProtocol(reader, client_connected_cb)

        return await self.create_server(factory, service, priority=priority, weight=weight)

    # --- datagrams ---------------------------------------------------------------------------

    async def open_datagram_connection(
        self,
        service: ServiceName,
        *,
        local: Address | None = None,
        source_service: ServiceName | None = None,
    ) -> DatagramConnection:
        """Open a connected datagram flow to ``service`` (Section 5.14.1)."""
        connection = await self._connect(
            _DATAGRAM, service, local, source_service, lambda f: DatagramConnection(self, f)
        )
        return cast(DatagramConnection, connection)

    async def bind_datagram(
        self,
        service: ServiceName,
        *,
        priority: int = DEMUX_PRIORITY,
        weight: int = DEMUX_WEIGHT,
    ) -> DatagramEndpoint:
        """Bind a datagram listener: unconnected datagrams and datagram flows (SAL-DGRAM-6)."""
        service_id = service_id_of(service)
        handle = self._listen(service_id, _DATAGRAM, priority, weight)
        endpoint = DatagramEndpoint(self, handle, service_id)
        self._listeners[handle] = endpoint
        return endpoint

    def sendto(
        self, service: ServiceName, data: Buffer, *, source_service: ServiceName | None = None
    ) -> None:
        """Send an unconnected datagram (SAL-DGRAM-1); ServiceUnreachable if no rule (-2)."""
        self._check_open()
        source = service_id_of(source_service) if source_service is not None else None
        try:
            self.host.sendto(
                service_id_of(service), bytes(data), time.time(), source_service=source
            )
        except Unreachable as error:
            raise ServiceUnreachable(f"{_name(service)}: {error}") from None
        self.kick()

    # --- registrations and closing -------------------------------------------------------------

    async def registered(self) -> None:
        """Wait until every registration and withdrawal asked so far has been tried.

        Raises the first failure since the last call (the resolver's exception).
        """
        await self.settled()
        failures, self._registration_failures = self._registration_failures, []
        if failures:
            raise failures[0]

    async def settled(self) -> None:
        """Wait for the registrations and withdrawals in progress, without raising."""
        self.service()  # the core's requests become tasks
        while self._registering:
            await asyncio.wait(list(self._registering.values()))

    def close(self) -> None:
        """Abort every flow, unbind every listener, close the sockets."""
        if self._closed:
            return
        now = time.time()
        for listener in list(self._listeners.values()):
            listener.close()
        for flow_id in list(self._flows):
            if self.knows_flow(flow_id):
                self.host.abort(flow_id, now)
        self.service()  # the RSTs leave; the flows learn their end
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        for interface in self._interfaces.values():
            interface.close()
        for task in list(self._resolutions):
            task.cancel()

    async def wait_closed(self) -> None:
        """Wait for the withdrawals that :meth:`close` started."""
        await self.settled()

    async def __aenter__(self) -> SalStack:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
        await self.wait_closed()

    # --- servicing the core ---------------------------------------------------------------------

    def service(self) -> None:
        """Hand out the core's events, send its datagrams and re-arm its timer."""
        if self._servicing or self._closed:
            return
        self._servicing = True
        host, handlers = self.host, self._handlers
        try:
            while (event := host.next_event()) is not None:
                try:
                    handlers[type(event)](event)
                except Exception as error:  # an application callback failed
                    self.loop.call_exception_handler(
                        {"message": f"error handling {event}", "exception": error}
                    )
            interfaces = self._interfaces
            for outgoing in host.datagrams_to_send():
                interface = interfaces.get(outgoing.source)
                if interface is None:
                    self.counters["send_errors"] += 1  # an endpoint given up
                else:
                    interface.send(outgoing.data, outgoing.destination)
            for interface in interfaces.values():
                interface.flush()
        finally:
            self._servicing = False
        self._arm(host.get_timer())

    def kick(self) -> None:
        """Service the core at the next turn of the loop (after an application call)."""
        if not self._kicked and not self._closed:
            self._kicked = True
            self.loop.call_soon(self._kicked_service)

    def _kicked_service(self) -> None:
        self._kicked = False
        self.service()

    def _arm(self, deadline: float | None) -> None:
        if deadline is None or deadline >= self._armed_for:
            return  # the armed timer fires first; it re-arms for what is due then
        if self._timer is not None:
            self._timer.cancel()
        self._armed_for = deadline
        delay = max(0.0, deadline - time.time())
        self._timer = self.loop.call_at(self.loop.time() + delay, self._fire)

    def _fire(self) -> None:
        deadline = self._armed_for
        self._timer, self._armed_for = None, float("inf")
        # The loop's clock says the deadline has come even if the wall clock lags it
        # by a fraction of a millisecond: never hand the core a time before it.
        self.host.handle_timer(max(time.time(), deadline))
        self.service()

    # --- flows and listeners (for the objects above) ------------------------------------------

    def adopt(self, owner: _FlowOwner) -> None:
        self._flows[owner.flow_id] = owner

    def forget(self, flow_id: int) -> None:
        self._flows.pop(flow_id, None)

    def flow_entry(self, flow_id: int) -> Flow | None:
        """The core's entry for ``flow_id`` while the application may use it."""
        try:
            return self.host.flow(flow_id)
        except LocalProtocolError:
            return None

    def knows_flow(self, flow_id: int) -> bool:
        return self.flow_entry(flow_id) is not None

    def unlisten(self, handle: int) -> None:
        if self._listeners.pop(handle, None) is not None and not self._closed:
            self.host.close_listener(handle, time.time())
            self.kick()

    def _listen(
        self, service_id: bytes, transport: TransportProtocol, priority: int, weight: int
    ) -> int:
        self._check_open()
        handle = self.host.listen(
            service_id, transport, time.time(), priority=priority, weight=weight
        )
        self.kick()  # the registrations
        return handle

    async def _connect(
        self,
        transport: TransportProtocol,
        service: ServiceName,
        local: Address | None,
        source_service: ServiceName | None,
        make: Callable[[int], SalTransport | DatagramConnection],
    ) -> SalTransport | DatagramConnection:
        self._check_open()
        try:
            flow_id = self.host.connect(
                service_id_of(service),
                transport,
                time.time(),
                source_service=service_id_of(source_service) if source_service else None,
                local=_endpoint(local) if local is not None else None,
            )
        except Unreachable as error:  # SAL-CONN-2
            raise ServiceUnreachable(f"{_name(service)}: {error}") from None
        owner = make(flow_id)
        self._flows[flow_id] = owner
        self.kick()
        try:
            await owner.connected
        except asyncio.CancelledError:
            if self._flows.pop(flow_id, None) is not None and self.knows_flow(flow_id):
                self.host.abort(flow_id, time.time())
                self.kick()
            raise
        except ServiceUnreachable as error:
            raise ServiceUnreachable(f"{_name(service)}: {error}") from None
        return owner

    def _check_open(self) -> None:
        if self._closed:
            raise LocalProtocolError("the stack is closed")

    # --- event handlers ---------------------------------------------------------------------

    def _on_connected(self, event: Connected) -> None:
        owner = self._flows.get(event.flow_id)
        if owner is not None:
            owner._on_connected()

    def _on_accepted(self, event: Accepted) -> None:
        listener = self._listeners.get(event.listener)
        if listener is None:  # closed meanwhile
            self.host.abort(event.flow_id, time.time())
            return
        listener._on_accepted(event)

    def _on_readable(self, event: Readable) -> None:
        owner = self._flows.get(event.flow_id)
        if owner is not None:
            owner._on_readable()

    def _on_writable(self, event: Writable) -> None:
        owner = self._flows.get(event.flow_id)
        if owner is not None:
            owner._on_writable()

    def _on_message(self, event: MessageReceived) -> None:
        owner = self._flows.get(event.flow_id)
        if owner is not None:
            owner._on_message(event.data)

    def _on_end_of_data(self, event: EndOfData) -> None:
        owner = self._flows.get(event.flow_id)
        if owner is not None:
            owner._on_end_of_data()

    def _on_closed(self, event: Closed) -> None:
        owner = self._flows.pop(event.flow_id, None)
        if owner is not None:
            owner._on_closed(event.reason, event.detail)

    def _on_migrated(self, event: Migrated) -> None:
        owner = self._flows.get(event.flow_id)
        if owner is not None:
            owner._on_migrated(event.local, event.peer)

    def _on_datagram(self, event: DatagramReceived) -> None:
        listener = self._listeners.get(event.listener)
        if listener is not None:
            listener._on_datagram(event)

    def _on_resolve_needed(self, event: ResolveNeeded) -> None:
        if self.resolver is None:  # a DELAY rule given without a resolver
            self.host.resolved(event.service_id, None, time.time(), error="no resolver")
            return
        task = self.loop.create_task(self._resolve(event.service_id, self.resolver))
        self._resolutions.add(task)
        task.add_done_callback(self._resolutions.discard)

    def _on_register_needed(self, event: RegisterNeeded) -> None:
        self._registration(event.registration, add=True)

    def _on_unregister_needed(self, event: UnregisterNeeded) -> None:
        self._registration(event.registration, add=False)

    # --- the resolver -----------------------------------------------------------------------------

    async def _resolve(self, service_id: bytes, resolver: Resolver) -> None:
        """Section 5.6.3: the answer goes back to the core, whatever happens."""
        try:
            record = await asyncio.wait_for(resolver.resolve(service_id), RESOLVE_TIMEOUT)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # ResolverUnavailable, a timeout, a broken resolver
            problem = str(error) or type(error).__name__
            self._emit("resolve_failed", service_id=service_id.hex(), error=problem)
            self.host.resolved(
                service_id, None, time.time(), error=f"resolver unreachable: {problem}"
            )
        else:
            self.host.resolved(service_id, record, time.time())
        self.service()

    def _registration(self, registration: Registration, *, add: bool) -> None:
        if self.resolver is None:
            return
        previous = self._registering.get(registration)
        task = self.loop.create_task(self._register(registration, add, previous))
        self._registering[registration] = task

        def done(finished: asyncio.Task[None]) -> None:
            if self._registering.get(registration) is finished:
                del self._registering[registration]

        task.add_done_callback(done)

    async def _register(
        self, registration: Registration, add: bool, previous: asyncio.Task[None] | None
    ) -> None:
        """One registration or withdrawal, after the previous one for the same endpoint."""
        if previous is not None:
            await asyncio.wait([previous])
        resolver = self.resolver
        assert resolver is not None
        try:
            if add:
                await resolver.register(registration)
            else:
                await resolver.unregister(registration)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._registration_failures.append(error)
            self._emit(
                "register_failed" if add else "unregister_failed",
                service_id=registration.service_id.hex(),
                endpoint=f"{registration.endpoint.address}:{registration.endpoint.port}",
                error=str(error) or type(error).__name__,
            )

    def _emit(self, event: str, **fields: Any) -> None:
        if self._log is not None:
            self._log({"event": event, **fields})


def _flow_id(flow: Flowish) -> int:
    if isinstance(flow, int):
        return flow
    if isinstance(flow, asyncio.StreamWriter):
        flow = cast(SalTransport, flow.transport)
    if isinstance(flow, SalTransport | DatagramConnection):
        return flow.flow_id
    raise LocalProtocolError(f"{flow!r} is not a SAL flow")


def _name(service: ServiceName) -> str:
    return service if isinstance(service, str) else service.hex()


# --- asyncio-style module functions ---------------------------------------------------------


async def open_connection(
    service: ServiceName,
    *,
    stack: SalStack,
    local: Address | None = None,
    source_service: ServiceName | None = None,
    limit: int = STREAM_LIMIT,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to a service by name or serviceID: ``(reader, writer)`` as asyncio's.

    Raises :class:`ServiceUnreachable`, ``ConnectionRefusedError`` (an RST,
    Section 5.11.3) or ``TimeoutError`` (SAL-CTRL-16).
    """
    return await stack.open_connection(
        service, local=local, source_service=source_service, limit=limit
    )


async def start_server(
    client_connected_cb: Callable[
        [asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None] | None
    ],
    service: ServiceName,
    *,
    stack: SalStack,
    priority: int = DEMUX_PRIORITY,
    weight: int = DEMUX_WEIGHT,
    limit: int = STREAM_LIMIT,
) -> SalServer:
    """Serve a service by name or serviceID: asyncio's ``start_server`` on the SAL."""
    return await stack.start_server(
        client_connected_cb, service, priority=priority, weight=weight, limit=limit
    )


async def open_datagram_connection(
    service: ServiceName,
    *,
    stack: SalStack,
    local: Address | None = None,
    source_service: ServiceName | None = None,
) -> DatagramConnection:
    """Open a connected datagram flow to a service (Section 5.14.1)."""
    return await stack.open_datagram_connection(service, local=local, source_service=source_service)
