"""What a run reports: the coverage matrix, JSON, JUnit XML, HTML and the summary table."""

from __future__ import annotations

import dataclasses
import html
import platform
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from typing import Any

from conformance.cases import unobservable
from conformance.model import Case, CaseResult, Verdict, worst
from conformance.requirements import requirements
from conformance.runner import Run


@dataclasses.dataclass(frozen=True)
class Coverage:
    """One row of the coverage matrix."""

    requirement: str
    level: str
    section: str
    cases: tuple[str, ...]  # every case in the suite that judges it
    verdict: Verdict | None  # over the cases of this run; None when none ran
    unobservable: str  # the reason, for MUSTs no test over the wire can judge


def coverage(run: Run | None, cases: Sequence[Case]) -> list[Coverage]:
    """The matrix: every requirement of the draft, the cases that judge it, their verdict."""
    by_requirement: dict[str, list[str]] = {}
    for case in cases:
        for requirement in case.requirements:
            by_requirement.setdefault(requirement, []).append(case.id)
    verdicts: dict[str, list[Verdict]] = {}
    for result in run.results if run else ():
        if result.verdict in (Verdict.SKIP, Verdict.ERROR):
            for requirement in result.case.requirements:
                verdicts.setdefault(requirement, []).append(result.verdict)
            continue
        for finding in result.findings:
            if finding.requirement is not None:
                verdicts.setdefault(finding.requirement, []).append(finding.verdict)
    rows = []
    reasons = unobservable()
    for entry in requirements().values():
        seen = verdicts.get(entry.id)
        rows.append(
            Coverage(
                entry.id,
                entry.level,
                entry.section,
                tuple(by_requirement.get(entry.id, ())),
                worst(seen, Verdict.PASS) if seen else None,
                reasons.get(entry.id, ""),
            )
        )
    return rows


def must_coverage(rows: Sequence[Coverage]) -> tuple[int, int, int]:
    """(MUSTs judged by a case, MUSTs listed as unobservable, MUSTs in all)."""
    musts = [r for r in rows if r.level == "MUST"]
    covered = sum(1 for r in musts if r.cases)
    unobservable = sum(1 for r in musts if not r.cases and r.unobservable)
    return covered, unobservable, len(musts)


def replay_command(result: CaseResult, target: str) -> str:
    """The one-line command that reproduces ``result``."""
    if result.replay:
        return result.replay
    return f"serval-conform --target {target} --case {result.case.id} --seed {result.seed}"


def to_json(run: Run, cases: Sequence[Case], target: str) -> dict[str, Any]:
    return {
        "target": target,
        "seed": run.seed,
        "strict": run.strict,
        "verdict": run.verdict.value,
        "duration": round(run.duration, 3),
        "features": sorted(run.target.features),
        "crashed_after": run.crashed_in,
        "harness": {"python": platform.python_version()},
        "cases": [
            {
                "id": r.case.id,
                "title": r.case.title,
                "section": r.case.section,
                "requirements": list(r.case.requirements),
                "version": r.case.version,
                "verdict": r.verdict.value,
                "duration": round(r.duration, 4),
                "replay": replay_command(r, target),
                "findings": [
                    dataclasses.asdict(f) | {"verdict": f.verdict.value} for f in r.findings
                ],
                "exchanges": [d.describe() for d in run.capture.of_case(r.case.id)],
            }
            for r in run.results
        ],
        "coverage": [
            {
                "requirement": row.requirement,
                "level": row.level,
                "section": row.section,
                "cases": list(row.cases),
                "verdict": row.verdict.value if row.verdict else None,
                "unobservable": row.unobservable or None,
            }
            for row in coverage(run, cases)
        ],
    }


def to_junit(run: Run, target: str) -> bytes:
    """JUnit XML: one testsuite per group, requirement IDs and the seed as properties."""
    root = ET.Element("testsuites", name="serval-conform", time=f"{run.duration:.3f}")
    groups: dict[str, list[CaseResult]] = {}
    for result in run.results:
        groups.setdefault(result.case.group, []).append(result)
    for group, results in groups.items():
        counts = Counter(r.verdict for r in results)
        suite = ET.SubElement(
            root,
            "testsuite",
            name=group,
            tests=str(len(results)),
            failures=str(counts[Verdict.FAIL] + counts[Verdict.WARN]),
            errors=str(counts[Verdict.ERROR]),
            skipped=str(counts[Verdict.SKIP]),
        )
        for result in results:
            element = ET.SubElement(
                suite,
                "testcase",
                classname=group,
                name=result.case.id,
                time=f"{result.duration:.4f}",
            )
            properties = ET.SubElement(element, "properties")
            for requirement in result.case.requirements:
                ET.SubElement(properties, "property", name="requirement", value=requirement)
            ET.SubElement(properties, "property", name="seed", value=str(result.seed))
            ET.SubElement(
                properties, "property", name="replay", value=replay_command(result, target)
            )
            text = "\n".join(_finding_text(f) for f in result.failures)
            if result.verdict in (Verdict.FAIL, Verdict.WARN):
                node = ET.SubElement(
                    element, "failure", type=result.verdict.value, message=_headline(result)
                )
                node.text = text
            elif result.verdict == Verdict.ERROR:
                node = ET.SubElement(element, "error", message=_headline(result))
                node.text = text
            elif result.verdict == Verdict.SKIP:
                ET.SubElement(element, "skipped", message=_headline(result))
    for group in run.crashed_in:
        suite = ET.SubElement(root, "testsuite", name=f"liveness.{group}", tests="1", failures="1")
        case = ET.SubElement(suite, "testcase", classname="liveness", name=group)
        ET.SubElement(case, "failure", message=f"the target stopped answering after group {group}")
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data


