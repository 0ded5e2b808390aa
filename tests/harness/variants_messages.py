"""Broken variants for framing, messages and errors (Sections 6.2, 6.4 and 6.11)."""

from __future__ import annotations

import dataclasses

import pytest

from .variants import Variant


def _observed_is_udp_source(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-MSG-8 broken: PONG names the UDP source even when a router forwarded the PING."""
    from ref.chord.node import Node
    from ref.wire import Pong

    def on_ping(self, inbound, message, validated):  # type: ignore[no-untyped-def]
        self.reply(inbound, Pong(inbound.source), validated)

    monkeypatch.setattr(Node, "_on_ping", on_ping)


def _replies_to_udp_source(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-FRAME-4 broken: responses go to the UDP source, not to SOURCE entry 0."""
    from ref.chord.node import Node

    original = Node.reply

    def reply(self, inbound, body, validated):  # type: ignore[no-untyped-def]
        original(self, dataclasses.replace(inbound, observed=inbound.source), body, validated)

    monkeypatch.setattr(Node, "reply", reply)


def _rectify_unsigned(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-MSG-3 broken: RECTIFY is not among the types that must be signed."""
    import ref.chord.node as node
    from ref.wire import MessageType

    monkeypatch.setattr(node, "SIGNED_TYPES", frozenset({MessageType.REPLICATE, MessageType.LEAVE}))


def _decode_verifying(monkeypatch: pytest.MonkeyPatch, verify) -> None:  # type: ignore[no-untyped-def]
    """Replace the signature check of received messages by ``verify(key, signature, data)``."""
    from ref.chord.framing import WireFraming
    from ref.wire import ErrorCode, RemoteProtocolError, decode_dht
    from ref.wire.constants import MESSAGE_SIGNING_CONTEXT

    def decode(self, inbound):  # type: ignore[no-untyped-def]
        message = decode_dht(inbound.payload, verify=False)
        if message.signature is not None:
            data = inbound.payload[: -len(message.signature)]
            if not verify(message.sender_key, message.signature, MESSAGE_SIGNING_CONTEXT + data):
                raise RemoteProtocolError("bad signature", ErrorCode.BAD_SIGNATURE)
        return message

    monkeypatch.setattr(WireFraming, "decode", decode)


def _plain_ed25519(key: bytes, signature: bytes, data: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(key).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


def _no_signature_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-MSG-4 broken: signatures of received messages are never checked."""
    _decode_verifying(monkeypatch, lambda key, signature, data: True)


def _small_order_keys_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-MSG-20 broken: plain Ed25519 verification, small-order keys not refused."""
    _decode_verifying(monkeypatch, _plain_ed25519)


def _zero_key_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-MSG-5 broken: a signed message with the zero Sender Key is taken as unsigned."""
    from ref.wire.records import signature_valid

    def verify(key: bytes, signature: bytes, data: bytes) -> bool:
        return key == bytes(32) or signature_valid(key, signature, data)

    _decode_verifying(monkeypatch, verify)


def _receive_response_without(monkeypatch: pytest.MonkeyPatch, skip: str) -> None:
    """Engine._receive_response with one of its checks left out (``skip``)."""
    from ref.chord.exchange import Engine
    from ref.wire import DhtMessage, ErrorCode, MessageType, RemoteProtocolError
    from ref.wire.constants import DHT_VERSION

    def receive(self, inbound):  # type: ignore[no-untyped-def]
        pending = self._pending.get(inbound.transaction_id)
        if pending is None or (skip != "endpoint" and pending.call.destination != inbound.source):
            self.drop(ErrorCode.MALFORMED, "response matches no request", inbound.source)
            return
        if inbound.version != DHT_VERSION:
            if skip != "version":
                self.drop(ErrorCode.UNSUPPORTED_VERSION, "response version", inbound.source)
                return
            inbound = dataclasses.replace(inbound, payload=b"\x01" + inbound.payload[1:])
        try:
            message: DhtMessage = self.framing.decode(inbound)
        except RemoteProtocolError as error:
            self.drop(error.error_code, str(error), inbound.source)
            return
        expected = pending.call.body.TYPE.value | 0x80
        if skip != "type" and message.type.value not in (expected, MessageType.ERROR.value):
            self.drop(ErrorCode.MALFORMED, "response of the wrong type", inbound.source)
            return
        if (
            skip != "key"
            and pending.call.key is not None
            and message.sender_key != pending.call.key
        ):
            self.drop(ErrorCode.MALFORMED, "response from another key", inbound.source)
            return
        del self._pending[inbound.transaction_id]
        self._peer_tokens[inbound.source] = (message.token, self.now)
        self.counters["responses_received"] += 1
        self._resume(pending.waiter, message)

    monkeypatch.setattr(Engine, "_receive_response", receive)


def _accepts_wrong_type(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-MSG-1 broken: a response of any type completes the request."""
    _receive_response_without(monkeypatch, "type")


def _accepts_any_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-HDR-10 broken: a response is matched by Transaction ID alone."""
    _receive_response_without(monkeypatch, "endpoint")


def _accepts_other_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-MSG-2 broken: the Sender Key of a response is not compared with the known key."""
    _receive_response_without(monkeypatch, "key")


def _accepts_other_version(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-HDR-3 broken: a response of another version is read as version 1."""
    _receive_response_without(monkeypatch, "version")


def _retransmits_with_new_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-FRAME-7 broken: a retransmission is rebuilt, with a token of its own."""
    from ref.chord.exchange import Engine
    from ref.wire import decode_sal, encode_sal

    original = Engine._timed_out

    def timed_out(self, transaction_id):  # type: ignore[no-untyped-def]
        pending = self._pending.get(transaction_id)
        if pending is not None and pending.deadline <= self.now and pending.attempts_left:
            packet = decode_sal(pending.datagram)
            payload = bytearray(packet.payload)
            payload[44:60] = self.rng.randbytes(16)
            pending.datagram = encode_sal(dataclasses.replace(packet, payload=bytes(payload)))
        original(self, transaction_id)

    monkeypatch.setattr(Engine, "_timed_out", timed_out)


def _answers_strays(monkeypatch: pytest.MonkeyPatch, *, errors: bool) -> None:
    """Stray responses (``errors``: stray ERRORs) are answered with ERROR MALFORMED."""
    from ref.chord.exchange import Engine
    from ref.chord.node import Node
    from ref.wire import ErrorCode, MessageType

    original = Engine._receive_response

    def receive(self, inbound):  # type: ignore[no-untyped-def]
        is_error = inbound.type == MessageType.ERROR.value
        stray = inbound.transaction_id not in self._pending and is_error == errors
        if stray and isinstance(self, Node):
            self.refuse(inbound, ErrorCode.MALFORMED, "no such request", False)
        original(self, inbound)

    monkeypatch.setattr(Engine, "_receive_response", receive)


def _answers_stray_responses(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-ERR-3 broken: a response that matches no request is answered."""
    _answers_strays(monkeypatch, errors=False)


def _answers_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-MSG-19 broken: an ERROR that matches no request is answered."""
    _answers_strays(monkeypatch, errors=True)


def _version_before_length(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-ERR-1 broken: the Version is checked before the length and the rate limit."""
    from ref.chord.node import Node
    from ref.wire import ErrorCode

    original = Node.receive_request

    def receive(self, inbound):  # type: ignore[no-untyped-def]
        if inbound.version != 1:
            self.refuse(inbound, ErrorCode.UNSUPPORTED_VERSION, "version", False)
            return
        original(self, inbound)

    monkeypatch.setattr(Node, "receive_request", receive)


def _signature_before_body(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-ERR-1 broken: the signature is checked before the body's static rules."""
    from ref.chord.framing import WireFraming
    from ref.wire import ErrorCode, RemoteProtocolError
    from ref.wire.constants import MESSAGE_SIGNING_CONTEXT
    from ref.wire.records import signature_valid

    original = WireFraming.decode

    def decode(self, inbound):  # type: ignore[no-untyped-def]
        payload = inbound.payload
        if payload[2] & 0x80 and len(payload) >= 124:
            data, signature = payload[:-64], payload[-64:]
            if not signature_valid(payload[12:44], signature, MESSAGE_SIGNING_CONTEXT + data):
                raise RemoteProtocolError("bad signature", ErrorCode.BAD_SIGNATURE)
        return original(self, inbound)

    monkeypatch.setattr(WireFraming, "decode", decode)


def _errors_uncounted(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-ERR-4 broken: ERRORs sent are not counted."""
    from ref.chord.node import Node
    from ref.wire import Error, ErrorCode

    original = Node.reply

    def reply(self, inbound, body, validated):  # type: ignore[no-untyped-def]
        original(self, inbound, body, validated)
        if isinstance(body, Error):
            # The code actually sent may differ after the amplification limit: undo any.
            for code in ErrorCode:
                key = f"error_sent.{code.name}"
                if self.counters.get(key):
                    self.counters[key] -= 1
                    break

    monkeypatch.setattr(Node, "reply", reply)


def _leave_applied_before_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-ERR-5 broken: a LEAVE is applied before the token is checked."""
    from ref.chord.node import Node, NodeState
    from ref.chord.ring import Peer

    original = Node._on_leave

    def on_leave(self, inbound, message, validated):  # type: ignore[no-untyped-def]
        if not validated and self.state is NodeState.MEMBER:
            self._apply_leave(Peer.of(message.sender_key, inbound.observed), message.body)
        original(self, inbound, message, validated)

    monkeypatch.setattr(Node, "_on_leave", on_leave)


VARIANTS = [
    Variant("pong-observed-is-udp-source", "DHT-MSG-8", patch=_observed_is_udp_source),
    Variant("replies-to-udp-source", "DHT-FRAME-4", patch=_replies_to_udp_source),
    Variant("rectify-needs-no-signature", "DHT-MSG-3", patch=_rectify_unsigned),
    Variant("signatures-unchecked", "DHT-MSG-4", patch=_no_signature_check),
    Variant("small-order-keys-accepted", "DHT-MSG-20", patch=_small_order_keys_accepted),
    Variant("zero-sender-key-accepted", "DHT-MSG-5", patch=_zero_key_accepted),
    Variant("accepts-response-of-wrong-type", "DHT-MSG-1", patch=_accepts_wrong_type),
    Variant("accepts-response-from-any-endpoint", "DHT-HDR-10", patch=_accepts_any_endpoint),
    Variant("accepts-response-with-other-key", "DHT-MSG-2", patch=_accepts_other_key),
    Variant("accepts-response-of-version-2", "DHT-HDR-3", patch=_accepts_other_version),
    Variant(
        "retransmission-rebuilt",
        "DHT-FRAME-7",
        patch=_retransmits_with_new_token,
        cases=("dht.messages.target-as-requester",),
    ),
    Variant("answers-stray-responses", "DHT-ERR-3", patch=_answers_stray_responses),
    Variant("answers-stray-errors", "DHT-MSG-19", patch=_answers_errors),
    Variant("checks-version-first", "DHT-ERR-1", patch=_version_before_length),
    Variant("checks-signature-before-body", "DHT-ERR-1", patch=_signature_before_body),
    Variant("errors-sent-uncounted", "DHT-ERR-4", patch=_errors_uncounted),
    Variant("leave-applied-before-validation", "DHT-ERR-5", patch=_leave_applied_before_validation),
]
