"""Broken variants for the overlay and lookup cases (Sections 6.5 and 6.6)."""

from __future__ import annotations

from typing import Any

import pytest

from .variants import Variant

#: As the embedded reference runs (conformance/embedded.py through ref.chord's CLI):
#: the predecessor check and the fingers as often as stabilization.
RING_CONFIG: dict[str, Any] = {"check_predecessor_interval": 0.5, "fix_fingers_interval": 1.0}


def _adopts_without_asking(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-RING-7 broken: alone, the node takes its predecessor as successor unasked."""
    from ref.chord.node import Node

    original = Node._stabilize_phase_one

    def phase_one(self):  # type: ignore[no-untyped-def]
        if self.alone and self.predecessors:
            self._set_successors([self.predecessors[0]])
            return
        yield from original(self)

    monkeypatch.setattr(Node, "_stabilize_phase_one", phase_one)


def _fails_after_one_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-RING-10 broken: a peer is failed when the first attempt times out."""
    from ref.chord.exchange import Engine

    original = Engine._timed_out

    def timed_out(self, transaction_id):  # type: ignore[no-untyped-def]
        pending = self._pending.get(transaction_id)
        if pending is not None:
            pending.attempts_left = 0
        original(self, transaction_id)

    monkeypatch.setattr(Engine, "_timed_out", timed_out)


def _no_predecessor_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-RING-9 broken: the predecessor list is never walked."""
    from ref.chord.node import Node

    def check(self):  # type: ignore[no-untyped-def]
        return
        yield

    monkeypatch.setattr(Node, "_check_predecessor", check)


def _predecessor_list_of_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-RING-8 broken: adopting a predecessor forgets the rest of the list."""
    from ref.chord.node import Node

    def adopt(self, candidate):  # type: ignore[no-untyped-def]
        self._set_predecessors([candidate])

    monkeypatch.setattr(Node, "_adopt_predecessor", adopt)


def _lists_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-RING-16 broken: the node reports itself at the end of its successor list."""
    from ref.chord.node import Node
    from ref.wire import Neighbors

    original = Node._neighbors_body

    def body(self):  # type: ignore[no-untyped-def]
        answer = original(self)
        if self.alone:
            return answer
        return Neighbors(answer.predecessor, (*answer.successors, self.me.info()))

    monkeypatch.setattr(Node, "_neighbors_body", body)


def _always_refers(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-LOOKUP-1 broken: FIND_SUCCESSOR is answered by step 4 even when step 2 applies."""
    from ref.chord.node import Node
    from ref.chord.ring import closest_preceding
    from ref.wire import LookupStatus

    def answer(self, target):  # type: ignore[no-untyped-def]
        if self.alone:
            return LookupStatus.DONE, [self.me]
        return LookupStatus.REFER, closest_preceding(self.id, target, self._known_peers(), 3)

    monkeypatch.setattr(Node, "answer_lookup", answer)


def _ignores_leave(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-RING-3 broken: a valid LEAVE is answered but changes nothing."""
    from ref.chord.node import Node

    monkeypatch.setattr(Node, "_apply_leave", lambda self, leaver, body: None)


def _never_stabilizes(monkeypatch: pytest.MonkeyPatch) -> None:
    """DHT-RING-6 broken: no stabilization round ever runs."""
    from ref.chord.node import Node

    monkeypatch.setattr(Node, "_tick_stabilize", lambda self: None)


VARIANTS = [
    Variant("adopts-silent-successor", "DHT-RING-7", _adopts_without_asking, RING_CONFIG),
    Variant("fails-peer-after-one-try", "DHT-RING-10", _fails_after_one_attempt, RING_CONFIG),
    Variant("no-predecessor-walk", "DHT-RING-9", _no_predecessor_walk, RING_CONFIG),
    Variant("predecessor-list-of-one", "DHT-RING-8", _predecessor_list_of_one, RING_CONFIG),
    Variant("lists-itself-as-successor", "DHT-RING-16", _lists_itself, RING_CONFIG),
    Variant("lookup-always-refers", "DHT-LOOKUP-1", _always_refers, RING_CONFIG),
    Variant("ignores-leave", "DHT-RING-3", _ignores_leave, RING_CONFIG),
    Variant("never-stabilizes", "DHT-RING-6", _never_stabilizes, RING_CONFIG),
]
