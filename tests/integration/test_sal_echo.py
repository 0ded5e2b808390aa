"""The echo example over real sockets: SAL stacks that resolve and register through a
ServalDHT ring (DhtResolver), on loopback, port 0 everywhere.

Each test starts its own three-node ring in-process (start_node, operator-fast
timers, DHT-TIMER-1) and SAL stacks whose resolver is a DhtResolver: binding
registers by editing the block's record with the shared owner key
(SAL-TBL-23), and a client's default DELAY rule resolves the name and installs
the record's endpoints as FORWARD rules (SAL-TBL-18, SAL-TBL-19).  The last
test runs the migration between network namespaces when the machine allows it.

No assertion depends on timing; ``pytest -s`` prints the figures (the 50 MB
transfer's time and throughput).  pytest has no asyncio plugin here: each
test calls asyncio.run with an overall limit that only guards against a hang.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ref.chord.aio import DhtClient, DhtResolver, NodeServer, start_node
from ref.chord.exchange import Found
from ref.chord.node import NodeConfig, NodeState
from ref.sal.aio import SalServer, SalStack
from ref.sal.flow import Event, State
from ref.sal.resolver import Registration
from ref.wire.records import ServiceRecord
from ref.wire.sal import Endpoint

ROOT = Path(__file__).resolve().parents[2]
ECHO = "echo.example"
FAST = NodeConfig(stabilize_interval=0.5, check_predecessor_interval=0.5, fix_fingers_interval=1.0)
PATIENCE = 20.0  # a converging loopback ring takes far less; reaching it is a failure
LIMIT = 50.0  # per test: a hang guard only
CONNECTIONS = 200
TRANSFER = 50 << 20
CHUNK = 1 << 16


def run(main: Awaitable[None], limit: float = LIMIT) -> None:
    asyncio.run(asyncio.wait_for(main, limit))


def _can_bind(host: str) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.bind((host, 0))
    except OSError:
        return False
    return True


# --- the ring, replicas and clients ---------------------------------------------------------


async def _ring() -> list[NodeServer]:
    """Three nodes on 127.0.0.1 whose successor and predecessor lists are complete."""
    first = await start_node("127.0.0.1", 0, key=Ed25519PrivateKey.generate(), config=FAST)
    nodes = [first]
    try:
        for _ in range(2):
            nodes.append(
                await start_node(
                    "127.0.0.1",
                    0,
                    key=Ed25519PrivateKey.generate(),
                    bootstrap=[first.endpoint],
                    config=FAST,
                )
            )
        give_up = time.monotonic() + PATIENCE
        while not _stable(nodes):
            if time.monotonic() > give_up:
                pytest.fail(f"the ring did not stabilize within {PATIENCE} s")
            await asyncio.sleep(0.05)
    except BaseException:
        for node in nodes:
            node.close()
        raise
    return nodes


def _stable(nodes: list[NodeServer]) -> bool:
    ids = sorted(node.node.id for node in nodes)
    for node in nodes:
        if node.node.state is not NodeState.MEMBER:
            return False
        at = ids.index(node.node.id)
        others = [ids[(at + i) % len(ids)] for i in range(1, len(ids))]
        if [peer.id for peer in node.node.successors] != others:
            return False
        if [peer.id for peer in node.node.predecessors] != others[::-1]:
            return False
    return True


class CountingResolver:
    """A DhtResolver that counts the resolutions the SAL asks of it."""

    def __init__(self, inner: DhtResolver) -> None:
        self.inner = inner
        self.resolutions = 0

    async def resolve(self, service_id: bytes) -> ServiceRecord | None:
        self.resolutions += 1
        return await self.inner.resolve(service_id)

    async def register(self, registration: Registration) -> None:
        await self.inner.register(registration)

    async def unregister(self, registration: Registration) -> None:
        await self.inner.unregister(registration)


class Replica:
    """A SAL stack that serves ECHO with one weight and counts what it accepts."""

    def __init__(self, stack: SalStack, resolver: DhtResolver, weight: int) -> None:
        self.stack = stack
        self.resolver = resolver
        self.weight = weight
        self.accepted = 0
        self.server: SalServer | None = None

    @classmethod
    async def start(cls, nodes: list[NodeServer], owner: Ed25519PrivateKey, weight: int) -> Replica:
        resolver = await DhtResolver.connect(_endpoints(nodes), owner, host="127.0.0.1")
        stack = await SalStack.start([("127.0.0.1", 0)], resolver=resolver)
        replica = cls(stack, resolver, weight)
        replica.server = await stack.start_server(replica.echo, ECHO, weight=weight)
        return replica

    @property
    def endpoint(self) -> Endpoint:
        return self.stack.endpoints[0]

    async def echo(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        writer.close()

    def crash(self) -> None:
        """Stop without a word: the stack forgets its resolver, so nothing is withdrawn."""
        self.stack.resolver = None
        self.stack.close()
        self.resolver.close()

    async def close(self) -> None:
        self.stack.close()
        await asyncio.wait_for(self.stack.wait_closed(), PATIENCE)
        self.resolver.close()


def _endpoints(nodes: list[NodeServer]) -> list[Endpoint]:
    return [node.endpoint for node in nodes]


async def _client(
    nodes: list[NodeServer], interfaces: list[tuple[str, int]] | None = None
) -> tuple[SalStack, CountingResolver]:
    inner = await DhtResolver.connect(_endpoints(nodes), host="127.0.0.1")
    resolver = CountingResolver(inner)
    stack = await SalStack.start(interfaces or [("127.0.0.1", 0)], resolver=resolver)
    return stack, resolver


async def _record(nodes: list[NodeServer]) -> ServiceRecord:
    client = await DhtClient.connect(_endpoints(nodes), host="127.0.0.1")
    try:
        found = await client.resolve(ECHO)
    finally:
        client.close()
    assert isinstance(found, Found), found
    return found.record


def _weights(record: ServiceRecord) -> dict[int, int]:
    return {entry.port: entry.weight for entry in record.endpoints}


async def _round_trip(stack: SalStack) -> int:
    """Connect to ECHO by name, echo a message, close; the replica's port."""
    reader, writer = await stack.open_connection(ECHO)
    writer.write(b"ping")
    assert await reader.readexactly(4) == b"ping"
    writer.write_eof()
    assert await reader.read() == b""
    port: int = writer.get_extra_info("peername")[1]
    writer.close()
    return port


