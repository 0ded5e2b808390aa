"""Broken variants for the record, replication and resolution cases (Sections 6.7 to 6.9)."""

from __future__ import annotations

from typing import Any

import pytest

from .variants import Variant
from .variants_ring import RING_CONFIG


def _wrap_offer(monkeypatch: pytest.MonkeyPatch, wrapper: Any) -> None:
    from ref.chord.store import RecordStore

    original = RecordStore.offer

    def offer(self, record, now, **checks):  # type: ignore[no-untyped-def]
        return wrapper(original, self, record, now, **checks)

    monkeypatch.setattr(RecordStore, "offer", offer)


def _ignores_ownership(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-STORE-1 broken: another owner's record simply replaces the first owner's."""

    def offer(original, self, record, now, **checks):  # type: ignore[no-untyped-def]
        current = self.get(record.service_id, now)
        if current is not None and current.owner_key != record.owner_key:
            self.remove(record.service_id)
        return original(self, record, now, **checks)

    _wrap_offer(monkeypatch, offer)


def _keeps_old_record(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-STORE-3 broken: a newer record of the owner is acknowledged but not stored."""
    from ref.chord.store import Outcome

    def offer(original, self, record, now, **checks):  # type: ignore[no-untyped-def]
        current = self.get(record.service_id, now)
        if (
            current is not None
            and current.owner_key == record.owner_key
            and record.sequence > current.sequence
            and record.verify()
        ):
            return Outcome.REPLACED
        return original(self, record, now, **checks)

    _wrap_offer(monkeypatch, offer)


def _refusal_claims_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-STORE-2 broken: a record refused for its signature is stored all the same."""
    from ref.chord.store import Refusal
    from ref.wire import ErrorCode

    def offer(original, self, record, now, **checks):  # type: ignore[no-untyped-def]
        result = original(self, record, now, **checks)
        if isinstance(result, Refusal) and result.code == ErrorCode.BAD_SIGNATURE:
            original(self, record, now, **(checks | {"verify": lambda r: True}))
        return result

    _wrap_offer(monkeypatch, offer)


def _drops_tombstones(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-REC-6 broken: an accepted tombstone deletes the block instead of being kept."""
    from ref.chord.store import Refusal

    def offer(original, self, record, now, **checks):  # type: ignore[no-untyped-def]
        result = original(self, record, now, **checks)
        if not isinstance(result, Refusal) and record.is_tombstone:
            self.remove(record.service_id)
        return result

    _wrap_offer(monkeypatch, offer)


def _never_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-REC-7 broken: expired records are kept and served."""
    import ref.chord.store as store

    monkeypatch.setattr(store, "_unexpired", lambda record, now: record)
    monkeypatch.setattr(store.RecordStore, "expire", lambda self, now: [])


def _time_before_signature(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-STORE-1 broken: the time check (3) runs before the signature check (2)."""
    from ref.chord.store import Refusal
    from ref.wire import ErrorCode

    def offer(original, self, record, now, **checks):  # type: ignore[no-untyped-def]
        if now >= record.expires_at:
            return Refusal(ErrorCode.RECORD_EXPIRED, "record has expired")
        return original(self, record, now, **checks)

    _wrap_offer(monkeypatch, offer)


def _without_handover(monkeypatch: pytest.MonkeyPatch, *, first: bool) -> None:
    """No REPLICATE to a newly adopted predecessor from ``_after_change``."""
    from ref.chord.node import Node

    original = Node._after_change

    def after_change(self, old_predecessors, old_successors):  # type: ignore[no-untyped-def]
        new = self.predecessors[0] if self.predecessors else None
        if new is None or bool(old_predecessors) == first:
            return original(self, old_predecessors, old_successors)
        replicate = self._replicate
        self._replicate = lambda record, peer: (
            None if peer.key == new.key else replicate(record, peer)
        )
        try:
            return original(self, old_predecessors, old_successors)
        finally:
            del self._replicate

    monkeypatch.setattr(Node, "_after_change", after_change)


def _no_handover_to_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-REPL-11 broken: the first predecessor adopted receives no records."""
    _without_handover(monkeypatch, first=True)


def _no_handover_to_closer(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-REPL-10 broken: a closer predecessor receives no records."""
    _without_handover(monkeypatch, first=False)


def _no_rereplication(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-REPL-9 broken: list changes that keep the predecessor replicate nothing."""
    from ref.chord.node import Node

    original = Node._after_change

    def after_change(self, old_predecessors, old_successors):  # type: ignore[no-untyped-def]
        new = self.predecessors[0].key if self.predecessors else None
        old = old_predecessors[0].key if old_predecessors else None
        if new != old:
            original(self, old_predecessors, old_successors)

    monkeypatch.setattr(Node, "_after_change", after_change)


def _store_not_replicated(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-REPL-4 broken: a node's view of a replica set is itself alone."""
    from ref.chord.node import Node

    monkeypatch.setattr(Node, "_view", lambda self, block: [])


def _replicate_from_anyone(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-REPL-6 broken: a REPLICATE is accepted whoever sends it."""
    from ref.chord.node import Node
    from ref.chord.store import Refusal
    from ref.wire import ReplicateResponse

    def on_replicate(self, inbound, message, validated):  # type: ignore[no-untyped-def]
        outcome = self._offer(message.body.record, None)
        if isinstance(outcome, Refusal):
            self.refuse(inbound, outcome.code, outcome.reason, validated)
            return
        self.reply(inbound, ReplicateResponse(), validated)

    monkeypatch.setattr(Node, "_on_replicate", on_replicate)


def _not_found_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-RES-2 broken: RESOLVE without a record is NOT_FOUND, member or not."""
    from ref.chord.node import Node
    from ref.wire import ResolveResponse, ResolveStatus
    from ref.wire.ids import block_base

    original = Node._on_resolve

    def on_resolve(self, inbound, message, validated):  # type: ignore[no-untyped-def]
        base = block_base(message.body.service_id)
        if self.store.get(base, self.now) or self.cache.get(base, self.now):
            return original(self, inbound, message, validated)
        self.reply(inbound, ResolveResponse(ResolveStatus.NOT_FOUND), validated)
        return None

    monkeypatch.setattr(Node, "_on_resolve", on_resolve)


VARIANTS = [
    Variant(
        "ignores-ownership",
        "DHT-STORE-1",
        _ignores_ownership,
        cases=("dht.records.first-come-first-served",),
    ),
    Variant("keeps-old-record", "DHT-STORE-3", _keeps_old_record),
    Variant(
        "refused-record-claims-block",
        "DHT-STORE-2",
        _refusal_claims_block,
        cases=("dht.records.validation-order",),
    ),
    Variant("drops-tombstones", "DHT-REC-6", _drops_tombstones),
    Variant("records-never-expire", "DHT-REC-7", _never_expires),
    Variant(
        "time-before-signature",
        "DHT-STORE-1",
        _time_before_signature,
        cases=("dht.records.validation-order",),
    ),
    Variant(
        "owner-limit-ignored",
        "DHT-STORE-1",
        config={"max_per_owner": 1000},
        cases=("dht.records.owner-limit",),
    ),
    Variant("no-handover-to-first-predecessor", "DHT-REPL-11", _no_handover_to_first, RING_CONFIG),
    Variant(
        "no-handover-to-closer-predecessor", "DHT-REPL-10", _no_handover_to_closer, RING_CONFIG
    ),
    Variant("no-rereplication", "DHT-REPL-9", _no_rereplication, RING_CONFIG),
    Variant("store-not-replicated", "DHT-REPL-4", _store_not_replicated, RING_CONFIG),
    Variant("replicate-from-anyone", "DHT-REPL-6", _replicate_from_anyone, RING_CONFIG),
    Variant("not-found-outside-range", "DHT-RES-2", _not_found_everywhere, RING_CONFIG),
]
