"""The MyST text that the documentation renders from the draft."""

from __future__ import annotations

from ref.draft import BCP14_BOILERPLATE, myst_source


def test_title_block_replaces_front_matter(minimal_draft: str) -> None:
    lines = myst_source(minimal_draft).splitlines()
    assert lines[0] == "# A Minimal Draft for Testing the Readers"
    assert "---" not in lines[:5]
    text = "\n".join(lines)
    assert "Internet-Draft\n: `draft-test-minimal-00`" in text
    assert "Category\n: Experimental" in text
    assert "Authors\n: Alice Example (Example University), Bob Example" in text
    assert "Date\n: 2025-01-15" in text


def test_headings_move_down_one_level(minimal_draft: str) -> None:
    lines = myst_source(minimal_draft).splitlines()
    assert "## 1. Introduction" in lines
    assert "### 4.1. Base Header" in lines
    assert "## Appendix A. Test Vectors" in lines
    assert [line for line in lines if line.startswith("# ")] == [lines[0]]


def test_requirement_tags_become_anchors_and_links(minimal_draft: str) -> None:
    text = myst_source(minimal_draft)
    assert "[\\[TST-HDR-1\\]]{#tst-hdr-1 .req} A sender MUST" in text
    assert text.count("{#tst-hdr-2 .req}") == 1
    # the later mention links back to the definition
    assert 'follows <a class="reqref" href="#tst-hdr-2">[TST-HDR-2]</a>.' in text
    # code blocks and code spans are untouched
    assert "A state diagram with MUST in it is code" in text


def test_kramdown_syntax_is_translated() -> None:
    text = (
        "# 1. Intro {#intro}\n\n{::boilerplate bcp14-tagged}\n\n--- back\n\n"
        '{:numbered="false"}\nSee {{!RFC2119}} and {{?SERVAL}}, not `{{X}}`.\n'
    )
    assert myst_source(text).splitlines() == [
        "(intro)=",
        "",
        "## 1. Intro",
        "",
        BCP14_BOILERPLATE,
        "",
        "",
        "",
        "",
        "See [RFC2119] and [SERVAL], not `{{X}}`.",
    ]
