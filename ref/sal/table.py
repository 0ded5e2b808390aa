"""The SAL service table (draft Section 5.6), sans-IO.

Theory of operation.  The table maps serviceID prefixes to entries and each
entry to its rules (Section 5.6.1).  Entries sit in one dict per prefix length
in use, keyed by the prefix's first L bits as an integer, so a lookup shifts
the serviceID to each length present, longest first, and stops at the first
entry that holds a usable rule (SAL-TBL-6, step 2).  Inside an entry, rules
keep their order of installation, which step 4's weighted choice walks.

A lookup returns the chosen rule, or None when no rule is usable: a failed
lookup, which the caller handles differently from the choice of a DROP rule
(Sections 5.8, 5.12, 5.13).  It counts the packet on the rule it returns
(SAL-TBL-5).

Time is the caller's ``now`` in seconds.  Rules made from ServalDHT records
take their hard timeout from the record's expiry, so a table that installs
records runs on the records' clock (Unix time).  Randomness is injected: a
``secrets.SystemRandom()`` in a deployment (SAL-TBL-8), a seeded
``random.Random`` in tests.  Expiry deadlines sit in a heap whose entries may
be early but never late: using a rule only moves its idle deadline later, so
an entry that comes due is checked against the rule and pushed again if the
rule has been used since.
"""

from __future__ import annotations

import dataclasses
import heapq
import ipaddress
import itertools
import math
from collections.abc import Collection, Hashable, Iterator
from enum import Enum
from typing import Protocol, TypeAlias

from ref.wire.constants import (
    BLOCK_BITS,
    BLOCK_SIZE,
    DEMUX_PRIORITY,
    DEMUX_WEIGHT,
    SERVICE_ID_LENGTH,
)
from ref.wire.errors import ErrorCode, LocalProtocolError
from ref.wire.ids import block_base, in_block
from ref.wire.records import ServiceRecord, check_record
from ref.wire.sal import Endpoint, TransportProtocol

SERVICE_ID_BITS = 8 * SERVICE_ID_LENGTH
BLOCK_PREFIX_LENGTH = SERVICE_ID_BITS - BLOCK_BITS  # a block is a /253 (Section 6.1.3)
MAX_PRIORITY = 0xFF
MAX_WEIGHT = 0xFFFF
WHOLE_BLOCK_MASK = 0xFF  # a record endpoint's Service Mask that serves all 8 IDs


class RuleType(Enum):
    """What a rule does with a packet (draft Section 5.6.3)."""

    FORWARD = "forward"
    DEMUX = "demux"
    DELAY = "delay"
    DROP = "drop"


class LookupMode(Enum):
    """Which rules a lookup may select (draft Section 5.6.2)."""

    DEMUX_ONLY = "demux-only"  # an end host's received SYNs and datagrams
    ALL_RULES = "all-rules"  # a service router's, and every host's own packets


class RandomSource(Protocol):
    """The injected generator; ``random.Random`` and ``secrets.SystemRandom`` fit.

    An integer draw, not ``random()``: step 4 of SAL-TBL-6 draws uniformly
    from 0 to W - 1 (SAL-TBL-7), which scaling a float only approximates.
    """

    def randrange(self, stop: int, /) -> int: ...


def _check_service_id(service_id: bytes) -> bytes:
    if len(service_id) != SERVICE_ID_LENGTH:
        raise LocalProtocolError(
            f"a serviceID is {SERVICE_ID_LENGTH} bytes, got {len(service_id)}",
            ErrorCode.BAD_SERVICE_ID,
        )
    return service_id


def _leading_bits(value: int, length: int) -> int:
    return value >> (SERVICE_ID_BITS - length)


