"""Differential mode: the same cases and fuzz campaign against two targets, answers compared."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conformance import cli, differential
from conformance.cases import all_cases
from conformance.fuzz import Fuzzer
from conformance.peer import Capture, dht_datagram
from conformance.runner import run
from ref.wire import (
    Control,
    ControlFlags,
    DhtMessage,
    Error,
    ErrorCode,
    Ping,
    SalPacket,
    Status,
    StatusResponse,
    StreamFlags,
    StreamSegment,
    TransportProtocol,
    encode_dht,
    encode_sal,
    encode_stream,
)

from .variants import running_node

NOW = 1_700_000_000


def _header_cases() -> list:  # type: ignore[type-arg]
    return [c for c in all_cases() if c.group == "dht.header"]


def test_normalise_masks_what_two_conforming_nodes_may_differ_in() -> None:
    def text(message: DhtMessage) -> str | None:
        return differential.normalise(dht_datagram(encode_dht(message)))

    one = DhtMessage(StatusResponse(b'{"a":1}'), bytes(8), sender_key=b"\x01" * 32)
    two = DhtMessage(StatusResponse(b'{"b":2}'), bytes(8), sender_key=b"\x02" * 32, token=b"t" * 16)
    assert text(one) == text(two) == "STATUS_RESPONSE report *"
    refused = DhtMessage(Error(ErrorCode.MALFORMED, b"why not"), bytes(8))
    other = DhtMessage(Error(ErrorCode.MALFORMED, b"because"), bytes(8))
    assert text(refused) == text(other) == "ERROR MALFORMED"
    assert text(DhtMessage(Error(ErrorCode.LIMIT_EXCEEDED), bytes(8))) != text(refused)
    assert text(DhtMessage(Status(), bytes(8))) is None  # a request: not compared
    assert text(DhtMessage(Ping(), bytes(8))) is None


def test_sal_packets_are_compared_without_their_random_fields() -> None:
    def text(packet: SalPacket) -> str | None:
        return differential.normalise(encode_sal(packet))

    def syn_ack(flow: int, nonce: bytes, verno: int) -> SalPacket:
        control = Control(ControlFlags.SYN | ControlFlags.ACK, verno, verno + 9, nonce)
        return SalPacket(flow, flow + 1, TransportProtocol.STREAM, control=control)

    assert text(syn_ack(5, b"a" * 8, 77)) == text(syn_ack(9, b"b" * 8, 12345))
    assert text(syn_ack(5, b"a" * 8, 77)) == "SAL control SYN|ACK protocol 2, 0 payload octets"

    def data(sequence: int, octets: bytes) -> SalPacket:
        segment = StreamSegment(sequence, sequence * 3, StreamFlags.ACK, 256, octets)
        return SalPacket(1, 2, TransportProtocol.STREAM, payload=encode_stream(segment))

    assert text(data(1, b"xy")) == text(data(99, b"zw")) != text(data(1, b"xyz"))


def test_two_reference_nodes_do_not_differ(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    with running_node() as (host_a, port_a), running_node() as (host_b, port_b):
        status = cli.main(
            [
                *("--target", f"{host_a}:{port_a}", "--against", f"{host_b}:{port_b}"),
                *("--case", "dht.header", "--case", "sal.connect", "--seed", "4"),
                *("--timeout", "0.5"),
                *("--fuzz", "150", "--json", str(report)),
            ]
        )
    data = json.loads(report.read_text())
    assert data["differences"] == []
    assert data["against"]["verdict"] == "PASS"
    assert data["not_compared"] == []
    assert status == cli.EXIT_OK


def _malformed_instead_of_specific_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Answers with MALFORMED where the draft names UNKNOWN_MESSAGE_TYPE or UNSUPPORTED_VERSION."""
    import ref.chord.node as node

    original = node.Node.refuse

    def refuse(self, inbound, code, reason, validated):  # type: ignore[no-untyped-def]
        if code in (ErrorCode.UNKNOWN_MESSAGE_TYPE, ErrorCode.UNSUPPORTED_VERSION):
            code = ErrorCode.MALFORMED
        original(self, inbound, code, reason, validated)

    monkeypatch.setattr(node.Node, "refuse", refuse)


def test_a_variant_that_answers_differently_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    cases = _header_cases()
    with running_node() as address:
        reference = run(cases, address, seed=9, timeout=0.5)
        reference_fuzz = Fuzzer(address, Capture(), seed=9, timeout=0.5, now=NOW).run(200)
    _malformed_instead_of_specific_codes(monkeypatch)
    with running_node() as address:
        variant = run(cases, address, seed=9, timeout=0.5)
        variant_fuzz = Fuzzer(address, Capture(), seed=9, timeout=0.5, now=NOW).run(200)
    differences, diverged = differential.compare_runs(reference, variant)
    assert diverged == []
    case = "dht.header.version-2-request"
    assert differential.Difference(case, "verdict", "PASS", "FAIL") in differences
    answers = [d for d in differences if d.case == case and d.exchange.startswith("txid ")]
    assert [(d.a, d.b) for d in answers] == [("ERROR UNSUPPORTED_VERSION", "ERROR MALFORMED")]
    changed = {
        ("ERROR UNKNOWN_MESSAGE_TYPE", "ERROR MALFORMED"),
        ("ERROR UNSUPPORTED_VERSION", "ERROR MALFORMED"),
    }
    # Every other difference is one of the variant's codes, or a verdict it costs.
    assert all((d.a, d.b) in changed or d.exchange == "verdict" for d in differences)
    fuzzed = differential.compare_campaigns(reference_fuzz, variant_fuzz)
    assert fuzzed
    assert {(d.a, d.b) for d in fuzzed} <= changed
    table = differential.table(differences + fuzzed, "reference", "variant")
    assert table.row_count == len(differences) + len(fuzzed)
