"""A SAL host and service router, sans-IO (draft Sections 5.5 to 5.16).

Theory of operation.  A :class:`Host` owns one service table (Section 5.6),
one flow table (Section 5.7) and the listeners of its applications.  It has
one or more local endpoints ("interfaces", UDP endpoints of either family)
and never touches a socket or a clock:

- the adapter feeds it every received UDP payload with
  :meth:`Host.receive_datagram` (source endpoint, the local endpoint it
  arrived at, and ``now``) and its timer with :meth:`Host.handle_timer`;
- the application calls :meth:`connect`, :meth:`listen`, :meth:`send`,
  :meth:`read`, :meth:`close`, :meth:`sendto`, :meth:`migrate`, ...;
- the host answers with datagrams (:meth:`datagrams_to_send`, each with the
  local endpoint to send it from), events (:meth:`next_event`) and one
  deadline (:meth:`get_timer`).

Receive processing follows Section 5.5 step by step; every drop raises a
:class:`RemoteProtocolError` inside and is counted under its error code in
:attr:`Host.drops` (SAL-RECV-2), never escaping.  Control packets of a flow
take the checks of Section 5.9.2 and then the rows of the state tables in
``ref.sal.flow``.  A flow's transport (``ref.sal.stream`` or messages for
the datagram transport) is driven from here: it sends only in the states
and sub-states the draft allows.

Batches.  An adapter that reads several datagrams before it asks for output
(``ref.sal.aio`` takes up to 128 per readiness callback) gets one answer for
the in-order stream data of a flow that came in a row: the flow is marked
"deferred" instead of serviced, and the mark is settled (one ACK, the data the
new window allows, one Readable) when a packet of another flow or kind
arrives, or at the next :meth:`datagrams_to_send`, :meth:`next_event`,
:meth:`get_timer` or :meth:`handle_timer` (SAL-STREAM-16).  A segment that
needs its answer at once (SAL-STREAM-17) is answered at once.  An adapter that
asks for output after each datagram sees exactly the per-packet behaviour.

Resolution and registration leave the core as events: a packet that selects
a DELAY rule parks and raises :class:`ResolveNeeded` (one per serviceID in
progress, SAL-TBL-10); the adapter answers with :meth:`Host.resolved`.
Binding a listener raises :class:`RegisterNeeded` per local endpoint and
closing it :class:`UnregisterNeeded` (Section 5.6.4).

Randomness (flowIDs, nonces, ISS, the weighted choice) comes from the
injected generator, a ``secrets.SystemRandom()`` in a deployment
(SAL-FLOW-2, SAL-CONN-1, SAL-TBL-8) and a seeded ``random.Random`` in tests.

Decisions where the draft leaves room (also written in the draft):

- A resolution that reports the serviceID as not registered, or a resolver
  that cannot be reached, fails at once every flow in REQUEST whose SYN was
  parked for it, with "unreachable", instead of retransmitting for minutes.
- A flow's local endpoint is the interface of the next hop's address family
  (the first one configured), unless the application chose one.
- The RST rate limit of SAL-RST-3 is 10 per second per address and 1000 per
  second in total.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from enum import Enum
from typing import Any, Protocol, cast

from ref.sal.flow import (
    DATA_STATES,
    HALF_SPACE,
    MIGRATABLE,
    RSYN_ACCEPTING,
    SENDING_STATES,
    Event,
    Flow,
    Outstanding,
    State,
    SubState,
    next_state,
    seq_add,
    seq_diff,
)
from ref.sal.forwarding import forward, reply_endpoint
from ref.sal.receive import PacketKind, flags_of, packet_kind
from ref.sal.resolver import Registration
from ref.sal.stream import Buffer, Stream
from ref.sal.table import (
    Listener,
    LookupMode,
    Prefix,
    Rule,
    RuleKey,
    RuleType,
    ServiceTable,
    canonical_endpoint,
)
from ref.wire.constants import (
    CHALLENGE_ACK_INTERVAL,
    DEFAULT_HOP_LIMIT,
    DELAY_TIMEOUT,
    DEMUX_PRIORITY,
    DEMUX_WEIGHT,
    FINWAIT2_TIMEOUT,
    FLOW_ID_REUSE_DELAY,
    MAX_CONTROL_RETRANSMITS,
    MAX_DELAY_QUEUE,
    MAX_REQUEST_QUEUE,
    MAX_UDP_PAYLOAD,
    NONCE_LENGTH,
    REQUEST_TIMEOUT,
    TIMEWAIT_DURATION,
)
from ref.wire.errors import ErrorCode, LocalProtocolError, RemoteProtocolError, ServalError
from ref.wire.records import ServiceRecord
from ref.wire.sal import (
    CONTROL_FLAGS,
    STREAM_HEADER_LENGTH,
    Control,
    ControlFlags,
    Endpoint,
    SalPacket,
    TransportProtocol,
    decode_sal,
    decode_stream,
    encode_sal,
    encode_stream_packet,
)

# The flags as plain ints: an IntFlag operand would turn every test of a received
# packet's flags into enum arithmetic (IntFlag.__rand__ takes precedence over int's).
SYN, RSYN, ACK, RST, FIN = (
    int(ControlFlags.SYN),
    int(ControlFlags.RSYN),
    int(ControlFlags.ACK),
    int(ControlFlags.RST),
    int(ControlFlags.FIN),
)
_CONSUMING = SYN | RSYN | FIN
_NO_NONCE = bytes(NONCE_LENGTH)
_FLOW_ID_SPACE = 1 << 32
RST_PER_ADDRESS_PER_SECOND = 10
RST_TOTAL_PER_SECOND = 1000
_RST_TABLE_LIMIT = 4096


class SecureRandom(Protocol):
    """The injected generator: ``secrets.SystemRandom()`` or a seeded ``random.Random``."""

    def randrange(self, stop: int, /) -> int: ...

    def randbytes(self, n: int, /) -> bytes: ...


class Unreachable(ServalError):
    """The service table has no usable rule for the serviceID (SAL-CONN-2, SAL-DGRAM-2)."""


class CloseReason(Enum):
    """Why a flow ended, as the application learns it (Sections 5.9.3, 5.11)."""

    CLOSED = "closed"  # both sides closed
    REFUSED = "connection refused"  # an RST in REQUEST
    RESET = "connection reset"  # an RST later
    TIMEOUT = "timed out"  # the retransmission limit, or FIN-WAIT-2's
    UNREACHABLE = "service unreachable"  # resolution failed
    ABORTED = "aborted"  # this side aborted


# --- events -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Connected:
    """A flow this host opened reached CONNECTED."""

    flow_id: int
    local: Endpoint
    peer: Endpoint


@dataclasses.dataclass(frozen=True)
class Accepted:
    """A listener's flow completed its handshake: the application may take it."""

    listener: int
    flow_id: int
    service_id: bytes
    peer_service: bytes | None
    local: Endpoint
    peer: Endpoint


@dataclasses.dataclass(frozen=True)
class Readable:
    """Stream data arrived in order on ``flow_id``: :meth:`Host.read` it."""

    flow_id: int


@dataclasses.dataclass(frozen=True)
class Writable:
    """The send buffer of ``flow_id`` has room again after a short write."""

    flow_id: int


@dataclasses.dataclass(frozen=True)
class MessageReceived:
    """A message of a connected datagram flow (Section 5.14.1)."""

    flow_id: int
    data: bytes


@dataclasses.dataclass(frozen=True)
class EndOfData:
    """The peer will send nothing more on ``flow_id`` (its FIN, Section 5.11)."""

    flow_id: int


@dataclasses.dataclass(frozen=True)
class Closed:
    """``flow_id`` is gone for the application, with the reason."""

    flow_id: int
    reason: CloseReason
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class Migrated:
    """A migration of ``flow_id`` completed (Section 5.10)."""

    flow_id: int
    local: Endpoint
    peer: Endpoint


@dataclasses.dataclass(frozen=True)
class DatagramReceived:
    """An unconnected datagram for a listener (SAL-DGRAM-6)."""

    listener: int
    data: bytes
    sender: Endpoint
    local: Endpoint
    service_id: bytes
    source_service: bytes | None


