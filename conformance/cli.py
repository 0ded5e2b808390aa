"""``serval-conform``: test an implementation of the draft over a socket, case by case.

Without ``--target`` it starts the reference node and tests that.  Exit
status: 0 when nothing failed, 1 on any FAIL (a WARN counts as a FAIL under
``--strict``), 2 on usage or harness errors (the target unreachable at the
start included).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from conformance import differential, fuzz, report
from conformance.cases import all_cases
from conformance.context import Target
from conformance.embedded import reference_node
from conformance.model import Case, CaseResult, GroupResult, HarnessError, Verdict
from conformance.peer import Address, Capture
from conformance.requirements import requirements
from conformance.runner import Run, alive, run
from ref.cli_args import EXIT_USAGE, OneLineParser, host_port

EXIT_OK = 0
EXIT_FAILED = 1
DEFAULT_TIMEOUT = 1.0

_COLOURS = {
    Verdict.PASS: "green",
    Verdict.FAIL: "bold red",
    Verdict.WARN: "yellow",
    Verdict.SKIP: "dim",
    Verdict.ERROR: "magenta",
}


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="serval-conform",
        description=(
            "Test a Serval/ServalDHT implementation against the draft, requirement by "
            "requirement. Without --target, the reference node is started and tested."
        ),
        epilog="exit status: 0 nothing failed, 1 a FAIL, 2 usage or harness error",
    )
    parser.add_argument(
        "--target",
        type=host_port,
        metavar="HOST:PORT",
        help="the UDP endpoint of the implementation under test",
    )
    parser.add_argument(
        "--suite",
        choices=("sal", "dht", "all"),
        default="all",
        help="which protocol's cases to run (default all)",
    )
    parser.add_argument(
        "--case",
        action="append",
        default=[],
        metavar="ID",
        help="run this case (repeatable; a prefix such as dht.header selects a group)",
    )
    parser.add_argument(
        "--requirement",
        action="append",
        default=[],
        metavar="REQ-ID",
        help="run the cases that judge this requirement (repeatable)",
    )
    parser.add_argument("--list", action="store_true", help="list the selected cases and exit")
    parser.add_argument(
        "--seed",
        type=int,
        metavar="N",
        help="seed of every random choice (default: a random seed, printed)",
    )
    parser.add_argument("--strict", action="store_true", help="a SHOULD not followed is a FAIL")
    parser.add_argument(
        "--slow",
        action="store_true",
        help=(
            "also run the cases that wait for the draft's long timers (TIME-WAIT, "
            "FIN-WAIT-2, the retransmission limit: minutes); skipped otherwise"
        ),
    )
    parser.add_argument(
        "--timeout",
        type=_positive,
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help=f"seconds to wait for an answer (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument("--junit", type=Path, metavar="FILE", help="write JUnit XML")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the full report as JSON")
    parser.add_argument(
        "--html",
        type=Path,
        metavar="FILE",
        help="write the report with the coverage matrix as HTML",
    )
    parser.add_argument(
        "--pcap",
        type=Path,
        metavar="FILE",
        help="write every datagram as pcapng, annotated with case and verdict",
    )
    parser.add_argument(
        "--fuzz",
        type=_count,
        default=0,
        metavar="N",
        help="after the cases, send N structure-aware mutated datagrams (group fuzz)",
    )
    parser.add_argument(
        "--replay-hex",
        type=_hex,
        metavar="HEX",
        help="send this one datagram (a fuzz finding) and judge it with the fuzz oracle",
    )
    parser.add_argument(
        "--against",
        type=host_port,
        metavar="HOST:PORT",
        help="differential mode: run the same cases (and fuzz) here too and report differences",
    )
    return parser


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 10_000_000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count of datagrams")
    return value


def _hex(text: str) -> bytes:
    try:
        data = fuzz.parse_hex(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not a hexadecimal datagram") from None
    if not data:
        raise argparse.ArgumentTypeError("an empty datagram")
    return data


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 600:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 0 to 600")
    return value


def select(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[Case]:
    cases = all_cases()
    if args.suite != "all":
        cases = [c for c in cases if c.suite == args.suite]
    if args.requirement:
        known = requirements()
        for requirement in args.requirement:
            if requirement not in known:
                parser.error(f"no requirement {requirement!r} in the draft")
        cases = [c for c in cases if set(c.requirements) & set(args.requirement)]
    if args.case:
        for wanted in args.case:
            if not any(c.id == wanted or c.id.startswith(wanted + ".") for c in cases):
                parser.error(f"no case {wanted!r} (see --list)")
        cases = [c for c in cases if any(c.id == w or c.id.startswith(w + ".") for w in args.case)]
    return cases


def _list(cases: Sequence[Case], console: Console) -> None:
    table = Table(box=None)
    table.add_column("case", no_wrap=True, min_width=max((len(c.id) for c in cases), default=4))
    table.add_column("section")
    table.add_column("requirements")
    table.add_column("title")
    for case in cases:
        table.add_row(case.id, case.section, " ".join(case.requirements), case.title)
    console.print(table)
    rows = report.coverage(None, all_cases())
    covered, unobservable, musts = report.must_coverage(rows)
    console.print(
        f"{len(cases)} cases; MUSTs judged by a case: {covered} of {musts}, "
        f"{unobservable} not observable over the wire"
    )


def _summary(
    result: Run,
    cases: Sequence[Case],
    console: Console,
    target: str,
) -> None:
    table = Table("case", "verdict", "requirements", "why", title="serval-conform", box=None)
    for r in result.results:
        if r.verdict == Verdict.PASS:
            continue
        why = (
            r.failures[0].detail.splitlines()[0]
            if r.failures
            else (r.findings[0].detail.splitlines()[0] if r.findings else "")
        )
        table.add_row(
            r.case.id,
            f"[{_COLOURS[r.verdict]}]{r.verdict.value}[/]",
            " ".join(f.requirement or "" for f in r.failures) or "-",
            why,
        )
    if table.row_count:
        console.print(table)
    counts = Counter(r.verdict for r in result.results)
    rows = report.coverage(result, cases)
    covered, unobservable, musts = report.must_coverage(rows)
    judged = sum(1 for row in rows if row.verdict is not None)
    parts = [f"[{_COLOURS[v]}]{counts[v]} {v.value}[/]" for v in Verdict]
    console.print(
        f"{len(result.results)} cases: " + ", ".join(parts) + f" in {result.duration:.1f} s"
    )
    console.print(
        f"requirements judged in this run: {judged}; MUSTs with a case: {covered} of {musts}"
        f" ({unobservable} not observable over the wire); seed {result.seed}"
    )
    for group in result.crashed_in:
        console.print(f"[bold red]the target stopped answering after group {group}[/]")
    for r in result.results:
        if r.verdict in (Verdict.FAIL, Verdict.WARN):
            console.print(f"replay: {report.replay_command(r, target)}", soft_wrap=True)
    console.print(f"verdict: [{_COLOURS[result.verdict]}]{result.verdict.value}[/]")


def _write(
    args: argparse.Namespace,
    outcome: _Outcome,
    target: str,
    extra: dict[str, object] | None = None,
) -> None:
    result, cases = outcome.run, outcome.cases
    if args.json:
        data = report.to_json(result, cases, target)
        data.update(extra or {})
        args.json.write_text(json.dumps(data, indent=1) + "\n")
    if args.junit:
        args.junit.write_bytes(report.to_junit(result, target))
    if args.html:
        args.html.write_text(report.to_html(result, cases, target), encoding="utf-8")
    if args.pcap:
        from conformance.pcap import write_pcapng

        verdicts = {r.case.id: r.verdict.value for r in result.results}
        write_pcapng(args.pcap, result.capture.datagrams, verdicts)


def _text(address: Address) -> str:
    return f"[{address[0]}]:{address[1]}" if ":" in address[0] else f"{address[0]}:{address[1]}"


@dataclasses.dataclass
class _Outcome:
    """One target's run: the cases, then the fuzz campaign if asked for."""

    run: Run
    cases: list[Case]  # the selected cases and the fuzz cases the campaign made
    campaign: fuzz.Campaign | None = None


