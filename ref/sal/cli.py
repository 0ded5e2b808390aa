"""``serval-cat``: netcat for service names, on the SAL and a resolution service.

Theory of operation.  One :class:`~ref.sal.aio.SalStack` with one local
endpoint and a resolver: the address is the one the route to the resolver
leaves from (so that what a listener registers is reachable and never a
wildcard), or ``--bind``'s.  A client connects by name: its default DELAY
rule (SAL-TBL-18) hands the name to the resolver, the record's endpoints
become FORWARD rules and the SYN leaves by a weighted choice among them
(Section 5.6.3).  A listener binds the name, which registers its endpoint
with the owner key (Section 5.6.4), and withdraws it when it stops.

``ref.sal`` never imports ``ref.chord``: this module takes the function that
connects a resolver as a parameter, and the entry point that wires in the
ServalDHT resolver lives in ``ref.chord.cat``.

Standard input and output are read and written by daemon threads, whatever
they are (a terminal, a pipe, a file), so that the event loop never blocks
on them and no descriptor shared with the shell is made non-blocking.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import ipaddress
import os
import queue
import select
import shlex
import shutil
import signal
import socket
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Sequence
from pathlib import Path
from typing import Any, NoReturn, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ref.cli_args import EXIT_USAGE, OneLineParser, bounded, host_port
from ref.keys import KeyFileError, load_or_create_key
from ref.sal.aio import Datagram, DatagramEndpoint, SalStack, ServiceUnreachable, endpoint_of
from ref.sal.host import HostConfig
from ref.sal.resolver import Registration, Resolver, ResolverUnavailable
from ref.wire.constants import DEMUX_PRIORITY, DEMUX_WEIGHT
from ref.wire.errors import ProtocolError, ServalError
from ref.wire.ids import parse_service_name, service_id_for
from ref.wire.records import ServiceRecord, public_key_bytes
from ref.wire.sal import Endpoint

PROG = "serval-cat"

#: Exit statuses.
EXIT_OK = 0
EXIT_FAILED = 1  # a local failure: the address cannot be bound
EXIT_NOT_REGISTERED = 3
EXIT_RESOLVER_UNREACHABLE = 4
EXIT_REFUSED = 5
EXIT_BROKEN = 6  # the connection was reset or timed out
EXIT_REGISTRATION_REFUSED = 7

DEFAULT_KEY = "serval-cat.key"
DEFAULT_TIMEOUT = 10.0
CHUNK = 1 << 16  # octets read from standard input, a flow or a command at a time
MAX_DATAGRAM = 1024  # data octets per datagram: a longer line goes in several
UDP_LINGER = 1.0  # a --udp client waits this long for more replies after its input ends
HALF_CLOSE_LINGER = 0.5  # after the peer's end, how long standard input may still be sent
CLOSE_LINGER = 2.0  # how long a finished connection may take to close gracefully
STOP_TIMEOUT = 5.0  # at most this long for the withdrawals (or --timeout) and commands


class ResolverClient(Resolver, Protocol):
    """A resolver with a socket of its own to close."""

    def close(self) -> None: ...


class ConnectResolver(Protocol):
    """Connect a resolver to the resolution service at ``nodes``, sending from ``host``."""

    def __call__(
        self, nodes: Sequence[Endpoint], key: Ed25519PrivateKey | None, *, host: str
    ) -> Awaitable[ResolverClient]: ...


class _Fail(Exception):
    """The end of serval-cat with a one-line message and an exit status."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --- arguments ------------------------------------------------------------------------------

