"""The flow state machine of draft Section 5.15, as data, and the flow entry of 5.7.

Theory of operation.  A flow's life is two machines: its state (REQUEST,
RESPOND, CONNECTED, the closing states) and its migration sub-state
(INITIAL, RSYN_SENT, RSYN_RECV, RSYN_SENT_RECV).  :data:`TRANSITIONS` and
:data:`MIGRATION_TRANSITIONS` are the draft's two normative tables, with the
draft's own words for states and events, so that a test compares them with
the draft row by row.  The host (``ref.sal.host``) classifies every input
into one of these events and asks :func:`next_state`; a pair missing from
the table is the protocol error of SAL-CONN-20 (a received packet is dropped,
counted UNEXPECTED_CONTROL) or a caller's mistake (an application request).

The actions of each row are carried out by the host in the order of Section
5.9.2 (acknowledgment, then RSYN, then FIN), so a packet that carries two
events, such as a FIN with the ACK of the host's own FIN in FINWAIT1, takes
the row the draft gives for the pair.

:class:`Flow` is the flow table entry (Section 5.7).  Sequence arithmetic is
modulo 2^32 (RFC 1982): :func:`seq_add` and :func:`seq_diff`.
"""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import TYPE_CHECKING

from ref.sal.rto import RtoEstimator
from ref.wire.sal import Endpoint, TransportProtocol

if TYPE_CHECKING:
    from ref.sal.stream import Stream

SEQ_MODULUS = 1 << 32
HALF_SPACE = 1 << 31


def seq_add(a: int, b: int) -> int:
    return (a + b) % SEQ_MODULUS


def seq_diff(a: int, b: int) -> int:
    """(a - b) mod 2^32: the distance from b forward to a."""
    return (a - b) % SEQ_MODULUS


class _Singletons(Enum):
    """An Enum whose members hash by identity, in C.

    Members are singletons compared by identity; Enum's own ``__hash__`` runs
    in Python, on every table lookup of every packet.
    """

    __hash__ = object.__hash__


class State(_Singletons):
    """Connection states (Section 5.15)."""

    CLOSED = "CLOSED"
    LISTEN = "LISTEN"
    REQUEST = "REQUEST"
    RESPOND = "RESPOND"
    CONNECTED = "CONNECTED"
    FINWAIT1 = "FINWAIT1"
    FINWAIT2 = "FINWAIT2"
    CLOSING = "CLOSING"
    TIMEWAIT = "TIMEWAIT"
    CLOSEWAIT = "CLOSEWAIT"
    LASTACK = "LASTACK"


class SubState(_Singletons):
    """Migration sub-states (Section 5.10.1)."""

    INITIAL = "INITIAL"
    RSYN_SENT = "RSYN_SENT"
    RSYN_RECV = "RSYN_RECV"
    RSYN_SENT_RECV = "RSYN_SENT_RECV"


class Event(_Singletons):
    """The events of the state table, in the draft's words (Section 5.15)."""

    APP_CONNECT = "app connect"
    APP_CONNECT_FAILS = "app connect, lookup fails"
    APP_LISTEN = "app listen"
    APP_CLOSE = "app close"
    APP_ABORT = "app abort"
    RCV_ANY_NO_FLOW = "rcv any (no flow)"
    RCV_SYN_NO_DEMUX = "rcv SYN, no DEMUX rule, end host"
    RCV_SYN_NO_RULE_ROUTER = "rcv SYN, no rule, service router"
    RCV_SYN_NEW = "rcv SYN, new"
    RCV_SYN_DUP = "rcv SYN, dup of half-open flow"
    RCV_SYN_QUEUE_FULL = "rcv SYN, request queue full"
    RCV_SYNACK_VALID = "rcv SYN-ACK valid"
    RCV_SYNACK_INVALID = "rcv SYN-ACK invalid, or any other control packet but RST"
    RCV_SYNACK_DUP = "rcv SYN-ACK dup"
    RCV_RST_VALID = "rcv RST valid"
    RCV_DATA = "rcv data"
    RCV_ACK_VALID = "rcv ACK valid"
    RCV_ACK_INVALID = "rcv ACK invalid"
    RCV_FIN_HANDSHAKE = "rcv FIN with valid handshake ACK"
    RCV_FIN = "rcv FIN"
    RCV_FIN_NOT_ACK_OF_FIN = "rcv FIN, not ACK of FIN"
    RCV_FIN_WITH_ACK_OF_FIN = "rcv FIN with ACK of FIN"
    RCV_FIN_DUP = "rcv FIN dup"
    RCV_ACK_OF_FIN = "rcv ACK of FIN"
    RTO = "RTO"
    RTO_LIMIT = "RTO limit"
    REQUEST_TIMEOUT = "timeout (3 s)"
    STATE_TIMEOUT = "timeout (60 s)"


