"""Identifiers (draft Section 6.1): names, serviceIDs, blocks, key-bound IDs, node IDs.

Every hash is recomputed here with hashlib, independently of ref.wire.ids.
"""

from __future__ import annotations

import base64
import hashlib
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ref.wire import (
    SERVALDHT_SERVICE_ID,
    ErrorCode,
    LocalProtocolError,
    block_base,
    block_index,
    in_block,
    key_bound_service_id,
    node_id,
    normalise_name,
    parse_service_name,
    service_id_for,
    service_id_for_name,
)
from ref.wire.constants import MAX_NAME_LENGTH
from ref.wire.ids import decode_key, encode_key

from .strategies import fixed_bytes, host_keys, service_ids

# --- name normalisation --------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("echo.example", "echo.example"),
        ("Echo.Example", "echo.example"),
        ("ECHO.EXAMPLE", "echo.example"),
        ("\u00c9cho.example", "\u00c9cho.example"),  # É is not ASCII: unchanged
        ("\u00c9CHO", "\u00c9cho"),
        ("e\u0301cho", "\u00e9cho"),  # NFC composes e + combining acute
        ("E\u0301", "\u00c9"),  # composed first, so not lower-cased
        ("\u212a", "k"),  # KELVIN SIGN: NFC gives ASCII K, then lower-cased
        ("\u0130stanbul", "\u0130stanbul"),  # dotted capital I: not ASCII
        ("stra\u00dfe", "stra\u00dfe"),
        ("\uff21\uff22", "\uff21\uff22"),  # fullwidth: NFC, not NFKC
        ("\u4e2d\u6587.example", "\u4e2d\u6587.example"),
        ("a-b_c.1", "a-b_c.1"),
        ("a" * MAX_NAME_LENGTH, "a" * MAX_NAME_LENGTH),
        ("e\u0301" * 126, "\u00e9" * 126),  # 378 bytes before NFC, 252 after
    ],
)
def test_normalise_name(name: str, canonical: str) -> None:
    assert normalise_name(name) == canonical


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "a..b",
        ".a",
        "a.",
        "a" * (MAX_NAME_LENGTH + 1),
        "\u00e9" * 127,  # 254 bytes of UTF-8
        "a@b",
        "a/b",
        "a\\b",
        "a b",
        " a",
        "a\tb",
        "a\nb",
        "a\x00b",
        "a\x7fb",
        "a\x85b",  # C1 control
        "a\u00a0b",  # no-break space (Zs)
        "a\u3000b",  # ideographic space (Zs)
        "a\u2028b",  # line separator (Zl)
        "a\u2029b",  # paragraph separator (Zp)
        "a\u200bb",  # zero-width space (Cf)
        "a\u202eb",  # right-to-left override (Cf)
    ],
    ids=ascii,
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(LocalProtocolError):
        normalise_name(name)


@pytest.mark.parametrize("name", ["a\ud800b", "\udcff"], ids=ascii)
def test_lone_surrogate_is_an_invalid_name(name: str) -> None:
    with pytest.raises(LocalProtocolError):
        normalise_name(name)


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("J\u030c", "\u01f0"),  # J + caron has no precomposed capital; j + caron does
        ("J\u030c.example", "\u01f0.example"),
    ],
    ids=ascii,
)
def test_normalised_name_is_nfc(name: str, canonical: str) -> None:
    assert normalise_name(name) == canonical
    assert normalise_name(normalise_name(name)) == normalise_name(name)
    assert service_id_for_name(name) == service_id_for_name(canonical)


# Letters that compose, or not, with nothing around them: the normalisation is
# idempotent on these (see test_normalised_name_is_nfc for where it is not).
LABEL_ALPHABET = "abcxyzABCXYZ019-_\u00e9\u00c9\u00df\u0130\u4e2d\u212a"
labels = st.text(LABEL_ALPHABET, min_size=1, max_size=10)
names = st.lists(labels, min_size=1, max_size=4).map(".".join)
ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@given(name=names)
def test_normalisation_is_idempotent(name: str) -> None:
    canonical = normalise_name(name)
    assert normalise_name(canonical) == canonical
    assert unicodedata.is_normalized("NFC", canonical)
    assert not any("A" <= c <= "Z" for c in canonical)
    assert canonical == unicodedata.normalize("NFC", name).translate(ASCII_LOWER)


@given(name=st.text(max_size=20))
def test_normalise_name_raises_only_local_protocol_error(name: str) -> None:
    try:
        canonical = normalise_name(name)
    except LocalProtocolError:
        return
    except Exception as exc:
        pytest.fail(f"normalise_name({name!r}) raised {exc!r}")
    assert canonical
    assert len(canonical.encode("utf-8")) <= MAX_NAME_LENGTH


# --- blocks ----------------------------------------------------------------------------