@dataclasses.dataclass(frozen=True)
class Prefix:
    """A serviceID prefix: the first ``length`` bits of ``value`` (Section 5.6.1).

    Bits beyond ``length`` are cleared on construction (SAL-TBL-1), so prefixes
    made from any two serviceIDs that share those bits are equal.
    """

    value: bytes
    length: int = SERVICE_ID_BITS
    bits: int = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_service_id(self.value)
        if not 0 <= self.length <= SERVICE_ID_BITS:
            raise LocalProtocolError(f"a prefix length is 0 to 256, got {self.length}")
        bits = _leading_bits(int.from_bytes(self.value, "big"), self.length)
        masked = bits << (SERVICE_ID_BITS - self.length)
        object.__setattr__(self, "bits", bits)
        object.__setattr__(self, "value", masked.to_bytes(SERVICE_ID_LENGTH, "big"))

    def __str__(self) -> str:
        return f"{self.value.hex()}/{self.length}"

    def matches(self, service_id: bytes) -> bool:
        """True when ``service_id`` starts with this prefix."""
        _check_service_id(service_id)
        return _leading_bits(int.from_bytes(service_id, "big"), self.length) == self.bits


#: The prefix of a default entry, which matches every serviceID.
DEFAULT_PREFIX = Prefix(bytes(SERVICE_ID_LENGTH), 0)


@dataclasses.dataclass(frozen=True)
class Listener:
    """A local listener, the target of DEMUX rules (Section 5.6.4).

    ``handle`` is the host's own name for it (a socket object, a number); the
    table only hashes and compares it.  ``transport`` decides which packets
    the listener's rules are usable for (SAL-TBL-6, step 1).
    """

    handle: Hashable
    transport: TransportProtocol


Target: TypeAlias = Endpoint | Listener | None

_TARGET_TYPES: dict[RuleType, type[Endpoint] | type[Listener] | type[None]] = {
    RuleType.FORWARD: Endpoint,
    RuleType.DEMUX: Listener,
    RuleType.DELAY: type(None),
    RuleType.DROP: type(None),
}


@dataclasses.dataclass(frozen=True)
class RuleKey:
    """What identifies a rule: its entry's prefix, its type and its target (5.6.1).

    A FORWARD target is kept in its canonical form (an IPv4-mapped address as
    IPv4), so both spellings of one endpoint name one rule.
    """

    prefix: Prefix
    type: RuleType
    target: Target = None

    def __post_init__(self) -> None:
        expected = _TARGET_TYPES[self.type]
        if not isinstance(self.target, expected):
            raise LocalProtocolError(
                f"the target of a {self.type.name} rule is a {expected.__name__}, "
                f"not {self.target!r}"
            )
        if isinstance(self.target, Endpoint):
            object.__setattr__(self, "target", canonical_endpoint(self.target))


@dataclasses.dataclass(eq=False, slots=True)
class Rule:
    """One rule of the service table (Section 5.6.1).

    ``key`` is frozen.  The table owns the rest once the rule is installed:
    to change a rule, add one with the same key (SAL-TBL-2).  Timeouts are in
    seconds, 0 meaning none.  ``installed_at``, ``last_used`` and the two
    counters are set by :meth:`ServiceTable.add` and :meth:`ServiceTable.lookup`.
    """

    key: RuleKey
    priority: int = 0
    weight: int = 1
    idle_timeout: float = 0.0
    hard_timeout: float = 0.0
    installed_at: float = dataclasses.field(default=0.0, init=False)
    last_used: float | None = dataclasses.field(default=None, init=False)
    packets: int = dataclasses.field(default=0, init=False)
    octets: int = dataclasses.field(default=0, init=False)

    def __post_init__(self) -> None:
        if not 0 <= self.priority <= MAX_PRIORITY:
            raise LocalProtocolError(f"a priority is 0 to {MAX_PRIORITY}, got {self.priority}")
        if not 1 <= self.weight <= MAX_WEIGHT:
            raise LocalProtocolError(f"a weight is 1 to {MAX_WEIGHT}, got {self.weight}")
        for timeout in (self.idle_timeout, self.hard_timeout):
            if not 0 <= timeout < math.inf:
                raise LocalProtocolError(f"a timeout is a finite number >= 0, got {timeout}")

    @classmethod
    def forward(
        cls,
        prefix: Prefix,
        next_hop: Endpoint,
        *,
        priority: int = 0,
        weight: int = 1,
        idle_timeout: float = 0.0,
        hard_timeout: float = 0.0,
    ) -> Rule:
        """A FORWARD rule: send matching packets to ``next_hop``."""
        key = RuleKey(prefix, RuleType.FORWARD, next_hop)
        return cls(key, priority, weight, idle_timeout, hard_timeout)

    @classmethod
    def demux(
        cls,
        prefix: Prefix,
        listener: Listener,
        *,
        priority: int = DEMUX_PRIORITY,
        weight: int = DEMUX_WEIGHT,
    ) -> Rule:
        """A DEMUX rule, with a bind's default priority and weight (SAL-TBL-14)."""
        return cls(RuleKey(prefix, RuleType.DEMUX, listener), priority, weight)

    @classmethod
    def delay(cls, prefix: Prefix = DEFAULT_PREFIX, *, priority: int = 0) -> Rule:
        """A DELAY rule: park matching packets and resolve (SAL-TBL-18)."""
        return cls(RuleKey(prefix, RuleType.DELAY), priority)

    @classmethod
    def drop(cls, prefix: Prefix, *, priority: int = 0) -> Rule:
        """A DROP rule: discard matching packets, counted NO_SERVICE."""
        return cls(RuleKey(prefix, RuleType.DROP), priority)

    @property
    def prefix(self) -> Prefix:
        return self.key.prefix

    @property
    def type(self) -> RuleType:
        return self.key.type

    @property
    def target(self) -> Target:
        return self.key.target

    @property
    def expires_at(self) -> float:
        """When the rule expires (SAL-TBL-3); ``math.inf`` if it never does.

        The idle timeout runs from the later of the last use and the latest
        installation, so adding a rule again (SAL-TBL-2) restarts both timers.
        """
        deadline = math.inf
        if self.hard_timeout:
            deadline = self.installed_at + self.hard_timeout
        if self.idle_timeout:
            idle_since = self.installed_at
            if self.last_used is not None:
                idle_since = max(idle_since, self.last_used)
            deadline = min(deadline, idle_since + self.idle_timeout)
        return deadline


