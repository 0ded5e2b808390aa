"""A deterministic simulator: many node cores on an in-memory network, virtual time.

The simulator runs the unchanged :class:`~ref.chord.node.Node` core.  Messages
travel as objects (:class:`~ref.chord.framing.ObjectFraming`) so that runs of
thousands of nodes stay affordable; everything else, timers, retries,
randomness, is the core's own.  The network is seeded: latency is drawn
uniformly from a range, datagrams can be lost, partitions cut groups of
endpoints apart, and nodes fail silently (crash) or leave gracefully.

Besides the network, the module computes the true ring (the sorted IDs of
live members) and checks Zave's invariants over the nodes' states.
"""

from __future__ import annotations

import bisect
import gc
import heapq
import ipaddress
import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ref.chord.client import Client
from ref.chord.exchange import Datagram, RandomSource
from ref.chord.framing import Frame, ObjectFraming, datagram_size
from ref.chord.node import Node, NodeConfig, NodeState
from ref.chord.ring import RING, distance, node_id_of
from ref.wire.constants import DEFAULT_PORT
from ref.wire.sal import Endpoint

_DELIVER = 0
_WAKE = 1
_CALL = 2
#: Width of the event queue's time slots, as slots per second (see Network._push).
_SLOTS_PER_SECOND = 1000.0

#: Collector thresholds while the network runs (see Network.run_until).
_GC_THRESHOLDS = (100_000, 20, 100)

#: (when, sequence, kind, target, data, source); sequence breaks ties in time.
_Event = tuple[float, int, int, Any, Any, Any]


class SimAddress(ipaddress.IPv4Address):
    """An IPv4 address with a cheap hash: endpoints are dictionary keys everywhere."""

    __slots__ = ()

    def __hash__(self) -> int:
        return self._ip  # type: ignore[attr-defined,no-any-return]  # int(self), one call less


def _kind(kind: type | str) -> str:
    return kind if isinstance(kind, str) else kind.TYPE.name  # type: ignore[attr-defined]


