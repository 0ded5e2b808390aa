"""Fixtures for the draft tooling: a small fixture draft and the real draft."""

from __future__ import annotations

from pathlib import Path

import pytest

from ref.draft import DEFAULT_DRAFT

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def minimal_draft() -> str:
    return (FIXTURES / "minimal-draft.md").read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def real_draft() -> str:
    if not DEFAULT_DRAFT.exists():
        pytest.skip(f"the draft {DEFAULT_DRAFT} does not exist yet")
    return DEFAULT_DRAFT.read_text(encoding="utf-8")