def _with_ring(
    scenario: Callable[[list[NodeServer]], Awaitable[None]], limit: float = LIMIT
) -> None:
    async def main() -> None:
        nodes = await _ring()
        try:
            await scenario(nodes)
        finally:
            for node in nodes:
                node.close()
            await asyncio.sleep(0)

    run(main(), limit)


# --- load spread by weight ---------------------------------------------------------------------


def test_two_replicas_share_the_load_by_weight_sal_tbl_23_sal_tbl_6() -> None:
    """Weights 1 and 3 in one record; 200 connections split within a binomial bound.

    The client resolves once: its DELAY rule installs the record's two FORWARD
    rules (SAL-TBL-19) and every later SYN makes its own weighted choice among
    them (SAL-TBL-6 step 4), which is what spreads the load.
    """

    async def scenario(nodes: list[NodeServer]) -> None:
        owner = Ed25519PrivateKey.generate()
        light = await Replica.start(nodes, owner, 1)
        heavy = await Replica.start(nodes, owner, 3)
        client, resolver = await _client(nodes)
        try:
            # Both bind at once: each edit reads the record back (Section 5.6.4).
            await asyncio.gather(light.stack.registered(), heavy.stack.registered())
            record = await _record(nodes)
            assert _weights(record) == {light.endpoint.port: 1, heavy.endpoint.port: 3}

            seen = Counter([await _round_trip(client) for _ in range(CONNECTIONS)])
            assert resolver.resolutions == 1
            assert seen == {
                light.endpoint.port: light.accepted,
                heavy.endpoint.port: heavy.accepted,
            }
            expected, spread = CONNECTIONS * 3 / 4, math.sqrt(CONNECTIONS * 3 / 4 * 1 / 4)
            assert abs(heavy.accepted - expected) <= 4 * spread, seen
            print(
                f"\n{CONNECTIONS} connections: weight 3 took {heavy.accepted}, weight 1 took "
                f"{light.accepted} (expected {expected:g} +- {4 * spread:.1f})"
            )
        finally:
            client.close()
            resolver.inner.close()
            await light.close()
            await heavy.close()

    _with_ring(scenario)