def _test(
    args: argparse.Namespace,
    cases: Sequence[Case],
    address: Address,
    capture: Capture,
    bar: Progress,
    now: int,
) -> _Outcome:
    name = _text(address)
    task = bar.add_task(f"{name} starting", total=len(cases))

    def advance(result: CaseResult, done: int, total: int) -> None:
        bar.update(task, completed=done, description=f"{name} {result.case.group}")

    result = run(
        cases,
        address,
        seed=args.seed,
        timeout=args.timeout,
        strict=args.strict,
        progress=advance,
        capture=capture,
        slow=args.slow,
    )
    outcome = _Outcome(result, list(cases))
    if args.fuzz:
        fuzz_task = bar.add_task(f"{name} fuzz", total=args.fuzz)
        fuzzer = fuzz.Fuzzer(
            address,
            capture,
            seed=args.seed,
            timeout=args.timeout,
            rate_limit=result.target.rate_limit,
            now=now,
        )
        campaign = fuzzer.run(
            args.fuzz, progress=lambda done, total: bar.update(fuzz_task, completed=done)
        )
        fuzz_results = fuzz.results(campaign, name)
        result.results.extend(fuzz_results)
        result.groups.append(
            GroupResult("fuzz", campaign.alive_before, campaign.dead_after is None)
        )
        result.duration += campaign.duration
        outcome.campaign = campaign
        outcome.cases += [r.case for r in fuzz_results]
    return outcome


