"""``python -m fuzz report``: per campaign, what the runs did and what is open.

Reads the runs recorded in ``WORKDIR/stats/*.json`` and the findings kept in
``fuzz/crashes/``, prints a table, and writes the same as JSON and HTML
(``WORKDIR/report.json`` and ``report.html`` unless told otherwise).  Rates
are executions per second of wall time and per core: executions per CPU
second of the jobs, over the runs that recorded their CPU time (wall time
times the jobs for older records), so that a campaign that shared its cores
with other work still shows what one core sustains.
For structure-aware and network campaigns "coverage" counts distinct
outcomes (refusal codes, accepted types, node counters, answer kinds), for
coverage-guided ones the edges atheris counts in ``ref``.
"""

from __future__ import annotations

import dataclasses
import html
import json
from pathlib import Path
from typing import Any

from fuzz import registry
from fuzz.campaign import CORPUS, WORKDIR
from fuzz.findings import CRASHES, records


@dataclasses.dataclass
class Row:
    target: str
    kind: str
    runs: int = 0
    seconds: float = 0.0
    core_seconds: float = 0.0  # wall seconds times jobs, for runs without CPU time
    core_execs: int = 0  # the executions of those runs
    cpu_seconds: float = 0.0  # CPU seconds of the runs that recorded it
    cpu_execs: int = 0  # the executions of those runs
    execs: int = 0
    coverage: int = 0
    features: int = 0
    corpus: int = 0
    open: int = 0
    fixed: int = 0
    last_run: str = ""

    @property
    def rate(self) -> float:
        return self.execs / self.seconds if self.seconds else 0.0

    @property
    def rate_per_core(self) -> float:
        if self.cpu_seconds:
            return self.cpu_execs / self.cpu_seconds
        return self.core_execs / self.core_seconds if self.core_seconds else 0.0


def rows(workdir: Path = WORKDIR, crashes: Path = CRASHES) -> list[Row]:
    found = records(crashes)
    out = []
    for name, target in registry.TARGETS.items():
        row = Row(name, target.kind)
        path = workdir / "stats" / f"{name}.json"
        runs: list[dict[str, Any]] = json.loads(path.read_text()) if path.exists() else []
        for run in runs:
            row.runs += 1
            row.seconds += run["seconds"]
            if run.get("cpu_seconds"):
                row.cpu_seconds += run["cpu_seconds"]
                row.cpu_execs += run["execs"]
            else:
                row.core_seconds += run["seconds"] * run["jobs"]
                row.core_execs += run["execs"]
            row.execs += run["execs"]
            row.coverage = max(row.coverage, run["coverage"])
            row.features = max(row.features, run["features"])
            row.last_run = run["started"]
        corpus = CORPUS / name
        row.corpus = len(list(corpus.iterdir())) if corpus.is_dir() else 0
        row.open = sum(r.target == name and r.status == "open" for r in found)
        row.fixed = sum(r.target == name and r.status != "open" for r in found)
        out.append(row)
    return out


_COLUMNS = (
    ("campaign", "target", "{:<20}"),
    ("kind", "kind", "{:<10}"),
    ("runs", "runs", "{:>4}"),
    ("seconds", "seconds", "{:>9.0f}"),
    ("executions", "execs", "{:>13,}"),
    ("execs/s", "rate", "{:>9,.0f}"),
    ("/s/core", "rate_per_core", "{:>9,.0f}"),
    ("coverage", "coverage", "{:>8}"),
    ("corpus", "corpus", "{:>6}"),
    ("open", "open", "{:>4}"),
    ("fixed", "fixed", "{:>5}"),
)


def text(table: list[Row]) -> str:
    header = " ".join(
        f"{title:<{len(fmt.format(getattr(table[0], field)))}}"
        if fmt.startswith("{:<")
        else f"{title:>{len(fmt.format(getattr(table[0], field)))}}"
        for title, field, fmt in _COLUMNS
    )
    lines = [header]
    for row in table:
        lines.append(" ".join(fmt.format(getattr(row, field)) for _, field, fmt in _COLUMNS))
    return "\n".join(lines)


def as_json(table: list[Row], crashes: Path = CRASHES) -> dict[str, Any]:
    return {
        "campaigns": [
            {**dataclasses.asdict(row), "rate": row.rate, "rate_per_core": row.rate_per_core}
            for row in table
        ],
        "findings": [dataclasses.asdict(record) for record in records(crashes)],
    }


def as_html(table: list[Row], crashes: Path = CRASHES) -> str:
    head = "".join(f"<th>{html.escape(title)}</th>" for title, _, _ in _COLUMNS)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(fmt.format(getattr(row, field)).strip())}</td>"
            for _, field, fmt in _COLUMNS
        )
        + "</tr>"
        for row in table
    )
    findings = "".join(
        f"<tr><td>{html.escape(r.target)}</td><td>{html.escape(r.signature)}</td>"
        f"<td>{html.escape(r.status)}</td><td>{len(r.data)}</td>"
        f"<td><code>{html.escape(r.replay)}</code></td></tr>"
        for r in records(crashes)
    )
    return (
        "<!doctype html><meta charset=utf-8><title>Serval fuzzing campaigns</title>"
        "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}</style>"
        f"<h1>Fuzzing campaigns</h1><table><tr>{head}</tr>{body}</table>"
        "<h2>Findings</h2><table><tr><th>campaign</th><th>signature</th><th>status</th>"
        f"<th>bytes</th><th>replay</th></tr>{findings}</table>\n"
    )


def main(workdir: Path | None, json_path: Path | None, html_path: Path | None) -> int:
    workdir = workdir or WORKDIR
    table = rows(workdir)
    print(text(table))
    for record in records():
        if record.status == "open":
            print(f"open: {record.target} {record.signature}  ({record.replay})")
    workdir.mkdir(parents=True, exist_ok=True)
    json_path = json_path or workdir / "report.json"
    html_path = html_path or workdir / "report.html"
    json_path.write_text(json.dumps(as_json(table), indent=2) + "\n")
    html_path.write_text(as_html(table))
    print(f"written: {json_path}, {html_path}")
    return 0