@dataclasses.dataclass(frozen=True)
class ResolveNeeded:
    """Resolve ``service_id`` and answer with :meth:`Host.resolved` (Section 5.6.3)."""

    service_id: bytes


@dataclasses.dataclass(frozen=True)
class RegisterNeeded:
    """Register this endpoint for the serviceID with the resolution service (5.6.4)."""

    registration: Registration


@dataclasses.dataclass(frozen=True)
class UnregisterNeeded:
    """Withdraw a registration (the listener closed or the endpoint went away)."""

    registration: Registration


HostEvent = (
    Connected
    | Accepted
    | Readable
    | Writable
    | MessageReceived
    | EndOfData
    | Closed
    | Migrated
    | DatagramReceived
    | ResolveNeeded
    | RegisterNeeded
    | UnregisterNeeded
)


@dataclasses.dataclass(frozen=True)
class Outgoing:
    """A UDP payload to send from local endpoint ``source`` to ``destination``."""

    data: bytes
    source: Endpoint
    destination: Endpoint


@dataclasses.dataclass(frozen=True)
class HostConfig:
    """What an operator or application may configure (Section 5.16)."""

    router: bool = False  # a service router acts on every rule type for received packets
    max_hops: int = DEFAULT_HOP_LIMIT  # SAL-FWD-6
    mss: int = 1208  # stream data octets per segment (SAL-STREAM-6)
    receive_buffer: int = 1 << 20
    send_buffer: int = 1 << 20
    register: bool = True  # raise RegisterNeeded for bound listeners


@dataclasses.dataclass(eq=False)
class _Listening:
    handle: int
    prefix: Prefix
    transport: TransportProtocol
    key: RuleKey
    priority: int
    weight: int
    register: bool
    half_open: set[int] = dataclasses.field(default_factory=set)


@dataclasses.dataclass(eq=False)
class _Parked:
    """A packet waiting on a DELAY rule (Section 5.6.3)."""

    packet: SalPacket
    octets: int
    parked_at: float
    flow_id: int | None  # an originated SYN's flow
    received: tuple[Endpoint, Endpoint] | None  # (observed source, local) when received


