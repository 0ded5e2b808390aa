"""The supervisor: runs a campaign's jobs, shows their progress, keeps what they find.

Theory of operation.  ``python -m fuzz run TARGET --time T --jobs N`` starts
N workers (:mod:`fuzz.worker`), each a process of its own, and until the
time is up:

* every second, sums the workers' status files (and, for coverage-guided
  jobs, the coverage libFuzzer logs) into one status line;
* when a coverage-guided worker stops on a finding, replays libFuzzer's
  artifact here (uninstrumented, under an alarm), minimises it, keeps it in
  ``fuzz/crashes/`` unless its signature is known, adds the signature to the
  known file the workers read, and starts the worker again;
* moves the findings structure-aware and network workers kept (already
  shrunk by Hypothesis) to ``fuzz/crashes/`` the same way.

At the end, a coverage-guided campaign merges its new inputs with the
committed corpus (``fuzz/corpus/TARGET/``) using libFuzzer's ``-merge=1``,
which keeps only the inputs that add coverage, and the run's figures are
added to ``WORKDIR/stats/TARGET.json`` for ``python -m fuzz report``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from fuzz import registry, worker
from fuzz.findings import (
    CRASHES,
    known_signatures,
    minimise,
    replay_command,
    run_once,
    short_hash,
    store,
)
from fuzz.registry import Target
from fuzz.seeds import dictionary_text
from fuzz.status import Status, write_json

PACKAGE = Path(__file__).resolve().parent
CORPUS = PACKAGE / "corpus"
WORKDIR = PACKAGE / ".work"
GRACE = 30.0  # seconds a worker may overrun the campaign's end before it is stopped
_PROGRESS = re.compile(rb"cov: (\d+) ft: (\d+)(?: corp: (\d+)/)?")
_EXECUTED = re.compile(rb"stat::number_of_executed_units: (\d+)")
_ARTIFACT = re.compile(r"^(crash|timeout|oom|slow-unit|leak)-")


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM stops a campaign as Ctrl-C does: the jobs stop, their work is kept."""
    raise KeyboardInterrupt


