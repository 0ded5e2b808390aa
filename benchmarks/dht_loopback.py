"""Lookups per second and latency: 32 ServalDHT nodes against 32 kademlia nodes.

Both networks run on 127.0.0.1 in the same arrangement: one operating-system
process per node, and one driver process (this script) that stores N keys and
then times lookups, one at a time and 32 at once.  Both networks are up for
the whole run and the timed lookups are split into rounds that alternate the
two systems, so that background load on the machine falls on both alike.

- ServalDHT: 32 ``serval-node`` processes.  The driver is a ``DhtClient``
  configured with all 32 endpoints (DHT-BOOT-5); a lookup is a full
  return-mode resolution (Section 6.9.1) of a signed record, checked by
  DHT-RES-5.  Nodes run with ``--rate-limit`` raised, because every node and
  the driver share the source address 127.0.0.1, and with
  ``--stabilize-interval 1`` so that the ring forms quickly (its maintenance
  traffic runs during the measurement).
- kademlia 2.2.2 (PyPI, ``kademlia.network.Server``): 32 node processes that
  bootstrap from the first; the driver is a kademlia ``Server`` that
  bootstraps from all 32 (kademlia has no client-only mode) and stores
  nothing itself, so that every ``get`` crosses the network.  Defaults
  k = 20, alpha = 3.

Prints a table with the ratios ours/kademlia, writes
``benchmarks/results/dht_loopback.json`` and a bar chart
``benchmarks/results/dht_loopback.png``.

    python benchmarks/dht_loopback.py            # full run (a few minutes)
    python benchmarks/dht_loopback.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import ipaddress
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

import kademlia  # type: ignore[import-untyped]  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from kademlia.network import Server  # type: ignore[import-untyped]  # noqa: E402
from kademlia.storage import ForgetfulStorage  # type: ignore[import-untyped]  # noqa: E402

from ref.chord.aio import DhtClient  # noqa: E402
from ref.chord.client import Stored  # noqa: E402
from ref.chord.exchange import Found  # noqa: E402
from ref.wire.records import RecordEndpoint  # noqa: E402
from ref.wire.sal import Endpoint  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
NODES = 32
CONCURRENCY = (1, 32)
LOOPBACK = "127.0.0.1"
LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
VALUE_PORT = 20000


@dataclasses.dataclass
class Settings:
    nodes: int
    keys: int
    lookups: dict[int, int]  # concurrency -> lookups to time
    warmup: int
    rounds: int  # the lookups are split into rounds that alternate the systems


FULL = Settings(nodes=NODES, keys=256, lookups={1: 1000, 32: 4000}, warmup=64, rounds=5)
QUICK = Settings(nodes=NODES, keys=32, lookups={1: 100, 32: 400}, warmup=16, rounds=2)


# --- progress ---------------------------------------------------------------------------


def status(text: str) -> None:
    """One status line, rewritten in place on a terminal."""
    if sys.stderr.isatty():
        print(f"\r\033[K{text}", end="", file=sys.stderr, flush=True)
    else:
        print(text, file=sys.stderr, flush=True)


def status_done() -> None:
    if sys.stderr.isatty():
        print(file=sys.stderr)


# --- node processes ---------------------------------------------------------------------


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


class Processes:
    """Node processes whose first output line is ``listening on 127.0.0.1:PORT``."""

    def __init__(self, label: str, directory: Path) -> None:
        self.label = label
        self.directory = directory
        self.processes: list[subprocess.Popen[bytes]] = []
        self.ports: list[int] = []

    def start(self, argv: list[str]) -> None:
        index = len(self.processes)
        out = self.directory / f"{self.label}{index}.out"
        err = self.directory / f"{self.label}{index}.err"
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            process = subprocess.Popen(argv, stdout=stdout, stderr=stderr, env=_environment())
        self.processes.append(process)

    def read_ports(self, deadline: float) -> list[int]:
        for index in range(len(self.ports), len(self.processes)):
            out = self.directory / f"{self.label}{index}.out"
            while not (match := LISTENING.search(out.read_text())):
                if self.processes[index].poll() is not None or time.monotonic() > deadline:
                    err = (self.directory / f"{self.label}{index}.err").read_text()
                    raise SystemExit(f"{self.label} node {index} did not start: {err[-400:]}")
                time.sleep(0.02)
            self.ports.append(int(match.group(1)))
        return self.ports

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
        for process in self.processes:
            process.wait()


def start_serval(settings: Settings, directory: Path) -> Processes:
    nodes = Processes("serval", directory)
    command = [sys.executable, "-c", "from ref.chord.cli import node_main; node_main()"]
    options = ["--stabilize-interval", "1", "--rate-limit", "1000000"]

    def argv(index: int, bootstrap: list[int]) -> list[str]:
        key = str(directory / f"serval{index}.key")
        seeds = [arg for port in bootstrap for arg in ("--bootstrap", f"{LOOPBACK}:{port}")]
        return [*command, "--listen", f"{LOOPBACK}:0", "--key", key, *options, *seeds]

    nodes.start(argv(0, []))
    first = nodes.read_ports(time.monotonic() + 30)[0]
    for index in range(1, settings.nodes):
        nodes.start(argv(index, [first]))
        status(f"[serval] started {index + 1}/{settings.nodes} nodes")
    nodes.read_ports(time.monotonic() + 60)
    return nodes


def start_kademlia(settings: Settings, directory: Path) -> Processes:
    nodes = Processes("kademlia", directory)
    command = [sys.executable, str(Path(__file__).resolve()), "--kademlia-node"]
    nodes.start(command)
    first = nodes.read_ports(time.monotonic() + 30)[0]
    for index in range(1, settings.nodes):
        nodes.start([*command, "--bootstrap", f"{LOOPBACK}:{first}"])
        status(f"[kademlia] started {index + 1}/{settings.nodes} nodes")
    nodes.read_ports(time.monotonic() + 60)
    return nodes


async def kademlia_node(bootstrap: str | None) -> None:
    """One kademlia node (run in its own process by the driver)."""
    server = Server()
    await server.listen(0, interface=LOOPBACK)
    assert server.transport is not None
    port = server.transport.get_extra_info("sockname")[1]
    print(f"listening on {LOOPBACK}:{port}", flush=True)
    if bootstrap is not None:
        host, _, bootstrap_port = bootstrap.rpartition(":")
        await server.bootstrap([(host, int(bootstrap_port))])
    await asyncio.Event().wait()


# --- measuring --------------------------------------------------------------------------


@dataclasses.dataclass
class Measurement:
    system: str
    concurrency: int
    lookups: int
    seconds: float
    errors: int
    latencies: list[float]

    @property
    def per_second(self) -> float:
        return self.lookups / self.seconds

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    def summary(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "concurrency": self.concurrency,
            "lookups": self.lookups,
            "errors": self.errors,
            "lookups_per_second": round(self.per_second, 1),
            "median_ms": round(1000 * statistics.median(self.latencies), 3),
            "p99_ms": round(1000 * self.percentile(0.99), 3),
        }


async def measure(
    system: str,
    lookup: Callable[[int], Awaitable[bool]],
    keys: int,
    lookups: int,
    concurrency: int,
) -> Measurement:
    """``lookups`` lookups of keys taken in turn, ``concurrency`` at a time."""
    latencies: list[float] = []
    errors = 0
    issued = 0

    async def worker() -> None:
        nonlocal issued, errors
        while issued < lookups:
            index = issued % keys
            issued += 1
            began = time.perf_counter()
            correct = await lookup(index)
            latencies.append(time.perf_counter() - began)
            errors += not correct
            if len(latencies) % 100 == 0:
                status(f"[{system}] {concurrency} at once: {len(latencies)}/{lookups} lookups")

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - began
    return Measurement(system, concurrency, lookups, seconds, errors, latencies)


async def _ring_stable(client: DhtClient, endpoints: list[Endpoint]) -> bool:
    """Each node's first successor and predecessor are the true ones (from STATUS)."""
    reports = await asyncio.gather(*(client.status(e) for e in endpoints))
    if not all(isinstance(r, dict) and r.get("successors") for r in reports):
        return False
    ids = sorted(str(r["node_id"])[:16] for r in reports if isinstance(r, dict))
    for report in reports:
        assert isinstance(report, dict)
        at = ids.index(str(report["node_id"])[:16])
        successors, predecessors = report.get("successors"), report.get("predecessors")
        if not successors or not predecessors:
            return False
        if str(successors[0])[:16] != ids[(at + 1) % len(ids)]:
            return False
        if str(predecessors[0])[:16] != ids[at - 1]:
            return False
    return True


