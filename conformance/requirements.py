"""The draft's requirement list, as the harness reads it.

``requirements.json`` is a copy of ``spec/requirements.json`` shipped inside
the package, so that an installed ``serval-conform`` knows every requirement
without the source tree (a test keeps the two equal).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from importlib import resources


@dataclasses.dataclass(frozen=True)
class Requirement:
    id: str
    level: str  # MUST, SHOULD or MAY (MUST NOT and SHALL count as MUST)
    section: str
    title: str
    text: str
    anchor: str


@functools.cache
def requirements() -> dict[str, Requirement]:
    """Every requirement of the draft, by ID, in the draft's order."""
    raw = json.loads(
        resources.files("conformance").joinpath("requirements.json").read_text("utf-8")
    )
    return {
        entry["id"]: Requirement(
            id=entry["id"],
            level=entry["level"],
            section=entry["section"],
            title=entry["section_title"],
            text=entry["text"],
            anchor=entry["anchor"],
        )
        for entry in raw
    }


def level(requirement: str) -> str:
    return requirements()[requirement].level
