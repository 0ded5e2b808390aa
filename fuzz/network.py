"""The network campaign: the harness's socket fuzzer against a ``serval-node`` process.

The node runs as ``serval-conform`` runs it (``conformance.embedded``): alone
in a new ring on a free loopback port, in a process of its own, here with a
rate limit high enough that the fuzzer is never paced down to the default
100 requests a second.  The campaign sends the socket fuzzer's seeded
datagrams (``conformance.fuzz``: structure-aware mutations of every request
type) in chunks, each with its own seed and a fresh capture so that memory
stays flat over millions of datagrams.  The fuzzer judges every answer
(the oracle of ``conformance.fuzz.judge``), checks liveness with a PING after
every 100 datagrams, and shrinks and confirms each failure.  A failure that at
least one re-send shows again is kept with the datagram it sent; one that no
re-send shows again is counted as unconfirmed (``keep_failures``).  A node that
stops answering or exits other than cleanly after SIGTERM is a finding too.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterable
from typing import Any

from conformance import fuzz as socket_fuzz
from conformance.embedded import reference_node
from conformance.peer import Capture
from fuzz.findings import InvariantViolation
from fuzz.status import Reporter

RATE = 1_000_000  # requests a second per source the node accepts (its burst is twice this)
TIMEOUT = 0.3  # seconds an answer may take
CHUNK = 5_000  # datagrams per seeded chunk


def node_program() -> list[str]:
    """``serval-node`` where installed, else ``python -m ref.chord``, with the high rate limit."""
    found = shutil.which("serval-node")
    program = [found] if found else [sys.executable, "-m", "ref.chord"]
    return [*program, "--rate-limit", str(RATE)]


def campaign(deadline: float, seed: int, reporter: Reporter, known: Any) -> None:
    with reference_node(node_program()) as node:
        chunk = 0
        while time.monotonic() < deadline:
            left = deadline - time.monotonic()
            rate = reporter.status.execs / max(1.0, reporter.status.seconds) or 200.0
            count = max(100, min(CHUNK, int(left * rate)))
            fuzzer = socket_fuzz.Fuzzer(
                node.address,
                Capture(),
                seed=seed * 100_003 + chunk,
                timeout=TIMEOUT,
                rate_limit=(RATE, 2 * RATE),
            )
            sent = [0]

            def progress(done: int, total: int, sent: list[int] = sent) -> None:
                reporter.executed(done - sent[0])
                sent[0] = done

            report = fuzzer.run(count, progress)
            chunk += 1
            for observation in report.observations:
                expect = socket_fuzz.expectation(observation.datagram)
                answered = "answered" if observation.answers else "silent"
                reporter.executed(0, f"{expect.answer}:{expect.requirement}:{answered}")
            target = f"{node.address[0]}:{node.address[1]}"
            keep_failures(report.findings, reporter, known, target)
            if not report.alive_before or report.dead_after is not None:
                last = report.observations[-1].datagram if report.observations else b""
                reporter.finding(
                    "InvariantViolation:liveness",
                    last,
                    "InvariantViolation: liveness: the node stopped answering PING",
                    len(last),
                )
                break
    if node.returncode not in (0, None):
        reporter.finding(
            "InvariantViolation:exit",
            b"",
            f"InvariantViolation: exit: serval-node exited with {node.returncode} after SIGTERM",
            0,
        )


def keep_failures(
    failures: Iterable[socket_fuzz.Failure], reporter: Reporter, known: Any, target: str
) -> None:
    """Keep each failure the fuzzer confirmed at least once; count the others.

    A failure that none of the fuzzer's re-sends of the shrunk datagram showed
    again is a moment of the host (an answer later than ``TIMEOUT`` on a busy
    machine), not a property of the input: it is counted as unconfirmed and
    not kept, as a coverage-guided artifact that does not reproduce is not.
    """
    for failure in failures:
        violation = failure.violation
        name = f"{violation.requirement}-{violation.what}"
        if f"InvariantViolation:{name}" in known:
            continue
        if failure.confirmed == 0:
            reporter.not_reproduced()
            continue
        text = (
            f"InvariantViolation: {name}: {violation.detail}\n"
            f"{failure.description}\n"
            f"confirmed {failure.confirmed}/{failure.tries}; against a running node: "
            f"{socket_fuzz.replay_command(target, failure.datagram)}"
        )
        reporter.finding(
            f"InvariantViolation:{name}", failure.datagram, text, len(failure.original.datagram)
        )


def replay(datagram: bytes) -> None:
    """Send one datagram to a fresh node and judge the answers as the campaign does."""
    with reference_node(node_program()) as node:
        answers, violations, alive = socket_fuzz.replay(
            node.address, Capture(), datagram, timeout=TIMEOUT * 3
        )
    if violations:
        first = violations[0]
        raise InvariantViolation(f"{first.requirement}-{first.what}", first.detail)
    if not alive:
        raise InvariantViolation("liveness", "the node stopped answering PING")
    del answers
