"""Harnesses for the decoders of ``ref.wire``: one input, one decode, three oracles.

Each harness takes the bytes a peer could send and checks:

* the decoder returns an object or raises ``RemoteProtocolError``, nothing
  else (STYLE item 8);
* what it accepts survives a round trip: the encoder takes the decoded object
  (a decoder never returns what the encoder refuses), its encoding is no
  longer than the input (no bloat) and decodes to the same object;
* for the ``-diff`` harnesses, the derived fast path (``ref.wire.fast``) and
  Construct's interpreter accept and reject the same inputs with the same
  error code, and return objects equal down to their types.

A SAL packet carries a checksum over all of it, which random bytes pass once
in 65,536 tries; so when the checksum is what a SAL harness's decoder
refused, it decodes the input again with the checksum recomputed, and the
mutations reach the extensions behind it.  The input that failed is
attached to the exception as a note.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, TypeVar

from fuzz.findings import InvariantViolation, Mismatch
from ref.wire import (
    ErrorCode,
    LocalProtocolError,
    MessageFlags,
    RemoteProtocolError,
    decode_dht,
    decode_record,
    decode_sal,
    decode_stream,
    encode_dht,
    encode_record,
    encode_sal,
    encode_stream,
    internet_checksum,
)
from ref.wire.dht import decode_dht_interpreted
from ref.wire.records import decode_record_interpreted
from ref.wire.sal import decode_sal_interpreted

T = TypeVar("T")
_SAL_HEADER = 12


def fix_checksum(datagram: bytes) -> bytes:
    """``datagram`` with its SAL checksum (octets 10-11) recomputed."""
    if len(datagram) < _SAL_HEADER:
        return datagram
    zeroed = datagram[:10] + b"\x00\x00" + datagram[12:]
    return zeroed[:10] + internet_checksum(zeroed).to_bytes(2, "big") + zeroed[12:]


def _note(error: BaseException, data: bytes) -> None:
    error.add_note(f"decoder input: {data.hex()}")


def round_trip(
    obj: T,
    data: bytes,
    encode: Callable[[T], bytes],
    decode: Callable[[bytes], T],
) -> None:
    """What a decoder accepted, the encoder takes back, no longer, and it reads the same."""
    try:
        again = encode(obj)
    except LocalProtocolError as error:
        raise InvariantViolation("encoder-refuses-decoded", f"{error} for {obj!r}") from error
    if len(again) > len(data):
        raise InvariantViolation(
            "re-encoding-grows", f"{len(data)} bytes re-encode to {len(again)}"
        )
    try:
        back = decode(again)
    except RemoteProtocolError as error:
        raise InvariantViolation("re-encoding-rejected", f"{error} for {obj!r}") from error
    if not same(back, obj):
        raise InvariantViolation("round-trip-changes", f"{obj!r} comes back as {back!r}")


# --- one harness per decoder ----------------------------------------------------------------


def sal(data: bytes) -> None:
    """``decode_sal`` (the fast path) on the input, and again with its checksum fixed."""
    for variant in (data, fix_checksum(data)):
        try:
            refused = _sal_once(variant)
        except Exception as error:
            _note(error, variant)
            raise
        if refused is not ErrorCode.BAD_CHECKSUM:
            return


def _sal_once(data: bytes) -> ErrorCode | None:
    """Decode and round-trip one packet; the code it was refused with, if it was."""
    try:
        packet = decode_sal(data)
    except RemoteProtocolError as error:
        return error.error_code
    round_trip(packet, data, encode_sal, decode_sal)
    return None


def stream(data: bytes) -> None:
    """``decode_stream`` (the payload of a STREAM packet)."""
    try:
        segment = decode_stream(data)
    except RemoteProtocolError:
        return
    round_trip(segment, data, encode_stream, decode_stream)


def _decode_unverified(data: bytes) -> Any:
    return decode_dht(data, verify=False)


def dht(data: bytes) -> None:
    """``decode_dht``: the body without the signature check, then with it when signed."""
    try:
        message = decode_dht(data, verify=False)
    except RemoteProtocolError:
        return
    round_trip(message, data, encode_dht, _decode_unverified)
    if message.flags & MessageFlags.SIGNED:
        try:
            verified = decode_dht(data)
        except RemoteProtocolError:
            return
        if not same(verified, message):
            raise InvariantViolation("verify-changes-message", f"{message!r} / {verified!r}")


def record(data: bytes) -> None:
    """``decode_record`` (the node harnesses check signatures, in the record store)."""
    try:
        decoded = decode_record(data)
    except RemoteProtocolError:
        return
    round_trip(decoded, data, encode_record, decode_record)


# --- differential: the derived fast path against Construct's interpreter ----------------


def same(a: object, b: object) -> bool:
    """Equal, and of the same types all the way down."""
    kind = type(a)
    if kind is not type(b):
        return False
    names = _field_names(kind)
    if names is not None:
        return all(same(getattr(a, name), getattr(b, name)) for name in names)
    if isinstance(a, tuple | list) and isinstance(b, tuple | list):
        return len(a) == len(b) and all(map(same, a, b))
    return a == b


@functools.cache
def _field_names(kind: type) -> tuple[str, ...] | None:
    """The field names of a dataclass type, None for any other type (looked up once)."""
    if not dataclasses.is_dataclass(kind):
        return None
    return tuple(field.name for field in dataclasses.fields(kind))


def _outcome(decode: Callable[[bytes], Any], data: bytes) -> tuple[Any, ...]:
    """("ok", result) or ("refused", error code); anything else propagates."""
    try:
        return ("ok", decode(data))
    except RemoteProtocolError as error:
        return ("refused", error.error_code)


def agree(
    fast: Callable[[bytes], Any], reference: Callable[[bytes], Any], data: bytes
) -> tuple[Any, ...]:
    """Both decoders accept with the same object, or refuse with the same code: that outcome."""
    try:
        mine, theirs = _outcome(fast, data), _outcome(reference, data)
        if mine[0] == theirs[0] == "ok":
            if not same(mine[1], theirs[1]):
                raise Mismatch("different-objects", f"{mine[1]!r} / {theirs[1]!r}")
        elif mine != theirs:
            raise Mismatch("accept-or-refuse", f"fast {mine!r}, interpreted {theirs!r}")
    except Exception as error:
        _note(error, data)
        raise
    return mine


def _interpreted_unverified(data: bytes) -> Any:
    return decode_dht_interpreted(data, verify=False)


_BAD_CHECKSUM = ("refused", ErrorCode.BAD_CHECKSUM)


def sal_diff(data: bytes) -> None:
    for variant in (data, fix_checksum(data)):
        if agree(decode_sal, decode_sal_interpreted, variant) != _BAD_CHECKSUM:
            return


def dht_diff(data: bytes) -> None:
    agree(_decode_unverified, _interpreted_unverified, data)


def record_diff(data: bytes) -> None:
    agree(decode_record, decode_record_interpreted, data)
