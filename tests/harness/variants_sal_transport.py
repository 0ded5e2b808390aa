"""Broken variants for the migration and transport cases (Sections 5.10 and 5.14)."""

from __future__ import annotations

from typing import Any

import pytest

from .variants import Variant


def _ignore_peer_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-STREAM-4 broken: the sender takes every window as the largest one."""
    from ref.sal.stream import MAX_WINDOW, Stream

    original = Stream.receive

    def receive(self: Any, segment: Any, now: float) -> None:
        original(self, segment, now)
        self._snd_edge = max(self._snd_edge, self._snd_una + MAX_WINDOW)

    monkeypatch.setattr(Stream, "receive", receive)


def _never_frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-MIG-1 broken: a move does not freeze the transport."""
    from ref.sal.flow import Flow
    from ref.sal.stream import Stream

    monkeypatch.setattr(Flow, "frozen", property(lambda self: False))
    monkeypatch.setattr(Stream, "freeze", lambda self: None)


def _answer_old_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-MIG-2 broken: control packets go to the peer endpoint, never to the candidate."""
    from ref.sal.flow import Flow

    monkeypatch.setattr(Flow, "destination", property(lambda self: self.peer))


def _first_sequence_iss_plus_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-STREAM-2 broken: the stream's first octet is numbered ISS + 1."""
    from ref.sal.stream import Stream

    original = Stream.__init__

    def init(self: Any, *, iss: int, **rest: Any) -> None:
        original(self, iss=(iss + 1) % (1 << 32), **rest)

    monkeypatch.setattr(Stream, "__init__", init)


def _accept_beyond_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-STREAM-13 broken: the receiver takes octets far beyond its advertised edge."""
    from ref.sal.stream import Stream

    original = Stream.receive

    def receive(self: Any, segment: Any, now: float) -> None:
        self._rcv_edge = max(self._rcv_edge, self._rcv_nxt + (1 << 30))
        original(self, segment, now)

    units = Stream._window_units
    monkeypatch.setattr(Stream, "receive", receive)
    monkeypatch.setattr(Stream, "_window_units", lambda self: max(0, units(self)))


def _no_ack_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-STREAM-3 broken: segments go out without the ACK flag."""
    import dataclasses

    import ref.sal.host as host
    from ref.wire import StreamFlags

    original = host.encode_stream_packet

    def encode(source: int, destination: int, segment: Any) -> bytes:
        flags = StreamFlags(int(segment.flags) & ~int(StreamFlags.ACK))
        return original(source, destination, dataclasses.replace(segment, flags=flags))

    monkeypatch.setattr(host, "encode_stream_packet", encode)


def _slow_ack(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-STREAM-15 broken: a lone segment's acknowledgment waits half a second."""
    import ref.sal.stream as stream

    monkeypatch.setattr(stream, "ACK_DELAY", 0.5)


def _sal_fin_before_stream_acked(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-STREAM-20 broken: the SAL FIN goes out once the stream's FIN is sent, not acked."""
    from ref.sal.stream import Stream

    monkeypatch.setattr(
        Stream,
        "finished",
        property(lambda self: self._shutdown and self._snd_max > self._data_end),
    )


def _rsyn_always_fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-MIG-6 broken: rcv.rsyn is never set, so every copy of an RSYN is fresh."""
    from ref.sal.flow import Flow

    monkeypatch.setattr(Flow, "rcv_rsyn", property(lambda self: False, lambda self, _: None))


def _estimator_kept_on_resume(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-STREAM-21 broken: the RTT estimator survives a migration."""
    import dataclasses

    from ref.sal.stream import Stream

    original = Stream.resume

    def resume(self: Any, now: float) -> None:
        kept = dataclasses.replace(self.rto_estimator)
        original(self, now)
        self.rto_estimator = kept
        if self._rtx_deadline is not None:
            self._rtx_deadline = now + kept.rto

    monkeypatch.setattr(Stream, "resume", resume)


def _no_window_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-STREAM-8 broken: a closed window is never probed."""
    from ref.sal.stream import Stream

    monkeypatch.setattr(Stream, "_send_probe", lambda self, out, ack, units: None)


def _peer_kept_after_move(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-MIG-13 broken: a completed move keeps sending to the old peer endpoint."""
    from ref.sal.host import Host

    original = Host._take_ack

    def take_ack(self: Any, flow: Any, ackno: int, now: float) -> None:
        peer = flow.peer
        original(self, flow, ackno, now)
        flow.peer = peer

    monkeypatch.setattr(Host, "_take_ack", take_ack)


def _rsyn_in_timewait(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-MIG-7 broken: a fresh RSYN is processed in TIMEWAIT too."""
    import ref.sal.host as host
    from ref.sal.flow import State

    monkeypatch.setattr(host, "RSYN_ACCEPTING", host.RSYN_ACCEPTING | {State.TIMEWAIT})


VARIANTS = [
    Variant("sal-stream-ignores-peer-window", "SAL-STREAM-4", patch=_ignore_peer_window),
    Variant("sal-migration-not-frozen", "SAL-MIG-1", patch=_never_frozen),
    Variant("sal-rsyn-ack-to-old-endpoint", "SAL-MIG-2", patch=_answer_old_endpoint),
    Variant(
        "sal-stream-first-octet-iss-plus-one", "SAL-STREAM-2", patch=_first_sequence_iss_plus_one
    ),
    Variant("sal-stream-accepts-beyond-window", "SAL-STREAM-13", patch=_accept_beyond_window),
    Variant("sal-stream-no-ack-flag", "SAL-STREAM-3", patch=_no_ack_flag),
    Variant("sal-stream-slow-ack", "SAL-STREAM-15", patch=_slow_ack),
    Variant("sal-fin-before-stream-acked", "SAL-STREAM-20", patch=_sal_fin_before_stream_acked),
    Variant("sal-rsyn-always-fresh", "SAL-MIG-6", patch=_rsyn_always_fresh),
    Variant("sal-stream-rto-kept-on-resume", "SAL-STREAM-21", patch=_estimator_kept_on_resume),
    Variant("sal-stream-no-window-probe", "SAL-STREAM-8", patch=_no_window_probe),
    Variant("sal-migration-keeps-old-peer", "SAL-MIG-13", patch=_peer_kept_after_move),
    Variant("sal-rsyn-in-timewait", "SAL-MIG-7", patch=_rsyn_in_timewait),
]
