"""The harnesses of ``fuzz/``: their seeds pass, and their oracles catch what they must.

STYLE item 8: every decoder is fuzzed with random bytes, truncations and
mutated valid messages, and the only allowed outcomes are a message or
``RemoteProtocolError``.  These tests check the machinery that does it, on
inputs small enough to run in the default test run.
"""

from __future__ import annotations

import dataclasses
import time

import pytest

from fuzz import decoders, nodes, registry, seeds
from fuzz.findings import (
    Finding,
    InvariantViolation,
    Mismatch,
    known_signatures,
    minimise,
    records,
    run_once,
    signature,
    store,
)
from ref.chord.ring import Peer
from ref.wire import (
    SERVALDHT_SERVICE_ID,
    ErrorCode,
    ExtensionType,
    MessageType,
    RemoteProtocolError,
    decode_sal,
)

ATHERIS = [name for name, target in registry.available().items() if target.kind == "atheris"]


@pytest.mark.parametrize("name", ATHERIS)
def test_every_seed_passes_its_harness(name: str) -> None:
    target = registry.TARGETS[name]
    harness = registry.loader(target.harness)
    inputs = registry.loader(target.seeds)()
    assert inputs
    for data in inputs:
        harness(data)


@pytest.mark.parametrize(
    "name", [n for n, t in registry.TARGETS.items() if t.kind == "hypothesis" and "node" not in n]
)
def test_structured_replays_take_the_decoder_seeds(name: str) -> None:
    replay = registry.loader(registry.TARGETS[name].replayer)
    for data in [*seeds.sal_datagrams()[:10], *seeds.dht_payloads()[:10], *seeds.records()]:
        replay(data)


def test_truncations_and_random_bytes_are_refused_cleanly() -> None:
    """STYLE item 8 on the seeds: every truncation of every seed, through every decoder."""
    for data in [*seeds.sal_datagrams()[:20], *seeds.dht_payloads()[:20], *seeds.records()]:
        for end in range(0, len(data), 7):
            for harness in (decoders.sal, decoders.stream, decoders.dht, decoders.record):
                harness(data[:end])


def test_seeds_come_from_vectors_traces_and_the_socket_fuzzer() -> None:
    traced = seeds.trace_payloads()
    assert len(traced) >= 9  # at least one message per shipped trace
    assert all(len(payload) >= 60 for payload in traced)
    datagrams = seeds.sal_datagrams()
    assert set(seeds.vectors("sal")) <= set(datagrams)
    assert any(decode_sal(d).destination_service == SERVALDHT_SERVICE_ID for d in datagrams[:20])
    assert len(seeds.records()) >= 2


def test_the_dictionary_holds_the_declared_magic_values() -> None:
    entries = seeds.dictionary()
    assert len(entries) == len(set(entries))
    for kind in MessageType:
        assert bytes([kind.value]) in entries
    for extension in ExtensionType:
        assert bytes([extension.value]) in entries
    assert ErrorCode.STALE_SEQUENCE.to_bytes(2, "big") in entries
    assert bytes([ExtensionType.CONTROL, 20]) in entries  # a CONTROL extension's first octets
    assert SERVALDHT_SERVICE_ID in entries
    text = seeds.dictionary_text(entries[:2])
    assert text.splitlines()[0].startswith('magic_0="\\x')


# --- the decoder oracles -----------------------------------------------------------------


