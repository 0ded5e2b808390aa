"""What a worker tells its supervisor: a status file, rewritten about once a second.

Workers are separate processes (one per job); each writes
``status-JOB.json`` in the campaign's folder with its executions, the
coverage it reached and the findings it kept, and the supervisor sums them
into the live status line.  Structure-aware and network workers keep their
findings themselves (Hypothesis has already shrunk them) in
``findings/``; coverage-guided workers leave libFuzzer's artifacts instead.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

from fuzz.findings import short_hash


@dataclasses.dataclass
class Status:
    """One worker's progress."""

    execs: int = 0
    seconds: float = 0.0
    coverage: int = 0  # edges (atheris) or distinct outcomes (hypothesis, network)
    features: int = 0
    corpus: int = 0
    findings: int = 0
    unconfirmed: int = 0  # failures that did not show again when tried again
    done: bool = False
    note: str = ""

    @classmethod
    def read(cls, path: Path) -> Status:
        try:
            fields: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            return cls()
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in fields.items() if key in known})


def write_json(path: Path, value: Any) -> None:
    """Replace ``path`` at once, so that a reader never sees half a file."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(json.dumps(value, indent=1) + "\n")
    partial.replace(path)


class Reporter:
    """A worker's side: counts executions and outcomes, keeps findings, writes the status."""

    def __init__(self, status_path: Path, findings: Path) -> None:
        self.path = status_path
        self.findings = findings
        self.status = Status()
        self.outcomes: set[str] = set()
        self.started = time.monotonic()
        self.written = 0.0

    def executed(self, count: int = 1, outcome: str | None = None) -> None:
        self.status.execs += count
        if outcome is not None:
            self.outcomes.add(outcome)
        if time.monotonic() - self.written >= 1.0:
            self.write()

    def finding(self, signature: str, data: bytes, text: str, original_size: int) -> None:
        """Keep a finding for the supervisor (once per signature, the smallest input)."""
        self.findings.mkdir(parents=True, exist_ok=True)
        path = self.findings / f"{short_hash(signature)}.json"
        if path.exists():
            old = json.loads(path.read_text())
            if len(old["input_hex"]) <= 2 * len(data):
                return
        else:
            self.status.findings += 1
        write_json(
            path,
            {
                "signature": signature,
                "input_hex": data.hex(),
                "traceback": text,
                "original_size": original_size,
            },
        )
        self.write()

    def not_reproduced(self) -> None:
        """Count a failure that did not show again: not kept, not a finding."""
        self.status.unconfirmed += 1
        self.write()

    def write(self, done: bool = False) -> None:
        self.status.seconds = time.monotonic() - self.started
        self.status.coverage = max(self.status.coverage, len(self.outcomes))
        self.status.done = done
        self.written = time.monotonic()
        write_json(self.path, dataclasses.asdict(self.status))
