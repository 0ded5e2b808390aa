"""The draft and ref.wire are one: figures match declarations, vectors decode.

Every bit-ruler figure in the draft is parsed and compared with the Construct
declaration of the same name; every test vector in Appendix A is decoded to
the listed fields and the fields are encoded back to the listed bytes.
"""

from __future__ import annotations

import re
import runpy
from typing import Any

import pytest

from ref.draft import DEFAULT_DRAFT, figures, parse_bit_ruler, vectors
from ref.wire import (
    FORMATS,
    DhtMessage,
    MessageType,
    SalPacket,
    ServiceRecord,
    StreamSegment,
    decode_dht,
    decode_record,
    decode_sal,
    decode_stream,
    encode_dht,
    encode_record,
    encode_sal,
    encode_stream,
)
from ref.wire._codec import layout
from ref.wire.plain import from_plain
from ref.wire.vectors import build_vectors

DRAFT = DEFAULT_DRAFT.read_text(encoding="utf-8")
FIGURES = {fig.caption: fig for fig in figures(DRAFT)}
VECTORS = vectors(DRAFT)

CODECS: dict[str, tuple[type, Any, Any]] = {
    "sal": (SalPacket, decode_sal, encode_sal),
    "stream": (StreamSegment, decode_stream, encode_stream),
    "dht": (DhtMessage, decode_dht, encode_dht),
    "record": (ServiceRecord, decode_record, encode_record),
}


def test_every_format_has_exactly_one_figure() -> None:
    captions = [fig.caption for fig in figures(DRAFT)]
    bit_rulers = [c for c in captions if not c.startswith("Test Vector:")]
    assert sorted(bit_rulers) == sorted(FORMATS), "figures and ref.wire.FORMATS differ"


@pytest.mark.parametrize("caption", sorted(FORMATS))
def test_figure_matches_declaration(caption: str) -> None:
    drawn = [(f.name, f.bits) for f in parse_bit_ruler(FIGURES[caption])]
    declared = [(f.name, f.bits) for f in layout(FORMATS[caption])]
    assert drawn == declared, f"figure {caption!r} drifted from its declaration"


def test_appendix_is_what_spec_vectors_renders() -> None:
    """Appendix A is the output of ``spec/vectors.py``: regenerate, never hand-edit."""
    script = runpy.run_path(str(DEFAULT_DRAFT.parent / "vectors.py"))
    start, end = DRAFT.index("## A.1. "), DRAFT.index("# Appendix B.")
    assert DRAFT[start:end].strip() == script["render"]().strip(), (
        "Appendix A is stale: replace it with the output of python spec/vectors.py"
    )
    titles = [v.caption.removeprefix("Test Vector: ") for v in VECTORS]
    assert titles == [v.title for v in build_vectors()]


def test_every_message_type_has_a_vector() -> None:
    seen = {
        MessageType[v.data["fields"]["body"]["type"]] for v in VECTORS if v.data["format"] == "dht"
    }
    assert seen == set(MessageType)


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v.caption)
def test_vector_both_ways(vector: Any) -> None:
    data = vector.data
    cls, decode, encode = CODECS[data["format"]]
    encoded = bytes.fromhex(re.sub(r"\s+", "", data["hex"]))
    assert len(encoded) == data["length"]
    expected = from_plain(cls, data["fields"])
    assert decode(encoded) == expected, "bytes do not decode to the listed fields"
    assert encode(expected) == encoded, "listed fields do not encode to the bytes"
