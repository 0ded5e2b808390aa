"""Broken variants for the control-channel and close cases (Sections 5.9, 5.11, 5.15, 5.16)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from .variants import Variant


def _nonce_unchecked(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-CTRL-6 broken: a control packet's nonce is never compared with the peer's."""
    from ref.sal.host import Host

    original = Host._on_control

    def on_control(self: Host, flow: Any, control: Any, *args: Any) -> None:
        if flow.peer_nonce is not None:
            control = dataclasses.replace(control, nonce=flow.peer_nonce)
        original(self, flow, control, *args)

    monkeypatch.setattr(Host, "_on_control", on_control)


def _verno_not_advanced(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-CTRL-1 broken: a new sequence-consuming packet leaves snd.nxt where it was."""
    from ref.sal.flow import Outstanding
    from ref.sal.host import Host

    def send_new(self: Host, flow: Any, flags: Any, now: float) -> None:
        flow.outstanding = Outstanding(flags, flow.snd_nxt, now)
        self._send_control(flow, flags, flow.snd_nxt)
        self._arm_retransmit(flow, now)

    monkeypatch.setattr(Host, "_send_new", send_new)


def _duplicate_not_acknowledged(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-CTRL-10 broken: a duplicate FIN is ignored instead of acknowledged again."""
    from ref.sal.flow import HALF_SPACE, seq_diff
    from ref.sal.host import FIN, Host

    original = Host._on_control

    def on_control(self: Host, flow: Any, control: Any, flags: int, *args: Any) -> None:
        if flags & FIN and seq_diff(control.verno, flow.rcv_nxt) >= HALF_SPACE:
            return
        original(self, flow, control, flags, *args)

    monkeypatch.setattr(Host, "_on_control", on_control)


def _fin_not_retransmitted(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-CTRL-15 broken: when the timer expires, an outstanding FIN is not sent again."""
    from ref.sal.host import FIN, Host

    original = Host._retransmit

    def retransmit(self: Host, flow: Any, now: float) -> None:
        outstanding = flow.outstanding
        if outstanding is not None and outstanding.flags & FIN:
            flow.retransmit_at = None
            return
        original(self, flow, now)

    monkeypatch.setattr(Host, "_retransmit", retransmit)


def _initial_rto_3s(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-TIMER-1 broken: the initial RTO is the prototype's 3 s, not RTO_INITIAL = 1 s."""
    import ref.sal.rto as rto

    original = rto.RtoEstimator.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.rto = 3.0

    monkeypatch.setattr(rto.RtoEstimator, "__init__", init)
    monkeypatch.setattr(rto, "RTO_INITIAL", 3.0)


def _karn_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-CTRL-13 broken: an RTT sample is taken from a retransmitted packet too."""
    from ref.sal.host import Host

    original = Host._take_ack

    def take_ack(self: Host, flow: Any, ackno: int, now: float) -> None:
        if flow.outstanding is not None:
            flow.outstanding.retransmitted = False
        original(self, flow, ackno, now)

    monkeypatch.setattr(Host, "_take_ack", take_ack)


def _rst_any_nonce(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-RST-5 broken: an RST is accepted whatever its nonce."""
    from ref.sal.host import Host

    original = Host._on_rst

    def on_rst(self: Host, flow: Any, control: Any, now: float) -> None:
        original(self, flow, dataclasses.replace(control, nonce=flow.own_nonce), now)

    monkeypatch.setattr(Host, "_on_rst", on_rst)


def _rst_keeps_flow(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-RST-6 broken: an accepted RST leaves the flow in its state."""
    from ref.sal.host import Host

    original = Host._on_rst

    def on_rst(self: Host, flow: Any, control: Any, now: float) -> None:
        if control.nonce in (flow.peer_nonce, flow.own_nonce):
            return
        original(self, flow, control, now)

    monkeypatch.setattr(Host, "_on_rst", on_rst)


def _finwait2_fin_closes(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-CLOSE-3 broken: a FIN in FINWAIT2 closes the flow at once, skipping TIMEWAIT."""
    from ref.sal.flow import TRANSITIONS, Event, State

    monkeypatch.setitem(TRANSITIONS, (State.FINWAIT2, Event.RCV_FIN), State.CLOSED)


def _lastack_takes_fin(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAL-CONN-20 broken: a new FIN in LASTACK, a pair absent from the table, is processed."""
    from ref.sal.flow import TRANSITIONS, Event, State

    monkeypatch.setitem(TRANSITIONS, (State.LASTACK, Event.RCV_FIN), State.LASTACK)


VARIANTS = [
    Variant("sal-control-nonce-unchecked", "SAL-CTRL-6", patch=_nonce_unchecked),
    Variant("sal-control-verno-not-advanced", "SAL-CTRL-1", patch=_verno_not_advanced),
    Variant("sal-control-duplicate-fin-ignored", "SAL-CTRL-10", patch=_duplicate_not_acknowledged),
    Variant("sal-control-fin-not-retransmitted", "SAL-CTRL-15", patch=_fin_not_retransmitted),
    Variant("sal-control-initial-rto-3s", "SAL-TIMER-1", patch=_initial_rto_3s),
    Variant("sal-control-karn-ignored", "SAL-CTRL-13", patch=_karn_ignored),
    Variant("sal-rst-any-nonce", "SAL-RST-5", patch=_rst_any_nonce),
    Variant("sal-rst-keeps-flow", "SAL-RST-6", patch=_rst_keeps_flow),
    Variant("sal-close-finwait2-skips-timewait", "SAL-CLOSE-3", patch=_finwait2_fin_closes),
    Variant("sal-lastack-takes-new-fin", "SAL-CONN-20", patch=_lastack_takes_fin),
]
