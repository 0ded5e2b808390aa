"""The sharded simulator (ref.chord.shardsim): a ring split over worker processes.

- a stable ring split in two stays exact across the shard boundaries;
- a run is deterministic for a seed;
- its message counts are those of the one-process simulator, within noise.
"""

from __future__ import annotations

import random
import time

import pytest

from ref.chord.shardsim import ShardedRing
from ref.chord.sim import Network, install_ideal_state

#: What ``ref`` takes injected: seeded randomness and a CPU clock.
INJECTED = {"random_source": random.Random, "cpu_clock": time.process_time}

SIZE = 48


def test_a_sharded_ring_stays_exact() -> None:
    with ShardedRing(SIZE, "exact", shards=2, **INJECTED) as ring:
        assert sum(ring.sizes) == SIZE
        assert all(ring.sizes)
        ring.run_for(30.0)
        assert ring.lists() == ring.true_lists()
        counts = ring.message_counts
        assert counts["GET_NEIGHBORS"] > 0
        assert counts["FIND_SUCCESSOR"] > 0


def test_a_sharded_run_is_deterministic_for_a_seed() -> None:
    outcomes = []
    for _ in range(2):
        with ShardedRing(SIZE, "again", shards=2, **INJECTED) as ring:
            ring.run_for(20.0)
            outcomes.append((ring.message_counts, ring.byte_counts, ring.lists()))
    assert outcomes[0] == outcomes[1]


def test_one_shard_is_the_whole_ring() -> None:
    with ShardedRing(16, "one", shards=1, **INJECTED) as ring:
        assert ring.sizes == [16]
        ring.run_for(10.0)
        assert ring.lists() == ring.true_lists()


def test_message_counts_match_the_one_process_simulator() -> None:
    seconds = 40.0
    with ShardedRing(SIZE, "compare", shards=2, **INJECTED) as ring:
        plan = ring.plan
        ring.run_for(seconds)
        sharded = ring.message_counts
    net = Network(random.Random("compare"))
    for index, key in enumerate(plan.keys):
        net.add_node(key=key, endpoint=plan.endpoint(index))
    install_ideal_state(net)
    net.run_for(seconds)
    single = net.message_counts
    assert set(sharded) == set(single)
    for kind, count in single.items():
        assert sharded[kind] == pytest.approx(count, rel=0.1), kind


def test_shards_need_a_minimum_latency() -> None:
    with pytest.raises(ValueError, match="minimum latency"):
        ShardedRing(8, "zero", latency=(0.0, 0.05), **INJECTED)