class Network:
    """An in-memory datagram network with a virtual clock."""

    def __init__(
        self,
        rng: RandomSource,
        *,
        start: float = 1_800_000_000.0,
        latency: tuple[float, float] = (0.005, 0.05),
        loss: float = 0.0,
    ) -> None:
        self.rng = rng
        self.now = start
        self.latency = latency
        self.loss = loss
        self.hosts: dict[Endpoint, Node | Client] = {}
        self._messages: Counter[type | str] = Counter()
        self._bytes: Counter[type | str] = Counter()
        # The event queue, in time slots: a heap of the events of the current slot
        # and earlier, and unsorted lists of later ones by slot, heapified when
        # their slot comes.  Events leave in the order of (when, sequence), as from
        # one heap, but each push and pop touches a few dozen events, not a heap of
        # every timer of 10,000 hosts.
        self._near: list[_Event] = []
        self._far: dict[int, list[_Event]] = {}
        self._slots: list[int] = []
        self._slot = -1
        self._sequence = itertools.count()
        self._wake: dict[Node | Client, float] = {}
        self._addresses = itertools.count(1)
        self._partition: dict[Endpoint, int] = {}

    @property
    def message_counts(self) -> Counter[str]:
        """Datagrams sent, by ServalDHT message type."""
        return Counter({_kind(kind): count for kind, count in self._messages.items()})

    @property
    def byte_counts(self) -> Counter[str]:
        """Bytes of SAL datagrams sent, by ServalDHT message type."""
        return Counter({_kind(kind): count for kind, count in self._bytes.items()})

    # --- hosts ------------------------------------------------------------------------

    def new_endpoint(self) -> Endpoint:
        number = next(self._addresses)
        return Endpoint(SimAddress(0x0A000000 + number), DEFAULT_PORT)

    def add_node(
        self,
        config: NodeConfig | None = None,
        bootstrap: Sequence[Endpoint] = (),
        *,
        key: bytes | None = None,
        endpoint: Endpoint | None = None,
        start: bool = True,
    ) -> Node:
        """A new node with a random key; it creates a ring or joins through ``bootstrap``."""
        key = key if key is not None else self.rng.randbytes(32)
        endpoint = endpoint if endpoint is not None else self.new_endpoint()
        node = Node(ObjectFraming(key), key, endpoint, self.rng, self.now, config)
        self.hosts[endpoint] = node
        if start:
            node.start(bootstrap)
            self.flush(node)
        return node

    def add_client(self, nodes: Sequence[Endpoint]) -> Client:
        endpoint = self.new_endpoint()
        client = Client(ObjectFraming(bytes(32)), endpoint, nodes, self.rng, self.now)
        self.hosts[endpoint] = client
        return client

    def fail(self, host: Node | Client) -> None:
        """Crash a host: it vanishes without a word."""
        self.hosts.pop(host.endpoint, None)
        self._wake.pop(host, None)

    def partition(self, *groups: Iterable[Endpoint]) -> None:
        """Only endpoints of the same group (or in no group) can reach each other."""
        self._partition = {ep: index for index, group in enumerate(groups) for ep in group}

    def heal(self) -> None:
        self._partition = {}

    def members(self) -> list[Node]:
        """Live nodes that are ring members."""
        return [
            host
            for host in self.hosts.values()
            if isinstance(host, Node) and host.state is NodeState.MEMBER
        ]

    # --- running ----------------------------------------------------------------------

    def flush(self, host: Node | Client) -> None:
        """Put a host's outgoing datagrams on the wire and schedule its next timer."""
        outgoing = host.datagrams_to_send()
        if outgoing:
            source = host.endpoint
            rng = self.rng
            loss = self.loss
            low, high = self.latency
            spread = high - low
            now = self.now
            messages = self._messages
            sizes = self._bytes
            for data, destination in outgoing:
                if type(destination.address) is not SimAddress:
                    # Decoded from bytes (a forwarded SAL packet): the same address,
                    # made hashable like the others.
                    destination = Endpoint(SimAddress(int(destination.address)), destination.port)
                if isinstance(data, Frame):
                    kind: type | str = type(data.message.body)
                    size = datagram_size(data.size)
                else:
                    kind, size = "bytes", len(data)
                messages[kind] += 1
                sizes[kind] += size
                if loss and rng.random() < loss:
                    continue
                when = now + low + spread * rng.random()
                self._push((when, next(self._sequence), _DELIVER, destination, data, source))
        deadline = host.get_timer()
        if deadline is not None:
            scheduled = self._wake.get(host)
            if scheduled is None or deadline < scheduled:
                self._wake[host] = deadline
                self._push((deadline, next(self._sequence), _WAKE, host, None, None))

    def call_at(self, when: float, action: Any) -> None:
        """Run ``action()`` at virtual time ``when`` (for schedules of churn)."""
        self._push((when, next(self._sequence), _CALL, None, action, None))

    def _push(self, event: _Event) -> None:
        slot = int(event[0] * _SLOTS_PER_SECOND)
        if slot <= self._slot:
            heapq.heappush(self._near, event)
            return
        later = self._far.get(slot)
        if later is None:
            self._far[slot] = [event]
            heapq.heappush(self._slots, slot)
        else:
            later.append(event)

    def _advance(self) -> bool:
        """Make the next slot with events the current one; False when none is left."""
        if not self._slots:
            return False
        self._slot = slot = heapq.heappop(self._slots)
        near = self._far.pop(slot)
        heapq.heapify(near)
        self._near = near
        return True

    def next_time(self) -> float | None:
        """The virtual time of the next event, or None when nothing is scheduled."""
        if not self._near and not self._advance():
            return None
        return self._near[0][0]

    def run_until(self, until: float) -> None:
        """Run the events up to virtual time ``until``.

        The garbage collector is held back meanwhile: a ring of 10,000 nodes is
        some 800,000 tracked objects, which every full collection walks, while
        the events themselves make next to no cyclic garbage (a crashed host's
        state is some, and is collected all the same, only less often).
        """
        thresholds = gc.get_threshold()
        if thresholds[0]:
            gc.set_threshold(*map(max, thresholds, _GC_THRESHOLDS))
        try:
            self._run_until(until)
        finally:
            gc.set_threshold(*thresholds)

    def _run_until(self, until: float) -> None:
        hosts = self.hosts
        wake = self._wake
        heappop = heapq.heappop
        while True:
            near = self._near
            if not near:
                if not self._advance():
                    break
                near = self._near
            if near[0][0] > until:
                break
            when, _, kind, target, data, source = heappop(near)
            self.now = when
            if kind == _DELIVER:
                host = hosts.get(target)
                if host is None:
                    continue
                if self._partition and not self._reachable(source, target):
                    continue
                host.receive_datagram(data, source, when)
            elif kind == _WAKE:
                host = target
                if wake.get(host) != when:
                    continue
                del wake[host]
                host.handle_timer(when)
            else:
                data()
                continue
            self.flush(host)
        self.now = max(self.now, until)

    def run_for(self, seconds: float) -> None:
        self.run_until(self.now + seconds)

    def run_operation(
        self, host: Node | Client, handle: int | Callable[[], int], limit: float = 120.0
    ) -> Any:
        """Run until an operation of ``host`` completes; return its result.

        ``handle`` is the operation's handle, or better a callable that starts
        it: the host's clock is brought to the network's first, so that its
        deadlines do not lie in the past of an idle host.
        """
        from ref.chord.exchange import Completed

        if callable(handle):
            host.now = self.now
            handle = handle()
        self.flush(host)
        deadline = self.now + limit
        while self.now < deadline:
            event = host.next_event()
            while event is not None:
                if isinstance(event, Completed) and event.handle == handle:
                    return event.result
                event = host.next_event()
            upcoming = self.next_time()
            if upcoming is None:
                break
            self.run_until(min(deadline, upcoming))
        raise TimeoutError(f"operation {handle} did not complete")

    def _reachable(self, source: Endpoint, target: Endpoint) -> bool:
        return self._partition.get(source, -1) == self._partition.get(target, -1) or (
            source not in self._partition or target not in self._partition
        )

    def send(
        self,
        data: Datagram,
        source: Endpoint,
        destination: Endpoint,
        when: float | None = None,
    ) -> None:
        """Inject a datagram arriving at ``when`` (default: now), as an attacker or test would."""
        when = self.now if when is None else when
        self._push((when, next(self._sequence), _DELIVER, destination, data, source))


