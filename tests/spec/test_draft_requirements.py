"""Requirements, sections and front matter read from the fixture draft."""

from __future__ import annotations

import json
from textwrap import dedent

from ref.draft import Requirement, export_json, front_matter, requirements, sections


def test_requirements_of_fixture_in_document_order(minimal_draft: str) -> None:
    found = requirements(minimal_draft)
    assert [(r.id, r.level, r.section) for r in found] == [
        ("TST-HDR-1", "MUST", "4.1"),
        ("TST-HDR-2", "MUST", "4.1"),
        ("TST-OPT-1", "MAY", "4.2"),
        ("TST-OPT-2", "SHOULD", "4.2"),
        ("TST-OPT-3", "MUST", "4.2"),
        ("TST-SEC-1", "MUST", "6"),
    ]
    assert found[0] == Requirement(
        id="TST-HDR-1",
        level="MUST",
        section="4.1",
        section_title="Base Header",
        text="A sender MUST set the version field to 1.",
        anchor="tst-hdr-1",
    )


def test_text_spans_lines_and_drops_tag(minimal_draft: str) -> None:
    by_id = {r.id: r for r in requirements(minimal_draft)}
    assert by_id["TST-HDR-2"].text == (
        "A receiver SHOULD NOT accept a header whose version it does not know, "
        "and it MUST NOT crash."
    )
    # a list item: the marker is not part of the sentence
    assert (
        by_id["TST-OPT-1"].text
        == "A sender MAY include options; this is OPTIONAL, see Section 4.1."
    )
    # a table cell is a unit of its own
    assert by_id["TST-OPT-3"].text == "A receiver MUST skip it."


def test_levels_take_the_strongest_keyword() -> None:
    text = dedent(
        """\
        # 1. Levels

        [AB-CD-1] It SHOULD do x and MAY do y. [AB-CD-2] It MAY do x but MUST NOT do y.
        [AB-CD-3] It is NOT RECOMMENDED. [AB-CD-4] It is REQUIRED. [AB-CD-5] It is OPTIONAL.
        [AB-CD-6] It SHALL NOT. [AB-CD-7] It SHOULD NOT.
        """
    )
    assert [(r.id, r.level) for r in requirements(text)] == [
        ("AB-CD-1", "SHOULD"),
        ("AB-CD-2", "MUST"),
        ("AB-CD-3", "SHOULD"),
        ("AB-CD-4", "MUST"),
        ("AB-CD-5", "MAY"),
        ("AB-CD-6", "MUST"),
        ("AB-CD-7", "SHOULD"),
    ]


def test_keywords_must_be_capitals_and_whole_words() -> None:
    text = "# 1. X\n\nA host must not do this, MAYBE ever, nor set MUST_ACK.\n"
    assert requirements(text) == []


def test_excluded_places_yield_no_requirements() -> None:
    text = dedent(
        """\
        # 1. Requirements Language

        [RL-X-1] The key word "MUST" is interpreted as described in BCP 14.

        ## 1.1. Still boilerplate

        [RL-X-2] Subsections belong to it: MUST.

        # 2. MUST in a Heading

        ```text
        [CODE-X-1] A MUST in code.
        ```

        <!-- [COMMENT-X-1] A MUST in a comment. -->

        Use `[SPAN-X-1] MUST` in a code span.
        """
    )
    assert requirements(text) == []


def test_abbreviations_do_not_end_sentences() -> None:
    text = "# 1. X\n\n[AB-CD-1] A host MUST send e.g. a PING, i.e. Type 1. Then it stops.\n"
    (req,) = requirements(text)
    assert req.text == "A host MUST send e.g. a PING, i.e. Type 1."


def test_sentence_with_two_tags_or_none_is_left_out() -> None:
    text = "# 1. X\n\n[AB-CD-1] [AB-CD-2] It MUST. It SHOULD. [AB-CD-3] It MAY.\n"
    assert [r.id for r in requirements(text)] == ["AB-CD-3"]


def test_tag_syntax() -> None:
    text = dedent(
        """\
        # 1. X

        [SAL-EXT-3] ok MUST. [DHT-RR2-STORE-10] ok MUST. [A-1] bad MUST.
        [sal-ext-1] bad MUST. [S-EXT-1] bad MUST. [SAL-3EXT-1] bad MUST.
        """
    )
    assert [r.id for r in requirements(text)] == ["SAL-EXT-3", "DHT-RR2-STORE-10"]


def test_requirement_without_heading_has_empty_section() -> None:
    (req,) = requirements("[AB-CD-1] It MUST.\n")
    assert (req.section, req.section_title) == ("", "")


def test_sections_numbers_and_titles(minimal_draft: str) -> None:
    found = sections(minimal_draft)
    assert found[:3] == [("", "Abstract"), ("1", "Introduction"), ("2", "Requirements Language")]
    assert ("4.2", "Options") in found
    assert ("A", "Test Vectors") in found
    assert ("A.1", "Base Header") in found
    assert found[-1] == ("", "Authors' Addresses")


def test_sections_strip_kramdown_attributes_and_ignore_code() -> None:
    text = "# 3. Wire Format {#wire}\n\n```\n# 9. Not a heading\n```\n## 3.1 No dot\n"
    assert sections(text) == [("3", "Wire Format"), ("", "3.1 No dot")]


def test_front_matter(minimal_draft: str) -> None:
    meta = front_matter(minimal_draft)
    assert meta["docname"] == "draft-test-minimal-00"
    assert meta["category"] == "exp"
    assert [a["name"] for a in meta["author"]] == ["Alice Example", "Bob Example"]
    assert meta["normative"] == {"RFC2119": None, "RFC8174": None}
    assert meta["informative"]["SERVAL"]["target"].startswith("https://")
    assert front_matter("# 1. No front matter\n") == {}


def test_front_matter_must_be_mapping() -> None:
    import pytest

    with pytest.raises(ValueError, match="mapping"):
        front_matter("---\n- a\n- b\n---\n")


def test_front_matter_is_not_prose() -> None:
    assert requirements("---\ntitle: It MUST\n---\n# 1. X\n") == []


def test_export_json_is_stable(minimal_draft: str) -> None:
    exported = export_json(minimal_draft)
    assert exported == export_json(minimal_draft)
    assert exported.endswith("\n")
    data = json.loads(exported)
    assert list(data[0]) == ["id", "level", "section", "section_title", "text", "anchor"]
    assert [item["id"] for item in data] == [r.id for r in requirements(minimal_draft)]
    assert exported.startswith('[\n {\n  "id": "TST-HDR-1"')
