"""Broken variants for the target as a client (Sections 5.6.3, 5.6.5, 5.8.1 and 5.8.3).

Each breaks one rule of the host's client side or of its DELAY and
record rules, by monkeypatching ``ref.sal.host`` or ``ref.sal.table``; the
cases of ``conformance/cases/sal_client.py`` must catch every one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from .variants import Variant

CLIENT = "sal.client"


class _FirstDraw:
    """A generator whose first ``randrange`` returns ``value``; the rest come from ``rng``."""

    def __init__(self, rng: Any, value: int) -> None:
        self._rng = rng
        self._value: int | None = value

    def randrange(self, stop: int) -> int:
        if self._value is None:
            return int(self._rng.randrange(stop))
        value, self._value = self._value, None
        return value

    def randbytes(self, n: int) -> bytes:
        return bytes(self._rng.randbytes(n))


def _fixed_iss(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-CONN-1 broken: every client flow starts with the same ISS (its first draw)."""
    from ref.sal.host import Host

    original = Host.connect

    def connect(self: Host, *args: Any, **kwargs: Any) -> int:
        rng = self.rng
        self.rng = _FirstDraw(rng, 0x5EED5EED)
        try:
            return original(self, *args, **kwargs)
        finally:
            self.rng = rng

    monkeypatch.setattr(Host, "connect", connect)


