"""Runs cases group by group, with a liveness check before and after each group.

The liveness check is a PING that must draw a PONG (three tries).  A target
that is dead before a group makes every case of the group an ERROR; a target
that was alive before a group and is dead after it is reported against that
group, as a FAIL of the run, since a conforming node survives every input.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
import traceback
from collections.abc import Callable, Sequence
from itertools import groupby
from typing import Any

from conformance.context import Context, Target
from conformance.model import (
    Case,
    CaseAbort,
    CaseResult,
    Finding,
    GroupResult,
    HarnessError,
    Unsupported,
    Verdict,
    worst,
)
from conformance.peer import Address, Capture, DhtPeer, Wire
from ref.wire import Ping, Pong, Status, StatusResponse

LIVENESS_TRIES = 3

#: Called as each case ends: (result, cases done, cases in all).
Progress = Callable[[CaseResult, int, int], None]


@dataclasses.dataclass
class Run:
    """Everything one run produced."""

    target: Target
    seed: int
    strict: bool
    results: list[CaseResult]
    groups: list[GroupResult]
    capture: Capture
    duration: float = 0.0

    @property
    def crashed_in(self) -> list[str]:
        """Groups after which the target stopped answering."""
        return [g.group for g in self.groups if g.alive_before and not g.alive_after]

    @property
    def verdict(self) -> Verdict:
        """The worst verdict of a case that ran; SKIP only when every case was skipped.

        A skipped case (an optional feature the target does not declare, or a
        slow case without --slow) says nothing against the target.
        """
        crashed = [Verdict.FAIL] if self.crashed_in else []
        judged = [r.verdict for r in self.results if r.verdict != Verdict.SKIP]
        if not judged and self.results and not crashed:
            return Verdict.SKIP
        return worst(judged + crashed)

    def exit_code(self) -> int:
        """0 when nothing failed, 1 on any FAIL (a WARN under --strict is already a FAIL)."""
        return 1 if self.verdict == Verdict.FAIL else 0


def _peer(address: Address, capture: Capture, timeout: float) -> DhtPeer:
    return DhtPeer(Wire(address, capture), random.Random(), timeout)


def alive(address: Address, capture: Capture, timeout: float) -> bool:
    """Does the target answer a PING with a PONG (within three tries)?"""
    peer = _peer(address, capture, timeout)
    try:
        for _ in range(LIVENESS_TRIES):
            reply = peer.request(Ping(), timeout=timeout)
            if reply is not None and isinstance(reply.message.body, Pong):
                return True
        return False
    finally:
        peer.close()


def probe(address: Address, capture: Capture, timeout: float) -> Target:
    """Learn what the target declares about itself from its STATUS report (Appendix C)."""
    capture.case = "harness.probe"
    peer = _peer(address, capture, timeout)
    try:
        reply = peer.request(Status(), timeout=timeout)
    finally:
        peer.close()
    report: dict[str, Any] | None = None
    if reply is not None and isinstance(reply.message.body, StatusResponse):
        try:
            decoded = json.loads(reply.message.body.report)
        except ValueError:
            decoded = None
        report = decoded if isinstance(decoded, dict) else None
    return Target(address, report)


#: Why a slow case is skipped without --slow.
SLOW_SKIP = "waits for the draft's long timers (60 s and more); run with --slow"


def run_case(
    case: Case,
    target: Target,
    capture: Capture,
    *,
    seed: int,
    timeout: float,
    strict: bool,
    slow: bool = False,
) -> CaseResult:
    """Run one case and turn what it found into a verdict."""
    capture.case = case.id
    context = Context(target, capture, case=case.id, seed=seed, timeout=timeout, strict=strict)
    started = time.monotonic()
    extra: list[Finding] = []
    try:
        missing = sorted(case.needs - target.features)
        if missing:
            raise Unsupported(f"the target does not declare {', '.join(missing)}")
        if case.slow and not slow:
            raise Unsupported(SLOW_SKIP)
        case.run(context)
        if not context.findings:
            extra.append(Finding(None, Verdict.ERROR, "the case judged nothing (a harness bug)"))
    except CaseAbort:
        pass
    except Unsupported as reason:
        extra.append(Finding(None, Verdict.SKIP, str(reason)))
    except HarnessError as reason:
        extra.append(Finding(None, Verdict.ERROR, str(reason)))
    except Exception:  # a harness bug must not hide the rest of the run
        extra.append(Finding(None, Verdict.ERROR, "harness exception:\n" + traceback.format_exc()))
    finally:
        context.close()
    findings = context.findings + extra
    skipped = any(f.verdict == Verdict.SKIP for f in extra)
    verdict = Verdict.SKIP if skipped else worst(f.verdict for f in findings)
    return CaseResult(
        case=case,
        verdict=verdict,
        findings=findings,
        duration=time.monotonic() - started,
        seed=seed,
    )


def run(
    cases: Sequence[Case],
    address: Address,
    *,
    seed: int,
    timeout: float,
    strict: bool = False,
    progress: Progress | None = None,
    capture: Capture | None = None,
    slow: bool = False,
) -> Run:
    """Run ``cases`` (in order, grouped) against the target at ``address``."""
    capture = capture or Capture()
    started = time.monotonic()
    target = probe(address, capture, timeout)
    results: list[CaseResult] = []
    groups: list[GroupResult] = []
    for group, members in groupby(cases, key=lambda c: c.group):
        batch = list(members)
        capture.case = f"liveness.{group}"
        before = alive(address, capture, timeout)
        for case in batch:
            if before:
                result = run_case(
                    case, target, capture, seed=seed, timeout=timeout, strict=strict, slow=slow
                )
            else:
                result = CaseResult(
                    case,
                    Verdict.ERROR,
                    [
                        Finding(
                            None, Verdict.ERROR, f"target not answering PING before group {group}"
                        )
                    ],
                    0.0,
                    seed,
                )
            results.append(result)
            if progress is not None:
                progress(result, len(results), len(cases))
        capture.case = f"liveness.{group}"
        after = alive(address, capture, timeout) if before else False
        groups.append(GroupResult(group, before, after))
    return Run(target, seed, strict, results, groups, capture, time.monotonic() - started)