@dataclasses.dataclass
class _RecordRules:
    """Which record a block's installed rules came from (SAL-TBL-21)."""

    owner_key: bytes
    sequence: int
    keys: set[RuleKey]


_Entry = dict[RuleKey, Rule]  # insertion-ordered: the order of installation


class ServiceTable:
    """Prefixes to rules, longest-prefix match, priority sets, weighted choice."""

    def __init__(self, rng: RandomSource) -> None:
        self._rng = rng
        self._levels: dict[int, dict[int, _Entry]] = {}  # length -> leading bits -> entry
        self._lengths: list[int] = []  # the keys of _levels, longest first
        self._count = 0
        self._deadlines: list[tuple[float, int, Rule]] = []
        self._tiebreak = itertools.count()
        self._records: dict[bytes, _RecordRules] = {}  # block base -> its rules

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Rule]:
        for length in self._lengths:
            for entry in self._levels[length].values():
                yield from entry.values()

    def get(self, key: RuleKey) -> Rule | None:
        """The installed rule with ``key``, if any."""
        entry = self._entry(key.prefix)
        return None if entry is None else entry.get(key)

    def add(self, rule: Rule, now: float) -> Rule:
        """Install ``rule`` and return the installed rule.

        If the entry holds a rule with the same key, that rule takes the new
        priority, weight and timeouts and keeps its counters (SAL-TBL-2); it
        counts as installed again at ``now``.  A DEMUX rule for a prefix whose
        entry has another listener's DEMUX rule is refused (SAL-TBL-15).
        """
        entry = self._entry(rule.prefix)
        held = None if entry is None else entry.get(rule.key)
        if held is None:
            if rule.type is RuleType.DEMUX and entry and _has_demux(entry):
                raise LocalProtocolError(f"{rule.prefix} already has a listener")
            rule.installed_at, rule.last_used, rule.packets, rule.octets = now, None, 0, 0
            self._new_entry(rule.prefix)[rule.key] = held = rule
            self._count += 1
        else:
            held.priority, held.weight = rule.priority, rule.weight
            held.idle_timeout, held.hard_timeout = rule.idle_timeout, rule.hard_timeout
            held.installed_at = now
        self._schedule(held)
        return held

    def remove(self, key: RuleKey) -> Rule | None:
        """Remove the rule with ``key`` (SAL-TBL-16 for a listener); return it, if any."""
        level = self._levels.get(key.prefix.length)
        entry = None if level is None else level.get(key.prefix.bits)
        rule = None if entry is None else entry.pop(key, None)
        if level is None or entry is None or rule is None:
            return None
        self._count -= 1
        if not entry:  # an entry without rules is removed (Section 5.6.1)
            del level[key.prefix.bits]
            if not level:
                del self._levels[key.prefix.length]
                self._lengths.remove(key.prefix.length)
        self._forget_record_rule(key)
        return rule

    def lookup(
        self,
        service_id: bytes,
        now: float,
        *,
        protocol: TransportProtocol | int,
        mode: LookupMode,
        octets: int,
        avoid: Collection[Endpoint] = (),
    ) -> Rule | None:
        """Choose the rule for a packet to ``service_id`` (SAL-TBL-6); None if none is usable.

        ``protocol`` is the packet's Protocol field, ``octets`` its length, on
        which the chosen rule is counted (SAL-TBL-5).  ``avoid`` serves
        SAL-FWD-5: FORWARD rules towards these endpoints are left out of the
        weighted choice when the selected priority set holds other rules; it
        changes neither the entry nor the priority set chosen, and when the
        set holds no others the rule returned is one to avoid, which the
        router's loop check then drops.
        """
        value = int.from_bytes(_check_service_id(service_id), "big")
        usable: list[Rule] = []
        for length in self._lengths:
            entry = self._levels[length].get(_leading_bits(value, length))
            if entry is not None:
                usable = [rule for rule in entry.values() if _usable(rule, now, protocol, mode)]
                if usable:
                    break
        if not usable:
            return None
        highest = max(rule.priority for rule in usable)
        selected = [rule for rule in usable if rule.priority == highest]
        avoided = {canonical_endpoint(endpoint) for endpoint in avoid}
        preferred = [rule for rule in selected if not _forwards_to(rule, avoided)]
        chosen = self._weighted_choice(preferred or selected)
        chosen.packets += 1
        chosen.octets += octets
        chosen.last_used = now
        return chosen

    def expire(self, now: float) -> list[Rule]:
        """Remove every rule that has expired by ``now`` (SAL-TBL-4); return them."""
        removed = []
        while self._deadlines and self._deadlines[0][0] <= now:
            _, _, rule = heapq.heappop(self._deadlines)
            if not self._installed(rule):
                continue
            if rule.expires_at <= now:
                self.remove(rule.key)
                removed.append(rule)
            else:  # used since this deadline was pushed
                self._schedule(rule)
        return removed

    def next_expiry(self) -> float | None:
        """When the next rule expires, for the caller's timer; None if none will."""
        while self._deadlines:
            deadline, _, rule = self._deadlines[0]
            if self._installed(rule) and rule.expires_at == deadline:
                return deadline
            heapq.heappop(self._deadlines)
            if self._installed(rule):
                self._schedule(rule)
        return None

    def install_record(self, record: ServiceRecord, now: float) -> list[Rule]:
        """Install the FORWARD rules of a verified record (SAL-TBL-19 to SAL-TBL-21).

        The caller has checked the record as Section 6 requires (signature,
        expiry, and that it is newer than any record it installed before for
        the block).  The rules from an earlier record for the block are
        removed first; a record with the same owner and sequence is the same
        record, whose rules are added again and keep their counters.  A
        tombstone removes the block's rules and installs none.
        """
        check_record(record)
        if record.is_tombstone:
            self._remove_record_rules(record.service_id)
            return []
        rules = rules_from_record(record, now)  # raises before anything changes
        previous = self._records.get(record.service_id)
        if previous is not None and (previous.owner_key, previous.sequence) != (
            record.owner_key,
            record.sequence,
        ):
            self._remove_record_rules(record.service_id)
        installed = [self.add(rule, now) for rule in rules]
        self._records[record.service_id] = _RecordRules(
            record.owner_key, record.sequence, {rule.key for rule in installed}
        )
        return installed

    # --- internals -------------------------------------------------------------

    def _entry(self, prefix: Prefix) -> _Entry | None:
        level = self._levels.get(prefix.length)
        return None if level is None else level.get(prefix.bits)

    def _new_entry(self, prefix: Prefix) -> _Entry:
        if prefix.length not in self._levels:
            self._levels[prefix.length] = {}
            self._lengths = sorted(self._levels, reverse=True)
        return self._levels[prefix.length].setdefault(prefix.bits, {})

    def _installed(self, rule: Rule) -> bool:
        return self.get(rule.key) is rule

    def _schedule(self, rule: Rule) -> None:
        deadline = rule.expires_at
        if deadline < math.inf:
            heapq.heappush(self._deadlines, (deadline, next(self._tiebreak), rule))
        if len(self._deadlines) > 2 * self._count + 64:  # shed entries gone stale
            self._deadlines = [
                (installed.expires_at, next(self._tiebreak), installed)
                for installed in self
                if installed.expires_at < math.inf
            ]
            heapq.heapify(self._deadlines)

    def _weighted_choice(self, rules: list[Rule]) -> Rule:
        # SAL-TBL-6 step 4: the first rule whose running sum of weights exceeds r.
        total = sum(rule.weight for rule in rules)
        point = self._rng.randrange(total)
        running = itertools.accumulate(rule.weight for rule in rules)
        return next(rule for rule, upto in zip(rules, running, strict=True) if upto > point)

    def _remove_record_rules(self, base: bytes) -> None:
        previous = self._records.pop(base, None)
        for key in previous.keys if previous else ():
            self.remove(key)

    def _forget_record_rule(self, key: RuleKey) -> None:
        if key.type is not RuleType.FORWARD or key.prefix.length < BLOCK_PREFIX_LENGTH:
            return
        base = block_base(key.prefix.value)
        record_rules = self._records.get(base)
        if record_rules is not None:
            record_rules.keys.discard(key)
            if not record_rules.keys:
                del self._records[base]