# --- a replica dies ------------------------------------------------------------------------------

BATCH = 12
#: The SAL fails a SYN after 8 retransmissions, about 243 s with RTOs of 1, 2, 4 ... 60 s;
#: the hang guard of this test lies beyond, so only that limit can fail a connection.
#: A run takes a few seconds: a SYN that went to the dead replica is retransmitted
#: once, after 1 s, to the survivor (SAL-CONN-21).
SURVIVOR_LIMIT = 300.0


def test_new_connections_reach_the_survivor_when_a_replica_dies_sal_conn_3_21() -> None:
    """The weight-1 replica crashes; every new connection ends up at the weight-3 one.

    What happens: the dead replica withdrew nothing, so the record and the
    client's FORWARD rules still list it.  A SYN sent there meets a closed UDP
    port; the kernel's ICMP port-unreachable is not reported on an unconnected
    socket, so the client hears nothing and retransmits the SYN after its RTO
    (1 s, then doubling), and every retransmission looks the serviceID up again
    (SAL-CONN-3) and, while the priority set holds an instance it has not
    tried, chooses among those (SAL-CONN-21): the first retransmission of a
    SYN that went to the dead replica reaches the survivor.  Every connection
    must succeed within the SAL's own retransmission limit (SAL-CTRL-16),
    which fails it with TimeoutError otherwise.  The test runs batches of
    concurrent connections until at least one SYN went to the dead replica and
    was retransmitted.
    """

    async def scenario(nodes: list[NodeServer]) -> None:
        owner = Ed25519PrivateKey.generate()
        light = await Replica.start(nodes, owner, 1)
        heavy = await Replica.start(nodes, owner, 3)
        client, resolver = await _client(nodes)
        try:
            await asyncio.gather(light.stack.registered(), heavy.stack.registered())
            while not light.accepted or not heavy.accepted:  # both serve, rules installed
                await _round_trip(client)

            light.crash()
            await light.stack.wait_closed()
            assert light.endpoint.port in _weights(await _record(nodes))  # still listed

            retransmitted = client.host.transitions[(State.REQUEST, Event.RTO)]
            before = heavy.accepted
            reached: list[int] = []
            for _ in range(5):
                reached += await asyncio.gather(*(_round_trip(client) for _ in range(BATCH)))
                if client.host.transitions[(State.REQUEST, Event.RTO)] > retransmitted:
                    break
            syn_retransmissions = client.host.transitions[(State.REQUEST, Event.RTO)]
            assert syn_retransmissions > retransmitted
            assert set(reached) == {heavy.endpoint.port}
            assert heavy.accepted - before == len(reached)
            print(
                f"\n{len(reached)} connections after the crash, all at the survivor; "
                f"{syn_retransmissions - retransmitted} SYN retransmissions"
            )
        finally:
            client.close()
            resolver.inner.close()
            await heavy.close()

    _with_ring(scenario, SURVIVOR_LIMIT)


# --- migration in the middle of a transfer --------------------------------------------------------


