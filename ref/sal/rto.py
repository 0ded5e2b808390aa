"""The retransmission timeout estimator of draft Section 5.9.3 (RFC 6298).

One estimator per control channel, and one per stream sender (SAL-STREAM-9
uses the same formulas and constants).  It knows nothing of packets: the
caller feeds it round-trip samples (never from a retransmitted packet, Karn's
rule, SAL-CTRL-13) and doubles it on each expiry (SAL-CTRL-15).
"""

from __future__ import annotations

import dataclasses

from ref.wire.constants import RTO_INITIAL, RTO_MAX, RTO_MIN

_ALPHA = 1 / 8
_BETA = 1 / 4
_K = 4
#: G of SAL-CTRL-12: the cores run on float seconds, so the clock's granularity is ~0.
CLOCK_GRANULARITY = 0.001


def _clamp(rto: float) -> float:
    return min(max(rto, RTO_MIN), RTO_MAX)


@dataclasses.dataclass
class RtoEstimator:
    """SRTT, RTTVAR and RTO of SAL-CTRL-12; ``rto`` is the timer's current value."""

    srtt: float | None = None
    rttvar: float = 0.0
    rto: float = RTO_INITIAL

    def sample(self, rtt: float) -> None:
        """Take a round-trip time sample ``rtt`` in seconds (SAL-CTRL-12)."""
        rtt = max(rtt, 0.0)
        if self.srtt is None:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:  # RTTVAR first, with the old SRTT (RFC 6298)
            self.rttvar = (1 - _BETA) * self.rttvar + _BETA * abs(self.srtt - rtt)
            self.srtt = (1 - _ALPHA) * self.srtt + _ALPHA * rtt
        self.rto = _clamp(self.srtt + max(CLOCK_GRANULARITY, _K * self.rttvar))

    def back_off(self) -> None:
        """Double the RTO after an expiry, up to RTO_MAX (SAL-CTRL-15)."""
        self.rto = _clamp(2 * self.rto)

    def reset(self) -> None:
        """Forget every sample: a new path (SAL-STREAM-21)."""
        self.srtt, self.rttvar, self.rto = None, 0.0, RTO_INITIAL
