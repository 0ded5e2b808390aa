"""The SAL service table (draft Section 5.6): entries, lookup, expiry, records.

Every test injects a seeded ``random.Random`` (or a scripted generator), so
runs are reproducible.  Docstrings cite the requirement IDs (SAL-TBL-n) that
each test checks.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import random
from collections import Counter
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ref.sal.table import (
    BLOCK_PREFIX_LENGTH,
    DEFAULT_PREFIX,
    Listener,
    LookupMode,
    Prefix,
    Rule,
    RuleKey,
    RuleType,
    ServiceTable,
    Target,
    rules_from_record,
)
from ref.wire.constants import DEMUX_PRIORITY, DEMUX_WEIGHT
from ref.wire.errors import ErrorCode, LocalProtocolError
from ref.wire.ids import block_base, in_block
from ref.wire.records import RecordEndpoint, RecordFlags, ServiceRecord
from ref.wire.sal import Endpoint, TransportProtocol

ALL = LookupMode.ALL_RULES
DEMUX_ONLY = LookupMode.DEMUX_ONLY
DATAGRAM = TransportProtocol.DATAGRAM
STREAM = TransportProtocol.STREAM
SERVICE = block_base(hashlib.sha256(b"service table test").digest())
OWNER = bytes(range(32))


def hop(n: int) -> Endpoint:
    return Endpoint(ipaddress.ip_address(f"192.0.2.{n}"), 54325)


def table(seed: int = 1) -> ServiceTable:
    return ServiceTable(random.Random(seed))


def look(
    t: ServiceTable,
    service_id: bytes = SERVICE,
    now: float = 0.0,
    *,
    protocol: TransportProtocol | int = DATAGRAM,
    mode: LookupMode = ALL,
    octets: int = 100,
    avoid: tuple[Endpoint, ...] = (),
) -> Rule | None:
    return t.lookup(service_id, now, protocol=protocol, mode=mode, octets=octets, avoid=avoid)


def with_bit_flipped(value: bytes, bit: int) -> bytes:
    flipped = int.from_bytes(value, "big") ^ (1 << (255 - bit))
    return flipped.to_bytes(32, "big")


class ScriptedRandom:
    """Returns the draws it is given and records each bound it is asked for."""

    def __init__(self, draws: list[int]) -> None:
        self.draws = draws
        self.bounds: list[int] = []

    def randrange(self, stop: int, /) -> int:
        self.bounds.append(stop)
        return self.draws.pop(0)


# --- entries and rules (Section 5.6.1) ---------------------------------------------


def test_prefix_clears_bits_beyond_its_length() -> None:
    """SAL-TBL-1: one prefix, one entry, whatever serviceID it was made from."""
    member = in_block(SERVICE, 5)
    assert Prefix(member, BLOCK_PREFIX_LENGTH) == Prefix(SERVICE, BLOCK_PREFIX_LENGTH)
    assert Prefix(member, BLOCK_PREFIX_LENGTH).value == SERVICE
    assert Prefix(b"\xff" * 32, 12).value == b"\xff\xf0" + bytes(30)
    assert DEFAULT_PREFIX.matches(b"\xab" * 32)
    assert Prefix(member, 253).matches(in_block(SERVICE, 2))
    assert not Prefix(member, 256).matches(in_block(SERVICE, 2))
    assert str(Prefix(b"\xff" * 32, 4)) == "f0" + "00" * 31 + "/4"

    t = table()
    t.add(Rule.forward(Prefix(member, 253), hop(1)), 0.0)
    t.add(Rule.forward(Prefix(SERVICE, 253), hop(2)), 0.0)
    assert len(t) == 2
    assert {rule.prefix for rule in t} == {Prefix(SERVICE, 253)}


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda: Prefix(SERVICE, 257), ErrorCode.MALFORMED),
        (lambda: Prefix(SERVICE, -1), ErrorCode.MALFORMED),
        (lambda: Prefix(SERVICE[:31], 8), ErrorCode.BAD_SERVICE_ID),
        (lambda: Rule.forward(Prefix(SERVICE), hop(1), weight=0), ErrorCode.MALFORMED),
        (lambda: Rule.forward(Prefix(SERVICE), hop(1), weight=65536), ErrorCode.MALFORMED),
        (lambda: Rule.forward(Prefix(SERVICE), hop(1), priority=256), ErrorCode.MALFORMED),
        (lambda: Rule.forward(Prefix(SERVICE), hop(1), priority=-1), ErrorCode.MALFORMED),
        (lambda: Rule.forward(Prefix(SERVICE), hop(1), idle_timeout=-1), ErrorCode.MALFORMED),
        (lambda: Rule.forward(Prefix(SERVICE), hop(1), hard_timeout=math.inf), ErrorCode.MALFORMED),
        (lambda: Rule.forward(Prefix(SERVICE), hop(1), hard_timeout=math.nan), ErrorCode.MALFORMED),
        (lambda: RuleKey(Prefix(SERVICE), RuleType.FORWARD), ErrorCode.MALFORMED),
        (lambda: RuleKey(Prefix(SERVICE), RuleType.DEMUX, hop(1)), ErrorCode.MALFORMED),
        (lambda: RuleKey(Prefix(SERVICE), RuleType.DROP, hop(1)), ErrorCode.MALFORMED),
    ],
    ids=[
        "length-257",
        "length-negative",
        "short-service-id",
        "weight-0",
        "weight-65536",
        "priority-256",
        "priority-negative",
        "timeout-negative",
        "timeout-infinite",
        "timeout-nan",
        "forward-without-endpoint",
        "demux-with-endpoint",
        "drop-with-target",
    ],
)
def test_invalid_rules_are_refused(make: Callable[[], object], code: ErrorCode) -> None:
    """Section 5.6.1: length 0-256, priority 0-255, weight 1-65535, targets by type."""
    with pytest.raises(LocalProtocolError) as caught:
        make()
    assert caught.value.error_code is code


def test_lookup_refuses_a_service_id_of_the_wrong_length() -> None:
    with pytest.raises(LocalProtocolError) as caught:
        look(table(), SERVICE + b"\x00")
    assert caught.value.error_code is ErrorCode.BAD_SERVICE_ID


def test_adding_a_held_rule_replaces_settings_and_keeps_counters() -> None:
    """SAL-TBL-2: same type and target in one entry is one rule; counters survive."""
    t = table()
    first = t.add(Rule.forward(Prefix(SERVICE), hop(1), priority=1, weight=2), 0.0)
    look(t, now=1.0, octets=40)
    again = t.add(Rule.forward(Prefix(SERVICE), hop(1), priority=9, weight=7, idle_timeout=5), 2.0)
    assert again is first and len(t) == 1
    assert (again.priority, again.weight, again.idle_timeout) == (9, 7, 5)
    assert (again.packets, again.octets, again.last_used) == (1, 40, 1.0)
    assert again.installed_at == 2.0
    assert again.expires_at == 7.0  # the idle timer runs from the re-installation


def test_a_new_rule_starts_with_fresh_counters() -> None:
    t = table()
    rule = Rule.delay()
    t.add(rule, 3.0)
    assert (rule.installed_at, rule.last_used, rule.packets, rule.octets) == (3.0, None, 0, 0)
    assert t.get(rule.key) is rule


def test_ipv4_mapped_and_ipv4_next_hops_are_one_rule() -> None:
    """Section 5.6.1: one rule per FORWARD endpoint, whichever way its address is written."""
    mapped = Endpoint(ipaddress.ip_address("::ffff:192.0.2.1"), 54325)
    t = table()
    t.add(Rule.forward(Prefix(SERVICE), mapped), 0.0)
    t.add(Rule.forward(Prefix(SERVICE), hop(1)), 0.0)
    assert len(t) == 1
    assert next(iter(t)).target == hop(1)


def test_remove_drops_the_rule_and_its_empty_entry() -> None:
    """Section 5.6.1: an entry without rules is removed."""
    t = table()
    rule = t.add(Rule.forward(Prefix(SERVICE, 40), hop(1)), 0.0)
    t.add(Rule.drop(DEFAULT_PREFIX), 0.0)
    assert t.remove(rule.key) is rule
    assert t.remove(rule.key) is None
    assert t.get(rule.key) is None
    assert [r.type for r in t] == [RuleType.DROP]
    assert look(t).type is RuleType.DROP  # type: ignore[union-attr]


# --- lookup (Section 5.6.2) ---------------------------------------------------------


def test_longest_prefix_wins() -> None:
    """SAL-TBL-6 step 2: the matching entry with the longest prefix is used."""
    t = table()
    for length, n in [(0, 1), (8, 2), (200, 3), (BLOCK_PREFIX_LENGTH, 4), (256, 5)]:
        t.add(Rule.forward(Prefix(SERVICE, length), hop(n)), 0.0)
    assert look(t, SERVICE).target == hop(5)  # type: ignore[union-attr]
    assert look(t, in_block(SERVICE, 3)).target == hop(4)  # type: ignore[union-attr]
    assert look(t, with_bit_flipped(SERVICE, 200)).target == hop(3)  # type: ignore[union-attr]
    assert look(t, with_bit_flipped(SERVICE, 100)).target == hop(2)  # type: ignore[union-attr]
    assert look(t, with_bit_flipped(SERVICE, 7)).target == hop(1)  # type: ignore[union-attr]


def test_default_rule_matches_every_service_id() -> None:
    """SAL-TBL-17: a prefix of length 0 forwards everything to a configured router."""
    t = table()
    router = t.add(Rule.forward(DEFAULT_PREFIX, hop(9)), 0.0)
    for service_id in (bytes(32), b"\xff" * 32, SERVICE):
        assert look(t, service_id) is router


def test_a_default_delay_rule_hands_unknown_ids_to_the_resolver() -> None:
    """SAL-TBL-18: a default DELAY rule; a known serviceID still takes its own rule."""
    t = table()
    t.add(Rule.delay(), 0.0)
    known = t.add(Rule.forward(Prefix(SERVICE), hop(1)), 0.0)
    assert look(t, b"\x01" * 32).type is RuleType.DELAY  # type: ignore[union-attr]
    assert look(t, SERVICE) is known


def test_no_match_is_not_a_drop() -> None:
    """SAL-TBL-6 step 2: a failed lookup (None) differs from selecting a DROP rule."""
    t = table()
    assert look(t) is None
    t.add(Rule.drop(Prefix(SERVICE)), 0.0)
    chosen = look(t)
    assert chosen is not None and chosen.type is RuleType.DROP
    assert look(t, b"\x01" * 32) is None


def test_shorter_prefix_when_longer_entry_has_no_usable_rule() -> None:
    """SAL-TBL-6 steps 1-2: entries without a usable rule are passed over."""
    t = table()
    stream_listener = Listener("stream socket", STREAM)
    t.add(Rule.demux(Prefix(SERVICE), stream_listener), 0.0)
    fallback = t.add(Rule.forward(Prefix(SERVICE, 16), hop(2)), 0.0)
    assert look(t, protocol=DATAGRAM) is fallback
    assert look(t, protocol=STREAM).target == stream_listener  # type: ignore[union-attr]


def test_demux_only_mode_sees_only_demux_rules() -> None:
    """SAL-TBL-6 step 1: in mode DEMUX-only, only DEMUX rules are usable."""
    t = table()
    for rule in (Rule.forward(Prefix(SERVICE), hop(1)), Rule.delay(), Rule.drop(Prefix(SERVICE))):
        t.add(rule, 0.0)
    assert look(t, mode=DEMUX_ONLY) is None
    listener = t.add(Rule.demux(Prefix(SERVICE, 128), Listener(7, DATAGRAM)), 0.0)
    assert look(t, mode=DEMUX_ONLY) is listener
    assert look(t, mode=ALL).type is RuleType.FORWARD  # type: ignore[union-attr]


def test_demux_rule_needs_the_packets_protocol() -> None:
    """SAL-TBL-6 step 1 and Section 5.5 step 7: no listener has an unknown Protocol."""
    t = table()
    t.add(Rule.demux(Prefix(SERVICE), Listener("l", DATAGRAM)), 0.0)
    assert look(t, protocol=STREAM, mode=DEMUX_ONLY) is None
    assert look(t, protocol=7, mode=ALL) is None
    router = t.add(Rule.forward(DEFAULT_PREFIX, hop(1)), 0.0)
    assert look(t, protocol=7, mode=ALL) is router  # a router forwards any Protocol


def test_higher_priority_set_is_used_while_usable() -> None:
    """SAL-TBL-6 step 3: a lower priority serves only when no higher one is usable."""
    t = table()
    primary = t.add(Rule.forward(Prefix(SERVICE), hop(1), priority=200, idle_timeout=10), 0.0)
    backup = t.add(Rule.forward(Prefix(SERVICE), hop(2), priority=100), 0.0)
    assert all(look(t, now=float(n)) is primary for n in range(10))
    assert look(t, now=25.0) is backup  # primary idle since 9: expired at 19
    t.add(Rule.forward(Prefix(SERVICE), hop(3), priority=200), 25.0)
    assert look(t, now=26.0).target == hop(3)  # type: ignore[union-attr]


def test_priority_set_skips_unusable_members() -> None:
    """SAL-TBL-6 steps 1 and 3: the priority set is taken among usable rules only."""
    t = table()
    t.add(Rule.demux(Prefix(SERVICE), Listener("s", STREAM), priority=255), 0.0)
    lower = t.add(Rule.forward(Prefix(SERVICE), hop(1), priority=3), 0.0)
    assert look(t, protocol=DATAGRAM) is lower


def test_weighted_choice_follows_installation_order() -> None:
    """SAL-TBL-6 step 4: draw r in 0..W-1, take the first rule whose running sum exceeds r."""
    rng = ScriptedRandom([0, 1, 2, 4, 5, 9])
    t = ServiceTable(rng)
    a = t.add(Rule.forward(Prefix(SERVICE), hop(1), priority=1, weight=2), 0.0)
    b = t.add(Rule.forward(Prefix(SERVICE), hop(2), priority=1, weight=3), 0.0)
    c = t.add(Rule.forward(Prefix(SERVICE), hop(3), priority=1, weight=5), 0.0)
    t.add(Rule.forward(Prefix(SERVICE), hop(4), priority=0, weight=9), 0.0)
    assert [look(t) for _ in range(6)] == [a, a, b, b, c, c]
    assert rng.bounds == [10] * 6


def test_weighted_anycast_distribution() -> None:
    """SAL-TBL-6 step 4, SAL-TBL-7: rule i is chosen with probability w_i / W.

    10,000 lookups; each count lies within 5 standard deviations of the
    binomial mean.
    """
    t = table(seed=20240501)
    weights = {hop(1): 1, hop(2): 3, hop(3): 6, hop(4): 90}
    for endpoint, weight in weights.items():
        t.add(Rule.forward(Prefix(SERVICE, 253), endpoint, weight=weight), 0.0)
    trials = 10_000
    counts = Counter(look(t, in_block(SERVICE, 1)).target for _ in range(trials))  # type: ignore[union-attr]
    total = sum(weights.values())
    for endpoint, weight in weights.items():
        p = weight / total
        sigma = math.sqrt(trials * p * (1 - p))
        assert abs(counts[endpoint] - trials * p) <= 5 * sigma, (endpoint, counts)


def test_avoid_leaves_listed_next_hops_out_of_the_choice() -> None:
    """SAL-FWD-5 with SAL-TBL-6: step 4 again without the FORWARD rules listed."""
    t = table()
    a = t.add(Rule.forward(Prefix(SERVICE), hop(1), priority=5), 0.0)
    b = t.add(Rule.forward(Prefix(SERVICE), hop(2), priority=5), 0.0)
    t.add(Rule.forward(Prefix(SERVICE), hop(3), priority=1), 0.0)
    mapped = Endpoint(ipaddress.ip_address("::ffff:192.0.2.1"), 54325)
    assert all(look(t, avoid=(mapped,)) is b for _ in range(50))
    # With the whole priority set avoided, no lower priority is tried.
    assert look(t, avoid=(hop(1), hop(2))) in (a, b)


# --- counters and expiry (Section 5.6.1) ---------------------------------------------


def test_selection_updates_counters() -> None:
    """SAL-TBL-5: one packet, its octets and the time of last use, per selection."""
    t = table()
    rule = t.add(Rule.forward(Prefix(SERVICE), hop(1)), 0.0)
    look(t, now=1.5, octets=60)
    look(t, now=2.5, octets=1200)
    assert (rule.packets, rule.octets, rule.last_used) == (2, 1260, 2.5)
    look(t, b"\x01" * 32, now=3.0)  # no match: no rule is counted
    assert rule.packets == 2


def test_idle_timeout_runs_from_last_use() -> None:
    """SAL-TBL-3, SAL-TBL-4: idle timeout after last use, or installation if unused."""
    t = table()
    unused = t.add(Rule.forward(Prefix(SERVICE, 8), hop(1), idle_timeout=10), 0.0)
    used = t.add(Rule.forward(Prefix(SERVICE), hop(2), idle_timeout=10), 0.0)
    look(t, now=5.0)
    assert (unused.expires_at, used.expires_at) == (10.0, 15.0)
    assert t.next_expiry() == 10.0
    assert t.expire(9.9) == []
    assert t.expire(10.0) == [unused]
    assert t.next_expiry() == 15.0
    assert look(t, now=15.0) is None  # expired, not yet removed: never selected
    assert t.expire(15.0) == [used]
    assert len(t) == 0 and t.next_expiry() is None


def test_hard_timeout_ignores_use() -> None:
    """SAL-TBL-3: a hard timeout runs from installation, however busy the rule."""
    t = table()
    rule = t.add(Rule.forward(Prefix(SERVICE), hop(1), hard_timeout=10), 2.0)
    for now in range(2, 12):
        look(t, now=float(now))
    assert rule.expires_at == 12.0 and t.next_expiry() == 12.0
    assert t.expire(12.0) == [rule]


def test_whichever_timeout_comes_first() -> None:
    """SAL-TBL-3: both timeouts set; 0 means none."""
    t = table()
    rule = t.add(Rule.forward(Prefix(SERVICE), hop(1), idle_timeout=4, hard_timeout=10), 0.0)
    assert rule.expires_at == 4.0
    for now in (3.0, 6.0, 9.0):
        look(t, now=now)
    assert rule.expires_at == 10.0
    forever = t.add(Rule.forward(Prefix(SERVICE, 3), hop(2)), 0.0)
    assert forever.expires_at == math.inf
    assert t.expire(1e12) == [rule]
    assert t.next_expiry() is None and list(t) == [forever]


def test_next_expiry_follows_replacement() -> None:
    """SAL-TBL-2 with SAL-TBL-3: replacing timeouts moves the deadline either way."""
    t = table()
    key = Rule.forward(Prefix(SERVICE), hop(1)).key
    t.add(Rule(key, hard_timeout=100), 0.0)
    t.add(Rule(key, hard_timeout=5), 10.0)
    assert t.next_expiry() == 15.0
    t.add(Rule(key, hard_timeout=50), 12.0)
    assert t.next_expiry() == 62.0
    assert t.expire(61.0) == []
    t.add(Rule(key), 61.0)
    assert t.next_expiry() is None and t.expire(1e9) == []


def test_stale_deadlines_do_not_pile_up() -> None:
    t = table()
    key = Rule.forward(Prefix(SERVICE), hop(1)).key
    for n in range(1000):
        t.add(Rule(key, idle_timeout=1 + n), float(n))
    assert len(t._deadlines) <= 2 * len(t) + 64
    assert t.next_expiry() == 999.0 + 1000


# --- binding (Section 5.6.4) --------------------------------------------------------


def test_bind_defaults_and_one_listener_per_prefix() -> None:
    """SAL-TBL-14, SAL-TBL-15, SAL-TBL-16: /256, priority 255, weight 1; one listener."""
    t = table()
    listener = Listener("socket 1", STREAM)
    rule = t.add(Rule.demux(Prefix(SERVICE), listener), 0.0)
    assert (rule.prefix.length, rule.priority, rule.weight) == (256, DEMUX_PRIORITY, DEMUX_WEIGHT)
    with pytest.raises(LocalProtocolError):
        t.add(Rule.demux(Prefix(SERVICE), Listener("socket 2", STREAM)), 0.0)
    assert t.add(Rule.demux(Prefix(SERVICE), listener, priority=7), 1.0) is rule
    t.add(Rule.demux(Prefix(SERVICE, 255), Listener("socket 2", STREAM)), 0.0)
    assert t.remove(rule.key) is rule
    assert look(t, protocol=STREAM, mode=DEMUX_ONLY).prefix.length == 255  # type: ignore[union-attr]


# --- rules from ServalDHT records (Section 5.6.5) -------------------------------------


def record(
    *endpoints: RecordEndpoint,
    sequence: int = 1,
    issued_at: int = 1_000,
    lifetime: int = 3_600,
    service_id: bytes = SERVICE,
) -> ServiceRecord:
    flags = RecordFlags(0) if endpoints else RecordFlags.TOMBSTONE
    return ServiceRecord(service_id, OWNER, sequence, issued_at, lifetime, flags, endpoints)


def record_endpoint(
    n: int, *, priority: int = 0, weight: int = 1, mask: int = 0xFF
) -> RecordEndpoint:
    return RecordEndpoint(hop(n).address, 54325, priority, weight, mask)


def test_rules_from_record_whole_block() -> None:
    """SAL-TBL-19: mask 0xFF gives one /253 rule; priority, weight; hard timeout at expiry."""
    rules = rules_from_record(record(record_endpoint(1, priority=7, weight=300)), now=1_500)
    assert len(rules) == 1
    [rule] = rules
    assert (rule.type, rule.target, rule.prefix) == (
        RuleType.FORWARD,
        hop(1),
        Prefix(SERVICE, BLOCK_PREFIX_LENGTH),
    )
    assert (rule.priority, rule.weight, rule.idle_timeout, rule.hard_timeout) == (7, 300, 0, 3_100)


def test_rules_from_record_partial_mask() -> None:
    """SAL-TBL-19: otherwise one /256 rule per serviceID the mask includes (bit i: base + i)."""
    rec = record(record_endpoint(1, mask=0b1000_0101), record_endpoint(2, priority=3))
    rules = rules_from_record(rec, now=1_000)
    partial = [rule.prefix for rule in rules if rule.target == hop(1)]
    assert partial == [Prefix(in_block(SERVICE, i)) for i in (0, 2, 7)]
    assert [rule.prefix.length for rule in rules] == [256, 256, 256, BLOCK_PREFIX_LENGTH]
    assert {rule.hard_timeout for rule in rules} == {3_600}


@pytest.mark.parametrize("now", [4_600, 5_000])
def test_no_rules_from_an_expired_record(now: int) -> None:
    """SAL-TBL-20: a record whose remaining lifetime is zero or less installs nothing."""
    t = table()
    with pytest.raises(LocalProtocolError) as caught:
        t.install_record(record(record_endpoint(1)), now)
    assert caught.value.error_code is ErrorCode.RECORD_EXPIRED
    assert len(t) == 0


def test_rules_from_record_refuses_a_malformed_record() -> None:
    with pytest.raises(LocalProtocolError) as caught:
        rules_from_record(record(record_endpoint(1), service_id=in_block(SERVICE, 1)), 1_000)
    assert caught.value.error_code is ErrorCode.BAD_SERVICE_ID


def test_record_rules_expire_with_the_record() -> None:
    """SAL-TBL-19 with SAL-TBL-3: the rules go at the record's expiry, not before."""
    t = table()
    installed = t.install_record(record(record_endpoint(1), record_endpoint(2, mask=2)), 1_500)
    assert {rule.expires_at for rule in installed} == {4_600}
    assert t.next_expiry() == 4_600
    assert look(t, in_block(SERVICE, 1), now=4_599).target == hop(2)  # type: ignore[union-attr]
    assert t.expire(4_599.5) == []
    assert look(t, in_block(SERVICE, 1), now=4_600) is None
    assert set(t.expire(4_600)) == set(installed)
    assert len(t) == 0 and t._records == {}


