"""The test services of a conformance target (draft Appendix C.4), on a sans-IO host.

A SAL host that a conformance harness tests over one UDP endpoint must give
the harness something to talk to.  :class:`ConformanceServices` binds the four
services of the conformance block on a :class:`~ref.sal.host.Host` and runs
them from the host's events:

- echo stream (``ECHO_STREAM_SERVICE_ID``): a stream listener that sends back
  every octet it receives, in order, and closes its direction once the peer
  has closed its own and everything has been echoed;
- echo datagram (``ECHO_DATAGRAM_SERVICE_ID``): a datagram listener that
  sends every message of a connected flow back on the flow and answers every
  unconnected datagram with the same payload (SAL-DGRAM-7);
- hold stream (``HOLD_STREAM_SERVICE_ID``): a stream listener that accepts
  and then neither reads nor sends nor closes, so that its receive window
  fills;
- initiator (``INITIATOR_SERVICE_ID``): an unconnected-datagram service that
  makes the host open a flow to a serviceID the harness names, so that the
  harness can play the server.  The request is ``serviceID (32) | transport
  (1) | mode (1) | data``: mode 0 routes the serviceID to the requester's
  endpoint with a FORWARD rule, mode 1 resolves it through the host's
  resolver.  The flow sends ``data``, then echoes as the echo services do;
  when it ends, the host answers the request with one datagram that names
  the outcome (:class:`~ref.sal.host.CloseReason` value, or ``bad request``).

The services are deliberately simple: everything a test observes comes from
the SAL and the transports underneath.
"""

from __future__ import annotations

import dataclasses
from typing import Final

from ref.sal.host import (
    Accepted,
    Closed,
    CloseReason,
    Connected,
    DatagramReceived,
    EndOfData,
    Host,
    HostEvent,
    MessageReceived,
    Readable,
    Unreachable,
    Writable,
)
from ref.sal.table import Prefix, Rule
from ref.wire.constants import (
    ECHO_DATAGRAM_SERVICE_ID,
    ECHO_STREAM_SERVICE_ID,
    HOLD_STREAM_SERVICE_ID,
    INITIATOR_SERVICE_ID,
    SERVICE_ID_LENGTH,
)
from ref.wire.errors import LocalProtocolError
from ref.wire.sal import TransportProtocol

__all__ = ["INITIATOR_ROUTE_LIFETIME", "ConformanceServices"]

#: Seconds a mode-0 route of the initiator lives (a hard timeout, SAL-TBL-3).
INITIATOR_ROUTE_LIFETIME: Final = 300.0
_REQUEST_HEAD = SERVICE_ID_LENGTH + 2
_BAD_REQUEST = b"bad request"


@dataclasses.dataclass(eq=False)
class _Echo:
    """A flow that echoes: what is read and not yet written back, and whether to close."""

    pending: bytearray = dataclasses.field(default_factory=bytearray)
    ending: bool = False  # the peer closed: close once ``pending`` is written
    request: DatagramReceived | None = None  # the initiator request it answers


