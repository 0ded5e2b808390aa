"""Sphinx configuration: the draft, its requirements index and the API.

The draft (``spec/rfc-serval-dht.md``) is rendered through MyST's ``include``
directive.  An ``include-read`` hook hands MyST the text from
``ref.draft.myst_source``: a title block from the front matter (MyST drops
front matter on include), headings one level down, and each requirement tag
as an anchor whose id is the requirement's (``#sal-ext-3``).  The
requirements index is generated from the same reader on ``builder-inited``.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ref.draft import DEFAULT_DRAFT, LEVELS, myst_source, requirements  # noqa: E402

project = "Serval suite"
author = "The Serval suite authors"
copyright = "2025, The Serval suite authors"
release = "0.1.0"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
myst_enable_extensions = ["attrs_inline", "attrs_block", "colon_fence", "deflist"]
myst_heading_anchors = 3
highlight_language = "none"
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
autodoc_member_order = "bysource"

html_theme = "furo"
html_title = "Serval suite"
html_static_path = ["_static"]
html_css_files = ["serval.css"]

GENERATED = Path(__file__).resolve().parent / "_generated"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def requirements_page(text: str) -> str:
    """The requirements index: counts per level and one table row per ID."""
    found = requirements(text)
    counts = Counter(r.level for r in found)
    lines = [
        "# Requirements index",
        "",
        "Every tagged BCP 14 sentence of the [draft](../draft.md), generated from",
        "`ref.draft.requirements()` at build time (the same data as",
        "`spec/requirements.json`).",
        "",
        "| Level | Count |",
        "| ----- | ----: |",
        *(f"| {level} | {counts[level]} |" for level in LEVELS),
        f"| Total | {len(found)} |",
        "",
        "| ID | Level | Section | Requirement |",
        "| -- | ----- | ------- | ----------- |",
    ]
    for req in found:
        section = f"{req.section}. {req.section_title}" if req.section else req.section_title
        link = f'<a href="../draft.html#{req.anchor}">{req.id}</a>'
        lines.append(f"| {link} | {req.level} | {_cell(section)} | {_cell(req.text)} |")
    return "\n".join(lines) + "\n"


def write_generated(app: Any) -> None:
    """Write the generated pages, touching them only when their text changes."""
    GENERATED.mkdir(exist_ok=True)
    page = GENERATED / "requirements.md"
    if DEFAULT_DRAFT.exists():
        text = requirements_page(DEFAULT_DRAFT.read_text(encoding="utf-8"))
    else:  # the draft page reports the missing file as an error
        text = f"# Requirements index\n\nThe draft {DEFAULT_DRAFT} does not exist.\n"
    if not page.exists() or page.read_text(encoding="utf-8") != text:
        page.write_text(text, encoding="utf-8")


def render_draft(app: Any, relative_path: Path, parent_docname: str, content: list[str]) -> None:
    """``include-read``: turn the draft (and only the draft) into MyST."""
    if (Path(app.srcdir) / relative_path).resolve() == DEFAULT_DRAFT:
        content[0] = myst_source(content[0])


def setup(app: Any) -> dict[str, Any]:
    app.connect("builder-inited", write_generated)
    app.connect("include-read", render_draft)
    return {"parallel_read_safe": True}
