"""ServalDHT in the simulator: lookup hops, mass failure, churn and simulation speed.

Four experiments run the unchanged node core (``ref.chord.node``) on the
in-memory network of ``ref.chord.sim``, with its maintenance running
throughout:

- ``hops``: lookups on a stable ring of 1,000 and 10,000 nodes; each answer
  is checked against the true ring, and the mean hop count is held against
  (1/2) log2 N (Section 6.6).  A hop is one FIND_SUCCESSOR request sent by
  the requester; a lookup the requester answers from its own state is 0.
- ``failure``: half of a 1,000-node ring crashes at once; lookups issued at
  that instant, records lost against p^k, and re-replication afterwards.
- ``churn``: Poisson joins and crashes, median session 10 minutes, around a
  stable base of r + 1 nodes (DHT-RING-4): lookup success, records kept,
  and maintenance traffic against Bamboo's 900 B/s per node.
- ``scale``: wall time to simulate 10,000 nodes, extrapolated to an hour of
  virtual time (or measured, with ``--full-hour``).  The ring runs on one
  worker process per core, two at most (``ref.chord.shardsim``; ``--shards 1``
  for the one-process simulator).

Prints progress and a table, writes ``benchmarks/results/dht_sim.json``,
PNG plots and ``dht_sim.html`` beside it (``*_quick`` files with ``--quick``).

    python benchmarks/dht_sim.py                 # the full run (long)
    python benchmarks/dht_sim.py --quick         # small rings, under two minutes
    python benchmarks/dht_sim.py --only churn --seed 7
"""

from __future__ import annotations

import argparse
import bisect
import dataclasses
import html
import json
import math
import os
import platform
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from ref.chord.client import Client, Stored  # noqa: E402
from ref.chord.exchange import Completed, Failure, Found, LookupResult  # noqa: E402
from ref.chord.framing import Frame, datagram_size  # noqa: E402
from ref.chord.node import Node, NodeConfig  # noqa: E402
from ref.chord.ring import id_of  # noqa: E402
from ref.chord.shardsim import ShardedRing  # noqa: E402
from ref.chord.sim import Network, Truth, install_ideal_state  # noqa: E402
from ref.wire.dht import FindSuccessor  # noqa: E402
from ref.wire.ids import service_id_for_name  # noqa: E402
from ref.wire.records import (  # noqa: E402
    RecordEndpoint,
    RecordFlags,
    ServiceRecord,
    sign_record,
)

RESULTS = Path(__file__).resolve().parent / "results"
SECTIONS = ("hops", "failure", "churn", "scale")
MAX_SUCCESSORS = 16  # DHT-RING-1: r is 3 to 16
REPLICAS = 3  # k, the draft's default (Section 6.8)
BAMBOO_BYTES_PER_NODE = 900.0  # Bamboo's maintenance traffic at N = 1,000 (Rhea et al. 2004)
FAILURE_SUCCESS_TARGET = 0.999  # 9,990 of 10,000
SCALE_TARGET_SECONDS = 600.0  # simulating 10,000 nodes for an hour in under 10 minutes
RECENT_JOIN = 30.0  # churn: a node this young may not be known to its predecessor yet
HOP_DEFINITION = (
    "hop = one FIND_SUCCESSOR request sent by the requester "
    "(a lookup answered from the requester's own state is 0 hops)"
)


@dataclasses.dataclass(frozen=True)
class Settings:
    """The sizes of one run; ``--quick`` shrinks all of them."""

    hop_sizes: tuple[int, ...] = (1_000, 10_000)
    hop_lookups: int = 10_000
    batch: int = 200
    failure_nodes: int = 1_000
    failure_records: int = 2_000
    failure_lookups: int = 10_000
    failure_after: float = 120.0
    churn_nodes: int = 1_000
    churn_records: int = 1_000
    churn_seconds: float = 1_800.0
    churn_lookups_per_second: int = 4
    churn_bin: float = 60.0
    median_session: float = 600.0
    scale_nodes: int = 10_000
    scale_seconds: float = 300.0


QUICK = Settings(
    hop_sizes=(100, 1_000),
    hop_lookups=2_000,
    failure_nodes=200,
    failure_records=400,
    failure_lookups=2_000,
    failure_after=60.0,
    churn_nodes=150,
    churn_records=150,
    churn_seconds=240.0,
    churn_lookups_per_second=2,
    churn_bin=30.0,
    scale_nodes=1_000,
    scale_seconds=30.0,
)


# --- running the simulator ------------------------------------------------------------


