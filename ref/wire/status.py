"""The counters of a STATUS report (draft Appendix C.2), nested on the wire, flat in code.

A report carries its drop and error counters as ``{"drop": {NAME: n},
"error_sent": {NAME: n}}``: the nesting keeps the object small enough to
survive the report's 1,024-byte limit in a long run.  Code on either side
speaks of one counter as ``"drop.NAME"``; these two functions convert.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["flat_counters", "nested_counters"]


def nested_counters(counters: Iterable[tuple[str, int]]) -> dict[str, dict[str, int]]:
    """``("drop.MALFORMED", 3)`` pairs as the report's nested object, names sorted."""
    nested: dict[str, dict[str, int]] = {}
    for name, count in sorted(counters):
        kind, _, code = name.partition(".")
        nested.setdefault(kind, {})[code] = count
    return nested


def flat_counters(value: Any) -> dict[str, int] | None:
    """A report's ``counters`` member as ``{"drop.NAME": n}``; None if it is not an object.

    Members that are not counters are left out; a flat member (``"drop.NAME": n``)
    is taken as it is, so a reader accepts what older reports sent.
    """
    if not isinstance(value, Mapping):
        return None
    flat: dict[str, int] = {}
    for kind, entries in value.items():
        if isinstance(entries, Mapping):
            for code, count in entries.items():
                if isinstance(count, int) and not isinstance(count, bool):
                    flat[f"{kind}.{code}"] = count
        elif isinstance(entries, int) and not isinstance(entries, bool):
            flat[str(kind)] = entries
    return flat
