"""The record store of a ServalDHT node and a resolver's cache (draft 6.7, 6.9.2).

Theory of operation
-------------------

:class:`RecordStore` holds the records a node is responsible for, one per
block, keyed by the 32-byte block base. :meth:`RecordStore.offer` runs the
checks of Section 6.7.1 in the draft's order and either stores the record
or returns a :class:`Refusal` carrying the error code of the first check
that failed, having changed nothing (DHT-STORE-1, DHT-STORE-2). The node
supplies what the store cannot know alone: signature verification,
responsibility for the block and, for STORE, address validation.

A stored record that has expired no longer counts for ownership or
sequence: the block is free (REC-7). It stays in memory until
:meth:`RecordStore.expire` removes it; the node calls that at
:meth:`RecordStore.next_expiry`, so until then it still counts toward the
limits of check 8.

:class:`ResolverCache` keeps verified records apart from stored ones
(Section 6.9.2): they never count toward the limits, never take part in the
ownership and sequence checks, and are never replicated.

Nothing here reads a clock: ``now`` is seconds since the Unix epoch, the
scale of a record's Issued At.
"""

from __future__ import annotations

import enum
import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from ref.wire.constants import (
    MAX_CLOCK_SKEW,
    MAX_RECORDS_PER_NODE,
    MAX_RECORDS_PER_OWNER,
    NEGATIVE_CACHE_LIFETIME,
)
from ref.wire.errors import ErrorCode
from ref.wire.records import ServiceRecord

_NO_KEY = bytes(32)

V = TypeVar("V")


class Outcome(enum.Enum):
    """How an accepted record changed the store."""

    STORED = enum.auto()  # the block had no unexpired record
    REPLACED = enum.auto()  # DHT-STORE-3: in place of the block's record
    IDENTICAL = enum.auto()  # a repeat of the stored record: nothing changed


@dataclass(frozen=True)
class Refusal:
    """A record that failed validation, with the code for the ERROR reply."""

    code: ErrorCode
    reason: str


class _Expiring(Generic[V]):
    """A dict by block whose values expire, with the earliest expiry found in O(log n).

    The heap holds ``(expires_at, block)`` pairs and deletes lazily: a pair
    counts only while it matches the block's current value, and the heap is
    rebuilt when stale pairs outnumber the live ones.
    """

    def __init__(self, expires_at: Callable[[V], float]) -> None:
        self._expires_at = expires_at
        self._items: dict[bytes, V] = {}
        self._heap: list[tuple[float, bytes]] = []

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, block: bytes) -> bool:
        return block in self._items

    def get(self, block: bytes) -> V | None:
        return self._items.get(block)

    def values(self) -> list[V]:
        return list(self._items.values())

    def set(self, block: bytes, value: V) -> None:
        self._items[block] = value
        heapq.heappush(self._heap, (self._expires_at(value), block))
        if len(self._heap) > 2 * len(self._items) + 16:
            self._heap = [(self._expires_at(v), b) for b, v in self._items.items()]
            heapq.heapify(self._heap)

    def pop(self, block: bytes) -> V | None:
        return self._items.pop(block, None)

    def earliest(self) -> tuple[float, bytes] | None:
        """The live ``(expires_at, block)`` pair that expires first."""
        while self._heap:
            when, block = self._heap[0]
            value = self._items.get(block)
            if value is not None and self._expires_at(value) == when:
                return when, block
            heapq.heappop(self._heap)
        return None

    def pop_earliest(self) -> V | None:
        first = self.earliest()
        if first is None:
            return None
        heapq.heappop(self._heap)
        return self._items.pop(first[1])

    def pop_expired(self, now: float) -> list[V]:
        """Remove and return every value with ``expires_at <= now``."""
        expired: list[V] = []
        while (first := self.earliest()) is not None and first[0] <= now:
            heapq.heappop(self._heap)
            expired.append(self._items.pop(first[1]))
        return expired


def _expires_at(record: ServiceRecord) -> float:
    return record.expires_at


def _unexpired(record: ServiceRecord | None, now: float) -> ServiceRecord | None:
    # Draft 6.7: from Issued At + Lifetime on, a record is expired.
    return record if record is not None and now < record.expires_at else None


