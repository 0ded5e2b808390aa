"""Machinery shared by the format modules.

Each wire format is declared once, as a Construct ``Struct``.  The objects
callers handle are frozen dataclasses whose fields are the *semantic* fields
of that Struct (the ones a caller chooses); derived fields (types, lengths,
counts, reserved bits) are left to the Struct's ``Const``, ``Rebuild`` and
``Default``.  This module converts between the two by field name and keeps
Construct's exceptions from leaking: decoders raise ``RemoteProtocolError``,
encoders ``LocalProtocolError``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import struct
import types
import typing
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar

import construct as cs

from ref.wire.errors import ErrorCode, LocalProtocolError, ProtocolError, RemoteProtocolError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
T = TypeVar("T")
E = TypeVar("E", bound=Enum)

_V4_MAPPED_PREFIX = bytes(10) + b"\xff\xff"

if TYPE_CHECKING:  # construct is generic only in its type stubs
    _Adapter = cs.Adapter[Any, Any, Any, Any]
else:
    _Adapter = cs.Adapter


class AddressAdapter(_Adapter):
    """A 128-bit address field; IPv4 travels IPv4-mapped (RFC 4291, 2.5.5.2)."""

    def __init__(self) -> None:
        super().__init__(cs.Bytes(16))

    def _decode(self, obj: bytes, context: Any, path: Any) -> IPAddress:
        if obj.startswith(_V4_MAPPED_PREFIX):
            return ipaddress.IPv4Address(obj[12:])
        return ipaddress.IPv6Address(obj)

    def _encode(self, obj: IPAddress, context: Any, path: Any) -> bytes:
        if isinstance(obj, ipaddress.IPv4Address):
            return _V4_MAPPED_PREFIX + obj.packed
        if isinstance(obj, ipaddress.IPv6Address):
            return obj.packed
        raise cs.ExplicitError(f"not an IP address: {obj!r}")


class EnumAdapter(_Adapter):
    """An integer field holding a member of ``enum_type``; other values are errors."""

    def __init__(self, subcon: cs.Construct[Any, Any], enum_type: type[Enum]) -> None:
        super().__init__(subcon)
        self.enum_type = enum_type

    def _decode(self, obj: int, context: Any, path: Any) -> Enum:
        try:
            return self.enum_type(obj)
        except ValueError:
            raise cs.ExplicitError(f"{obj} is not a {self.enum_type.__name__}") from None

    def _encode(self, obj: Any, context: Any, path: Any) -> int:
        return int(self.enum_type(obj).value)


class FlagsAdapter(_Adapter):
    """An integer bit field read as an ``IntFlag``; unknown bits are kept."""

    def __init__(self, subcon: cs.Construct[Any, Any], flag_type: type[Enum]) -> None:
        super().__init__(subcon)
        self.flag_type = flag_type

    def _decode(self, obj: int, context: Any, path: Any) -> Enum:
        return self.flag_type(obj)

    def _encode(self, obj: Any, context: Any, path: Any) -> int:
        return int(obj)


# --- dataclass <-> Construct container -------------------------------------


def _converter(hint: Any) -> Callable[[Any], Any]:
    """How to turn a parsed value into the type named by ``hint``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(inner) == 1:
            convert = _converter(inner[0])
            return lambda value: None if value is None else convert(value)
        return lambda value: value
    if origin is tuple:
        convert = _converter(typing.get_args(hint)[0])
        return lambda value: tuple(convert(item) for item in value)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return lambda value: from_container(hint, value)
    return lambda value: value


_PLANS: dict[type, list[tuple[str, Callable[[Any], Any]]]] = {}


def _plan(cls: type) -> list[tuple[str, Callable[[Any], Any]]]:
    plan = _PLANS.get(cls)
    if plan is None:
        hints = typing.get_type_hints(cls)
        plan = [(f.name, _converter(hints[f.name])) for f in dataclasses.fields(cls)]
        _PLANS[cls] = plan
    return plan


def from_container(cls: type[T], container: Any) -> T:
    """Build the dataclass ``cls`` from the same-named fields of ``container``."""
    return cls(**{name: convert(container[name]) for name, convert in _plan(cls)})


def to_container(obj: Any) -> Any:
    """The dict Construct builds from: a dataclass's fields, recursively."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_container(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [to_container(item) for item in obj]
    return obj


# --- error boundaries --------------------------------------------------------

_PARSE_FAILURES = (cs.ConstructError, struct.error, KeyError, ValueError, IndexError, TypeError)


class _Boundary:
    """A context manager that lets only one side's protocol error out.

    A class rather than ``@contextmanager``: it sits on every encode and
    decode, and a generator-based manager costs several times more.
    """

    __slots__ = ("catches", "error", "verb", "what")

    def __init__(
        self,
        error: type[ProtocolError],
        catches: tuple[type[BaseException], ...],
        verb: str,
        what: str,
    ) -> None:
        self.error = error
        self.catches = catches
        self.verb = verb
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, trace: Any
    ) -> None:
        # Returns None, so every exception propagates: either the one
        # raised here in its place, or the original.
        if exc is None or isinstance(exc, self.error):
            return
        if isinstance(exc, ProtocolError):
            raise self.error(str(exc.args[0]), exc.error_code) from exc
        if isinstance(exc, self.catches):
            raise self.error(f"{self.verb} {self.what}: {_describe(exc)}") from exc


_BUILD_FAILURES = (*_PARSE_FAILURES, AttributeError, OverflowError)


def decoding(what: str) -> _Boundary:
    """Turn every failure inside a decoder into ``RemoteProtocolError``."""
    return _Boundary(RemoteProtocolError, _PARSE_FAILURES, "malformed", what)


def encoding(what: str) -> _Boundary:
    """Turn every failure inside an encoder into ``LocalProtocolError``."""
    return _Boundary(LocalProtocolError, _BUILD_FAILURES, "cannot encode", what)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().replace("\n", " ")
    return text or type(exc).__name__


def parse_exact(fmt: cs.Construct[Any, Any], data: bytes) -> Any:
    """Parse ``data`` with ``fmt`` and require every byte to be used."""
    return cs.Sequence(fmt, cs.Terminated).parse(data)[0]


def remote(condition: bool, message: str, code: ErrorCode = ErrorCode.MALFORMED) -> None:
    """Raise ``RemoteProtocolError`` unless ``condition`` holds."""
    if not condition:
        raise RemoteProtocolError(message, code)


def local(condition: bool, message: str, code: ErrorCode = ErrorCode.MALFORMED) -> None:
    """Raise ``LocalProtocolError`` unless ``condition`` holds."""
    if not condition:
        raise LocalProtocolError(message, code)


# --- layout introspection (the draft's diagrams are checked against this) ---


@dataclasses.dataclass(frozen=True)
class Field:
    """One top-level field of a declared format: its name and width in bits."""

    name: str
    bits: int | None  # None: variable length or optional


def layout(fmt: cs.Struct) -> list[Field]:
    """The top-level fields of a Struct in wire order, with their widths."""
    fields = []
    for sub in fmt.subcons:
        try:
            bits: int | None = 8 * sub.sizeof()
        except (cs.SizeofError, KeyError, AttributeError):
            bits = None
        fields.append(Field(str(sub.name), bits))
    return fields