class Host:
    """One SAL host (or service router) with its interfaces, tables and flows."""

    def __init__(
        self,
        interfaces: Iterable[Endpoint],
        *,
        rng: SecureRandom,
        now: float,
        config: HostConfig | None = None,
    ) -> None:
        self.config = config or HostConfig()
        self.rng = rng
        self.now = now
        self.interfaces: list[Endpoint] = [canonical_endpoint(e) for e in interfaces]
        if not self.interfaces:
            raise LocalProtocolError("a host needs at least one local endpoint")
        self.table = ServiceTable(rng)
        self.flows: dict[int, Flow] = {}
        self.drops: Counter[ErrorCode] = Counter()
        self.activity: Counter[str] = Counter()
        self._listeners: dict[int, _Listening] = {}
        self._listener_ids = itertools.count(1)
        self._half_open: dict[tuple[Endpoint, int, bytes], int] = {}
        self._retired: dict[int, float] = {}  # flowID -> when it reached CLOSED (SAL-FLOW-3)
        self._retired_order: deque[tuple[float, int]] = deque()
        self._out: list[Outgoing] = []
        self._events: deque[HostEvent] = deque()
        self._timers: list[tuple[float, int, int]] = []  # (deadline, tiebreak, flowID)
        self._tiebreak = itertools.count()
        self._streaming: set[int] = set()  # flows with a stream that may have timers
        self._parked: dict[bytes, list[_Parked]] = {}
        self._parked_count = 0
        self._resolving: set[bytes] = set()
        self._rst_window = (0.0, 0)
        self._rst_by_address: dict[Any, tuple[float, int]] = {}
        self._visible: set[int] = set()  # flows the application knows
        # A flow whose answer to in-order data waits for the rest of the batch (SAL-STREAM-16).
        self._deferred: Flow | None = None
        #: How often each row of the state table was taken (Section 5.15).
        self.transitions: Counter[tuple[State, Event]] = Counter()

    # --- sans-IO surface --------------------------------------------------------

    def datagrams_to_send(self) -> list[Outgoing]:
        if self._deferred is not None:
            self._flush_deferred()
        out, self._out = self._out, []
        return out

    def next_event(self) -> HostEvent | None:
        if self._deferred is not None:
            self._flush_deferred()
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        if self._deferred is not None:
            self._flush_deferred()
        deadlines: list[float] = []
        while self._timers:
            deadline, _, flow_id = self._timers[0]
            flow = self.flows.get(flow_id)
            if flow is not None and deadline in (flow.retransmit_at, flow.state_deadline):
                deadlines.append(deadline)
                break
            heapq.heappop(self._timers)
        for flow_id in self._streaming:
            stream = self.flows[flow_id].stream
            if stream is not None and not self.flows[flow_id].frozen:
                when = stream.get_timer()
                if when is not None:
                    deadlines.append(when)
        for parked in self._parked.values():
            deadlines.append(parked[0].parked_at + DELAY_TIMEOUT)
        expiry = self.table.next_expiry()
        if expiry is not None:
            deadlines.append(expiry)
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        if self._deferred is not None:
            self._flush_deferred()
        self.now = now
        while self._timers and self._timers[0][0] <= now:
            _, _, flow_id = heapq.heappop(self._timers)
            flow = self.flows.get(flow_id)
            if flow is not None:
                self._flow_timers(flow, now)
        for flow_id in list(self._streaming):
            flow = self.flows.get(flow_id)
            if flow is None or flow.stream is None or flow.frozen:
                continue
            when = flow.stream.get_timer()
            if when is not None and when <= now:
                flow.stream.handle_timer(now)
                self._service_transport(flow, now)
        for service_id in list(self._parked):
            self._expire_parked(service_id, now)
        self.table.expire(now)
        self._forget_retired(now)

    def receive_datagram(
        self, data: bytes, *, source: Endpoint, local: Endpoint, now: float, broadcast: bool = False
    ) -> None:
        """Process one received UDP payload (Section 5.5); drops are counted, never raised."""
        self.now = now
        source, local = canonical_endpoint(source), canonical_endpoint(local)
        self.activity["received"] += 1
        try:
            if len(data) > MAX_UDP_PAYLOAD:  # step 1; decode_sal checks the rest
                raise RemoteProtocolError(f"{len(data)} octets")
            packet = decode_sal(data)  # steps 1-3
            deferred = self._deferred
            if deferred is not None and (
                packet.control is not None or packet.destination_flow_id != deferred.local_flow_id
            ):
                self._flush_deferred()  # the batch of the deferred flow's data ends here
            kind = packet_kind(packet)  # steps 4-5
            if kind is PacketKind.FLOW:
                self._on_flow_packet(packet, source, local, now)
            else:
                self._on_service_packet(packet, kind, len(data), source, local, now, broadcast)
        except RemoteProtocolError as error:
            self.drops[error.error_code] += 1

    # --- application surface -------------------------------------------------------

    def listen(
        self,
        service_id: bytes,
        transport: TransportProtocol,
        now: float,
        *,
        prefix_length: int = 256,
        priority: int = DEMUX_PRIORITY,
        weight: int = DEMUX_WEIGHT,
        register: bool | None = None,
    ) -> int:
        """Bind a listener to a serviceID prefix (SAL-TBL-14, SAL-TBL-15); returns its handle."""
        self.now = now
        if transport not in (TransportProtocol.DATAGRAM, TransportProtocol.STREAM):
            raise LocalProtocolError(
                f"a listener's transport is DATAGRAM or STREAM, not {transport}"
            )
        handle = next(self._listener_ids)
        prefix = Prefix(service_id, prefix_length)
        rule = Rule.demux(prefix, Listener(handle, transport), priority=priority, weight=weight)
        self.table.add(rule, now)  # raises if the prefix has a listener
        registers = self.config.register if register is None else register
        listening = _Listening(handle, prefix, transport, rule.key, priority, weight, registers)
        self._listeners[handle] = listening
        for registration in self._registrations(listening):
            self._events.append(RegisterNeeded(registration))
        return handle

    def close_listener(self, handle: int, now: float) -> None:
        """Unbind (SAL-TBL-16) and abort the listener's half-open flows (Section 5.15)."""
        self.now = now
        listening = self._listeners.pop(handle, None)
        if listening is None:
            raise LocalProtocolError(f"no listener {handle}")
        self.table.remove(listening.key)
        for flow_id in list(listening.half_open):
            self._abort(self.flows[flow_id], now, report=False)
        for registration in self._registrations(listening):
            self._events.append(UnregisterNeeded(registration))

    def connect(
        self,
        service_id: bytes,
        transport: TransportProtocol,
        now: float,
        *,
        source_service: bytes | None = None,
        local: Endpoint | None = None,
    ) -> int:
        """Open a flow to a serviceID (Section 5.8.1); returns its flowID.

        Raises :class:`Unreachable` when the service table has no usable rule
        (SAL-CONN-2): nothing is sent and no flow remains.
        """
        self.now = now
        if transport not in (TransportProtocol.DATAGRAM, TransportProtocol.STREAM):
            raise LocalProtocolError(f"a flow's transport is DATAGRAM or STREAM, not {transport}")
        if local is not None and canonical_endpoint(local) not in self.interfaces:
            raise LocalProtocolError(f"{local} is not an interface of this host")
        iss = self.rng.randrange(_FLOW_ID_SPACE)
        flow = Flow(
            local_flow_id=self._new_flow_id(),
            transport=transport,
            state=State.REQUEST,
            local=canonical_endpoint(local) if local else self.interfaces[0],
            own_nonce=self.rng.randbytes(NONCE_LENGTH),
            iss=iss,
            local_service=source_service or b"",
            peer_service=service_id,
            snd_una=iss,
            snd_nxt=seq_add(iss, 1),
            created_at=now,
        )
        flow.outstanding = Outstanding(SYN, iss, now)
        self.flows[flow.local_flow_id] = flow
        if not self._send_syn(flow, now):
            del self.flows[flow.local_flow_id]
            raise Unreachable(f"no rule for serviceID {service_id.hex()}")
        self._visible.add(flow.local_flow_id)
        self._arm_retransmit(flow, now)
        return flow.local_flow_id

    def send(self, flow_id: int, data: Buffer, now: float) -> int:
        """Queue ``data`` on a flow: octets accepted (stream) or the message (datagram)."""
        self.now = now
        flow = self._app_flow(flow_id)
        if flow.close_requested or flow.state not in SENDING_STATES | {State.REQUEST}:
            raise LocalProtocolError(f"flow {flow_id:#010x} is closed for sending")
        if flow.transport is TransportProtocol.DATAGRAM:
            if len(data) > MAX_UDP_PAYLOAD - 12:
                raise LocalProtocolError(f"a {len(data)}-octet message does not fit (5.14.1)")
            flow.datagrams.append(bytes(data))
            self._service_transport(flow, now)
            return len(data)
        if flow.stream is None:  # REQUEST: the stream starts at CONNECTED
            raise LocalProtocolError(f"flow {flow_id:#010x} is not connected yet")
        accepted = flow.stream.write(data)
        if accepted < len(data):
            flow.write_blocked = True
        self._service_transport(flow, now)
        return accepted

    def writable(self, flow_id: int) -> int:
        """Free octets in the stream's send buffer."""
        stream = self._app_flow(flow_id).stream
        return 0 if stream is None else stream.send_buffer_free

    def read(self, flow_id: int, limit: int = -1, *, now: float | None = None) -> bytes:
        """Take in-order stream data (SAL-STREAM-12); reading reopens the window."""
        flow = self._app_flow(flow_id)
        if flow.stream is None:
            return b""
        data = flow.stream.read(limit)
        if data:
            self._service_transport(flow, self.now if now is None else now)
        return data

    def close(self, flow_id: int, now: float) -> None:
        """The application closes the flow (Section 5.11.1): FIN after the stream's end."""
        self.now = now
        flow = self._app_flow(flow_id)
        if flow.state is State.REQUEST:
            self._transition(flow, Event.APP_CLOSE, now)
            return
        if flow.close_requested or flow.state not in (State.CONNECTED, State.CLOSEWAIT):
            return  # already closing
        flow.close_requested = True
        if flow.stream is not None:
            flow.stream.shutdown()
        self._service_transport(flow, now)

    def abort(self, flow_id: int, now: float) -> None:
        """The application aborts the flow (SAL-CLOSE-7)."""
        self.now = now
        flow = self._app_flow(flow_id)
        self._abort(flow, now, report=True, reason=CloseReason.ABORTED)

    def migrate(self, flow_id: int, local: Endpoint, now: float) -> None:
        """Move the flow's local end to ``local`` (Section 5.10.4; waits if it must)."""
        self.now = now
        flow = self._app_flow(flow_id)
        local = canonical_endpoint(local)
        if local not in self.interfaces:
            raise LocalProtocolError(f"{local} is not an interface of this host")
        flow.pending_move = local
        self._try_migration(flow, now)

    def sendto(
        self,
        service_id: bytes,
        data: bytes,
        now: float,
        *,
        source_service: bytes | None = None,
        local: Endpoint | None = None,
    ) -> None:
        """Send an unconnected datagram (SAL-DGRAM-1, SAL-DGRAM-2)."""
        self.now = now
        packet = SalPacket(
            0,
            0,
            TransportProtocol.DATAGRAM,
            destination_service=service_id,
            source_service=source_service,
            payload=bytes(data),
        )
        encoded = encode_sal(packet)
        self._check_size(encoded)
        rule = self._lookup(packet, len(encoded), LookupMode.ALL_RULES, now)
        if rule is None:
            raise Unreachable(f"no rule for serviceID {service_id.hex()}")
        try:
            self._act(rule, packet, encoded, now, flow=None, local=local, received=None)
        except RemoteProtocolError as drop:  # a DROP rule, a full DELAY queue
            self.drops[drop.error_code] += 1

    def reply(self, request: DatagramReceived, data: bytes, now: float) -> None:
        """Answer an unconnected datagram directly, without a lookup (SAL-DGRAM-7, -8)."""
        self.now = now
        packet = SalPacket(
            0,
            0,
            TransportProtocol.DATAGRAM,
            destination_service=request.source_service or request.service_id,
            source_service=request.service_id,
            payload=bytes(data),
        )
        encoded = encode_sal(packet)
        self._check_size(encoded)
        self._emit(encoded, request.local, request.sender)

    def resolved(
        self, service_id: bytes, record: ServiceRecord | None, now: float, *, error: str = ""
    ) -> None:
        """The answer to :class:`ResolveNeeded`: a verified record, or None (Section 5.6.3).

        ``error`` says why there is no record when the resolver could not be
        reached; without it, None means the serviceID is not registered.
        """
        self.now = now
        self._resolving.discard(service_id)
        live = record is not None and not record.is_tombstone
        if record is not None:
            try:
                self.table.install_record(record, now)  # a tombstone removes the rules
            except LocalProtocolError as problem:  # an expired record (SAL-TBL-20)
                live, error = False, str(problem)
        parked = self._parked.pop(service_id, [])
        self._parked_count -= len(parked)
        if not live:
            detail = error or "the service is not registered"
            for item in parked:
                self.drops[ErrorCode.NO_SERVICE] += 1  # SAL-TBL-12
                if item.flow_id is not None and item.flow_id in self.flows:
                    flow = self.flows[item.flow_id]
                    if flow.state is State.REQUEST:
                        self._remove(flow, now, CloseReason.UNREACHABLE, detail)
            return
        for item in parked:  # SAL-TBL-11
            self._release(item, now)

    def add_interface(self, endpoint: Endpoint, now: float) -> None:
        """A new local endpoint: listeners register it (Section 5.6.4)."""
        self.now = now
        endpoint = canonical_endpoint(endpoint)
        if endpoint in self.interfaces:
            return
        self.interfaces.append(endpoint)
        for listening in self._listeners.values():
            if listening.register and _registrable(endpoint):
                self._events.append(RegisterNeeded(self._registration(listening, endpoint)))

    def remove_interface(self, endpoint: Endpoint, now: float) -> None:
        """A local endpoint went away: re-register, and move its flows (Section 5.10)."""
        self.now = now
        endpoint = canonical_endpoint(endpoint)
        if endpoint not in self.interfaces or len(self.interfaces) == 1:
            raise LocalProtocolError(f"{endpoint} is not a removable interface")
        self.interfaces.remove(endpoint)
        for listening in self._listeners.values():
            if listening.register and _registrable(endpoint):
                self._events.append(UnregisterNeeded(self._registration(listening, endpoint)))
        replacement = self._interface_for(endpoint, None)
        for flow in list(self.flows.values()):
            if flow.local == endpoint and flow.local_flow_id in self._visible:
                self.migrate(flow.local_flow_id, replacement, now)

    def flow(self, flow_id: int) -> Flow:
        """The flow table entry (read it; do not change it)."""
        return self._app_flow(flow_id)

    def status(self) -> dict[str, Any]:
        """Counters and tables, for operators and tests."""
        return {
            "interfaces": [f"{e.address}:{e.port}" for e in self.interfaces],
            "router": self.config.router,
            "flows": {
                f"{fid:#010x}": f"{flow.state.value}/{flow.substate.value}"
                for fid, flow in self.flows.items()
            },
            "listeners": len(self._listeners),
            "rules": len(self.table),
            "parked": self._parked_count,
            "counters": {f"drop.{code.name}": n for code, n in sorted(self.drops.items())},
            "activity": dict(sorted(self.activity.items())),
        }

    # --- receive: SYNs and unconnected datagrams (steps 5 and 7) ---------------------

    def _on_service_packet(
        self,
        packet: SalPacket,
        kind: PacketKind,
        octets: int,
        source: Endpoint,
        local: Endpoint,
        now: float,
        broadcast: bool,
    ) -> None:
        if not self.config.router or broadcast:  # SAL-FWD-2: broadcasts are never forwarded
            protocol = packet.protocol
            if kind is PacketKind.SYN and protocol not in (
                TransportProtocol.DATAGRAM,
                TransportProtocol.STREAM,
            ):
                raise RemoteProtocolError(f"a SYN with Protocol {int(protocol)}")
            if kind is PacketKind.DATAGRAM and protocol != TransportProtocol.DATAGRAM:
                raise RemoteProtocolError(f"a datagram with Protocol {int(protocol)}")
        rule = self._lookup(packet, octets, self._mode(broadcast), now)
        if rule is None or rule.type is RuleType.DROP:
            if kind is PacketKind.SYN and not self.config.router and rule is None:
                self._answer_with_rst(packet, reply_endpoint(packet, source), local, now)
            raise RemoteProtocolError("no rule for the serviceID", ErrorCode.NO_SERVICE)
        self._act(rule, packet, None, now, flow=None, local=local, received=(source, local))

    def _mode(self, broadcast: bool) -> LookupMode:
        if self.config.router and not broadcast:
            return LookupMode.ALL_RULES
        return LookupMode.DEMUX_ONLY

    def _lookup(
        self,
        packet: SalPacket,
        octets: int,
        mode: LookupMode,
        now: float,
        *,
        tried: Sequence[Endpoint] = (),
    ) -> Rule | None:
        """The rule for ``packet``: away from the hops it passed (SAL-FWD-5) and ``tried``."""
        assert packet.destination_service is not None
        avoid = [*packet.source_route.entries, *tried] if packet.source_route else tried
        return self.table.lookup(
            packet.destination_service,
            now,
            protocol=packet.protocol,
            mode=mode,
            octets=octets,
            avoid=avoid,
        )

    def _act(
        self,
        rule: Rule,
        packet: SalPacket,
        encoded: bytes | None,
        now: float,
        *,
        flow: Flow | None,
        local: Endpoint | None,
        received: tuple[Endpoint, Endpoint] | None,
    ) -> None:
        """Carry out the selected rule (Section 5.6.3) for a received or own packet."""
        target = rule.target
        if rule.type is RuleType.DROP:
            raise RemoteProtocolError("a DROP rule", ErrorCode.NO_SERVICE)
        if rule.type is RuleType.DELAY:
            self._park(packet, len(encoded) if encoded else 0, now, flow, received)
            return
        if isinstance(target, Listener):
            if received is None:  # own packet to an own listener: through the own interface
                origin = self._interface_for(self.interfaces[0], local)
                self._emit(encoded or encode_sal(packet), origin, origin)
                if flow is not None:
                    flow.local = origin
                return
            source, at = received
            self._deliver(target, packet, source, at, now)
            return
        assert isinstance(target, Endpoint)
        if received is not None:  # a service router forwards (Section 5.13)
            source, at = received
            data = forward(
                packet,
                observed=source,
                received_at=at,
                next_hop=target,
                max_hops=self.config.max_hops,
            )
            self.activity["forwarded"] += 1
            self._emit(data, at, target)
            return
        origin = self._interface_for(target, flow.local if flow else local)
        if flow is not None:
            flow.local = origin
        self._emit(encoded or encode_sal(packet), origin, target)

    def _deliver(
        self, listener: Listener, packet: SalPacket, source: Endpoint, local: Endpoint, now: float
    ) -> None:
        listening = self._listeners[cast(int, listener.handle)]
        sender = reply_endpoint(packet, source)  # SAL-FWD-10
        assert packet.destination_service is not None
        if packet.control is None:  # SAL-DGRAM-6
            self._events.append(
                DatagramReceived(
                    listening.handle,
                    packet.payload,
                    canonical_endpoint(sender),
                    local,
                    packet.destination_service,
                    packet.source_service,
                )
            )
            return
        self._on_syn(listening, packet, canonical_endpoint(sender), local, now)

    # --- the handshake, server side (Section 5.8.2) -------------------------------------

    def _on_syn(
        self,
        listening: _Listening,
        packet: SalPacket,
        client: Endpoint,
        local: Endpoint,
        now: float,
    ) -> None:
        control = packet.control
        assert control is not None and packet.destination_service is not None
        key = (client, packet.source_flow_id, control.nonce)
        duplicate = self._half_open.get(key)
        if duplicate is not None:  # SAL-CONN-6, SAL-CONN-7
            flow = self.flows[duplicate]
            if flow.outstanding is not None:
                flow.outstanding.retransmitted = True
                self._send_control(flow, flow.outstanding.flags, flow.outstanding.verno)
            return
        if len(listening.half_open) >= MAX_REQUEST_QUEUE:  # SAL-CONN-8
            raise RemoteProtocolError("the request queue is full", ErrorCode.QUEUE_FULL)
        iss = self.rng.randrange(_FLOW_ID_SPACE)
        flow = Flow(
            local_flow_id=self._new_flow_id(),
            transport=TransportProtocol(packet.protocol),
            state=State.RESPOND,
            local=local,
            own_nonce=self.rng.randbytes(NONCE_LENGTH),
            iss=iss,
            local_service=packet.destination_service,
            peer=client,
            peer_flow_id=packet.source_flow_id,
            peer_nonce=control.nonce,
            peer_service=packet.source_service,  # SAL-CONN-10
            snd_una=iss,
            snd_nxt=seq_add(iss, 1),
            irs=control.verno,
            rcv_nxt=seq_add(control.verno, 1),
            listener=listening.handle,
            client_key=key,
            created_at=now,
        )
        self.flows[flow.local_flow_id] = flow
        self._half_open[key] = flow.local_flow_id
        listening.half_open.add(flow.local_flow_id)
        flow.outstanding = Outstanding(SYN | ACK, iss, now)
        self._send_control(flow, SYN | ACK, iss)  # SAL-CONN-11
        self._arm_retransmit(flow, now)
        flow.state_deadline = now + REQUEST_TIMEOUT  # SAL-CONN-12
        self._push_timer(flow, flow.state_deadline)
        self.activity["syn_accepted"] += 1

    # --- flow packets (step 6) -------------------------------------------------------

    def _on_flow_packet(
        self, packet: SalPacket, source: Endpoint, local: Endpoint, now: float
    ) -> None:
        flow = self.flows.get(packet.destination_flow_id)
        control = packet.control
        if flow is None:  # SAL-RST-1, SAL-RST-2
            if not (control is not None and control.flags & RST) and packet.source_flow_id:
                self._answer_with_rst(packet, source, local, now)
            raise RemoteProtocolError("no flow for the packet", ErrorCode.UNEXPECTED_CONTROL)
        protocol = packet.protocol
        if protocol == TransportProtocol.NONE:  # SAL-HDR-8, before SAL-EXT-25
            if packet.payload:
                raise RemoteProtocolError("Protocol NONE with a payload")
        elif protocol != flow.transport:
            raise RemoteProtocolError(f"Protocol {int(protocol)} on a {flow.transport.name} flow")
        if control is None:
            self._on_data(flow, packet, now)
            return
        flags = flags_of(control)
        if flags & RST:
            self._on_rst(flow, control, now)
        elif flow.state is State.REQUEST:
            self._on_syn_ack(flow, packet, control, flags, source, now)
        elif flow.state is State.RESPOND:
            self._on_handshake_ack(flow, control, flags, now)
        else:
            self._on_control(flow, control, flags, source, now)
        if flow.local_flow_id in self.flows:
            self._service_transport(flow, now)
            self._try_migration(flow, now)

    def _on_data(self, flow: Flow, packet: SalPacket, now: float) -> None:
        # Every state with a flow has a "rcv data" row (Section 5.15): count it directly.
        self.transitions[(flow.state, Event.RCV_DATA)] += 1
        if flow.state not in DATA_STATES or packet.protocol == TransportProtocol.NONE:
            return  # discarded without being counted (Section 5.5, step 6)
        if flow.transport is TransportProtocol.DATAGRAM:
            if flow.local_flow_id in self._visible:
                self._events.append(MessageReceived(flow.local_flow_id, packet.payload))
            return
        if len(packet.payload) < STREAM_HEADER_LENGTH:  # SAL-STREAM-1
            raise RemoteProtocolError("a STREAM payload shorter than the segment header")
        assert flow.stream is not None
        if flow.stream.receive(decode_stream(packet.payload), now):
            if self._deferred is flow:
                self._deferred = None
            self._service_transport(flow, now)
        else:
            self._deferred = flow  # answered with the rest of the batch (SAL-STREAM-16)

    def _flush_deferred(self) -> None:
        """Answer the in-order data of the batch that just ended: one ACK for all of it."""
        flow, self._deferred = self._deferred, None
        if flow is not None and flow.local_flow_id in self.flows:
            self._service_transport(flow, self.now)

    def _on_rst(self, flow: Flow, control: Control, now: float) -> None:
        """Section 5.11.3: accept an RST with either nonce, else a challenge ACK."""
        if control.nonce in (flow.peer_nonce, flow.own_nonce):  # SAL-RST-5
            reason = CloseReason.REFUSED if flow.state is State.REQUEST else CloseReason.RESET
            self._transition(flow, Event.RCV_RST_VALID, now, reason=reason)
            return
        self.drops[ErrorCode.BAD_NONCE] += 1
        if flow.state not in (State.REQUEST, State.RESPOND):  # SAL-RST-7
            last = flow.last_challenge
            if last is None or now - last >= CHALLENGE_ACK_INTERVAL:
                flow.last_challenge = now
                self._send_ack(flow)

    def _on_syn_ack(
        self,
        flow: Flow,
        packet: SalPacket,
        control: Control,
        flags: int,
        source: Endpoint,
        now: float,
    ) -> None:
        """Section 5.8.3: the client accepts a SYN-ACK from any source (SAL-CONN-14)."""
        valid = (
            flags == SYN | ACK
            and packet.source_flow_id != 0
            and control.ackno == seq_add(flow.iss, 1)
            and packet.destination_service == flow.peer_service
        )
        if not valid:  # SAL-CONN-13
            self._note(flow, Event.RCV_SYNACK_INVALID)
            raise RemoteProtocolError("not the SYN-ACK of this SYN", ErrorCode.BAD_SEQUENCE)
        flow.peer_flow_id = packet.source_flow_id
        flow.peer_nonce = control.nonce
        flow.irs = control.verno
        flow.rcv_nxt = seq_add(control.verno, 1)
        flow.peer = source
        self._take_ack(flow, control.ackno, now)
        self._transition(flow, Event.RCV_SYNACK_VALID, now)
        flow.handshake_ack = self._send_ack(flow)
        self._events.append(Connected(flow.local_flow_id, flow.local, source))

    def _on_handshake_ack(self, flow: Flow, control: Control, flags: int, now: float) -> None:
        """Section 5.8.4: a server flow in RESPOND completes on a valid ACK."""
        if control.nonce != flow.peer_nonce:  # SAL-CONN-16
            self._note(flow, Event.RCV_ACK_INVALID)
            raise RemoteProtocolError("the nonce is not the client's", ErrorCode.BAD_NONCE)
        if not flags & ACK or flags & ~(ACK | FIN):
            raise RemoteProtocolError("in RESPOND", ErrorCode.UNEXPECTED_CONTROL)
        if control.ackno != seq_add(flow.iss, 1) or control.verno != flow.rcv_nxt:
            self._note(flow, Event.RCV_ACK_INVALID)
            raise RemoteProtocolError("not the handshake's ACK", ErrorCode.BAD_SEQUENCE)  # -17
        self._take_ack(flow, control.ackno, now)
        fin = bool(flags & FIN)
        if fin:
            flow.rcv_nxt = seq_add(flow.rcv_nxt, 1)
            flow.rcv_rsyn = False
        self._transition(flow, Event.RCV_FIN_HANDSHAKE if fin else Event.RCV_ACK_VALID, now)
        if fin:
            self._send_ack(flow)
            self._end_of_peer_data(flow)

    def _on_control(
        self, flow: Flow, control: Control, flags: int, source: Endpoint, now: float
    ) -> None:
        """Section 5.9.2: checks in order, then acknowledgment, RSYN, FIN, and the ACK."""
        if control.nonce != flow.peer_nonce:  # SAL-CTRL-6
            raise RemoteProtocolError("wrong nonce", ErrorCode.BAD_NONCE)
        if flags == SYN | ACK and control.verno == flow.irs and flow.handshake_ack:  # SAL-CONN-15
            assert flow.peer is not None
            self._note(flow, Event.RCV_SYNACK_DUP)
            self._emit(flow.handshake_ack, flow.local, flow.destination or flow.peer)
            return
        acks = False
        if flags & ACK:  # SAL-CTRL-7
            distance = seq_diff(control.ackno, flow.snd_una)
            if (distance == 1 and flow.outstanding is None) or 2 <= distance < HALF_SPACE:
                raise RemoteProtocolError(
                    "acknowledges what was never sent", ErrorCode.BAD_SEQUENCE
                )
            acks = distance == 1
        consuming = bool(flags & _CONSUMING)
        new = duplicate = False
        if consuming:  # SAL-CTRL-8
            ahead = seq_diff(control.verno, flow.rcv_nxt)
            if 1 <= ahead < HALF_SPACE:
                raise RemoteProtocolError("ahead of rcv.nxt", ErrorCode.BAD_SEQUENCE)
            new, duplicate = ahead == 0, ahead != 0
        fresh_rsyn = bool(flags & RSYN) and (
            new or (duplicate and control.verno == seq_add(flow.rcv_nxt, -1) and not flow.rcv_rsyn)
        )
        if fresh_rsyn and flow.substate is SubState.RSYN_SENT and flags & ACK and not acks:
            raise RemoteProtocolError("RSYN with a foreign ACK", ErrorCode.BAD_SEQUENCE)  # MIG-14
        # SAL-CTRL-9: every event the packet carries must be accepted before any effect.
        if fresh_rsyn and flow.state not in RSYN_ACCEPTING:  # SAL-MIG-7
            raise RemoteProtocolError(f"RSYN in {flow.state.value}", ErrorCode.UNEXPECTED_CONTROL)
        if new and flags & SYN:
            raise RemoteProtocolError("a new SYN on a flow", ErrorCode.UNEXPECTED_CONTROL)
        outstanding = flow.outstanding
        acks_fin = acks and outstanding is not None and bool(outstanding.flags & FIN)
        event: Event | None = None
        if new and flags & FIN:
            if flow.state is State.FINWAIT1:
                event = Event.RCV_FIN_WITH_ACK_OF_FIN if acks_fin else Event.RCV_FIN_NOT_ACK_OF_FIN
            else:
                event = Event.RCV_FIN
        elif acks_fin:
            event = Event.RCV_ACK_OF_FIN
        elif duplicate and flags & FIN and flow.state is State.TIMEWAIT:
            event = Event.RCV_FIN_DUP
        if event is not None and next_state(flow.state, event) is None:  # SAL-CONN-20
            raise RemoteProtocolError(
                f"{event.value} in {flow.state.value}", ErrorCode.UNEXPECTED_CONTROL
            )
        # Processing, in the order of Section 5.9.2.
        if new:
            flow.rcv_nxt = seq_add(flow.rcv_nxt, 1)
            flow.rcv_rsyn = bool(flags & RSYN)
        elif fresh_rsyn:
            flow.rcv_rsyn = True  # SAL-MIG-6
        if acks:
            self._take_ack(flow, control.ackno, now)
        answered = False
        if fresh_rsyn:
            answered = self._on_fresh_rsyn(flow, flags, source, now)
        if event is not None:
            if event is not Event.RCV_ACK_OF_FIN and event is not Event.RCV_FIN_DUP:
                self._end_of_peer_data(flow)  # before the Closed of entering TIMEWAIT
            self._transition(flow, event, now)
        if consuming and not answered and flow.local_flow_id in self.flows:  # SAL-CTRL-10
            self._send_ack(flow)

    def _on_fresh_rsyn(self, flow: Flow, flags: int, source: Endpoint, now: float) -> bool:
        """Section 5.10.4: an answer is only acknowledged; a move is answered."""
        if flags & ACK and source == flow.peer:
            return False  # SAL-MIG-8
        flow.candidate = source  # SAL-MIG-9
        if flow.substate is SubState.INITIAL:
            flow.substate = SubState.RSYN_RECV
        elif flow.substate is SubState.RSYN_SENT:
            flow.substate = SubState.RSYN_SENT_RECV
        if flow.stream is not None:
            flow.stream.freeze()
        outstanding = flow.outstanding
        if outstanding is None:  # SAL-MIG-10
            self._send_new(flow, RSYN | ACK, now)
        else:  # SAL-MIG-11: merge, keep the verno, send at once to the candidate
            outstanding.flags |= RSYN | ACK
            outstanding.retransmitted = True
            self._send_control(flow, outstanding.flags, outstanding.verno)
        return True

    def _take_ack(self, flow: Flow, ackno: int, now: float) -> None:
        """The outstanding packet is acknowledged (Section 5.9.2 step 2, 5.10.4 Completing)."""
        outstanding = flow.outstanding
        assert outstanding is not None
        flow.snd_una = ackno
        flow.outstanding = None
        flow.retransmit_at = None
        if not outstanding.retransmitted:  # SAL-CTRL-13
            flow.rto.sample(now - outstanding.sent_at)
        if outstanding.flags & RSYN and flow.substate is not SubState.INITIAL:
            if flow.substate is not SubState.RSYN_SENT:  # SAL-MIG-13
                assert flow.candidate is not None
                flow.peer, flow.candidate = flow.candidate, None
            flow.substate = SubState.INITIAL  # SAL-MIG-12
            if flow.stream is not None:
                flow.stream.resume(now)
            assert flow.peer is not None
            self._events.append(Migrated(flow.local_flow_id, flow.local, flow.peer))
        if flow.fin_pending and flow.outstanding is None:  # SAL-CTRL-4: the FIN waited
            flow.fin_pending = False
            self._send_new(flow, FIN | ACK, now)

    def _end_of_peer_data(self, flow: Flow) -> None:
        if not flow.reported_end and flow.local_flow_id in self._visible:
            flow.reported_end = True
            self._events.append(EndOfData(flow.local_flow_id))

    # --- state changes ---------------------------------------------------------------

    def _transition(
        self,
        flow: Flow,
        event: Event,
        now: float,
        *,
        reason: CloseReason | None = CloseReason.CLOSED,
        detail: str = "",
    ) -> None:
        """Move ``flow`` along the state table (Section 5.15) and start the state's timers."""
        target = next_state(flow.state, event)
        if target is None:
            raise LocalProtocolError(f"{event.value} in {flow.state.value}")
        self.transitions[(flow.state, event)] += 1
        previous, flow.state = flow.state, target
        if target is previous and event is not Event.RCV_FIN_DUP:
            return
        if target is State.CLOSED:
            silent = previous is State.RESPOND or previous is State.TIMEWAIT
            self._remove(flow, now, None if silent else reason, detail)
            return
        if previous is State.RESPOND:
            self._established(flow, now)
            self._accepted(flow)
        elif previous is State.REQUEST:
            self._established(flow, now)
        if target in (State.CLOSING, State.TIMEWAIT, State.LASTACK):
            self._streaming.discard(flow.local_flow_id)  # the transport sends nothing new
        if target is State.FINWAIT2:
            self._set_state_timer(flow, now + FINWAIT2_TIMEOUT)
        elif target is State.TIMEWAIT:
            self._set_state_timer(flow, now + TIMEWAIT_DURATION)  # SAL-CLOSE-4, -5
            self._report_closed(flow, CloseReason.CLOSED)
        elif target in (State.CONNECTED, State.CLOSEWAIT) and previous is State.RESPOND:
            flow.state_deadline = None

    def _established(self, flow: Flow, now: float) -> None:
        if flow.transport is TransportProtocol.STREAM:
            flow.stream = Stream(
                iss=flow.iss,
                irs=flow.irs,
                now=now,
                mss=self.config.mss,
                receive_buffer=self.config.receive_buffer,
                send_buffer=self.config.send_buffer,
            )
            self._streaming.add(flow.local_flow_id)

    def _accepted(self, flow: Flow) -> None:
        assert flow.listener is not None and flow.client_key is not None
        self._half_open.pop(flow.client_key, None)
        listening = self._listeners.get(flow.listener)
        if listening is not None:
            listening.half_open.discard(flow.local_flow_id)
        flow.state_deadline = None
        self._visible.add(flow.local_flow_id)
        assert flow.peer is not None
        self._events.append(
            Accepted(
                flow.listener,
                flow.local_flow_id,
                flow.local_service,
                flow.peer_service,
                flow.local,
                flow.peer,
            )
        )

    def _app_close_moment(self, flow: Flow, now: float) -> None:
        """ "App close" of Section 5.11.1: the transport has finished; the FIN goes out."""
        flow.close_requested = False
        self._transition(flow, Event.APP_CLOSE, now)
        if flow.outstanding is None:
            self._send_new(flow, FIN | ACK, now)  # SAL-CLOSE-1
        else:
            flow.fin_pending = True

    def _abort(
        self, flow: Flow, now: float, *, report: bool, reason: CloseReason = CloseReason.ABORTED
    ) -> None:
        """SAL-CLOSE-7: one RST (not in REQUEST or TIMEWAIT), then CLOSED."""
        if flow.state not in (State.REQUEST, State.TIMEWAIT):
            self._send_abort_rst(flow)
        if next_state(flow.state, Event.APP_ABORT) is None:  # RESPOND: its listener closed
            self._remove(flow, now, None)
        else:
            self._transition(flow, Event.APP_ABORT, now, reason=reason if report else None)

    def _fail(self, flow: Flow, now: float) -> None:
        """The retransmission limit (SAL-CTRL-16, SAL-MIG-15, SAL-STREAM-11)."""
        self.activity["timeouts"] += 1
        if flow.state is not State.REQUEST:
            self._send_abort_rst(flow)
        if next_state(flow.state, Event.RTO_LIMIT) is None:  # RESPOND ends by its timeout
            self._remove(flow, now, None)
        else:
            self._transition(flow, Event.RTO_LIMIT, now, reason=CloseReason.TIMEOUT)

    def _note(self, flow: Flow, event: Event) -> None:
        """Count a row of the state table that leaves the state as it is."""
        if next_state(flow.state, event) is flow.state:
            self.transitions[(flow.state, event)] += 1

    def _remove(self, flow: Flow, now: float, reason: CloseReason | None, detail: str = "") -> None:
        flow.state = State.CLOSED
        flow_id = flow.local_flow_id
        if self.flows.pop(flow_id, None) is None:
            return
        self._retired[flow_id] = now
        self._retired_order.append((now, flow_id))
        self._streaming.discard(flow_id)
        if flow.client_key is not None:
            self._half_open.pop(flow.client_key, None)
        if flow.listener is not None and flow.listener in self._listeners:
            self._listeners[flow.listener].half_open.discard(flow_id)
        if reason is not None:
            self._report_closed(flow, reason, detail)
        self._visible.discard(flow_id)

    def _report_closed(self, flow: Flow, reason: CloseReason, detail: str = "") -> None:
        if flow.local_flow_id in self._visible and not flow.reported_closed:
            flow.reported_closed = True
            self._events.append(Closed(flow.local_flow_id, reason, detail))

    # --- timers ----------------------------------------------------------------------

    def _flow_timers(self, flow: Flow, now: float) -> None:
        # A state timeout wins over a retransmission due at the same time (SAL-CONN-12):
        # the flow ends without sending it.
        if flow.state_deadline is not None and flow.state_deadline <= now:
            flow.state_deadline = None
            if flow.state is State.RESPOND:
                self._transition(flow, Event.REQUEST_TIMEOUT, now)
            elif flow.state is State.FINWAIT2:  # SAL-CLOSE-6
                self._send_abort_rst(flow)
                self._transition(flow, Event.STATE_TIMEOUT, now, reason=CloseReason.TIMEOUT)
            elif flow.state is State.TIMEWAIT:
                self._transition(flow, Event.STATE_TIMEOUT, now)
        if flow.local_flow_id not in self.flows:
            return
        if flow.retransmit_at is not None and flow.retransmit_at <= now:
            self._retransmit(flow, now)

    def _retransmit(self, flow: Flow, now: float) -> None:
        """SAL-CTRL-15 and SAL-CTRL-16."""
        outstanding = flow.outstanding
        flow.retransmit_at = None
        if outstanding is None:
            return
        if outstanding.retransmissions >= MAX_CONTROL_RETRANSMITS:
            self._fail(flow, now)
            return
        if next_state(flow.state, Event.RTO) is None:
            flow.outstanding = None  # TIMEWAIT: both directions ended, nothing left to move
            return
        self._transition(flow, Event.RTO, now)
        outstanding.retransmissions += 1
        outstanding.retransmitted = True
        flow.rto.back_off()
        if flow.state is State.REQUEST:  # SAL-CONN-3: look up again
            self._send_syn(flow, now)
        else:
            self._send_control(flow, outstanding.flags, outstanding.verno)
        self._arm_retransmit(flow, now)

    def _arm_retransmit(self, flow: Flow, now: float) -> None:
        flow.retransmit_at = now + flow.rto.rto
        self._push_timer(flow, flow.retransmit_at)

    def _set_state_timer(self, flow: Flow, deadline: float) -> None:
        flow.state_deadline = deadline
        self._push_timer(flow, deadline)

    def _push_timer(self, flow: Flow, deadline: float) -> None:
        heapq.heappush(self._timers, (deadline, next(self._tiebreak), flow.local_flow_id))

    # --- the transport ---------------------------------------------------------------

    def _service_transport(self, flow: Flow, now: float) -> None:
        """Let the flow's transport send what it may, and surface what it delivered."""
        if flow.local_flow_id not in self.flows:
            return
        sending = flow.state in SENDING_STATES and not flow.frozen  # SAL-FLOW-5, SAL-MIG-1
        stream = flow.stream
        if stream is None:
            if flow.transport is TransportProtocol.DATAGRAM and sending and flow.datagrams:
                for message in flow.datagrams:
                    self._send_data(flow, message)
                flow.datagrams.clear()
            if flow.close_requested and flow.state in (State.CONNECTED, State.CLOSEWAIT):
                self._app_close_moment(flow, now)
            return
        if sending:
            source, destination, peer = flow.local_flow_id, flow.peer_flow_id, flow.peer
            assert peer is not None  # a sending state has a peer
            for segment in stream.segments_to_send(now):
                self._emit(encode_stream_packet(source, destination, segment), flow.local, peer)
        if stream.failed:
            self._fail(flow, now)
            return
        readable = stream.readable
        if readable > flow.notified_readable and flow.local_flow_id in self._visible:
            self._events.append(Readable(flow.local_flow_id))
        flow.notified_readable = readable
        if stream.peer_finished:
            self._end_of_peer_data(flow)
        if flow.write_blocked and stream.send_buffer_free:
            flow.write_blocked = False
            self._events.append(Writable(flow.local_flow_id))
        if (
            flow.close_requested
            and stream.finished
            and flow.state
            in (
                State.CONNECTED,
                State.CLOSEWAIT,
            )
        ):
            self._app_close_moment(flow, now)

    def _send_data(self, flow: Flow, payload: bytes) -> None:
        assert flow.peer is not None
        packet = SalPacket(flow.local_flow_id, flow.peer_flow_id, flow.transport, payload=payload)
        self._emit(encode_sal(packet), flow.local, flow.peer)

    # --- migration -------------------------------------------------------------------

    def _try_migration(self, flow: Flow, now: float) -> None:
        """Start a requested move once SAL-MIG-3 allows it."""
        target = flow.pending_move
        if target is None or flow.local_flow_id not in self.flows:
            return
        if flow.state is State.REQUEST:  # nothing to move: continue from the new endpoint
            flow.local, flow.pending_move = target, None
            return
        if flow.state not in MIGRATABLE or flow.substate is not SubState.INITIAL:
            if flow.state not in (State.RESPOND, *MIGRATABLE):
                flow.pending_move = None  # both directions ended: nothing to move
            return
        outstanding = flow.outstanding
        if outstanding is not None and not outstanding.flags & FIN:
            return  # the window of one (SAL-CTRL-4)
        flow.pending_move = None
        if target == flow.local:
            return
        flow.local = target
        flow.substate = SubState.RSYN_SENT
        if flow.stream is not None:
            flow.stream.freeze()
        if outstanding is None:  # SAL-MIG-4
            self._send_new(flow, RSYN, now)
        else:  # SAL-MIG-5: the FIN becomes an RSYN-FIN, sent at once from the new endpoint
            outstanding.flags |= RSYN
            self._send_control(flow, outstanding.flags, outstanding.verno)
        self.activity["migrations"] += 1

    # --- sending control packets ---------------------------------------------------------

    def _send_new(self, flow: Flow, flags: int, now: float) -> None:
        """A new sequence-consuming packet (SAL-CTRL-1, SAL-CTRL-14)."""
        verno = flow.snd_nxt
        flow.snd_nxt = seq_add(verno, 1)
        flow.outstanding = Outstanding(flags, verno, now)
        self._send_control(flow, flags, verno)
        self._arm_retransmit(flow, now)

    def _send_control(self, flow: Flow, flags: int, verno: int) -> None:
        """Send a control packet of the flow with the current ackno (SAL-CTRL-2, -15)."""
        ackno = flow.rcv_nxt
        packet = SalPacket(
            flow.local_flow_id,
            flow.peer_flow_id,
            flow.transport,
            control=Control(CONTROL_FLAGS[flags], verno, ackno, flow.own_nonce),
            # a SYN-ACK echoes the SYN's serviceID (SAL-EXT-23)
            destination_service=flow.local_service if flags & SYN else None,
        )
        destination = flow.destination
        assert destination is not None
        self._emit(encode_sal(packet), flow.local, destination)

    def _send_ack(self, flow: Flow) -> bytes:
        """A pure ACK: verno snd.nxt, ackno rcv.nxt (SAL-CTRL-3); returns its octets."""
        packet = SalPacket(
            flow.local_flow_id,
            flow.peer_flow_id,
            flow.transport,
            control=Control(CONTROL_FLAGS[ACK], flow.snd_nxt, flow.rcv_nxt, flow.own_nonce),
        )
        data = encode_sal(packet)
        destination = flow.destination
        assert destination is not None
        self._emit(data, flow.local, destination)
        return data

    def _send_syn(self, flow: Flow, now: float) -> bool:
        """Build the SYN and act on the lookup (Section 5.8.1 steps 3-4); False if none."""
        assert flow.peer_service is not None
        packet = SalPacket(
            flow.local_flow_id,
            0,
            flow.transport,
            control=Control(CONTROL_FLAGS[SYN], flow.iss, 0, flow.own_nonce),
            destination_service=flow.peer_service,
            source_service=flow.local_service or None,  # SAL-EXT-22
        )
        encoded = encode_sal(packet)
        rule = self._syn_lookup(flow, packet, len(encoded), now)
        if rule is None:
            return False
        try:
            self._act(rule, packet, encoded, now, flow=flow, local=None, received=None)
        except RemoteProtocolError as drop:  # a DROP rule, or a full DELAY queue
            self.drops[drop.error_code] += 1
        return True

    def _syn_lookup(self, flow: Flow, packet: SalPacket, octets: int, now: float) -> Rule | None:
        """The rule for the flow's own SYN: looked up afresh for every transmission
        (SAL-CONN-3), away from the instances earlier ones went to (SAL-CONN-21)."""
        rule = self._lookup(packet, octets, LookupMode.ALL_RULES, now, tried=flow.syn_targets)
        if rule is not None and rule.type is RuleType.FORWARD and isinstance(rule.target, Endpoint):
            flow.syn_targets.append(rule.target)
        return rule

    def _send_abort_rst(self, flow: Flow) -> None:
        """The RST that aborts a flow the host has (Section 5.11.3)."""
        destination = flow.destination
        if destination is None:
            return
        packet = SalPacket(
            flow.local_flow_id,
            flow.peer_flow_id,
            TransportProtocol.NONE,
            control=Control(CONTROL_FLAGS[RST | ACK], flow.snd_nxt, flow.rcv_nxt, flow.own_nonce),
        )
        self.activity["rst_sent"] += 1
        self._emit(encode_sal(packet), flow.local, destination)

    def _answer_with_rst(
        self, packet: SalPacket, destination: Endpoint, local: Endpoint, now: float
    ) -> None:
        """The RST that answers a packet of no flow (Section 5.11.3), rate-limited (RST-3)."""
        destination = canonical_endpoint(destination)
        if not self._rst_allowed(destination, now):
            self.activity["rst_suppressed"] += 1
            return
        control = packet.control
        if control is None:
            flags, verno, ackno, nonce = RST, 0, 0, _NO_NONCE
        elif control.flags & ACK:
            flags, verno, ackno, nonce = RST, control.ackno, 0, control.nonce
        else:
            flags, verno, ackno, nonce = RST | ACK, 0, seq_add(control.verno, 1), control.nonce
        answer = SalPacket(
            packet.destination_flow_id,
            packet.source_flow_id,
            TransportProtocol.NONE,
            control=Control(CONTROL_FLAGS[flags], verno, ackno, nonce),
        )
        self.activity["rst_sent"] += 1
        self._emit(encode_sal(answer), local, destination)

    def _rst_allowed(self, destination: Endpoint, now: float) -> bool:
        second = float(int(now))
        start, count = self._rst_window
        if start != second:
            start, count = second, 0
        if count >= RST_TOTAL_PER_SECOND:
            return False
        if len(self._rst_by_address) > _RST_TABLE_LIMIT:
            self._rst_by_address.clear()
        mark, sent = self._rst_by_address.get(destination.address, (second, 0))
        if mark != second:
            mark, sent = second, 0
        if sent >= RST_PER_ADDRESS_PER_SECOND:
            return False
        self._rst_window = (start, count + 1)
        self._rst_by_address[destination.address] = (mark, sent + 1)
        return True

    def _emit(self, data: bytes, source: Endpoint, destination: Endpoint) -> None:
        self._out.append(Outgoing(data, source, destination))

    # --- DELAY (Section 5.6.3) -------------------------------------------------------------

    def _park(
        self,
        packet: SalPacket,
        octets: int,
        now: float,
        flow: Flow | None,
        received: tuple[Endpoint, Endpoint] | None,
    ) -> None:
        if self._parked_count >= MAX_DELAY_QUEUE:  # SAL-TBL-9
            raise RemoteProtocolError("the DELAY queue is full", ErrorCode.QUEUE_FULL)
        service_id = packet.destination_service
        assert service_id is not None
        flow_id = flow.local_flow_id if flow else None
        self._parked.setdefault(service_id, []).append(
            _Parked(packet, octets, now, flow_id, received)
        )
        self._parked_count += 1
        if service_id not in self._resolving:  # SAL-TBL-10
            self._resolving.add(service_id)
            self._events.append(ResolveNeeded(service_id))

    def _release(self, item: _Parked, now: float) -> None:
        flow = self.flows.get(item.flow_id) if item.flow_id is not None else None
        if item.flow_id is not None and (flow is None or flow.state is not State.REQUEST):
            return  # the flow moved on (answered or gone) while its SYN waited
        try:
            if item.received is not None:  # a packet received, not one of ours
                rule = self._lookup(item.packet, item.octets, self._mode(False), now)
            elif flow is not None:  # the flow's own SYN
                rule = self._syn_lookup(flow, item.packet, item.octets, now)
            else:
                rule = self._lookup(item.packet, item.octets, LookupMode.ALL_RULES, now)
            if rule is None or rule.type is RuleType.DELAY:  # SAL-TBL-11
                raise RemoteProtocolError("no rule after resolution", ErrorCode.NO_SERVICE)
            self._act(rule, item.packet, None, now, flow=flow, local=None, received=item.received)
        except RemoteProtocolError as drop:
            self.drops[drop.error_code] += 1

    def _expire_parked(self, service_id: bytes, now: float) -> None:
        parked = self._parked[service_id]
        waiting = [item for item in parked if now < item.parked_at + DELAY_TIMEOUT]
        expired = len(parked) - len(waiting)
        if not expired:
            return
        self.drops[ErrorCode.NO_SERVICE] += expired  # SAL-TBL-13
        self._parked_count -= expired
        if waiting:
            self._parked[service_id] = waiting
        else:
            del self._parked[service_id]

    # --- helpers -----------------------------------------------------------------------

    def _app_flow(self, flow_id: int) -> Flow:
        flow = self.flows.get(flow_id)
        if flow is None or flow_id not in self._visible:
            raise LocalProtocolError(f"no open flow {flow_id:#010x}")
        return flow

    def _new_flow_id(self) -> int:
        """A random flowID, not zero, not in use, not retired within 120 s (SAL-FLOW-1..3)."""
        while True:
            candidate = 1 + self.rng.randrange(_FLOW_ID_SPACE - 1)
            if candidate not in self.flows and candidate not in self._retired:
                return candidate

    def _forget_retired(self, now: float) -> None:
        while self._retired_order and self._retired_order[0][0] + FLOW_ID_REUSE_DELAY <= now:
            when, flow_id = self._retired_order.popleft()
            if self._retired.get(flow_id) == when:
                del self._retired[flow_id]

    def _interface_for(self, target: Endpoint, preferred: Endpoint | None) -> Endpoint:
        """The local endpoint to reach ``target`` from: same address family."""
        version = target.address.version
        if preferred is not None and preferred.address.version == version:
            return preferred
        for interface in self.interfaces:
            if interface.address.version == version:
                return interface
        raise RemoteProtocolError(
            f"no IPv{version} interface to reach {target}", ErrorCode.NO_SERVICE
        )

    def _check_size(self, encoded: bytes) -> None:
        if len(encoded) > MAX_UDP_PAYLOAD:  # SAL-UDP-7
            raise LocalProtocolError(f"a {len(encoded)}-octet packet is too long")

    def _registrations(self, listening: _Listening) -> list[Registration]:
        if not listening.register:
            return []
        return [
            self._registration(listening, endpoint)
            for endpoint in self.interfaces
            if _registrable(endpoint)
        ]

    def _registration(self, listening: _Listening, endpoint: Endpoint) -> Registration:
        return Registration(listening.prefix.value, endpoint, listening.priority, listening.weight)


def _registrable(endpoint: Endpoint) -> bool:
    return not endpoint.address.is_unspecified and endpoint.port != 0


def drain(host: Host) -> list[HostEvent]:
    """Every pending event of ``host``, oldest first."""
    events: list[HostEvent] = []
    while (event := host.next_event()) is not None:
        events.append(event)
    return events


__all__: Sequence[str] = [
    "Accepted",
    "CloseReason",
    "Closed",
    "Connected",
    "DatagramReceived",
    "EndOfData",
    "Host",
    "HostConfig",
    "HostEvent",
    "MessageReceived",
    "Migrated",
    "Outgoing",
    "Readable",
    "RegisterNeeded",
    "ResolveNeeded",
    "Unreachable",
    "UnregisterNeeded",
    "Writable",
    "drain",
]