def test_record_lookups_prefer_priority_then_weight() -> None:
    """SAL-TBL-19 with SAL-TBL-6: an installed record acts through the usual lookup."""
    t = table()
    rec = record(record_endpoint(1, priority=9, weight=1), record_endpoint(2, priority=1))
    t.install_record(rec, 1_000)
    assert look(t, in_block(SERVICE, 6), now=1_001).target == hop(1)  # type: ignore[union-attr]


def test_install_record_replaces_the_older_records_rules() -> None:
    """SAL-TBL-21: a newer record's rules replace the older record's, and only those."""
    t = table()
    manual = t.add(Rule.forward(DEFAULT_PREFIX, hop(9)), 0.0)
    other_block = t.install_record(
        record(record_endpoint(8), service_id=block_base(b"\x11" * 32)), 1_000
    )
    t.install_record(record(record_endpoint(1), record_endpoint(2, mask=0x0F)), 1_000)
    newer = t.install_record(record(record_endpoint(3, mask=0x10), sequence=2), 1_100)
    assert [rule.target for rule in newer] == [hop(3)]
    assert set(t) == {manual, *other_block, *newer}
    assert look(t, in_block(SERVICE, 4), now=1_100) is newer[0]
    assert look(t, in_block(SERVICE, 0), now=1_100) is manual


