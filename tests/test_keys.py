"""Key files (ref.keys): creation with mode 0600, reloading, and one-line errors."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from ref.keys import (
    MAX_KEY_FILE_SIZE,
    KeyFileError,
    load_key,
    load_or_create_key,
    public_key_text,
    write_key,
)
from ref.wire import public_key_bytes
from ref.wire.errors import ServalError
from ref.wire.ids import decode_key

SEED = bytes(range(32))


def raw(key: ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


@pytest.fixture
def umask() -> Iterator[Callable[[int], int]]:
    """Set the process umask for one test and restore it afterwards."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


# --- creating and loading ---------------------------------------------------------


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o077])
def test_new_key_file_has_mode_0600(tmp_path: Path, umask: Callable[[int], int], mask: int) -> None:
    umask(mask)
    path = tmp_path / "host.key"
    _, created = load_or_create_key(path)
    assert created
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_second_call_loads_the_same_key(tmp_path: Path) -> None:
    path = tmp_path / "host.key"
    first, created = load_or_create_key(path)
    second, created_again = load_or_create_key(path)
    assert created and not created_again
    assert raw(first) == raw(second)
    assert raw(load_key(path)) == raw(first)


def test_new_key_file_is_unencrypted_pkcs8_pem(tmp_path: Path) -> None:
    path = tmp_path / "host.key"
    key, _ = load_or_create_key(path)
    expected = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    assert path.read_bytes() == expected
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")


def test_creation_leaves_no_temporary_file(tmp_path: Path) -> None:
    load_or_create_key(tmp_path / "host.key")
    assert [p.name for p in tmp_path.iterdir()] == ["host.key"]


def test_write_key_round_trips(tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.from_private_bytes(SEED)
    path = tmp_path / "owner.key"
    write_key(path, key)
    assert raw(load_key(path)) == SEED
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_write_key_never_replaces_a_file(tmp_path: Path) -> None:
    path = tmp_path / "owner.key"
    path.write_bytes(b"precious")
    with pytest.raises(KeyFileError, match="already exists"):
        write_key(path, ed25519.Ed25519PrivateKey.generate())
    assert path.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["owner.key"]


def test_creation_race_loads_the_winners_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process creates the file between the existence check and the link."""
    path = tmp_path / "host.key"
    winner = ed25519.Ed25519PrivateKey.from_private_bytes(SEED)
    real_link = os.link

    def link_after_the_winner(source: Path, target: Path) -> None:
        path.write_bytes(winner.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
        real_link(source, target)

    monkeypatch.setattr(os, "link", link_after_the_winner)
    key, created = load_or_create_key(path)
    assert not created
    assert raw(key) == SEED
    assert [p.name for p in tmp_path.iterdir()] == ["host.key"]


def test_group_readable_key_file_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "host.key"
    key, _ = load_or_create_key(path)
    path.chmod(0o644)
    assert raw(load_key(path)) == raw(key)


def test_public_key_text_is_the_encoded_raw_public_key() -> None:
    key = ed25519.Ed25519PrivateKey.from_private_bytes(SEED)
    text = public_key_text(key)
    assert len(text) == 52
    assert decode_key(text) == public_key_bytes(key)


# --- errors -------------------------------------------------------------------------


def pem(key: object, fmt: PrivateFormat = PrivateFormat.PKCS8) -> bytes:
    assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
    return key.private_bytes(Encoding.PEM, fmt, NoEncryption())


ED25519 = ed25519.Ed25519PrivateKey.from_private_bytes(SEED)
CORRUPT_CONTENTS = {
    "empty": (b"", "is empty"),
    "whitespace": (b"\n  \n", "is empty"),
    "garbage": (b"not a key at all\n", "is corrupt"),
    "binary": (bytes(range(256)), "is corrupt"),
    "raw seed": (SEED, "is corrupt"),
    "truncated PEM": (
        ED25519.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())[:60],
        "is corrupt",
    ),
    "public key": (
        ED25519.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo),
        "is corrupt",
    ),
    "OpenSSH format": (
        ED25519.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()),
        "is corrupt",
    ),
    "encrypted": (
        ED25519.private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(b"secret")
        ),
        "is encrypted",
    ),
    "RSA": (pem(rsa.generate_private_key(65537, 1024)), "of type RSA"),
    "EC": (
        pem(ec.generate_private_key(ec.SECP256R1()), PrivateFormat.TraditionalOpenSSL),
        "of type EC",
    ),
    "too large": (b"x" * (MAX_KEY_FILE_SIZE + 1), "is too large"),
}


def assert_one_line_naming(error: KeyFileError, path: Path, problem: str) -> None:
    message = str(error)
    assert str(path) in message
    assert problem in message
    assert "\n" not in message and "\r" not in message
    assert isinstance(error, ServalError)
    assert error.path == path


@pytest.mark.parametrize("kind", CORRUPT_CONTENTS)
@pytest.mark.parametrize("loader", [load_key, load_or_create_key])
def test_bad_key_file_is_one_line_key_file_error(
    tmp_path: Path, kind: str, loader: Callable[[Path], object]
) -> None:
    content, problem = CORRUPT_CONTENTS[kind]
    path = tmp_path / "bad.key"
    path.write_bytes(content)
    with pytest.raises(KeyFileError) as info:
        loader(path)
    assert_one_line_naming(info.value, path, problem)
    assert path.read_bytes() == content  # never replaced


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.key"
    with pytest.raises(KeyFileError) as info:
        load_key(path)
    assert_one_line_naming(info.value, path, "does not exist")


def test_directory(tmp_path: Path) -> None:
    for loader in (load_key, load_or_create_key):
        with pytest.raises(KeyFileError) as info:
            loader(tmp_path)
        assert_one_line_naming(info.value, tmp_path, "is a directory")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "host.key"
    load_or_create_key(path)
    path.chmod(0)
    with pytest.raises(KeyFileError) as info:
        load_key(path)
    assert_one_line_naming(info.value, path, "cannot be read: permission denied")


def test_read_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What an unreadable file gives, also where the tests run as root."""
    path = tmp_path / "host.key"
    load_or_create_key(path)

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr("builtins.open", refuse)
    with pytest.raises(KeyFileError) as info:
        load_key(path)
    assert_one_line_naming(info.value, path, "cannot be read: permission denied")


@pytest.mark.parametrize("parent", ["missing", "a-file"])
def test_missing_parent_directory_is_not_created(tmp_path: Path, parent: str) -> None:
    (tmp_path / "a-file").write_bytes(b"")
    path = tmp_path / parent / "host.key"
    for create in (load_or_create_key, lambda p: write_key(p, ED25519)):
        with pytest.raises(KeyFileError) as info:
            create(path)
        assert_one_line_naming(info.value, path, "cannot be created")
    assert not (tmp_path / "missing").exists()


def test_file_name_with_a_newline_stays_one_line(tmp_path: Path) -> None:
    path = tmp_path / "odd\nname.key"
    with pytest.raises(KeyFileError) as info:
        load_key(path)
    message = str(info.value)
    assert "\n" not in message
    assert "odd\\nname.key" in message