def _syn_ack_any_ackno(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-CONN-13 broken: a SYN-ACK's ackno is not checked."""
    from ref.sal.flow import seq_add
    from ref.sal.host import Host

    original = Host._on_syn_ack

    def on_syn_ack(self: Host, flow: Any, packet: Any, control: Any, *rest: Any) -> None:
        control = dataclasses.replace(control, ackno=seq_add(flow.iss, 1))
        original(self, flow, packet, control, *rest)

    monkeypatch.setattr(Host, "_on_syn_ack", on_syn_ack)


def _syn_ack_from_syn_destination_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-CONN-14 broken: a SYN-ACK must come from where the SYN was sent."""
    from ref.sal.host import Host
    from ref.sal.table import RuleType
    from ref.wire import ErrorCode, RemoteProtocolError

    sent_to: dict[int, Any] = {}
    act, on_syn_ack = Host._act, Host._on_syn_ack

    def act_(self: Host, rule: Any, packet: Any, encoded: Any, now: float, **kw: Any) -> None:
        flow = kw["flow"]
        if flow is not None and kw["received"] is None and rule.type is RuleType.FORWARD:
            sent_to[flow.local_flow_id] = rule.target
        act(self, rule, packet, encoded, now, **kw)

    def on_syn_ack_(
        self: Host, flow: Any, packet: Any, control: Any, flags: int, source: Any, now: float
    ) -> None:
        if sent_to.get(flow.local_flow_id, source) != source:
            raise RemoteProtocolError("a SYN-ACK from elsewhere", ErrorCode.BAD_SEQUENCE)
        on_syn_ack(self, flow, packet, control, flags, source, now)

    monkeypatch.setattr(Host, "_act", act_)
    monkeypatch.setattr(Host, "_on_syn_ack", on_syn_ack_)


def _repeated_syn_ack_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-CONN-15 broken: a repeated SYN-ACK after REQUEST is dropped, not answered."""
    from ref.sal.host import Host
    from ref.wire import ControlFlags, ErrorCode, RemoteProtocolError

    original = Host._on_control

    def on_control(
        self: Host, flow: Any, control: Any, flags: int, source: Any, now: float
    ) -> None:
        if flags == ControlFlags.SYN | ControlFlags.ACK and control.verno == flow.irs:
            raise RemoteProtocolError("a repeated SYN-ACK", ErrorCode.UNEXPECTED_CONTROL)
        original(self, flow, control, flags, source, now)

    monkeypatch.setattr(Host, "_on_control", on_control)


def _syn_rule_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-CONN-3 broken: a SYN's retransmissions go where its first FORWARD rule sent it."""
    from ref.sal.host import Host
    from ref.sal.table import LookupMode, RuleType
    from ref.wire import ControlFlags

    cache: dict[tuple[int, bytes], Any] = {}
    original = Host._lookup

    def lookup(self: Host, packet: Any, octets: int, mode: Any, now: float, **kwargs: Any) -> Any:
        control = packet.control
        own = (
            mode is LookupMode.ALL_RULES
            and control is not None
            and control.flags == ControlFlags.SYN
            and packet.source_flow_id in self.flows
        )
        key = (packet.source_flow_id, control.nonce) if own else None
        if key is not None and key in cache:
            return cache[key]
        rule = original(self, packet, octets, mode, now, **kwargs)
        if key is not None and rule is not None and rule.type is RuleType.FORWARD:
            cache[key] = rule
        return rule

    monkeypatch.setattr(Host, "_lookup", lookup)


def _delay_queue_4096(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-TBL-9 broken: 4096 packets may be parked."""
    import ref.sal.host as host

    monkeypatch.setattr(host, "MAX_DELAY_QUEUE", 4096)


def _resolution_per_packet(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-TBL-10 broken: every parked packet starts a resolution of its own."""
    from ref.sal.host import Host

    original = Host._park

    def park(self: Host, packet: Any, *rest: Any) -> None:
        self._resolving.discard(packet.destination_service)
        original(self, packet, *rest)

    monkeypatch.setattr(Host, "_park", park)


def _parked_dropped_on_success(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-TBL-11 broken: on success the parked packets are dropped, not looked up again."""
    from ref.sal.host import Host
    from ref.wire import ErrorCode

    def release(self: Host, item: Any, now: float) -> None:
        self.drops[ErrorCode.NO_SERVICE] += 1

    monkeypatch.setattr(Host, "_release", release)


def _failure_uncounted(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-TBL-12 broken: the packets parked for a failed resolution are dropped uncounted."""
    from ref.sal.host import Host
    from ref.wire import ErrorCode

    original = Host.resolved

    def resolved(self: Host, service_id: bytes, record: Any, now: float, **kw: Any) -> None:
        before = self.drops[ErrorCode.NO_SERVICE]
        original(self, service_id, record, now, **kw)
        if record is None or record.is_tombstone:
            self.drops[ErrorCode.NO_SERVICE] = before

    monkeypatch.setattr(Host, "resolved", resolved)


def _parked_for_30_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-TBL-13 broken: a packet stays parked for 30 s."""
    import ref.sal.host as host

    monkeypatch.setattr(host, "DELAY_TIMEOUT", 30.0)


def _record_rules_with(**fields: Any) -> Callable[[pytest.MonkeyPatch], None]:
    """SAL-TBL-19 broken: every rule made from a record gets ``fields``."""

    def patch(monkeypatch: pytest.MonkeyPatch) -> None:
        import ref.sal.table as table

        original = table.rules_from_record

        def rules_from_record(record: Any, now: float) -> list[Any]:
            rules = original(record, now)
            for rule in rules:
                for name, value in fields.items():
                    setattr(rule, name, value)
            return rules

        monkeypatch.setattr(table, "rules_from_record", rules_from_record)

    return patch


def _older_record_rules_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-TBL-21 broken: a newer record's rules are added beside the older record's."""
    from ref.sal.table import ServiceTable

    monkeypatch.setattr(ServiceTable, "_remove_record_rules", lambda self, base: None)


VARIANTS = [
    Variant("sal-client-fixed-iss", "SAL-CONN-1", patch=_fixed_iss),
    Variant("sal-client-syn-ack-any-ackno", "SAL-CONN-13", patch=_syn_ack_any_ackno),
    Variant(
        "sal-client-syn-ack-from-syn-destination-only",
        "SAL-CONN-14",
        patch=_syn_ack_from_syn_destination_only,
    ),
    Variant("sal-client-repeated-syn-ack-dropped", "SAL-CONN-15", patch=_repeated_syn_ack_dropped),
    Variant("sal-client-syn-rule-cached", "SAL-CONN-3", patch=_syn_rule_cached),
    Variant("sal-client-delay-queue-4096", "SAL-TBL-9", patch=_delay_queue_4096),
    Variant("sal-client-resolution-per-packet", "SAL-TBL-10", patch=_resolution_per_packet),
    Variant("sal-client-parked-dropped-on-success", "SAL-TBL-11", patch=_parked_dropped_on_success),
    Variant("sal-client-failure-uncounted", "SAL-TBL-12", patch=_failure_uncounted),
    Variant("sal-client-parked-for-30-seconds", "SAL-TBL-13", patch=_parked_for_30_seconds),
    Variant(
        "sal-client-record-rules-never-expire",
        "SAL-TBL-19",
        patch=_record_rules_with(hard_timeout=0.0),
    ),
    Variant(
        "sal-client-record-priorities-lost", "SAL-TBL-19", patch=_record_rules_with(priority=0)
    ),
    # Only the record case: the tombstone case also judges SAL-TBL-21.
    Variant(
        "sal-client-older-record-rules-kept",
        "SAL-TBL-21",
        patch=_older_record_rules_kept,
        cases=(f"{CLIENT}.record-rules",),
    ),
]
