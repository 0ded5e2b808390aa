"""The derived fast path agrees with Construct's interpreter on every input.

``decode_sal``, ``decode_dht`` and ``decode_record`` (and their encoders) read
and write through the codecs ``ref.wire.fast`` derives from the Construct
declarations; their ``*_interpreted`` twins run the same semantic checks
through Construct's interpreter, the reference.  Two outcomes agree when both
return objects equal down to their types (an ``IPv4Address`` is not an
``IPv6Address``, a ``ControlFlags`` is not an ``int``), or both raise the same
exception class with the same error code.

The inputs: legal objects and their encodings (from ``strategies``); every
truncation, every single-byte change (four values at every offset, SAL
checksums recomputed or not), appended bytes and structure-aware mutants of
those encodings; random bytes behind valid headers; and legal objects with one
field corrupted, for the encoders.  Below the codecs, every declared format's
derived parser is checked against Construct on random and damaged bytes, and
every legal object must be built without falling back to the interpreter.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import random
from collections.abc import Callable, Iterator
from typing import Any

import construct as cs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.decoders import same
from ref.wire import (
    BODIES,
    FORMATS,
    Control,
    ControlFlags,
    DhtMessage,
    Endpoint,
    NodeInfo,
    ProtocolError,
    RecordEndpoint,
    RecordFlags,
    Replicate,
    SalPacket,
    ServiceRecord,
    SourceRoute,
    TransportProtocol,
    sign_record,
)
from ref.wire.dht import (
    HeaderFormat,
    NodeInfoFormat,
    decode_dht,
    decode_dht_interpreted,
    encode_dht,
    encode_dht_interpreted,
)
from ref.wire.fast import DERIVED, INTERPRETED
from ref.wire.records import (
    RecordEndpointFormat,
    ServiceRecordFormat,
    decode_record,
    decode_record_interpreted,
    encode_record,
    encode_record_interpreted,
)
from ref.wire.sal import (
    BaseHeaderFormat,
    ControlExtensionFormat,
    EndpointFormat,
    ExtensionHeaderFormat,
    ServiceExtensionFormat,
    SourceExtensionFormat,
    decode_sal,
    decode_sal_interpreted,
    decode_stream,
    decode_stream_interpreted,
    encode_sal,
    encode_sal_interpreted,
    encode_stream,
    encode_stream_interpreted,
)

from .strategies import (
    KEY_FOR,
    PRIVATE_KEYS,
    corrupted,
    dht_messages,
    dht_mutants,
    fix_checksum,
    record_mutants,
    sal_mutants,
    sal_packets,
    service_records,
    stream_segments,
)

# Deterministic whatever the profile: the same examples on every run.
EXHAUSTIVE = settings(
    max_examples=25,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SAMPLED = settings(EXHAUSTIVE, max_examples=300)

SYN_CONTROL = Control(ControlFlags.SYN, 1, 0, bytes(range(8)))
SYN = SalPacket(1, 0, TransportProtocol.STREAM, SYN_CONTROL, destination_service=bytes(32))
RECORD = sign_record(
    ServiceRecord(
        bytes(32),
        bytes(32),
        1,
        2,
        3,
        RecordFlags(0),
        (RecordEndpoint(ipaddress.IPv4Address("192.0.2.1"), 54325),),
    ),
    PRIVATE_KEYS[0],
)

#: (format, class) pairs the codecs load and dump, besides the DHT bodies.
CLASSES = [
    (ControlExtensionFormat, Control),
    (SourceExtensionFormat, SourceRoute),
    (EndpointFormat, Endpoint),
    (NodeInfoFormat, NodeInfo),
    (RecordEndpointFormat, RecordEndpoint),
    (ServiceRecordFormat, ServiceRecord),
    *BODIES.values(),
]


# --- agreement -----------------------------------------------------------------------


def outcome(func: Callable[..., Any], *args: Any) -> tuple[Any, ...]:
    """("ok", result) or ("raised", class, error code)."""
    try:
        return ("ok", func(*args))
    except Exception as exc:
        return ("raised", type(exc), getattr(exc, "error_code", None))


def assert_agree(fast: tuple[Any, ...], reference: tuple[Any, ...], data: object) -> None:
    if fast[0] == "ok" and reference[0] == "ok":
        assert same(fast[1], reference[1]), f"different results for {data!r}"
    else:
        assert fast == reference, f"fast {fast} but interpreted {reference} for {data!r}"


def check_sal(data: bytes) -> None:
    assert_agree(outcome(decode_sal, data), outcome(decode_sal_interpreted, data), data)


def check_dht(data: bytes, verify: bool = False) -> None:
    fast = outcome(lambda d: decode_dht(d, verify=verify), data)
    reference = outcome(lambda d: decode_dht_interpreted(d, verify=verify), data)
    assert_agree(fast, reference, data)


def check_record(data: bytes) -> None:
    assert_agree(outcome(decode_record, data), outcome(decode_record_interpreted, data), data)


def damaged(data: bytes) -> Iterator[bytes]:
    """Every truncation, four single-byte changes at every offset, bytes appended."""
    for end in range(len(data)):
        yield data[:end]
    for offset, old in enumerate(data):
        for new in {old ^ 0x01, old ^ 0x80, 0x00, 0xFF} - {old}:
            yield data[:offset] + bytes([new]) + data[offset + 1 :]
    for tail in (b"\x00", b"\x01\x02\x03\x04", bytes(range(0x80, 0x94))):
        yield data + tail


# --- the codecs: decoders --------------------------------------------------------------


@EXHAUSTIVE
@given(sal_packets())
def test_sal_decoders_agree_on_every_damage(packet: object) -> None:
    data = encode_sal(packet)  # type: ignore[arg-type]
    assert same(decode_sal(data), packet)
    check_sal(data)
    for mutant in damaged(data):
        check_sal(mutant)
        check_sal(fix_checksum(mutant))  # so the damage reaches the extension walk


@EXHAUSTIVE
@given(dht_messages())
def test_dht_decoders_agree_on_every_damage(message: DhtMessage) -> None:
    data = encode_dht(message)
    assert same(decode_dht(data), message)
    check_dht(data, verify=True)
    for mutant in damaged(data):
        check_dht(mutant)


@EXHAUSTIVE
@given(service_records())
def test_record_decoders_agree_on_every_damage(record: ServiceRecord) -> None:
    data = encode_record(record)
    assert same(decode_record(data), record)
    for mutant in damaged(data):
        check_record(mutant)


@SAMPLED
@given(sal_packets().flatmap(lambda p: sal_mutants(encode_sal(p))))
def test_sal_decoders_agree_on_structured_mutants(data: bytes) -> None:
    check_sal(data)


@SAMPLED
@given(dht_messages().flatmap(lambda m: dht_mutants(encode_dht(m))), st.booleans())
def test_dht_decoders_agree_on_structured_mutants(data: bytes, verify: bool) -> None:
    check_dht(data, verify)


@SAMPLED
@given(service_records().flatmap(lambda r: record_mutants(encode_record(r))))
def test_record_decoders_agree_on_structured_mutants(data: bytes) -> None:
    check_record(data)


def test_decoders_agree_on_random_bytes() -> None:
    rng = random.Random(20240611)
    for _ in range(400):
        blob = rng.randbytes(rng.randrange(0, 120))
        check_sal(blob)
        check_dht(blob)
        check_record(blob)
        # behind valid headers, so the bytes reach the extension walk and the bodies
        words = rng.randrange(3, 30)
        check_sal(fix_checksum(bytes(8) + bytes([words, 0, 0, 0]) + blob))
        kind = rng.choice([message_type.value for message_type in BODIES])
        check_dht(bytes([1, kind, rng.choice([0, 0x80]), 0]) + bytes(56) + blob)


def test_decoders_agree_on_non_bytes() -> None:
    packet = encode_sal(SYN)
    for data in (bytearray(packet), memoryview(packet), packet.decode("latin-1"), None, 5):
        check_sal(data)  # type: ignore[arg-type]
        check_dht(data)  # type: ignore[arg-type]
        check_record(data)  # type: ignore[arg-type]


# --- the codecs: encoders --------------------------------------------------------------


def check_encoders(
    fast: Callable[[Any], bytes], reference: Callable[[Any], bytes], obj: object
) -> None:
    assert_agree(outcome(fast, obj), outcome(reference, obj), obj)


@SAMPLED
@given(sal_packets().flatmap(lambda p: st.one_of(st.just(p), corrupted(p))))
def test_sal_encoders_agree(packet: object) -> None:
    check_encoders(encode_sal, encode_sal_interpreted, packet)


@SAMPLED
@given(stream_segments().flatmap(lambda s: st.one_of(st.just(s), corrupted(s))))
def test_stream_encoders_agree(segment: object) -> None:
    check_encoders(encode_stream, encode_stream_interpreted, segment)


@SAMPLED
@given(stream_segments().map(encode_stream).flatmap(lambda d: st.sampled_from(list(damaged(d)))))
def test_stream_decoders_agree(data: bytes) -> None:
    assert_agree(outcome(decode_stream, data), outcome(decode_stream_interpreted, data), data)


@SAMPLED
@given(dht_messages().flatmap(lambda m: st.one_of(st.just(m), corrupted(m))))
def test_dht_encoders_agree(message: object) -> None:
    check_encoders(encode_dht, encode_dht_interpreted, message)
    if isinstance(message, DhtMessage) and message.signature is not None:
        key = KEY_FOR.get(message.sender_key, PRIVATE_KEYS[0])
        unsigned = dataclasses.replace(message, signature=None)
        fast = outcome(encode_dht, unsigned, key)
        assert_agree(fast, outcome(encode_dht_interpreted, unsigned, key), unsigned)


@SAMPLED
@given(service_records().flatmap(lambda r: st.one_of(st.just(r), corrupted(r))))
def test_record_encoders_agree(record: object) -> None:
    check_encoders(encode_record, encode_record_interpreted, record)


QUIRKS = [  # values Construct builds from, leniently, that the dataclasses never hold
    ("nonce", 0x0102030405060708),
    ("nonce", bytearray(8)),
    ("nonce", b"short"),
    ("verno", True),
    ("verno", 1.0),
    ("verno", -1),
    ("verno", 1 << 32),
    ("flags", 1.5),
    ("flags", "SYN"),
    ("flags", ControlFlags(0xFF)),
]


@pytest.mark.parametrize(("field", "value"), QUIRKS)
def test_encoders_agree_on_lenient_values(field: str, value: Any) -> None:
    control = dataclasses.replace(SYN_CONTROL, **{field: value})
    check_encoders(encode_sal, encode_sal_interpreted, dataclasses.replace(SYN, control=control))


def test_encoders_agree_on_lenient_containers() -> None:
    record = RECORD
    endpoint = record.endpoints[0]
    as_dict = {f.name: getattr(endpoint, f.name) for f in dataclasses.fields(endpoint)}
    for endpoints in (
        list(record.endpoints),
        (as_dict,),
        (dataclasses.replace(endpoint, address=ipaddress.IPv6Address(1)),),
        (Endpoint(endpoint.address, endpoint.port),),
        iter(record.endpoints),
    ):
        odd = dataclasses.replace(record, endpoints=endpoints)  # type: ignore[arg-type]
        check_encoders(encode_record, encode_record_interpreted, odd)
        message = DhtMessage(body=Replicate(odd), transaction_id=bytes(8))
        check_encoders(encode_dht, encode_dht_interpreted, message)


# --- the formats -------------------------------------------------------------------------


def plain(value: object) -> object:
    """A parsed value with rows and Containers both as dicts (``_io`` dropped)."""
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def format_outcome(parse: Callable[[Any, bytes], Any], fmt: Any, data: bytes) -> tuple[Any, ...]:
    try:
        return ("ok", plain(parse(fmt, data)))
    except Exception as exc:
        return ("raised", type(exc))


def check_format(fmt: cs.Construct[Any, Any], data: bytes) -> None:
    for fast, reference in (
        (DERIVED.parse_exact, INTERPRETED.parse_exact),
        (DERIVED.parse, INTERPRETED.parse),
    ):
        assert_agree(format_outcome(fast, fmt, data), format_outcome(reference, fmt, data), data)


def format_inputs(fmt: cs.Construct[Any, Any], rng: random.Random) -> Iterator[bytes]:
    """Random bytes around the format's size, with small counts and lengths up front."""
    for _ in range(150):
        size = rng.randrange(0, 400)
        blob = bytearray(rng.randbytes(size))
        for offset in range(min(size, 8)):
            if rng.random() < 0.5:
                blob[offset] = rng.choice([0, 1, 2, 4, 20, 24, 36, 0xFF])
        yield bytes(blob)


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_format_parses_as_construct_does(name: str) -> None:
    fmt = FORMATS[name]
    rng = random.Random(name)
    for data in format_inputs(fmt, rng):
        check_format(fmt, data)