Lookup = Callable[[int], Awaitable[bool]]


async def prepare_serval(
    settings: Settings, ports: list[int], stack: contextlib.AsyncExitStack
) -> Lookup:
    """Wait for the ring, register the keys; the lookup function resolves one."""
    endpoints = [Endpoint(ipaddress.ip_address(LOOPBACK), port) for port in ports]
    client = await DhtClient.connect(endpoints)
    stack.callback(client.close)
    began = time.monotonic()
    while not await _ring_stable(client, endpoints):
        status(f"[serval] waiting for the ring to form ({time.monotonic() - began:.0f} s)")
        if time.monotonic() - began > 180:
            raise SystemExit("the ServalDHT ring did not form in 180 s")
        await asyncio.sleep(1)
    names = [f"bench-{i}.example" for i in range(settings.keys)]
    localhost = ipaddress.ip_address(LOOPBACK)
    for index, name in enumerate(names):
        owner = Ed25519PrivateKey.generate()  # the per-owner limit is 64 records a node
        endpoint = RecordEndpoint(localhost, VALUE_PORT + index)
        result = await client.register(name, [endpoint], owner)
        if not isinstance(result, Stored):
            raise SystemExit(f"registering {name} failed: {result}")
        status(f"[serval] stored {index + 1}/{settings.keys} records")
    await asyncio.sleep(1)  # let replication settle

    async def lookup(index: int) -> bool:
        result = await client.resolve(names[index])
        return isinstance(result, Found) and result.record.endpoints[0].port == (VALUE_PORT + index)

    return lookup


