"""The fuzzer: a seeded campaign of structure-aware mutations, its oracle, shrinking, replay."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from collections import Counter
from pathlib import Path

import pytest

from conformance import cli, fuzz
from conformance.fuzz import Edit, Fuzzer, Mutation, Plan
from conformance.peer import Capture, dht_datagram
from ref.wire import (
    SERVALDHT_SERVICE_ID,
    DhtMessage,
    Endpoint,
    Error,
    ErrorCode,
    MessageType,
    Ping,
    Pong,
    decode_dht,
    decode_sal,
    encode_dht,
)
from ref.wire.constants import MAX_DHT_MESSAGE

from .variants import running_node

NOW = 1_700_000_000
TARGET = ("127.0.0.1", 9)


def _bases(seed: int = 5) -> list[fuzz.Base]:
    return fuzz.bases(seed, NOW)


# --- the mutator ---------------------------------------------------------------------------


def test_same_seed_same_campaign() -> None:
    first = fuzz.campaign(5, 300, _bases())
    again = fuzz.campaign(5, 300, _bases())
    assert first == again
    assert [fuzz.materialise(p, _bases()) for p in first] == [
        fuzz.materialise(p, _bases()) for p in again
    ]
    other = fuzz.campaign(6, 300, fuzz.bases(6, NOW))
    assert [fuzz.materialise(p, _bases()) for p in first] != [
        fuzz.materialise(p, fuzz.bases(6, NOW)) for p in other
    ]


def test_the_mutator_makes_every_kind_of_mutation() -> None:
    plans = fuzz.campaign(1, 800, _bases(1))
    kinds = Counter(m.kind for p in plans for m in p.mutations)
    assert set(kinds) == set(fuzz.KINDS), kinds
    labels = " | ".join(m.label for p in plans for m in p.mutations)
    for expected in (
        "SERVICE twice",
        "must-understand extension",
        "ignorable extension",
        "SOURCE with 0 entries",
        "SOURCE with 12 entries",
        "SOURCE with 13 entries",
        "record re-signed",
        "body.record.",
        "body.successors",
    ):
        assert expected in labels, expected
    assert {p.base for p in plans} == set(range(len(_bases(1))))


def test_the_bases_are_valid_messages_of_every_request_type() -> None:
    names = set()
    for base in _bases():
        payload = base.payload(bytes(8), bytes(16))
        decode_dht(payload)  # signatures verify too
        names.add(decode_dht(payload).type)
    requests = {t for t in MessageType if not t.is_response}
    assert requests <= names


def test_the_field_map_walks_the_declared_layouts() -> None:
    store = next(b for b in _bases() if b.name == "STORE")
    spots, spans = fuzz.field_map(store.payload(bytes(8), bytes(16)))
    paths = {s.path for s in spots}
    assert {"header.type", "body.token_count", "body.record.lifetime"} <= paths
    assert "body.record.endpoints[0].weight" in paths
    assert {s.path for s in spans} == {"body.address_tokens", "body.record.endpoints"}
    counts = {s.path for s in spots if s.role == "count"}
    assert counts == {"body.token_count", "body.record.endpoint_count"}
    lifetime = next(s for s in spots if s.path == "body.record.lifetime")
    assert {0, 1, 86400, 86401, 0xFFFFFFFF} <= {*fuzz.boundary_values(lifetime, 86400), 86400}


def test_checksums_are_recomputed_unless_wrong_on_purpose() -> None:
    bases = _bases()
    ping = Plan(0, 0, bytes(8), ())
    decode_sal(fuzz.materialise(ping, bases))
    wrong = dataclasses.replace(ping, mutations=(Mutation("checksum", "sal", "wrong checksum"),))
    assert fuzz.expectation(fuzz.materialise(wrong, bases)).requirement == "SAL-CSUM-2"


# --- the oracle ----------------------------------------------------------------------------


def _datagram(message: DhtMessage) -> bytes:
    return dht_datagram(encode_dht(message))


def test_the_oracle() -> None:
    txid = bytes(range(8))
    ping = _datagram(DhtMessage(Ping(), txid))
    observed = Endpoint(ipaddress.ip_address("127.0.0.1"), 4000)
    pong = _datagram(DhtMessage(Pong(observed), txid))
    error = _datagram(DhtMessage(Error(ErrorCode.MALFORMED), txid))

    def reqs(sent: bytes, answers: list[bytes]) -> set[tuple[str, str]]:
        found = fuzz.judge(sent, [(a, TARGET) for a in answers], TARGET)
        return {(v.requirement, v.what) for v in found}

    assert reqs(ping, [pong]) == set()
    assert reqs(ping, []) == {("DHT-ERR-2", "silent")}
    assert reqs(ping, [pong, pong]) == {("DHT-FRAME-6", "duplicate")}
    assert reqs(pong, [error]) == {("DHT-ERR-3", "answered")}
    assert reqs(error, [error]) == {("DHT-MSG-19", "answered")}
    assert reqs(ping[:-1], [pong]) == {("DHT-ERR-3", "answered")}  # a zero byte less: 59 bytes
    bad_checksum = ping[:10] + bytes([ping[10] ^ 1]) + ping[11:]
    assert reqs(bad_checksum, [pong]) == {("SAL-CSUM-2", "answered")}
    other_txid = _datagram(DhtMessage(Pong(observed), bytes(8)))
    assert reqs(ping, [other_txid]) == {("DHT-HDR-9", "content")}
    odd_code = _datagram(DhtMessage(Error(0x0101), txid))
    assert reqs(ping, [odd_code]) == {("DHT-ERR-2", "content")}
    assert reqs(ping, [_datagram(DhtMessage(Ping(), bytes(8)))]) == {("DHT-ERR-2", "silent")}
    assert decode_sal(ping).destination_service == SERVALDHT_SERVICE_ID


# --- against the reference and broken variants ------------------------------------------------


def test_the_reference_survives_a_campaign_without_a_failure() -> None:
    with running_node() as address:
        report = Fuzzer(address, Capture(), seed=11, timeout=0.5, now=NOW).run(300)
    assert report.alive_before and report.dead_after is None
    assert len(report.observations) == 300
    assert [o for o in report.observations if o.violations] == []
    assert report.findings == []
    results = fuzz.results(report, "127.0.0.1:1")
    assert [r.verdict.value for r in results] == ["PASS"]


def _answer_unknown_responses(monkeypatch: pytest.MonkeyPatch) -> None:
    """Broken: a message of an unassigned Type from 0x80 up is answered (DHT-ERR-3)."""
    import ref.chord.node as node

    original = node.Node._receive_response
    known = {t.value for t in MessageType}

    def receive(self, inbound):  # type: ignore[no-untyped-def]
        if inbound.type not in known:
            self.refuse(inbound, ErrorCode.UNKNOWN_MESSAGE_TYPE, "unknown type", False)
            return
        original(self, inbound)

    monkeypatch.setattr(node.Node, "_receive_response", receive)


def _crash_on_long_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Broken: the request handler raises on a request longer than 1,184 bytes."""
    import ref.chord.node as node

    original = node.Node.receive_request

    def receive(self, inbound):  # type: ignore[no-untyped-def]
        if inbound.size > MAX_DHT_MESSAGE:
            raise RuntimeError("crash")
        original(self, inbound)

    monkeypatch.setattr(node.Node, "receive_request", receive)


