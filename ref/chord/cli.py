"""Command-line entry points: ``serval-node`` runs a ring member, ``serval-dht`` talks to a ring.

Both print one-line errors and exit with status 2 for bad arguments or an
unusable key file; neither prints a traceback for bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ref.chord.aio import DhtClient, NodeServer, start_node
from ref.chord.exchange import Failure, Found, NotRegistered
from ref.chord.node import NodeConfig
from ref.cli_args import EXIT_USAGE, OneLineParser, bounded, host_port
from ref.keys import KeyFileError, load_key, load_or_create_key, public_key_text
from ref.wire.constants import (
    BLOCK_SIZE,
    DEFAULT_RECORD_LIFETIME,
    DEFAULT_REPLICAS,
    DEFAULT_SUCCESSOR_LIST_LENGTH,
    MAX_RECORD_LIFETIME,
    RATE_LIMIT_PER_SOURCE,
    STABILIZE_INTERVAL,
)
from ref.wire.errors import ProtocolError, ServalError
from ref.wire.ids import service_id_for
from ref.wire.records import RecordEndpoint
from ref.wire.sal import Endpoint
from ref.wire.status import flat_counters

#: Exit statuses of serval-dht (and, 0 to 2, of serval-node).
EXIT_OK = 0
EXIT_NOT_REGISTERED = 1  # serval-dht resolve
EXIT_CANNOT_LISTEN = 1  # serval-node
EXIT_NO_ANSWER = 3
EXIT_REFUSED = 4
EXIT_INTERRUPTED = 130

DEFAULT_NODE_KEY = "serval-node.key"
STATUS_INTERVAL = 30.0
LEAVE_TIMEOUT = 5.0
DEFAULT_TIMEOUT = 10.0


# --- argument types ------------------------------------------------------------------


def listen_address(text: str) -> tuple[str, int]:
    return host_port(text, port_zero=True)


def endpoint(text: str) -> Endpoint:
    host, port = host_port(text)
    return Endpoint(ipaddress.ip_address(host), port)


def record_endpoint(text: str) -> RecordEndpoint:
    """``HOST:PORT[,weight=W][,priority=P][,mask=M]``."""
    where, *options = text.split(",")
    address = endpoint(where)
    fields = {"weight": 1, "priority": 0, "mask": 0xFF}
    limits = {"weight": (1, 65535), "priority": (0, 255), "mask": (1, 255)}
    for option in options:
        name, sep, value = option.partition("=")
        if not sep or name not in fields:
            raise argparse.ArgumentTypeError(
                f"{text!r}: options are weight=W, priority=P and mask=M, not {option!r}"
            )
        low, high = limits[name]
        try:
            number = int(value, 0)
        except ValueError:
            number = -1
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f"{text!r}: {name} is {low} to {high}")
        fields[name] = number
    return RecordEndpoint(
        address.address,
        address.port,
        priority=fields["priority"],
        weight=fields["weight"],
        service_mask=fields["mask"],
    )


def endpoint_text(endpoint: Endpoint) -> str:
    """HOST:PORT as the commands take it, IPv6 in brackets."""
    if endpoint.address.version == 6:
        return f"[{endpoint.address}]:{endpoint.port}"
    return f"{endpoint.address}:{endpoint.port}"


def _message(error: ServalError) -> str:
    """One line for the user: a protocol error's text without its error code."""
    if isinstance(error, ProtocolError) and error.args:
        return str(error.args[0])
    return str(error)


def _say(prog: str, message: str) -> None:
    print(f"{prog}: {message}", file=sys.stderr, flush=True)


def _key_or_exit(prog: str, path: Path, *, create: bool, what: str) -> Ed25519PrivateKey:
    try:
        if not create:
            return load_key(path)
        key, created = load_or_create_key(path)
    except KeyFileError as error:
        _say(prog, str(error))
        sys.exit(EXIT_USAGE)
    if created:
        _say(prog, f"created {what} key file {path} (mode 0600)")
    return key


# --- serval-node ---------------------------------------------------------------------------


