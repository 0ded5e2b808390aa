"""The simulator on several cores: a ring split into shards, one worker process each.

Theory of operation.  A shard is a contiguous range of the identifier space
and a worker process runs the nodes whose IDs fall in it on its own
:class:`~ref.chord.sim.Network`, with its own seeded randomness.  Stabilizing
and checking predecessors talk to ring neighbours, so most maintenance stays
inside a shard; a datagram for a node of another shard goes to that shard's
outbox instead of the local event queue.

The workers keep in step conservatively.  No datagram arrives sooner than the
minimum link latency after it was sent, so the virtual time is cut into
windows no longer than that latency: within a window a worker runs its own
events without waiting, since nothing sent in the window can arrive before it
ends; at its end the workers swap their outboxes (pickled, one batch per pair
of shards) and queue what they received.  Batches are swapped in a fixed order
and queued in the order they were sent, so a run is deterministic for a seed.
It is not the run of the one-process simulator with the same seed: each
shard draws from its own random source.

Only what the scale experiment needs is here: a stable ring with the routing
state of the true ring, run for a while, then counted and inspected.  Crashes,
partitions, joins and clients stay with the one-process simulator.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import gc
import io
import multiprocessing
import pickle
from collections import Counter
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from ref.chord.exchange import RandomSource
from ref.chord.node import Node, NodeConfig
from ref.chord.ring import RING, Peer, node_id_of
from ref.chord.sim import _DELIVER, Network, SimAddress, _Event
from ref.wire.constants import DEFAULT_PORT
from ref.wire.dht import LookupStatus, MessageFlags, NodeInfo, ResolveStatus
from ref.wire.errors import ErrorCode
from ref.wire.sal import Endpoint

_FIRST_ADDRESS = 0x0A000001
#: Collector settings of a worker once its shard is built (see _worker).
_GC_THRESHOLDS = (100_000, 20, 100)


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What every worker is told: the whole ring, and which shard owns which node."""

    seed: str
    shards: int
    keys: tuple[bytes, ...]  # the members; the n-th listens at 10.0.0.0 + n + 1
    config: NodeConfig
    latency: tuple[float, float]
    random_source: Callable[[str], RandomSource]  # seeded by a string, as random.Random
    cpu_clock: Callable[[], float]  # the worker's CPU time, as time.process_time

    def endpoint(self, index: int) -> Endpoint:
        return Endpoint(SimAddress(_FIRST_ADDRESS + index), DEFAULT_PORT)

    def shard_of(self, key: bytes) -> int:
        """Shard s owns the IDs in [s, s + 1) * 2^256 / shards."""
        return node_id_of(key) * self.shards // RING


class _ShardNetwork(Network):
    """One shard's network: datagrams for another shard's nodes wait in an outbox.

    Every worker builds the same table of the objects that datagrams share:
    each member's endpoint and Node Info, and the enumeration members.  A batch
    names them by their place in the table, so that they cost nothing to pickle
    and unpickle as the very objects the receiving shard already uses.
    """

    def __init__(self, plan: _Plan, shard: int) -> None:
        super().__init__(plan.random_source(f"{plan.seed}-shard-{shard}"), latency=plan.latency)
        self.shard = shard
        endpoints = [plan.endpoint(i) for i in range(len(plan.keys))]
        infos = [NodeInfo(key=key, endpoint=e) for key, e in zip(plan.keys, endpoints, strict=True)]
        flags = [MessageFlags(value) for value in range(256)]
        enums = [*LookupStatus, *ResolveStatus, *ErrorCode, *flags]
        self.table: list[Any] = [*endpoints, *infos, *enums]
        self.places = {id(thing): place for place, thing in enumerate(self.table)}
        self.owner = {e: plan.shard_of(key) for e, key in zip(endpoints, plan.keys, strict=True)}
        self.outboxes: list[list[tuple[float, Endpoint, Any, Endpoint]]] = [
            [] for _ in range(plan.shards)
        ]

    def _push(self, event: _Event) -> None:
        if event[2] == _DELIVER:
            shard = self.owner.get(event[3], self.shard)
            if shard != self.shard:
                when, _, _, destination, data, source = event
                self.outboxes[shard].append((when, destination, data, source))
                return
        super()._push(event)