def _headline(result: CaseResult) -> str:
    bad = result.failures or result.findings
    return bad[0].detail.splitlines()[0] if bad else result.verdict.value


def _finding_text(finding: Any) -> str:
    text = f"[{finding.verdict.value}] {finding.requirement or '-'}: {finding.detail}"
    if finding.expected or finding.actual:
        text += f"\n  expected: {finding.expected}\n  actual:   {finding.actual}"
    return text


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:2px 8px;
text-align:left;vertical-align:top}th{background:#f4f4f4}
.PASS{background:#d9f2d9}.FAIL{background:#f8c9c9}.WARN{background:#fbeec0}
.SKIP{background:#e6e6e6}.ERROR{background:#e9d3f5}.NONE{background:#fff}
pre{margin:0;font-size:90%;white-space:pre-wrap}code{font-size:90%}
"""


def to_html(run: Run, cases: Sequence[Case], target: str) -> str:
    """A self-contained page: summary, coverage matrix, each case with its evidence."""
    rows = coverage(run, cases)
    covered, unobservable, musts = must_coverage(rows)
    counts = Counter(r.verdict for r in run.results)
    esc = html.escape
    out = [
        "<!doctype html><meta charset=utf-8><title>serval-conform report</title>",
        f"<style>{_STYLE}</style>",
        f"<h1>serval-conform: <span class={run.verdict.value}>{run.verdict.value}</span></h1>",
        f"<p>Target <code>{esc(target)}</code>, seed {run.seed}, "
        f"{'strict, ' if run.strict else ''}{run.duration:.1f} s; features "
        f"{esc(', '.join(sorted(run.target.features)))}.</p>",
        "<p>" + ", ".join(f"{counts[v]} {v.value}" for v in Verdict) + "</p>",
        f"<p>MUST coverage: {covered} of {musts} judged by a case, {unobservable} not observable "
        f"over the wire, {musts - covered - unobservable} without a case.</p>",
    ]
    for group in run.crashed_in:
        out.append(f"<p class=FAIL>The target stopped answering after group {esc(group)}.</p>")
    out.append(
        "<h2>Cases</h2><table><tr><th>case</th><th>verdict</th><th>requirements</th>"
        "<th>section</th><th>title</th></tr>"
    )
    for r in run.results:
        out.append(
            f"<tr><td><a href='#{esc(r.case.id)}'>{esc(r.case.id)}</a></td>"
            f"<td class={r.verdict.value}>{r.verdict.value}</td>"
            f"<td>{esc(' '.join(r.case.requirements))}</td><td>{esc(r.case.section)}</td>"
            f"<td>{esc(r.case.title)}</td></tr>"
        )
    out.append(
        "</table><h2>Coverage matrix</h2><table><tr><th>requirement</th><th>level</th>"
        "<th>section</th><th>verdict</th><th>cases</th></tr>"
    )
    for row in rows:
        verdict = (
            row.verdict.value if row.verdict else ("not observable" if row.unobservable else "—")
        )
        css = row.verdict.value if row.verdict else "NONE"
        cases_text = ", ".join(row.cases) or esc(row.unobservable)
        out.append(
            f"<tr><td>{esc(row.requirement)}</td><td>{row.level}</td><td>{esc(row.section)}</td>"
            f"<td class={css}>{verdict}</td><td>{esc(cases_text)}</td></tr>"
        )
    out.append("</table><h2>Evidence</h2>")
    for r in run.results:
        out.append(
            f"<h3 id='{esc(r.case.id)}'>{esc(r.case.id)} "
            f"<span class={r.verdict.value}>{r.verdict.value}</span></h3>"
        )
        out.append(
            f"<p>{esc(r.case.title)} (Section {esc(r.case.section)}). Replay: "
            f"<code>{esc(replay_command(r, target))}</code></p>"
        )
        out.append("<pre>" + esc("\n".join(_finding_text(f) for f in r.findings)) + "</pre>")
        exchanges = [d.describe() for d in run.capture.of_case(r.case.id)]
        if exchanges:
            out.append(
                "<details><summary>datagrams</summary><pre>"
                + esc("\n".join(exchanges))
                + "</pre></details>"
            )
    return "\n".join(out) + "\n"
