"""The real draft: lint-clean, and its export matches spec/requirements.json.

Requirement IDs are never reused: every ID that was ever exported either still
exists or is listed in spec/retired-requirements.txt, and no retired ID comes
back.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter

from ref.draft import DEFAULT_DRAFT, export_json, lint, requirements

SPEC = DEFAULT_DRAFT.parent
EXPORT = SPEC / "requirements.json"
RETIRED = SPEC / "retired-requirements.txt"


def ids_ever_exported() -> set[str]:
    """IDs in every committed version of the export, and in the working tree."""
    versions = [EXPORT.read_text(encoding="utf-8")] if EXPORT.exists() else []
    git = shutil.which("git")
    if git:
        log = subprocess.run(
            [git, "log", "--format=%H", "--", EXPORT.name],
            cwd=SPEC,
            capture_output=True,
            text=True,
            check=False,
        )
        for commit in log.stdout.split():
            shown = subprocess.run(
                [git, "show", f"{commit}:./{EXPORT.name}"],
                cwd=SPEC,
                capture_output=True,
                text=True,
                check=False,
            )
            if shown.returncode == 0:
                versions.append(shown.stdout)
    return {item["id"] for version in versions for item in json.loads(version)}


def retired_ids() -> set[str]:
    lines = RETIRED.read_text(encoding="utf-8").splitlines()
    return {line.split("#", 1)[0].strip() for line in lines} - {""}


def test_draft_lints_clean(real_draft: str) -> None:
    problems = lint(real_draft)
    assert problems == [], "\n".join(problems)


def test_requirement_ids_unique(real_draft: str) -> None:
    counts = Counter(r.id for r in requirements(real_draft))
    assert [ident for ident, n in counts.items() if n > 1] == []
    assert counts, "the draft has no tagged requirements"


def test_export_matches_committed_json(real_draft: str) -> None:
    committed = EXPORT.read_text(encoding="utf-8") if EXPORT.exists() else ""
    assert committed == export_json(real_draft), (
        "spec/requirements.json is out of date: run "
        "`serval-requirements -o spec/requirements.json` and commit it"
    )


def test_exported_ids_are_never_reused(real_draft: str) -> None:
    current = {r.id for r in requirements(real_draft)}
    retired = retired_ids()
    vanished = sorted(ids_ever_exported() - current - retired)
    assert vanished == [], f"IDs removed from the draft must be listed in {RETIRED}: {vanished}"
    assert sorted(current & retired) == [], "a retired requirement ID is back in the draft"
