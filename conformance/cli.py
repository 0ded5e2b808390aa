"""``serval-conform``: test an implementation of the draft over a socket, case by case.

Without ``--target`` it starts the reference node and tests that.  Exit
status: 0 when nothing failed, 1 on any FAIL (a WARN counts as a FAIL under
``--strict``), 2 on usage or harness errors (the target unreachable at the
start included).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from conformance import report
from conformance.cases import all_cases
from conformance.embedded import reference_node
from conformance.model import Case, CaseResult, HarnessError, Verdict
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
    return parser


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


def _summary(result: Run, cases: Sequence[Case], console: Console, target: str) -> None:
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
            console.print(f"replay: {report.replay_command(r, target)}")
    console.print(f"verdict: [{_COLOURS[result.verdict]}]{result.verdict.value}[/]")


def _write(args: argparse.Namespace, result: Run, cases: Sequence[Case], target: str) -> None:
    if args.json:
        args.json.write_text(json.dumps(report.to_json(result, cases, target), indent=1) + "\n")
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


def execute(
    args: argparse.Namespace, cases: Sequence[Case], address: Address, console: Console
) -> int:
    target = _text(address)
    capture = Capture()
    if not alive(address, capture, args.timeout):
        console.print(f"serval-conform: error: no PONG from {target}: is a ServalDHT node there?")
        return EXIT_USAGE
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("starting", total=len(cases))

        def advance(result: CaseResult, done: int, total: int) -> None:
            bar.update(task, completed=done, description=result.case.group)

        result = run(
            cases,
            address,
            seed=args.seed,
            timeout=args.timeout,
            strict=args.strict,
            progress=advance,
            capture=capture,
        )
    _summary(result, cases, console, target)
    _write(args, result, cases, target)
    return EXIT_FAILED if result.exit_code() else EXIT_OK


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
        with reference_node() as address:
            return execute(args, cases, address, console)
    except HarnessError as error:
        console.print(f"serval-conform: error: {error}")
        return EXIT_USAGE
    except OSError as error:
        console.print(f"serval-conform: error: {error}")
        return EXIT_USAGE


def entry() -> None:
    sys.exit(main())