def rules_from_record(record: ServiceRecord, now: float) -> list[Rule]:
    """The FORWARD rules of a verified live record at ``now`` (SAL-TBL-19, SAL-TBL-20).

    Per endpoint, with its priority and weight and a hard timeout that ends at
    the record's expiry: one rule for the block (prefix length 253) when its
    Service Mask is 0xFF, else one rule of length 256 per serviceID it serves.
    ``now`` is on the records' clock (Unix time).  A record with no remaining
    lifetime is refused with RECORD_EXPIRED.
    """
    check_record(record)
    remaining = record.expires_at - now
    if remaining <= 0:
        raise LocalProtocolError(
            "no rules from a record whose remaining lifetime is not positive",
            ErrorCode.RECORD_EXPIRED,
        )
    rules: list[Rule] = []
    for endpoint in record.endpoints:
        next_hop = Endpoint(endpoint.address, endpoint.port)
        if endpoint.service_mask == WHOLE_BLOCK_MASK:
            prefixes = [Prefix(record.service_id, BLOCK_PREFIX_LENGTH)]
        else:
            prefixes = [
                Prefix(in_block(record.service_id, index))
                for index in range(BLOCK_SIZE)
                if endpoint.service_mask >> index & 1
            ]
        rules.extend(
            Rule.forward(
                prefix,
                next_hop,
                priority=endpoint.priority,
                weight=endpoint.weight,
                hard_timeout=remaining,
            )
            for prefix in prefixes
        )
    return rules


def canonical_endpoint(endpoint: Endpoint) -> Endpoint:
    """``endpoint`` with an IPv4-mapped IPv6 address written as IPv4 (RFC 4291)."""
    address = endpoint.address
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return Endpoint(address.ipv4_mapped, endpoint.port)
    return endpoint


def _usable(rule: Rule, now: float, protocol: TransportProtocol | int, mode: LookupMode) -> bool:
    # SAL-TBL-6 step 1; SAL-TBL-4: an expired rule is never selected, removed or not.
    if now >= rule.expires_at:
        return False
    if isinstance(rule.target, Listener):
        return rule.target.transport == protocol
    return mode is LookupMode.ALL_RULES


def _forwards_to(rule: Rule, endpoints: set[Endpoint]) -> bool:
    return isinstance(rule.target, Endpoint) and rule.target in endpoints


def _has_demux(entry: _Entry) -> bool:
    return any(key.type is RuleType.DEMUX for key in entry)
