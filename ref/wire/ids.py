"""Identifiers: service names, serviceIDs, blocks and node IDs (draft Section 6.1)."""

from __future__ import annotations

import base64
import hashlib
import unicodedata

from ref.wire.constants import BLOCK_SIZE, KEY_LENGTH, MAX_NAME_LENGTH, SERVICE_ID_LENGTH
from ref.wire.errors import ErrorCode, LocalProtocolError

KEY_BOUND_PREFIX = b"\x01"
_BLOCK_MASK = BLOCK_SIZE - 1
_FORBIDDEN = frozenset("@/\\")
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zs", "Zl", "Zp"})


def normalise_name(name: str) -> str:
    """Return the canonical form of a service name (draft Section 6.1.1).

    NFC, ASCII letters lower-cased, then NFC again (lower-casing can leave a
    letter that composes with a following mark); dot-separated non-empty
    labels; no control, space, ``@``, ``/`` or ``\\`` characters; at most 253
    bytes of UTF-8.
    """
    canonical = unicodedata.normalize("NFC", name)
    canonical = "".join(c.lower() if "A" <= c <= "Z" else c for c in canonical)
    canonical = unicodedata.normalize("NFC", canonical)
    problem = _name_problem(canonical)
    if problem:
        raise LocalProtocolError(f"invalid service name {name!r}: {problem}")
    return canonical


def _name_problem(name: str) -> str | None:
    if not name:
        return "empty"
    for char in name:
        if char in _FORBIDDEN or unicodedata.category(char) in _FORBIDDEN_CATEGORIES:
            return f"character {char!r} is not allowed"
    if len(name.encode("utf-8")) > MAX_NAME_LENGTH:
        return f"longer than {MAX_NAME_LENGTH} bytes"
    if any(not label for label in name.split(".")):
        return "empty label"
    return None


def block_base(service_id: bytes) -> bytes:
    """The first serviceID of the 8-ID block that holds ``service_id``."""
    _check_service_id(service_id)
    return service_id[:-1] + bytes([service_id[-1] & ~_BLOCK_MASK & 0xFF])


def block_index(service_id: bytes) -> int:
    """Position (0-7) of ``service_id`` inside its block."""
    _check_service_id(service_id)
    return service_id[-1] & _BLOCK_MASK


def in_block(base: bytes, index: int) -> bytes:
    """The serviceID at ``index`` (0-7) of the block starting at ``base``."""
    if block_base(base) != base or not 0 <= index < BLOCK_SIZE:
        raise LocalProtocolError("not a block base or index out of range")
    return base[:-1] + bytes([base[-1] | index])


def service_id_for_name(name: str) -> bytes:
    """serviceID of a first-come-first-served name: block base of SHA-256(name)."""
    return block_base(hashlib.sha256(normalise_name(name).encode("utf-8")).digest())


def key_bound_service_id(owner_key: bytes, name: str) -> bytes:
    """serviceID bound to an owner key: block base of SHA-256(0x01 | key | name)."""
    if len(owner_key) != KEY_LENGTH:
        raise LocalProtocolError("an owner key is 32 bytes")
    material = KEY_BOUND_PREFIX + owner_key + normalise_name(name).encode("utf-8")
    return block_base(hashlib.sha256(material).digest())


def node_id(host_key: bytes) -> bytes:
    """Node ID of a ServalDHT node: SHA-256 of its Ed25519 public key."""
    if len(host_key) != KEY_LENGTH:
        raise LocalProtocolError("a host key is 32 bytes")
    return hashlib.sha256(host_key).digest()


def encode_key(key: bytes) -> str:
    """Text form of a public key: 52 lower-case base32 characters, no padding."""
    return base64.b32encode(key).decode("ascii").rstrip("=").lower()


def decode_key(text: str) -> bytes:
    """Inverse of :func:`encode_key`."""
    try:
        key = base64.b32decode(text.upper() + "====", casefold=False)
    except ValueError as exc:
        raise LocalProtocolError(f"not a base32 key: {text!r}") from exc
    if len(key) != KEY_LENGTH:
        raise LocalProtocolError(f"a key is {KEY_LENGTH} bytes, {text!r} has {len(key)}")
    if encode_key(key) != text.lower():
        raise LocalProtocolError(f"not the canonical text of a key: {text!r}")
    return key


def parse_service_name(text: str) -> tuple[str, bytes | None]:
    """Split ``name`` or ``name@key`` (a key-bound name) into name and key."""
    name, sep, key_text = text.rpartition("@")
    if not sep:
        return normalise_name(text), None
    return normalise_name(name), decode_key(key_text)


def service_id_for(text: str) -> bytes:
    """serviceID of a service name in text form (plain or key-bound)."""
    name, key = parse_service_name(text)
    return key_bound_service_id(key, name) if key else service_id_for_name(name)


def _check_service_id(service_id: bytes) -> None:
    if len(service_id) != SERVICE_ID_LENGTH:
        raise LocalProtocolError(
            f"a serviceID is {SERVICE_ID_LENGTH} bytes, got {len(service_id)}",
            ErrorCode.BAD_SERVICE_ID,
        )