def test_a_crash_inside_a_decoder_escapes_with_the_input(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(data: bytes) -> object:
        raise KeyError("planted")

    monkeypatch.setattr(decoders, "decode_sal", broken)
    datagram = seeds.vectors("sal")[0]
    with pytest.raises(KeyError) as caught:
        decoders.sal(datagram)
    assert f"decoder input: {datagram.hex()}" in caught.value.__notes__


def test_the_round_trip_catches_a_decoder_that_changes_a_field(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = decoders.decode_sal

    def off_by_one(data: bytes) -> object:
        packet = real(data)
        return dataclasses.replace(packet, source_flow_id=packet.source_flow_id ^ 1)

    monkeypatch.setattr(decoders, "decode_sal", off_by_one)
    with pytest.raises(InvariantViolation, match="round-trip-changes"):
        decoders.sal(seeds.vectors("sal")[0])


def test_the_differential_catches_a_disagreement(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuses(data: bytes) -> object:
        raise RemoteProtocolError("planted", ErrorCode.MALFORMED)

    monkeypatch.setattr(decoders, "decode_sal_interpreted", refuses)
    with pytest.raises(Mismatch, match="accept-or-refuse"):
        decoders.sal_diff(seeds.vectors("sal")[0])


def test_equal_objects_of_other_types_are_not_the_same() -> None:
    assert decoders.same((1, b"x"), (1, b"x"))
    assert not decoders.same(ErrorCode.MALFORMED, 1)
    assert not decoders.same((1,), [1])


# --- the node harness --------------------------------------------------------------------


def test_frames_round_trip_and_stop_at_the_end() -> None:
    sequence = [nodes.Frame(nodes.TOKEN | 3, b"abc"), nodes.Frame(nodes.TICK, b"")]
    assert nodes.frames(nodes.encode_frames(sequence)) == sequence
    assert nodes.frames(b"\x01\x00\x09xy") == [nodes.Frame(1, b"xy")]  # a length past the end
    assert nodes.frames(b"\x01\x00") == []


def test_the_harness_reaches_the_record_store() -> None:
    """The STORE seed: address validated by TOKEN, record signed, the node stores it."""
    execution = nodes.NodeRun()
    record = nodes.responsible_record(3)
    store_frame = nodes.Frame(3 | nodes.TOKEN, nodes.request_datagram(nodes.Store(record, ())))
    execution.deliver(store_frame)
    assert execution.node.store.get(record.service_id, nodes.NOW) == record


def test_the_harness_answers_the_nodes_own_requests() -> None:
    execution = nodes.NodeRun()
    execution.tick()  # stabilization asks the first successor for its neighbours
    asked = execution.unanswered[0]
    assert asked.type == MessageType.GET_NEIGHBORS
    successor = nodes.successors()[0]
    answer = nodes.signed_datagram(nodes.Neighbors(None, (successor.info(),)), successor)
    execution.deliver(nodes.Frame(nodes.ANSWER, answer))
    assert execution.node.counters["responses_received"] == 1


def test_the_watch_refuses_an_unsigned_record(monkeypatch: pytest.MonkeyPatch) -> None:
    execution = nodes.NodeRun()
    forged = dataclasses.replace(nodes.responsible_record(1), signature=bytes(64))
    monkeypatch.setattr(execution.node.store, "records", lambda: iter([forged]))
    with pytest.raises(InvariantViolation, match="record-not-verified"):
        execution.watch.state()


def test_the_watch_refuses_a_lower_sequence(monkeypatch: pytest.MonkeyPatch) -> None:
    execution = nodes.NodeRun()
    execution.watch.before = {nodes.responsible_record(5).service_id: nodes.responsible_record(5)}
    monkeypatch.setattr(
        execution.node.store, "records", lambda: iter([nodes.responsible_record(4)])
    )
    with pytest.raises(InvariantViolation, match="record-sequence-not-higher"):
        execution.watch.state()


def test_the_watch_refuses_a_successor_list_out_of_order() -> None:
    execution = nodes.NodeRun()
    execution.node.successors = list(reversed(nodes.successors()))
    with pytest.raises(InvariantViolation, match="successor-order"):
        execution.watch.state()
    execution.node.successors = [*nodes.successors(), Peer.of(nodes.HOST_KEY, nodes.NODE_AT)]
    with pytest.raises(InvariantViolation, match="self-among-successors"):
        execution.watch.state()


def test_the_watch_refuses_an_answer_to_a_response() -> None:
    execution = nodes.NodeRun()
    response = nodes.signed_datagram(nodes.Pong(nodes.NODE_AT), nodes.successors()[0])
    execution.node.send_raw(nodes.request_datagram(nodes.Ping()), nodes.sources()[0])  # planted
    pong = execution.watch.outputs(response, nodes.sources()[0], False)
    assert pong  # a PING is a request: it is returned for answering
    ping = nodes.request_datagram(nodes.Ping())
    execution.node.receive_datagram(ping, nodes.sources()[0], nodes.NOW)
    with pytest.raises(InvariantViolation, match="answered-non-request"):
        execution.watch.outputs(response, nodes.sources()[0], False)


# --- findings ----------------------------------------------------------------------------


def _crash(data: bytes) -> None:
    if b"!" in data:
        raise KeyError("planted")


def test_a_signature_names_class_and_function_not_line() -> None:
    try:
        decode_sal_broken = decoders.round_trip
        decode_sal_broken(1, b"", lambda x: b"xx", lambda d: 1)
    except Finding as error:
        assert signature(error) == "InvariantViolation:re-encoding-grows"
    try:
        _crash(b"!")
    except KeyError as error:
        assert signature(error) == "KeyError@tests/fuzz/test_fuzz_targets.py:_crash"


def test_minimise_keeps_what_fails() -> None:
    data = b"abcdefgh" * 8 + b"!" + b"ijkl" * 8

    def fails(candidate: bytes) -> bool:
        return run_once(_crash, candidate, 1.0).signature is not None

    assert minimise(fails, data) == b"!"


def test_run_once_tells_hangs_and_slow_inputs() -> None:
    def spins(data: bytes) -> None:
        while True:
            pass

    def dawdles(data: bytes) -> None:
        end = time.perf_counter() + 0.05
        while time.perf_counter() < end:
            pass

    assert run_once(spins, b"", 0.05).signature == "Hang"
    assert run_once(dawdles, b"", 0.03).signature == "SlowInput:budget"
    assert run_once(_crash, b"x", 1.0).signature is None


def test_findings_are_kept_once_with_the_smaller_input(tmp_path: object) -> None:
    from pathlib import Path

    folder = Path(str(tmp_path))
    path, new = store("sal", "KeyError@x", b"!!!", 10, "trace", folder)
    assert new and path.read_bytes() == b"!!!"
    _, again = store("sal", "KeyError@x", b"!", 10, "trace", folder)
    assert not again and path.read_bytes() == b"!"
    (record,) = records(folder)
    assert record.replay == f"python -m fuzz replay sal {path}"
    assert known_signatures("sal", folder) == {"KeyError@x"}
    assert known_signatures("dht", folder) == set()