async def _digest(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read to the end; answer with the length and the SHA-256 of what arrived."""
    hasher, count = hashlib.sha256(), 0
    while data := await reader.read(1 << 20):
        hasher.update(data)
        count += len(data)
    writer.write(count.to_bytes(8, "big") + hasher.digest())
    writer.close()


def test_flow_moves_to_another_address_during_a_50_mb_transfer_sal_mig_4_sal_stream_12() -> None:
    """Connect by name from 127.0.0.1, move to 127.0.0.2 half-way; SHA-256 checked."""
    if not _can_bind("127.0.0.2"):
        pytest.skip("this host cannot bind 127.0.0.2")

    async def scenario(nodes: list[NodeServer]) -> None:
        owner = Ed25519PrivateKey.generate()
        resolver = await DhtResolver.connect(_endpoints(nodes), owner, host="127.0.0.1")
        server = await SalStack.start([("127.0.0.1", 0)], resolver=resolver)
        peers: list[asyncio.StreamWriter] = []

        async def digest(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peers.append(writer)
            await _digest(reader, writer)

        await server.start_server(digest, ECHO)
        client, client_resolver = await _client(nodes, [("127.0.0.1", 0), ("127.0.0.2", 0)])
        try:
            await server.registered()
            old, new = client.endpoints
            data = os.urandom(TRANSFER)
            view, half = memoryview(data), TRANSFER // 2
            started = time.perf_counter()
            reader, writer = await client.open_connection(ECHO)
            assert writer.get_extra_info("sockname") == ("127.0.0.1", old.port)
            for offset in range(0, TRANSFER, CHUNK):
                if offset == half:  # about 1 MB is in flight (the send buffer)
                    client.migrate(writer, new)
                writer.write(view[offset : offset + CHUNK])
                await writer.drain()
            writer.write_eof()
            answer = await reader.readexactly(40)
            elapsed = time.perf_counter() - started
            assert int.from_bytes(answer[:8], "big") == TRANSFER
            assert answer[8:] == hashlib.sha256(data).digest()
            assert writer.get_extra_info("sockname") == ("127.0.0.2", new.port)
            assert peers[0].get_extra_info("peername") == ("127.0.0.2", new.port)
            assert client.host.activity["migrations"] == 1
            writer.close()
            print(
                f"\n{TRANSFER >> 20} MB with a migration: {elapsed:.2f} s, "
                f"{TRANSFER / elapsed / 1e6:.1f} MB/s"
            )
        finally:
            client.close()
            client_resolver.inner.close()
            server.close()
            await asyncio.wait_for(server.wait_closed(), PATIENCE)
            resolver.close()

    _with_ring(scenario)


# --- the same between network namespaces ------------------------------------------------------

SERVER_PROGRAM = """
import asyncio, hashlib, sys
from ref.sal.aio import SalStack

async def digest(reader, writer):
    hasher, count = hashlib.sha256(), 0
    while data := await reader.read(1 << 20):
        hasher.update(data)
        count += len(data)
    writer.write(count.to_bytes(8, "big") + hasher.digest())
    writer.close()

async def main():
    stack = await SalStack.start([(sys.argv[1], 0)])
    await stack.start_server(digest, "echo.example")
    print("port", stack.endpoints[0].port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until told
    stack.close()

asyncio.run(main())
"""

CLIENT_PROGRAM = """
import asyncio, hashlib, json, os, sys, time
from ref.sal.aio import SalStack

async def main():
    old, new, server, port, size = sys.argv[1:6]
    size = int(size)
    stack = await SalStack.start([(old, 0), (new, 0)])
    stack.add_route("echo.example", (server, int(port)))
    data = os.urandom(size)
    view = memoryview(data)
    started = time.perf_counter()
    reader, writer = await stack.open_connection("echo.example")
    before = writer.get_extra_info("sockname")
    loop = asyncio.get_running_loop()
    told = loop.run_in_executor(None, sys.stdin.readline)

    async def send():
        for offset in range(0, size, 1 << 16):
            if offset == size // 2:
                print("half", flush=True)
            writer.write(view[offset : offset + (1 << 16)])
            await writer.drain()
        writer.write_eof()

    sending = asyncio.ensure_future(send())
    await told  # the old address is gone: move the flows off it (Section 5.10)
    stack.remove_interface((old, stack.endpoints[0].port))
    answer = await reader.readexactly(40)
    await sending
    elapsed = time.perf_counter() - started
    print(json.dumps({
        "length": int.from_bytes(answer[:8], "big"),
        "intact": answer[8:] == hashlib.sha256(data).digest(),
        "before": before,
        "after": writer.get_extra_info("sockname"),
        "seconds": elapsed,
    }), flush=True)
    writer.close()
    stack.close()

asyncio.run(main())
"""


def _ip(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *argv], capture_output=True, text=True, check=False, timeout=20)


def _must(*argv: str) -> None:
    done = _ip(*argv)
    assert done.returncode == 0, f"ip {' '.join(argv)}: {done.stderr.strip()}"


def _netns_problem() -> str | None:
    """Why this machine cannot run the namespace test, or None if it can."""
    if shutil.which("ip") is None:
        return "no ip command"
    if os.geteuid() != 0:
        return "network namespaces need root"
    trial = f"svtrial{os.getpid()}"
    added = _ip("netns", "add", trial)
    if added.returncode != 0:
        return f"ip netns add failed: {added.stderr.strip()}"
    _ip("netns", "del", trial)
    return None


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str]]:
    """Namespaces S (server) and C (client) joined by two veth pairs; removed afterwards.

    S holds the server's address 10.77.0.1 on its loopback and 10.77.1.1 and
    10.77.2.1 on the two links; C holds 10.77.1.2 and 10.77.2.2 and reaches
    10.77.0.1 over the first link.
    """
    problem = _netns_problem()
    if problem is not None:
        pytest.skip(problem)
    tag = f"sv{os.getpid()}"
    server, client = f"{tag}s", f"{tag}c"
    made: list[str] = []
    try:
        for name in (server, client):
            _must("netns", "add", name)
            made.append(name)
        for link in (1, 2):
            s_end, c_end = f"{tag}s{link}", f"{tag}c{link}"
            _must(
                "link",
                "add",
                s_end,
                "netns",
                server,
                "type",
                "veth",
                "peer",
                "name",
                c_end,
                "netns",
                client,
            )
            _must("-n", server, "addr", "add", f"10.77.{link}.1/24", "dev", s_end)
            _must("-n", client, "addr", "add", f"10.77.{link}.2/24", "dev", c_end)
            _must("-n", server, "link", "set", s_end, "up")
            _must("-n", client, "link", "set", c_end, "up")
        _must("-n", server, "link", "set", "lo", "up")
        _must("-n", server, "addr", "add", "10.77.0.1/32", "dev", "lo")
        _must("-n", client, "link", "set", "lo", "up")
        _must("-n", client, "route", "add", "10.77.0.1/32", "via", "10.77.1.1")
        yield server, client
    finally:
        for name in made:
            _ip("netns", "del", name)


def _in_namespace(namespace: str, program: str, *argv: str) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.Popen(
        ["ip", "netns", "exec", namespace, sys.executable, "-c", program, *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _line(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        _, err = process.communicate(timeout=PATIENCE)
        pytest.fail(f"the program in the namespace ended: {err[-800:]}")
    return line.strip()


def test_migration_between_namespaces_with_a_real_address_change_sal_mig_4(
    namespaces: tuple[str, str],
) -> None:
    """The client's address 10.77.1.2 is deleted and its link taken down mid-transfer.

    The route to the server moves to the second link, and the client gives up
    the old endpoint (SAL-TBL-23): its flow migrates to 10.77.2.2 by RSYN and
    the transfer completes, SHA-256 checked.
    """
    server_ns, client_ns = namespaces
    processes: list[subprocess.Popen[str]] = []
    try:
        server = _in_namespace(server_ns, SERVER_PROGRAM, "10.77.0.1")
        processes.append(server)
        port = _line(server).split()[1]
        client = _in_namespace(
            client_ns, CLIENT_PROGRAM, "10.77.1.2", "10.77.2.2", "10.77.0.1", port, str(TRANSFER)
        )
        processes.append(client)
        assert _line(client) == "half"
        tag = server_ns[:-1]
        _must("-n", client_ns, "addr", "del", "10.77.1.2/24", "dev", f"{tag}c1")
        _must("-n", client_ns, "link", "set", f"{tag}c1", "down")
        _must("-n", client_ns, "route", "replace", "10.77.0.1/32", "via", "10.77.2.1")
        assert client.stdin is not None
        client.stdin.write("go\n")
        client.stdin.flush()
        result: dict[str, Any] = json.loads(_line(client))
        assert result["length"] == TRANSFER
        assert result["intact"]
        assert result["before"][0] == "10.77.1.2"
        assert result["after"][0] == "10.77.2.2"
        assert ipaddress.ip_address(result["after"][0]) in ipaddress.ip_network("10.77.2.0/24")
        print(
            f"\nnamespaces: {TRANSFER >> 20} MB with an address change in "
            f"{result['seconds']:.2f} s, {TRANSFER / result['seconds'] / 1e6:.1f} MB/s"
        )
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=PATIENCE)
