"""Wire objects as plain values (dicts, lists, strings, ints) and back.

The draft's test vectors list field values in this form, and so will traces
and reports: bytes as lower-case hex, enums by name, flags as lists of names,
addresses as text, a DHT body as a mapping with its ``type``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import types
import typing
from enum import Enum, IntFlag
from typing import Any, TypeVar

from ref.wire.dht import BODIES, Body, MessageType
from ref.wire.errors import LocalProtocolError

T = TypeVar("T")


def to_plain(value: Any) -> Any:
    """A plain-value view of a wire object (see the module docstring)."""
    if isinstance(value, Body):
        return {"type": value.TYPE.name, **_fields(value)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _fields(value)
    if isinstance(value, IntFlag):
        return _flag_names(value)
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(value)
    if isinstance(value, tuple | list):
        return [to_plain(item) for item in value]
    return value


def _fields(obj: Any) -> dict[str, Any]:
    return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def _flag_names(flags: IntFlag) -> list[Any]:
    names: list[Any] = []
    rest = int(flags)
    for member in type(flags):
        if member.value and rest & member.value == member.value:
            names.append(member.name)
            rest &= ~member.value
    if rest:
        names.append(rest)
    return names


def from_plain(cls: type[T], data: Any) -> T:
    """Inverse of :func:`to_plain` for the dataclass ``cls``."""
    try:
        return typing.cast(T, _convert(cls, data))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise LocalProtocolError(f"cannot read {cls.__name__} from {data!r}: {exc}") from exc


def _convert(hint: Any, data: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return _convert_union(typing.get_args(hint), data)
    if origin is tuple:
        return tuple(_convert(typing.get_args(hint)[0], item) for item in data)
    if hint is Body:
        body_type = BODIES[MessageType[data["type"]]][1]
        return _convert(body_type, {k: v for k, v in data.items() if k != "type"})
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        known = {f.name for f in dataclasses.fields(hint)}
        unknown = set(data) - known
        if unknown:
            raise KeyError(f"unknown fields {sorted(unknown)}")
        return hint(**{name: _convert(hints[name], value) for name, value in data.items()})
    if isinstance(hint, type) and issubclass(hint, IntFlag):
        value = 0
        for item in data:
            value |= item if isinstance(item, int) else hint[item].value
        return hint(value)
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint[data]
    if hint is bytes:
        return bytes.fromhex(data)
    if hint in (ipaddress.IPv4Address, ipaddress.IPv6Address):
        return ipaddress.ip_address(data)
    if hint is int:
        if not isinstance(data, int):
            raise TypeError(f"{data!r} is not an integer")
        return data
    raise TypeError(f"no conversion to {hint!r}")


def _convert_union(options: tuple[Any, ...], data: Any) -> Any:
    if data is None and type(None) in options:
        return None
    addresses = {ipaddress.IPv4Address, ipaddress.IPv6Address}
    if addresses <= set(options):
        return ipaddress.ip_address(data)
    for option in options:
        if option is type(None):
            continue
        try:
            return _convert(option, data)
        except (KeyError, TypeError, ValueError):
            continue
    raise TypeError(f"{data!r} fits none of {options}")
