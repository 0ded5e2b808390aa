"""``python -m fuzz``: its arguments, replay, report, and the supervisor's handling of findings."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fuzz import campaign, registry
from fuzz.__main__ import duration, main
from fuzz.findings import records
from fuzz.registry import Target
from fuzz.status import Reporter, Status

ROOT = Path(__file__).resolve().parents[2]
RUN = (sys.executable, "-m", "fuzz", "run")


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("5m", 300), ("1h", 3600), ("1h30m", 5400)]
)
def test_durations(text: str, seconds: float) -> None:
    assert duration(text) == seconds


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "nope"],
        ["run", "sal", "--time", "5x"],
        ["run", "sal", "--time", "0"],
        ["run", "sal", "--jobs", "0"],
        ["frobnicate"],
        [],
        ["replay", "sal"],
    ],
)
def test_bad_arguments_are_one_line_and_status_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "error:" in error


def test_list_names_every_campaign(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    for name in registry.TARGETS:
        assert name in listed


def test_every_campaign_is_importable() -> None:
    for target in registry.TARGETS.values():
        if target.available:
            assert callable(registry.loader(target.harness))
            assert callable(registry.loader(target.replayer))


def test_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "sal", "--hex", "00" * 12]) == 0
    path = tmp_path / "input"
    path.write_bytes(bytes(3))
    assert main(["replay", "dht-node", str(path)]) == 0
    assert "no finding" in capsys.readouterr().out


def test_report_writes_text_json_and_html(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stats = tmp_path / "stats"
    stats.mkdir()
    run = {"started": "now", "seconds": 10.0, "jobs": 2, "execs": 400_000, "coverage": 500}
    (stats / "sal.json").write_text(json.dumps([{**run, "features": 900}]))
    assert main(["report", "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "400,000" in out and "20,000" in out  # 400,000 in 10 s on 2 cores
    report = json.loads((tmp_path / "report.json").read_text())
    (sal,) = [row for row in report["campaigns"] if row["target"] == "sal"]
    assert sal["rate"] == 40_000 and sal["rate_per_core"] == 20_000
    assert "<table>" in (tmp_path / "report.html").read_text()


def test_report_per_core_rate_counts_cpu_seconds_where_recorded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run that shared its cores (100 s of wall, 25 s of CPU) counts its CPU time;
    an older record without CPU time counts wall time times jobs, and is then left out."""
    stats = tmp_path / "stats"
    stats.mkdir()
    base = {"started": "now", "jobs": 1, "coverage": 5, "features": 9}
    shared = {**base, "seconds": 100.0, "execs": 500_000, "cpu_seconds": 25.0}
    (stats / "sal.json").write_text(json.dumps([shared]))
    (stats / "dht.json").write_text(
        json.dumps([{**base, "seconds": 10.0, "execs": 100_000}, shared])
    )
    assert main(["report", "--workdir", str(tmp_path)]) == 0
    capsys.readouterr()
    rows = {
        row["target"]: row
        for row in json.loads((tmp_path / "report.json").read_text())["campaigns"]
    }
    assert rows["sal"]["rate"] == 5_000 and rows["sal"]["rate_per_core"] == 20_000
    assert rows["dht"]["execs"] == 600_000 and rows["dht"]["rate_per_core"] == 20_000


# --- the supervisor, without workers ----------------------------------------------------------


def planted(data: bytes) -> None:
    """A harness with a bug: any input holding ``!`` crashes it."""
    if b"!" in data:
        raise KeyError("planted")


def test_an_artifact_is_confirmed_minimised_and_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = Target("planted", "atheris", "a planted bug", f"{__name__}:planted")
    monkeypatch.setitem(registry.TARGETS, "planted", target)
    options = campaign.Options("planted", 1.0, workdir=tmp_path, crashes=tmp_path / "crashes")
    supervisor = campaign.Supervisor(options, target, sys.stderr)
    supervisor._confirm(b"abc!def" * 5, "crash")
    supervisor._confirm(b"harmless", "crash")
    (kept,) = records(tmp_path / "crashes")
    assert kept.data == b"!" and kept.original_size == 35
    assert kept.signature == "KeyError@tests/fuzz/test_fuzz_cli.py:planted"
    assert supervisor.new == [kept.signature] and supervisor.unconfirmed == 1
    assert json.loads(supervisor.known_path.read_text()) == [kept.signature]


def test_a_workers_finding_is_kept(tmp_path: Path) -> None:
    target = registry.TARGETS["sal-structured"]
    options = campaign.Options(target.name, 1.0, workdir=tmp_path, crashes=tmp_path / "crashes")
    supervisor = campaign.Supervisor(options, target, sys.stderr)
    supervisor.prepare()
    reporter = Reporter(supervisor.folder / "status-0.json", supervisor.folder / "findings")
    reporter.finding("KeyError@somewhere", b"\x01\x02", "trace", 40)
    reporter.finding("KeyError@somewhere", b"\x01\x02\x03", "trace", 40)  # larger: not kept
    assert Status.read(supervisor.folder / "status-0.json").findings == 1
    supervisor._collect_findings()
    (kept,) = records(tmp_path / "crashes")
    assert (kept.target, kept.data) == ("sal-structured", b"\x01\x02")


def test_a_short_coverage_guided_run(tmp_path: Path) -> None:
    """A real worker (atheris) for two seconds: it executes, and the run is recorded."""
    pytest.importorskip("atheris")
    done = subprocess.run(
        [*RUN, "record", "--time", "2s", "--no-merge", "--quiet", "--workdir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    (run,) = json.loads((tmp_path / "stats" / "record.json").read_text())
    assert run["execs"] > 0 and run["coverage"] > 0 and not run["new_findings"]
    # The one job's CPU time: it ran (a busy fuzzer), and no more than the run's wall
    # time (one process, one core) with a margin for its start-up.
    assert 0.5 < run["cpu_seconds"] <= run["seconds"] + 5


def test_sigterm_stops_a_run_and_keeps_its_figures(tmp_path: Path) -> None:
    """``kill PID`` ends a campaign as Ctrl-C does, even one started with SIGINT ignored."""
    pytest.importorskip("atheris")
    command = [*RUN, "record", "--time", "10m", "--no-merge", "--quiet", "--workdir", str(tmp_path)]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own group, so that nothing it started can outlive the test
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # as a shell's `&` does
    )
    try:
        status = tmp_path / "record"
        for _ in range(600):
            if any(status.glob("**/status-0.json")) or process.poll() is not None:
                break
            time.sleep(0.1)
        time.sleep(1.0)
        process.terminate()
        _, errors = process.communicate(timeout=campaign.GRACE + 30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, errors
    (run,) = json.loads((tmp_path / "stats" / "record.json").read_text())
    assert run["execs"] > 0 and run["seconds"] < 300