class Progress:
    """Progress lines: virtual time, nodes, messages, wall time; at most one per ``every`` s."""

    def __init__(self, label: str, net: Network, every: float = 5.0) -> None:
        self.label = label
        self.net = net
        self.every = every
        self.wall_start = time.perf_counter()
        self.virtual_start = net.now
        self.last = -math.inf

    @property
    def wall(self) -> float:
        return time.perf_counter() - self.wall_start

    def __call__(self, note: str = "", force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last < self.every:
            return
        self.last = now
        net = self.net
        messages = sum(net._messages.values())  # cheaper than the per-name copy
        print(
            f"  [{self.label}] virtual +{net.now - self.virtual_start:8.1f} s"
            f" | nodes {sum(isinstance(h, Node) for h in net.hosts.values()):>6,}"
            f" | messages {messages:>12,} | wall {self.wall:7.1f} s"
            + (f" | {note}" if note else ""),
            flush=True,
        )


def build_ring(net: Network, count: int, config: NodeConfig | None = None) -> list[Node]:
    """``count`` members with the routing state of a stable ring, no joins.

    Each node starts as a ring of its own (which also starts its token
    rotation and periodic procedures); :func:`install_ideal_state` then gives
    every one the lists and fingers of the single true ring.
    """
    nodes = [net.add_node(config) for _ in range(count)]
    install_ideal_state(net)
    return nodes


def alive(net: Network, host: Node | Client) -> bool:
    return net.hosts.get(host.endpoint) is host


class Operations:
    """Operations started on hosts, collected as their Completed events arrive."""

    def __init__(self, net: Network) -> None:
        self.net = net
        self._waiting: dict[Node | Client, dict[int, Any]] = {}
        self.count = 0

    def start(
        self, host: Node | Client, operation: Callable[..., int], *args: Any, tag: Any
    ) -> None:
        """Start ``operation(*args)``, a method of ``host`` that returns a handle.

        The host's clock is brought to the network's first: a core knows the
        time only from its last datagram or timer, and an operation started on
        a stale clock sets deadlines in the past, so its first request times
        out at once.
        """
        host.handle_timer(self.net.now)
        handle = operation(*args)
        self._waiting.setdefault(host, {})[handle] = tag
        self.count += 1
        self.net.flush(host)

    def __len__(self) -> int:
        return self.count

    def collect(self) -> list[tuple[Any, Any, float]]:
        """``(tag, result, time)`` of every operation completed since the last call."""
        done = []
        for host in list(self._waiting):
            waiting = self._waiting[host]
            event = host.next_event()
            while event is not None:
                if isinstance(event, Completed) and event.handle in waiting:
                    done.append((waiting.pop(event.handle), event.result, self.net.now))
                event = host.next_event()
            if not waiting:
                del self._waiting[host]
        self.count -= len(done)
        return done

    def abandon(self) -> list[Any]:
        """Forget the operations still running; return their tags."""
        tags = [tag for waiting in self._waiting.values() for tag in waiting.values()]
        self._waiting.clear()
        self.count = 0
        return tags

    def orphans(self) -> list[Any]:
        """Forget the operations of hosts that have crashed; return their tags."""
        tags = []
        for host in [h for h in self._waiting if not alive(self.net, h)]:
            tags += self._waiting.pop(host).values()
        self.count -= len(tags)
        return tags

    def run(
        self, budget: float, progress: Progress | None = None, step: float = 0.1
    ) -> list[tuple[Any, Any, float]]:
        """Run the network until all complete or ``budget`` virtual seconds pass."""
        net = self.net
        deadline = net.now + budget
        done = self.collect()
        while self.count and net.now < deadline:
            net.run_until(min(deadline, net.now + step))
            done += self.collect()
            if progress is not None:
                progress(f"{self.count} operations running")
        return done


# --- records --------------------------------------------------------------------------


def make_records(
    rng: random.Random, count: int, clients: Sequence[Client], now: float, label: str
) -> list[tuple[Client, ServiceRecord]]:
    """Signed records, each naming its registering client's address (DHT-TOKEN-6)."""
    owners = [Ed25519PrivateKey.from_private_bytes(rng.randbytes(32)) for _ in range(32)]
    out = []
    for index in range(count):
        client = clients[index % len(clients)]
        record = ServiceRecord(
            service_id=service_id_for_name(f"{label}-{index}.bench.example"),
            owner_key=bytes(32),
            sequence=1,
            issued_at=int(now),
            lifetime=3600,
            flags=RecordFlags(0),
            endpoints=(RecordEndpoint(client.endpoint.address, 8000 + index % 1000),),
        )
        out.append((client, sign_record(record, owners[index % len(owners)])))
    return out


def new_clients(
    net: Network, rng: random.Random, members: Sequence[Node], count: int
) -> list[Client]:
    """Clients, each configured with two random members (so no node sees them all)."""
    return [
        net.add_client([node.endpoint for node in rng.sample(list(members), 2)])
        for _ in range(count)
    ]


def register(
    net: Network,
    records: Sequence[tuple[Client, ServiceRecord]],
    batch: int,
    progress: Progress,
) -> Counter[str]:
    """Register records through clients, ``batch`` at a time; the outcomes by kind."""
    outcomes: Counter[str] = Counter()
    ops = Operations(net)
    for start in range(0, len(records), batch):
        for client, record in records[start : start + batch]:
            ops.start(client, client.register, record, tag=record)
        for _, result, _ in ops.run(120.0, progress):
            outcomes[_outcome_name(result)] += 1
        outcomes["incomplete"] += len(ops.abandon())
        progress(f"registered {start + batch:,}/{len(records):,}")
    return outcomes


def _outcome_name(result: Any) -> str:
    if isinstance(result, Stored):
        return "stored"
    if isinstance(result, Failure):
        return f"failure {result.code.name}: {result.reason}"
    return type(result).__name__


def holders(net: Network, records: Iterable[ServiceRecord]) -> dict[bytes, list[Node]]:
    """For each record, the live members that store it (the same sequence, unexpired)."""
    wanted = {record.service_id: record for record in records}
    found: dict[bytes, list[Node]] = {block: [] for block in wanted}
    for node in net.members():
        for record in node.store.records():
            if wanted.get(record.service_id) == record and record.expires_at > net.now:
                found[record.service_id].append(node)
    return found


def replica_census(net: Network, records: Sequence[ServiceRecord], k: int) -> dict[str, Any]:
    """How many live replicas each record has, and whether they are its true replica set."""
    found = holders(net, records)
    truth = Truth(net.members())
    exact = 0
    for record in records:
        first = truth.successor(id_of(record.service_id))
        expected = {first.key, *(n.key for n in truth.successors(first, k - 1))}
        if expected <= {node.key for node in found[record.service_id]}:
            exact += 1
    distribution = Counter(len(nodes) for nodes in found.values())
    return {
        "distribution": {str(c): distribution[c] for c in sorted(distribution)},
        "with_k_or_more": sum(n for c, n in distribution.items() if c >= k),
        "on_true_replica_set": exact,
        "lost": distribution.get(0, 0),
        "records": len(records),
    }


# --- statistics -----------------------------------------------------------------------


def loss_range(
    placement: dict[bytes, list[Node]], nodes: Sequence[Node], rng: random.Random,
    trials: int = 2_000,
) -> tuple[float, float]:
    """The central 95 % of the fraction of records lost when a random half of ``nodes`` fails.

    Records are not independent trials: those with the same replica set are
    lost together, and neighbouring replica sets share nodes.  Failing other
    random halves of the same placement gives the spread that p^k has here.
    """
    index = {node.key: i for i, node in enumerate(nodes)}
    sets = [[index[node.key] for node in held] for held in placement.values()]
    fractions = []
    for _ in range(trials):
        failed = set(rng.sample(range(len(nodes)), len(nodes) // 2))
        lost = sum(all(i in failed for i in held) for held in sets)
        fractions.append(lost / len(sets))
    fractions.sort()
    return fractions[int(0.025 * trials)], fractions[int(0.975 * trials) - 1]


def percentile(values: Sequence[int], fraction: float) -> int:
    """The nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def wilson(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (95 % by default)."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (
        1 + z * z / trials
    )
    return centre - half, centre + half


# --- 1. hops on a stable ring -----------------------------------------------------------


def hops_experiment(size: int, lookups: int, batch: int, seed: int) -> dict[str, Any]:
    net = Network(random.Random(f"{seed}-hops-{size}"))
    rng = random.Random(f"{seed}-hops-bench-{size}")
    progress = Progress(f"hops N={size:,}", net)
    nodes = build_ring(net, size)
    truth = Truth(nodes)
    progress("stable ring built", force=True)
    hops: list[int] = []
    causes: Counter[str] = Counter()
    mismatches = 0
    messages_before = sum(net.message_counts.values())
    ops = Operations(net)
    for start in range(0, lookups, batch):
        for _ in range(min(batch, lookups - start)):
            node = rng.choice(nodes)
            target = rng.randbytes(32)
            ops.start(node, node.lookup, target, tag=id_of(target))
        for target, result, _ in ops.run(60.0, progress):
            if not isinstance(result, LookupResult):
                causes[_outcome_name(result)] += 1
                continue
            hops.append(result.hops)
            if result.nodes[0].key != truth.successor(target).key:
                mismatches += 1
        causes["incomplete after 60 s"] += len(ops.abandon())
        progress(f"{start + batch:,}/{lookups:,} lookups")
    progress("done", force=True)
    target_mean = 0.5 * math.log2(size)
    mean = statistics.fmean(hops) if hops else math.nan
    distribution = Counter(hops)
    return {
        "nodes": size,
        "lookups": lookups,
        "completed": len(hops),
        "failures": dict(+causes),
        "mismatches": mismatches,
        "mean_hops": round(mean, 3),
        "p99_hops": percentile(hops, 0.99) if hops else None,
        "max_hops": max(hops) if hops else None,
        "target_mean": round(target_mean, 2),
        "meets_target": mean <= target_mean and mismatches == 0,
        "distribution": {str(h): distribution[h] for h in sorted(distribution)},
        "virtual_seconds": round(net.now - progress.virtual_start, 1),
        "messages": sum(net.message_counts.values()) - messages_before,
        "wall_seconds": round(progress.wall, 1),
    }


def run_hops(settings: Settings, seed: int) -> dict[str, Any]:
    runs = [
        hops_experiment(size, settings.hop_lookups, settings.batch, seed)
        for size in settings.hop_sizes
    ]
    return {"seed": seed, "hop_definition": HOP_DEFINITION, "runs": runs}


# --- 2. mass failure ------------------------------------------------------------------------


def run_failure(settings: Settings, seed: int) -> dict[str, Any]:
    size = settings.failure_nodes
    config = NodeConfig(successors=MAX_SUCCESSORS, replicas=REPLICAS)
    net = Network(random.Random(f"{seed}-failure"))
    rng = random.Random(f"{seed}-failure-bench")
    progress = Progress(f"failure N={size:,}", net)
    nodes = build_ring(net, size, config)
    progress("stable ring built", force=True)

    clients = new_clients(net, rng, nodes, 50)
    pairs = make_records(rng, settings.failure_records, clients, net.now, f"failure{seed}")
    records = [record for _, record in pairs]
    registered = register(net, pairs, settings.batch, progress)
    net.run_for(30.0)  # replication settles
    before = replica_census(net, records, REPLICAS)
    progress(f"records on k replicas: {before['with_k_or_more']:,}", force=True)

    placement = holders(net, records)
    expected_low, expected_high = loss_range(placement, nodes, random.Random(f"{seed}-mc"))
    victims = rng.sample(nodes, size // 2)
    before_failure = Truth(nodes)
    for node in victims:
        net.fail(node)
    failed_at = net.now
    survivors = [node for node in nodes if alive(net, node)]
    truth = Truth(survivors)
    live_keys = {node.key for node in survivors}
    right_after = replica_census(net, records, REPLICAS)
    lost = right_after["lost"]
    progress(f"{len(victims):,} nodes failed; {lost} records have no live replica", force=True)

    # Every lookup starts at the instant of the failure, before any repair.
    ops = Operations(net)
    for _ in range(settings.failure_lookups):
        node = rng.choice(survivors)
        target = rng.randbytes(32)
        ops.start(node, node.lookup, target, tag=id_of(target))
    outcomes: Counter[str] = Counter()
    # the outcomes of the lookups whose target's predecessor (before the failure) crashed
    predecessor_crashed: Counter[str] = Counter()
    hops: list[int] = []
    latencies: list[float] = []
    for target, result, when in ops.run(300.0, progress):
        latencies.append(when - failed_at)
        if not isinstance(result, LookupResult):
            verdict = _outcome_name(result)
        else:
            hops.append(result.hops)
            first = next((peer for peer in result.nodes if peer.key in live_keys), None)
            if first is None:
                verdict = f"no live node in the answer of {len(result.nodes)}"
            elif first.key != truth.successor(target).key:
                verdict = "wrong successor"
            else:
                verdict = "success"
        outcomes[verdict] += 1
        predecessor = before_failure.nodes[bisect.bisect_left(before_failure.ids, target) - 1]
        if not alive(net, predecessor):
            predecessor_crashed[verdict] += 1
    outcomes["incomplete after 300 s"] += len(ops.abandon())
    progress(f"lookups done at +{net.now - failed_at:.1f} s after the failure", force=True)

    net.run_until(failed_at + settings.failure_after)
    after = replica_census(net, records, REPLICAS)
    progress(f"re-replication: {after['with_k_or_more']:,} records on k live nodes", force=True)

    successes = outcomes.pop("success", 0)
    expected = 0.5**REPLICAS
    low, high = wilson(lost, len(records))
    return {
        "seed": seed,
        "nodes": size,
        "successor_list_length": MAX_SUCCESSORS,
        "note_r": (
            f"r = {MAX_SUCCESSORS}, the draft's maximum list length (DHT-RING-1):"
            f" 2 log2 N = {2 * math.log2(size):.1f}"
            + (" exceeds it" if 2 * math.log2(size) > MAX_SUCCESSORS else " is within it")
        ),
        "replicas": REPLICAS,
        "records": len(records),
        "registration": dict(registered),
        "replicas_before": before,
        "failed": len(victims),
        "lookups": settings.failure_lookups,
        "successes": successes,
        "success_target": round(FAILURE_SUCCESS_TARGET * settings.failure_lookups),
        "meets_target": successes >= FAILURE_SUCCESS_TARGET * settings.failure_lookups,
        "failure_causes": dict((+outcomes).most_common()),
        "outcomes_when_predecessor_crashed": dict(predecessor_crashed.most_common()),
        "mean_hops": round(statistics.fmean(hops), 2) if hops else None,
        "lookup_seconds_p50": round(statistics.median(latencies), 2) if latencies else None,
        "lookup_seconds_max": round(max(latencies), 2) if latencies else None,
        "records_lost": lost,
        "records_lost_fraction": round(lost / len(records), 4),
        "records_lost_ci95": [round(low, 4), round(high, 4)],
        "expected_lost_fraction": expected,
        "expected_within_ci": low <= expected <= high,
        "model_lost_range95": [round(expected_low, 4), round(expected_high, 4)],
        "within_model_range": expected_low <= lost / len(records) <= expected_high,
        "replicas_right_after": right_after,
        "seconds_after": settings.failure_after,
        "replicas_after": after,
        "messages": sum(net.message_counts.values()),
        "wall_seconds": round(progress.wall, 1),
    }


# --- 3. churn --------------------------------------------------------------------------


def verdicts(
    net: Network, done: list[tuple[Any, Any, float]], added: dict[bytes, float]
) -> list[str]:
    """Judge completed lookups against the true ring of the live members, now.

    ``added`` holds when each node that joined during the run was started, so
    that a wrong answer can be told apart when the true successor is new.
    """
    if not done:
        return []
    members = net.members()
    truth = Truth(members)
    live = {node.key for node in members}
    out = []
    for target, result, _ in done:
        if not isinstance(result, LookupResult):
            out.append(_outcome_name(result))
            continue
        first = next((peer for peer in result.nodes if peer.key in live), None)
        if first is None:
            out.append("no live node in the answer")
        elif first.key == (true := truth.successor(target)).key:
            out.append("success")
        elif net.now - added.get(true.key, -math.inf) < RECENT_JOIN:
            out.append(f"wrong successor: the true one joined < {RECENT_JOIN:.0f} s ago")
        else:
            out.append("wrong successor: other")
    return out


class TrafficTap:
    """Counts the benchmark's own datagrams (its lookups and the clients' requests).

    A node's lookup sends FIND_SUCCESSOR for a target the benchmark chose at
    random; every request of a client is the benchmark's; the answers to those
    requests are matched by Transaction ID.  Everything else is maintenance.
    """

    def __init__(self) -> None:
        self.targets: set[bytes] = set()
        self.messages = 0
        self.bytes = 0
        self._transactions: set[bytes] = set()

    def attach(self, host: Node | Client) -> None:
        send = host.datagrams_to_send
        own = isinstance(host, Client)

        def tapped() -> list[Any]:
            out = send()
            for data, _ in out:
                if isinstance(data, Frame):
                    self._classify(data, own)
            return out

        host.datagrams_to_send = tapped  # type: ignore[method-assign]

    def _classify(self, frame: Frame, own: bool) -> None:
        message = frame.message
        transaction = message.transaction_id
        if message.body.TYPE.value & 0x80:
            if transaction not in self._transactions:
                return
            self._transactions.discard(transaction)
        elif own or (
            isinstance(message.body, FindSuccessor) and message.body.target_id in self.targets
        ):
            self._transactions.add(transaction)
        else:
            return
        self.messages += 1
        self.bytes += datagram_size(frame.size)


@dataclasses.dataclass
class ChurnBin:
    start: float
    nodes: list[int] = dataclasses.field(default_factory=list)
    lookups: Counter[str] = dataclasses.field(default_factory=Counter)
    maintenance_messages: int = 0
    maintenance_bytes: int = 0


def run_churn(settings: Settings, seed: int) -> dict[str, Any]:
    size = settings.churn_nodes
    config = NodeConfig()
    base_size = config.successors + 1  # DHT-RING-4
    net = Network(random.Random(f"{seed}-churn"))
    rng = random.Random(f"{seed}-churn-bench")
    progress = Progress(f"churn N={size:,}", net)
    nodes = build_ring(net, size, config)
    tap = TrafficTap()
    for node in nodes:
        tap.attach(node)
    base = set(nodes[:base_size])
    progress("stable ring built", force=True)

    clients = new_clients(net, rng, nodes, 30)
    for client in clients:
        tap.attach(client)
    pairs = make_records(rng, settings.churn_records, clients, net.now, f"churn{seed}")
    records = [record for _, record in pairs]
    registered = register(net, pairs, settings.batch, progress)
    net.run_for(30.0)
    before = replica_census(net, records, config.replicas)
    for client in clients:
        net.fail(client)

    rate = math.log(2) / settings.median_session  # exponential sessions with that median
    start = net.now
    end = start + settings.churn_seconds
    churning = True
    counts = {"failures": 0, "joins": 0}
    added: dict[bytes, float] = {}

    def session(node: Node) -> None:
        if node not in base:
            net.call_at(net.now + rng.expovariate(rate), lambda: crash(node))

    def crash(node: Node) -> None:
        if not churning or not alive(net, node):
            return
        net.fail(node)
        counts["failures"] += 1
        members = net.members()
        newcomer = net.add_node(config, [rng.choice(members).endpoint])
        added[newcomer.key] = net.now
        tap.attach(newcomer)
        counts["joins"] += 1
        session(newcomer)

    for node in nodes:
        session(node)

    bins = [ChurnBin(start + i * settings.churn_bin) for i in range(
        math.ceil(settings.churn_seconds / settings.churn_bin)
    )]
    ops = Operations(net)
    outcomes: Counter[str] = Counter()
    snapshot = [sum(net._messages.values()), sum(net._bytes.values()), tap.messages, tap.bytes]

    def bin_at(when: float) -> ChurnBin:
        return bins[min(len(bins) - 1, int((when - start) // settings.churn_bin))]

    def judge() -> None:
        for _ in ops.orphans():
            outcomes["source crashed"] += 1
        for verdict in verdicts(net, ops.collect(), added):
            outcomes[verdict] += 1
            bin_at(net.now).lookups[verdict] += 1

    tick = 0.25
    every = max(1, round(1 / tick))
    ticks = 0

    def sample() -> None:
        nonlocal ticks
        judge()
        if ticks % every == 0 and net.now < end:
            members = net.members()
            bin_at(net.now).nodes.append(len(members))
            for _ in range(settings.churn_lookups_per_second):
                node = rng.choice(members)
                target = rng.randbytes(32)
                tap.targets.add(target)
                ops.start(node, node.lookup, target, tag=id_of(target))
        ticks += 1
        if net.now < end:
            net.call_at(net.now + tick, sample)

    def close_bin(index: int) -> None:
        totals = [sum(net._messages.values()), sum(net._bytes.values()), tap.messages, tap.bytes]
        delta = [now - then for now, then in zip(totals, snapshot, strict=True)]
        bins[index].maintenance_messages = delta[0] - delta[2]
        bins[index].maintenance_bytes = delta[1] - delta[3]
        snapshot[:] = totals

    for index, churn_bin in enumerate(bins):
        net.call_at(min(end, churn_bin.start + settings.churn_bin), lambda i=index: close_bin(i))
    net.call_at(start, sample)
    while net.now < end:
        net.run_until(min(end, net.now + 10.0))
        progress(
            f"{counts['failures']:,} failures, {counts['joins']:,} joins,"
            f" {sum(outcomes.values()):,} lookups judged"
        )
    churning = False
    # the lookups still running are judged as they complete, in no bin
    while len(ops) and net.now < end + 60.0:
        net.run_for(tick)
        for _ in ops.orphans():
            outcomes["source crashed"] += 1
        outcomes.update(verdicts(net, ops.collect(), added))
    outcomes["incomplete"] += len(ops.abandon())
    progress("churn over; resolving records", force=True)

    members = net.members()
    census = replica_census(net, records, config.replicas)
    resolvers = new_clients(net, rng, members, 30)
    resolved: Counter[str] = Counter()
    ops = Operations(net)
    for index, record in enumerate(records):
        client = resolvers[index % len(resolvers)]
        ops.start(client, client.resolve, record.service_id, tag=record)
        if len(ops) >= settings.batch or index == len(records) - 1:
            for wanted, result, _ in ops.run(120.0, progress):
                if isinstance(result, Found) and result.record == wanted:
                    resolved["found"] += 1
                else:
                    resolved[_outcome_name(result)] += 1
            resolved["incomplete"] += len(ops.abandon())
    progress(f"{resolved['found']:,}/{len(records):,} records resolvable", force=True)

    judged = sum(v for k, v in outcomes.items() if k not in ("source crashed", "incomplete"))
    successes = outcomes["success"]
    maintenance_messages = sum(b.maintenance_messages for b in bins)
    maintenance_bytes = sum(b.maintenance_bytes for b in bins)
    mean_nodes = statistics.fmean(n for b in bins for n in b.nodes)
    per_node = settings.churn_seconds * mean_nodes
    low, high = wilson(successes, judged)
    return {
        "seed": seed,
        "nodes": size,
        "stable_base": base_size,
        "successor_list_length": config.successors,
        "replicas": config.replicas,
        "median_session_seconds": settings.median_session,
        "mean_session_seconds": round(settings.median_session / math.log(2), 1),
        "churn_seconds": settings.churn_seconds,
        "failures": counts["failures"],
        "joins": counts["joins"],
        "mean_live_members": round(mean_nodes, 1),
        "lookups_judged": judged,
        "lookup_successes": successes,
        "lookup_success_rate": round(successes / judged, 5) if judged else None,
        "lookup_success_ci95": [round(low, 5), round(high, 5)],
        "lookup_outcomes": dict((+outcomes).most_common()),
        "records": len(records),
        "registration": dict(registered),
        "replicas_before": before,
        "replicas_at_end": census,
        "records_resolvable": resolved["found"],
        "records_lost": len(records) - resolved["found"],
        "resolve_outcomes": dict((+resolved).most_common()),
        "maintenance_messages_per_node_s": round(maintenance_messages / per_node, 3),
        "maintenance_bytes_per_node_s": round(maintenance_bytes / per_node, 1),
        "benchmark_messages": tap.messages,
        "bamboo_bytes_per_node_s": BAMBOO_BYTES_PER_NODE,
        "meets_bamboo": maintenance_bytes / per_node < BAMBOO_BYTES_PER_NODE,
        "bins": [
            {
                "start": round(b.start - start, 1),
                "live_members": round(statistics.fmean(b.nodes), 1) if b.nodes else None,
                "lookups": sum(b.lookups.values()),
                "successes": b.lookups["success"],
                "maintenance_bytes_per_node_s": round(
                    b.maintenance_bytes / settings.churn_bin / statistics.fmean(b.nodes), 1
                ) if b.nodes else None,
                "maintenance_messages_per_node_s": round(
                    b.maintenance_messages / settings.churn_bin / statistics.fmean(b.nodes), 3
                ) if b.nodes else None,
            }
            for b in bins
        ],
        "wall_seconds": round(progress.wall, 1),
    }


# --- 4. simulation speed -----------------------------------------------------------------


def run_scale(settings: Settings, seed: int, full_hour: bool, shards: int = 1) -> dict[str, Any]:
    if shards > 1:
        return run_scale_sharded(settings, seed, full_hour, shards)
    size = settings.scale_nodes
    seconds = 3_600.0 if full_hour else settings.scale_seconds
    net = Network(random.Random(f"{seed}-scale"))
    progress = Progress(f"scale N={size:,}", net, every=10.0)
    started = time.perf_counter()
    build_ring(net, size)
    build = time.perf_counter() - started
    progress("stable ring built", force=True)
    start = net.now
    trace = [(0.0, 0.0)]
    load = os.getloadavg()[0]
    started, cpu_started = time.perf_counter(), time.process_time()
    while net.now < start + seconds:
        net.run_until(min(start + seconds, net.now + 10.0))
        trace.append((net.now - start, time.perf_counter() - started))
        progress()
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    progress("done", force=True)
    counts = net.message_counts
    timing = (build, wall, cpu, load)
    return scale_report(seed, size, seconds, full_hour, timing, counts, trace, {"shards": 1})


def run_scale_sharded(
    settings: Settings, seed: int, full_hour: bool, shards: int
) -> dict[str, Any]:
    """The scale run on ``shards`` worker processes (``ref.chord.shardsim``).

    Each shard draws from its own random source, so the run is not the
    one-process run with the same seed; its message mix is the same.
    """
    size = settings.scale_nodes
    seconds = 3_600.0 if full_hour else settings.scale_seconds
    label = f"scale N={size:,}, {shards} shards"
    started = time.perf_counter()
    with ShardedRing(
        size,
        f"{seed}-scale",
        shards,
        random_source=random.Random,
        cpu_clock=time.process_time,
    ) as ring:
        build = time.perf_counter() - started
        print(f"  [{label}] stable ring built: {ring.sizes} nodes per shard", flush=True)
        start = ring.now
        trace = [(0.0, 0.0)]
        load = os.getloadavg()[0]
        started, cpu_started = time.perf_counter(), ring.cpu_seconds()
        while ring.now < start + seconds:
            ring.run_until(min(start + seconds, ring.now + 10.0))
            wall = time.perf_counter() - started
            trace.append((ring.now - start, wall))
            print(
                f"  [{label}] virtual +{ring.now - start:8.1f} s"
                f" | messages {ring.messages:>12,} | wall {wall:7.1f} s",
                flush=True,
            )
        wall = time.perf_counter() - started
        cpu = ring.cpu_seconds() - cpu_started
        counts = ring.message_counts
        sizes = ring.sizes
    extra = {"shards": shards, "nodes_per_shard": sizes}
    timing = (build, wall, cpu, load)  # cpu: the workers' CPU time, together
    return scale_report(seed, size, seconds, full_hour, timing, counts, trace, extra)


def scale_report(
    seed: int,
    size: int,
    seconds: float,
    full_hour: bool,
    timing: tuple[float, float, float, float],
    counts: Counter[str],
    trace: list[tuple[float, float]],
    extra: dict[str, Any],
) -> dict[str, Any]:
    """The figures of a scale run, one process or sharded, extrapolated to an hour.

    ``timing`` is (build, wall, CPU) seconds and the load average before the run.
    """
    build, wall, cpu, load = timing
    messages = sum(counts.values())
    extrapolated = wall * 3_600.0 / seconds
    # the target is set for 10,000 nodes; a quick run's smaller ring is not judged
    judged = size == 10_000
    return {
        "seed": seed,
        "nodes": size,
        **extra,
        "virtual_seconds": seconds,
        "build_wall_seconds": round(build, 2),
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1),
        "load_average_before": round(load, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
        "messages": messages,
        "messages_per_wall_second": round(messages / wall),
        "messages_per_cpu_second": round(messages / cpu),
        "messages_per_virtual_second": round(messages / seconds),
        "message_kinds_per_node_second": {
            kind: round(count / seconds / size, 3) for kind, count in counts.most_common()
        },
        "virtual_per_wall": round(seconds / wall, 3),
        "hour_wall_seconds": round(extrapolated, 1),
        "hour_cpu_seconds": round(cpu * 3_600.0 / seconds, 1),
        "hour_is_extrapolated": not full_hour,
        "target_seconds": SCALE_TARGET_SECONDS,
        "ratio_to_target": round(extrapolated / SCALE_TARGET_SECONDS, 2),
        "meets_target": extrapolated <= SCALE_TARGET_SECONDS if judged else None,
        "trace": [[round(v, 1), round(w, 2)] for v, w in trace],
    }


# --- plots and reports --------------------------------------------------------------------


def plot_hops(result: dict[str, Any], path: Path) -> None:
    runs = result["runs"]
    fig, axes = plt.subplots(1, len(runs), figsize=(5.5 * len(runs), 4), squeeze=False)
    for ax, run in zip(axes[0], runs, strict=True):
        hops = [int(h) for h in run["distribution"]]
        counts = [run["distribution"][str(h)] for h in hops]
        ax.bar(hops, counts, color="#4878a8")
        ax.axvline(run["mean_hops"], color="black", label=f"mean {run['mean_hops']:.2f}")
        ax.axvline(run["target_mean"], color="red", linestyle="--",
                   label=f"target (1/2) log2 N = {run['target_mean']:.1f}")
        ax.set_title(f"N = {run['nodes']:,}: {run['completed']:,} lookups")
        ax.set_xlabel("hops (FIND_SUCCESSOR requests sent)")
        ax.set_ylabel("lookups")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_failure(result: dict[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    stages = [
        ("before the failure", result["replicas_before"]),
        ("right after", result["replicas_right_after"]),
        (f"{result['seconds_after']:.0f} s after", result["replicas_after"]),
    ]
    counts = sorted({int(c) for _, census in stages for c in census["distribution"]})
    width = 0.8 / len(stages)
    for i, (label, census) in enumerate(stages):
        ax.bar([c + (i - 1) * width for c in counts],
               [census["distribution"].get(str(c), 0) for c in counts], width, label=label)
    ax.set_xticks(counts)
    ax.set_xlabel("live replicas of a record")
    ax.set_ylabel("records")
    ax.set_title(f"{result['failed']:,} of {result['nodes']:,} nodes fail at once (k = 3)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_churn(result: dict[str, Any], path: Path) -> None:
    bins = [b for b in result["bins"] if b["lookups"]]
    minutes = [b["start"] / 60 for b in bins]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    top.plot(minutes, [100 * b["successes"] / b["lookups"] for b in bins], marker="o")
    top.set_ylabel("lookup success (%)")
    top.set_title(
        f"churn: N ~ {result['nodes']:,}, median session {result['median_session_seconds']:.0f} s"
    )
    top.set_ylim(top=100.5)
    bottom.plot(minutes, [b["maintenance_bytes_per_node_s"] for b in bins], marker="o",
                label="maintenance")
    bottom.axhline(BAMBOO_BYTES_PER_NODE, color="red", linestyle="--", label="Bamboo, 900 B/s")
    bottom.set_ylabel("bytes per node per second")
    bottom.set_xlabel("virtual minutes")
    bottom.set_ylim(bottom=0)
    bottom.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_scale(result: dict[str, Any], path: Path) -> None:
    virtual = [v for v, _ in result["trace"]]
    wall = [w for _, w in result["trace"]]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(virtual, wall, label="measured")
    if result["hour_is_extrapolated"]:
        ax.plot([virtual[-1], 3_600], [wall[-1], result["hour_wall_seconds"]], linestyle=":",
                label="extrapolated")
    ax.axhline(SCALE_TARGET_SECONDS, color="red", linestyle="--", label="target, 10 minutes")
    ax.set_xlabel("virtual seconds")
    ax.set_ylabel("wall seconds")
    ax.set_title(f"simulating {result['nodes']:,} nodes")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


PLOTS: dict[str, Callable[[dict[str, Any], Path], None]] = {
    "hops": plot_hops,
    "failure": plot_failure,
    "churn": plot_churn,
    "scale": plot_scale,
}


def figures(report: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """The rows of the summary: (experiment, figure, target, met)."""
    rows: list[tuple[str, str, str, bool | None]] = []
    hops = report.get("hops")
    if hops:
        for run in hops["runs"]:
            name = f"hops N={run['nodes']:,}"
            rows.append((name, f"mean {run['mean_hops']:.2f}, p99 {run['p99_hops']},"
                         f" max {run['max_hops']}", f"mean <= {run['target_mean']:.1f}",
                         run["mean_hops"] <= run["target_mean"]))
            rows.append((name, f"{run['mismatches']} mismatches,"
                         f" {run['completed']:,}/{run['lookups']:,} completed", "0 mismatches",
                         run["mismatches"] == 0 and run["completed"] == run["lookups"]))
    failure = report.get("failure")
    if failure:
        name = f"failure N={failure['nodes']:,} r={failure['successor_list_length']}"
        rows.append((name, f"{failure['successes']:,}/{failure['lookups']:,} lookups succeed",
                     f">= {failure['success_target']:,}", failure["meets_target"]))
        low, high = failure["records_lost_ci95"]
        model_low, model_high = failure["model_lost_range95"]
        rows.append((name, f"records lost {failure['records_lost']}/{failure['records']}"
                     f" = {failure['records_lost_fraction']:.3f} (95% CI {low:.3f}-{high:.3f})",
                     f"p^k = 0.125; 95% range {model_low:.3f}-{model_high:.3f}",
                     failure["within_model_range"]))
        after = failure["replicas_after"]
        rows.append((name, f"{after['with_k_or_more']:,}/{after['records']:,} records on k live"
                     f" nodes {failure['seconds_after']:.0f} s after"
                     f" ({after['records'] - failure['records_lost']:,} survived)",
                     "all survivors", after["with_k_or_more"]
                     == after["records"] - failure["records_lost"]))
    churn = report.get("churn")
    if churn:
        name = f"churn N={churn['nodes']:,}"
        rate = churn["lookup_success_rate"]
        rows.append((name, f"lookup success {churn['lookup_successes']:,}/"
                     f"{churn['lookups_judged']:,} = {100 * (rate or 0):.2f}%", "-", None))
        rows.append((name, f"records resolvable {churn['records_resolvable']:,}/"
                     f"{churn['records']:,}", "-", None))
        rows.append((name, f"maintenance {churn['maintenance_bytes_per_node_s']:.0f} B/s,"
                     f" {churn['maintenance_messages_per_node_s']:.2f} msg/s per node",
                     "< 900 B/s (Bamboo)", churn["meets_bamboo"]))
    scale = report.get("scale")
    if scale:
        name = f"scale N={scale['nodes']:,}, {scale.get('shards', 1)} process(es)"
        label = "extrapolated" if scale["hour_is_extrapolated"] else "measured"
        rows.append((name, f"{scale['virtual_seconds']:.0f} virtual s in"
                     f" {scale['wall_seconds']:.0f} wall s;"
                     f" {scale['messages_per_wall_second']:,} msg/wall s,"
                     f" {scale['messages_per_cpu_second']:,} msg/CPU s"
                     f" (load {scale['load_average_before']:.1f})", "-", None))
        rows.append((name, f"one hour: {scale['hour_wall_seconds']:.0f} wall s"
                     f" ({scale['hour_cpu_seconds']:.0f} CPU s), {label},"
                     f" {scale['ratio_to_target']:.2f}x the target",
                     "<= 600 s at N=10,000", scale["meets_target"]))
    return rows


def table(report: dict[str, Any]) -> str:
    rows = figures(report)
    widths = [max(len(row[i]) for row in [("experiment", "figure", "target"), *rows])
              for i in range(3)]
    head = f"{'experiment':<{widths[0]}}  {'figure':<{widths[1]}}  {'target':<{widths[2]}}  met"
    lines = [head, "-" * len(head)]
    for name, figure, target, met in rows:
        mark = "-" if met is None else ("yes" if met else "NO")
        lines.append(f"{name:<{widths[0]}}  {figure:<{widths[1]}}  {target:<{widths[2]}}  {mark}")
    return "\n".join(lines)


def write_html(report: dict[str, Any], path: Path, suffix: str) -> None:
    rows = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{html.escape(f)}</td><td>{html.escape(t)}</td>"
        f"<td class='{'' if m is None else ('ok' if m else 'miss')}'>"
        f"{'-' if m is None else ('yes' if m else 'NO')}</td></tr>"
        for n, f, t, m in figures(report)
    )
    notes = []
    if "hops" in report:
        notes.append(HOP_DEFINITION)
    if "failure" in report:
        notes.append(report["failure"]["note_r"])
        causes = report["failure"]["failure_causes"]
        notes.append("failed lookups after the mass failure, by cause: "
                     + (", ".join(f"{k}: {v}" for k, v in causes.items()) or "none"))
        notes.append("records lost: the binomial interval treats records as independent, but"
                     " records with the same replica set are lost together and neighbouring"
                     " sets share nodes; the 95 % range of the p^k model comes from failing"
                     " 2,000 other random halves of the same placement")
        crashed = report["failure"]["outcomes_when_predecessor_crashed"]
        notes.append("outcomes of the lookups whose target's predecessor (before the failure)"
                     " crashed: " + ", ".join(f"{k}: {v}" for k, v in crashed.items()))
    if "churn" in report:
        churn = report["churn"]
        notes.append(
            f"churn: {churn['failures']:,} crashes and {churn['joins']:,} joins in"
            f" {churn['churn_seconds']:.0f} virtual s, stable base of {churn['stable_base']}"
            f" nodes (DHT-RING-4); lookup outcomes: "
            + ", ".join(f"{k}: {v}" for k, v in churn["lookup_outcomes"].items())
        )
        census = churn["replicas_at_end"]
        notes.append(
            f"churn: at the end, {census['lost']} of {census['records']} records had no live"
            f" replica and {census['on_true_replica_set']} were on their whole true replica"
            f" set; resolutions: "
            + ", ".join(f"{k}: {v}" for k, v in churn["resolve_outcomes"].items())
        )
    if report.get("scale", {}).get("hour_is_extrapolated"):
        notes.append("the one-hour wall time of the scale run is extrapolated linearly from a"
                     f" {report['scale']['virtual_seconds']:.0f}-second run")
    images = "".join(
        f"<h2>{name}</h2><img src='dht_sim_{name}{suffix}.png' alt='{name}'>"
        for name in SECTIONS if name in report
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ServalDHT simulator benchmark</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}
.ok{{color:#070}}.miss{{color:#b00;font-weight:bold}}img{{max-width:100%}}</style></head>
<body><h1>ServalDHT simulator benchmark</h1>
<p>{html.escape(report['date'])}, Python {html.escape(report['python'])},
{html.escape(report['machine'])}{', quick run' if report['quick'] else ''}.
Generated by <code>benchmarks/dht_sim.py</code>; the figures are in
<code>dht_sim{suffix}.json</code>.</p>
<table><tr><th>experiment</th><th>figure</th><th>target</th><th>met</th></tr>{rows}</table>
<ul>{''.join(f'<li>{html.escape(note)}</li>' for note in notes)}</ul>
{images}
</body></html>
"""
    path.write_text(page, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small rings, for smoke tests")
    parser.add_argument("--only", choices=SECTIONS, help="run one experiment")
    parser.add_argument("--seed", type=int, default=1, help="the seed of every random choice")
    parser.add_argument("--full-hour", action="store_true",
                        help="scale: simulate the whole hour instead of extrapolating")
    parser.add_argument("--churn-minutes", type=float, help="virtual minutes of churn")
    parser.add_argument("--scale-seconds", type=float, help="virtual seconds of the scale run")
    parser.add_argument("--shards", type=int, default=min(2, os.cpu_count() or 1),
                        help="scale: worker processes, each simulating a range of the ring"
                        " (default: one per core, at most 2); 1 runs the one-process"
                        " simulator")
    parser.add_argument("--output", type=Path, default=RESULTS, help="directory for the results")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else Settings()
    if args.churn_minutes is not None:
        settings = dataclasses.replace(settings, churn_seconds=60.0 * args.churn_minutes)
    if args.scale_seconds is not None:
        settings = dataclasses.replace(settings, scale_seconds=args.scale_seconds)
    suffix = "_quick" if args.quick else ""
    output: Path = args.output
    output.mkdir(parents=True, exist_ok=True)
    json_path = output / f"dht_sim{suffix}.json"

    report: dict[str, Any] = {}
    if args.only and json_path.exists():
        report = json.loads(json_path.read_text(encoding="utf-8"))  # keep the other sections
    report.update(
        quick=args.quick,
        python=platform.python_version(),
        machine=platform.machine(),
        date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    for name in [args.only] if args.only else SECTIONS:
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        if name == "hops":
            print(f"  {HOP_DEFINITION}")
            result = run_hops(settings, args.seed)
        elif name == "failure":
            result = run_failure(settings, args.seed)
            print(f"  {result['note_r']}")
        elif name == "churn":
            result = run_churn(settings, args.seed)
        else:
            result = run_scale(settings, args.seed, args.full_hour, args.shards)
        result["section_wall_seconds"] = round(time.perf_counter() - started, 1)
        report[name] = result
        PLOTS[name](result, output / f"dht_sim_{name}{suffix}.png")

    print()
    print(table(report))
    json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    html_path = output / f"dht_sim{suffix}.html"
    write_html(report, html_path, suffix)
    print(f"wrote {json_path}, {html_path} and the plots beside them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
