"""Ed25519 key files: node host keys and service owner keys.

One format: an unencrypted PKCS8 PEM private key.  A new key file is
written whole or not at all: the key goes to a temporary file created with
mode 0600 (``O_EXCL``, so it is never readable by others, even for a
moment), is synced to disk and then hard-linked to its name, which never
replaces an existing file.  Two processes creating the same key file end
up sharing one key.  Losing an owner key loses the names it owns until
their records expire, hence the care.

An existing key file is loaded whatever its mode: a group- or
world-readable key is the operator's choice, not an error here.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from ref.wire.errors import ServalError
from ref.wire.ids import encode_key
from ref.wire.records import public_key_bytes

#: Far more than a PEM key needs; stops a wrong path (a disk image, /dev/zero) early.
MAX_KEY_FILE_SIZE = 64 * 1024
_EXPECTED = "expected a PEM Ed25519 private key"


class KeyFileError(ServalError):
    """A key file cannot be read, parsed or written; ``str()`` is one line."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(path, problem)
        self.path = path
        self.problem = problem

    def __str__(self) -> str:
        # Escape control characters so a strange file name cannot break the line.
        shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(self.path))
        return f"key file {shown} {self.problem}"


def load_or_create_key(path: Path) -> tuple[Ed25519PrivateKey, bool]:
    """The key in ``path``, creating the file if there is none; True if created.

    The parent directory must exist.
    """
    if not os.path.lexists(path):
        key = Ed25519PrivateKey.generate()
        if _publish(path, _pem(key)):
            return key, True
    # It existed, or another process created it meanwhile.
    return load_key(path), False


def load_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in the PEM file ``path``."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_KEY_FILE_SIZE + 1)
    except FileNotFoundError:
        raise KeyFileError(path, "does not exist") from None
    except IsADirectoryError:
        raise KeyFileError(path, "is a directory") from None
    except OSError as exc:
        raise KeyFileError(path, f"cannot be read: {_reason(exc)}") from exc
    if not data.strip():
        raise KeyFileError(path, f"is empty: {_EXPECTED}")
    if len(data) > MAX_KEY_FILE_SIZE:
        raise KeyFileError(path, f"is too large: {_EXPECTED}")
    try:
        key = load_pem_private_key(data, password=None)
    except TypeError:  # raised only when a password is needed
        raise KeyFileError(path, "is encrypted: key files are stored unencrypted") from None
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError(path, f"is corrupt: {_EXPECTED}") from None
    if not isinstance(key, Ed25519PrivateKey):
        kind = type(key).__name__.removesuffix("PrivateKey")
        raise KeyFileError(path, f"holds a private key of type {kind}: {_EXPECTED}")
    return key


def write_key(path: Path, key: Ed25519PrivateKey) -> None:
    """Write ``key`` to the new file ``path`` (mode 0600); never replace a file."""
    if not _publish(path, _pem(key)):
        raise KeyFileError(path, "already exists")


def public_key_text(key: Ed25519PrivateKey) -> str:
    """The text form of ``key``'s public key (as in ``name@key``, Section 6.1.4)."""
    return encode_key(public_key_bytes(key))


def _pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def _publish(path: Path, data: bytes) -> bool:
    """Create ``path`` holding ``data``, all or nothing; False if it exists."""
    temporary = path.with_name(f".{path.name}.{os.urandom(6).hex()}.tmp")
    try:
        descriptor = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileNotFoundError:
        raise KeyFileError(path, f"cannot be created: no directory {path.parent}") from None
    except OSError as exc:
        raise KeyFileError(path, f"cannot be created: {_reason(exc)}") from exc
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.link(temporary, path)
    except FileExistsError:
        return False
    except OSError as exc:
        raise KeyFileError(path, f"cannot be written: {_reason(exc)}") from exc
    finally:
        temporary.unlink(missing_ok=True)
    _sync_directory(path.parent)
    return True


def _sync_directory(directory: Path) -> None:
    """Make the new name durable; skipped where a directory cannot be synced."""
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _reason(exc: OSError) -> str:
    return (exc.strerror or type(exc).__name__).lower()
