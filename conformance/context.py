"""What a running case sees: the target, its declared features, fresh peers, and its judge."""

from __future__ import annotations

import json
import random
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from conformance.expect import Expectation, show
from conformance.model import CaseAbort, Finding, HarnessError, Unsupported, Verdict
from conformance.peer import Address, Capture, DhtPeer, Received, Wire
from conformance.requirements import requirements
from ref.wire import Error, Status, StatusResponse
from ref.wire.status import flat_counters

#: The verdict of a violated requirement, by its level (Section 2 of the draft).
_VIOLATION = {"MUST": Verdict.FAIL, "SHOULD": Verdict.WARN, "MAY": Verdict.PASS}


class Target:
    """The implementation under test and what it declared about itself (Appendix C)."""

    def __init__(self, address: Address, report: dict[str, Any] | None) -> None:
        self.address = address
        self.report = report or {}
        features = self.report.get("features")
        self.features: frozenset[str] = (
            frozenset(str(f) for f in features)
            if isinstance(features, list)
            else frozenset({"dht"})
        )
        interval = self.report.get("stabilize_interval")
        self.stabilize_interval = float(interval) if isinstance(interval, (int, float)) else 5.0
        replicas = self.report.get("replicas")
        self.replicas = replicas if isinstance(replicas, int) and 1 <= replicas <= 16 else 3
        #: Requests per second and burst per source address.
        self.rate_limit = (100.0, 200.0)
        rate = self.report.get("rate_limit")
        if (
            isinstance(rate, list)
            and len(rate) == 2
            and all(isinstance(v, int | float) and v > 0 for v in rate)
        ):
            self.rate_limit = (float(rate[0]), float(rate[1]))


class Context:
    """Passed to every case: build peers, exchange messages, record findings."""

    def __init__(
        self,
        target: Target,
        capture: Capture,
        *,
        case: str,
        seed: int,
        timeout: float,
        strict: bool,
    ) -> None:
        self.target = target
        self.capture = capture
        self.case = case
        self.seed = seed
        self.rng = random.Random(f"{seed}:{case}")
        self.timeout = timeout
        self.strict = strict
        self.findings: list[Finding] = []
        self._peers: list[DhtPeer] = []

    # --- peers ----------------------------------------------------------------------

    def client(self, source: str | None = None) -> DhtPeer:
        """A new client (zero Sender Key) on a fresh socket, bound to ``source`` if given."""
        return self._peer(None, source)

    def member(self, key: Ed25519PrivateKey | None = None, source: str | None = None) -> DhtPeer:
        """A new ring member with its own host key on a fresh socket."""
        return self._peer(key or self.key(), source)

    def _peer(self, key: Ed25519PrivateKey | None, source: str | None) -> DhtPeer:
        wire = Wire(self.target.address, self.capture, source)
        peer = DhtPeer(wire, self.rng, self.timeout, key)
        self._peers.append(peer)
        return peer

    def key(self) -> Ed25519PrivateKey:
        """A fresh Ed25519 key drawn from the case's seeded random source."""
        return Ed25519PrivateKey.from_private_bytes(self.rng.randbytes(32))

    def close(self) -> None:
        for peer in self._peers:
            peer.close()
        self._peers.clear()

    def status(self, peer: DhtPeer | None = None) -> dict[str, Any]:
        """The target's STATUS report now (Section 6.4.9), or a harness error.

        Asked from ``peer`` (a fresh client by default); a peer that holds a token
        reads it without drawing an ERROR.
        """
        reply = (peer or self.client()).request(Status())
        if reply is None or not isinstance(reply.message.body, StatusResponse):
            raise HarnessError(f"no STATUS_RESPONSE from the target ({show(reply)})")
        try:
            report = json.loads(reply.message.body.report)
        except ValueError as error:
            raise HarnessError(f"STATUS report is not JSON: {error}") from None
        if not isinstance(report, dict):
            raise HarnessError("STATUS report is not a JSON object")
        return report

    def counters(self, peer: DhtPeer | None = None) -> dict[str, int] | None:
        """The target's drop and error counters (feature "counters", Appendix C).

        None when the report left them out to fit its 1,024 bytes.
        """
        self.needs("counters")
        return flat_counters(self.status(peer).get("counters"))

    # --- judging --------------------------------------------------------------------

    def needs(self, feature: str) -> None:
        if feature not in self.target.features:
            raise Unsupported(f"the target does not declare feature {feature!r}")

    def require(
        self,
        requirement: str,
        holds: bool,
        detail: str,
        *,
        expected: str = "",
        actual: str = "",
        fatal: bool = False,
    ) -> bool:
        """Judge ``requirement``: a PASS when ``holds``, else a violation at its level."""
        level = requirements()[requirement].level
        verdict = Verdict.PASS if holds else _VIOLATION[level]
        if not holds and verdict == Verdict.WARN and self.strict:
            verdict = Verdict.FAIL
        self.findings.append(Finding(requirement, verdict, detail, expected, actual))
        if not holds and fatal:
            raise CaseAbort(detail)
        return holds

    def expect(
        self,
        requirement: str,
        received: Received | None,
        *alternatives: Expectation,
        detail: str,
        fatal: bool = False,
    ) -> bool:
        """Judge that ``received`` matches one of ``alternatives``."""
        holds = any(alternative.matches(received) for alternative in alternatives)
        return self.require(
            requirement,
            holds,
            detail,
            expected=" / ".join(alternative.describe() for alternative in alternatives),
            actual=show(received),
            fatal=fatal,
        )

    def answer(self, received: Received | None, what: str) -> Received:
        """A reply the case cannot go on without; silence is a harness ERROR."""
        if received is None:
            raise HarnessError(f"no answer to {what} within {self.timeout:g} s")
        return received

    def refused(self, received: Received | None) -> int | None:
        """The error code of an ERROR reply, or None."""
        if received is not None and isinstance(received.message.body, Error):
            return received.message.body.error_code
        return None
