"""The record store and the resolver cache (draft 6.7.1 to 6.7.3 and 6.9.2).

Records are signed with real Ed25519 keys from fixed seeds; the store is
given ``ServiceRecord.verify`` as its verifier. Every refusal keeps the
store unchanged (DHT-STORE-2), which :func:`offer` checks on each call.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import ipaddress
from collections import Counter
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from ref.chord.store import Outcome, RecordStore, Refusal, ResolverCache
from ref.wire import ErrorCode, RecordEndpoint, RecordFlags, ServiceRecord, sign_record
from ref.wire.constants import (
    MAX_CLOCK_SKEW,
    MAX_RECORDS_PER_NODE,
    MAX_RECORDS_PER_OWNER,
    NEGATIVE_CACHE_LIFETIME,
)
from ref.wire.ids import block_base, service_id_for_name
from ref.wire.records import public_key_bytes

NOW = 1_790_000_000


def private_key(seed: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)


ALICE, BOB, CAROL = private_key(1), private_key(2), private_key(3)
A, B, C, D = (service_id_for_name(name) for name in ("alpha", "bravo", "charlie", "delta"))
ENDPOINT = RecordEndpoint(ipaddress.IPv4Address("192.0.2.10"), 54325)
OTHER_ENDPOINT = RecordEndpoint(ipaddress.IPv6Address("2001:db8::10"), 54325)


@functools.cache
def record(
    key: Ed25519PrivateKey,
    block: bytes = A,
    sequence: int = 1,
    *,
    issued_at: int = NOW,
    lifetime: int = 3600,
    tombstone: bool = False,
    endpoint: RecordEndpoint = ENDPOINT,
) -> ServiceRecord:
    unsigned = ServiceRecord(
        service_id=block,
        owner_key=bytes(32),
        sequence=sequence,
        issued_at=issued_at,
        lifetime=lifetime,
        flags=RecordFlags.TOMBSTONE if tombstone else RecordFlags(0),
        endpoints=() if tombstone else (endpoint,),
    )
    return sign_record(unsigned, key)


def forged(original: ServiceRecord) -> ServiceRecord:
    """``original`` with one bit of its signature flipped."""
    signature = bytes([original.signature[0] ^ 1]) + original.signature[1:]
    return dataclasses.replace(original, signature=signature)


def verify(candidate: ServiceRecord) -> bool:
    return candidate.verify()


State = tuple[frozenset[ServiceRecord], dict[bytes, int], float | None]


def state(store: RecordStore) -> State:
    """Everything a caller can observe of a store."""
    keys = (public_key_bytes(k) for k in (ALICE, BOB, CAROL))
    owners = {key: store.owner_count(key) for key in keys}
    return frozenset(store.records()), owners, store.next_expiry()


def offer(
    store: RecordStore,
    candidate: ServiceRecord,
    now: float = NOW,
    *,
    responsible: bool = True,
    validated: bool | None = None,
    check: Callable[[ServiceRecord], bool] = verify,
) -> Outcome | Refusal:
    """Offer ``candidate``; a refusal or IDENTICAL must leave ``store`` as it was."""
    before = state(store)
    outcome = store.offer(
        candidate,
        now,
        verify=check,
        responsible=lambda block: responsible,
        addresses_validated=None if validated is None else (lambda r: validated),
    )
    if isinstance(outcome, Refusal) or outcome is Outcome.IDENTICAL:
        assert state(store) == before  # DHT-STORE-2
    else:
        assert store.get(candidate.service_id, now) is candidate
    return outcome


def refused(code: ErrorCode) -> Callable[[object], bool]:
    return lambda outcome: isinstance(outcome, Refusal) and outcome.code is code


# --- accepting ---------------------------------------------------------------------------


def test_defaults_are_the_drafts() -> None:
    store = RecordStore()
    assert (store.max_records, store.max_per_owner) == (MAX_RECORDS_PER_NODE, 64)
    assert MAX_RECORDS_PER_OWNER == 64
    assert ResolverCache().max_entries == 10_000


def test_first_record_is_stored() -> None:
    store = RecordStore()
    live = record(ALICE)
    assert offer(store, live) is Outcome.STORED
    assert store.get(A, NOW) is live
    assert A in store and B not in store
    assert len(store) == 1
    assert list(store.records()) == [live]
    assert store.owner_count(live.owner_key) == 1
    assert store.get(B, NOW) is None


def test_replica_skips_address_validation() -> None:
    # Check 5 is for STORE only: REPLICATE passes no address check.
    assert offer(RecordStore(), record(ALICE), validated=None) is Outcome.STORED
    assert offer(RecordStore(), record(ALICE), validated=True) is Outcome.STORED


# --- the checks in order (DHT-STORE-1) ------------------------------------------------------


def test_each_check_decides_before_the_later_ones() -> None:
    """Start with a record that fails checks 2 to 6 and repair one check at a time."""
    store = RecordStore()
    assert offer(store, record(BOB, sequence=9)) is Outcome.STORED
    expired = record(ALICE, issued_at=NOW - 7200)
    fresh = record(ALICE)
    ladder: list[tuple[ServiceRecord, bool, bool, ErrorCode]] = [
        (forged(expired), False, False, ErrorCode.BAD_SIGNATURE),
        (expired, False, False, ErrorCode.RECORD_EXPIRED),
        (fresh, False, False, ErrorCode.NOT_RESPONSIBLE),
        (fresh, True, False, ErrorCode.ADDRESS_NOT_VALIDATED),
        (fresh, True, True, ErrorCode.NOT_OWNER),
    ]
    for candidate, responsible, validated, code in ladder:
        outcome = offer(store, candidate, responsible=responsible, validated=validated)
        assert refused(code)(outcome), outcome


def test_ownership_is_checked_before_sequence_and_limits() -> None:
    store = RecordStore(max_records=1, max_per_owner=1)
    assert offer(store, record(BOB, sequence=9)) is Outcome.STORED
    assert refused(ErrorCode.NOT_OWNER)(offer(store, record(ALICE, sequence=1)))


def test_sequence_is_checked_before_limits() -> None:
    store = RecordStore(max_records=1, max_per_owner=1)
    assert offer(store, record(ALICE, sequence=5)) is Outcome.STORED
    assert refused(ErrorCode.STALE_SEQUENCE)(offer(store, record(ALICE, sequence=4)))
    assert offer(store, record(ALICE, sequence=6)) is Outcome.REPLACED


def test_zero_owner_key_is_a_bad_signature_without_verifying() -> None:
    calls: list[ServiceRecord] = []

    def spy(candidate: ServiceRecord) -> bool:
        calls.append(candidate)
        return True

    unsigned = dataclasses.replace(record(ALICE), owner_key=bytes(32))
    assert refused(ErrorCode.BAD_SIGNATURE)(offer(RecordStore(), unsigned, check=spy))
    assert calls == []


def test_a_record_signed_by_another_key_is_a_bad_signature() -> None:
    stolen = dataclasses.replace(record(ALICE), owner_key=record(BOB).owner_key)
    assert refused(ErrorCode.BAD_SIGNATURE)(offer(RecordStore(), stolen))


def test_verify_runs_once_per_offer_whatever_the_outcome() -> None:
    calls: list[ServiceRecord] = []

    def spy(candidate: ServiceRecord) -> bool:
        calls.append(candidate)
        return candidate.verify()

    store = RecordStore(max_per_owner=1)
    offers = [
        (record(ALICE), True),  # STORED
        (record(ALICE), True),  # IDENTICAL
        (record(ALICE, sequence=2), True),  # REPLACED
        (record(ALICE, sequence=2, endpoint=OTHER_ENDPOINT), True),  # STALE_SEQUENCE
        (record(BOB), True),  # NOT_OWNER
        (record(ALICE, B), True),  # LIMIT_EXCEEDED
        (record(BOB, B), False),  # NOT_RESPONSIBLE
        (forged(record(BOB, B)), True),  # BAD_SIGNATURE
        (record(BOB, B, issued_at=NOW - 3600), True),  # RECORD_EXPIRED
    ]
    for count, (candidate, responsible) in enumerate(offers, start=1):
        offer(store, candidate, responsible=responsible, check=spy)
        assert len(calls) == count and calls[-1] is candidate


# --- check 3: time ----------------------------------------------------------------------------


def test_clock_skew_tolerance() -> None:
    early = record(ALICE, issued_at=NOW + MAX_CLOCK_SKEW)
    too_early = record(ALICE, issued_at=NOW + MAX_CLOCK_SKEW + 1)
    assert offer(RecordStore(), early) is Outcome.STORED
    assert refused(ErrorCode.RECORD_EXPIRED)(offer(RecordStore(), too_early))
    assert offer(RecordStore(), too_early, now=NOW + 1) is Outcome.STORED


def test_expired_from_issued_at_plus_lifetime_on() -> None:
    short = record(ALICE, lifetime=60)
    assert offer(RecordStore(), short, now=NOW + 59.9) is Outcome.STORED
    assert refused(ErrorCode.RECORD_EXPIRED)(offer(RecordStore(), short, now=NOW + 60))


def test_expired_and_not_responsible_is_expired() -> None:
    stale = record(ALICE, issued_at=NOW - 3600)
    assert refused(ErrorCode.RECORD_EXPIRED)(offer(RecordStore(), stale, responsible=False))


# --- checks 6 and 7: ownership and sequence ----------------------------------------------------


def test_first_come_first_served() -> None:
    store = RecordStore()
    assert offer(store, record(ALICE)) is Outcome.STORED
    for squatter in (record(BOB, sequence=99), record(BOB, sequence=99, tombstone=True)):
        assert refused(ErrorCode.NOT_OWNER)(offer(store, squatter))
    assert store.get(A, NOW) is record(ALICE)


def test_ownership_lapses_when_the_record_expires() -> None:
    store = RecordStore()
    assert offer(store, record(ALICE, lifetime=60)) is Outcome.STORED
    late = record(BOB, issued_at=NOW + 59)
    assert refused(ErrorCode.NOT_OWNER)(offer(store, late, now=NOW + 59))
    # DHT-REC-7: the block is free from the expiry on, even before expire() runs.
    assert store.get(A, NOW + 60) is None
    assert offer(store, late, now=NOW + 60) is Outcome.STORED
    assert store.owner_count(record(ALICE).owner_key) == 0
    assert store.owner_count(late.owner_key) == 1
    assert store.expire(NOW + 60) == []


def test_owner_may_restart_its_sequence_after_expiry() -> None:
    store = RecordStore()
    assert offer(store, record(ALICE, sequence=7, lifetime=60)) is Outcome.STORED
    again = record(ALICE, sequence=1, issued_at=NOW + 60)
    assert offer(store, again, now=NOW + 60) is Outcome.STORED


def test_sequence_strictly_increases() -> None:
    store = RecordStore()
    assert offer(store, record(ALICE, sequence=2)) is Outcome.STORED
    same_sequence = record(ALICE, sequence=2, endpoint=OTHER_ENDPOINT)
    assert refused(ErrorCode.STALE_SEQUENCE)(offer(store, same_sequence))
    assert refused(ErrorCode.STALE_SEQUENCE)(offer(store, record(ALICE, sequence=1)))
    assert offer(store, record(ALICE, sequence=3)) is Outcome.REPLACED
    assert store.get(A, NOW) is record(ALICE, sequence=3)
    assert len(store) == 1


def test_identical_record_is_accepted_without_change() -> None:
    store = RecordStore()
    original = record(ALICE)
    assert offer(store, original) is Outcome.STORED
    repeat = dataclasses.replace(original)
    assert repeat == original and repeat is not original
    assert offer(store, repeat) is Outcome.IDENTICAL
    assert offer(store, repeat, validated=True) is Outcome.IDENTICAL
    assert store.get(A, NOW) is original
    # A repeat is still checked first: once expired, it is refused.
    assert refused(ErrorCode.RECORD_EXPIRED)(offer(store, repeat, now=NOW + 3600))


# --- tombstones (6.7.2) --------------------------------------------------------------------------


def test_tombstone_replaces_and_holds_the_block_until_it_expires() -> None:
    store = RecordStore()
    assert offer(store, record(ALICE)) is Outcome.STORED
    tombstone = record(ALICE, sequence=2, issued_at=NOW + 10, lifetime=100, tombstone=True)
    assert offer(store, tombstone, now=NOW + 10) is Outcome.REPLACED
    # DHT-REC-6: kept, and answered like any record.
    assert store.get(A, NOW + 109) is tombstone
    squatter = record(BOB, issued_at=NOW + 109)
    assert refused(ErrorCode.NOT_OWNER)(offer(store, squatter, now=NOW + 109))
    assert refused(ErrorCode.STALE_SEQUENCE)(offer(store, record(ALICE), now=NOW + 109))
    assert store.expire(NOW + 110) == [tombstone]
    assert offer(store, squatter, now=NOW + 110) is Outcome.STORED


def test_owner_registers_again_over_its_tombstone() -> None:
    store = RecordStore()
    assert offer(store, record(ALICE, sequence=1, tombstone=True)) is Outcome.STORED
    assert offer(store, record(ALICE, sequence=2)) is Outcome.REPLACED
    current = store.get(A, NOW)
    assert current is not None and not current.is_tombstone


# --- check 8: limits ------------------------------------------------------------------------------


def test_per_owner_limit() -> None:
    store = RecordStore(max_per_owner=2)
    alice = record(ALICE).owner_key
    assert offer(store, record(ALICE, A)) is Outcome.STORED
    assert offer(store, record(ALICE, B)) is Outcome.STORED
    assert refused(ErrorCode.LIMIT_EXCEEDED)(offer(store, record(ALICE, C)))
    # Replacing does not add (DHT-STORE-3); other owners are not limited.
    assert offer(store, record(ALICE, A, sequence=2)) is Outcome.REPLACED
    assert offer(store, record(BOB, C)) is Outcome.STORED
    assert store.owner_count(alice) == 2
    assert store.remove(B) is record(ALICE, B)
    assert store.owner_count(alice) == 1
    assert offer(store, record(ALICE, D)) is Outcome.STORED


def test_per_node_limit() -> None:
    store = RecordStore(max_records=2)
    assert offer(store, record(ALICE, A)) is Outcome.STORED
    assert offer(store, record(BOB, B)) is Outcome.STORED
    assert refused(ErrorCode.LIMIT_EXCEEDED)(offer(store, record(CAROL, C)))
    assert offer(store, record(BOB, B, sequence=2)) is Outcome.REPLACED
    assert len(store) == 2


def test_expired_records_count_until_expire_runs_except_the_one_replaced() -> None:
    store = RecordStore(max_records=1, max_per_owner=1)
    assert offer(store, record(ALICE, A, lifetime=10)) is Outcome.STORED
    later = NOW + 10
    # The expired record of the same block is replaced, so it does not count.
    assert offer(store, record(ALICE, A, issued_at=later), now=later) is Outcome.STORED
    assert store.owner_count(record(ALICE).owner_key) == 1
    # An expired record of another block still counts until expire() removes it.
    other = record(BOB, B, issued_at=later + 3600)
    assert refused(ErrorCode.LIMIT_EXCEEDED)(offer(store, other, now=later + 3600))
    assert store.expire(later + 3600) == [record(ALICE, A, issued_at=later)]
    assert offer(store, other, now=later + 3600) is Outcome.STORED


# --- expiry and removal (6.7.3) ------------------------------------------------------------------


def test_expire_and_next_expiry() -> None:
    store = RecordStore()
    assert store.next_expiry() is None
    short, middle, long = (
        record(ALICE, block, lifetime=t) for block, t in ((A, 10), (B, 20), (C, 30))
    )
    for candidate in (long, short, middle):
        assert offer(store, candidate) is Outcome.STORED
    assert store.next_expiry() == NOW + 10
    assert store.expire(NOW + 9.99) == []
    assert store.expire(NOW + 10) == [short]
    assert store.next_expiry() == NOW + 20
    # A replacement moves the block's deadline.
    assert offer(store, record(ALICE, B, sequence=2, lifetime=40), now=NOW + 10) is Outcome.REPLACED
    assert store.next_expiry() == NOW + 30
    assert store.remove(C) is long
    assert store.remove(C) is None
    assert store.next_expiry() == NOW + 40
    assert store.expire(NOW + 1000) == [record(ALICE, B, sequence=2, lifetime=40)]
    assert store.next_expiry() is None
    assert len(store) == 0
    assert store.owner_count(short.owner_key) == 0


def test_many_replacements_keep_one_deadline() -> None:
    store = RecordStore()
    candidates = [record(ALICE, sequence=n, lifetime=100 - n) for n in range(1, 40)]
    for candidate in candidates:
        offer(store, candidate)
    assert store.next_expiry() == candidates[-1].expires_at
    assert store.expire(NOW + 3600) == [candidates[-1]]


def test_expiry_scales_to_the_node_limit() -> None:
    """100,000 records (unsigned: a stub verifier) are stored and expired in order."""
    endpoints = (ENDPOINT,)
    store = RecordStore()
    count = MAX_RECORDS_PER_NODE
    for n in range(count):
        candidate = ServiceRecord(
            service_id=block_base(hashlib.sha256(n.to_bytes(4, "big")).digest()),
            owner_key=n.to_bytes(32, "big") if n else b"\xff" * 32,
            sequence=1,
            issued_at=NOW,
            lifetime=1 + n % 1000,
            flags=RecordFlags(0),
            endpoints=endpoints,
        )
        outcome = store.offer(candidate, NOW, verify=lambda r: True, responsible=lambda b: True)
        assert outcome is Outcome.STORED
    assert len(store) == count
    assert store.next_expiry() == NOW + 1
    assert len(store.expire(NOW + 500)) == count // 2
    assert store.next_expiry() == NOW + 501
    assert len(store.expire(NOW + 1000)) == count // 2
    assert store.next_expiry() is None


# --- the resolver cache (6.9.2) ---------------------------------------------------------------


def test_cache_keeps_verified_records_until_they_expire() -> None:
    cache = ResolverCache()
    cached = record(ALICE, lifetime=60)
    assert cache.put(cached, NOW)
    assert cache.get(A, NOW + 59) is cached
    assert len(cache) == 1
    # DHT-CACHE-2: gone at expiry, and an expired record is never taken.
    assert cache.get(A, NOW + 60) is None
    assert len(cache) == 0
    assert not cache.put(cached, NOW + 60)
    assert cache.get(B, NOW) is None


def test_cache_never_replaces_with_a_sequence_not_higher() -> None:
    cache = ResolverCache()
    assert cache.put(record(ALICE, sequence=5), NOW)
    assert not cache.put(record(ALICE, sequence=5, endpoint=OTHER_ENDPOINT), NOW)  # DHT-CACHE-3
    assert not cache.put(record(ALICE, sequence=4), NOW)
    assert cache.get(A, NOW) is record(ALICE, sequence=5)
    assert cache.put(record(ALICE, sequence=6, tombstone=True), NOW)
    assert cache.get(A, NOW) is record(ALICE, sequence=6, tombstone=True)


def test_cache_takes_a_lower_sequence_once_the_old_record_expired() -> None:
    cache = ResolverCache()
    assert cache.put(record(ALICE, sequence=5, lifetime=10), NOW)
    successor = record(BOB, sequence=1, issued_at=NOW + 10)
    assert cache.put(successor, NOW + 10)
    assert cache.get(A, NOW + 10) is successor


def test_cache_evicts_the_entry_that_expires_first() -> None:
    cache = ResolverCache(max_entries=2)
    assert cache.put(record(ALICE, A, lifetime=100), NOW)
    assert cache.put(record(ALICE, B, lifetime=50), NOW)
    assert cache.put(record(ALICE, C, lifetime=200), NOW)
    assert len(cache) == 2
    assert cache.get(B, NOW) is None
    assert cache.get(A, NOW) is not None and cache.get(C, NOW) is not None
    # Replacing a cached block evicts nothing.
    assert cache.put(record(ALICE, A, sequence=2, lifetime=10), NOW)
    assert cache.get(C, NOW) is not None


def test_negative_answers_last_at_most_30_seconds() -> None:
    cache = ResolverCache()
    assert NEGATIVE_CACHE_LIFETIME == 30
    cache.put_negative(A, NOW, lifetime=3600)  # DHT-CACHE-5: capped
    cache.put_negative(B, NOW, lifetime=5)
    cache.put_negative(C, NOW)
    cache.put_negative(D, NOW, lifetime=0)
    assert cache.is_negative(A, NOW + 29.9) and cache.is_negative(C, NOW + 29.9)
    assert not cache.is_negative(B, NOW + 5)
    assert not cache.is_negative(D, NOW)
    assert not cache.is_negative(A, NOW + 30) and not cache.is_negative(C, NOW + 30)
    assert len(cache) == 0


def test_a_record_clears_the_negative_answer() -> None:
    cache = ResolverCache()
    cache.put_negative(A, NOW)
    assert cache.is_negative(A, NOW)
    assert cache.put(record(ALICE), NOW + 1)
    assert not cache.is_negative(A, NOW + 1)


def test_negative_answers_are_bounded() -> None:
    cache = ResolverCache(max_entries=2)
    cache.put_negative(A, NOW, lifetime=20)
    cache.put_negative(B, NOW, lifetime=10)
    cache.put_negative(C, NOW, lifetime=30)
    assert [cache.is_negative(block, NOW) for block in (A, B, C)] == [True, False, True]


# --- random histories ---------------------------------------------------------------------------

KEYS = (ALICE, BOB, CAROL)
BLOCKS = (A, B, C)
# Issued over the first 240 s of a clock that starts at NOW and only moves forward.
POOL = [
    record(key, block, sequence, issued_at=NOW + issued, lifetime=lifetime, tombstone=tombstone)
    for key in KEYS
    for block in BLOCKS
    for sequence in (1, 2, 3)
    for issued in (0, 120, 240)
    for lifetime in (120, 600)
    for tombstone in (False, True)
]
POOL += [forged(candidate) for candidate in POOL[::37]]


class RecordStoreMachine(RuleBasedStateMachine):
    """Offers from three owners over three blocks, with a moving clock and timer."""

    store: RecordStore
    now: float
    seen: dict[bytes, ServiceRecord]

    @initialize(max_records=st.integers(1, 3), max_per_owner=st.integers(1, 3))
    def start(self, max_records: int, max_per_owner: int) -> None:
        self.store = RecordStore(max_records=max_records, max_per_owner=max_per_owner)
        self.now = NOW
        self.seen = {}

    @rule(
        candidate=st.sampled_from(POOL),
        responsible=st.sampled_from((True, True, True, False)),
        store_kind=st.booleans(),
    )
    def offer(self, candidate: ServiceRecord, responsible: bool, store_kind: bool) -> None:
        outcome = offer(
            self.store,
            candidate,
            self.now,
            responsible=responsible,
            validated=True if store_kind else None,
        )
        if outcome in (Outcome.STORED, Outcome.REPLACED):
            assert candidate.verify() and responsible
            assert candidate.issued_at <= self.now + MAX_CLOCK_SKEW
        if outcome is Outcome.STORED:
            # Stored means the block was free (no unexpired record).
            previous = self.seen.get(candidate.service_id)
            assert previous is None or previous.expires_at <= self.now

    @rule(seconds=st.integers(0, 90))
    def tick(self, seconds: int) -> None:
        self.now += seconds
        deadline = self.store.next_expiry()
        expired = self.store.expire(self.now)
        assert all(r.expires_at <= self.now for r in expired)
        assert bool(expired) == (deadline is not None and deadline <= self.now)

    @rule(block=st.sampled_from(BLOCKS))
    def remove(self, block: bytes) -> None:
        self.store.remove(block)
        self.seen.pop(block, None)

    @invariant()
    def records_are_valid_and_unexpired(self) -> None:
        for stored in self.store.records():
            assert stored.verify()
            assert self.now < stored.expires_at
            assert self.store.get(stored.service_id, self.now) is stored

    @invariant()
    def counts_agree_with_contents(self) -> None:
        stored = list(self.store.records())
        assert len({r.service_id for r in stored}) == len(stored) == len(self.store)
        assert len(stored) <= self.store.max_records
        owners = Counter(r.owner_key for r in stored)
        for key in KEYS:
            owner = public_key_bytes(key)
            assert self.store.owner_count(owner) == owners[owner] <= self.store.max_per_owner
        deadlines = [r.expires_at for r in stored]
        assert self.store.next_expiry() == (min(deadlines) if deadlines else None)

    @invariant()
    def owner_keeps_block_with_rising_sequence(self) -> None:
        for block in BLOCKS:
            previous = self.seen.get(block)
            current = self.store.get(block, self.now)
            if previous is not None and self.now < previous.expires_at:
                assert current is not None
                assert current.owner_key == previous.owner_key
                assert current.sequence >= previous.sequence
            if current is not None:
                self.seen[block] = current


TestRecordStoreMachine = RecordStoreMachine.TestCase
TestRecordStoreMachine.settings = settings(max_examples=60, stateful_step_count=20, deadline=None)


@pytest.mark.parametrize("candidate", [POOL[0], POOL[-1]])
def test_pool_holds_valid_and_forged_records(candidate: ServiceRecord) -> None:
    assert candidate.verify() is (candidate is POOL[0])
