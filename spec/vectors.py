"""Render the test vectors of the draft's Appendix A from ``ref.wire.vectors``.

Usage: ``python spec/vectors.py``.  Its output is the appendix from "## A.1."
up to "# Appendix B." (``tests/wire/test_draft_agreement.py`` checks that).
Each vector is a YAML code block: the format, the section it illustrates, the
fields (as ``ref.wire.plain`` values), the length and the hex encoding.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ref.wire.plain import to_plain
from ref.wire.vectors import build_vectors

HEX_GROUP = 8
HEX_LINE = 32


def group_hex(text: str) -> str:
    """Long hex strings in groups of 8 digits, so YAML can fold them."""
    return " ".join(text[i : i + HEX_GROUP] for i in range(0, len(text), HEX_GROUP))


def _grouped(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _grouped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_grouped(v) for v in value]
    if isinstance(value, str) and len(value) > HEX_GROUP and _is_hex(value):
        return group_hex(value)
    return value


def _is_hex(text: str) -> bool:
    return len(text) % 2 == 0 and all(c in "0123456789abcdef" for c in text)


def hex_block(data: bytes) -> str:
    text = data.hex()
    lines = [group_hex(text[i : i + HEX_LINE]) for i in range(0, len(text), HEX_LINE)]
    return "\n".join(lines) + "\n"


class _Dumper(yaml.SafeDumper):
    pass


def _literal(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _literal)


def render() -> str:
    out = []
    for index, vector in enumerate(build_vectors(), start=1):
        body = {
            "format": vector.format,
            "section": vector.section,
            "fields": _grouped(to_plain(vector.value)),
            "length": len(vector.encoded),
            "hex": hex_block(vector.encoded),
        }
        text = yaml.dump(body, Dumper=_Dumper, sort_keys=False, width=60, indent=2)
        out.append(f"## A.{index}. {vector.title}\n")
        out.append("```{code-block} yaml")
        out.append(f":caption: \"Test Vector: {vector.title}\"\n")
        out.append(text.rstrip("\n"))
        out.append("```\n")
    return "\n".join(out)


if __name__ == "__main__":
    print(render())