class ConformanceServices:
    """The Appendix C.4 services on ``host``; feed every host event to :meth:`handle`."""

    def __init__(self, host: Host, now: float) -> None:
        self.host = host
        self._echo_stream = host.listen(
            ECHO_STREAM_SERVICE_ID, TransportProtocol.STREAM, now, register=False
        )
        self._echo_datagram = host.listen(
            ECHO_DATAGRAM_SERVICE_ID, TransportProtocol.DATAGRAM, now, register=False
        )
        self._hold = host.listen(
            HOLD_STREAM_SERVICE_ID, TransportProtocol.STREAM, now, register=False
        )
        self._initiator = host.listen(
            INITIATOR_SERVICE_ID, TransportProtocol.DATAGRAM, now, register=False
        )
        #: The serviceIDs bound, each at prefix length 256: what the host takes.
        self.service_ids = frozenset(
            (
                ECHO_STREAM_SERVICE_ID,
                ECHO_DATAGRAM_SERVICE_ID,
                HOLD_STREAM_SERVICE_ID,
                INITIATOR_SERVICE_ID,
            )
        )
        self._echoing: dict[int, _Echo] = {}
        self._connecting: dict[int, tuple[bytes, _Echo]] = {}  # flowID -> first data

    def handle(self, event: HostEvent, now: float) -> bool:
        """Act on ``event``; False if it concerns none of the test services."""
        host = self.host
        if isinstance(event, Accepted):
            if event.listener in (self._echo_stream, self._echo_datagram):
                self._echoing[event.flow_id] = _Echo()
                self._pump(event.flow_id, now)
                return True
            return event.listener == self._hold
        if isinstance(event, DatagramReceived):
            if event.listener == self._echo_datagram:
                host.reply(event, event.data, now)
                return True
            if event.listener == self._initiator:
                self._initiate(event, now)
                return True
            return False
        if isinstance(event, Connected) and event.flow_id in self._connecting:
            data, echo = self._connecting.pop(event.flow_id)
            self._echoing[event.flow_id] = echo
            echo.pending += data
            self._flush(event.flow_id, echo, now)
            return True
        echoing = self._echoing.get(getattr(event, "flow_id", 0))
        if echoing is None:
            if isinstance(event, Closed) and event.flow_id in self._connecting:
                _, pending = self._connecting.pop(event.flow_id)
                self._answer(pending, event.reason, now)
                return True
            return False
        echo = echoing
        if isinstance(event, MessageReceived):
            host.send(event.flow_id, event.data, now)
        elif isinstance(event, (Readable, Writable)):
            self._pump(event.flow_id, now)
        elif isinstance(event, EndOfData):
            echo.ending = True
            self._pump(event.flow_id, now)
        elif isinstance(event, Closed):
            del self._echoing[event.flow_id]
            self._answer(echo, event.reason, now)
        return True

    # --- internals -----------------------------------------------------------------------

    def _pump(self, flow_id: int, now: float) -> None:
        """Read what arrived and write back as much as the send buffer takes."""
        echo = self._echoing[flow_id]
        if self.host.flow(flow_id).transport is TransportProtocol.STREAM:
            echo.pending += self.host.read(flow_id, now=now)
        self._flush(flow_id, echo, now)

    def _flush(self, flow_id: int, echo: _Echo, now: float) -> None:
        host = self.host
        flow = host.flow(flow_id)
        if echo.pending and flow.transport is TransportProtocol.STREAM:
            try:
                written = host.send(flow_id, bytes(echo.pending), now)
            except LocalProtocolError:  # closed for sending meanwhile
                written = len(echo.pending)
            del echo.pending[:written]
        elif echo.pending:  # an initiator's first message on a datagram flow
            host.send(flow_id, bytes(echo.pending), now)
            echo.pending.clear()
        if echo.ending and not echo.pending:
            host.close(flow_id, now)

    def _initiate(self, request: DatagramReceived, now: float) -> None:
        """Open the flow an initiator request asks for (Appendix C.4)."""
        host, payload = self.host, request.data
        echo = _Echo(request=request)
        if len(payload) < _REQUEST_HEAD or payload[SERVICE_ID_LENGTH + 1] not in (0, 1):
            host.reply(request, _BAD_REQUEST, now)
            return
        service_id = payload[:SERVICE_ID_LENGTH]
        try:
            transport = TransportProtocol(payload[SERVICE_ID_LENGTH])
        except ValueError:
            transport = TransportProtocol.NONE
        if transport not in (TransportProtocol.DATAGRAM, TransportProtocol.STREAM):
            host.reply(request, _BAD_REQUEST, now)
            return
        if payload[SERVICE_ID_LENGTH + 1] == 0:
            route = Rule.forward(
                Prefix(service_id, 256),
                request.sender,
                hard_timeout=INITIATOR_ROUTE_LIFETIME,
            )
            host.table.add(route, now)
        try:
            flow_id = host.connect(service_id, transport, now, local=request.local)
        except Unreachable:
            self._answer(echo, CloseReason.UNREACHABLE, now)
            return
        self._connecting[flow_id] = (payload[_REQUEST_HEAD:], echo)

    def _answer(self, echo: _Echo, reason: CloseReason, now: float) -> None:
        if echo.request is not None:
            self.host.reply(echo.request, reason.value.encode(), now)
