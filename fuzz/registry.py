"""Every campaign, by name: what it runs, where it starts, and its budgets.

The registry imports nothing of ``ref``: a coverage-guided worker must import
the code under test inside atheris's instrumentation, so each entry names its
harness, seeds and dictionary as ``"module:function"`` and :func:`load`
imports them when the worker is ready.  Adding a campaign is one entry here
and one function that takes the bytes of an input.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass(frozen=True)
class Target:
    """One campaign."""

    name: str
    kind: str  # "atheris" (coverage-guided), "hypothesis" (structure-aware) or "network"
    summary: str
    harness: str  # "module:function"
    seeds: str = ""  # "module:function" returning the seed inputs (atheris)
    dictionary: str = "fuzz.seeds:dictionary"
    max_len: int = 1300  # octets; a ServalDHT message is at most 1,184
    budget: float = 0.5  # seconds one input may take before it is a finding
    smoke: float = 10.0  # seconds of the ``tox -e fuzz`` run
    requires: str = ""  # "module:attribute" that must exist, for a core still being written
    replay: str = ""  # "module:function" that runs one kept input; the harness by default

    @property
    def replayer(self) -> str:
        return self.replay or self.harness

    @property
    def available(self) -> bool:
        """The harness and the code it needs exist (imports the latter: not in a worker)."""
        needed = [self.harness, self.requires] if self.requires else [self.harness]
        for reference in needed:
            module, _, attribute = reference.partition(":")
            try:
                if importlib.util.find_spec(module) is None:
                    return False
            except ModuleNotFoundError:
                return False
        if not self.requires:
            return True
        module, _, attribute = self.requires.partition(":")
        return hasattr(importlib.import_module(module), attribute)


def load(reference: str) -> Any:
    """The object a ``"module:function"`` reference names."""
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


def loader(reference: str) -> Callable[..., Any]:
    found = load(reference)
    if not callable(found):
        raise TypeError(f"{reference} is not callable")
    return found  # type: ignore[no-any-return]


_DECODER = "fuzz.decoders"
_SEEDS = "fuzz.seeds"

TARGETS: dict[str, Target] = {
    target.name: target
    for target in (
        Target(
            "sal",
            "atheris",
            "decode_sal (derived fast path): random and checksum-fixed SAL packets",
            f"{_DECODER}:sal",
            f"{_SEEDS}:sal_datagrams",
        ),
        Target(
            "stream",
            "atheris",
            "decode_stream: STREAM segment headers and data",
            f"{_DECODER}:stream",
            f"{_SEEDS}:stream_segments",
            smoke=6.0,
        ),
        Target(
            "dht",
            "atheris",
            "decode_dht (derived fast path): ServalDHT messages, signatures checked when signed",
            f"{_DECODER}:dht",
            f"{_SEEDS}:dht_payloads",
        ),
        Target(
            "record",
            "atheris",
            "decode_record (derived fast path)",
            f"{_DECODER}:record",
            f"{_SEEDS}:records",
        ),
        Target(
            "sal-diff",
            "atheris",
            "differential: decode_sal against decode_sal_interpreted (Construct)",
            f"{_DECODER}:sal_diff",
            f"{_SEEDS}:sal_datagrams",
            smoke=6.0,
        ),
        Target(
            "dht-diff",
            "atheris",
            "differential: decode_dht against decode_dht_interpreted (Construct)",
            f"{_DECODER}:dht_diff",
            f"{_SEEDS}:dht_payloads",
            smoke=6.0,
        ),
        Target(
            "record-diff",
            "atheris",
            "differential: decode_record against decode_record_interpreted (Construct)",
            f"{_DECODER}:record_diff",
            f"{_SEEDS}:records",
            smoke=6.0,
        ),
        Target(
            "dht-node",
            "atheris",
            "the ServalDHT node core (ref.chord.node.Node): frames of datagrams, invariants",
            "fuzz.nodes:run",
            "fuzz.nodes:node_seeds",
            max_len=4096,
            budget=5.0,
            smoke=20.0,
        ),
        Target(
            "sal-host",
            "atheris",
            "the SAL host core (ref.sal.host.Host): frames of datagrams, invariants",
            "fuzz.hosts:run",
            "fuzz.hosts:host_seeds",
            max_len=4096,
            budget=5.0,
            smoke=20.0,
            requires="ref.sal.host:Host",
        ),
        Target(
            "sal-structured",
            "hypothesis",
            "valid SAL packets from the declarations, one field, length, count or order mutated",
            "fuzz.structured:sal_campaign",
            replay="fuzz.structured:sal_replay",
            smoke=8.0,
        ),
        Target(
            "stream-structured",
            "hypothesis",
            "valid stream segments, mutated",
            "fuzz.structured:stream_campaign",
            replay="fuzz.structured:stream_replay",
            smoke=4.0,
        ),
        Target(
            "dht-structured",
            "hypothesis",
            "valid ServalDHT messages, every declared field, count and list mutated",
            "fuzz.structured:dht_campaign",
            replay="fuzz.structured:dht_replay",
            smoke=8.0,
        ),
        Target(
            "record-structured",
            "hypothesis",
            "valid records, fixed and endpoint fields mutated",
            "fuzz.structured:record_campaign",
            replay="fuzz.structured:record_replay",
            smoke=6.0,
        ),
        Target(
            "dht-node-stateful",
            "hypothesis",
            "RuleBasedStateMachine: several peers' message sequences into one node",
            "fuzz.structured:node_campaign",
            replay="fuzz.nodes:run",
            smoke=20.0,
        ),
        Target(
            "network",
            "network",
            "serval-conform's socket fuzzer against a serval-node process, with liveness checks",
            "fuzz.network:campaign",
            replay="fuzz.network:replay",
            budget=30.0,
            smoke=20.0,
        ),
    )
}


def available() -> dict[str, Target]:
    """The campaigns whose code under test exists."""
    return {name: target for name, target in TARGETS.items() if target.available}