# --- the truth and the invariants -------------------------------------------------------


class Truth:
    """The correct ring: live members sorted by node ID."""

    def __init__(self, nodes: Iterable[Node]) -> None:
        self.nodes = sorted(nodes, key=lambda node: node.id)
        self.ids = [node.id for node in self.nodes]

    def successor(self, identifier: int) -> Node:
        index = bisect.bisect_left(self.ids, identifier)
        return self.nodes[index % len(self.nodes)]

    def successors(self, node: Node, count: int) -> list[Node]:
        index = self.ids.index(node.id)
        return [self.nodes[(index + step) % len(self.nodes)] for step in range(1, count + 1)]

    def predecessor(self, node: Node) -> Node:
        index = self.ids.index(node.id)
        return self.nodes[index - 1]


def ring_problems(network: Network) -> list[str]:
    """Zave's invariants over the live members; an empty list means they hold.

    - every member has a live successor in its successor list;
    - following first live successors from any member reaches one cycle,
      the cycle is ordered (it goes round the identifier space once), and
    - at most one such cycle exists (no two rings).
    """
    members = network.members()
    if not members:
        return []
    live = {node.key: node for node in members}
    best: dict[bytes, bytes] = {}
    problems = []
    for node in members:
        entry = next((peer for peer in node.successors if peer.key in live), None)
        if entry is None:
            problems.append(f"{_name(node)} has no live successor")
        else:
            best[node.key] = entry.key
    if problems:
        return problems
    cycles: set[tuple[bytes, ...]] = set()
    for node in members:
        seen: dict[bytes, int] = {}
        key = node.key
        while key not in seen:
            seen[key] = len(seen)
            key = best[key]
        start = seen[key]
        cycle = [k for k, position in seen.items() if position >= start]
        rotation = cycle.index(min(cycle))
        cycles.add(tuple(cycle[rotation:] + cycle[:rotation]))
    if len(cycles) > 1:
        problems.append(f"{len(cycles)} rings")
    for ring in cycles:
        ids = [node_id_of(key) for key in ring]
        turns = (
            sum(distance(ids[i], ids[(i + 1) % len(ids)]) for i in range(len(ids))) // RING
            if len(ids) > 1
            else 1
        )
        if turns != 1:
            problems.append(f"a ring of {len(ids)} goes round {turns} times: out of order")
    return problems


def ring_is_exact(network: Network) -> list[str]:
    """Differences between every member's first successor and predecessor and the truth."""
    members = network.members()
    truth = Truth(members)
    problems = []
    for node in members:
        if len(members) == 1:
            break
        expected = truth.successors(node, 1)[0]
        if not node.successors or node.successors[0].key != expected.key:
            problems.append(f"{_name(node)}: successor is not {_name(expected)}")
        before = truth.predecessor(node)
        if not node.predecessors or node.predecessors[0].key != before.key:
            problems.append(f"{_name(node)}: predecessor is not {_name(before)}")
    return problems


def install_ideal_state(network: Network, fingers: bool = True) -> None:
    """Give every member the routing state of a stable ring (for lookup measurements)."""
    members = network.members()
    truth = Truth(members)
    for node in members:
        r = node.config.successors
        k = node.config.replicas
        node.successors = [n.me for n in truth.successors(node, min(r, len(members) - 1))]
        index = truth.ids.index(node.id)
        node.predecessors = [
            truth.nodes[(index - step) % len(members)].me
            for step in range(1, min(k, len(members) - 1) + 1)
        ]
        node.fingers = {}
        if fingers:
            lowest = node.first_useful_finger()
            for i in range(lowest, 256):
                found = truth.successor((node.id + (1 << i)) % RING)
                if found.key != node.key:
                    node.fingers[i] = found.me


def _name(node: Node) -> str:
    return f"{node.id:064x}"[:8]
