"""Draw a declared format as an RFC bit-ruler diagram (draft figures).

The draft's figures were drawn with this and are checked against the
declarations by ``tests/wire/test_draft_agreement.py``; an edited figure that
no longer matches its declaration fails that test.
"""

from __future__ import annotations

import construct as cs

from ref.wire._codec import Field, layout

RULER = (
    " 0                   1                   2                   3",
    " 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1",
)
_ROW_BITS = 32
_WIDTH = 2 * _ROW_BITS + 1

_LABELS = {"verno": "verno", "ackno": "ackno"}


def label(name: str) -> str:
    """The label a field's name gets in a figure ("service_id" -> "Service ID")."""
    if name in _LABELS:
        return _LABELS[name]
    return " ".join("ID" if word == "id" else word.capitalize() for word in name.split("_"))


def _border(bits: int) -> str:
    return "+" + "-+" * bits


def _cell_row(cells: list[tuple[str, int]]) -> str:
    line = "|"
    for text, bits in cells:
        inner = 2 * bits - 1
        if len(text) > inner:
            raise ValueError(f"label {text!r} does not fit in {bits} bits")
        line += text.center(inner) + "|"
    return line


def _block(text: str, rows: int, edge: str = "|") -> list[str]:
    """A field of ``rows`` full rows, RFC style: ``|`` rows joined by ``+`` lines."""
    inner = _WIDTH - 2
    lines: list[str] = []
    for row in range(rows):
        lines.append(edge + " " * inner + edge)
        if row < rows - 1:
            lines.append("+" + " " * inner + "+")
    middle = len(lines) // 2
    fill_edge = lines[middle][0]
    lines[middle] = fill_edge + text.center(inner) + fill_edge
    return lines


def render(fmt: cs.Struct) -> str:
    """The bit-ruler figure of a format's top-level fields."""
    return "\n".join(render_fields(layout(fmt)))


def render_fields(fields: list[Field]) -> list[str]:
    lines = [*RULER, _border(_ROW_BITS)]
    row: list[tuple[str, int]] = []
    used = 0
    for field in fields:
        text = label(field.name)
        if field.bits is None:
            if row:
                raise ValueError(f"variable field {field.name} does not start a row")
            lines += ["|" + " " * (_WIDTH - 2) + "|", "/" + text.center(_WIDTH - 2) + "/"]
            lines += ["|" + " " * (_WIDTH - 2) + "|", _border(_ROW_BITS)]
            continue
        if field.bits >= _ROW_BITS:
            if row or field.bits % _ROW_BITS:
                raise ValueError(f"field {field.name} is not aligned to a row")
            lines += _block(text, field.bits // _ROW_BITS)
            lines.append(_border(_ROW_BITS))
            continue
        row.append((text, field.bits))
        used += field.bits
        if used > _ROW_BITS:
            raise ValueError(f"field {field.name} crosses a row boundary")
        if used == _ROW_BITS:
            lines += [_cell_row(row), _border(_ROW_BITS)]
            row, used = [], 0
    if row:
        lines += [_cell_row(row), _border(used)]
    return lines
