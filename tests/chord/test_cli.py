"""The asyncio adapter on real loopback sockets, and the command-line entry points.

The in-process tests run three nodes with fast timers (DHT-TIMER-1 lets an
operator shorten them) on 127.0.0.1 or ::1, port 0, and drive them with a
DhtClient.  pytest has no asyncio plugin here: each test calls asyncio.run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ref.chord.aio import DhtClient, NodeServer, endpoint_of, start_node
from ref.chord.cli import (
    EXIT_NO_ANSWER,
    EXIT_USAGE,
    dht_main,
    node_main,
    record_endpoint,
)
from ref.chord.client import Stored
from ref.chord.exchange import Failure, Found, LookupResult, NotRegistered
from ref.chord.node import NodeConfig, NodeState
from ref.keys import public_key_text
from ref.wire.errors import ErrorCode, LocalProtocolError
from ref.wire.ids import key_bound_service_id, service_id_for_name
from ref.wire.records import RecordEndpoint, public_key_bytes

FAST = NodeConfig(stabilize_interval=0.5, check_predecessor_interval=0.5, fix_fingers_interval=1.0)
#: A bound on how long a converging loopback ring may take; reaching it is a failure.
PATIENCE = 20.0


def _can_bind(host: str) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.bind((host, 0))
    except OSError:
        return False
    return True


def _unused_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- argument errors and key files -------------------------------------------------------


def _exit_status(main: Callable[[list[str]], Any], argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    code = exited.value.code
    assert isinstance(code, int)
    return code


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--listen", "localhost:54325"],
        ["--listen", "127.0.0.1"],
        ["--listen", "::1:54325"],
        ["--listen", "[127.0.0.1]:1"],
        ["--listen", "127.0.0.1:65536"],
        ["--listen", "0.0.0.0:54325"],  # creates a ring on a wildcard address
        ["--listen", "127.0.0.1:0", "--bootstrap", "127.0.0.1:0"],
        ["--listen", "127.0.0.1:0", "--successors", "2"],
        ["--listen", "127.0.0.1:0", "--successors", "3", "--replicas", "4"],
        ["--listen", "127.0.0.1:0", "--stabilize-interval", "soon"],
        ["--listen", "127.0.0.1:0", "--unknown"],
    ],
)
def test_serval_node_refuses_bad_arguments_in_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _exit_status(node_main, argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("serval-node: error: ")
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["resolve", "printer.example"],  # no --via
        ["--via", "127.0.0.1:54325", "frobnicate"],
        ["--via", "127.0.0.1:54325", "resolve"],
        ["--via", "127.0.0.1:54325", "resolve", "bad name"],
        ["--via", "127.0.0.1:54325", "resolve", "a..b"],
        ["--via", "127.0.0.1:54325", "resolve", "x@notakey"],
        ["--via", "127.0.0.1:54325", "resolve", "x", "--index", "8"],
        ["--via", "127.0.0.1", "resolve", "x"],
        ["--via", "127.0.0.1:54325", "register", "x", "--key", "k"],  # no --endpoint
        ["--via", "127.0.0.1:54325", "register", "x", "--endpoint", "127.0.0.1:80"],  # no --key
        ["--via", "127.0.0.1:54325", "register", "x", "--endpoint", "127.0.0.1:80,weight=0"],
        ["--via", "127.0.0.1:54325", "register", "x", "--endpoint", "127.0.0.1:80,color=red"],
        ["--via", "127.0.0.1:54325", "register", "x", "--endpoint", "127.0.0.1:0", "--key", "k"],
        ["--via", "127.0.0.1:54325", "unregister", "x", "--key", "k", "--ttl", "0"],
        ["--via", "127.0.0.1:54325", "--timeout", "-1", "status"],
    ],
)
def test_serval_dht_refuses_bad_arguments_in_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _exit_status(dht_main, argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("serval-dht")
    assert ": error: " in err
    assert err.count("\n") == 1


def test_endpoint_syntax() -> None:
    parsed = record_endpoint("[::1]:8080,weight=3,priority=2,mask=0x3")
    assert parsed == RecordEndpoint(ipaddress.ip_address("::1"), 8080, 2, 3, 0x03)
    assert record_endpoint("192.0.2.1:80") == RecordEndpoint(ipaddress.ip_address("192.0.2.1"), 80)


@pytest.mark.parametrize("command", ["node", "register", "unregister"])
def test_a_corrupt_key_file_is_refused_naming_its_path(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "corrupt.key"
    key.write_text("-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n")
    via = ["--via", "127.0.0.1:54325"]
    argv = {
        "node": ["--listen", "127.0.0.1:0", "--key", str(key)],
        "register": [*via, "register", "x", "--endpoint", "127.0.0.1:80", "--key", str(key)],
        "unregister": [*via, "unregister", "x", "--key", str(key)],
    }[command]
    main = node_main if command == "node" else dht_main
    assert _exit_status(main, argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert str(key) in err
    assert "corrupt" in err
    assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----\nnot base64")  # untouched


def test_unregister_needs_an_existing_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "missing.key"
    argv = ["--via", "127.0.0.1:54325", "unregister", "x", "--key", str(key)]
    assert _exit_status(dht_main, argv) == EXIT_USAGE
    assert f"key file {key} does not exist" in capsys.readouterr().err
    assert not key.exists()


def test_register_creates_the_owner_key_with_mode_0600(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "owner.key"
    nobody = f"127.0.0.1:{_unused_port()}"
    argv = ["--via", nobody, "--timeout", "0.3", "register", "printer.example"]
    argv += ["--endpoint", "127.0.0.1:631", "--key", str(key)]
    assert _exit_status(dht_main, argv) == EXIT_NO_ANSWER
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    err = capsys.readouterr().err
    assert f"created owner key file {key}" in err
    assert "no answer" in err


# --- nodes and clients on loopback sockets -------------------------------------------------


async def _wait_for(condition: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    give_up = loop.time() + PATIENCE
    while not condition():
        if loop.time() > give_up:
            pytest.fail(f"no {what} within {PATIENCE} s")
        await asyncio.sleep(0.05)


def _ring_is_stable(servers: list[NodeServer]) -> bool:
    """Every node's successor and predecessor lists are complete and true.

    Registering before the predecessor lists are complete is allowed, but a
    replica then refuses a REPLICATE until the list is learned (Section 6.8),
    and a test that leaves at once would race with those retries.
    """
    ids = sorted(server.node.id for server in servers)
    count = len(ids)
    for server in servers:
        node = server.node
        if node.state is not NodeState.MEMBER:
            return False
        at = ids.index(node.id)
        successors = [ids[(at + i) % count] for i in range(1, count)]
        predecessors = [ids[(at - i) % count] for i in range(1, count)]
        if [p.id for p in node.successors] != successors[: node.config.successors]:
            return False
        if [p.id for p in node.predecessors] != predecessors[: node.config.replicas]:
            return False
    return True


def _true_successor(servers: list[NodeServer], block: bytes) -> int:
    target = int.from_bytes(block, "big")
    ids = sorted(server.node.id for server in servers)
    return next((i for i in ids if i >= target), ids[0])


async def _three_nodes(host: str, config: NodeConfig) -> list[NodeServer]:
    first = await start_node(host, 0, key=Ed25519PrivateKey.generate(), config=config)
    servers = [first]
    try:
        for _ in range(2):
            servers.append(
                await start_node(
                    host,
                    0,
                    key=Ed25519PrivateKey.generate(),
                    bootstrap=[first.endpoint],
                    config=config,
                )
            )
        for server in servers:
            assert await server.wait_joined(PATIENCE)
        await _wait_for(lambda: _ring_is_stable(servers), "stable ring")
    except BaseException:
        for server in servers:
            server.close()
        raise
    return servers


def _run_with_ring(
    host: str,
    scenario: Callable[[list[NodeServer]], Awaitable[None]],
    config: NodeConfig = FAST,
) -> None:
    async def main() -> None:
        servers = await _three_nodes(host, config)
        try:
            await scenario(servers)
        finally:
            for server in servers:
                server.close()
            await asyncio.sleep(0)  # let the transports close their sockets

    asyncio.run(main())


def _endpoint(text: str, port: int) -> RecordEndpoint:
    return RecordEndpoint(ipaddress.ip_address(text), port, priority=1, weight=5)


async def _register_resolve_unregister(servers: list[NodeServer], address: str) -> None:
    owner = Ed25519PrivateKey.generate()
    service = [_endpoint(address, 631)]
    client = await DhtClient.connect([servers[0].endpoint, servers[1].endpoint])
    try:
        stored = await client.register("Printer.Example", service, owner, ttl=600)
        assert isinstance(stored, Stored)
        base = service_id_for_name("printer.example")
        # DHT-REPL-4: with k = 3 and three nodes, every node holds the record.
        await _wait_for(lambda: _replicated(servers, ["printer.example"], 3), "replication")

        found = await client.resolve("printer.example")
        assert isinstance(found, Found)
        assert found.record.endpoints == tuple(service)
        assert found.record.owner_key == public_key_bytes(owner)
        assert found.record.sequence == stored.sequence

        lookup = await client.lookup(base)
        assert isinstance(lookup, LookupResult)
        assert lookup.nodes[0].id == _true_successor(servers, base)

        # A second owner cannot take the name (first come, first served).
        intruder = await client.register("printer.example", service, Ed25519PrivateKey.generate())
        assert isinstance(intruder, Failure)
        assert intruder.code is ErrorCode.NOT_OWNER

        # An update by the owner carries a higher Sequence (DHT-REC-1).
        again = await client.register("printer.example", service, owner, ttl=600)
        assert isinstance(again, Stored)
        assert again.sequence > stored.sequence

        deleted = await client.unregister("printer.example", owner, ttl=60)
        assert isinstance(deleted, Stored)
        gone = await client.resolve("printer.example")
        assert isinstance(gone, NotRegistered)
        assert gone.tombstone is not None
        assert gone.tombstone.is_tombstone

        never = await client.resolve("scanner.example")
        assert isinstance(never, NotRegistered)
        assert never.tombstone is None

        for server in servers:
            report = await client.status(server.endpoint)
            assert isinstance(report, dict)
            assert report["state"] == "member"
            assert int(report["node_id"], 16) == server.node.id
            assert report["records"] == 1  # the tombstone
            assert report["activity"]["request.STATUS"] >= 1
    finally:
        client.close()


def test_three_nodes_on_ipv4_loopback() -> None:
    async def scenario(servers: list[NodeServer]) -> None:
        for server in servers:
            assert server.endpoint.address == ipaddress.ip_address("127.0.0.1")
            assert server.endpoint.port != 0
        await _register_resolve_unregister(servers, "127.0.0.1")

    _run_with_ring("127.0.0.1", scenario)


def test_three_nodes_on_ipv6_loopback() -> None:
    if not _can_bind("::1"):
        pytest.skip("no IPv6 loopback address on this host")

    async def scenario(servers: list[NodeServer]) -> None:
        assert all(s.endpoint.address == ipaddress.ip_address("::1") for s in servers)
        await _register_resolve_unregister(servers, "::1")

    _run_with_ring("::1", scenario)


def test_key_bound_names_and_addresses_proved_by_token() -> None:
    """name@key resolves only to records of that key; other addresses need tokens."""
    if not _can_bind("127.0.0.2"):
        pytest.skip("this host cannot send from 127.0.0.2")

    async def scenario(servers: list[NodeServer]) -> None:
        owner = Ed25519PrivateKey.generate()
        name = f"backup.example@{public_key_text(owner)}"
        # 127.0.0.2 is not the address the nodes see the client at (127.0.0.1):
        # the client proves it with PINGs sent from it (DHT-TOKEN-6).
        service = [_endpoint("127.0.0.1", 80), _endpoint("127.0.0.2", 80)]
        client = await DhtClient.connect([servers[0].endpoint])
        try:
            stored = await client.register(name, service, owner)
            assert isinstance(stored, Stored)
            found = await client.resolve(name)
            assert isinstance(found, Found)
            base = key_bound_service_id(public_key_bytes(owner), "backup.example")
            assert found.record.service_id == base
            assert found.record.endpoints == tuple(service)
            assert isinstance(await client.resolve(base), Found)  # by serviceID

            other = f"backup.example@{public_key_text(Ed25519PrivateKey.generate())}"
            assert isinstance(await client.resolve(other), NotRegistered)
            with pytest.raises(LocalProtocolError, match="at least one endpoint"):
                await client.register(name, [], owner)  # not a tombstone by accident
            with pytest.raises(LocalProtocolError, match="bound to another key"):
                await client.register(other, service, owner)
            # TEST-NET-1 is no address of this host: no token can be had for it.
            with pytest.raises(LocalProtocolError, match="cannot send from it"):
                await client.register("x.example", [_endpoint("192.0.2.1", 80)], owner)
        finally:
            client.close()

    _run_with_ring("127.0.0.1", scenario)


def test_graceful_leave_keeps_every_record_on_k_nodes() -> None:
    """k = 2 of three nodes: after one leaves, both others hold every record."""

    async def scenario(servers: list[NodeServer]) -> None:
        owner = Ed25519PrivateKey.generate()
        ids = sorted(server.node.id for server in servers)

        def first_replica(block: int) -> int:  # the block's successor on the ring
            return next((node_id for node_id in ids if node_id >= block), ids[0])

        # The node IDs come from fresh keys: take names until each node that may leave
        # heads a block (twelve at least), so the handover below is never empty.
        names: list[str] = []
        while len(names) < 12 or not all(
            any(first_replica(block) == server.node.id for block in _blocks(names))
            for server in servers[1:]
        ):
            names.append(f"service-{len(names)}.example")

        def heads(server: NodeServer) -> int:
            return sum(first_replica(block) == server.node.id for block in _blocks(names))

        # The leaver hands over the blocks it heads (DHT-REPL-13); the client's node stays.
        leaver = max(servers[1:], key=heads)
        assert heads(leaver) > 0
        rest = [server for server in servers if server is not leaver]
        client = await DhtClient.connect([servers[0].endpoint])
        try:
            for name in names:
                stored = await client.register(name, [_endpoint("127.0.0.1", 80)], owner)
                assert isinstance(stored, Stored)
            await _wait_for(lambda: _replicated(servers, names, 2), "replication")
            assert await leaver.leave(PATIENCE)
            assert leaver.node.state is NodeState.LEFT
            leaver.close()
            await _wait_for(lambda: _replicated(rest, names, 2), "records on both other nodes")
            for name in names:
                assert isinstance(await client.resolve(name), Found), name
        finally:
            client.close()

    _run_with_ring("127.0.0.1", scenario, dataclasses.replace(FAST, replicas=2))


def test_a_client_that_knows_every_node_follows_refer_answers() -> None:
    """Section 6.9.1: after a REFER the walk asks the referred replica next.

    With k = 1 the node just before a block refers to the one replica, which
    answers FOUND: two requests, however many other nodes the client knows.
    The registrant, which learned the replica from its lookup, asks it first
    and needs one (DHT-RES-10).
    """

    async def scenario(servers: list[NodeServer]) -> None:
        owner = Ed25519PrivateKey.generate()
        endpoints = [server.endpoint for server in servers]
        registrant = await DhtClient.connect(endpoints)
        try:
            for index in range(8):
                name = f"walk-{index}.example"
                stored = await registrant.register(name, [_endpoint("127.0.0.1", 80)], owner)
                assert isinstance(stored, Stored)
                resolver = await DhtClient.connect(endpoints)
                try:
                    found = await resolver.resolve(name)
                finally:
                    resolver.close()
                assert isinstance(found, Found)
                assert found.hops == 2
                again = await registrant.resolve(name)
                assert isinstance(again, Found) and again.hops == 1
        finally:
            registrant.close()

    _run_with_ring("127.0.0.1", scenario, dataclasses.replace(FAST, replicas=1))


def _replicated(servers: list[NodeServer], names: list[str], copies: int) -> bool:
    """Every name's record is stored on ``copies`` of the servers."""
    return all(
        sum(bool(s.node.store.get(service_id_for_name(n), s.node.now)) for s in servers) == copies
        for n in names
    )


def _blocks(names: list[str]) -> list[int]:
    return [int.from_bytes(service_id_for_name(name), "big") for name in names]


def test_endpoints_of_ipv4_mapped_sources_are_ipv4() -> None:
    assert endpoint_of("::ffff:192.0.2.7", 9) == endpoint_of("192.0.2.7", 9)
    assert endpoint_of("::1", 9).address.version == 6