@pytest.mark.parametrize(("fmt", "cls"), CLASSES, ids=lambda x: getattr(x, "__name__", ""))
def test_every_class_loads_as_from_container_does(fmt: cs.Construct[Any, Any], cls: type) -> None:
    rng = random.Random(cls.__name__)
    for data in format_inputs(fmt, rng):
        fast = outcome(DERIVED.load, fmt, cls, data)
        assert_agree(fast, outcome(INTERPRETED.load, fmt, cls, data), data)


def _parts(message: object) -> Iterator[tuple[cs.Construct[Any, Any], object]]:
    """(format, object) for every dataclass a codec dumps while encoding ``message``."""
    if isinstance(message, DhtMessage):
        yield BODIES[message.body.TYPE][0], message.body
        record = getattr(message.body, "record", None)
        if record is not None:
            yield ServiceRecordFormat, record
        nodes = getattr(message.body, "nodes", ()) or getattr(message.body, "successors", ())
        for node in nodes:
            yield NodeInfoFormat, node
    else:
        control, route = getattr(message, "control", None), getattr(message, "source_route", None)
        if control is not None:
            yield ControlExtensionFormat, control
        if route is not None:
            yield SourceExtensionFormat, route


@SAMPLED
@given(st.one_of(sal_packets(), dht_messages()))
def test_legal_objects_never_fall_back(message: object) -> None:
    for fmt, obj in _parts(message):
        assert DERIVED.builder(fmt, type(obj))(obj) == INTERPRETED.dump(fmt, obj)
    # the header dicts as the codecs build them: no "reserved", the Default's job
    if isinstance(message, DhtMessage):
        data = encode_dht(message)
        header = DERIVED.parse(HeaderFormat, data)._asdict()
        del header["reserved"]
        assert DERIVED.builder(HeaderFormat)(header) == data[:60]
    else:
        data = encode_sal(message)  # type: ignore[arg-type]
        header = DERIVED.parse(BaseHeaderFormat, data)._asdict()
        assert DERIVED.builder(BaseHeaderFormat)(header) == data[:12]


@pytest.mark.parametrize(
    "values",
    [
        {"role": 1, "service_id": bytes(32)},
        {"role": 2, "service_id": bytes(32), "reserved": 0},
        {"role": 3, "service_id": bytes(32)},
        {"role": 1, "service_id": bytes(31)},
        {"role": 1},
        {"type": 0x90, "type_specific": b"ab", "body": b"abcdef"},
        {"type": 0x90, "type_specific": b"ab", "body": bytes(252)},
        {"type": 0x90, "type_specific": b"a", "body": b""},
    ],
)
def test_dict_builds_agree(values: dict[str, Any]) -> None:
    fmt = ExtensionHeaderFormat if "type" in values else ServiceExtensionFormat
    fast = outcome(DERIVED.build, fmt, values)
    reference = outcome(INTERPRETED.build, fmt, values)
    assert_agree(fast, reference, values)


def test_protocol_errors_only() -> None:
    """The fast path adds no exception class of its own to the codecs' two."""
    packet = encode_sal(SYN)
    for mutant in damaged(packet):
        result = outcome(decode_sal, fix_checksum(mutant))
        assert result[0] == "ok" or issubclass(result[1], ProtocolError)
