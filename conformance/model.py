"""What a conformance case is, what it finds, and how findings become verdicts.

A :class:`Case` checks one behaviour of the draft and names the requirement
IDs it checks.  While it runs it records :class:`Finding` objects through its
:class:`Judge`: one per requirement it was able to judge, each with the
evidence (what was expected, what came back).  The level of the requirement
decides the verdict of a violation: MUST gives FAIL, SHOULD gives WARN (FAIL
under ``--strict``), MAY gives nothing worse than PASS.  A verdict only ever
gets worse, as in TTCN-3: a later PASS never hides an earlier FAIL.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conformance.context import Context


class Verdict(enum.Enum):
    """The outcome of a case, a requirement or a run, from best to worst."""

    PASS = "PASS"
    SKIP = "SKIP"  # the target declares it does not offer a feature the case needs
    WARN = "WARN"  # a SHOULD is not followed
    ERROR = "ERROR"  # the harness could not judge (unreachable target, no answer at all)
    FAIL = "FAIL"  # a MUST is violated

    @property
    def rank(self) -> int:
        return _RANK[self]

    def worst(self, other: Verdict) -> Verdict:
        return self if self.rank >= other.rank else other


_RANK = {verdict: rank for rank, verdict in enumerate(Verdict)}


def worst(verdicts: Iterable[Verdict], default: Verdict = Verdict.PASS) -> Verdict:
    result = default
    for verdict in verdicts:
        result = result.worst(verdict)
    return result


class CaseAbort(Exception):
    """Ends a case early; the finding that explains why has been recorded."""


class HarnessError(Exception):
    """The harness cannot judge: the target is unreachable or never answered."""


class Unsupported(Exception):
    """The case needs something the target declares it does not offer."""


@dataclasses.dataclass(frozen=True)
class Finding:
    """One judgement: a requirement, its verdict and the evidence for it."""

    requirement: str | None  # None for harness errors and skips
    verdict: Verdict
    detail: str
    expected: str = ""
    actual: str = ""


@dataclasses.dataclass(frozen=True)
class Case:
    """One conformance case, declared with :func:`conformance.cases.case`."""

    id: str  # stable, e.g. "dht.header.version-2-request"
    title: str
    section: str  # the draft section the case comes from
    requirements: tuple[str, ...]
    group: str  # liveness is checked before and after each group
    run: Callable[[Context], None]
    needs: frozenset[str] = frozenset()  # features the target must declare
    version: int = 1  # bumped whenever the case's expectations change
    slow: bool = False  # waits for the draft's long timers: run only with --slow

    @property
    def suite(self) -> str:
        return self.group.split(".", 1)[0]


@dataclasses.dataclass
class CaseResult:
    case: Case
    verdict: Verdict
    findings: list[Finding]
    duration: float
    seed: int
    replay: str = ""  # the command that replays it, when rerunning the case would not

    @property
    def failures(self) -> list[Finding]:
        return [
            f for f in self.findings if f.verdict in (Verdict.FAIL, Verdict.WARN, Verdict.ERROR)
        ]


@dataclasses.dataclass
class GroupResult:
    """A group's liveness checks: a target that dies is blamed on the group that killed it."""

    group: str
    alive_before: bool
    alive_after: bool
