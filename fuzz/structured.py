"""Structure-aware campaigns (Hypothesis): valid messages from the declarations, then damage.

The strategies are those of ``tests/wire/strategies.py``, which the wire
tests use too: legal objects of every format and mutators that know the
layouts.  A campaign draws a legal object, encodes it, and applies one
structure-aware mutation (a SAL header field, extension type, length or
order: shuffled, dropped, repeated; a DHT message's version, type, flags, or
any field the declarations name, via the socket fuzzer's field map; a list
grown or shrunk with its count kept right; a cut at a field boundary; a
record's fixed or endpoint field), then up to two generic byte-level ones;
SAL checksums are sometimes recomputed and SIGNED messages sometimes signed
again, so that the damage reaches the checks behind them.  Each input then goes
through the same oracles as the coverage-guided harnesses (:mod:`fuzz.decoders`):
the decoder's outcome, the round trip, and the fast path against Construct.

The node campaign is a ``RuleBasedStateMachine``: each rule sends one datagram
from one of several peers into one node (requests of every type, STOREs of
records with chosen owners, sequences and signatures, REPLICATE, LEAVE and
RECTIFY from ring members, answers to the node's own requests, mutants, and
the passing of time), as a frame of the ``dht-node`` harness, whose
:class:`~fuzz.nodes.NodeWatch` checks the node after every step.  A failing
sequence is kept as the frames it sent, so ``python -m fuzz replay dht-node``
replays it.

Campaigns run in batches of examples, each batch with its own seed, until the
deadline; a finding is kept (shrunk) and the campaign goes on looking past it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import random
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule, run_state_machine_as_test

from conformance import fuzz as socket_fuzz
from conformance.peer import dht_datagram
from fuzz import decoders, nodes
from fuzz.findings import InvariantViolation, describe, run_once, signature, without_chunks
from fuzz.nodes import patch
from fuzz.status import Reporter
from ref.chord.ring import id_bytes, node_id_of
from ref.wire import (
    SIGNED_TYPES,
    DhtMessage,
    Leave,
    MessageType,
    RecordEndpoint,
    RecordFlags,
    Rectify,
    RemoteProtocolError,
    Replicate,
    ServiceRecord,
    Store,
    block_base,
    decode_dht,
    decode_record,
    decode_sal,
    decode_stream,
    encode_dht,
    public_key_bytes,
    sign_record,
)
from ref.wire._codec import layout
from ref.wire.constants import MAX_RECORD_LIFETIME
from ref.wire.sal import BaseHeaderFormat, StreamHeaderFormat
from ref.wire.vectors import OWNER

REPOSITORY = Path(__file__).resolve().parent.parent
BATCH = 200  # examples per batch
STEPS = 30  # rules per run of the node machine
NODE_BUDGET = 5.0  # seconds a replay of the machine's frames may take


def _strategies() -> ModuleType:
    """``tests/wire/strategies.py``; the copy pytest imported if there is one."""
    loaded = sys.modules.get("wire.strategies")
    if loaded is not None:
        return loaded
    name = "fuzz._wire_strategies"
    if name in sys.modules:
        return sys.modules[name]
    path = REPOSITORY / "tests" / "wire" / "strategies.py"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the wire strategies from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


S = _strategies()


# --- mutations from the declarations ------------------------------------------------------


def _fields(fmt: Any) -> list[tuple[int, int]]:
    """(offset, width) of the fixed-width top-level fields of a declared format."""
    out, offset = [], 0
    for field in layout(fmt):
        if field.bits is None:
            break
        out.append((offset, field.bits // 8))
        offset += field.bits // 8
    return out


@st.composite
def declared_dht_mutant(draw: st.DrawFn, payload: bytes) -> bytes:
    """A field the declarations name set to a boundary value, a list resized, or a cut."""
    spots, spans = socket_fuzz.field_map(payload)
    if not spots:
        generic: bytes = draw(S.byte_mutants(payload))
        return generic
    choice = draw(st.sampled_from(["field", "field", "list", "cut"] if spans else ["field", "cut"]))
    if choice == "cut":
        offset = draw(st.sampled_from(sorted({spot.offset for spot in spots})))
        return payload[:offset]
    if choice == "list":
        span = draw(st.sampled_from(spans))
        count = span.count
        number = int.from_bytes(payload[count.offset : count.offset + count.width], "big")
        top = (1 << 8 * count.width) - 1
        grow = draw(st.booleans())
        if not span.elements:
            return patch(payload, count.offset, ((number + 1) & top).to_bytes(count.width, "big"))
        start, end = draw(st.sampled_from(span.elements))
        if grow:
            grown = payload[:end] + payload[start:end] + payload[end:]
            return patch(grown, count.offset, ((number + 1) & top).to_bytes(count.width, "big"))
        shrunk = payload[:start] + payload[end:]
        return patch(shrunk, count.offset, ((number - 1) & top).to_bytes(count.width, "big"))
    spot = draw(st.sampled_from(spots))
    old = payload[spot.offset : spot.offset + spot.width]
    if spot.integer:
        values = socket_fuzz.boundary_values(spot, int.from_bytes(old, "big"))
        value: int = draw(st.one_of(st.sampled_from(values), S.uints(8 * spot.width)))
        return patch(payload, spot.offset, value.to_bytes(spot.width, "big"))
    new: bytes = draw(
        st.one_of(
            st.just(bytes(spot.width)),
            st.just(b"\xff" * spot.width),
            S.fixed_bytes(spot.width),
        )
    )
    return patch(payload, spot.offset, new)


def _stacked(
    objects: st.SearchStrategy[Any],
    encode: Callable[[Any], bytes],
    first: list[Callable[[bytes], st.SearchStrategy[bytes]]],
    finish: Callable[[st.DrawFn, bytes], bytes] | None = None,
) -> st.SearchStrategy[bytes]:
    """Encodings of legal objects, one structure-aware mutation, then up to two generic ones.

    The structure-aware mutators read the layout of what they damage, so
    they take only legal encodings.
    """

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        mutate = first[draw(st.integers(0, len(first) - 1))]  # built only when chosen
        data: bytes = draw(mutate(encode(draw(objects))))
        for _ in range(draw(st.integers(0, 2))):
            data = draw(S.byte_mutants(data))
        return finish(draw, data) if finish is not None else data

    return build()


def _resigned(draw: st.DrawFn, data: bytes) -> bytes:
    return nodes.resign(data) if draw(st.booleans()) else data


def _checksummed(draw: st.DrawFn, data: bytes) -> bytes:
    return decoders.fix_checksum(data) if draw(st.booleans()) else data


def _header_field(fmt: Any) -> Callable[[bytes], st.SearchStrategy[bytes]]:
    fields = _fields(fmt)

    def mutate(data: bytes) -> st.SearchStrategy[bytes]:
        usable = [(o, w) for o, w in fields if o + w <= len(data)]
        mutants: st.SearchStrategy[bytes] = (
            S.fields_set(data, usable) if usable else S.byte_mutants(data)
        )
        return mutants

    return mutate


def sal_inputs() -> st.SearchStrategy[bytes]:
    """SAL packets, some carrying a ServalDHT message, mutated."""
    carrying = S.dht_messages().map(lambda m: decode_sal(dht_datagram(encode_dht(m))))
    packets = st.one_of(S.sal_packets(), carrying)
    return _stacked(
        packets, S.SAL.encode, [S.sal_mutants, _header_field(BaseHeaderFormat)], _checksummed
    )


def stream_inputs() -> st.SearchStrategy[bytes]:
    return _stacked(
        S.stream_segments(), S.STREAM.encode, [S.byte_mutants, _header_field(StreamHeaderFormat)]
    )


def dht_inputs() -> st.SearchStrategy[bytes]:
    return _stacked(S.dht_messages(), S.DHT.encode, [S.dht_mutants, declared_dht_mutant], _resigned)


def record_inputs() -> st.SearchStrategy[bytes]:
    return _stacked(S.service_records(), S.RECORD.encode, [S.record_mutants])


# --- the checks: the coverage-guided oracles, and an outcome label ------------------------


def _label(decode: Callable[[bytes], Any], data: bytes) -> str:
    try:
        decoded = decode(data)
    except RemoteProtocolError as error:
        return f"refused:{error.error_code.name}"
    body = getattr(decoded, "body", None)
    return f"accepted:{type(body if body is not None else decoded).__name__}"


def sal_check(data: bytes) -> str:
    """The ``sal`` and ``sal-diff`` oracles on one input."""
    decoders.sal(data)
    decoders.sal_diff(data)
    return _label(decode_sal, decoders.fix_checksum(data))


def stream_check(data: bytes) -> str:
    decoders.stream(data)
    return _label(decode_stream, data)


def dht_check(data: bytes) -> str:
    decoders.dht(data)
    decoders.dht_diff(data)
    return _label(decode_dht, data)


def record_check(data: bytes) -> str:
    """The record oracles, and the signature check of what the decoder accepted."""
    decoders.record(data)
    decoders.record_diff(data)
    label = _label(decode_record, data)
    if label.startswith("accepted") and not isinstance(decode_record(data).verify(), bool):
        raise InvariantViolation("verify-not-bool", data.hex())
    return label


def replay(check: Callable[[bytes], str]) -> Callable[[bytes], None]:
    def run(data: bytes) -> None:
        check(data)

    return run


sal_replay = replay(sal_check)
stream_replay = replay(stream_check)
dht_replay = replay(dht_check)
record_replay = replay(record_check)


# --- running a campaign ----------------------------------------------------------------


def _settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        database=None,
        deadline=None,
        derandomize=False,
        phases=(Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
        print_blob=False,
    )


@dataclasses.dataclass
class _Failure:
    data: bytes = b""
    error: BaseException | None = None
    size: int = 0


def _codec_campaign(
    inputs: st.SearchStrategy[bytes],
    check: Callable[[bytes], str],
    deadline: float,
    seed: int,
    reporter: Reporter,
    known: Any,
) -> None:
    failure = _Failure()

    def one(data: bytes) -> None:
        try:
            outcome = check(data)
        except Exception as error:
            if signature(error) in known:
                reporter.executed(outcome="known")
                return
            failure.size = failure.size or len(data)
            failure.data, failure.error = data, error
            reporter.executed()
            raise
        reporter.executed(outcome=outcome)

    batch = 0
    while time.monotonic() < deadline:
        batch += 1
        failure.size = 0
        test = hypothesis_seed(seed * 100_003 + batch)(_settings(BATCH)(given(inputs)(one)))
        try:
            test()
        except Exception:
            if failure.error is None:
                raise
            found = signature(failure.error)
            reporter.finding(found, failure.data, describe(failure.error), failure.size)
            known.signatures.add(found)
            failure.error = None


def sal_campaign(deadline: float, seed: int, reporter: Reporter, known: Any) -> None:
    _codec_campaign(sal_inputs(), sal_check, deadline, seed, reporter, known)


def stream_campaign(deadline: float, seed: int, reporter: Reporter, known: Any) -> None:
    _codec_campaign(stream_inputs(), stream_check, deadline, seed, reporter, known)


def dht_campaign(deadline: float, seed: int, reporter: Reporter, known: Any) -> None:
    _codec_campaign(dht_inputs(), dht_check, deadline, seed, reporter, known)


def record_campaign(deadline: float, seed: int, reporter: Reporter, known: Any) -> None:
    _codec_campaign(record_inputs(), record_check, deadline, seed, reporter, known)


# --- the node, as a state machine ---------------------------------------------------------

_REQUESTS = tuple(kind for kind in MessageType if kind.value < 0x80)
_CLIENTS = (0, 1, 2, 3)
_MEMBERS = (4, 5, 6, 7)


def _owners() -> list[bytes]:
    """Three owner keys the harness can sign with."""
    return list(nodes.signing_keys())[:3]


def _blocks() -> list[bytes]:
    """The node's own block, blocks just beside it, and the vectors' block."""
    own = node_id_of(nodes.HOST_KEY)
    return [block_base(id_bytes((own + delta) % (1 << 256))) for delta in (0, -8, 8, 1 << 200)]


@st.composite
def records(draw: st.DrawFn) -> tuple[ServiceRecord, bool]:
    """A record for one of a few blocks by one of a few owners, and whether it is signed right."""
    owner = nodes.signing_keys()[draw(st.sampled_from(_owners()))]
    tombstone = draw(st.booleans())
    addresses = [nodes.sources()[n].address for n in _CLIENTS]
    endpoints: tuple[RecordEndpoint, ...] = ()
    if not tombstone:
        chosen = draw(st.lists(st.sampled_from(addresses), min_size=1, max_size=3))
        endpoints = tuple(RecordEndpoint(address, 54325) for address in chosen)
    record = ServiceRecord(
        service_id=draw(st.sampled_from(_blocks())),
        owner_key=bytes(32),
        sequence=draw(st.one_of(st.integers(0, 8), st.sampled_from([1 << 40, (1 << 64) - 1]))),
        issued_at=int(nodes.NOW) + draw(st.sampled_from([-4000, -60, 0, 299, 301])),
        lifetime=draw(st.sampled_from([1, 60, 3600, MAX_RECORD_LIFETIME])),
        flags=RecordFlags.TOMBSTONE if tombstone else RecordFlags(0),
        endpoints=endpoints,
    )
    signed = sign_record(record, owner)
    valid = draw(st.booleans()) or draw(st.booleans())
    if not valid:
        flipped = bytes([signed.signature[0] ^ 1]) + signed.signature[1:]
        signed = dataclasses.replace(signed, signature=flipped)
    return signed, valid


def _infos(draw: Callable[[st.SearchStrategy[Any]], Any], most: int) -> tuple[Any, ...]:
    ring = nodes.ring()
    picked = draw(st.lists(st.integers(0, len(ring) - 1), max_size=most, unique=True))
    return tuple(ring[index].info() for index in sorted(picked))


class NodeMachine(RuleBasedStateMachine):
    """Sequences of datagrams from several peers into one node, checked after every step."""

    reporter: Reporter | None = None
    known: Any = frozenset()
    failure: _Failure = _Failure()

    def __init__(self) -> None:
        super().__init__()
        self.execution = nodes.NodeRun()
        self.frames: list[nodes.Frame] = []
        self.dead = False  # a known finding ended this run: the rules do nothing

    def send(self, control: int, datagram: bytes, resign: bool = False) -> None:
        """Deliver one frame; signatures stay as the rule made them unless ``resign``."""
        if self.dead:
            return
        frame = nodes.Frame(control if resign else control | nodes.AS_SIGNED, datagram)
        self.frames.append(frame)
        reporter = type(self).reporter
        try:
            self.execution.deliver(frame)
        except Exception as error:
            if signature(error) in type(self).known:
                self.dead = True
                return
            failure = type(self).failure
            data = nodes.encode_frames(self.frames)
            failure.data, failure.error = data, error
            failure.size = failure.size or len(data)
            raise
        if reporter is not None:
            reporter.executed()
            reporter.outcomes.update(self.execution.node.counters)

    def datagram_from(self, source: int, body: Any, signed: bool) -> bytes:
        """A request from ``source``: a member signs with its key, a client with the owner's."""
        member = nodes.member_at().get(nodes.sources()[source])
        if member is not None:
            sender = member.key
        else:
            sender = public_key_bytes(OWNER) if signed else bytes(32)
        signer = nodes.signing_keys().get(sender) if signed else None
        message = DhtMessage(body=body, transaction_id=bytes(range(8)), sender_key=sender)
        return dht_datagram(encode_dht(message, signer))

    @rule(
        source=st.sampled_from(_CLIENTS + _MEMBERS),
        body=S.bodies(*_REQUESTS),
        token=st.booleans(),
        signed=st.booleans(),
    )
    def request(self, source: int, body: Any, token: bool, signed: bool) -> None:
        signed = signed or body.TYPE in SIGNED_TYPES
        control = source | (nodes.TOKEN if token else 0)
        self.send(control, self.datagram_from(source, body, signed))

    def offer(self, control: int, datagram: bytes, record: ServiceRecord) -> None:
        """Send a STORE or REPLICATE; its answer must agree with the store (DHT-STORE-2)."""
        store = self.execution.node.store
        before = {r.service_id: r for r in store.records()}.get(record.service_id)
        self.send(control, datagram)
        answer = self.execution.watch.answer
        if self.dead or answer is None:
            return
        after = {r.service_id: r for r in store.records()}.get(record.service_id)
        if answer.type in (MessageType.STORE_RESPONSE, MessageType.REPLICATE_RESPONSE):
            if after != record:
                raise InvariantViolation("accepted-not-stored", f"{record!r}, {after!r}")
        elif answer.type == MessageType.ERROR and after is not before:
            raise InvariantViolation("refusal-changed-store", f"{before!r} -> {after!r}")

    @rule(source=st.sampled_from(_CLIENTS), record=records(), token=st.booleans())
    def store(self, source: int, record: tuple[ServiceRecord, bool], token: bool) -> None:
        datagram = self.datagram_from(source, Store(record[0], ()), False)
        self.offer(source | (nodes.TOKEN if token else 0), datagram, record[0])

    @rule(source=st.sampled_from(_MEMBERS), record=records())
    def replicate(self, source: int, record: tuple[ServiceRecord, bool]) -> None:
        self.offer(source, self.datagram_from(source, Replicate(record[0]), True), record[0])

    @rule(source=st.sampled_from(_MEMBERS), data=st.data(), token=st.booleans())
    def leave(self, source: int, data: st.DataObject, token: bool) -> None:
        infos = _infos(data.draw, 6)
        body = Leave(predecessor=infos[0] if infos else None, successors=infos[1:])
        self.send(source | (nodes.TOKEN if token else 0), self.datagram_from(source, body, True))

    @rule(source=st.sampled_from(_MEMBERS), token=st.booleans())
    def rectify(self, source: int, token: bool) -> None:
        self.send(
            source | (nodes.TOKEN if token else 0), self.datagram_from(source, Rectify(), True)
        )

    @precondition(lambda self: bool(self.execution.unanswered))
    @rule(data=st.data(), right_type=st.booleans())
    def answer(self, data: st.DataObject, right_type: bool) -> None:
        """A response to the node's oldest unanswered request, usually of the right type."""
        asked = self.execution.unanswered[0].type
        kind = (
            MessageType(asked | 0x80)
            if right_type
            else data.draw(st.sampled_from([t for t in MessageType if t.value >= 0x80]))
        )
        body = data.draw(S.BODY_STRATEGIES[kind])
        if hasattr(body, "nodes") and body.nodes:
            body = dataclasses.replace(body, nodes=_infos(data.draw, 6) or body.nodes)
        if hasattr(body, "successors"):
            infos = _infos(data.draw, 6)
            body = dataclasses.replace(
                body, predecessor=infos[0] if infos else None, successors=infos[1:]
            )
        signed = data.draw(st.booleans())
        key = next(iter(nodes.signing_keys()))  # the harness puts the member's key in, and signs
        message = DhtMessage(body=body, transaction_id=bytes(8), sender_key=key)
        payload = encode_dht(message, nodes.signing_keys()[key] if signed else None)
        self.send(nodes.ANSWER, dht_datagram(payload), resign=signed)

    @rule(
        source=st.sampled_from(_CLIENTS + _MEMBERS),
        data=st.data(),
        raw=st.booleans(),
        resign=st.booleans(),
    )
    def mutant(self, source: int, data: st.DataObject, raw: bool, resign: bool) -> None:
        message = data.draw(S.dht_messages(body=S.bodies(*_REQUESTS)))
        payload = data.draw(
            st.one_of(S.dht_mutants(encode_dht(message)), declared_dht_mutant(encode_dht(message)))
        )
        datagram = dht_datagram(payload)
        if data.draw(st.booleans()):
            datagram = data.draw(S.sal_mutants(datagram))
        self.send(source | (nodes.RAW if raw else 0), datagram, resign)

    @rule()
    def tick(self) -> None:
        """Time passes: the node's next timer runs (an empty datagram goes with it)."""
        self.send(nodes.TICK, b"")


