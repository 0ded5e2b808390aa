"""The network campaign keeps what the socket fuzzer confirmed and counts what it did not.

A failure none of the fuzzer's re-sends showed again is a moment of the
machine (an answer later than the campaign's timeout while the host is busy),
not a property of the datagram: it is counted as unconfirmed, as a
coverage-guided artifact that does not reproduce is, and not kept.
"""

from __future__ import annotations

import json
from pathlib import Path

from conformance import fuzz as socket_fuzz
from fuzz.network import keep_failures
from fuzz.status import Reporter, Status


def failure(confirmed: int, what: str = "silent") -> socket_fuzz.Failure:
    plan = socket_fuzz.Plan(index=0, base=0, txid=bytes(8), mutations=())
    datagram = bytes([confirmed]) * 40
    return socket_fuzz.Failure(
        violation=socket_fuzz.Violation("DHT-ERR-2", what, "a request was not answered"),
        original=socket_fuzz.Observation(plan, datagram, []),
        datagram=datagram,
        description="RECTIFY; flip: bit 3 flipped",
        mutations=1,
        confirmed=confirmed,
        tries=3,
        shrink_trials=0,
    )


def test_unconfirmed_failures_are_counted_and_confirmed_ones_kept(tmp_path: Path) -> None:
    reporter = Reporter(tmp_path / "status.json", tmp_path / "findings")
    keep_failures([failure(0)], reporter, frozenset(), "127.0.0.1:1")
    assert not (tmp_path / "findings").exists()
    assert Status.read(tmp_path / "status.json").unconfirmed == 1

    keep_failures([failure(2, "answered")], reporter, frozenset(), "127.0.0.1:1")
    [kept] = (tmp_path / "findings").glob("*.json")
    found = json.loads(kept.read_text())
    assert found["signature"] == "InvariantViolation:DHT-ERR-2-answered"
    assert "confirmed 2/3" in found["traceback"]
    status = Status.read(tmp_path / "status.json")
    assert (status.findings, status.unconfirmed) == (1, 1)


def test_known_findings_are_neither_kept_nor_counted(tmp_path: Path) -> None:
    reporter = Reporter(tmp_path / "status.json", tmp_path / "findings")
    known = frozenset({"InvariantViolation:DHT-ERR-2-silent"})
    keep_failures([failure(0), failure(3)], reporter, known, "127.0.0.1:1")
    assert not (tmp_path / "findings").exists()
    assert Status.read(tmp_path / "status.json").unconfirmed == 0