EPILOG = f"""\
modes:
  serval-cat --resolver HOST:PORT NAME
      connect to the service NAME: standard input goes to the connection
      (its end half-closes the connection) and the connection to standard
      output.  serval-cat exits when the peer closes, after sending what is
      left of its input for at most {HALF_CLOSE_LINGER:g} seconds more.
  serval-cat --resolver HOST:PORT --listen NAME [--exec CMD]
      bind NAME and register this endpoint for it with the owner key; serve
      one connection on standard input and output, then exit (as nc -l), or
      with --exec run CMD for every connection, the connection as its
      standard input and output, and keep serving until SIGINT or SIGTERM.

  NAME is a plain name (the first owner keeps it) or NAME@KEY, bound to the
  owner key.  Hosts that serve one name share its owner key file: each adds
  its endpoint to the name's record (weight and priority per endpoint) and
  clients spread their connections by weight.  The owner key is kept in
  --key (default ./{DEFAULT_KEY}, created with mode 0600 if missing).

  The local endpoint is the address from which this host reaches the
  resolver, on a free port, unless --bind says otherwise; a listener reports
  it on standard error once it is registered.

datagrams (--udp):
  client    every line of standard input goes as one datagram (a line longer
            than {MAX_DATAGRAM} octets in several) to a replica chosen by weight;
            every datagram answered goes to standard output as it is.  At the
            end of its input the client waits for replies until none has
            come for {UDP_LINGER:g} second, then exits.
  listener  every datagram's payload goes to standard output as it is; once
            one has arrived, each line of standard input goes as a datagram
            to the sender of the latest one.  With --exec, CMD runs for each
            datagram (one at a time), with the payload as its standard
            input; its output is the reply.  A listener serves until SIGINT
            or SIGTERM.

signals: SIGINT or SIGTERM stops serval-cat cleanly: connections are reset,
--exec commands terminated and registrations withdrawn.  A listener then
exits with status 0, a client with 128 + the signal number.

exit status:
  {EXIT_OK}  success
  {EXIT_FAILED}  the local endpoint cannot be bound
  {EXIT_USAGE}  bad arguments, name or key file
  {EXIT_NOT_REGISTERED}  the name is not registered
  {EXIT_RESOLVER_UNREACHABLE}  the resolver did not answer (or --timeout passed while it was asked)
  {EXIT_REFUSED}  connection refused: nothing accepts the connection at the replica
  {EXIT_BROKEN}  the connection was reset or timed out
  {EXIT_REGISTRATION_REFUSED}  the resolver refused the registration (another key owns the name)
"""


def _endpoint(text: str) -> Endpoint:
    host, port = host_port(text)
    return Endpoint(ipaddress.ip_address(host), port)


def _bind_address(text: str) -> tuple[str, int]:
    host, port = host_port(text, port_zero=True)
    if ipaddress.ip_address(host).is_unspecified:
        raise argparse.ArgumentTypeError(f"{text!r}: bind an address of this host, not a wildcard")
    return host, port


def cat_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG,
        description="netcat for service names: connect to, or serve, a service by name.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", nargs="?", metavar="NAME", help="the service to connect to")
    parser.add_argument(
        "--resolver",
        action="append",
        required=True,
        type=_endpoint,
        metavar="HOST:PORT",
        help="a node of the resolution service's ring (repeat for more)",
    )
    parser.add_argument("--listen", metavar="NAME", help="serve NAME instead of connecting")
    parser.add_argument(
        "--key",
        type=Path,
        metavar="FILE",
        help=f"owner key file for --listen (default ./{DEFAULT_KEY}, created if missing)",
    )
    parser.add_argument(
        "--exec",
        dest="command",
        metavar="CMD",
        help="with --listen: run CMD (split as a shell would, run without one) per connection",
    )
    parser.add_argument("--udp", action="store_true", help="datagrams instead of a stream")
    parser.add_argument(
        "--bind",
        type=_bind_address,
        metavar="HOST:PORT",
        help="local address and port (default: the route to the resolver, a free port)",
    )
    parser.add_argument(
        "--weight",
        type=bounded(int, 1, 65535),
        metavar="W",
        help=f"with --listen: this endpoint's weight, 1 to 65535 (default {DEMUX_WEIGHT})",
    )
    parser.add_argument(
        "--priority",
        type=bounded(int, 0, 255),
        metavar="P",
        help=f"with --listen: this endpoint's priority, 0 to 255 (default {DEMUX_PRIORITY})",
    )
    parser.add_argument(
        "--timeout",
        type=bounded(float, 0.1, 3600),
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=(
            f"give up on the resolver, a registration or a connection setup after this "
            f"long (default {DEFAULT_TIMEOUT:g})"
        ),
    )
    return parser


