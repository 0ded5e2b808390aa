"""Broken variants for abuse resistance (Section 6.10)."""

from __future__ import annotations

import pytest

from .variants import Variant


def _no_rate_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-RATE-1 broken: every request is admitted."""
    from ref.chord.abuse import RateLimiter

    monkeypatch.setattr(RateLimiter, "admit", lambda self, address, now: True)


def _rate_limited_storm(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-RATE-4 broken: every request dropped for the rate draws ERROR RATE_LIMITED."""
    from ref.chord.abuse import RateLimiter

    monkeypatch.setattr(RateLimiter, "may_send_error", lambda self, address, now: True)


def _rate_drops_uncounted(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-RATE-2 broken: requests dropped for the rate are not counted."""
    from ref.chord.exchange import Engine
    from ref.wire import ErrorCode

    original = Engine.drop

    def drop(self, code, reason, source=None):  # type: ignore[no-untyped-def]
        if code != ErrorCode.RATE_LIMITED:
            original(self, code, reason, source)

    monkeypatch.setattr(Engine, "drop", drop)


def _limit(monkeypatch: pytest.MonkeyPatch, change) -> None:  # type: ignore[no-untyped-def]
    from ref.chord.node import Node

    original = Node._within_amplification_limit

    def within(self, body, request_size):  # type: ignore[no-untyped-def]
        return change(body, *original(self, body, request_size))

    monkeypatch.setattr(Node, "_within_amplification_limit", within)


def _no_amplification_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-AMP-1 broken: unvalidated sources get whole answers."""
    from ref.wire import MessageFlags

    _limit(monkeypatch, lambda whole, body, flags: (whole, MessageFlags(0)))


def _cut_without_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-AMP-2 broken: a shortened node list does not say TRUNCATED."""
    from ref.wire import MessageFlags

    _limit(monkeypatch, lambda whole, body, flags: (body, MessageFlags(0)))


def _truncated_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-AMP-3 broken: every answer to an unvalidated source says TRUNCATED."""
    from ref.wire import MessageFlags

    _limit(monkeypatch, lambda whole, body, flags: (body, flags | MessageFlags.TRUNCATED))


def _tokens_for_any_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-TOKEN-2 broken: a token issued to one address is valid at every address."""
    from ref.chord.abuse import Tokens

    original = Tokens.valid

    def valid(self, token, address):  # type: ignore[no-untyped-def]
        return token in self._issued.values() or original(self, token, address)

    monkeypatch.setattr(Tokens, "valid", valid)


def _store_ignores_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-TOKEN-6 broken: the endpoint addresses of a STORE are not validated."""
    from ref.chord.store import RecordStore

    original = RecordStore.offer

    def offer(self, record, now, **checks):  # type: ignore[no-untyped-def]
        checks["addresses_validated"] = None
        return original(self, record, now, **checks)

    monkeypatch.setattr(RecordStore, "offer", offer)


VARIANTS = [
    Variant("no-rate-limit", "DHT-RATE-1", patch=_no_rate_limit),
    Variant("rate-limited-error-storm", "DHT-RATE-4", patch=_rate_limited_storm),
    Variant("rate-drops-uncounted", "DHT-RATE-2", patch=_rate_drops_uncounted),
    Variant("no-amplification-limit", "DHT-AMP-1", patch=_no_amplification_limit),
    Variant("cut-lists-not-truncated", "DHT-AMP-2", patch=_cut_without_flag),
    Variant("truncated-everywhere", "DHT-AMP-3", patch=_truncated_everywhere),
    Variant("tokens-valid-at-any-address", "DHT-TOKEN-2", patch=_tokens_for_any_address),
    Variant("store-ignores-endpoint-addresses", "DHT-TOKEN-6", patch=_store_ignores_addresses),
]
