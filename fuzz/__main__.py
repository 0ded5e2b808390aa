"""``python -m fuzz``: list, run, replay and report the fuzzing campaigns.

Commands::

    python -m fuzz list
    python -m fuzz run TARGET --time 1h --jobs 2
    python -m fuzz replay TARGET fuzz/crashes/TARGET-SIGNATURE.bin
    python -m fuzz report [--json FILE] [--html FILE]
    python -m fuzz smoke                # every campaign for a short budget (tox -e fuzz)

Exit status: 0 nothing new found, 1 a new finding (or a replay that still
fails), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from fuzz import registry
from ref.cli_args import EXIT_USAGE, OneLineParser

_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s?)?")


def duration(text: str) -> float:
    """``90``, ``90s``, ``5m``, ``1h``, ``1h30m``: seconds, as an argparse type."""
    match = _DURATION.fullmatch(text.strip())
    if not text.strip() or match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 90s, 5m or 1h")
    hours, minutes, seconds = match.groups()
    total = 3600 * int(hours or 0) + 60 * int(minutes or 0) + float(seconds or 0)
    if total <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a duration must be positive")
    return total


def _jobs(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 64:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of jobs from 1 to 64")
    return int(text)


def _target(text: str) -> str:
    targets = registry.TARGETS
    if text not in targets:
        names = ", ".join(targets)
        raise argparse.ArgumentTypeError(f"no campaign {text!r} (campaigns: {names})")
    if not targets[text].available:
        raise argparse.ArgumentTypeError(
            f"campaign {text!r} needs {targets[text].requires}, which does not exist yet"
        )
    return text


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m fuzz",
        description="Fuzzing campaigns of the Serval reference implementation.",
        epilog="exit status: 0 nothing new found, 1 a new finding, 2 bad arguments",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("list", help="list the campaigns")
    run = commands.add_parser("run", help="run one campaign")
    run.add_argument("target", type=_target, metavar="TARGET", help="a campaign (see list)")
    run.add_argument(
        "--time", type=duration, default=60.0, metavar="DURATION", help="90s, 5m, 1h (default 1m)"
    )
    run.add_argument("--jobs", type=_jobs, default=1, metavar="N", help="worker processes")
    _common(run)
    run.add_argument(
        "--no-merge",
        action="store_true",
        help="leave the committed corpus (fuzz/corpus/TARGET) as it is",
    )
    smoke = commands.add_parser("smoke", help="every campaign for its short budget (tox -e fuzz)")
    _common(smoke)
    smoke.add_argument(
        "--scale", type=float, default=1.0, metavar="X", help="multiply every budget by X"
    )
    replay = commands.add_parser("replay", help="run one input through a campaign's harness")
    replay.add_argument("target", type=_target, metavar="TARGET")
    source = replay.add_mutually_exclusive_group(required=True)
    source.add_argument("file", nargs="?", type=Path, metavar="FILE", help="the input")
    source.add_argument("--hex", metavar="HEX", help="the input as hex")
    report = commands.add_parser("report", help="executions, rates, coverage and findings")
    report.add_argument("--workdir", type=Path, default=None, metavar="DIR")
    report.add_argument("--json", type=Path, metavar="FILE", help="also write JSON here")
    report.add_argument("--html", type=Path, metavar="FILE", help="also write HTML here")
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=1, metavar="N", help="seed of the jobs")
    parser.add_argument(
        "--workdir", type=Path, default=None, metavar="DIR", help="scratch and stats (fuzz/.work)"
    )
    parser.add_argument("--quiet", action="store_true", help="no status line")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_worker"]:
        return _worker(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "list":
        return _list()
    if args.command == "replay":
        return _replay(args)
    if args.command == "report":
        from fuzz import report

        return report.main(args.workdir, args.json, args.html)
    from fuzz import campaign

    workdir = args.workdir or campaign.WORKDIR
    if args.command == "run":
        options = campaign.Options(
            args.target,
            args.time,
            jobs=args.jobs,
            seed=args.seed,
            workdir=workdir,
            merge=not args.no_merge,
            quiet=args.quiet,
        )
        summary = campaign.run(options)
        return 1 if summary.new_findings else 0
    return campaign.smoke(workdir, args.seed, args.scale, args.quiet)


def _list() -> int:
    for name, target in registry.TARGETS.items():
        state = "" if target.available else f"  (needs {target.requires})"
        print(f"{name:<20} {target.kind:<11} {target.summary}{state}")
    return 0


def _replay(args: argparse.Namespace) -> int:
    from fuzz.findings import run_once

    target = registry.TARGETS[args.target]
    try:
        data = bytes.fromhex(args.hex) if args.hex is not None else args.file.read_bytes()
    except (OSError, ValueError) as error:
        print(f"python -m fuzz: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    outcome = run_once(registry.loader(target.replayer), data, target.budget)
    if outcome.signature is None:
        print(f"{args.target}: {len(data)} bytes, no finding ({outcome.seconds * 1000:.1f} ms)")
        return 0
    print(outcome.text)
    print(f"{args.target}: {len(data)} bytes, finding {outcome.signature}")
    return 1


def _worker(argv: list[str]) -> int:
    """A job, started by the supervisor (or by libFuzzer, for a merge).

    ``TARGET --status FILE --known FILE [--seconds S] [--seed N] [--] LIBFUZZER-ARGS``;
    parsed by hand because libFuzzer's own arguments (``-seed=1``, corpus
    folders) follow, with or without ``--``.
    """
    from fuzz import worker

    name, rest = argv[0], argv[1:]
    options: dict[str, str] = {}
    while len(rest) >= 2 and rest[0] in ("--status", "--known", "--seconds", "--seed"):
        options[rest[0]] = rest[1]
        rest = rest[2:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    status, known = Path(options["--status"]), Path(options["--known"])
    if registry.TARGETS[name].kind == "atheris":
        worker.run_atheris(name, status, known, rest)
    else:
        seconds, seed = float(options.get("--seconds", 60)), int(options.get("--seed", 1))
        worker.run_campaign(name, status, known, seconds, seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
