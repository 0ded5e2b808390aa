"""Return-routability tokens and per-source rate limits (draft 6.10.1, 6.10.3).

Both are sans-IO: time is a parameter and the token secrets come from an
injected source of random bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Callable

from ref.wire._codec import IPAddress
from ref.wire.constants import (
    RATE_LIMIT_BURST,
    RATE_LIMIT_PER_SOURCE,
    RATE_LIMITED_ERROR_INTERVAL,
    TOKEN_LENGTH,
    TOKEN_SECRET_LIFETIME,
)

_SECRET_LENGTH = 32
_NO_TOKEN = bytes(TOKEN_LENGTH)


def address_bytes(address: IPAddress) -> bytes:
    """The 16-byte form of an address, IPv4-mapped for IPv4 (Section 6.10.1)."""
    if isinstance(address, ipaddress.IPv4Address):
        return b"\x00" * 10 + b"\xff\xff" + address.packed
    return address.packed


class Tokens:
    """Issue and check tokens: HMAC-SHA-256(secret, address), first 16 bytes.

    The secret changes every 300 seconds (DHT-TOKEN-1), and tokens made with
    the current or the previous secret are valid (DHT-TOKEN-2).
    """

    def __init__(self, random_bytes: Callable[[int], bytes], now: float) -> None:
        self._random_bytes = random_bytes
        self._current = random_bytes(_SECRET_LENGTH)
        self._previous: bytes | None = None
        self.rotates_at = now + TOKEN_SECRET_LIFETIME
        self._issued: dict[IPAddress, bytes] = {}

    def rotate(self, now: float) -> None:
        self._previous, self._current = self._current, self._random_bytes(_SECRET_LENGTH)
        self.rotates_at = now + TOKEN_SECRET_LIFETIME
        self._issued.clear()

    def issue(self, address: IPAddress) -> bytes:
        token = self._issued.get(address)
        if token is None:
            token = self._mac(self._current, address)
            if len(self._issued) > 4096:
                self._issued.clear()
            self._issued[address] = token
        return token

    def valid(self, token: bytes, address: IPAddress) -> bool:
        if token == _NO_TOKEN:
            return False
        # Constant-time comparisons (DHT-TOKEN-3).
        if hmac.compare_digest(token, self.issue(address)):
            return True
        return self._previous is not None and hmac.compare_digest(
            token, self._mac(self._previous, address)
        )

    @staticmethod
    def _mac(secret: bytes, address: IPAddress) -> bytes:
        digest = hmac.new(secret, address_bytes(address), hashlib.sha256).digest()
        return digest[:TOKEN_LENGTH]


class RateLimiter:
    """A token bucket per source address (DHT-RATE-1), and the ERROR pacing of DHT-RATE-4."""

    def __init__(
        self, rate: float = RATE_LIMIT_PER_SOURCE, burst: float = RATE_LIMIT_BURST
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[IPAddress, tuple[float, float]] = {}
        self._last_error: dict[IPAddress, float] = {}

    def admit(self, address: IPAddress, now: float) -> bool:
        level, then = self._buckets.get(address, (self.burst, now))
        level = min(self.burst, level + (now - then) * self.rate)
        if level < 1.0:
            self._buckets[address] = (level, now)
            return False
        self._buckets[address] = (level - 1.0, now)
        return True

    def may_send_error(self, address: IPAddress, now: float) -> bool:
        """At most one ERROR RATE_LIMITED per source address per second (DHT-RATE-4)."""
        last = self._last_error.get(address)
        if last is not None and now - last < RATE_LIMITED_ERROR_INTERVAL:
            return False
        self._last_error[address] = now
        return True

    def prune(self, now: float) -> None:
        """Forget buckets that have refilled: they hold no information."""
        full_after = self.burst / self.rate
        self._buckets = {
            address: state
            for address, state in self._buckets.items()
            if now - state[1] < full_after
        }
        self._last_error = {
            address: then
            for address, then in self._last_error.items()
            if now - then < RATE_LIMITED_ERROR_INTERVAL
        }

    def __len__(self) -> int:
        return len(self._buckets)
