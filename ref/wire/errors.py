"""One error hierarchy for the whole suite, with the draft's error codes.

``RemoteProtocolError`` means a peer sent bad bytes or behaved badly;
``LocalProtocolError`` means the caller misused the API.  The receive path of
every decoder raises nothing but ``RemoteProtocolError`` (draft Section 6.11,
the error code registry).
"""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    """Serval error codes (draft Section 6.11).

    0x00xx are common, 0x01xx are SAL drop reasons, 0x02xx are ServalDHT
    error replies.  Only the ServalDHT codes travel on the wire (in ERROR
    messages); SAL codes name the counters of silent drops.
    """

    MALFORMED = 0x0001
    LIMIT_EXCEEDED = 0x0002
    INTERNAL_ERROR = 0x0003

    BAD_CHECKSUM = 0x0101
    UNKNOWN_CRITICAL_EXTENSION = 0x0102
    EXTENSION_ORDER = 0x0103
    BAD_NONCE = 0x0104
    BAD_SEQUENCE = 0x0105
    NO_SERVICE = 0x0106
    HOP_LIMIT_EXCEEDED = 0x0107
    LOOP_DETECTED = 0x0108
    QUEUE_FULL = 0x0109
    UNEXPECTED_CONTROL = 0x010A

    UNSUPPORTED_VERSION = 0x0201
    UNKNOWN_MESSAGE_TYPE = 0x0202
    BAD_SIGNATURE = 0x0203
    SIGNATURE_REQUIRED = 0x0204
    NOT_OWNER = 0x0205
    STALE_SEQUENCE = 0x0206
    RECORD_EXPIRED = 0x0207
    NOT_RESPONSIBLE = 0x0208
    ADDRESS_NOT_VALIDATED = 0x0209
    RATE_LIMITED = 0x020A
    BAD_SERVICE_ID = 0x020B


class ServalError(Exception):
    """Base of every error the suite raises on purpose."""


class ProtocolError(ServalError):
    """A violation of the draft, carrying the draft's error code.

    Abstract: raise one of the two subclasses, which say whose fault it was.
    """

    error_code: ErrorCode = ErrorCode.MALFORMED

    def __init__(self, message: str, error_code: ErrorCode | None = None) -> None:
        if type(self) is ProtocolError:
            raise TypeError("raise RemoteProtocolError or LocalProtocolError")
        super().__init__(message)
        if error_code is not None:
            self.error_code = error_code

    def __str__(self) -> str:
        return f"{self.error_code.name}: {super().__str__()}"


class RemoteProtocolError(ProtocolError):
    """A peer sent bytes or behaviour the draft forbids."""


class LocalProtocolError(ProtocolError):
    """The caller asked for something the draft forbids (a bug in the caller)."""
