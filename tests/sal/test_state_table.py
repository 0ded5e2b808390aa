"""The state tables of ``ref.sal.flow`` are the draft's tables of Section 5.15, row by row."""

from __future__ import annotations

import re
from pathlib import Path

from ref.sal.flow import (
    MIGRATION_TRANSITIONS,
    TRANSITIONS,
    Event,
    MigrationEvent,
    State,
    SubState,
)

DRAFT = Path(__file__).resolve().parents[2] / "spec" / "rfc-serval-dht.md"


def _tables() -> tuple[list[list[str]], list[list[str]]]:
    text = DRAFT.read_text(encoding="utf-8")
    section = text[text.index("## 5.15. State Machine") : text.index("## 5.16.")]
    tables: list[list[list[str]]] = []
    current: list[list[str]] | None = None
    for line in section.splitlines():
        if line.startswith("|"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            if current is None:
                current = []
                tables.append(current)
            if not re.fullmatch(r"-+", cells[0]):
                current.append(cells)
        else:
            current = None
    # Tables: the states, the flow transitions, the migration transitions.
    _, flow_table, migration_table = tables
    return flow_table[1:], migration_table[1:]


def test_the_state_table_is_the_drafts() -> None:
    rows, _ = _tables()
    drafted = {(State(state), Event(event)): State(target) for state, event, _, target in rows}
    assert drafted == TRANSITIONS


def test_the_migration_table_is_the_drafts() -> None:
    _, rows = _tables()
    drafted: dict[tuple[SubState, MigrationEvent], SubState | None] = {}
    for substate, event, _, target in rows:
        after = None if target == "(flow CLOSED)" else SubState(target)
        subs = list(SubState) if substate == "any" else [SubState(substate)]
        for sub in subs:
            drafted[(sub, MigrationEvent(event))] = after
    assert drafted == MIGRATION_TRANSITIONS
