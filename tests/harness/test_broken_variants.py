"""The harness catches every deliberately broken variant of the reference, naming its requirement.

Each variant (``variants_*.py``) breaks one requirement; the harness runs the
cases that judge that requirement (or the variant's own selection) against
it and must FAIL with that requirement named.  The share caught is printed
and must be 100%.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest

from conformance.cases import all_cases
from conformance.model import Verdict
from conformance.runner import run

from .variants import Variant, running_node


def _variants() -> list[Variant]:
    found: list[Variant] = []
    folder = Path(__file__).parent
    for info in pkgutil.iter_modules([str(folder)]):
        if info.name.startswith("variants_"):
            module = importlib.import_module(f".{info.name}", __package__)
            found.extend(module.VARIANTS)
    return found


VARIANTS = _variants()
CAUGHT: dict[str, bool] = {}


def _cases(variant: Variant) -> list:  # type: ignore[type-arg]
    cases = all_cases()
    if variant.cases:
        return [
            c for c in cases if any(c.id == w or c.id.startswith(w + ".") for w in variant.cases)
        ]
    return [c for c in cases if variant.violates in c.requirements]


def test_there_are_at_least_20_variants() -> None:
    assert len(VARIANTS) >= 20
    assert len({v.name for v in VARIANTS}) == len(VARIANTS)


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_harness_fails_the_variant(variant: Variant, monkeypatch: pytest.MonkeyPatch) -> None:
    cases = _cases(variant)
    assert cases, f"no case judges {variant.violates}"
    if variant.patch is not None:
        variant.patch(monkeypatch)
    # An ERROR means the harness could not judge (a case's timing budget overrun on a
    # loaded machine), not that it judged wrongly: such a run is tried again, twice at most.
    for _ in range(3):
        with running_node(variant.config) as address:
            result = run(cases, address, seed=7, timeout=0.5)
        failed = {
            f.requirement for r in result.results for f in r.findings if f.verdict == Verdict.FAIL
        }
        if variant.violates in failed or all(r.verdict != Verdict.ERROR for r in result.results):
            break
    CAUGHT[variant.name] = variant.violates in failed
    assert variant.violates in failed, (
        f"{variant.name}: expected a FAIL of {variant.violates}, got "
        + "; ".join(f"{r.case.id} {r.verdict.value}" for r in result.results)
    )


def test_share_caught(capsys: pytest.CaptureFixture[str]) -> None:
    """Runs last in this module: print the share of variants the harness caught."""
    if len(CAUGHT) < len(VARIANTS):
        pytest.skip("run with the whole module to see the share")
    share = sum(CAUGHT.values()) / len(CAUGHT)
    with capsys.disabled():
        print(f"\nbroken variants caught: {sum(CAUGHT.values())}/{len(CAUGHT)} = {share:.0%}")
    assert share == 1.0