def _interruptible() -> None:
    """In a job, before exec: SIGINT acts again even if this supervisor's shell ignored it.

    A shell starts background commands with SIGINT ignored, and an ignored
    signal stays ignored across exec, so a job would outlive the supervisor's
    SIGINT and be killed after the grace period instead of stopping cleanly.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclasses.dataclass(frozen=True)
class Options:
    target: str
    seconds: float
    jobs: int = 1
    seed: int = 1
    workdir: Path = WORKDIR
    crashes: Path = CRASHES
    merge: bool = True  # fold the new inputs into the committed corpus
    quiet: bool = False


@dataclasses.dataclass
class Job:
    number: int
    process: subprocess.Popen[bytes]
    log: IO[bytes]
    log_path: Path
    status: Path
    artifacts: Path
    read: int = 0  # log bytes parsed
    coverage: int = 0
    features: int = 0
    corpus: int = 0
    execs_before: int = 0  # executions of the job's earlier (crashed) processes
    execs_final: int = 0  # what libFuzzer reported as it stopped
    starts: int = 1  # processes this job has had


@dataclasses.dataclass
class Summary:
    """What one run did, as recorded for the report."""

    target: str
    kind: str
    started: str
    seconds: float
    jobs: int
    execs: int
    coverage: int
    features: int
    corpus: int
    new_findings: list[str]
    known_findings: int
    unconfirmed: int = 0
    note: str = ""
    # CPU seconds the jobs used (user and system).  On a machine shared with
    # other work, executions per CPU second is the rate one core sustains;
    # executions per wall second times the jobs is not.
    cpu_seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.execs / self.seconds if self.seconds else 0.0


def _children_cpu() -> float:
    """CPU seconds used by this process's finished (reaped) child processes."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Supervisor:
    def __init__(self, options: Options, target: Target, out: IO[str]) -> None:
        self.options = options
        self.target = target
        self.out = out
        self.folder = options.workdir / target.name
        self.known_path = self.folder / "known.json"
        self.known: set[str] = set()
        self.new: list[str] = []
        self.unconfirmed = 0
        self.jobs: list[Job] = []
        self.finished: list[tuple[Job, Status]] = []
        self.started = time.monotonic()
        self.deadline = self.started + options.seconds
        self.harness: Callable[[bytes], None] | None = None
        self.last_line = 0.0

    # --- set-up -------------------------------------------------------------------------

    def prepare(self) -> None:
        for name in ("corpus", "seeds", "artifacts", "findings"):
            (self.folder / name).mkdir(parents=True, exist_ok=True)
        for stale in self.folder.glob("status-*.json"):
            stale.unlink()
        self.known = known_signatures(self.target.name, self.options.crashes)
        self._write_known()
        if self.target.kind == "atheris":
            self._write_seeds()

    def _write_known(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        write_json(self.known_path, sorted(self.known))

    def _write_seeds(self) -> None:
        seeds_folder = self.folder / "seeds"
        for old in seeds_folder.iterdir():
            old.unlink()
        for data in registry.loader(self.target.seeds)():
            (seeds_folder / short_hash(data.hex())).write_bytes(data)
        entries = registry.loader(self.target.dictionary)()
        (self.folder / "magic.dict").write_text(dictionary_text(entries))
        (CORPUS / self.target.name).mkdir(parents=True, exist_ok=True)

    def _libfuzzer_args(self, job: int, starts: int, seconds: float, artifacts: Path) -> list[str]:
        target = self.target
        return [
            str(self.folder / "corpus"),
            str(CORPUS / target.name),
            str(self.folder / "seeds"),
            f"-max_total_time={max(1, int(seconds))}",
            f"-max_len={target.max_len}",
            f"-timeout={max(10, int(8 * target.budget))}",
            "-rss_limit_mb=2048",
            f"-dict={self.folder / 'magic.dict'}",
            f"-artifact_prefix={artifacts}/",
            f"-seed={(self.options.seed * 64 + job) * 1000 + starts}",
            "-print_final_stats=1",
            "-reload=10",
        ]

    # --- jobs ----------------------------------------------------------------------------

    def start(self, number: int, execs_before: int = 0, starts: int = 1) -> Job | None:
        """Start job ``number``; not again (after a finding) with under two seconds left."""
        left = self.deadline - time.monotonic()
        if left < 2 and starts > 1:
            return None
        left = max(left, 1.0)
        status = self.folder / f"status-{number}.json"
        artifacts = self.folder / "artifacts" / str(number)
        artifacts.mkdir(parents=True, exist_ok=True)
        command = worker.command(self.target.name, status, self.known_path)
        if self.target.kind == "atheris":
            command += ["--", *self._libfuzzer_args(number, starts, left, artifacts)]
        else:
            seed = self.options.seed * 1000 + number
            command += ["--seconds", f"{left:.1f}", "--seed", str(seed)]
        log_path = self.folder / f"log-{number}.txt"
        read = log_path.stat().st_size if log_path.exists() else 0
        log = log_path.open("ab")
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_interruptible,
        )
        return Job(
            number,
            process,
            log,
            log_path,
            status,
            artifacts,
            read=read,
            execs_before=execs_before,
            starts=starts,
        )

    def run(self) -> Summary:
        self.prepare()
        begun = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.started = time.monotonic()
        self.deadline = self.started + self.options.seconds
        cpu_before = _children_cpu()
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            for number in range(self.options.jobs):
                job = self.start(number)
                if job is not None:
                    self.jobs.append(job)
            while self.jobs:
                time.sleep(0.5)
                self._poll()
                self._show()
                if time.monotonic() > self.deadline + GRACE:
                    for job in self.jobs:
                        job.process.kill()
        except KeyboardInterrupt:  # stop the jobs as libFuzzer stops, and keep what they did
            self._say("interrupted: stopping the jobs")
            self.deadline = time.monotonic()
            for job in self.jobs:
                job.process.send_signal(signal.SIGINT)
            for job in self.jobs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    job.process.wait(timeout=GRACE)
            self._poll()
        finally:
            signal.signal(signal.SIGTERM, previous)
            for job in self.jobs:
                if job.process.poll() is None:
                    job.process.kill()
                    job.process.wait()
        cpu_seconds = _children_cpu() - cpu_before  # the jobs only: replays and merge follow
        self._collect_findings()
        totals = self._totals()
        self._show(final=True)
        note = ""
        if self.target.kind == "atheris" and self.options.merge:
            note = self._merge()
        corpus = totals.corpus
        if self.target.kind == "atheris":
            corpus = len(list((CORPUS / self.target.name).iterdir()))
        return Summary(
            target=self.target.name,
            kind=self.target.kind,
            started=begun,
            seconds=round(time.monotonic() - self.started, 1),
            jobs=self.options.jobs,
            execs=totals.execs,
            coverage=totals.coverage,
            features=totals.features,
            corpus=corpus,
            new_findings=self.new,
            known_findings=len(self.known) - len(self.new),
            unconfirmed=self.unconfirmed + totals.unconfirmed,
            note=note,
            cpu_seconds=round(cpu_seconds, 1),
        )

    def _poll(self) -> None:
        for job in list(self.jobs):
            self._read_log(job)
            if job.process.poll() is None:
                continue
            job.log.close()
            self._artifacts(job)
            self._collect_findings()
            if job.process.returncode and self.target.kind != "atheris":
                self._say(f"job {job.number} stopped with status {job.process.returncode}")
            status = Status.read(job.status)
            status.execs = max(status.execs, job.execs_final)
            again = None
            if self.target.kind == "atheris":
                again = self.start(job.number, job.execs_before + status.execs, job.starts + 1)
            if again is not None:
                again.coverage, again.features = job.coverage, job.features
                self.jobs[self.jobs.index(job)] = again
            else:
                self.jobs.remove(job)
                self.finished.append((job, status))

    def _read_log(self, job: Job) -> None:
        try:
            with job.log_path.open("rb") as log:
                log.seek(job.read)
                chunk = log.read()
        except OSError:
            return
        job.read += len(chunk)
        for match in _PROGRESS.finditer(chunk):
            job.coverage = max(job.coverage, int(match.group(1)))
            job.features = max(job.features, int(match.group(2)))
            if match.group(3):
                job.corpus = int(match.group(3))
        for match in _EXECUTED.finditer(chunk):
            job.execs_final = int(match.group(1))

    # --- findings --------------------------------------------------------------------------

    def _harness(self) -> Callable[[bytes], None]:
        if self.harness is None:
            self.harness = registry.loader(self.target.replayer)
        return self.harness

    def _artifacts(self, job: Job) -> None:
        for path in sorted(job.artifacts.iterdir()):
            if not _ARTIFACT.match(path.name):
                continue
            data = path.read_bytes()
            path.rename(path.with_name(f"done-{path.name}"))
            self._confirm(data, path.name.split("-")[0])

    def _confirm(self, data: bytes, kind: str) -> None:
        harness, budget = self._harness(), self.target.budget
        outcome = run_once(harness, data, budget)
        if outcome.signature is None:
            self.unconfirmed += 1
            self._say(f"a {kind} artifact of {len(data)} bytes does not reproduce; not kept")
            return
        wanted = outcome.signature
        slow = wanted in ("Hang", "SlowInput:budget")

        def still_fails(candidate: bytes) -> bool:
            found = run_once(harness, candidate, budget).signature
            return found in ("Hang", "SlowInput:budget") if slow else found == wanted

        small = minimise(still_fails, data)
        final = run_once(harness, small, budget)
        self._keep(wanted, small, len(data), final.text or outcome.text)

    def _keep(self, signature: str, data: bytes, original: int, text: str) -> None:
        path, new = store(self.target.name, signature, data, original, text, self.options.crashes)
        if signature not in self.known:
            self.known.add(signature)
            self.new.append(signature)
            self._write_known()
            self._say(f"finding {signature}: {len(data)} bytes kept in {path}")
            self._say(f"  replay: {replay_command(self.target.name, path)}")
        elif new:
            self._say(f"finding {signature} kept again in {path}")

    def _collect_findings(self) -> None:
        folder = self.folder / "findings"
        for path in sorted(folder.glob("*.json")):
            found: dict[str, Any] = json.loads(path.read_text())
            path.unlink()
            self._keep(
                found["signature"],
                bytes.fromhex(found["input_hex"]),
                int(found["original_size"]),
                str(found["traceback"]),
            )

    # --- progress ------------------------------------------------------------------------

    def _totals(self) -> Status:
        total = Status()
        for job in self.jobs:
            status = Status.read(job.status)
            status.execs = max(status.execs, job.execs_final)
            self._add(total, job, status)
        for job, status in self.finished:
            self._add(total, job, status)
        total.findings = len(self.new)
        return total

    @staticmethod
    def _add(total: Status, job: Job, status: Status) -> None:
        total.execs += job.execs_before + status.execs
        total.coverage = max(total.coverage, job.coverage, status.coverage)
        total.features = max(total.features, job.features, status.features)
        total.corpus = max(total.corpus, job.corpus, status.corpus)
        total.unconfirmed += status.unconfirmed

    def _show(self, final: bool = False) -> None:
        now = time.monotonic()
        interactive = self.out.isatty()
        if self.options.quiet or (not final and not interactive and now - self.last_line < 10):
            return
        self.last_line = now
        total = self._totals()
        elapsed = now - self.started
        rate = total.execs / elapsed if elapsed else 0.0
        coverage = "cov" if self.target.kind == "atheris" else "outcomes"
        line = (
            f"[{self.target.name}] {_clock(elapsed)}/{_clock(self.options.seconds)} "
            f"jobs {len(self.jobs) or self.options.jobs} | execs {total.execs:,} ({rate:,.0f}/s) | "
            f"{coverage} {total.coverage}"
            + (f" ft {total.features}" if total.features else "")
            + f" | corpus {total.corpus} | findings {len(self.new)} new, "
            f"{len(self.known) - len(self.new)} known"
        )
        if interactive and not final:
            self.out.write("\r" + line[:200].ljust(120))
        else:
            self.out.write(("\r" if interactive else "") + line + "\n")
        self.out.flush()

    def _say(self, text: str) -> None:
        if self.out.isatty():
            self.out.write("\r" + " " * 120 + "\r")
        self.out.write(f"[{self.target.name}] {text}\n")
        self.out.flush()

    # --- the corpus ------------------------------------------------------------------------

    def _merge(self) -> str:
        """Fold the run's new inputs into the committed corpus, keeping what adds coverage."""
        committed = CORPUS / self.target.name
        merged = self.folder / "merged"
        shutil.rmtree(merged, ignore_errors=True)
        merged.mkdir()
        status = self.folder / "status-merge.json"
        command = worker.command(self.target.name, status, self.known_path)
        command += [
            "--",
            "-merge=1",
            f"-max_len={self.target.max_len}",
            f"-timeout={max(10, int(8 * self.target.budget))}",
            str(merged),
            str(committed),
            str(self.folder / "corpus"),
            str(self.folder / "seeds"),
        ]
        with (self.folder / "log-merge.txt").open("wb") as log:
            done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, timeout=900)
        kept = list(merged.iterdir())
        if done.returncode != 0 or not kept:
            return f"corpus merge failed (status {done.returncode}); corpus left as it was"
        for old in committed.iterdir():
            old.unlink()
        for path in kept:
            shutil.move(str(path), committed / path.name)
        return f"corpus merged: {len(kept)} inputs"


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def run(options: Options, out: IO[str] = sys.stderr) -> Summary:
    """Run one campaign and record its figures."""
    target = registry.TARGETS[options.target]
    supervisor = Supervisor(options, target, out)
    summary = supervisor.run()
    if summary.note:
        supervisor._say(summary.note)
    record(options.workdir, summary)
    return summary


