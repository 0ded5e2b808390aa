"""The harness itself: verdicts, levels, liveness, reports and the command line."""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance import cli
from conformance.cases import all_cases, unobservable
from conformance.context import Context
from conformance.model import Case, HarnessError, Unsupported, Verdict, worst
from conformance.requirements import requirements
from conformance.runner import run
from ref.wire import DhtMessage, Endpoint, Ping, Pong, decode_dht, decode_sal, encode_dht

from .variants import running_node

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_requirement_list_is_the_drafts() -> None:
    shipped = ROOT / "conformance" / "requirements.json"
    assert shipped.read_bytes() == (ROOT / "spec" / "requirements.json").read_bytes(), (
        "copy spec/requirements.json to conformance/requirements.json"
    )


def test_every_case_names_known_requirements_and_a_section() -> None:
    cases = all_cases()
    assert len({c.id for c in cases}) == len(cases)
    known = requirements()
    for case in cases:
        assert case.requirements and all(r in known for r in case.requirements), case.id
        assert case.section and case.title
    for requirement, reason in unobservable().items():
        assert known[requirement].level == "MUST" and reason.strip(), requirement


def test_a_verdict_only_gets_worse() -> None:
    assert worst([Verdict.PASS, Verdict.FAIL, Verdict.PASS]) == Verdict.FAIL
    assert worst([Verdict.WARN, Verdict.PASS]) == Verdict.WARN
    assert worst([]) == Verdict.PASS
    assert Verdict.FAIL.worst(Verdict.ERROR) == Verdict.FAIL


# --- a fake target whose liveness the test controls -----------------------------------------


class FakeTarget:
    """Answers PING with PONG until told to fall silent."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.address: tuple[str, int] = self.sock.getsockname()
        self.silent = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                data, source = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            if self.silent.is_set():
                continue
            message = decode_dht(decode_sal(data).payload)
            if isinstance(message.body, Ping):
                observed = Endpoint(ipaddress.ip_address(source[0]), source[1])
                pong = DhtMessage(body=Pong(observed), transaction_id=message.transaction_id)
                from conformance.peer import dht_datagram

                self.sock.sendto(dht_datagram(encode_dht(pong)), source)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close()


@pytest.fixture
def fake() -> Iterator[FakeTarget]:
    target = FakeTarget()
    yield target
    target.close()


def _case(group: str, name: str, body: object, requirement: str = "DHT-HDR-9") -> Case:
    return Case(
        id=f"{group}.{name}",
        title=name,
        section="6.3",
        requirements=(requirement,),
        group=group,
        run=body,  # type: ignore[arg-type]
    )


def test_a_target_that_dies_is_blamed_on_the_group_that_killed_it(fake: FakeTarget) -> None:
    def kill(ctx: Context) -> None:
        ctx.require("DHT-HDR-9", True, "judged")
        fake.silent.set()

    def later(ctx: Context) -> None:
        ctx.require("DHT-HDR-9", True, "judged")

    cases = [_case("g1", "kill", kill), _case("g2", "later", later)]
    result = run(cases, fake.address, seed=1, timeout=0.2)
    assert result.crashed_in == ["g1"]
    assert [r.verdict for r in result.results] == [Verdict.PASS, Verdict.ERROR]
    assert result.verdict == Verdict.FAIL and result.exit_code() == 1


def test_levels_decide_verdicts_and_strict_makes_warnings_failures(fake: FakeTarget) -> None:
    def should_broken(ctx: Context) -> None:
        ctx.require("DHT-TOKEN-3", False, "a SHOULD not followed")

    def may_not_done(ctx: Context) -> None:
        ctx.require("DHT-RATE-3", False, "a MAY not taken")

    def must_broken(ctx: Context) -> None:
        ctx.require("DHT-HDR-9", False, "a MUST violated")

    cases = [
        _case("g", "should", should_broken, "DHT-TOKEN-3"),
        _case("g", "may", may_not_done, "DHT-RATE-3"),
        _case("g", "must", must_broken),
    ]
    relaxed = run(cases, fake.address, seed=1, timeout=0.2)
    assert [r.verdict for r in relaxed.results] == [Verdict.WARN, Verdict.PASS, Verdict.FAIL]
    strict = run(cases[:2], fake.address, seed=1, timeout=0.2, strict=True)
    assert [r.verdict for r in strict.results] == [Verdict.FAIL, Verdict.PASS]


def test_skips_errors_and_cases_that_judge_nothing(fake: FakeTarget) -> None:
    def unsupported(ctx: Context) -> None:
        raise Unsupported("no such feature")

    def cannot_judge(ctx: Context) -> None:
        raise HarnessError("no answer")

    def judges_nothing(ctx: Context) -> None:
        pass

    def crashes(ctx: Context) -> None:
        raise ZeroDivisionError

    cases = [
        _case("g", "a", unsupported),
        _case("g", "b", cannot_judge),
        _case("g", "c", judges_nothing),
        _case("g", "d", crashes),
    ]
    result = run(cases, fake.address, seed=1, timeout=0.2)
    assert [r.verdict for r in result.results] == [
        Verdict.SKIP,
        Verdict.ERROR,
        Verdict.ERROR,
        Verdict.ERROR,
    ]
    assert "ZeroDivisionError" in result.results[3].findings[-1].detail
    assert result.exit_code() == 0  # nothing FAILed: the harness errors are reported, not failed


# --- the command line -------------------------------------------------------------------------


def test_list_prints_cases_and_coverage(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--list", "--suite", "dht"]) == 0
    out = capsys.readouterr().out
    assert "dht.header.version-2-request" in out and "MUSTs judged by a case" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["--target", "localhost:1"],
        ["--target", "127.0.0.1:0"],
        ["--case", "no.such.case"],
        ["--requirement", "NOPE-1"],
        ["--timeout", "0"],
        ["--suite", "tcp"],
    ],
)
def test_bad_arguments_get_one_line_and_status_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "serval-conform: error:" in err


def test_an_unreachable_target_is_a_harness_error(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        status = cli.main(["--target", f"127.0.0.1:{port}", "--timeout", "0.1", "--seed", "1"])
    assert status == 2
    assert "no PONG" in capsys.readouterr().out


def test_a_run_writes_json_junit_and_html(tmp_path: Path) -> None:
    with running_node() as (host, port):
        status = cli.main(
            [
                "--target",
                f"{host}:{port}",
                "--case",
                "dht.header",
                "--seed",
                "5",
                "--json",
                str(tmp_path / "r.json"),
                "--junit",
                str(tmp_path / "r.xml"),
                "--html",
                str(tmp_path / "r.html"),
            ]
        )
    assert status == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["seed"] == 5 and report["verdict"] == "PASS"
    assert {c["verdict"] for c in report["cases"]} == {"PASS"}
    assert all(c["exchanges"] for c in report["cases"])
    rows = {row["requirement"]: row for row in report["coverage"]}
    assert rows["DHT-HDR-2"]["verdict"] == "PASS" and rows["DHT-HDR-2"]["cases"]
    suites = ET.parse(tmp_path / "r.xml").getroot()
    names = {case.get("name") for case in suites.iter("testcase")}
    assert "dht.header.version-2-request" in names
    assert all(case.find("failure") is None for case in suites.iter("testcase"))
    page = (tmp_path / "r.html").read_text()
    assert "Coverage matrix" in page and "DHT-HDR-2" in page