class _Pickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO, places: dict[int, int]) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.places = places

    def persistent_id(self, obj: Any) -> int | None:
        return self.places.get(id(obj))


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, table: list[Any]) -> None:
        super().__init__(file)
        self.table = table

    def persistent_load(self, pid: Any) -> Any:
        return self.table[pid]


def _build(plan: _Plan, shard: int) -> _ShardNetwork:
    """This shard's nodes, with the routing state of the whole true ring."""
    net = _ShardNetwork(plan, shard)
    size = len(plan.keys)
    # The table's Node Infos become the Peers every node uses (Peer interns them).
    ring = sorted(
        (Peer.from_info(info) for info in net.table[size : 2 * size]), key=lambda peer: peer.id
    )
    ids = [peer.id for peer in ring]
    config = plan.config
    for peer in ring:
        if plan.shard_of(peer.key) != shard:
            continue
        node = net.add_node(config, key=peer.key, endpoint=peer.endpoint)
        # As sim.install_ideal_state does, from the whole ring rather than local members.
        index = bisect.bisect_left(ids, node.id)
        node.successors = [
            ring[(index + step) % size] for step in range(1, min(config.successors, size - 1) + 1)
        ]
        node.predecessors = [
            ring[(index - step) % size] for step in range(1, min(config.replicas, size - 1) + 1)
        ]
        node.fingers = {}
        for bit in range(node.first_useful_finger(), 256):
            found = ring[bisect.bisect_left(ids, (node.id + (1 << bit)) % RING) % size]
            if found.key != node.key:
                node.fingers[bit] = found
    return net


def _swap(net: _ShardNetwork, links: dict[int, Connection]) -> None:
    """Send each other shard its batch and queue the batches received, in shard order."""
    for other, link in sorted(links.items()):
        buffer = io.BytesIO()
        _Pickler(buffer, net.places).dump(net.outboxes[other])
        batch = buffer.getvalue()
        net.outboxes[other] = []
        # The lower shard of a pair sends first, so two large batches never block each other.
        if net.shard < other:
            link.send_bytes(batch)
            received = link.recv_bytes()
        else:
            received = link.recv_bytes()
            link.send_bytes(batch)
        for when, destination, data, source in _Unpickler(io.BytesIO(received), net.table).load():
            net.send(data, source, destination, when)


def _worker(plan: _Plan, shard: int, control: Connection, links: dict[int, Connection]) -> None:
    net = _build(plan, shard)
    # A worker's nodes never crash, so its ring is garbage never: out of the collector's way.
    gc.collect()
    gc.freeze()
    gc.set_threshold(*_GC_THRESHOLDS)
    window = plan.latency[0]
    horizon = net.now
    control.send(len(net.hosts))
    while True:
        command, argument = control.recv()
        if command == "run":
            until = float(argument)
            while horizon < until:
                # Every worker computes the same window ends from the same horizon.
                end = min(horizon + window, until)
                net.run_until(end)
                _swap(net, links)
                horizon = end
            control.send(sum(net.message_counts.values()))
        elif command == "cpu":
            control.send(plan.cpu_clock())
        elif command == "counts":
            control.send((net.message_counts, net.byte_counts))
        elif command == "lists":
            control.send(
                {
                    node.key: ([p.key for p in node.successors], [p.key for p in node.predecessors])
                    for node in net.hosts.values()
                    if isinstance(node, Node)
                }
            )
        else:
            control.send(None)
            return