def _fuzz_line(console: Console, campaign: fuzz.Campaign) -> None:
    console.print(
        f"fuzz: {campaign.sent} datagrams in {campaign.duration:.1f} s "
        f"({campaign.rate:.0f} datagrams/s), {len(campaign.findings)} findings shrunk"
    )


def execute(
    args: argparse.Namespace, cases: Sequence[Case], address: Address, console: Console
) -> int:
    target = _text(address)
    if args.replay_hex is not None:
        return _replay(args, address, console)
    capture = Capture()
    for where in [address] + ([args.against] if args.against else []):
        if not alive(where, capture, args.timeout):
            text = _text(where)
            console.print(f"serval-conform: error: no PONG from {text}: is a ServalDHT node there?")
            return EXIT_USAGE
    capture = Capture()
    now = int(time.time())
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        outcome = _test(args, cases, address, capture, bar, now)
        other = None
        if args.against is not None:
            other = _test(args, cases, args.against, Capture(), bar, now)
    _summary(outcome.run, outcome.cases, console, target)
    if outcome.campaign is not None:
        _fuzz_line(console, outcome.campaign)
    extra: dict[str, object] = {}
    differences: list[differential.Difference] = []
    if other is not None:
        against = _text(args.against)
        differences, diverged = differential.compare_runs(outcome.run, other.run)
        if outcome.campaign is not None and other.campaign is not None:
            differences += differential.compare_campaigns(outcome.campaign, other.campaign)
        counts = Counter(r.verdict for r in other.run.results)
        console.print(
            f"against {against}: "
            + ", ".join(f"[{_COLOURS[v]}]{counts[v]} {v.value}[/]" for v in Verdict)
            + f", verdict [{_COLOURS[other.run.verdict]}]{other.run.verdict.value}[/]"
        )
        if differences:
            console.print(differential.table(differences, target, against))
        console.print(f"{len(differences)} differences between {target} and {against}")
        if diverged:
            console.print(
                f"{len(diverged)} cases sent the two targets different requests (their choices "
                "depend on the target); only their verdicts were compared: " + ", ".join(diverged)
            )
        extra = {
            "against": {
                "target": against,
                "verdict": other.run.verdict.value,
                "cases": [{"id": r.case.id, "verdict": r.verdict.value} for r in other.run.results],
            },
            "differences": differential.to_json(differences),
            "not_compared": diverged,
        }
    _write(args, outcome, target, extra)
    failed = outcome.run.exit_code() or bool(differences)
    return EXIT_FAILED if failed else EXIT_OK


def _replay(args: argparse.Namespace, address: Address, console: Console) -> int:
    """``--replay-hex``: one datagram, judged by the fuzz oracle, then a liveness check."""
    target = _text(address)
    capture = Capture()
    if not alive(address, capture, args.timeout):
        console.print(f"serval-conform: error: no PONG from {target}: is a ServalDHT node there?")
        return EXIT_USAGE
    started = time.monotonic()
    datagram: bytes = args.replay_hex
    answers, violations, still_alive = fuzz.replay(address, capture, datagram, timeout=args.timeout)
    result = fuzz.replay_result(datagram, answers, violations, still_alive)
    result.replay = fuzz.replay_command(target, datagram)
    console.print(f"sent: {fuzz.expectation(datagram).reason}, {len(datagram)} bytes")
    for entry in capture.of_case("fuzz.replay"):
        console.print(entry.describe(), soft_wrap=True)
    outcome = _Outcome(
        Run(
            target=Target(address, None),
            seed=args.seed,
            strict=args.strict,
            results=[result],
            groups=[GroupResult("fuzz", True, still_alive)],
            capture=capture,
            duration=time.monotonic() - started,
        ),
        [result.case],
    )
    _summary(outcome.run, outcome.cases, console, target)
    _write(args, outcome, target)
    return EXIT_FAILED if outcome.run.exit_code() else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    console = Console(highlight=False)
    cases = select(args, parser)
    if args.list:
        _list(cases, console)
        return EXIT_OK
    if not cases:
        parser.error("no case selected")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 32)
    try:
        if args.target is not None:
            return execute(args, cases, args.target, console)
        console.print("no --target: testing the reference node (python -m ref.chord)")
        with reference_node() as node:
            return execute(args, cases, node.address, console)
    except HarnessError as error:
        console.print(f"serval-conform: error: {error}")
        return EXIT_USAGE
    except OSError as error:
        console.print(f"serval-conform: error: {error}")
        return EXIT_USAGE


def entry() -> None:
    sys.exit(main())