async def prepare_kademlia(
    settings: Settings, ports: list[int], stack: contextlib.AsyncExitStack
) -> Lookup:
    """Bootstrap the driver node, store the keys; the lookup function gets one."""

    class NoStorage(ForgetfulStorage):  # type: ignore[misc]
        """The driver keeps nothing, so every get crosses the network."""

        def __setitem__(self, key: bytes, value: Any) -> None:
            return None

    server = Server(storage=NoStorage())
    await server.listen(0, interface=LOOPBACK)
    stack.callback(server.stop)
    status("[kademlia] driver bootstrapping")
    await server.bootstrap([(LOOPBACK, port) for port in ports])
    keys = [f"bench-{i}.example" for i in range(settings.keys)]
    for index, key in enumerate(keys):
        if not await server.set(key, f"{LOOPBACK}:{VALUE_PORT + index}"):
            raise SystemExit(f"kademlia set {key} failed")
        status(f"[kademlia] stored {index + 1}/{settings.keys} values")

    async def lookup(index: int) -> bool:
        value = await server.get(keys[index])
        return bool(value == f"{LOOPBACK}:{VALUE_PORT + index}")

    return lookup


async def bench(settings: Settings, serval: list[int], kademlia: list[int]) -> list[Measurement]:
    """Rounds that alternate the systems, so that both see the same background load."""
    async with contextlib.AsyncExitStack() as stack:
        lookups = {
            "serval": await prepare_serval(settings, serval, stack),
            "kademlia": await prepare_kademlia(settings, kademlia, stack),
        }
        for system, lookup in lookups.items():
            await measure(system, lookup, settings.keys, settings.warmup, 8)
        rounds: dict[tuple[str, int], list[Measurement]] = {}
        for number in range(settings.rounds):
            for concurrency, count in settings.lookups.items():
                for system, lookup in lookups.items():
                    label = f"{system} round {number + 1}/{settings.rounds}"
                    taken = await measure(
                        label, lookup, settings.keys, count // settings.rounds, concurrency
                    )
                    rounds.setdefault((system, concurrency), []).append(taken)
        await asyncio.sleep(0)
    return [
        Measurement(
            system,
            concurrency,
            sum(m.lookups for m in taken),
            sum(m.seconds for m in taken),
            sum(m.errors for m in taken),
            [latency for m in taken for latency in m.latencies],
        )
        for (system, concurrency), taken in rounds.items()
    ]