def _checked(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """Usage errors that argparse cannot see; fills in the defaults of --listen."""
    if (args.name is None) == (args.listen is None):
        parser.error("give either NAME to connect to or --listen NAME")
    if args.listen is None:
        given = [args.key, args.command, args.weight, args.priority]
        if any(option is not None for option in given):
            parser.error("--key, --exec, --weight and --priority go with --listen")
    name = args.listen if args.listen is not None else args.name
    try:
        service_id_for(name)
    except ServalError as error:
        parser.error(_message(error))
    versions = {endpoint.address.version for endpoint in args.resolver}
    if len(versions) > 1:
        parser.error("give --resolver nodes of one address family")
    if args.bind is not None and ipaddress.ip_address(args.bind[0]).version not in versions:
        parser.error("--bind and --resolver must be of one address family")
    if args.command is not None:
        try:
            command = shlex.split(args.command)
        except ValueError as error:
            parser.error(f"--exec: {error}")
        if not command:
            parser.error("--exec needs a command")
        if shutil.which(command[0]) is None:
            parser.error(f"--exec: command {command[0]!r} not found")
        args.command = command
    if args.listen is not None:
        args.key = args.key if args.key is not None else Path(DEFAULT_KEY)
        args.weight = args.weight if args.weight is not None else DEMUX_WEIGHT
        args.priority = args.priority if args.priority is not None else DEMUX_PRIORITY
    return args


def _message(error: ServalError) -> str:
    """A protocol error's text without its error code."""
    if isinstance(error, ProtocolError) and error.args:
        return str(error.args[0])
    return str(error)


def _say(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def endpoint_text(endpoint: Endpoint) -> str:
    if endpoint.address.version == 6:
        return f"[{endpoint.address}]:{endpoint.port}"
    return f"{endpoint.address}:{endpoint.port}"


def _reason(error: OSError) -> str:
    return (error.strerror or type(error).__name__).lower()


def cat_command(argv: Sequence[str] | None, connect_resolver: ConnectResolver) -> NoReturn:
    """Run serval-cat with ``connect_resolver`` as its resolution service."""
    parser = cat_parser()
    args = _checked(parser, parser.parse_args(argv))
    key: Ed25519PrivateKey | None = None
    if args.listen is not None:
        try:
            key, created = load_or_create_key(args.key)
        except KeyFileError as error:
            _say(str(error))
            sys.exit(EXIT_USAGE)
        if created:
            _say(f"created owner key file {args.key} (mode 0600)")
        _, bound_to = parse_service_name(args.listen)
        if bound_to is not None and bound_to != public_key_bytes(key):
            parser.error(f"{args.listen} is bound to another key than the one in {args.key}")
    try:
        code = asyncio.run(_main(args, key, connect_resolver))
    except KeyboardInterrupt:  # before the signal handlers were in place
        code = 128 + signal.SIGINT
    sys.exit(code)


async def _main(
    args: argparse.Namespace, key: Ed25519PrivateKey | None, connect: ConnectResolver
) -> int:
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_one_line_errors)
    signalled: asyncio.Future[int] = loop.create_future()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, _on_signal, signalled, signum)
    session = _Session(args, key, connect)
    work = asyncio.ensure_future(session.run())
    try:
        await asyncio.wait([work, signalled], return_when=asyncio.FIRST_COMPLETED)
        if work.done():
            return work.result()
        work.cancel()
        with contextlib.suppress(BaseException):
            await work
        return EXIT_OK if args.listen is not None else 128 + signalled.result()
    except _Fail as failure:
        _say(failure.message)
        return failure.code
    except Exception as error:  # a bug: still one line, never a traceback
        _say(f"internal error: {type(error).__name__}: {error}")
        return EXIT_FAILED
    finally:
        await session.stop()