def record(workdir: Path, summary: Summary) -> None:
    stats = workdir / "stats"
    stats.mkdir(parents=True, exist_ok=True)
    path = stats / f"{summary.target}.json"
    runs: list[dict[str, Any]] = json.loads(path.read_text()) if path.exists() else []
    runs.append(dataclasses.asdict(summary))
    write_json(path, runs)


def smoke(workdir: Path, seed: int, scale: float, quiet: bool, out: IO[str] = sys.stderr) -> int:
    """Every available campaign for its short budget, one job each (``tox -e fuzz``)."""
    summaries = []
    for name, target in registry.available().items():
        options = Options(
            name, target.smoke * scale, seed=seed, workdir=workdir, merge=False, quiet=quiet
        )
        summaries.append(run(options, out))
    out.write(f"\n{'campaign':<20} {'seconds':>8} {'execs':>10} {'execs/s':>9} {'cov':>6}  new\n")
    for summary in summaries:
        out.write(
            f"{summary.target:<20} {summary.seconds:>8.1f} {summary.execs:>10,} "
            f"{summary.rate:>9,.0f} {summary.coverage:>6}  {len(summary.new_findings)}\n"
        )
    new = [f"{s.target}: {name}" for s in summaries for name in s.new_findings]
    for line in new:
        out.write(f"new finding {line}\n")
    return 1 if new else 0
