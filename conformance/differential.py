"""Differential mode (``serval-conform --against HOST:PORT``): two targets, one seed.

The same cases (and the same fuzz campaign) run against both targets with
the same seed, so each case sends the same requests with the same
Transaction IDs.  The answers each case drew are paired up by Transaction ID
(in the order they came), decoded with ``ref.wire`` and normalised: fields
that differ between two conforming nodes for no fault of either are masked
(tokens, sender keys, signatures, node lists, which follow the ring's
timer-driven state, STATUS reports, the port a PONG observed, ERROR reasons,
record times and signatures).  What still differs is reported, with every verdict that
differs.  Requests the targets send to the harness's members are timing
driven and are not compared.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from rich.table import Table

from conformance.fuzz import Campaign
from conformance.peer import Datagram
from conformance.runner import Run
from ref.wire import (
    SERVALDHT_SERVICE_ID,
    ControlFlags,
    Error,
    ErrorCode,
    FindSuccessorResponse,
    Leave,
    MessageFlags,
    Neighbors,
    Pong,
    RemoteProtocolError,
    ResolveResponse,
    SalPacket,
    ServiceRecord,
    StatusResponse,
    StoreResponse,
    TransportProtocol,
    decode_dht,
    decode_sal,
    decode_stream,
)
from ref.wire.constants import DHT_HEADER_LENGTH


@dataclasses.dataclass(frozen=True)
class Difference:
    """One place where the two targets answered differently."""

    case: str
    exchange: str  # "txid 0123…", "fuzz datagram 17" or "verdict"
    a: str
    b: str


def _record(record: ServiceRecord | None) -> str:
    if record is None:
        return "none"
    tombstone = " tombstone" if record.is_tombstone else ""
    return (
        f"record {record.service_id.hex()[:16]}… seq {record.sequence}{tombstone} "
        f"{len(record.endpoints)} endpoints"
    )


def _body(body: Any) -> str:
    """A body with the fields two conforming nodes may differ in masked."""
    if isinstance(body, Error):
        try:
            return ErrorCode(body.error_code).name
        except ValueError:
            return f"code {body.error_code:#06x}"
    if isinstance(body, Pong):
        return f"observed {body.observed.address} port *"
    # Node lists follow the ring's state, which timers change: only their presence counts.
    if isinstance(body, FindSuccessorResponse):
        return f"{body.status.name} nodes *"
    if isinstance(body, Neighbors | Leave):
        return "predecessor * successors *"
    if isinstance(body, ResolveResponse):
        return f"{body.status.name} {_record(body.record)}" + (" nodes *" if body.nodes else "")
    if isinstance(body, StoreResponse):
        return f"sequence {body.sequence}"
    if isinstance(body, StatusResponse):
        return "report *"
    return ""


def sal_text(packet: SalPacket) -> str:
    """A SAL packet that is not a ServalDHT message, its random fields masked.

    FlowIDs, nonces, control and stream sequence numbers are drawn at random
    by each host (SAL-CONN-1), so only the packet's kind, flags, transport and
    sizes are compared.
    """
    if packet.control is not None:
        kind = "|".join(f.name for f in ControlFlags if packet.control.flags & f and f.name)
        kind = f"control {kind or 'none'}"
    elif packet.destination_flow_id == 0:
        kind = "datagram"
    else:
        kind = "data"
    text = f"SAL {kind} protocol {int(packet.protocol)}"
    if packet.destination_service is not None:
        text += " with service"
    if kind == "data" and packet.protocol == TransportProtocol.STREAM:
        try:
            segment = decode_stream(packet.payload)
        except RemoteProtocolError as error:
            return f"{text}, malformed segment: {error.error_code.name}"
        return f"{text}, segment flags {int(segment.flags):#04x}, {len(segment.data)} octets"
    return f"{text}, {len(packet.payload)} payload octets"


def normalise(data: bytes) -> str | None:
    """A received datagram as text with its incidental fields masked.

    None for what is not compared: requests the target sends on its own.
    """
    try:
        packet = decode_sal(data)
    except RemoteProtocolError as error:
        return f"undecodable SAL packet: {error.error_code.name}"
    if packet.destination_service != SERVALDHT_SERVICE_ID:
        return sal_text(packet)
    payload = packet.payload
    if len(payload) >= DHT_HEADER_LENGTH and payload[1] < 0x80:
        return None
    try:
        message = decode_dht(payload)
    except RemoteProtocolError as error:
        return f"malformed ServalDHT message: {error.error_code.name}"
    flags = int(message.flags) & ~MessageFlags.SIGNED  # signing a response is optional
    text = message.type.name
    body = _body(message.body)
    if body:
        text += f" {body}"
    if flags:
        text += f" flags={MessageFlags(flags)!r}"
    return text


def _exchanges(datagrams: Sequence[Datagram]) -> dict[str, list[str]]:
    """The normalised answers of one case, by the Transaction ID they echo, in order."""
    exchanges: dict[str, list[str]] = {}
    for datagram in datagrams:
        if datagram.outbound:
            continue
        text = normalise(datagram.data)
        if text is None:
            continue
        key = "not ServalDHT"
        try:
            packet = decode_sal(datagram.data)
            if packet.destination_service != SERVALDHT_SERVICE_ID:
                key = "SAL"
            elif len(packet.payload) >= 12:
                key = f"txid {packet.payload[4:12].hex()}"
        except RemoteProtocolError:
            pass
        answers = exchanges.setdefault(key, [])
        if key == "SAL" and answers and answers[-1] == text:
            continue  # how often a packet is retransmitted depends on timing
        answers.append(text)
    return exchanges


def _requests(datagrams: Sequence[Datagram]) -> list[bytes]:
    """What the harness asked in one case: Version, Type, Flags and Transaction ID of each
    request it sent (tokens, times and the harness's ports may differ by target)."""
    sent = []
    for datagram in datagrams:
        if not datagram.outbound:
            continue
        try:
            packet = decode_sal(datagram.data)
        except RemoteProtocolError:
            sent.append(b"not SAL")
            continue
        if packet.destination_service != SERVALDHT_SERVICE_ID:
            sent.append(sal_text(packet).encode())
            continue
        payload = packet.payload
        if len(payload) >= DHT_HEADER_LENGTH and payload[1] >= 0x80:
            continue  # a member's answer to the target's request: timing driven
        sent.append(payload[:12])
    return sent


def _diff_lists(case: str, key: str, a: list[str], b: list[str]) -> list[Difference]:
    differences = []
    for n in range(max(len(a), len(b))):
        left = a[n] if n < len(a) else "(nothing)"
        right = b[n] if n < len(b) else "(nothing)"
        if left != right:
            label = key if max(len(a), len(b)) == 1 else f"{key} #{n + 1}"
            differences.append(Difference(case, label, left, right))
    return differences


def compare_runs(a: Run, b: Run) -> tuple[list[Difference], list[str]]:
    """Every answer and verdict of a case that differs between the two runs.

    Also the cases whose answers cannot be paired: the harness sent the two
    targets different requests (a case's choices may depend on the target,
    such as member keys placed around its node ID), so only their verdicts
    are compared.
    """
    differences: list[Difference] = []
    diverged: list[str] = []
    verdicts_b = {r.case.id: r for r in b.results}
    for result in a.results:
        case = result.case.id
        other = verdicts_b.get(case)
        if other is None or result.case.group == "fuzz":
            continue
        if result.verdict != other.verdict:
            differences.append(
                Difference(case, "verdict", result.verdict.value, other.verdict.value)
            )
        sent_a, sent_b = a.capture.of_case(case), b.capture.of_case(case)
        if _requests(sent_a) != _requests(sent_b):
            diverged.append(case)
            continue
        left = _exchanges(sent_a)
        right = _exchanges(sent_b)
        for key in list(left) + [k for k in right if k not in left]:
            differences += _diff_lists(case, key, left.get(key, []), right.get(key, []))
    return differences, diverged


def compare_campaigns(a: Campaign, b: Campaign) -> list[Difference]:
    """Every fuzz datagram whose normalised answers, or broken requirements, differ."""
    differences: list[Difference] = []
    for left, right in zip(a.observations, b.observations, strict=False):
        key = f"fuzz datagram {left.plan.index}"
        texts_a = [t for t in (normalise(d) for d, _ in left.answers) if t is not None]
        texts_b = [t for t in (normalise(d) for d, _ in right.answers) if t is not None]
        differences += _diff_lists(
            "fuzz.campaign", key, texts_a or ["(silence)"], texts_b or ["(silence)"]
        )
        broken_a = sorted({v.requirement for v in left.violations})
        broken_b = sorted({v.requirement for v in right.violations})
        if broken_a != broken_b:
            differences.append(
                Difference(
                    "fuzz.campaign",
                    f"{key} verdict",
                    "FAIL " + " ".join(broken_a) if broken_a else "PASS",
                    "FAIL " + " ".join(broken_b) if broken_b else "PASS",
                )
            )
    if len(a.observations) != len(b.observations):
        differences.append(
            Difference(
                "fuzz.campaign",
                "datagrams sent",
                str(len(a.observations)),
                str(len(b.observations)),
            )
        )
    return differences


def table(differences: Sequence[Difference], a: str, b: str) -> Table:
    out = Table("case", "exchange", a, b, title="differences", box=None)
    for difference in differences:
        out.add_row(difference.case, difference.exchange, difference.a, difference.b)
    return out


def to_json(differences: Sequence[Difference]) -> list[dict[str, str]]:
    return [dataclasses.asdict(d) for d in differences]