# --- reporting --------------------------------------------------------------------------


def report(measurements: list[Measurement], settings: Settings, quick: bool) -> dict[str, Any]:
    rows = []
    by_key = {(m.system, m.concurrency): m for m in measurements}
    for concurrency in settings.lookups:
        ours, theirs = by_key[("serval", concurrency)], by_key[("kademlia", concurrency)]
        rows.append(
            {
                "concurrency": concurrency,
                "serval": ours.summary(),
                "kademlia": theirs.summary(),
                "ratio_lookups_per_second": round(ours.per_second / theirs.per_second, 2),
                "ratio_median": round(
                    statistics.median(ours.latencies) / statistics.median(theirs.latencies), 2
                ),
                "ratio_p99": round(ours.percentile(0.99) / theirs.percentile(0.99), 2),
            }
        )
    return {
        "quick": quick,
        "nodes": settings.nodes,
        "keys": settings.keys,
        "arrangement": (
            "one process per node on 127.0.0.1; one driver process; both networks up at "
            f"once, measured in {settings.rounds} rounds that alternate the systems"
        ),
        "serval_options": "--stabilize-interval 1 --rate-limit 1000000; other values default",
        "kademlia": f"kademlia {kademlia.__version__}, k=20, alpha=3; driver stores nothing",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "results": rows,
    }


def print_table(result: dict[str, Any]) -> None:
    header = (
        f"{'concurrency':>11}  {'system':<9} {'lookups/s':>10} {'median ms':>10} "
        f"{'p99 ms':>9} {'errors':>6}"
    )
    print(header)
    print("-" * len(header))
    for row in result["results"]:
        for system in ("serval", "kademlia"):
            s = row[system]
            print(
                f"{row['concurrency']:>11}  {system:<9} {s['lookups_per_second']:>10.1f} "
                f"{s['median_ms']:>10.2f} {s['p99_ms']:>9.2f} {s['errors']:>6}"
            )
        print(
            f"{'':>11}  {'ours/kad':<9} {row['ratio_lookups_per_second']:>9.2f}x "
            f"{row['ratio_median']:>9.2f}x {row['ratio_p99']:>8.2f}x"
        )


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["results"]
    labels = [f"{row['concurrency']} at once" for row in rows]
    figure, axes = plt.subplots(1, 3, figsize=(12, 4))
    metrics = [
        ("lookups_per_second", "lookups per second (higher is better)"),
        ("median_ms", "median latency, ms"),
        ("p99_ms", "99th percentile latency, ms"),
    ]
    width = 0.38
    for axis, (metric, title) in zip(axes, metrics, strict=True):
        for offset, system in ((-width / 2, "serval"), (width / 2, "kademlia")):
            values = [row[system][metric] for row in rows]
            bars = axis.bar([i + offset for i in range(len(rows))], values, width, label=system)
            axis.bar_label(bars, fmt="%.1f", fontsize=8)
        axis.set_xticks(range(len(rows)), labels)
        axis.set_title(title, fontsize=10)
    axes[0].legend()
    figure.suptitle(
        f"{result['nodes']} nodes on loopback, one process each: ServalDHT vs kademlia "
        f"({result['keys']} keys)",
        fontsize=11,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


# --- main -------------------------------------------------------------------------------


def run(settings: Settings, quick: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dht-bench-") as scratch:
        serval = start_serval(settings, Path(scratch))
        try:
            kademlia = start_kademlia(settings, Path(scratch))
            try:
                measurements = asyncio.run(bench(settings, serval.ports, kademlia.ports))
            finally:
                kademlia.stop()
        finally:
            serval.stop()
        status_done()
    return report(measurements, settings, quick)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run with fewer lookups")
    parser.add_argument("--kademlia-node", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.kademlia_node:
        asyncio.run(kademlia_node(args.bootstrap))
        return
    settings = QUICK if args.quick else FULL
    result = run(settings, args.quick)
    print_table(result)
    RESULTS.mkdir(exist_ok=True)
    name = "dht_loopback_quick" if args.quick else "dht_loopback"
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, RESULTS / f"{name}.png")
    print(f"wrote {RESULTS / (name + '.json')} and {name}.png")


if __name__ == "__main__":
    main()
