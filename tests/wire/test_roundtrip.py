"""Every format both ways (STYLE 7): object -> bytes -> object and bytes -> object -> bytes.

The strategies draw legal objects in the form the decoders return them (see
``strategies``), so both directions must be the identity.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ref.wire import (
    SERVALDHT_SERVICE_ID,
    DhtMessage,
    MessageType,
    SalPacket,
    ServiceRecord,
    StreamSegment,
    TransportProtocol,
    decode_dht,
    decode_record,
    decode_sal,
    decode_stream,
    encode_dht,
    encode_record,
    encode_sal,
    encode_stream,
)
from ref.wire.constants import MAX_ENDPOINTS

from .strategies import (
    CODECS,
    Codec,
    bodies,
    dht_messages,
    encodings,
    service_records,
    stream_segments,
    uints,
)

BY_CODEC = pytest.mark.parametrize("codec", CODECS, ids=lambda codec: codec.name)


@BY_CODEC
@given(data=st.data())
def test_object_to_bytes_to_object(codec: Codec, data: st.DataObject) -> None:
    obj, encoded = data.draw(encodings(codec), label="object and encoding")
    assert codec.decode(encoded) == obj


@BY_CODEC
@given(data=st.data())
def test_bytes_to_object_to_bytes(codec: Codec, data: st.DataObject) -> None:
    obj, encoded = data.draw(encodings(codec), label="object and encoding")
    assert isinstance(encoded, bytes)
    assert codec.encode(obj) == encoded, "encoding is not deterministic"
    assert codec.encode(codec.decode(encoded)) == encoded


# The mixed strategy covers every message type among its examples; this makes
# sure each type is seen, with fewer examples per type to stay fast.
@pytest.mark.parametrize("message_type", list(MessageType), ids=lambda t: t.name)
@settings(max_examples=20)
@given(data=st.data())
def test_every_message_type_both_ways(message_type: MessageType, data: st.DataObject) -> None:
    message = data.draw(dht_messages(body=bodies(message_type)), label="message")
    encoded = encode_dht(message)
    assert encoded[1] == message_type.value
    assert decode_dht(encoded) == message
    assert decode_dht(encoded, verify=False) == message
    assert encode_dht(decode_dht(encoded)) == encoded


@given(record=service_records(max_endpoints=MAX_ENDPOINTS))
def test_records_with_up_to_the_maximum_of_endpoints(record: ServiceRecord) -> None:
    encoded = encode_record(record)
    assert decode_record(encoded) == record
    assert encode_record(decode_record(encoded)) == encoded


@given(message=dht_messages(), flows=st.tuples(uints(32), uints(32)))
def test_dht_message_inside_a_sal_datagram(message: DhtMessage, flows: tuple[int, int]) -> None:
    packet = SalPacket(
        *flows,
        TransportProtocol.DATAGRAM,
        destination_service=SERVALDHT_SERVICE_ID,
        payload=encode_dht(message),
    )
    received = decode_sal(encode_sal(packet))
    assert received == packet
    assert decode_dht(received.payload) == message


@given(segment=stream_segments(), flows=st.tuples(uints(32), uints(32)))
def test_stream_segment_inside_a_sal_packet(segment: StreamSegment, flows: tuple[int, int]) -> None:
    packet = SalPacket(*flows, TransportProtocol.STREAM, payload=encode_stream(segment))
    received = decode_sal(encode_sal(packet))
    assert received.protocol is TransportProtocol.STREAM
    assert decode_stream(received.payload) == segment
