"""The STATUS report's counters (Appendix C.2): nested on the wire, flat in code."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from ref.chord.exchange import report_json
from ref.wire import ErrorCode
from ref.wire.status import flat_counters, nested_counters

NAMES = st.sampled_from(
    [f"{kind}.{code.name}" for kind in ("drop", "error_sent") for code in ErrorCode]
)


@given(st.dictionaries(NAMES, st.integers(min_value=1, max_value=10**9)))
def test_nesting_round_trips(flat: dict[str, int]) -> None:
    nested = nested_counters(flat.items())
    assert set(nested) <= {"drop", "error_sent"}
    assert flat_counters(json.loads(json.dumps(nested))) == flat


def test_reader_takes_flat_members_and_refuses_what_is_not_an_object() -> None:
    assert flat_counters({"drop.MALFORMED": 2, "drop": {"BAD_NONCE": 1}}) == {
        "drop.MALFORMED": 2,
        "drop.BAD_NONCE": 1,
    }
    assert flat_counters({"drop": {"X": True, "Y": "3"}}) == {}
    assert flat_counters([1, 2]) is None
    assert flat_counters(None) is None


def test_every_code_in_both_kinds_still_leaves_room_after_the_appendix_c_members() -> None:
    # A long run may count a dozen codes of each kind; their nested object and the
    # members before it stay within the 1,024 bytes, with room to spare.
    codes = list(ErrorCode)[:12]
    flat = [(f"{kind}.{code.name}", 123_456) for kind in ("drop", "error_sent") for code in codes]
    report = {
        "features": ["dht", "counters", "forward", "sal"],
        "stabilize_interval": 0.5,
        "replicas": 3,
        "rate_limit": [100.0, 200.0],
        "counters": nested_counters(flat),
        "node_id": "ab" * 32,
    }
    data = report_json(report, 1024)
    assert flat_counters(json.loads(data)["counters"]) == dict(flat)