def test_installing_the_same_record_again_keeps_counters() -> None:
    """SAL-TBL-2: the same record (owner and sequence) re-adds its rules in place."""
    t = table()
    rec = record(record_endpoint(1))
    [rule] = t.install_record(rec, 1_000)
    look(t, now=1_001, octets=80)
    [again] = t.install_record(rec, 1_002)
    assert again is rule and (rule.packets, rule.octets) == (1, 80)
    assert rule.expires_at == 4_600
    [newer] = t.install_record(record(record_endpoint(1), sequence=2, issued_at=1_003), 1_003)
    assert newer.packets == 0 and newer.expires_at == 4_603


def test_tombstone_removes_the_blocks_rules() -> None:
    """SAL-TBL-21: a tombstone removes the block's rules without replacement."""
    t = table()
    t.install_record(record(record_endpoint(1), record_endpoint(2, mask=0x81)), 1_000)
    assert t.install_record(record(sequence=2), 1_001) == []
    assert len(t) == 0 and look(t, now=1_001) is None


# --- longest-prefix match against a brute-force reference --------------------------

_BASE = hashlib.sha256(b"lpm property").digest()
_IDS = [_BASE] + [with_bit_flipped(_BASE, bit) for bit in (0, 7, 100, 252, 253, 255)]
_TARGETS: dict[RuleType, list[Target]] = {
    RuleType.FORWARD: [hop(1), hop(2), hop(3)],
    RuleType.DEMUX: [Listener("a", DATAGRAM), Listener("b", STREAM)],
    RuleType.DELAY: [None],
    RuleType.DROP: [None],
}


