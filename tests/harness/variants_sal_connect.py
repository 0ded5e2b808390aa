"""Broken variants for the service table and handshake cases (Sections 5.2, 5.6 to 5.8)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from .variants import Variant


def _synack_without_destination(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-EXT-23 broken: the SYN-ACK leaves out the SERVICE extension of the SYN."""
    import ref.sal.host as host
    from ref.wire import ControlFlags

    original = host.encode_sal

    def encode(packet: Any) -> bytes:
        control = packet.control
        if control is not None and control.flags == ControlFlags.SYN | ControlFlags.ACK:
            packet = dataclasses.replace(packet, destination_service=None)
        return original(packet)

    monkeypatch.setattr(host, "encode_sal", encode)


def _no_request_queue_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-CONN-8 broken: a listener's request queue has no bound."""
    import ref.sal.host as host

    monkeypatch.setattr(host, "MAX_REQUEST_QUEUE", 1 << 30)


def _duplicate_syn_new_flow(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-CONN-6 broken: a duplicate SYN creates a new half-open flow."""
    from ref.sal.host import Host

    original = Host._on_syn

    def on_syn(self: Any, *args: Any) -> None:
        self._half_open.clear()
        original(self, *args)

    monkeypatch.setattr(Host, "_on_syn", on_syn)


def _duplicate_syn_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-CONN-7 broken: a duplicate SYN is ignored instead of drawing the SYN-ACK again."""
    from ref.sal.host import Host

    original = Host._on_syn

    def on_syn(self: Any, listening: Any, packet: Any, client: Any, *rest: Any) -> None:
        key = (client, packet.source_flow_id, packet.control.nonce)
        if key not in self._half_open:
            original(self, listening, packet, client, *rest)

    monkeypatch.setattr(Host, "_on_syn", on_syn)


def _respond_never_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-CONN-12 broken: a half-open flow is not removed after 3 seconds."""
    import ref.sal.host as host

    monkeypatch.setattr(host, "REQUEST_TIMEOUT", 3600.0)


def _respond_ignores_nonce(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-CONN-16 broken: the handshake's ACK is taken whatever its nonce."""
    from ref.sal.host import Host

    original = Host._on_handshake_ack

    def on_ack(self: Any, flow: Any, control: Any, flags: int, now: float) -> None:
        control = dataclasses.replace(control, nonce=flow.peer_nonce)
        original(self, flow, control, flags, now)

    monkeypatch.setattr(Host, "_on_handshake_ack", on_ack)


def _respond_ignores_ackno(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-CONN-17 broken: the handshake's ACK is taken whatever its ackno."""
    from ref.sal.flow import seq_add
    from ref.sal.host import Host

    original = Host._on_handshake_ack

    def on_ack(self: Any, flow: Any, control: Any, flags: int, now: float) -> None:
        control = dataclasses.replace(control, ackno=seq_add(flow.iss, 1))
        original(self, flow, control, flags, now)

    monkeypatch.setattr(Host, "_on_handshake_ack", on_ack)


def _respond_keeps_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-CONN-18 broken: data received in RESPOND is kept and delivered after the ACK."""
    from ref.sal.flow import State
    from ref.sal.host import Host

    on_data, on_ack = Host._on_data, Host._on_handshake_ack
    kept: dict[int, list[Any]] = {}

    def data(self: Any, flow: Any, packet: Any, now: float) -> None:
        if flow.state is State.RESPOND:
            kept.setdefault(flow.local_flow_id, []).append(packet)
        on_data(self, flow, packet, now)

    def ack(self: Any, flow: Any, control: Any, flags: int, now: float) -> None:
        on_ack(self, flow, control, flags, now)
        if flow.state is not State.RESPOND:
            for packet in kept.pop(flow.local_flow_id, []):
                on_data(self, flow, packet, now)

    monkeypatch.setattr(Host, "_on_data", data)
    monkeypatch.setattr(Host, "_on_handshake_ack", ack)


def _flow_protocol_unchecked(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-HDR-8 broken: a flow packet is taken whatever its Protocol."""
    from ref.sal.host import Host

    original = Host._on_flow_packet

    def on_flow_packet(self: Any, packet: Any, *rest: Any) -> None:
        flow = self.flows.get(packet.destination_flow_id)
        if flow is not None and packet.control is None:
            packet = dataclasses.replace(packet, protocol=flow.transport)
        original(self, packet, *rest)

    monkeypatch.setattr(Host, "_on_flow_packet", on_flow_packet)


def _extension_on_ack_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-EXT-26 broken: a flow packet with a SERVICE or SOURCE extension is dropped."""
    from ref.sal.host import Host
    from ref.wire import RemoteProtocolError

    original = Host._on_flow_packet

    def on_flow_packet(self: Any, packet: Any, *rest: Any) -> None:
        if packet.source_route is not None or packet.source_service is not None:
            raise RemoteProtocolError("an extension this packet kind does not carry")
        original(self, packet, *rest)

    monkeypatch.setattr(Host, "_on_flow_packet", on_flow_packet)


def _flow_id_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-FLOW-3 broken: the flowID of the flow that closed last is handed out again."""
    from ref.sal.host import Host

    original = Host._new_flow_id

    def new_flow_id(self: Any) -> int:
        while self._retired_order:
            _, flow_id = self._retired_order.pop()
            if flow_id not in self.flows:
                return int(flow_id)
        return int(original(self))

    monkeypatch.setattr(Host, "_new_flow_id", new_flow_id)


def _listener_shorter_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-TBL-14 broken: the echo stream listener is bound to a /254 prefix."""
    from ref.sal.host import Host
    from ref.wire import ECHO_STREAM_SERVICE_ID

    original = Host.listen

    def listen(self: Any, service_id: bytes, *args: Any, **kwargs: Any) -> int:
        if service_id == ECHO_STREAM_SERVICE_ID:
            kwargs["prefix_length"] = 254
        return int(original(self, service_id, *args, **kwargs))

    monkeypatch.setattr(Host, "listen", listen)


def _first_rule_always(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-TBL-7 broken: the weighted choice always takes the first rule installed."""
    from ref.sal.table import ServiceTable

    monkeypatch.setattr(ServiceTable, "_weighted_choice", lambda self, rules: rules[0])


def _reinstall_keeps_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-TBL-2 broken: installing a rule the entry holds leaves the held rule as it was."""
    from ref.sal.table import ServiceTable

    original = ServiceTable.add

    def add(self: Any, rule: Any, now: float) -> Any:
        held = self.get(rule.key)
        return held if held is not None else original(self, rule, now)

    monkeypatch.setattr(ServiceTable, "add", add)


def _expired_rules_selected(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-TBL-4 broken: expired rules stay in the table and are selected."""
    import heapq

    import ref.sal.table as table

    def expire(self: Any, now: float) -> list[Any]:
        while self._deadlines and self._deadlines[0][0] <= now:
            heapq.heappop(self._deadlines)  # due, but the rule stays
        return []

    original = table._usable
    monkeypatch.setattr(table.ServiceTable, "expire", expire)
    monkeypatch.setattr(
        table, "_usable", lambda rule, now, protocol, mode: original(rule, 0.0, protocol, mode)
    )


VARIANTS = [
    Variant("sal-synack-without-destination", "SAL-EXT-23", patch=_synack_without_destination),
    Variant("sal-no-request-queue-limit", "SAL-CONN-8", patch=_no_request_queue_limit),
    Variant("sal-duplicate-syn-new-flow", "SAL-CONN-6", patch=_duplicate_syn_new_flow),
    Variant("sal-duplicate-syn-ignored", "SAL-CONN-7", patch=_duplicate_syn_ignored),
    Variant("sal-respond-never-times-out", "SAL-CONN-12", patch=_respond_never_times_out),
    Variant("sal-respond-ignores-nonce", "SAL-CONN-16", patch=_respond_ignores_nonce),
    Variant("sal-respond-ignores-ackno", "SAL-CONN-17", patch=_respond_ignores_ackno),
    Variant("sal-respond-keeps-data", "SAL-CONN-18", patch=_respond_keeps_data),
    Variant("sal-flow-protocol-unchecked", "SAL-HDR-8", patch=_flow_protocol_unchecked),
    Variant("sal-extension-on-ack-refused", "SAL-EXT-26", patch=_extension_on_ack_refused),
    Variant("sal-flow-id-reused", "SAL-FLOW-3", patch=_flow_id_reused),
    Variant("sal-listener-shorter-prefix", "SAL-TBL-14", patch=_listener_shorter_prefix),
    Variant("sal-weighted-choice-first-rule", "SAL-TBL-7", patch=_first_rule_always),
    Variant("sal-reinstall-keeps-rule", "SAL-TBL-2", patch=_reinstall_keeps_rule),
    Variant("sal-expired-rules-selected", "SAL-TBL-4", patch=_expired_rules_selected),
]
