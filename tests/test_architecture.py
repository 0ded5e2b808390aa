"""The import rules of DESIGN.md, checked on the source (AST, no imports run).

- ref.wire imports only the standard library, construct and cryptography.
- ref.sal never imports ref.chord; conformance never imports ref.sal/ref.chord.
- Protocol cores (everything in ref/ but the thin ``aio`` adapters and the
  command-line entry points) never import socket, asyncio, time or random:
  time and randomness are injected.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STDLIB = set(sys.stdlib_module_names)
IO_MODULES = {"socket", "asyncio", "time", "random", "selectors", "threading"}
ADAPTER_NAMES = {"aio.py", "cli.py", "__main__.py", "sockets.py"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package.replace(".", "/")).rglob("*.py"))


@pytest.mark.parametrize("path", sources("ref.wire"), ids=lambda p: p.name)
def test_wire_imports_only_stdlib_construct_cryptography(path: Path) -> None:
    for module in imported_modules(path):
        top = module.split(".")[0]
        allowed = top in STDLIB or top in {"construct", "cryptography"}
        allowed = allowed or module == "ref.wire" or module.startswith("ref.wire.")
        assert allowed, f"{path.name} imports {module}"


@pytest.mark.parametrize("path", sources("ref.sal"), ids=lambda p: p.name)
def test_sal_never_imports_chord(path: Path) -> None:
    assert not any(m.startswith("ref.chord") for m in imported_modules(path))


@pytest.mark.parametrize("path", sources("conformance"), ids=lambda p: p.name)
def test_conformance_judges_by_the_draft_not_the_reference(path: Path) -> None:
    forbidden = ("ref.sal", "ref.chord")
    assert not any(m.startswith(forbidden) for m in imported_modules(path))


@pytest.mark.parametrize(
    "path",
    [p for p in sources("ref") if p.name not in ADAPTER_NAMES],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_protocol_cores_do_no_io(path: Path) -> None:
    used = {m.split(".")[0] for m in imported_modules(path)} & IO_MODULES
    assert not used, f"{path.relative_to(ROOT)} imports {sorted(used)}: inject them instead"


def test_the_rules_see_imports() -> None:
    """Guard against a vacuous pass: the scanner finds real imports."""
    assert "construct" in imported_modules(ROOT / "ref/wire/sal.py")
