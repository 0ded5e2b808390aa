"""Broken variants for the header cases (Section 6.3)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

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


def rewrite_replies(
    monkeypatch: pytest.MonkeyPatch,
    change: Callable[[bytearray], None],
    *,
    errors_only: bool = False,
) -> None:
    """Patch ``Node.reply`` so that ``change`` edits the ServalDHT bytes of each reply."""
    from ref.chord.node import Node
    from ref.wire import Error, decode_sal, encode_sal

    original = Node.reply

    def reply(self, inbound, body, validated):  # type: ignore[no-untyped-def]
        original(self, inbound, body, validated)
        if errors_only and not isinstance(body, Error):
            return
        datagram, destination = self._out.pop()
        packet = decode_sal(datagram)
        payload = bytearray(packet.payload)
        change(payload)
        self._out.append(
            (encode_sal(dataclasses.replace(packet, payload=bytes(payload))), destination)
        )

    monkeypatch.setattr(Node, "reply", reply)


def _flip_error_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-HDR-9 broken: an ERROR carries a Transaction ID of its own."""

    def change(payload: bytearray) -> None:
        payload[4] ^= 0xFF

    rewrite_replies(monkeypatch, change, errors_only=True)


def _errors_without_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-HDR-14 broken: ERRORs carry a zero token."""

    def change(payload: bytearray) -> None:
        payload[44:60] = bytes(16)

    rewrite_replies(monkeypatch, change, errors_only=True)


def _reserved_flag_bit(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-HDR-4 broken: responses have a reserved flag bit set."""

    def change(payload: bytearray) -> None:
        payload[2] |= 0x01

    rewrite_replies(monkeypatch, change)


def _reserved_octet(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-HDR-6 broken: responses have a non-zero Reserved octet."""

    def change(payload: bytearray) -> None:
        payload[3] = 0x5A

    rewrite_replies(monkeypatch, change)


def _trailing_bytes_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-HDR-15 broken: an unsigned request with bytes after its body is accepted."""
    from ref.chord.framing import WireFraming
    from ref.wire import RemoteProtocolError, decode_dht

    original = WireFraming.decode

    def decode(self, inbound):  # type: ignore[no-untyped-def]
        try:
            return original(self, inbound)
        except RemoteProtocolError:
            payload = inbound.payload
            for cut in range(1, 5):
                try:
                    return decode_dht(payload[:-cut])
                except RemoteProtocolError:
                    continue
            raise

    monkeypatch.setattr(WireFraming, "decode", decode)


def _unsigned_key_adopted(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-HDR-13 broken: the Sender Key of an unsigned PING is taken as a predecessor claim."""
    from ref.chord.node import Node
    from ref.chord.ring import Peer

    original = Node._on_ping

    def on_ping(self, inbound, message, validated):  # type: ignore[no-untyped-def]
        original(self, inbound, message, validated)
        if message.sender_key != bytes(32) and message.sender_key != self.key:
            self._rectify(Peer.of(message.sender_key, inbound.observed))

    monkeypatch.setattr(Node, "_on_ping", on_ping)


VARIANTS = [
    Variant("drops-other-versions", "DHT-HDR-2", patch=_answer_version_2),
    Variant("error-with-other-transaction-id", "DHT-HDR-9", patch=_flip_error_ids),
    Variant("error-without-token", "DHT-HDR-14", patch=_errors_without_token),
    Variant("reserved-flag-bit-set", "DHT-HDR-4", patch=_reserved_flag_bit),
    Variant("reserved-octet-set", "DHT-HDR-6", patch=_reserved_octet),
    Variant("trailing-bytes-ignored", "DHT-HDR-15", patch=_trailing_bytes_ignored),
    Variant("unsigned-sender-key-adopted", "DHT-HDR-13", patch=_unsigned_key_adopted),
]
