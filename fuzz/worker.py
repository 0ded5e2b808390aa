"""One job of a campaign, in a process of its own (``python -m fuzz _worker``).

Coverage-guided jobs run libFuzzer through atheris.  The code under test is
imported inside ``atheris.instrument_imports`` (only ``ref``, so that the
harness and the standard library cost nothing extra), and each input runs
under the target's oracles plus two of the worker's own:

* a finding whose signature is already known (an open finding of
  ``fuzz/crashes/`` or one this campaign has kept) is looked past, so that
  one known bug does not stop the campaign: the supervisor rewrites the
  known file as it keeps findings, and the worker rereads it when needed;
* an input that takes longer than the target's budget twice in a row is a
  finding (:class:`~fuzz.findings.SlowInput`); libFuzzer's own ``-timeout``
  catches inputs that never return, ``-rss_limit_mb`` memory bloat.

libFuzzer runs a corpus merge by starting this worker again as a shell
command; :func:`command` is that command, handed over as ``argv[0]``.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from fuzz import registry
from fuzz.findings import SlowInput, signature
from fuzz.status import Reporter

#: The packages whose code atheris instruments for coverage.
INSTRUMENTED = ("ref",)


def command(target: str, status: Path, known: Path) -> list[str]:
    """The worker's own command line, without libFuzzer's arguments."""
    return [
        sys.executable,
        "-m",
        "fuzz",
        "_worker",
        target,
        "--status",
        str(status),
        "--known",
        str(known),
    ]


class Known:
    """The signatures to look past, reread from their file when it changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stamp = -1.0
        self.signatures: set[str] = set()
        self.reload()

    def reload(self) -> None:
        try:
            stamp = self.path.stat().st_mtime
        except OSError:
            return
        if stamp != self.stamp:
            self.stamp = stamp
            self.signatures = set(json.loads(self.path.read_text()))

    def __contains__(self, text: str) -> bool:
        if text not in self.signatures:
            self.reload()
        return text in self.signatures


def guarded(
    harness: Callable[[bytes], None], known: Known, budget: float, reporter: Reporter
) -> Callable[[bytes], None]:
    """The harness with the worker's oracles: known findings skipped, slow inputs kept."""
    clock = time.perf_counter

    def one_input(data: bytes) -> None:
        started = clock()
        try:
            harness(data)
        except Exception as error:
            if signature(error) in known:
                return
            raise
        finally:
            reporter.executed()
        took = clock() - started
        if took > budget:
            again = clock()
            harness(data)
            took = min(took, clock() - again)
            if took > budget:
                raise SlowInput("budget", f"{took:.3f} s, over the budget of {budget:g} s")

    return one_input


def run_atheris(name: str, status: Path, known_path: Path, libfuzzer: Sequence[str]) -> None:
    """Fuzz ``name`` with libFuzzer; returns only if libFuzzer does (it exits on a crash)."""
    import atheris  # type: ignore[import-untyped]

    target = registry.TARGETS[name]
    with atheris.instrument_imports(include=list(INSTRUMENTED)):
        harness = registry.loader(target.harness)
    reporter = Reporter(status, status.parent / "findings")
    one_input = guarded(harness, Known(known_path), target.budget, reporter)
    argv0 = shlex.join(command(name, status, known_path))
    atheris.Setup([argv0, *libfuzzer], one_input)
    try:
        atheris.Fuzz()
    finally:
        reporter.write(done=True)


def run_campaign(name: str, status: Path, known: Path, seconds: float, seed: int) -> None:
    """A structure-aware or network job: the campaign function runs until its deadline."""
    target = registry.TARGETS[name]
    campaign = registry.loader(target.harness)
    reporter = Reporter(status, status.parent / "findings")
    try:
        campaign(time.monotonic() + seconds, seed, reporter, Known(known))
    finally:
        reporter.write(done=True)