NODE_EPILOG = f"""\
The first line on standard output is "listening on HOST:PORT", the bound
endpoint (useful with port 0).  Status lines go to standard error: one when
the node has joined, then one every {STATUS_INTERVAL:g} seconds.  On SIGINT
or SIGTERM the node hands its records to its successor and leaves the ring,
waiting at most {LEAVE_TIMEOUT:g} seconds; a second signal stops it at once.

A node without --bootstrap creates a new ring; it must then listen on the
address that the other nodes reach it at, not on a wildcard address.

The host key decides the node ID.  It is kept in --key (default
./{DEFAULT_NODE_KEY}, created with mode 0600 if missing); give each node on a
host its own file.

exit status: 0 after leaving, 1 if the address cannot be bound, 2 for bad
arguments or an unusable key file.
"""


def node_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="serval-node",
        description="Run a ServalDHT ring member on one UDP port.",
        epilog=NODE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--listen",
        required=True,
        type=listen_address,
        metavar="HOST:PORT",
        help="IP address and UDP port to bind ([::1]:PORT for IPv6; port 0 picks a free one)",
    )
    parser.add_argument(
        "--bootstrap",
        action="append",
        default=[],
        type=endpoint,
        metavar="HOST:PORT",
        help="a member of the ring to join (repeat for more); none: create a new ring",
    )
    parser.add_argument(
        "--key",
        type=Path,
        default=Path(DEFAULT_NODE_KEY),
        metavar="FILE",
        help=f"host key file (default: ./{DEFAULT_NODE_KEY}, created if missing)",
    )
    parser.add_argument(
        "--replicas",
        type=bounded(int, 1, 16),
        default=DEFAULT_REPLICAS,
        metavar="K",
        help=f"replication factor k, 1 to R (default {DEFAULT_REPLICAS})",
    )
    parser.add_argument(
        "--successors",
        type=bounded(int, 3, 16),
        default=DEFAULT_SUCCESSOR_LIST_LENGTH,
        metavar="R",
        help=f"successor list length r, 3 to 16 (default {DEFAULT_SUCCESSOR_LIST_LENGTH})",
    )
    parser.add_argument(
        "--stabilize-interval",
        type=bounded(float, 0.1, 3600),
        default=STABILIZE_INTERVAL,
        metavar="SECONDS",
        help=(
            f"interval of stabilization and of the predecessor check (default "
            f"{STABILIZE_INTERVAL:g}); one finger is refreshed every twice this interval. "
            "Keep it well above the 1-second request timeout on real networks"
        ),
    )
    parser.add_argument(
        "--rate-limit",
        type=bounded(float, 1, 1e9),
        default=float(RATE_LIMIT_PER_SOURCE),
        metavar="N",
        help=(
            f"requests per second accepted from one source address (default "
            f"{RATE_LIMIT_PER_SOURCE}); the burst is twice this"
        ),
    )
    parser.add_argument(
        "--forward-mode",
        action="store_true",
        help="also act as a SAL service router for unregistered serviceIDs (draft 6.9.3)",
    )
    parser.add_argument(
        "--test-services",
        action="store_true",
        help=(
            "also be a SAL host serving the conformance test services on the same port "
            "(draft Appendix C.4), for serval-conform's SAL cases"
        ),
    )
    parser.add_argument(
        "--log-json",
        action="store_true",
        help="write the node's protocol events to standard error as JSON lines",
    )
    return parser


def node_main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point of ``serval-node``."""
    parser = node_parser()
    args = parser.parse_args(argv)
    try:
        config = NodeConfig(
            successors=args.successors,
            replicas=args.replicas,
            stabilize_interval=args.stabilize_interval,
            check_predecessor_interval=args.stabilize_interval,
            fix_fingers_interval=2 * args.stabilize_interval,
            rate=args.rate_limit,
            burst=2 * args.rate_limit,
            forward_mode=args.forward_mode,
        )
    except ServalError as error:
        parser.error(_message(error))
    host, port = args.listen
    if not args.bootstrap and ipaddress.ip_address(host).is_unspecified:
        parser.error("a node that creates a ring (no --bootstrap) must listen on a real address")
    key = _key_or_exit("serval-node", args.key, create=True, what="host")
    try:
        reporter = _Reporter(args.log_json)
        code = asyncio.run(
            _run_node(host, port, key, args.bootstrap, config, reporter, args.test_services)
        )
    except KeyboardInterrupt:  # before the signal handlers were in place
        code = EXIT_INTERRUPTED
    sys.exit(code)


class _Reporter:
    """serval-node's standard error: text lines, or JSON lines with --log-json."""

    def __init__(self, json_lines: bool) -> None:
        self.json_lines = json_lines

    def log(self, event: dict[str, Any]) -> None:
        """The core's structured events (only with --log-json)."""
        print(json.dumps(event, default=str), file=sys.stderr, flush=True)

    def note(self, event: str, text: str, **fields: Any) -> None:
        if self.json_lines:
            self.log({"time": round(time.time(), 3), "event": event, **fields})
        else:
            _say("serval-node", text)


