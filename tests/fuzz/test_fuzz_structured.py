"""The structure-aware campaigns, briefly: the node state machine and the mutated encodings.

The same machine and strategies run for minutes in ``python -m fuzz run``;
here a few examples each, so that a broken rule or strategy shows in the
default test run.  The node machine checks, after every step, the
invariants of :class:`fuzz.nodes.NodeWatch` (among them DHT-STORE-1: no
record replaces another without a valid signature, the same owner and a
higher sequence).
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.stateful import run_state_machine_as_test

from fuzz import nodes, structured
from fuzz.findings import InvariantViolation

FEW = settings(
    max_examples=15,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def test_dht_store_1_node_machine_keeps_its_invariants() -> None:
    structured.NodeMachine.reporter = None
    structured.NodeMachine.known = frozenset()
    run_state_machine_as_test(
        structured.NodeMachine, settings=settings(FEW, max_examples=8, stateful_step_count=12)
    )


@pytest.mark.parametrize(
    ("inputs", "check"),
    [
        (structured.sal_inputs, structured.sal_check),
        (structured.stream_inputs, structured.stream_check),
        (structured.dht_inputs, structured.dht_check),
        (structured.record_inputs, structured.record_check),
    ],
    ids=["sal", "stream", "dht", "record"],
)
def test_mutated_encodings_meet_the_decoder_oracles(inputs: object, check: object) -> None:
    @FEW
    @given(inputs())  # type: ignore[operator]
    def run(data: bytes) -> None:
        assert check(data).split(":")[0] in ("accepted", "refused")  # type: ignore[operator]

    run()


def test_the_declared_fields_of_a_message_are_mutated() -> None:
    payload = structured.S.signed_message(
        structured.S.DhtMessage(structured.S.Leave(None, ()), bytes(8)),
        structured.S.PRIVATE_KEYS[0],
    )
    encoded = structured.S.DHT.encode(payload)

    @FEW
    @given(structured.declared_dht_mutant(encoded))
    def run(data: bytes) -> None:
        assert data != encoded or len(data) == len(encoded)

    run()


def test_a_long_lived_node_stays_within_its_memory() -> None:
    """Bloat: one node, many mutated datagrams from many sources, the clock running."""
    growth = structured.soak(random.Random(3), 300)
    assert growth < 256 * 1024


def test_a_failing_sequence_is_kept_as_frames_of_the_node_harness(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A machine's failure replays through ``python -m fuzz replay dht-node``."""
    structured.NodeMachine.known = frozenset()
    structured.NodeMachine.failure = failure = structured._Failure()
    machine = structured.NodeMachine()
    machine.tick()

    def planted(frame: nodes.Frame) -> None:
        raise InvariantViolation("planted", "for the test")

    monkeypatch.setattr(machine.execution, "deliver", planted)
    with pytest.raises(InvariantViolation):
        machine.rectify(4, True)
    controls = [nodes.TICK, 4 | nodes.TOKEN]
    assert [f.control & ~nodes.AS_SIGNED for f in nodes.frames(failure.data)] == controls


def test_the_machine_looks_past_a_known_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once a run hits a known finding, its rules do nothing; the campaign goes on."""

    def planted(self: nodes.NodeRun, frame: nodes.Frame) -> None:
        raise InvariantViolation("planted", "for the test")

    monkeypatch.setattr(nodes.NodeRun, "deliver", planted)
    structured.NodeMachine.reporter = None
    structured.NodeMachine.known = {"InvariantViolation:planted"}
    run_state_machine_as_test(
        structured.NodeMachine, settings=settings(FEW, max_examples=5, stateful_step_count=5)
    )