def node_campaign(deadline: float, seed: int, reporter: Reporter, known: Any) -> None:
    NodeMachine.reporter = reporter
    NodeMachine.known = known
    NodeMachine.failure = failure = _Failure()
    growth = soak(random.Random(seed), 600)
    reporter.status.note = f"soak: {growth / 1024:.0f} KiB traced growth over 600 datagrams"
    machine_settings = settings(_settings(25), stateful_step_count=STEPS)
    while time.monotonic() < deadline:
        failure.size = 0
        try:
            run_state_machine_as_test(NodeMachine, settings=machine_settings)  # type: ignore[no-untyped-call]
        except Exception:
            if failure.error is None:
                raise
            found = signature(failure.error)
            data, text = _fewer_frames(failure.data, found, describe(failure.error))
            reporter.finding(found, data, text, failure.size)
            known.signatures.add(found)
            failure.error = None


def _fewer_frames(data: bytes, found: str, text: str) -> tuple[bytes, str]:
    """Frames the shrinker left that the finding does not need, removed (and its traceback)."""

    def still_fails(sequence: list[nodes.Frame]) -> bool:
        return run_once(nodes.run, nodes.encode_frames(sequence), NODE_BUDGET).signature == found

    fewer = nodes.encode_frames(without_chunks(still_fails, nodes.frames(data)))
    outcome = run_once(nodes.run, fewer, NODE_BUDGET)
    if outcome.signature != found:  # the machine's sequence fails only as a whole
        return data, text
    return fewer, outcome.text


# --- memory ---------------------------------------------------------------------------------


def soak(rng: random.Random, count: int) -> int:
    """Bytes of traced memory one long-lived node gains over the second half of ``count`` inputs.

    The datagrams come from the dht-node seeds, mutated and sent from many
    sources with the clock running: what a node keeps per source (rate-limit
    buckets, tokens) must not grow without bound.
    """
    execution = nodes.NodeRun()
    inputs = [frame for data in nodes.node_seeds() for frame in nodes.frames(data)]
    tracemalloc.start()
    try:
        middle = 0
        for number in range(count):
            frame = rng.choice(inputs)
            datagram = bytearray(frame.datagram)
            if datagram and rng.random() < 0.5:
                datagram[rng.randrange(len(datagram))] ^= 1 << rng.randrange(8)
            control = (frame.control & ~nodes.SOURCE_BITS) | rng.randrange(8)
            if number % 50 == 0:
                control |= nodes.TICK
            execution.deliver(nodes.Frame(control, bytes(datagram)))
            if number == count // 2:
                middle = tracemalloc.get_traced_memory()[0]
        return tracemalloc.get_traced_memory()[0] - middle
    finally:
        tracemalloc.stop()