async def _run_node(
    host: str,
    port: int,
    key: Ed25519PrivateKey,
    bootstrap: list[Endpoint],
    config: NodeConfig,
    reporter: _Reporter,
    test_services: bool = False,
) -> int:
    log = reporter.log if reporter.json_lines else None
    try:
        server = await start_node(
            host,
            port,
            key=key,
            bootstrap=bootstrap,
            config=config,
            log=log,
            test_services=test_services,
        )
    except OSError as error:
        reason = (error.strerror or type(error).__name__).lower()
        _say("serval-node", f"cannot listen on {host}:{port}: {reason}")
        return EXIT_CANNOT_LISTEN
    print(f"listening on {endpoint_text(server.endpoint)}", flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    reports = asyncio.ensure_future(_report(server, reporter))
    try:
        await stop.wait()
        stop.clear()
        reports.cancel()
        if await server.wait_joined(0):
            reporter.note("leaving", "leaving the ring")
            leave = asyncio.ensure_future(server.leave(LEAVE_TIMEOUT))
            interrupt = asyncio.ensure_future(stop.wait())  # a second signal
            await asyncio.wait([leave, interrupt], return_when=asyncio.FIRST_COMPLETED)
            interrupt.cancel()
            left = leave.done() and not leave.cancelled() and leave.result()
            leave.cancel()
            if left:
                reporter.note("left", "left the ring")
            else:
                reporter.note("leave_incomplete", "stopped before the ring answered the leave")
    finally:
        reports.cancel()
        server.close()
    return EXIT_OK


async def _report(server: NodeServer, reporter: _Reporter) -> None:
    """The joined line, then a status line every 30 seconds."""
    await server.wait_joined()
    node = server.node
    if not reporter.json_lines:  # the JSON log has the core's own "joined" event
        me = f"{_short(node.me.node_info.node_id)} at {endpoint_text(node.me.endpoint)}"
        if node.alone:
            reporter.note("created", f"created a new ring as node {me}")
        else:
            first = node.successors[0]
            successor = f"{_short(first.node_info.node_id)} at {endpoint_text(first.endpoint)}"
            reporter.note("joined", f"joined the ring as node {me}; successor {successor}")
    while True:
        await asyncio.sleep(STATUS_INTERVAL)
        report = node.status()
        reporter.note("status", "status: " + _status_line(report), **report)


def _short(node_id: bytes) -> str:
    return node_id.hex()[:16]


def _status_line(report: dict[str, Any]) -> str:
    counters = (flat_counters(report.get("counters")) or {}) | report.get("activity", {})
    drops = sum(v for k, v in counters.items() if k.startswith("drop."))
    errors = sum(v for k, v in counters.items() if k.startswith("error_sent."))
    requests = sum(v for k, v in counters.items() if k.startswith("request."))
    predecessors = report.get("predecessors") or ["none"]
    successors = report.get("successors") or ["none"]
    return (
        f"{report.get('state')}; predecessor {predecessors[0]}; successor {successors[0]}; "
        f"records {report.get('records')} (cached {report.get('cached')}); "
        f"fingers {report.get('fingers')}; requests {requests} received, "
        f"{counters.get('requests_sent', 0)} sent, {counters.get('requests_failed', 0)} failed; "
        f"{drops} dropped; {errors} errors sent"
    )


# --- serval-dht ----------------------------------------------------------------------------


DHT_EPILOG = f"""\
commands:
  register NAME --endpoint HOST:PORT[,weight=W][,priority=P][,mask=M] ... --key FILE
      sign a record for NAME with the owner key (created with mode 0600 if
      missing) and store it; the first owner of a name keeps it while its
      record lives.  NAME may be key-bound, NAME@KEY, with the owner's key.
      Endpoint addresses other than the one this host sends from must be
      addresses of this host: they are proved with PINGs sent from them.
  resolve NAME
      print each endpoint that serves NAME, one per line, as
      "HOST:PORT weight=W priority=P", highest priority first.  NAME@KEY
      accepts only records signed by KEY.
  unregister NAME --key FILE
      store a signed tombstone; the owner keeps the name for --ttl seconds.
  status
      print the ring neighbours, record counts and counters of each --via
      node (--json: the raw reports, one JSON object per line).

exit status:
  {EXIT_OK}  success
  {EXIT_NOT_REGISTERED}  resolve: the name is not registered (no record, a tombstone, or
     no endpoint serves it)
  {EXIT_USAGE}  bad arguments, name or key file
  {EXIT_NO_ANSWER}  no node answered (or --timeout passed)
  {EXIT_REFUSED}  the ring refused or the operation failed (the reason is printed)
"""


def dht_parser() -> argparse.ArgumentParser:
    common = OneLineParser(add_help=False)
    _common_options(common, argparse.SUPPRESS)
    parser = OneLineParser(
        prog="serval-dht",
        description="Register, resolve and inspect names in a ServalDHT ring.",
        epilog=DHT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common_options(parser, None)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    register = commands.add_parser(
        "register", parents=[common], help="register NAME at endpoints", description=None
    )
    register.add_argument("name", metavar="NAME")
    register.add_argument(
        "--endpoint",
        action="append",
        required=True,
        type=record_endpoint,
        metavar="ENDPOINT",
        help=(
            "HOST:PORT[,weight=W][,priority=P][,mask=M], an endpoint of the service "
            "(repeat for more; defaults weight=1, priority=0, mask=0xff)"
        ),
    )
    _key_option(register, "owner key file, created with mode 0600 if missing")
    _ttl_option(register, "record lifetime")

    resolve = commands.add_parser("resolve", parents=[common], help="print the endpoints of NAME")
    resolve.add_argument("name", metavar="NAME")
    resolve.add_argument(
        "--index",
        type=bounded(int, 0, BLOCK_SIZE - 1),
        default=0,
        help="resolve the serviceID NAME's block base + INDEX (0 to 7, default 0)",
    )

    unregister = commands.add_parser(
        "unregister", parents=[common], help="delete the registration of NAME"
    )
    unregister.add_argument("name", metavar="NAME")
    _key_option(unregister, "owner key file (must exist)")
    _ttl_option(unregister, "tombstone lifetime: how long the owner keeps NAME")

    status = commands.add_parser("status", parents=[common], help="report on the --via nodes")
    status.add_argument("--json", action="store_true", help="print the raw reports as JSON")
    return parser


def _common_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """--via and --timeout, accepted before and after the command."""
    parser.add_argument(
        "--via",
        action="append",
        type=endpoint,
        default=default,
        metavar="HOST:PORT",
        help="a node of the ring (repeat for more: the client uses any that answers)",
    )
    parser.add_argument(
        "--timeout",
        type=bounded(float, 0.1, 3600),
        default=DEFAULT_TIMEOUT if default is None else default,
        metavar="SECONDS",
        help=f"give up after this long (default {DEFAULT_TIMEOUT:g})",
    )


def _key_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--key", type=Path, required=True, metavar="FILE", help=help_text)


def _ttl_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--ttl",
        type=bounded(int, 1, MAX_RECORD_LIFETIME),
        default=DEFAULT_RECORD_LIFETIME,
        metavar="SECONDS",
        help=f"{what} (1 to {MAX_RECORD_LIFETIME}, default {DEFAULT_RECORD_LIFETIME})",
    )


def dht_main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point of ``serval-dht``."""
    parser = dht_parser()
    args = parser.parse_args(argv)
    if not args.via:
        parser.error("give at least one node of the ring with --via HOST:PORT")
    if args.command != "status":
        try:
            service_id_for(args.name)  # a bad name is a usage error, before any key file
        except ServalError as error:
            parser.error(_message(error))
    key: Ed25519PrivateKey | None = None
    if args.command in ("register", "unregister"):
        create = args.command == "register"
        key = _key_or_exit("serval-dht", args.key, create=create, what="owner")
    try:
        code = asyncio.run(_run_dht(args, key))
    except ServalError as error:
        _say("serval-dht", _message(error))
        code = EXIT_USAGE
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    sys.exit(code)


async def _run_dht(args: argparse.Namespace, key: Ed25519PrivateKey | None) -> int:
    commands: dict[str, Callable[[DhtClient, argparse.Namespace, Any], Awaitable[int]]] = {
        "register": _register,
        "resolve": _resolve,
        "unregister": _unregister,
        "status": _status,
    }
    try:
        client = await DhtClient.connect(args.via)
    except OSError as error:
        _say("serval-dht", f"cannot open a UDP socket: {error.strerror or error}")
        return EXIT_NO_ANSWER
    try:
        return await asyncio.wait_for(commands[args.command](client, args, key), args.timeout)
    except TimeoutError:
        _say("serval-dht", f"no answer within {args.timeout:g} seconds")
        return EXIT_NO_ANSWER
    finally:
        client.close()


def _failed(client: DhtClient, failure: Failure) -> int:
    if not client.core.counters["responses_received"]:
        via = ", ".join(endpoint_text(e) for e in client.core.nodes)
        _say("serval-dht", f"no node answers ({via})")
        return EXIT_NO_ANSWER
    _say("serval-dht", f"failed: {failure.code.name}: {failure.reason}")
    return EXIT_REFUSED


async def _register(client: DhtClient, args: argparse.Namespace, key: Ed25519PrivateKey) -> int:
    result = await client.register(args.name, args.endpoint, key, ttl=args.ttl)
    if isinstance(result, Failure):
        return _failed(client, result)
    print(
        f"registered {args.name} (sequence {result.sequence}, "
        f"owner key {public_key_text(key)}) at {endpoint_text(result.node)}"
    )
    return EXIT_OK


async def _unregister(client: DhtClient, args: argparse.Namespace, key: Ed25519PrivateKey) -> int:
    result = await client.unregister(args.name, key, ttl=args.ttl)
    if isinstance(result, Failure):
        return _failed(client, result)
    print(f"unregistered {args.name} (sequence {result.sequence}) at {endpoint_text(result.node)}")
    return EXIT_OK


async def _resolve(client: DhtClient, args: argparse.Namespace, key: None) -> int:
    result = await client.resolve(args.name)
    if isinstance(result, Failure):
        return _failed(client, result)
    if isinstance(result, NotRegistered):
        deleted = " (deleted by its owner)" if result.tombstone is not None else ""
        _say("serval-dht", f"{args.name} is not registered{deleted}")
        return EXIT_NOT_REGISTERED
    assert isinstance(result, Found)
    bit = 1 << args.index
    # DHT-RES-8: only endpoints whose Service Mask has the bit of the index.
    serving = [e for e in result.record.endpoints if e.service_mask & bit]
    if not serving:
        _say("serval-dht", f"{args.name} is registered, but no endpoint serves index {args.index}")
        return EXIT_NOT_REGISTERED
    for entry in sorted(serving, key=lambda e: -e.priority):
        where = endpoint_text(Endpoint(entry.address, entry.port))
        print(f"{where} weight={entry.weight} priority={entry.priority}")
    return EXIT_OK


async def _status(client: DhtClient, args: argparse.Namespace, key: None) -> int:
    reports = await asyncio.gather(*(client.status(via) for via in args.via))
    code = EXIT_OK
    for via, report in zip(args.via, reports, strict=True):
        if isinstance(report, Failure):
            _say("serval-dht", f"{endpoint_text(via)}: {report.code.name}: {report.reason}")
            code = EXIT_NO_ANSWER if report.reason.startswith("no answer") else EXIT_REFUSED
        elif args.json:
            print(json.dumps(report))
        else:
            print(_status_text(via, report))
    return code


def _status_text(via: Endpoint, report: dict[str, Any]) -> str:
    counters = (flat_counters(report.get("counters")) or {}) | report.get("activity", {})
    lines = [
        f"node {str(report.get('node_id', '?'))[:16]} at {endpoint_text(via)} "
        f"({report.get('state', '?')}), reports endpoint {report.get('endpoint', '?')}",
        f"  predecessors  {', '.join(report.get('predecessors') or ['none'])}",
        f"  successors    {', '.join(report.get('successors') or ['none'])}",
        f"  records       {report.get('records', 0)} stored, {report.get('cached', 0)} cached; "
        f"{report.get('fingers', 0)} distinct fingers",
    ]
    if "counters" not in report or "activity" not in report:
        lines.append("  counters      (some left out to fit the report in 1,024 bytes)")
    if counters:
        width = max(len(name) for name in counters)
        lines.append("  counters")
        lines.extend(f"    {name:<{width}}  {value}" for name, value in counters.items())
    return "\n".join(lines)
