"""Broken variants for the SAL cases (Sections 5.1 to 5.5, 5.12, 5.13 and 6.9.3)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from .variants import Variant

FORWARD = {"forward_mode": True}


def _wrap_decode(
    monkeypatch: pytest.MonkeyPatch, wrapper: Callable[[Callable[[bytes], Any], bytes], Any]
) -> None:
    """Replace ``decode_sal`` as the node's framing imported it."""
    import ref.chord.framing as framing

    original = framing.decode_sal
    monkeypatch.setattr(framing, "decode_sal", lambda data: wrapper(original, data))


def _fixed_checksum(data: bytes) -> bytes:
    from ref.wire import internet_checksum

    if len(data) < 12:
        return data
    blank = data[:10] + b"\0\0" + data[12:]
    return blank[:10] + internet_checksum(blank).to_bytes(2, "big") + blank[12:]


def _accept_any_checksum(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-CSUM-2 broken: the checksum is never verified."""
    _wrap_decode(monkeypatch, lambda decode, data: decode(_fixed_checksum(data)))


def _checksum_before_length(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-RECV-1 broken: step 2 (checksum) runs before step 1 (lengths)."""
    from ref.wire import ErrorCode, RemoteProtocolError, internet_checksum

    def decode(original: Callable[[bytes], Any], data: bytes) -> Any:
        if len(data) >= 12 and internet_checksum(data) != 0:
            raise RemoteProtocolError("checksum first", ErrorCode.BAD_CHECKSUM)
        return original(data)

    _wrap_decode(monkeypatch, decode)


def _refuse_ignorable(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-EXT-9 broken: an ignorable extension drops the packet."""
    from ref.wire import ErrorCode, RemoteProtocolError

    def decode(original: Callable[[bytes], Any], data: bytes) -> Any:
        packet = original(data)
        if packet.unknown_extensions:
            raise RemoteProtocolError("ignorable", ErrorCode.UNKNOWN_CRITICAL_EXTENSION)
        return packet

    _wrap_decode(monkeypatch, decode)


def _order_counted_malformed(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-EXT-8 broken: extensions out of order are counted MALFORMED, not EXTENSION_ORDER."""
    from ref.wire import ErrorCode, RemoteProtocolError

    def decode(original: Callable[[bytes], Any], data: bytes) -> Any:
        try:
            return original(data)
        except RemoteProtocolError as error:
            if error.error_code == ErrorCode.EXTENSION_ORDER:
                raise RemoteProtocolError(str(error), ErrorCode.MALFORMED) from None
            raise

    _wrap_decode(monkeypatch, decode)


def _any_control_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-EXT-15 broken: every CONTROL flag combination is accepted."""
    import ref.sal.receive as receive

    monkeypatch.setattr(receive, "_VALID_FLAGS", frozenset(range(256)))


def _answer_observed_source(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-FWD-10 broken: a request with a SOURCE extension is answered at its UDP source."""
    import ref.chord.framing as framing

    original = framing.WireFraming.open

    def open_(self: Any, data: Any, source: Any) -> Any:
        arrival = original(self, data, source)
        if isinstance(arrival, framing.Inbound):
            arrival.observed = arrival.source
        return arrival

    monkeypatch.setattr(framing.WireFraming, "open", open_)


def _wrap_forward(
    monkeypatch: pytest.MonkeyPatch, change: Callable[[Any, dict[str, Any]], Any]
) -> None:
    """Replace ``forward`` as forward mode imported it; ``change`` edits the packet first."""
    import ref.chord.forward as forward_mode

    original = forward_mode.forward

    def forward(packet: Any, **endpoints: Any) -> bytes:
        return original(change(packet, endpoints), **endpoints)

    monkeypatch.setattr(forward_mode, "forward", forward)


def _route(packet: Any, **changes: Any) -> Any:
    route = packet.source_route
    if route is None:
        return packet
    return dataclasses.replace(packet, source_route=dataclasses.replace(route, **changes))


def _keep_hop_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-FWD-7 broken: an existing SOURCE extension keeps its Hop Limit."""

    def change(packet: Any, endpoints: dict[str, Any]) -> Any:
        route = packet.source_route
        return packet if route is None else _route(packet, hop_limit=route.hop_limit + 1)

    _wrap_forward(monkeypatch, change)


def _ignore_hop_limit_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-FWD-3 broken: a packet whose Hop Limit is 0 is forwarded anyway."""

    def change(packet: Any, endpoints: dict[str, Any]) -> Any:
        route = packet.source_route
        return packet if route is None or route.hop_limit else _route(packet, hop_limit=1)

    _wrap_forward(monkeypatch, change)


def _no_loop_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-FWD-4 broken: the router does not look for itself or the next hop in SOURCE."""
    from ref.sal.forwarding import _endpoint_key

    def change(packet: Any, endpoints: dict[str, Any]) -> Any:
        route = packet.source_route
        if route is None:
            return packet
        mine = {_endpoint_key(endpoints["next_hop"]), _endpoint_key(endpoints["received_at"])}
        entries = tuple(e for e in route.entries if _endpoint_key(e) not in mine)
        return _route(packet, entries=entries)

    _wrap_forward(monkeypatch, change)


def _rst_without_nonce(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-RST-4 broken: the RST to an unregistered SYN does not echo the SYN's nonce."""
    import ref.chord.forward as forward_mode

    original = forward_mode.encode_sal

    def encode(packet: Any) -> bytes:
        if packet.control is not None:
            control = dataclasses.replace(packet.control, nonce=bytes(8))
            packet = dataclasses.replace(packet, control=control)
        return original(packet)

    monkeypatch.setattr(forward_mode, "encode_sal", encode)


VARIANTS = [
    Variant("sal-accepts-bad-checksum", "SAL-CSUM-2", patch=_accept_any_checksum),
    Variant("sal-checksum-before-length", "SAL-RECV-1", patch=_checksum_before_length),
    Variant("sal-refuses-ignorable-extensions", "SAL-EXT-9", patch=_refuse_ignorable),
    Variant("sal-order-counted-malformed", "SAL-EXT-8", patch=_order_counted_malformed),
    Variant("sal-any-control-flags", "SAL-EXT-15", patch=_any_control_flags),
    Variant("sal-answers-udp-source", "SAL-FWD-10", patch=_answer_observed_source),
    Variant("sal-forward-keeps-hop-limit", "SAL-FWD-7", patch=_keep_hop_limit, config=FORWARD),
    Variant(
        "sal-forward-past-hop-limit", "SAL-FWD-3", patch=_ignore_hop_limit_zero, config=FORWARD
    ),
    Variant("sal-forward-no-loop-check", "SAL-FWD-4", patch=_no_loop_check, config=FORWARD),
    Variant("sal-forward-rst-no-nonce", "SAL-RST-4", patch=_rst_without_nonce, config=FORWARD),
]