class ShardedRing:
    """A stable ring of ``size`` nodes simulated by ``shards`` worker processes.

    The keys come from ``seed``; each shard's randomness too, drawn from
    ``random_source`` (``random.Random``, say) seeded with a string.
    ``cpu_clock`` (``time.process_time``) tells a worker's CPU time.  Both are
    injected, as everywhere in ``ref``, and must pickle (module-level
    callables do).  Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        size: int,
        seed: str,
        shards: int = 2,
        config: NodeConfig | None = None,
        *,
        random_source: Callable[[str], RandomSource],
        cpu_clock: Callable[[], float],
        latency: tuple[float, float] = (0.005, 0.05),
        start: float = 1_800_000_000.0,
    ) -> None:
        if shards < 1:
            raise ValueError("at least one shard")
        if latency[0] <= 0:
            raise ValueError("shards keep in step by the minimum latency, which must be positive")
        keys = random_source(f"{seed}-keys")
        self.plan = _Plan(
            seed=seed,
            shards=shards,
            keys=tuple(keys.randbytes(32) for _ in range(size)),
            config=config or NodeConfig(),
            latency=latency,
            random_source=random_source,
            cpu_clock=cpu_clock,
        )
        self.now = start
        self.messages = 0
        # fork where there is one: no script needs a __main__ guard to run shards.
        methods = multiprocessing.get_all_start_methods()
        context: Any = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        links: list[dict[int, Connection]] = [{} for _ in range(shards)]
        for low in range(shards):
            for high in range(low + 1, shards):
                links[low][high], links[high][low] = context.Pipe()
        self._controls: list[Connection] = []
        self._workers: list[Any] = []
        for shard in range(shards):
            ours, theirs = context.Pipe()
            worker = context.Process(
                target=_worker, args=(self.plan, shard, theirs, links[shard]), daemon=True
            )
            worker.start()
            theirs.close()
            self._controls.append(ours)
            self._workers.append(worker)
        for mine in links:
            for link in mine.values():
                link.close()
        #: Nodes per shard.
        self.sizes: list[int] = [control.recv() for control in self._controls]

    def __enter__(self) -> ShardedRing:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _ask(self, command: str, argument: Any = None) -> list[Any]:
        for control in self._controls:
            control.send((command, argument))
        return [control.recv() for control in self._controls]

    def run_until(self, until: float) -> None:
        if until > self.now:
            self.messages = sum(self._ask("run", until))
            self.now = until

    def run_for(self, seconds: float) -> None:
        self.run_until(self.now + seconds)

    def cpu_seconds(self) -> float:
        """CPU time the workers have used, together."""
        return float(sum(self._ask("cpu")))

    @property
    def message_counts(self) -> Counter[str]:
        """Datagrams sent, by ServalDHT message type, over all shards."""
        return self._summed(0)

    @property
    def byte_counts(self) -> Counter[str]:
        """Octets sent, by ServalDHT message type, over all shards."""
        return self._summed(1)

    def _summed(self, which: int) -> Counter[str]:
        total: Counter[str] = Counter()
        for counts in self._ask("counts"):
            total.update(counts[which])
        return total

    def lists(self) -> dict[bytes, tuple[list[bytes], list[bytes]]]:
        """Every node's successor and predecessor lists, as keys, by node key."""
        merged: dict[bytes, tuple[list[bytes], list[bytes]]] = {}
        for part in self._ask("lists"):
            merged.update(part)
        return merged

    def true_lists(self) -> dict[bytes, tuple[list[bytes], list[bytes]]]:
        """The lists of a stable ring of these nodes, in the form of :meth:`lists`."""
        ring = sorted(self.plan.keys, key=node_id_of)
        size = len(ring)
        r = min(self.plan.config.successors, size - 1)
        k = min(self.plan.config.replicas, size - 1)
        return {
            key: (
                [ring[(index + step) % size] for step in range(1, r + 1)],
                [ring[(index - step) % size] for step in range(1, k + 1)],
            )
            for index, key in enumerate(ring)
        }

    def close(self) -> None:
        if not self._workers:
            return
        for control in self._controls:
            with contextlib.suppress(OSError):  # a worker that died has closed its end
                control.send(("stop", None))
        for worker in self._workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.terminate()
        for control in self._controls:
            control.close()
        self._workers = []
