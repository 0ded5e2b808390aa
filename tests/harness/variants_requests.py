"""Broken variants for the answers to RECTIFY, STORE and LEAVE (Sections 6.4.4 to 6.4.8)."""

from __future__ import annotations

import pytest

from .variants import Variant


def _trusting(handler: str):  # type: ignore[no-untyped-def]
    """The handler ``handler`` of Node treats every source as validated."""

    def patch(monkeypatch: pytest.MonkeyPatch) -> None:
        from ref.chord.node import Node

        original = getattr(Node, handler)

        def trusting(self, inbound, message, validated):  # type: ignore[no-untyped-def]
            return original(self, inbound, message, True)

        monkeypatch.setattr(Node, handler, trusting)

    return patch


def _rectify_unanswered(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-MSG-11 broken: a valid RECTIFY is acted on but not answered."""
    from ref.chord.node import Node

    monkeypatch.setattr(Node, "reply", _skip_rectify_response(Node.reply))


def _skip_rectify_response(original):  # type: ignore[no-untyped-def]
    from ref.wire import RectifyResponse

    def reply(self, inbound, body, validated):  # type: ignore[no-untyped-def]
        if not isinstance(body, RectifyResponse):
            original(self, inbound, body, validated)

    return reply


def _store_waits_for_replication(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-MSG-13 broken: STORE_RESPONSE only once the replicas have answered (never here)."""
    from ref.chord.node import Node
    from ref.wire import StoreResponse

    original = Node.reply

    def reply(self, inbound, body, validated):  # type: ignore[no-untyped-def]
        if isinstance(body, StoreResponse) and any(p.key != self.key for p in self.successors):
            return  # waits for REPLICATE answers, which the harness member never gives
        original(self, inbound, body, validated)

    monkeypatch.setattr(Node, "reply", reply)


VARIANTS = [
    Variant("rectify-from-unvalidated-source", "DHT-MSG-12", patch=_trusting("_on_rectify")),
    Variant("leave-from-unvalidated-source", "DHT-MSG-15", patch=_trusting("_on_leave")),
    Variant("rectify-unanswered", "DHT-MSG-11", patch=_rectify_unanswered, cases=("dht.requests",)),
    Variant("store-waits-for-replication", "DHT-MSG-13", patch=_store_waits_for_replication),
]
