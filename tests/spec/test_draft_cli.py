"""The ``serval-requirements`` command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ref.draft import export_json, main

FIXTURE = Path(__file__).parent / "fixtures" / "minimal-draft.md"


def test_default_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--draft", str(FIXTURE)]) == 0
    out = capsys.readouterr().out
    assert out == export_json(FIXTURE.read_text(encoding="utf-8"))
    assert json.loads(out)[0]["id"] == "TST-HDR-1"


def test_json_flag_is_the_default(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--draft", str(FIXTURE)])
    default = capsys.readouterr().out
    main(["--draft", str(FIXTURE), "--json"])
    assert capsys.readouterr().out == default


def test_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--draft", str(FIXTURE), "--summary"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "Section                       MUST SHOULD    MAY",
        "4.1. Base Header                 2      0      0",
        "4.2. Options                     1      1      1",
        "6. Security Considerations       1      0      0",
        "Total                            4      1      1",
    ]


def test_output_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "requirements.json"
    assert main(["--draft", str(FIXTURE), "-o", str(target)]) == 0
    assert capsys.readouterr().out == ""
    assert target.read_text(encoding="utf-8") == export_json(FIXTURE.read_text(encoding="utf-8"))


def test_missing_draft_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.md"
    assert main(["--draft", str(missing)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert str(missing) in captured.err
    assert captured.err.startswith("serval-requirements: cannot read draft ")


@pytest.mark.parametrize("argv", [["--bogus"], ["--json", "--summary"], ["--draft"]])
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 2
    assert "serval-requirements: error:" in capsys.readouterr().err