@st.composite
def rule_settings(draw: st.DrawFn) -> Rule:
    kind = draw(st.sampled_from(RuleType))
    prefix = Prefix(draw(st.sampled_from(_IDS)), draw(st.integers(0, 256)))
    key = RuleKey(prefix, kind, draw(st.sampled_from(_TARGETS[kind])))
    return Rule(key, priority=draw(st.integers(0, 3)), weight=draw(st.integers(1, 4)))


def reference_choices(
    rules: dict[RuleKey, Rule],
    service_id: bytes,
    protocol: TransportProtocol,
    mode: LookupMode,
) -> set[RuleKey]:
    """Section 5.6.2 steps 1-3 by brute force: the keys the weighted choice draws from."""

    def usable(rule: Rule) -> bool:
        if isinstance(rule.target, Listener):
            return rule.target.transport == protocol
        return mode is ALL

    candidates = [r for r in rules.values() if r.prefix.matches(service_id) and usable(r)]
    if not candidates:
        return set()
    longest = max(r.prefix.length for r in candidates)
    in_entry = [r for r in candidates if r.prefix.length == longest]
    highest = max(r.priority for r in in_entry)
    return {r.key for r in in_entry if r.priority == highest}


@given(
    rules=st.lists(rule_settings(), max_size=30),
    service_id=st.sampled_from(_IDS),
    protocol=st.sampled_from([DATAGRAM, STREAM]),
    mode=st.sampled_from(LookupMode),
    seed=st.integers(0, 2**32),
)
def test_lookup_matches_brute_force_reference(
    rules: list[Rule],
    service_id: bytes,
    protocol: TransportProtocol,
    mode: LookupMode,
    seed: int,
) -> None:
    """SAL-TBL-6, SAL-TBL-2, SAL-TBL-15: the chosen rule is one the reference allows."""
    t = table(seed)
    model: dict[RuleKey, Rule] = {}
    for rule in rules:
        held_demux = {k for k in model if k.prefix == rule.prefix and k.type is RuleType.DEMUX}
        if rule.type is RuleType.DEMUX and held_demux - {rule.key}:
            with pytest.raises(LocalProtocolError):
                t.add(rule, 0.0)
            continue
        t.add(rule, 0.0)
        model[rule.key] = rule
    assert len(t) == len(model)
    expected = reference_choices(model, service_id, protocol, mode)
    chosen = t.lookup(service_id, 1.0, protocol=protocol, mode=mode, octets=1)
    if not expected:
        assert chosen is None
    else:
        assert chosen is not None and chosen.key in expected