def _on_signal(signalled: asyncio.Future[int], signum: int) -> None:
    if not signalled.done():
        signalled.set_result(signum)


def _one_line_errors(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The loop's reports of failed callbacks, in one line (never a traceback)."""
    error = context.get("exception")
    message = context.get("message", "unexpected error")
    _say(f"{message}: {error}" if error is not None else message)


# --- standard input and output -----------------------------------------------------------


class _Input:
    """Standard input, read by a daemon thread in order, with backpressure; b"" at its end."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=4)
        self._ended = False
        threading.Thread(target=self._read, name="serval-cat stdin", daemon=True).start()

    async def read(self) -> bytes:
        if self._ended:
            return b""
        data = await self._queue.get()
        self._ended = not data
        return data

    async def lines(self) -> AsyncIterator[bytes]:
        """Each line with its newline (the last one maybe without), cut to MAX_DATAGRAM."""
        pending = b""
        while data := await self.read():
            pending += data
            while (end := pending.find(b"\n")) >= 0 or len(pending) >= MAX_DATAGRAM:
                cut = min(end + 1 if end >= 0 else MAX_DATAGRAM, MAX_DATAGRAM)
                line, pending = pending[:cut], pending[cut:]
                yield line
        if pending:
            yield pending

    def _read(self) -> None:
        while True:
            try:
                data = os.read(0, CHUNK)
            except OSError:  # no standard input at all
                data = b""
            try:
                asyncio.run_coroutine_threadsafe(self._queue.put(data), self._loop).result()
            except (RuntimeError, concurrent.futures.CancelledError):  # the loop is gone
                return
            if not data:
                return


class _Output:
    """Standard output, written by a daemon thread: a slow reader of it never blocks the
    loop (the flow's window closes instead).  Writes answer False once it is closed."""

    def __init__(self) -> None:
        self._requests: queue.SimpleQueue[tuple[bytes, concurrent.futures.Future[bool]]]
        self._requests = queue.SimpleQueue()
        self.closed = False
        threading.Thread(target=self._write, name="serval-cat stdout", daemon=True).start()

    async def write(self, data: bytes) -> bool:
        if not self.closed:
            written: concurrent.futures.Future[bool] = concurrent.futures.Future()
            self._requests.put((data, written))
            self.closed = not await asyncio.wrap_future(written)
        return not self.closed

    def _write(self) -> None:
        closed = False
        while True:
            data, written = self._requests.get()
            view = memoryview(data)
            while view and not closed:
                try:
                    view = view[os.write(1, view) :]
                except BlockingIOError:  # a descriptor someone else made non-blocking
                    select.select([], [1], [])
                except OSError:  # the reader has gone (EPIPE), or there is no output
                    closed = True
            written.set_result(not closed)


# --- the session ------------------------------------------------------------------------------


class _Watched:
    """The resolver, noting whether resolutions failed or answered (exit 3 or 4)."""

    def __init__(self, inner: ResolverClient) -> None:
        self.inner = inner
        self.failure: Exception | None = None
        self.answered = False

    async def resolve(self, service_id: bytes) -> ServiceRecord | None:
        try:
            record = await self.inner.resolve(service_id)
        except Exception as error:
            self.failure = error
            raise
        self.answered = True
        return record

    async def register(self, registration: Registration) -> None:
        await self.inner.register(registration)

    async def unregister(self, registration: Registration) -> None:
        await self.inner.unregister(registration)


class _Session:
    """One run of serval-cat: a stack, a resolver, and what the mode does with them."""

    def __init__(
        self, args: argparse.Namespace, key: Ed25519PrivateKey | None, connect: ConnectResolver
    ) -> None:
        self.args = args
        self.key = key
        self.connect = connect
        self.name: str = args.listen if args.listen is not None else args.name
        self.via = ", ".join(endpoint_text(e) for e in args.resolver)
        self.stack: SalStack | None = None
        self.resolver: _Watched | None = None
        self.listening: Any = None  # the SalServer or DatagramEndpoint of --listen
        self.tasks: set[asyncio.Task[None]] = set()
        self.children: set[asyncio.subprocess.Process] = set()
        self.output = _Output()

    async def run(self) -> int:
        stack = await self._start()
        if self.args.listen is None:
            return await (self._send_datagrams(stack) if self.args.udp else self._connect(stack))
        if self.args.udp:
            return await self._serve_datagrams(stack)
        return await self._serve_streams(stack)

    async def stop(self) -> None:
        """Reset the connections, end the commands, withdraw the registrations, close."""
        for task in list(self.tasks):
            task.cancel()
        for child in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                child.terminate()
        if self.children:
            waits = [asyncio.ensure_future(child.wait()) for child in self.children]
            _, late = await asyncio.wait(waits, timeout=STOP_TIMEOUT)
            for child in self.children:
                if child.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        child.kill()
            for wait in late:
                wait.cancel()
        if self.stack is not None:
            self.stack.close()  # unbinds: the withdrawals start (Section 5.6.4)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self.stack.wait_closed(), min(self.args.timeout, STOP_TIMEOUT)
                )
        if self.resolver is not None:
            self.resolver.inner.close()

    async def _start(self) -> SalStack:
        args = self.args
        if args.bind is not None:
            host, port = args.bind
        else:
            host, port = _route_address(args.resolver[0]), 0
        try:
            inner = await self.connect(args.resolver, self.key, host=host)
        except OSError as error:
            raise _Fail(
                EXIT_FAILED, f"cannot open a UDP socket on {host}: {_reason(error)}"
            ) from None
        self.resolver = _Watched(inner)
        config = HostConfig(register=args.listen is not None)
        try:
            self.stack = await SalStack.start([(host, port)], resolver=self.resolver, config=config)
        except OSError as error:
            raise _Fail(EXIT_FAILED, f"cannot bind {host}:{port}: {_reason(error)}") from None
        return self.stack

    # --- errors ---------------------------------------------------------------------------

    def _unreachable(self, error: Exception) -> _Fail:
        assert self.resolver is not None
        if self.resolver.failure is not None:
            problem = str(self.resolver.failure) or type(self.resolver.failure).__name__
            return _Fail(EXIT_RESOLVER_UNREACHABLE, f"resolver {self.via} unreachable: {problem}")
        return _Fail(EXIT_NOT_REGISTERED, f"{self.name}: service not registered")

    def _timed_out(self, what: str) -> _Fail:
        assert self.resolver is not None
        if self.resolver.failure is not None:
            return self._unreachable(self.resolver.failure)
        if not self.resolver.answered:
            timeout = self.args.timeout
            return _Fail(
                EXIT_RESOLVER_UNREACHABLE,
                f"resolver {self.via} unreachable: no answer within {timeout:g} seconds",
            )
        return _Fail(EXIT_BROKEN, f"{self.name}: {what} timed out")

    def _broken(self, error: Exception) -> _Fail:
        if isinstance(error, ServiceUnreachable):
            return self._unreachable(error)
        if isinstance(error, ConnectionRefusedError):
            return _Fail(EXIT_REFUSED, f"{self.name}: connection refused")
        if isinstance(error, TimeoutError):
            return _Fail(EXIT_BROKEN, f"{self.name}: connection timed out")
        return _Fail(EXIT_BROKEN, f"{self.name}: connection reset")

    # --- stream client ------------------------------------------------------------------------

    async def _connect(self, stack: SalStack) -> int:
        try:
            reader, writer = await asyncio.wait_for(
                stack.open_connection(self.name), self.args.timeout
            )
        except TimeoutError:  # --timeout (the SAL's own SYN limit takes minutes)
            raise self._timed_out("connection setup") from None
        except ConnectionError as error:
            raise self._broken(error) from None
        try:
            await _pipe_stdio(reader, writer, self.output)
        except (ConnectionError, TimeoutError) as error:
            raise self._broken(error) from None
        return EXIT_OK

    # --- stream listener -------------------------------------------------------------------

    async def _serve_streams(self, stack: SalStack) -> int:
        first: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
        first = asyncio.get_running_loop().create_future()

        def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if self.args.command is not None:
                self._spawn(self._run_command(reader, writer))
            elif not first.done():
                first.set_result((reader, writer))
            else:  # nc -l serves one connection
                writer.transport.abort()

        self.listening = await stack.start_server(
            accepted, self.name, priority=self.args.priority, weight=self.args.weight
        )
        await self._registered(stack)
        if self.args.command is not None:
            await asyncio.Event().wait()  # until a signal
        reader, writer = await first
        self.listening.close()  # one connection: the name is withdrawn (as nc -l closes)
        try:
            await _pipe_stdio(reader, writer, self.output)
        except (ConnectionError, TimeoutError) as error:
            raise self._broken(error) from None
        return EXIT_OK

    async def _registered(self, stack: SalStack) -> None:
        try:
            await asyncio.wait_for(stack.registered(), self.args.timeout)
        except TimeoutError:
            raise _Fail(
                EXIT_RESOLVER_UNREACHABLE,
                f"resolver {self.via}: registration not done within {self.args.timeout:g} seconds",
            ) from None
        except Exception as error:
            problem = _message(error) if isinstance(error, ServalError) else str(error)
            problem = problem or type(error).__name__
            if isinstance(error, ResolverUnavailable):
                raise _Fail(
                    EXIT_RESOLVER_UNREACHABLE, f"resolver {self.via} unreachable: {problem}"
                ) from None
            raise _Fail(
                EXIT_REGISTRATION_REFUSED, f"{self.name}: registration refused: {problem}"
            ) from None
        where = endpoint_text(stack.endpoints[0])
        _say(
            f"registered {self.name} at {where} "
            f"(priority {self.args.priority}, weight {self.args.weight})"
        )

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run_command(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """--exec: the connection is CMD's standard input and output."""
        peer = writer.get_extra_info("peername")
        try:
            child = await asyncio.create_subprocess_exec(
                *self.args.command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
            )
        except OSError as error:
            _say(f"cannot run {self.args.command[0]}: {_reason(error)}")
            writer.transport.abort()
            return
        self.children.add(child)
        try:
            assert child.stdin is not None and child.stdout is not None
            await asyncio.gather(
                _flow_to_child(reader, child.stdin), _child_to_flow(child.stdout, writer)
            )
            await child.wait()
            await _finish(writer)
        except (ConnectionError, TimeoutError) as error:
            _say(f"connection from {peer[0]}:{peer[1]}: {self._broken(error).message}")
            writer.transport.abort()
        finally:
            if child.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.kill()
                await child.wait()
            self.children.discard(child)

    # --- datagrams --------------------------------------------------------------------------

    async def _send_datagrams(self, stack: SalStack) -> int:
        """--udp client: lines out, replies to standard output."""
        assert self.resolver is not None
        service_id = service_id_for(self.name)
        try:  # the name is checked first: a datagram to nowhere would vanish silently
            record = await asyncio.wait_for(self.resolver.resolve(service_id), self.args.timeout)
        except TimeoutError:
            raise self._timed_out("resolution") from None
        except Exception as error:
            raise self._unreachable(error) from None
        if record is None or record.is_tombstone:
            raise self._unreachable(ServiceUnreachable(self.name))
        replies = await stack.bind_datagram(os.urandom(32))  # an unregistered reply serviceID
        arrived = asyncio.Event()

        async def receive() -> None:
            while True:
                datagram = await replies.recvfrom()
                arrived.set()
                if not await self.output.write(datagram.data):
                    return

        self._spawn(receive())
        async for line in _Input(asyncio.get_running_loop()).lines():
            replies.sendto(self.name, line)
        while True:  # until no reply has come for UDP_LINGER seconds
            arrived.clear()
            try:
                await asyncio.wait_for(arrived.wait(), UDP_LINGER)
            except TimeoutError:
                return EXIT_OK

    async def _serve_datagrams(self, stack: SalStack) -> int:
        """--udp --listen: payloads to standard output, or each one through --exec."""
        endpoint = await stack.bind_datagram(
            self.name, priority=self.args.priority, weight=self.args.weight
        )
        self.listening = endpoint
        await self._registered(stack)
        if self.args.command is not None:
            while True:
                await self._answer(endpoint, await endpoint.recvfrom())
        latest: list[Datagram] = []
        heard = asyncio.Event()

        async def reply_lines() -> None:
            await heard.wait()
            async for line in _Input(asyncio.get_running_loop()).lines():
                endpoint.reply(latest[-1], line)

        self._spawn(reply_lines())
        while True:
            request = await endpoint.recvfrom()
            latest[:] = [request]
            heard.set()
            await self.output.write(request.data)

    async def _answer(self, endpoint: DatagramEndpoint, request: Datagram) -> None:
        try:
            child = await asyncio.create_subprocess_exec(
                *self.args.command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
            )
        except OSError as error:
            _say(f"cannot run {self.args.command[0]}: {_reason(error)}")
            return
        self.children.add(child)
        try:
            output, _ = await child.communicate(request.data)
        finally:
            self.children.discard(child)
        for offset in range(0, len(output), MAX_DATAGRAM):
            endpoint.reply(request, output[offset : offset + MAX_DATAGRAM])


# --- moving bytes ------------------------------------------------------------------------------


async def _pipe_stdio(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, output: _Output
) -> None:
    """Standard input to the flow (half-closing at its end), the flow to standard output.

    Returns when the peer has closed and standard input has been sent, or
    HALF_CLOSE_LINGER seconds after the peer closed; raises the flow's error.
    """
    stdin = _Input(asyncio.get_running_loop())

    async def send() -> None:
        while data := await stdin.read():
            writer.write(data)
            await writer.drain()
        writer.write_eof()

    sending = asyncio.ensure_future(send())
    try:
        while data := await reader.read(CHUNK):
            if not await output.write(data):
                break  # nobody reads our output any more: as the end of the peer's data
        await asyncio.wait([sending], timeout=HALF_CLOSE_LINGER)
    finally:
        if not sending.done():
            sending.cancel()
        elif not sending.cancelled() and (error := sending.exception()) is not None:
            raise error
    await _finish(writer)


async def _finish(writer: asyncio.StreamWriter) -> None:
    """Half-close if not yet done and let the SAL close the flow (its FINs acknowledged)."""
    transport = writer.transport
    if not transport.is_closing():
        with contextlib.suppress(RuntimeError):  # write_eof was called already
            writer.write_eof()
        with contextlib.suppress(ConnectionError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), CLOSE_LINGER)
    writer.close()


async def _flow_to_child(reader: asyncio.StreamReader, stdin: asyncio.StreamWriter) -> None:
    """The flow into the command; what it does not read any more is discarded."""
    child_reads = True
    while data := await reader.read(CHUNK):
        if child_reads:
            try:
                stdin.write(data)
                await stdin.drain()
            except (BrokenPipeError, ConnectionResetError):  # the command closed its input
                child_reads = False
    with contextlib.suppress(OSError):
        stdin.close()


async def _child_to_flow(stdout: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await stdout.read(CHUNK):
        writer.write(data)
        await writer.drain()
    writer.write_eof()


def _route_address(resolver: Endpoint) -> str:
    """The local address of the route to ``resolver`` (a connected UDP socket sends nothing)."""
    family = socket.AF_INET6 if resolver.address.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((str(resolver.address), resolver.port))
            address: str = probe.getsockname()[0]
    except OSError as error:
        raise _Fail(
            EXIT_RESOLVER_UNREACHABLE,
            f"resolver {endpoint_text(resolver)} unreachable: {_reason(error)}",
        ) from None
    return str(endpoint_of(address, 0).address)
