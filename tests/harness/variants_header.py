"""Broken variants for the header cases (Section 6.3)."""

from __future__ import annotations

import pytest

from .variants import Variant


def _answer_version_2(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-HDR-2 broken: a request of another version is dropped instead of answered."""
    import ref.chord.exchange as exchange

    original = exchange.Engine.receive_datagram

    def receive(self, data, source, now):  # type: ignore[no-untyped-def]
        payload_version = _dht_version(data)
        if payload_version not in (None, 1):
            return None
        return original(self, data, source, now)

    monkeypatch.setattr(exchange.Engine, "receive_datagram", receive)


def _dht_version(data: bytes) -> int | None:
    from ref.wire import decode_sal

    try:
        payload = decode_sal(data).payload
    except Exception:
        return None
    return payload[0] if payload else None


VARIANTS = [
    Variant("drops-other-versions", "DHT-HDR-2", patch=_answer_version_2),
]
