"""Packet traces: the parser, the messages a send builds, and replays against the reference."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance import cli
from conformance.cases import all_cases
from conformance.context import Context, Target
from conformance.model import Case, Verdict
from conformance.peer import Address, Capture
from conformance.runner import run_case
from conformance.trace import Expect, Send, TraceError, Wait, load, parse, replay, shipped
from ref.wire import (
    ECHO_DATAGRAM_SERVICE_ID,
    SERVALDHT_SERVICE_ID,
    ControlFlags,
    ErrorCode,
    MessageFlags,
    MessageType,
    StreamFlags,
    TransportProtocol,
    decode_dht,
    decode_sal,
    decode_stream,
    service_id_for,
)

from .test_pcap import open_ip_udp, read_pcapng
from .variants import running_node

ROOT = Path(__file__).resolve().parents[2]

HEADER = """\
# trace: sample
# title: A sample
# section: 6.4.1
# requirements: DHT-HDR-9 DHT-MSG-8
"""


def _trace(body: str, header: str = HEADER) -> str:
    return header + body


# --- parsing ----------------------------------------------------------------------------


def test_a_good_trace_parses_into_its_steps() -> None:
    trace = parse(
        _trace(
            "send PING txid=$T token=0   # a comment\n"
            "expect PONG txid=$T token=$TOKEN within 1.5\n"
            "\n"
            "send GET_NEIGHBORS txid=* token=$TOKEN key=member flags=0x80 signed\n"
            "expect NEIGHBORS predecessor=none | ERROR ADDRESS_NOT_VALIDATED [DHT-MSG-8]\n"
            "expect nothing within 0.5\n"
            "wait 0.2\n"
            "send raw 01 01 0000 $T\n"
            "send 0x0a\n"
            "send ERROR 0x0201 txid=0102030405060708\n"
            "send RESOLVE name=printer\n"
            "expect any | nothing\n"
        ),
        "sample.trace",
    )
    assert (trace.name, trace.title, trace.section) == ("sample", "A sample", "6.4.1")
    assert trace.requirements == ("DHT-HDR-9", "DHT-MSG-8")
    kinds = [type(step) for step in trace.steps]
    assert kinds == [Send, Expect, Send, Expect, Expect, Wait, Send, Send, Send, Send, Expect]
    ping, pong, neighbors, either, silence, wait, raw, numeric, error, _, last = trace.steps
    assert isinstance(ping, Send) and ping.fields == (("txid", "$T"), ("token", "00" * 16))
    assert isinstance(pong, Expect) and pong.within == 1.5 and pong.requirement == "DHT-HDR-9"
    assert isinstance(neighbors, Send) and neighbors.signed and ("flags", "128") in neighbors.fields
    assert isinstance(either, Expect) and either.requirement == "DHT-MSG-8"
    assert [str(a) for a in either.alternatives] == [
        "NEIGHBORS predecessor=none",
        "ERROR ADDRESS_NOT_VALIDATED",
    ]
    assert isinstance(silence, Expect) and silence.alternatives[0].kind == "nothing"
    assert isinstance(wait, Wait) and wait.seconds == 0.2
    assert isinstance(raw, Send) and raw.raw == ("01", "01", "0000", "$T")
    assert isinstance(numeric, Send) and numeric.message == "0x0A"
    assert isinstance(error, Send) and error.code == "UNSUPPORTED_VERSION"
    assert isinstance(last, Expect) and [a.kind for a in last.alternatives] == ["any", "nothing"]


BAD_LINES = [
    ("sned PING", "unknown step 'sned'"),
    ("send FOO", "cannot send 'FOO'"),
    ("send PING txid=xyz", "txid=xyz: expected 8 bytes in hex"),
    ("send PING txid=0102", "expected 8 bytes in hex"),
    ("send PING token=$NOPE", "$NOPE is not bound by an earlier line"),
    ("send PING bogus=1", "no field 'bogus'"),
    ("send PING txid=* txid=*", "given twice"),
    ("send PING key=*", "key=* has no meaning in a send"),
    ("send PING version=256", "out of range"),
    ("send PING signed", "signed needs key=member"),
    ("send PING key=member version=2 signed", "signed cannot go with version"),
    ("send ERROR txid=*", "send ERROR needs an error code"),
    ("send ERROR NOT_A_CODE", "no error code 'NOT_A_CODE'"),
    ("send RESOLVE id=* name=printer", "an id or a name, not both"),
    ("send raw 0g", "is not hex"),
    ("send raw", "needs the bytes"),
    ("send FIND_SUCCESSOR target", "expected field=value"),
    ("expect PONG observed=nowhere", "observed=nowhere"),
    ("expect PONG status=DONE", "no field 'status'"),
    ("expect FIND_SUCCESSOR_RESPONSE status=MAYBE", "expected one of DONE, REFER"),
    ("expect PING", "cannot expect 'PING'"),
    ("expect PONG within soon", "'soon' is not a number of seconds"),
    ("expect PONG within 1 | ERROR", "'within SECONDS' comes after"),
    ("expect PONG [DHT-NOPE-1]", "no requirement 'DHT-NOPE-1'"),
    ("expect PONG [DHT-HDR-2]", "DHT-HDR-2 is not in the header's requirements"),
    ("expect PONG [DHT-HDR-9 DHT-MSG-8]", "one requirement ID in brackets"),
    ("expect nothing txid=*", "nothing takes no fields"),
    ("expect PONG | ", "an empty alternative"),
    ("expect ERROR BOGUS", "no error code 'BOGUS'"),
    ("expect PONG txid=$bad-name", "is not a capture name"),
    ("wait", "wait takes one number"),
    ("wait 99", "not a number of seconds from 0 to 60"),
    ("# section: 6.3", "after the first step"),
]


@pytest.mark.parametrize(("line", "problem"), BAD_LINES, ids=[line for line, _ in BAD_LINES])
def test_a_bad_line_is_reported_with_file_and_line(line: str, problem: str) -> None:
    text = _trace("send PING txid=$T\nexpect PONG [DHT-MSG-8]\n" + line + "\nexpect PONG\n")
    with pytest.raises(TraceError) as raised:
        parse(text, "bad.trace")
    assert str(raised.value).startswith("bad.trace:7: "), str(raised.value)
    assert problem in str(raised.value)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "# trace: x\n# section: 6.3\nsend PING\n",
            "bad.trace:3: the header lacks '# requirements:'",
        ),
        (HEADER.replace("sample", "Bad_Name") + "expect PONG\n", "use a-z, 0-9 and -"),
        (HEADER.replace("DHT-MSG-8", "DHT-XX-1") + "expect PONG\n", "no requirement 'DHT-XX-1'"),
        (HEADER + "expect PONG\n", "bad.trace:4: no expect judges DHT-MSG-8"),
        (HEADER, "a trace needs steps"),
        (HEADER + "# trace: again\n", "bad.trace:5: '# trace:' given twice"),
    ],
)
def test_a_bad_header_is_reported(text: str, problem: str) -> None:
    with pytest.raises(TraceError, match=r"^bad\.trace:") as raised:
        parse(text, "bad.trace")
    assert problem in str(raised.value)


def test_a_trace_file_is_named_by_its_header(tmp_path: Path) -> None:
    path = tmp_path / "other.trace"
    path.write_text(_trace("expect PONG\nexpect nothing [DHT-MSG-8]\n"))
    with pytest.raises(TraceError, match=r"^other.trace:1: '# trace: sample' differs"):
        load(path)


def test_every_shipped_trace_is_a_case_of_dht_traces_or_sal_traces() -> None:
    traces = shipped()
    files = sorted(p.stem for p in (ROOT / "conformance" / "traces").glob("*.trace"))
    assert [t.name for t in traces] == files
    sal = sorted(t.name for t in traces if t.uses_sal)
    assert {"sal-datagram-echo", "sal-reset-unknown-flow"} <= set(sal)
    files = [name for name in files if name not in sal]
    expected = {
        "ping-pong",
        "status",
        "unsupported-version",
        "unknown-message-type",
        "find-successor-alone",
        "resolve-unregistered",
        "token-round-trip",
        "response-not-answered",
    }
    assert expected <= set(files)
    cases = {c.id: c for c in all_cases() if c.group == "dht.traces"}
    assert sorted(cases) == [f"dht.traces.{name}" for name in files]
    sal_cases = {c.id: c for c in all_cases() if c.group == "sal.traces"}
    assert sorted(sal_cases) == [f"sal.traces.{name}" for name in sal]
    cases |= sal_cases
    for trace in traces:
        case = cases[f"{'sal' if trace.uses_sal else 'dht'}.traces.{trace.name}"]
        assert case.requirements == trace.requirements and case.section == trace.section
        assert ("sal" in case.needs) == trace.uses_sal
    # The DHT traces run first, then the SAL ones, each group in one stretch.
    order = [c.group for c in all_cases() if c.group.endswith(".traces")]
    assert order == sorted(order)


SAL_HEADER = """\
# trace: sample
# section: 5.8.2
# needs: sal
# requirements: SAL-CONN-11 SAL-RST-2
"""


def test_sal_steps_parse_into_kinds_and_canonical_fields() -> None:
    trace = parse(
        SAL_HEADER + "send sal SYN src=$FC nonce=$NC verno=$ISS service=echo-datagram\n"
        "expect sal syn|ack dst=$FC ackno=$ISS+1 src=$FS nonce=$NS verno=$ISSS within 2\n"
        "send sal ACK src=$FC dst=$FS verno=$ISS+1 ackno=$ISSS-0x10 protocol=stream\n"
        "send sal DATA src=$FC dst=$FS seq=$ISS+1 sflags=fin|ack window=9 data=0102\n"
        "expect sal ACK|FIN dst=$FC | sal DATA payload=none protocol=7 | nothing [SAL-RST-2]\n"
        "send sal RST|ACK src=* dst=0x10 nonce=* verno=* service=none payload=00ff\n",
        "sal.trace",
    )
    assert trace.uses_sal and trace.needs == ("sal",)
    syn, syn_ack, ack, data, either, reset = trace.steps
    assert isinstance(syn, Send) and (syn.message, syn.sal) == ("sal", "SYN")
    assert ("service", ECHO_DATAGRAM_SERVICE_ID.hex()) in syn.fields
    assert isinstance(syn_ack, Expect) and syn_ack.within == 2
    (alternative,) = syn_ack.alternatives
    assert (alternative.kind, alternative.sal) == ("sal", "SYN|ACK")
    assert ("ackno", "$ISS+1") in alternative.fields
    assert isinstance(ack, Send) and ("ackno", "$ISSS-16") in ack.fields
    assert ("protocol", "STREAM") in ack.fields
    assert isinstance(data, Send) and data.sal == "DATA" and ("sflags", "ACK|FIN") in data.fields
    assert isinstance(either, Expect) and [str(a) for a in either.alternatives] == [
        "sal ACK|FIN dst=$FC",
        "sal DATA payload=none protocol=7",
        "nothing",
    ]
    assert isinstance(reset, Send) and ("dst", "16") in reset.fields


SAL_BAD_LINES = [
    ("send sal", "sal needs a KIND"),
    ("send sal PUSH", "no SAL packet kind 'PUSH'"),
    ("send sal 0x20", "no SAL packet kind '0x20'"),
    ("send sal SYN seq=1", "no field 'seq'"),
    ("send sal DATA verno=1", "no field 'verno'"),
    ("send sal DATA payload=01 data=02", "a payload or stream segment fields, not both"),
    ("send sal SYN nonce=0102", "expected 8 bytes in hex"),
    ("send sal SYN verno=4294967296", "out of range"),
    ("send sal SYN ackno=$NOPE+1", "$NOPE is not bound by an earlier line"),
    ("expect sal SYN|ACK ackno=$NOPE+1", "$NOPE is not bound by an earlier line"),
    ("send sal SYN nonce=$NC+1", "arithmetic only on 32-bit numbers"),
    ("send sal SYN service=printer", "expected 32 bytes in hex"),
    ("send sal SYN protocol=TCP", "expected NONE, DATAGRAM, STREAM or a number"),
    ("send sal DATA sflags=PSH", "expected flags among ACK, FIN"),
    ("send sal DATA window=65536", "out of range"),
    ("send sal DATA payload=0", "expected hex"),
    ("expect sal", "sal needs a KIND"),
]


@pytest.mark.parametrize(
    ("line", "problem"), SAL_BAD_LINES, ids=[line for line, _ in SAL_BAD_LINES]
)
def test_a_bad_sal_line_is_reported_with_file_and_line(line: str, problem: str) -> None:
    text = (
        SAL_HEADER
        + "send sal SYN src=$F\nexpect sal RST [SAL-RST-2]\n"
        + line
        + "\nexpect nothing\n"
    )
    with pytest.raises(TraceError) as raised:
        parse(text, "bad.trace")
    assert str(raised.value).startswith("bad.trace:7: "), str(raised.value)
    assert problem in str(raised.value)


def test_sal_steps_need_the_feature_sal() -> None:
    with pytest.raises(TraceError, match=r"^bad\.trace:5: .*'# needs: sal'"):
        parse(HEADER + "send sal SYN\nexpect PONG\nexpect PONG [DHT-MSG-8]\n", "bad.trace")


# --- what a send puts on the wire -------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A UDP socket that plays a silent target and keeps what it receives."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2)
    yield sock
    sock.close()


def _context(address: Address, seed: int = 1, case: str = "dht.traces.test") -> Context:
    return Context(
        Target(address, None), Capture(), case=case, seed=seed, timeout=1.0, strict=False
    )


def _sent(listener: socket.socket, body: str, seed: int = 1) -> list[bytes]:
    """The ServalDHT messages that replaying ``body`` sends."""
    trace = parse(_trace(body + "expect nothing within 0\nexpect nothing within 0 [DHT-MSG-8]\n"))
    context = _context(listener.getsockname(), seed)
    replay(trace, context)
    context.close()
    sends = sum(1 for step in trace.steps if isinstance(step, Send))
    payloads = []
    for _ in range(sends):
        packet = decode_sal(listener.recv(65535))
        assert packet.destination_service == SERVALDHT_SERVICE_ID
        payloads.append(packet.payload)
    return payloads


def test_header_octets_are_written_as_given(listener: socket.socket) -> None:
    (data,) = _sent(
        listener, "send PING version=2 flags=0x3f reserved=0xa5 txid=0102030405060708 token=*\n"
    )
    assert data[:12] == bytes([2, MessageType.PING, 0x3F, 0xA5]) + bytes(range(1, 9))
    assert data[12:44] == bytes(32) and data[44:60] != bytes(16) and len(data) == 60


def test_a_capture_is_reused_and_a_star_is_fresh(listener: socket.socket) -> None:
    first, second, third = _sent(
        listener, "send PING txid=$T\nsend STATUS txid=$T\nsend PING txid=*\n"
    )
    assert first[4:12] == second[4:12] != third[4:12]
    again = _sent(listener, "send PING txid=$T\nsend STATUS txid=$T\nsend PING txid=*\n")
    assert again == [first, second, third]  # the case's seeded random source
    other = _sent(listener, "send PING txid=$T\n", seed=2)
    assert other[0][4:12] != first[4:12]


def test_bodies_signing_numeric_types_and_raw_bytes(listener: socket.socket) -> None:
    signed, resolve, error, numeric, raw, pong = _sent(
        listener,
        "send STATUS key=member txid=$T signed\n"
        "send RESOLVE name=printer\n"
        "send ERROR 0x0201\n"
        "send 0x0A txid=$T\n"
        "send raw 0101 0000 $T\n"
        "send PONG\n",
    )
    message = decode_dht(signed)  # verifies the signature
    assert message.flags & MessageFlags.SIGNED and message.sender_key != bytes(32)
    assert decode_dht(resolve).body.service_id == service_id_for("printer")  # type: ignore[attr-defined]
    assert decode_dht(error).body.error_code == ErrorCode.UNSUPPORTED_VERSION  # type: ignore[attr-defined]
    assert numeric[1] == 0x0A and numeric[4:12] == message.transaction_id
    assert raw == bytes.fromhex("01010000") + message.transaction_id
    observed = decode_dht(pong).body.observed  # type: ignore[attr-defined]
    assert str(observed.address) == "127.0.0.1" and observed.port > 0


def test_sal_packets_on_the_wire_with_captures_and_arithmetic(listener: socket.socket) -> None:
    trace = parse(
        SAL_HEADER + "send sal SYN src=$F nonce=$N verno=$ISS service=echo-datagram\n"
        "send sal FIN|ACK src=$F dst=* verno=$ISS+1 ackno=$ISS-2 nonce=$N protocol=NONE\n"
        "send sal DATA src=$F dst=7 seq=$ISS+0xFFFFFFFF ack=3 sflags=FIN data=6869\n"
        "send sal DATA src=$F dst=7 payload=6869 protocol=2\n"
        "send sal RST src=0 nonce=*\n"
        "expect nothing within 0\nexpect nothing within 0 [SAL-RST-2]\n"
    )
    context = _context(listener.getsockname(), case="sal.traces.test")
    replay(trace, context)
    context.close()
    syn, fin, segment, datagram, reset = (decode_sal(listener.recv(65535)) for _ in range(5))
    assert syn.control is not None and syn.control.flags == ControlFlags.SYN
    assert syn.source_flow_id != 0 and syn.destination_flow_id == 0
    assert syn.protocol == TransportProtocol.DATAGRAM
    assert syn.destination_service == ECHO_DATAGRAM_SERVICE_ID
    iss, nonce = syn.control.verno, syn.control.nonce
    assert fin.control is not None and fin.control.flags == ControlFlags.FIN | ControlFlags.ACK
    assert fin.control.verno == (iss + 1) % 2**32 and fin.control.ackno == (iss - 2) % 2**32
    assert fin.control.nonce == nonce and fin.source_flow_id == syn.source_flow_id
    assert fin.destination_flow_id != 0 and fin.protocol == TransportProtocol.NONE
    assert fin.destination_service is None
    assert segment.control is None and segment.protocol == TransportProtocol.STREAM
    stream = decode_stream(segment.payload)
    assert stream.sequence == (iss - 1) % 2**32 and stream.acknowledgment == 3
    assert stream.flags == StreamFlags.FIN and stream.window == 256 and stream.data == b"hi"
    assert datagram.payload == b"hi" and datagram.protocol == TransportProtocol.STREAM
    assert reset.control is not None and reset.control.nonce != bytes(8)
    assert reset.source_flow_id == 0 and reset.control.verno == 0


# --- replay against the reference -------------------------------------------------------


@pytest.fixture(scope="module")
def reference() -> Iterator[Address]:
    with running_node() as address:
        yield address


def _case(text: str) -> Case:
    trace = parse(text, "mutated.trace")
    return Case(
        id="dht.traces.mutated",
        title=trace.title,
        section=trace.section,
        requirements=trace.requirements,
        group="dht.traces",
        run=lambda ctx: replay(trace, ctx),
    )


def _run(address: Address, text: str) -> tuple[Verdict, list[tuple[str | None, Verdict, str]]]:
    result = run_case(
        _case(text), Target(address, None), Capture(), seed=1, timeout=1.0, strict=False
    )
    return result.verdict, [(f.requirement, f.verdict, f.detail) for f in result.findings]


@pytest.mark.parametrize("trace", shipped(), ids=lambda trace: trace.name)
def test_the_reference_passes_every_shipped_trace(reference: Address, trace: object) -> None:
    from conformance.trace import Trace

    assert isinstance(trace, Trace)
    context = _context(reference, case=f"dht.traces.{trace.name}")
    replay(trace, context)
    context.close()
    assert context.findings
    assert all(f.verdict == Verdict.PASS for f in context.findings), context.findings


def test_a_trace_expecting_the_wrong_answer_fails(reference: Address) -> None:
    text = (ROOT / "conformance" / "traces" / "ping-pong.trace").read_text()
    mutated = text.replace("expect PONG txid=$T", "expect ERROR MALFORMED txid=$T")
    verdict, findings = _run(reference, mutated)
    assert verdict == Verdict.FAIL
    # The first requirement of the header is judged, and the trace stops there.
    assert findings == [(findings[0][0], Verdict.FAIL, findings[0][2])]
    assert findings[0][0] == "DHT-HDR-9"
    assert findings[0][2].startswith("mutated.trace:6: expect ERROR MALFORMED txid=$T")
    assert "got PONG" in findings[0][2]


def test_a_line_names_its_own_requirement_and_a_capture_must_match(reference: Address) -> None:
    verdict, findings = _run(
        reference,
        _trace(
            "send PING txid=$T\n"
            "expect PONG txid=$T key=$K\n"
            "send PING txid=$U\n"
            "expect PONG txid=$U token=$K [DHT-MSG-8]\n"
        ),
    )
    assert verdict == Verdict.FAIL
    assert [(r, v) for r, v, _ in findings] == [
        ("DHT-HDR-9", Verdict.PASS),
        ("DHT-MSG-8", Verdict.FAIL),
    ]
    assert "token is" in findings[1][2] and "$K is" in findings[1][2]


def test_silence_expected_but_an_answer_came_fails(reference: Address) -> None:
    verdict, findings = _run(
        reference, _trace("send PING\nexpect nothing within 0.5\nexpect nothing [DHT-MSG-8]\n")
    )
    assert verdict == Verdict.FAIL and findings[0][0] == "DHT-HDR-9"
    assert "got a datagram" in findings[0][2]


def test_an_answer_expected_but_silence_fails(reference: Address) -> None:
    verdict, findings = _run(
        reference, _trace("send PONG\nexpect any within 0.3\nexpect nothing [DHT-MSG-8]\n")
    )
    assert verdict == Verdict.FAIL and "got no datagram" in findings[0][2]


def test_a_capture_its_alternative_did_not_bind_is_a_harness_error(reference: Address) -> None:
    verdict, findings = _run(
        reference,
        _trace(
            "send PING txid=$T\n"
            "expect PONG txid=$T | ERROR token=$X\n"
            "send STATUS token=$X\n"
            "expect any [DHT-MSG-8]\n"
        ),
    )
    assert verdict == Verdict.ERROR
    assert "$X is not bound" in findings[-1][2]


def test_the_command_line_replays_the_traces_and_writes_a_pcap(
    reference: Address, tmp_path: Path
) -> None:
    path = tmp_path / "traces.pcapng"
    host, port = reference
    code = cli.main(
        [
            *("--target", f"{host}:{port}", "--seed", "1", "--pcap", str(path)),
            *("--case", "dht.traces", "--case", "sal.traces"),
        ]
    )
    assert code == cli.EXIT_OK
    packets = read_pcapng(path.read_bytes())
    for packet in packets:
        open_ip_udp(packet.data)
    comments = "\n".join(packet.comment for packet in packets)
    for trace in shipped():
        group = "sal.traces" if trace.uses_sal else "dht.traces"
        assert f"case {group}.{trace.name} verdict PASS: " in comments


def test_a_sal_trace_expecting_the_wrong_ackno_fails_there(reference: Address) -> None:
    text = (ROOT / "conformance" / "traces" / "sal-datagram-echo.trace").read_text()
    mutated = text.replace("ackno=$ISS+1 nonce=$NS", "ackno=$ISS+2 nonce=$NS")
    verdict, findings = _run(reference, mutated)
    assert verdict == Verdict.FAIL
    assert [(r, v) for r, v, _ in findings] == [("SAL-CONN-11", Verdict.FAIL)]
    assert findings[0][2].startswith("mutated.trace:9: expect sal SYN|ACK")
    assert "ackno is" in findings[0][2] and "expected $ISS+2 = " in findings[0][2]


def test_a_sal_expect_does_not_match_a_servaldht_answer(reference: Address) -> None:
    verdict, findings = _run(
        reference,
        SAL_HEADER + "send PING\nexpect sal SYN|ACK within 0.5\nexpect nothing [SAL-RST-2]\n",
    )
    assert verdict == Verdict.FAIL and findings[0][0] == "SAL-CONN-11"
    assert "got PONG" in findings[0][2] and "not a SAL packet of a flow" in findings[0][2]
