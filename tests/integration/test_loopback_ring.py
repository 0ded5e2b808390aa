"""Sixteen serval-node processes on 127.0.0.1: register and resolve through serval-dht,
crash a third of the nodes with SIGKILL, and resolve every name again.

The nodes run with ``--stabilize-interval 1`` (an operator option, DHT-TIMER-1)
so that the ring forms in a few seconds; every other value is the default,
including the 1-second request timeout with 2 retries.  The draft's repair
budget after a crash is about 3 s of retries, plus a stabilization round and
a predecessor check; the test allows 20 s for every name to resolve again and
prints how long it took (``pytest -s`` shows it).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ref.chord.aio import DhtClient
from ref.chord.exchange import Failure
from ref.wire.ids import service_id_for_name
from ref.wire.sal import Endpoint

ROOT = Path(__file__).resolve().parents[2]
NODES = 16
NAMES = [f"svc-{i}.loopback.example" for i in range(6)]
REPLICAS = 3  # the default k
SUCCESSORS = 8  # the default r
STABILIZE = "1"
FORM_DEADLINE = 40.0  # the ring forms and replication completes
RESOLVE_DEADLINE = 20.0  # after the crash, every name resolves again
LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
LOOPBACK = ipaddress.ip_address("127.0.0.1")


def _python(entry: str) -> list[str]:
    return [sys.executable, "-c", f"from ref.chord.cli import {entry}; {entry}()"]


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


class Node:
    """One serval-node process, its output in files."""

    def __init__(self, directory: Path, index: int, bootstrap: list[int]) -> None:
        self.index = index
        self.out = directory / f"node{index}.out"
        self.err = directory / f"node{index}.err"
        argv = [*_python("node_main"), "--listen", "127.0.0.1:0"]
        argv += ["--key", str(directory / f"node{index}.key"), "--stabilize-interval", STABILIZE]
        for port in bootstrap:
            argv += ["--bootstrap", f"127.0.0.1:{port}"]
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.process = subprocess.Popen(argv, stdout=out, stderr=err, env=_environment())
        self.port = 0
        self.node_id = ""

    def read_port(self, deadline: float) -> int:
        while time.monotonic() < deadline:
            match = LISTENING.search(self.out.read_text())
            if match:
                self.port = int(match.group(1))
                return self.port
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        pytest.fail(f"node {self.index} did not start: {self.err.read_text()[-500:]}")

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(LOOPBACK, self.port)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def dht(*argv: str, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_python("dht_main"), "--timeout", f"{timeout:g}", *argv],
        capture_output=True,
        text=True,
        env=_environment(),
        timeout=timeout + 20,
        check=False,
    )


@pytest.fixture
def ring(tmp_path: Path) -> Iterator[list[Node]]:
    nodes: list[Node] = []
    try:
        deadline = time.monotonic() + 30
        nodes.append(Node(tmp_path, 0, []))
        first = nodes[0].read_port(deadline)
        nodes.extend(Node(tmp_path, i, [first]) for i in range(1, NODES))
        for node in nodes[1:]:
            node.read_port(deadline)
        yield nodes
    finally:
        for node in nodes:
            node.stop()


# --- watching the ring through STATUS -------------------------------------------------


async def _reports(nodes: list[Node]) -> list[dict[str, object] | Failure]:
    client = await DhtClient.connect([node.endpoint for node in nodes])
    try:
        return list(await asyncio.gather(*(client.status(node.endpoint) for node in nodes)))
    finally:
        client.close()


def _short_ids(entries: object) -> list[str]:
    assert isinstance(entries, list)
    return [str(entry).split("@")[0] for entry in entries]


def _ring_problems(nodes: list[Node]) -> list[str]:
    """Where the nodes' lists differ from the true ring of ``nodes``."""
    reports = asyncio.run(_reports(nodes))
    ids = sorted(node.node_id for node in nodes)
    count = len(ids)
    problems = []
    for node, report in zip(nodes, reports, strict=True):
        if isinstance(report, Failure):
            problems.append(f"node {node.index}: {report.reason}")
            continue
        node.node_id = str(report["node_id"])
        if not ids[0]:
            continue  # the IDs are being learned
        at = ids.index(node.node_id)
        successors = [ids[(at + i) % count][:16] for i in range(1, min(SUCCESSORS, count - 1) + 1)]
        predecessors = [ids[(at - i) % count][:16] for i in range(1, min(REPLICAS, count - 1) + 1)]
        if _short_ids(report.get("successors")) != successors:
            problems.append(f"node {node.index}: successors {report.get('successors')}")
        if _short_ids(report.get("predecessors")) != predecessors:
            problems.append(f"node {node.index}: predecessors {report.get('predecessors')}")
    return problems