S, E = State, Event

#: (state, event) -> next state: the state table of Section 5.15, row by row.
TRANSITIONS: dict[tuple[State, Event], State] = {
    (S.CLOSED, E.APP_CONNECT): S.REQUEST,
    (S.CLOSED, E.APP_CONNECT_FAILS): S.CLOSED,
    (S.CLOSED, E.APP_LISTEN): S.LISTEN,
    (S.CLOSED, E.RCV_ANY_NO_FLOW): S.CLOSED,
    (S.CLOSED, E.RCV_SYN_NO_DEMUX): S.CLOSED,
    (S.CLOSED, E.RCV_SYN_NO_RULE_ROUTER): S.CLOSED,
    (S.LISTEN, E.RCV_SYN_NEW): S.LISTEN,
    (S.LISTEN, E.RCV_SYN_DUP): S.LISTEN,
    (S.LISTEN, E.RCV_SYN_QUEUE_FULL): S.LISTEN,
    (S.LISTEN, E.APP_CLOSE): S.CLOSED,
    (S.REQUEST, E.RCV_SYNACK_VALID): S.CONNECTED,
    (S.REQUEST, E.RCV_SYNACK_INVALID): S.REQUEST,
    (S.REQUEST, E.RCV_RST_VALID): S.CLOSED,
    (S.REQUEST, E.RCV_DATA): S.REQUEST,
    (S.REQUEST, E.RTO): S.REQUEST,
    (S.REQUEST, E.RTO_LIMIT): S.CLOSED,
    (S.REQUEST, E.APP_CLOSE): S.CLOSED,
    (S.REQUEST, E.APP_ABORT): S.CLOSED,
    (S.RESPOND, E.RCV_ACK_VALID): S.CONNECTED,
    (S.RESPOND, E.RCV_FIN_HANDSHAKE): S.CLOSEWAIT,
    (S.RESPOND, E.RCV_ACK_INVALID): S.RESPOND,
    (S.RESPOND, E.RCV_DATA): S.RESPOND,
    (S.RESPOND, E.RCV_RST_VALID): S.CLOSED,
    (S.RESPOND, E.RTO): S.RESPOND,
    (S.RESPOND, E.REQUEST_TIMEOUT): S.CLOSED,
    (S.CONNECTED, E.RCV_DATA): S.CONNECTED,
    (S.CONNECTED, E.RCV_SYNACK_DUP): S.CONNECTED,
    (S.CONNECTED, E.RCV_FIN): S.CLOSEWAIT,
    (S.CONNECTED, E.APP_CLOSE): S.FINWAIT1,
    (S.CONNECTED, E.RCV_RST_VALID): S.CLOSED,
    (S.CONNECTED, E.RTO): S.CONNECTED,
    (S.CONNECTED, E.RTO_LIMIT): S.CLOSED,
    (S.CONNECTED, E.APP_ABORT): S.CLOSED,
    (S.FINWAIT1, E.RCV_ACK_OF_FIN): S.FINWAIT2,
    (S.FINWAIT1, E.RCV_FIN_NOT_ACK_OF_FIN): S.CLOSING,
    (S.FINWAIT1, E.RCV_FIN_WITH_ACK_OF_FIN): S.TIMEWAIT,
    (S.FINWAIT1, E.RCV_DATA): S.FINWAIT1,
    (S.FINWAIT1, E.RCV_RST_VALID): S.CLOSED,
    (S.FINWAIT1, E.RTO): S.FINWAIT1,
    (S.FINWAIT1, E.RTO_LIMIT): S.CLOSED,
    (S.FINWAIT1, E.APP_ABORT): S.CLOSED,
    (S.FINWAIT2, E.RCV_FIN): S.TIMEWAIT,
    (S.FINWAIT2, E.RCV_DATA): S.FINWAIT2,
    (S.FINWAIT2, E.STATE_TIMEOUT): S.CLOSED,
    (S.FINWAIT2, E.RCV_RST_VALID): S.CLOSED,
    (S.FINWAIT2, E.RTO): S.FINWAIT2,
    (S.FINWAIT2, E.RTO_LIMIT): S.CLOSED,
    (S.FINWAIT2, E.APP_ABORT): S.CLOSED,
    (S.CLOSING, E.RCV_ACK_OF_FIN): S.TIMEWAIT,
    (S.CLOSING, E.RCV_DATA): S.CLOSING,
    (S.CLOSING, E.RCV_RST_VALID): S.CLOSED,
    (S.CLOSING, E.RTO): S.CLOSING,
    (S.CLOSING, E.RTO_LIMIT): S.CLOSED,
    (S.CLOSING, E.APP_ABORT): S.CLOSED,
    (S.TIMEWAIT, E.RCV_FIN_DUP): S.TIMEWAIT,
    (S.TIMEWAIT, E.RCV_DATA): S.TIMEWAIT,
    (S.TIMEWAIT, E.STATE_TIMEOUT): S.CLOSED,
    (S.TIMEWAIT, E.RCV_RST_VALID): S.CLOSED,
    (S.TIMEWAIT, E.APP_ABORT): S.CLOSED,
    (S.CLOSEWAIT, E.APP_CLOSE): S.LASTACK,
    (S.CLOSEWAIT, E.RCV_DATA): S.CLOSEWAIT,
    (S.CLOSEWAIT, E.RCV_RST_VALID): S.CLOSED,
    (S.CLOSEWAIT, E.RTO): S.CLOSEWAIT,
    (S.CLOSEWAIT, E.RTO_LIMIT): S.CLOSED,
    (S.CLOSEWAIT, E.APP_ABORT): S.CLOSED,
    (S.LASTACK, E.RCV_ACK_OF_FIN): S.CLOSED,
    (S.LASTACK, E.RCV_DATA): S.LASTACK,
    (S.LASTACK, E.RCV_RST_VALID): S.CLOSED,
    (S.LASTACK, E.RTO): S.LASTACK,
    (S.LASTACK, E.RTO_LIMIT): S.CLOSED,
    (S.LASTACK, E.APP_ABORT): S.CLOSED,
}


