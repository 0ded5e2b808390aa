"""The draft lint ("mini-idnits")."""

from __future__ import annotations

import pytest

from ref.draft import REQUIRED_SECTIONS, lint

SECTIONS = "\n\n".join(
    f"# {title}" if title == "Abstract" else f"# {k}. {title}"
    for k, title in enumerate(REQUIRED_SECTIONS)
)


def problems_in(body: str) -> list[str]:
    """Lint a draft that has every required section, then ``body``."""
    return lint(f"{SECTIONS}\n\n# 99. Body\n\n{body}\n")


def test_fixture_is_clean(minimal_draft: str) -> None:
    assert lint(minimal_draft) == []


def test_clean_skeleton() -> None:
    assert problems_in("Nothing normative.") == []


def test_missing_sections() -> None:
    problems = lint("# Abstract\n\n# 1. INTRODUCTION\n\n## 7.1. normative references\n")
    assert problems == [
        "missing section: Requirements Language",
        "missing section: Terminology",
        "missing section: Security Considerations",
        "missing section: IANA Considerations",
        "missing section: Implementation Status",
        "missing section: Informative References",
    ]


def test_keyword_without_tag() -> None:
    (problem,) = problems_in("[AB-CD-1] It MUST do x. Then it SHOULD do y.")
    assert problem.startswith("line 21: BCP 14 keyword without a requirement ID: Then it SHOULD")


def test_two_tags_in_one_sentence() -> None:
    (problem,) = problems_in("[AB-CD-1] It MUST do x [AB-CD-2].")
    assert problem == "line 21: one sentence, several requirement IDs (AB-CD-1, AB-CD-2)"


def test_duplicate_ids() -> None:
    (problem,) = problems_in("[AB-CD-1] It MUST do x.\n\nText.\n\n[AB-CD-1] It MAY do y.")
    assert problem == "line 25: duplicate requirement ID AB-CD-1 (first on line 21)"


def test_cross_references_must_resolve() -> None:
    assert problems_in("[AB-CD-1] It MUST do x.\n\nAs [AB-CD-1] says.") == []
    (problem,) = problems_in("As [AB-CD-9] says.")
    assert problem == "line 21: [AB-CD-9] refers to no requirement"


@pytest.mark.parametrize("phrase", ["MAY NOT", "MUST not", "SHOULD not"])
def test_mixed_case_negations(phrase: str) -> None:
    problems = problems_in(f"[AB-CD-1] A host {phrase} do x.")
    assert problems == [f"line 21: write BCP 14 negations in capitals, not {phrase!r}"]


def test_long_code_lines() -> None:
    body = "```text\n" + "x" * 72 + "\n" + "y" * 73 + "\n```"
    assert problems_in(body) == ["line 23: code line is 73 columns, more than 72"]


def test_unclosed_fence() -> None:
    assert problems_in("```text\nnever closed") == ["line 21: code fence is never closed"]


@pytest.mark.parametrize(
    "allowed",
    [
        "192.0.2.1",
        "198.51.100.0/24",
        "203.0.113.255",
        "127.0.0.1",
        "0.0.0.0",
        "2001:db8::1",
        "2001:DB8:0:0:1::/64",
        "::1",
        "::",
        "::ffff:192.0.2.7",
        "host.example.com",
        "a.b.example.net",
        "example.org",
        "node7.example",
        "svc.test",
        "broken.invalid",
        "rfc-serval-dht.md",
        "ref.wire.sal",
        "spec/requirements.json",
        "Section 4.2.1.3 of [RFC9000]",
        "[RFC4291], Sections 4.2.1.1, 4.2.1.2 and 10.2.3.4",
        "12:30:45",
        "https://datatracker.ietf.org/drafts/current/",
        "alice@cs.princeton.edu",
        "e.g. this",
    ],
)
def test_documentation_names_and_addresses_pass(allowed: str) -> None:
    assert problems_in(f"See {allowed} here.") == []


@pytest.mark.parametrize(
    ("used", "kind"),
    [
        ("10.0.0.1", "address"),
        ("192.0.3.1", "address"),
        ("8.8.8.8/32", "address"),
        ("2001:db9::1", "address"),
        ("fe80::1", "address"),
        ("::ffff:10.1.2.3", "address"),
        ("www.google.com", "domain"),
        ("princeton.edu", "domain"),
        ("example.co.uk", "domain"),
    ],
)
def test_real_names_and_addresses_flagged(used: str, kind: str) -> None:
    (problem,) = problems_in(f"See {used} here.")
    assert problem.startswith(f"line 21: {kind} {used} ")


def test_addresses_checked_in_code_too() -> None:
    (problem,) = problems_in("```text\nconnect 10.1.1.1\n```")
    assert problem.startswith("line 22: address 10.1.1.1 ")


@pytest.mark.parametrize("marker", ["TODO", "TBD"])
def test_todo_outside_code(marker: str) -> None:
    assert problems_in(f"Registry value {marker}.") == ["line 21: TODO/TBD left in the text"]
    assert problems_in(f"```text\n{marker}\n```") == []


def test_broken_bit_ruler_figure_reported() -> None:
    body = (
        "```{code-block} text\n:caption: Bad\n\n"
        " 0                   1                   2                   3\n"
        "+-+-+\n|  X |\n+-+-+\n```"
    )
    (problem,) = problems_in(body)
    assert problem.startswith("figure 'Bad', line 26: ")


def test_bad_test_vectors_reported() -> None:
    template = "```{{code-block}} yaml\n:caption: Test Vector: V\n\n{}\n```"
    assert problems_in(template.format("hex: 00ff")) == []
    assert problems_in(template.format("hex: 0011")) == [
        "test vector 'Test Vector: V', line 24: hex is not a string: quote it or use a | block"
    ]
    assert problems_in(template.format("hex: 0ff")) == [
        "test vector 'Test Vector: V', line 24: hex is not an even number of hex digits"
    ]
    assert problems_in(template.format("format: X")) == [
        "test vector 'Test Vector: V', line 24: no hex key"
    ]
    (problem,) = problems_in(template.format("[1, 2]"))
    assert problem == "test vector 'Test Vector: V', line 24: a test vector must be a mapping"


def test_section_references_must_exist(minimal_draft: str) -> None:
    assert lint(minimal_draft + "\nAs Section 9.9 says, and Appendix Q.\n") == [
        f"line {minimal_draft.count(chr(10)) + 2}: Section 9.9 does not exist",
        f"line {minimal_draft.count(chr(10)) + 2}: Section Q does not exist",
    ]


def test_citations_of_other_documents_are_not_section_references(minimal_draft: str) -> None:
    extra = "\nSee [RFC4291], Section 2.5.5.2, and Section 3 of [RFC9000].\n"
    assert lint(minimal_draft + extra) == []
