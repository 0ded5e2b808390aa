"""Figures, bit-ruler diagrams and test vectors."""

from __future__ import annotations

import re
from textwrap import dedent

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ref.draft import (
    FieldSpec,
    Figure,
    figures,
    normalise_field_name,
    parse_bit_ruler,
    vectors,
)

RULER = (
    " 0                   1                   2                   3",
    " 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1",
)
FULL = "+" + "-+" * 32


def figure(*lines: str, caption: str = "Test", line_number: int = 10) -> Figure:
    return Figure(caption, (*RULER, *lines), line_number)


def test_figures_of_fixture(minimal_draft: str) -> None:
    (fig,) = figures(minimal_draft)
    assert fig.caption == "Test Base Header"
    assert fig.lines[:2] == RULER
    assert fig.lines[-1] == "+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+"
    # line_number is where lines[0] is in the draft
    assert minimal_draft.splitlines()[fig.line_number - 1] == fig.lines[0]


def test_fixture_diagram_fields(minimal_draft: str) -> None:
    (fig,) = figures(minimal_draft)
    assert parse_bit_ruler(fig) == [
        FieldSpec("source_flow_id", 32),
        FieldSpec("hdr_len_shl", 8),
        FieldSpec("protocol", 8),
        FieldSpec("checksum", 16),
        FieldSpec("service_id", 128),
        FieldSpec("endpoints", None),
        FieldSpec("type", 7),
        FieldSpec("v", 1),
        FieldSpec("length", 8),
    ]


def test_figures_need_text_language_and_caption() -> None:
    text = dedent(
        """\
        ```{code-block} text
        :caption: Kept

        body
        ```

        ```{code-block} text

        no caption
        ```

        ```{code-block} python
        :caption: Not text
        ```

        ```text
        plain fence
        ```
        """
    )
    assert [(f.caption, f.lines, f.line_number) for f in figures(text)] == [("Kept", ("body",), 4)]


def test_partial_last_row() -> None:
    fig = figure(FULL, "|           Checksum            |", "+" + "-+" * 16)
    assert parse_bit_ruler(fig) == [FieldSpec("checksum", 16)]


def test_multi_row_field_with_continuation_lines() -> None:
    fig = figure(
        FULL,
        "|                                                               |",
        "+                        Destination                            +",
        "|                         Address                               |",
        FULL,
    )
    assert parse_bit_ruler(fig) == [FieldSpec("destination_address", 64)]


def test_variable_field_with_slash_edges() -> None:
    fig = figure(
        FULL,
        "/                                                               /",
        "/                          Extensions                           /",
        "/                                                               /",
        FULL,
    )
    assert parse_bit_ruler(fig) == [FieldSpec("extensions", None)]


def test_indented_figure() -> None:
    fig = Figure(
        "Indented",
        tuple("   " + line for line in (*RULER, FULL, "|" + "Word".center(63) + "|", FULL)),
        1,
    )
    assert parse_bit_ruler(fig) == [FieldSpec("word", 32)]


@pytest.mark.parametrize(
    ("lines", "problem", "line"),
    [
        ((FULL, "|  Odd |" + " " * 56 + "|", FULL), "odd number of columns", 13),
        ((FULL, "|" + " " * 63 + "|", FULL), "field without a name", 13),
        ((FULL, "|  A  |     |" + " " * 51 + "|", FULL), "has no name", 13),
        ((FULL, "|" + "X".center(63) + "|"), "must end with a +-+ border", 13),
        (("|" + "X".center(63) + "|", FULL), "must start with a +-+ border", 12),
        ((FULL, "|" + "X".center(61) + "|", FULL), "columns wide", 13),
        ((FULL, "|" + "X".center(63) + "*", FULL), "start and end with", 13),
        ((FULL + "-+", "|" + "X".center(65) + "|", FULL + "-+"), "more than 32", 12),
        (
            (FULL, "|   A   |" + "B".center(55) + "|", "|" + " " * 63 + "|", FULL),
            "one line high",
            13,
        ),
        ((FULL, "+" + "X".center(63) + "+", FULL), "at least one line starting with |", 13),
        (("  " + FULL, "x |" + "X".center(63) + "|"), "left of the drawing", 13),
        ((), "no drawing", 10),
    ],
)
def test_malformed_diagrams_name_caption_and_line(
    lines: tuple[str, ...], problem: str, line: int
) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)) as raised:
        parse_bit_ruler(figure(*lines, caption="Broken Header"))
    assert str(raised.value).startswith(f"figure 'Broken Header', line {line}: ")


def test_field_name_normalisation() -> None:
    assert normalise_field_name("Source Flow ID") == "source_flow_id"
    assert normalise_field_name("  Hdr Len (SHL) ") == "hdr_len_shl"
    assert normalise_field_name("R/S--Flags") == "r_s_flags"


def draw(widths: list[int]) -> tuple[str, ...]:
    """Draw fields of the given widths (each 1..32 bits) into 32-bit rows."""
    lines = [FULL]
    row = "|"
    used = 0
    for number, bits in enumerate(widths):
        if used + bits > 32:
            raise ValueError("crosses a row")
        row += f"F{number}".center(2 * bits - 1) + "|"
        used += bits
        if used == 32:
            lines += [row, FULL]
            row, used = "|", 0
    if used:
        lines += [row, "+" + "-+" * used]
    return tuple(lines)


@st.composite
def row_widths(draw_: st.DrawFn) -> list[int]:
    widths: list[int] = []
    for _ in range(draw_(st.integers(1, 4))):
        used = 0
        while used < 32:
            bits = draw_(st.integers(3, 32 - used)) if 32 - used >= 3 else 32 - used
            if 32 - used - bits in (1, 2):
                bits = 32 - used
            widths.append(bits)
            used += bits
    if draw_(st.booleans()):
        widths.append(draw_(st.integers(3, 31)))
    return widths


@given(row_widths())
def test_drawn_diagrams_parse_back(widths: list[int]) -> None:
    fields = parse_bit_ruler(figure(*draw(widths)))
    assert fields == [FieldSpec(f"f{k}", bits) for k, bits in enumerate(widths)]


def test_vectors_of_fixture(minimal_draft: str) -> None:
    (vector,) = vectors(minimal_draft)
    assert vector.caption == "Test Vector: Test Base Header"
    assert vector.data["format"] == "Test Base Header"
    assert vector.data["fields"] == {"source_flow_id": 1}
    assert vector.octets == bytes.fromhex("00000001 0306beef")
    assert minimal_draft.splitlines()[vector.line_number - 1] == "format: Test Base Header"


def test_vectors_ignore_other_yaml_blocks() -> None:
    text = "```{code-block} yaml\n:caption: Configuration\n\na: 1\n```\n"
    assert vectors(text) == []


@pytest.mark.parametrize("body", ["- a list", "key: [unclosed"])
def test_bad_vector_raises(body: str) -> None:
    text = f"\n```{{code-block}} yaml\n:caption: Test Vector: Bad\n\n{body}\n```\n"
    with pytest.raises(ValueError, match=r"^'Test Vector: Bad', line 5: "):
        vectors(text)