def _wait_for_stable_ring(nodes: list[Node], deadline: float) -> None:
    _ring_problems(nodes)  # learn the node IDs
    while problems := _ring_problems(nodes):
        if time.monotonic() > deadline:
            pytest.fail("the ring did not stabilize: " + "; ".join(problems[:4]))
        time.sleep(0.5)


def _stored_records(nodes: list[Node]) -> int:
    reports = asyncio.run(_reports(nodes))
    return sum(int(str(r["records"])) for r in reports if isinstance(r, dict))


def _replica_set(nodes: list[Node], name: str) -> list[Node]:
    """The k nodes that follow the block base of ``name`` on the true ring (Section 6.8)."""
    target = service_id_for_name(name).hex()
    ranked = sorted(nodes, key=lambda node: (int(node.node_id, 16) - int(target, 16)) % (1 << 256))
    return ranked[:REPLICAS]


def _victims(nodes: list[Node], count: int) -> list[Node]:
    """``count`` nodes to crash, first replicas first, leaving each name one live replica.

    Nodes 0 and 1 (the ones serval-dht is pointed at) survive.
    """
    sets = {name: _replica_set(nodes, name) for name in NAMES}
    heads = {name: members[0].index for name, members in sets.items()}

    def priority(node: Node) -> int:
        return -sum(head == node.index for head in heads.values())

    chosen: list[Node] = []
    for node in sorted(nodes[2:], key=priority):
        trial = {n.index for n in chosen} | {node.index}
        if all(any(m.index not in trial for m in members) for members in sets.values()):
            chosen.append(node)
        if len(chosen) == count:
            return chosen
    pytest.fail("no set of victims leaves every name a replica")


# --- the test -----------------------------------------------------------------------------


def _resolves(via: list[str], name: str, port: int) -> bool:
    result = dht(*via, "resolve", name)
    return result.returncode == 0 and f"127.0.0.1:{port} weight=" in result.stdout


def test_sixteen_nodes_survive_the_crash_of_a_third(ring: list[Node], tmp_path: Path) -> None:
    nodes = ring
    started = time.monotonic()
    _wait_for_stable_ring(nodes, time.monotonic() + FORM_DEADLINE)
    print(f"\nthe ring of {NODES} was exact {time.monotonic() - started:.1f} s after the start")

    via = ["--via", f"127.0.0.1:{nodes[0].port}", "--via", f"127.0.0.1:{nodes[1].port}"]
    owner = tmp_path / "owner.key"
    ports = {name: 20000 + i for i, name in enumerate(NAMES)}
    for i, name in enumerate(NAMES):
        endpoint = f"127.0.0.1:{ports[name]},weight={i + 1},priority=1"
        result = dht(*via, "register", name, "--endpoint", endpoint, "--key", str(owner))
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"registered {name} (sequence ")
    for i, name in enumerate(NAMES):
        result = dht(*via, "resolve", name)
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"127.0.0.1:{ports[name]} weight={i + 1} priority=1\n"
    absent = dht(*via, "resolve", "absent.loopback.example")
    assert absent.returncode == 1
    assert "is not registered" in absent.stderr

    # Every record on its k replicas (DHT-REPL-4) before the crash.
    deadline = time.monotonic() + FORM_DEADLINE
    while (records := _stored_records(nodes)) != REPLICAS * len(NAMES):
        assert records < REPLICAS * len(NAMES)
        if time.monotonic() > deadline:
            pytest.fail(f"{records} records stored, not {REPLICAS} x {len(NAMES)}")
        time.sleep(0.2)

    print(f"registered, resolved and replicated {time.monotonic() - started:.1f} s after")
    victims = _victims(nodes, NODES // 3)
    for victim in victims:
        victim.process.send_signal(signal.SIGKILL)
    crashed = time.monotonic()
    for victim in victims:
        victim.process.wait()

    pending = dict(ports)
    while pending:
        for name, port in list(pending.items()):
            if _resolves(via, name, port):
                del pending[name]
        if pending and time.monotonic() - crashed > RESOLVE_DEADLINE:
            pytest.fail(f"still unresolvable {RESOLVE_DEADLINE:g} s after the crash: {pending}")
    took = time.monotonic() - crashed
    print(f"all {len(NAMES)} names resolved {took:.1f} s after {len(victims)} of {NODES} crashed")

    survivors = [node for node in nodes if node not in victims]
    _wait_for_stable_ring(survivors, time.monotonic() + FORM_DEADLINE)
    print(f"the ring of {len(survivors)} was exact {time.monotonic() - crashed:.1f} s after")

    status = dht(*via, "status")
    assert status.returncode == 0, status.stderr
    assert status.stdout.count("(member)") == 2

    # A graceful stop: SIGTERM makes a node hand its records over and leave.
    leaver = survivors[-1]
    leaver.process.send_signal(signal.SIGTERM)
    assert leaver.process.wait(timeout=15) == 0
    assert "left the ring" in leaver.err.read_text()