class MigrationEvent(Enum):
    """The events of the migration table, in the draft's words (Section 5.15)."""

    APP_MIGRATE = "app migrate, nothing outstanding"
    APP_MIGRATE_FIN = "app migrate, FIN outstanding"
    RCV_MOVE = "rcv move"
    RCV_ANSWER = "rcv answer"
    RCV_ACK_OF_OWN_RSYN = "rcv ACK of own RSYN (for example an answer)"
    RCV_MOVE_WITHOUT_ACK = "rcv move without ACK flag"
    RCV_MOVE_WITH_ACK = "rcv move with ACK of own RSYN"
    RCV_RSYN_BAD_ACK = "rcv fresh RSYN with ACK not of own RSYN"
    RCV_ACK_OF_RSYN_ACK = "rcv ACK of own RSYN-ACK"
    RCV_MOVE_AGAIN = "rcv move (the peer moved again)"
    RCV_ACK_OF_MERGED = "rcv ACK of own merged packet"
    RTO_LIMIT = "RTO limit"


M, ME = SubState, MigrationEvent

#: (sub-state, event) -> next sub-state: the migration table of Section 5.15.
#: The RTO limit ends the flow in every sub-state, which the draft writes as "any".
MIGRATION_TRANSITIONS: dict[tuple[SubState, MigrationEvent], SubState | None] = {
    (M.INITIAL, ME.APP_MIGRATE): M.RSYN_SENT,
    (M.INITIAL, ME.APP_MIGRATE_FIN): M.RSYN_SENT,
    (M.INITIAL, ME.RCV_MOVE): M.RSYN_RECV,
    (M.INITIAL, ME.RCV_ANSWER): M.INITIAL,
    (M.RSYN_SENT, ME.RCV_ACK_OF_OWN_RSYN): M.INITIAL,
    (M.RSYN_SENT, ME.RCV_MOVE_WITHOUT_ACK): M.RSYN_SENT_RECV,
    (M.RSYN_SENT, ME.RCV_MOVE_WITH_ACK): M.RSYN_RECV,
    (M.RSYN_SENT, ME.RCV_RSYN_BAD_ACK): M.RSYN_SENT,
    (M.RSYN_RECV, ME.RCV_ACK_OF_RSYN_ACK): M.INITIAL,
    (M.RSYN_RECV, ME.RCV_MOVE_AGAIN): M.RSYN_RECV,
    (M.RSYN_SENT_RECV, ME.RCV_ACK_OF_MERGED): M.INITIAL,
    (M.RSYN_SENT_RECV, ME.RCV_MOVE_AGAIN): M.RSYN_SENT_RECV,
    **{(sub, ME.RTO_LIMIT): None for sub in SubState},
}