def test_the_fuzzer_finds_shrinks_and_replays_an_answered_response(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _answer_unknown_responses(monkeypatch)
    report = tmp_path / "report.json"
    with running_node() as (host, port):
        target = f"{host}:{port}"
        status = cli.main(
            [
                *("--target", target, "--case", "dht.header", "--seed", "2", "--timeout", "0.5"),
                *("--fuzz", "300", "--json", str(report)),
            ]
        )
        assert status == cli.EXIT_FAILED
        data = json.loads(report.read_text())
        found = {c["id"]: c for c in data["cases"] if c["id"].startswith("fuzz.")}
        assert found["fuzz.dht-err-3-answered"]["verdict"] == "FAIL"
        assert found["fuzz.campaign"]["verdict"] == "PASS"
        command = found["fuzz.dht-err-3-answered"]["replay"]
        assert command.startswith(f"serval-conform --target {target} --replay-hex ")
        detail = found["fuzz.dht-err-3-answered"]["findings"][0]["detail"]
        assert "failed 3 of 3 re-sends" in detail
        datagram = bytes.fromhex(command.rsplit(" ", 1)[1])
        assert decode_sal(datagram).payload[1] >= 0x80
        # The one-line command reproduces it; the same datagram without the damage passes.
        assert cli.main([*command.split()[1:], "--timeout", "0.5"]) == cli.EXIT_FAILED
        ping = _datagram(DhtMessage(Ping(), bytes(8))).hex()
        assert cli.main(["--target", target, "--replay-hex", ping]) == cli.EXIT_OK


def test_shrinking_makes_a_failing_input_smaller(monkeypatch: pytest.MonkeyPatch) -> None:
    _answer_unknown_responses(monkeypatch)
    with running_node() as address:
        fuzzer = Fuzzer(address, Capture(), seed=3, timeout=0.5, now=NOW)
        bases = fuzzer.bases
        store = next(n for n, b in enumerate(bases) if b.name == "STORE")
        big = Plan(
            7,
            store,
            bytes(8),
            (
                Mutation("append", "dht", "40 bytes", (Edit(None, None, bytes(40)),), width=40),
                Mutation(
                    "header-field",
                    "dht",
                    "header.type = 0x8a",
                    (Edit(1, 2, b"\x8a"),),
                    value=0x8A,
                    width=1,
                ),
                Mutation("flip", "dht", "bit 900 flipped", (Edit(112, 113, b"\x55"),)),
            ),
        )
        datagram = fuzz.materialise(big, bases)
        violation = fuzz.Violation("DHT-ERR-3", "answered", "a response was answered")
        assert fuzzer.fails(datagram, violation, 0.5)
        small, shrunk, trials = fuzzer.shrink(big, violation)
        assert 0 < trials <= fuzz.SHRINK_TRIALS
        assert len(shrunk) < len(datagram)
        assert len(small.mutations) < len(big.mutations)
        assert fuzzer.confirm(shrunk, violation) == fuzz.CONFIRMATIONS
        assert decode_sal(shrunk).payload[1] not in {t.value for t in MessageType}


def test_the_fuzzer_finds_a_crashing_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    _crash_on_long_requests(monkeypatch)
    with running_node() as address:
        report = Fuzzer(address, Capture(), seed=4, timeout=0.5, now=NOW).run(400)
    assert report.dead_after is None  # the loop survives a handler's exception
    finding = next(f for f in report.findings if f.violation.requirement == "DHT-ERR-2")
    assert finding.violation.what == "silent"
    assert finding.confirmed == finding.tries
    assert len(decode_sal(finding.datagram).payload) > MAX_DHT_MESSAGE
    assert finding.mutations <= len(finding.original.plan.mutations)
    results = fuzz.results(report, "127.0.0.1:1")
    failed = [r for r in results if r.verdict.value == "FAIL"]
    assert [r.case.id for r in failed] == ["fuzz.dht-err-2-silent"]
    assert failed[0].case.requirements == ("DHT-ERR-2",)
    assert failed[0].replay.endswith(finding.datagram.hex())