@given(service_id=service_ids())
def test_block_base_and_index(service_id: bytes) -> None:
    base = block_base(service_id)
    assert base[:31] == service_id[:31]
    assert base[31] == service_id[31] & 0xF8
    assert block_index(service_id) == service_id[31] & 0x07
    assert in_block(base, block_index(service_id)) == service_id
    assert block_base(base) == base


@given(service_id=service_ids(), index=st.integers(0, 7))
def test_in_block(service_id: bytes, index: int) -> None:
    base = block_base(service_id)
    member = in_block(base, index)
    assert block_base(member) == base
    assert block_index(member) == index
    assert int.from_bytes(member, "big") - int.from_bytes(base, "big") == index


@pytest.mark.parametrize("index", [-1, 8, 255])
def test_in_block_rejects_index_out_of_range(index: int) -> None:
    with pytest.raises(LocalProtocolError):
        in_block(bytes(32), index)


def test_in_block_rejects_non_base() -> None:
    with pytest.raises(LocalProtocolError):
        in_block(bytes(31) + b"\x01", 0)


@pytest.mark.parametrize("length", [0, 31, 33])
@pytest.mark.parametrize("function", [block_base, block_index], ids=lambda f: f.__name__)
def test_block_functions_reject_wrong_length(function: object, length: int) -> None:
    with pytest.raises(LocalProtocolError) as info:
        function(bytes(length))  # type: ignore[operator]
    assert info.value.error_code is ErrorCode.BAD_SERVICE_ID


# --- serviceIDs ----------------------------------------------------------------------


def cleared(digest: bytes) -> bytes:
    """``digest`` with its low 3 bits cleared: the first ID of its block."""
    number = int.from_bytes(digest, "big") & ~0b111
    return number.to_bytes(32, "big")


@given(name=names)
def test_service_id_for_name_is_sha256_with_low_bits_cleared(name: str) -> None:
    digest = hashlib.sha256(normalise_name(name).encode("utf-8")).digest()
    assert service_id_for_name(name) == cleared(digest)
    assert service_id_for(name) == cleared(digest)


def test_service_id_for_a_known_name() -> None:
    digest = hashlib.sha256(b"echo.example").digest()
    assert service_id_for_name("Echo.Example") == digest[:31] + bytes([digest[31] & 0xF8])


@given(key=host_keys(), name=names)
def test_key_bound_service_id(key: bytes, name: str) -> None:
    material = b"\x01" + key + normalise_name(name).encode("utf-8")
    expected = cleared(hashlib.sha256(material).digest())
    assert key_bound_service_id(key, name) == expected
    assert key_bound_service_id(key, name) != service_id_for_name(name)


@pytest.mark.parametrize("length", [0, 31, 33])
def test_key_bound_service_id_rejects_wrong_key_length(length: int) -> None:
    with pytest.raises(LocalProtocolError):
        key_bound_service_id(bytes(length), "echo.example")


# --- text forms ------------------------------------------------------------------------


@given(key=fixed_bytes(32))
def test_key_text_form(key: bytes) -> None:
    text = encode_key(key)
    assert len(text) == 52
    assert text == base64.b32encode(key).decode("ascii").rstrip("=").lower()
    assert decode_key(text) == key
    assert decode_key(text.upper()) == key


@given(key=host_keys(), name=names)
def test_name_at_key_round_trip(key: bytes, name: str) -> None:
    text = f"{name}@{encode_key(key)}"
    assert parse_service_name(text) == (normalise_name(name), key)
    assert service_id_for(text) == key_bound_service_id(key, name)


@given(name=names)
def test_plain_name_has_no_key(name: str) -> None:
    assert parse_service_name(name) == (normalise_name(name), None)


@pytest.mark.parametrize(
    "text",
    [
        "echo@",
        "echo@abc",
        "echo@" + "a" * 51,
        "echo@" + "a" * 56,
        "echo@" + "1" * 52,  # 0, 1, 8, 9 are not base32
        "echo@" + "\u00e9" * 52,
        "@" + encode_key(bytes(32)),
        "a b@" + encode_key(bytes(32)),
    ],
)
def test_invalid_text_forms(text: str) -> None:
    with pytest.raises(LocalProtocolError):
        parse_service_name(text)
    with pytest.raises(LocalProtocolError):
        service_id_for(text)


# --- node IDs and the well-known serviceID -------------------------------------------


@given(key=host_keys())
def test_node_id_is_sha256_of_the_key(key: bytes) -> None:
    assert node_id(key) == hashlib.sha256(key).digest()


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_node_id_rejects_wrong_key_length(length: int) -> None:
    with pytest.raises(LocalProtocolError):
        node_id(bytes(length))


def test_servaldht_service_id() -> None:
    expected = "1ecc0d5cbe78dd18fcb75be4902ad17b148a7cfbf3a72270771d3231391d75e1"
    assert SERVALDHT_SERVICE_ID.hex() == expected
    assert hashlib.sha256(b"ServalDHT").hexdigest() == expected