class RecordStore:
    """The records a node stores for the blocks it is responsible for (draft 6.7)."""

    def __init__(
        self,
        *,
        max_records: int = MAX_RECORDS_PER_NODE,
        max_per_owner: int = MAX_RECORDS_PER_OWNER,
    ) -> None:
        self.max_records = max_records  # DHT-STORE-4: configurable
        self.max_per_owner = max_per_owner
        self._records = _Expiring(_expires_at)
        self._owners: dict[bytes, int] = {}

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, block: bytes) -> bool:
        return block in self._records

    def records(self) -> Iterator[ServiceRecord]:
        """Every stored record, expired ones not yet removed included (a snapshot)."""
        return iter(self._records.values())

    def owner_count(self, owner_key: bytes) -> int:
        """How many stored records carry ``owner_key``."""
        return self._owners.get(owner_key, 0)

    def get(self, block: bytes, now: float) -> ServiceRecord | None:
        """The block's unexpired record, live or tombstone (DHT-REC-6)."""
        return _unexpired(self._records.get(block), now)

    def offer(
        self,
        record: ServiceRecord,
        now: float,
        *,
        verify: Callable[[ServiceRecord], bool],
        responsible: Callable[[bytes], bool],
        addresses_validated: Callable[[ServiceRecord], bool] | None = None,
    ) -> Outcome | Refusal:
        """Validate a record from STORE or REPLICATE and store it (draft 6.7.1).

        Checks 2 to 8 run in the draft's order (DHT-STORE-1); the decoder
        made check 1. ``addresses_validated`` is given for STORE only.
        A refusal changes nothing (DHT-STORE-2).
        """
        # Check 2. The zero key is tested first: it saves a verification.
        if record.owner_key == _NO_KEY or not verify(record):
            return Refusal(ErrorCode.BAD_SIGNATURE, "signature does not verify with owner key")
        # Check 3.
        if record.issued_at > now + MAX_CLOCK_SKEW:
            return Refusal(ErrorCode.RECORD_EXPIRED, "issued more than 300 s in the future")
        if now >= record.expires_at:
            return Refusal(ErrorCode.RECORD_EXPIRED, "record has expired")
        # Check 4.
        block = record.service_id
        if not responsible(block):
            return Refusal(ErrorCode.NOT_RESPONSIBLE, "not in the replica set of the block")
        # Check 5.
        if addresses_validated is not None and not addresses_validated(record):
            return Refusal(ErrorCode.ADDRESS_NOT_VALIDATED, "an endpoint address is not validated")
        old = self._records.get(block)
        current = _unexpired(old, now)
        if current is not None:
            # Check 6: first come, first served.
            if current.owner_key != record.owner_key:
                return Refusal(ErrorCode.NOT_OWNER, "block is owned by another key")
            # Check 7: a repeat succeeds without change.
            if current == record:
                return Outcome.IDENTICAL
            if record.sequence <= current.sequence:
                return Refusal(ErrorCode.STALE_SEQUENCE, "sequence is not greater than stored")
        else:
            # Check 8. An expired record of the block is about to be replaced: not counted.
            total = len(self._records)
            owned = self.owner_count(record.owner_key)
            if old is not None:
                total -= 1
                owned -= old.owner_key == record.owner_key
            if total >= self.max_records:
                return Refusal(ErrorCode.LIMIT_EXCEEDED, "node stores its limit of records")
            if owned >= self.max_per_owner:
                return Refusal(ErrorCode.LIMIT_EXCEEDED, "owner key has its limit of records")
        # DHT-STORE-3: in place of any record of the block.
        self.remove(block)
        self._records.set(block, record)
        self._owners[record.owner_key] = self.owner_count(record.owner_key) + 1
        return Outcome.STORED if current is None else Outcome.REPLACED

    def remove(self, block: bytes) -> ServiceRecord | None:
        """Drop the block's record, if any, and return it."""
        record = self._records.pop(block)
        if record is not None:
            self._release(record)
        return record

    def expire(self, now: float) -> list[ServiceRecord]:
        """Remove and return every record that has expired by ``now`` (DHT-REC-7)."""
        expired = self._records.pop_expired(now)
        for record in expired:
            self._release(record)
        return expired

    def next_expiry(self) -> float | None:
        """When the next stored record expires: the deadline for :meth:`expire`."""
        first = self._records.earliest()
        return None if first is None else first[0]

    def _release(self, record: ServiceRecord) -> None:
        left = self._owners[record.owner_key] - 1
        if left:
            self._owners[record.owner_key] = left
        else:
            del self._owners[record.owner_key]


def _identity(when: float) -> float:
    return when


class ResolverCache:
    """Verified records and NOT_FOUND answers a resolver remembers (draft 6.9.2).

    Each kind holds at most ``max_entries``; when full, the entry that
    expires first makes room.
    """

    def __init__(self, *, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._records = _Expiring(_expires_at)
        self._negative: _Expiring[float] = _Expiring(_identity)

    def __len__(self) -> int:
        """The number of cached records (NOT_FOUND answers not counted)."""
        return len(self._records)

    def put(self, record: ServiceRecord, now: float) -> bool:
        """Cache a record the caller has verified (DHT-CACHE-1); True when kept."""
        self._purge(now)
        if now >= record.expires_at:
            return False  # DHT-CACHE-2
        block = record.service_id
        cached = self._records.get(block)
        if cached is not None and record.sequence <= cached.sequence:
            return False  # DHT-CACHE-3
        if cached is None and len(self._records) >= self.max_entries:
            self._records.pop_earliest()
        self._records.set(block, record)
        self._negative.pop(block)
        return True

    def get(self, block: bytes, now: float) -> ServiceRecord | None:
        """The block's cached record, unexpired (DHT-CACHE-2), sent on unchanged (DHT-CACHE-4)."""
        self._purge(now)
        return self._records.get(block)

    def put_negative(
        self, block: bytes, now: float, lifetime: float = NEGATIVE_CACHE_LIFETIME
    ) -> None:
        """Remember a NOT_FOUND for at most 30 seconds (DHT-CACHE-5)."""
        self._purge(now)
        lifetime = min(lifetime, NEGATIVE_CACHE_LIFETIME)
        if lifetime <= 0:
            return
        if block not in self._negative and len(self._negative) >= self.max_entries:
            self._negative.pop_earliest()
        self._negative.set(block, now + lifetime)

    def is_negative(self, block: bytes, now: float) -> bool:
        """Whether a NOT_FOUND for the block is cached and unexpired."""
        self._purge(now)
        return block in self._negative

    def _purge(self, now: float) -> None:
        self._records.pop_expired(now)
        self._negative.pop_expired(now)
