"""Regression tests: every finding kept in ``fuzz/crashes/`` replays as its status says.

A finding still ``open`` must still fail (an expected failure, strict: when
the code is fixed this test says so, and the finding's status becomes
``fixed``); a ``fixed`` one must pass through its campaign's harness
without a finding.  A network finding is replayed against a fresh
``serval-node`` process.
"""

from __future__ import annotations

import pytest

from fuzz import registry
from fuzz.findings import Record, records, run_once


def _cases() -> list[object]:
    cases: list[object] = []
    for record in records():
        marks = []
        if record.status == "open":
            reason = f"open finding {record.signature} ({record.replay})"
            marks.append(pytest.mark.xfail(strict=True, reason=reason))
        cases.append(pytest.param(record, id=f"{record.target}-{record.signature}", marks=marks))
    return cases


@pytest.mark.parametrize("record", _cases())
def test_a_kept_finding_replays_as_its_status_says(record: Record) -> None:
    target = registry.TARGETS[record.target]
    outcome = run_once(registry.loader(target.replayer), record.data, max(target.budget, 5.0))
    assert outcome.signature is None, outcome.text


def test_every_kept_finding_is_well_formed() -> None:
    for record in records():
        assert record.target in registry.TARGETS
        assert record.status in ("open", "fixed")
        assert record.replay.startswith(f"python -m fuzz replay {record.target} ")
        assert record.signature and record.traceback
