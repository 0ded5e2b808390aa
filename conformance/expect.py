"""Expected answers, with alternatives and silence (tlsfuzzer's expectation trees, flattened).

A case lists what a conforming target may send: ``expect(received,
ErrorReply(ErrorCode.MALFORMED), NoReply())`` accepts either that ERROR or
silence within the timeout.  Each expectation describes itself, so that a
failure reads "expected: ERROR MALFORMED / no message; actual: PONG".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from conformance.peer import Received, summarise
from ref.wire import DhtMessage, Error, ErrorCode, MessageType


class Expectation:
    def matches(self, received: Received | None) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Reply(Expectation):
    """A response of ``type`` for which ``check`` (if given) holds."""

    type: MessageType
    check: Callable[[DhtMessage], bool] | None = None
    what: str = ""

    def matches(self, received: Received | None) -> bool:
        if received is None or received.message.type != self.type:
            return False
        return self.check is None or self.check(received.message)

    def describe(self) -> str:
        return self.type.name + (f" ({self.what})" if self.what else "")


@dataclasses.dataclass(frozen=True)
class ErrorReply(Expectation):
    """ERROR with one of ``codes``."""

    codes: tuple[ErrorCode, ...]

    def __init__(self, *codes: ErrorCode) -> None:
        object.__setattr__(self, "codes", codes)

    def matches(self, received: Received | None) -> bool:
        if received is None or not isinstance(received.message.body, Error):
            return False
        return received.message.body.error_code in self.codes

    def describe(self) -> str:
        return "ERROR " + " or ".join(code.name for code in self.codes)


@dataclasses.dataclass(frozen=True)
class NoReply(Expectation):
    """Silence for the timeout."""

    def matches(self, received: Received | None) -> bool:
        return received is None

    def describe(self) -> str:
        return "no message"


@dataclasses.dataclass(frozen=True)
class AnyReply(Expectation):
    """Any decodable response."""

    def matches(self, received: Received | None) -> bool:
        return received is not None

    def describe(self) -> str:
        return "any response"


def show(received: Received | None) -> str:
    return "no message" if received is None else summarise(received.message)