def next_state(state: State, event: Event) -> State | None:
    """The state after ``event`` in ``state``; None when the table has no such row."""
    return TRANSITIONS.get((state, event))


#: States in which a migration may start (SAL-MIG-3).
MIGRATABLE = frozenset({S.CONNECTED, S.FINWAIT1, S.FINWAIT2, S.CLOSEWAIT})
#: States in which a fresh RSYN is processed (SAL-MIG-7).
RSYN_ACCEPTING = frozenset({S.CONNECTED, S.FINWAIT1, S.FINWAIT2, S.CLOSING, S.CLOSEWAIT, S.LASTACK})
#: States that pass data packets to the transport (SAL-FLOW-4).
DATA_STATES = frozenset(
    {S.CONNECTED, S.FINWAIT1, S.FINWAIT2, S.CLOSING, S.TIMEWAIT, S.CLOSEWAIT, S.LASTACK}
)
#: States in which the transport may send (SAL-FLOW-5, and 5.15: nothing new after both FINs).
SENDING_STATES = frozenset({S.CONNECTED, S.FINWAIT1, S.FINWAIT2, S.CLOSEWAIT})


@dataclasses.dataclass(eq=False)
class Outstanding:
    """The flow's one unacknowledged sequence-consuming packet (Section 5.9.1)."""

    flags: int  # ControlFlags bits
    verno: int
    sent_at: float
    retransmitted: bool = False  # Karn's rule (SAL-CTRL-13)
    retransmissions: int = 0  # towards MAX_CONTROL_RETRANSMITS (SAL-CTRL-15)


@dataclasses.dataclass(eq=False)
class Flow:
    """One flow table entry (Section 5.7)."""

    local_flow_id: int
    transport: TransportProtocol
    state: State
    local: Endpoint
    own_nonce: bytes
    iss: int
    local_service: bytes
    peer: Endpoint | None = None
    peer_flow_id: int = 0
    peer_nonce: bytes | None = None
    peer_service: bytes | None = None
    candidate: Endpoint | None = None
    substate: SubState = SubState.INITIAL
    # control channel (Section 5.9)
    snd_una: int = 0
    snd_nxt: int = 0
    irs: int = 0
    rcv_nxt: int = 0
    rcv_rsyn: bool = False
    outstanding: Outstanding | None = None
    fin_pending: bool = False  # the application closed; the FIN waits (SAL-CTRL-4)
    close_requested: bool = False  # the application closed; the stream is finishing
    rto: RtoEstimator = dataclasses.field(default_factory=RtoEstimator)
    retransmit_at: float | None = None
    # state timers: request timeout, FIN-WAIT-2 timeout, TIME-WAIT
    state_deadline: float | None = None
    # server side: what created it (SAL-CONN-6), and the listener
    listener: int | None = None
    client_key: tuple[Endpoint, int, bytes] | None = None
    handshake_ack: bytes | None = None  # the client's ACK, resent octet for octet (SAL-CONN-15)
    stream: Stream | None = None
    # client side: where FORWARD rules sent this flow's SYN so far (SAL-CONN-21)
    syn_targets: list[Endpoint] = dataclasses.field(default_factory=list)
    datagrams: list[bytes] = dataclasses.field(default_factory=list)  # held while frozen
    reported_end: bool = False
    reported_closed: bool = False
    notified_readable: int = 0
    write_blocked: bool = False
    pending_move: Endpoint | None = None  # a move waiting for SAL-MIG-3's conditions
    last_challenge: float | None = None
    created_at: float = 0.0

    @property
    def destination(self) -> Endpoint | None:
        """Where control packets go: the candidate endpoint during a move (SAL-MIG-2)."""
        return self.candidate or self.peer

    @property
    def frozen(self) -> bool:
        """The transport sends nothing while a migration runs (SAL-MIG-1)."""
        return self.substate is not SubState.INITIAL
