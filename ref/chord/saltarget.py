"""A ServalDHT node that is also a SAL host with the test services (Appendix C.4).

``serval-node --test-services`` runs this engine: one UDP endpoint on which
a conformance harness finds both a ring member and a SAL host serving the
test services, so that the SAL's connection, migration, close and transport
rules can be tested over the same socket as the DHT (feature ``sal``).

Every datagram goes to exactly one of the two cores:

- a packet addressed to a flow (non-zero Destination Flow ID), and a SYN or
  an unconnected datagram whose destination serviceID has a listener on the
  host, go to the :class:`~ref.sal.host.Host`;
- everything else (ServalDHT messages, packets forward mode relays, packets
  that do not parse) goes to the :class:`~ref.chord.node.Node`, as on a node
  without the test services, so that its drops are counted as before.

The STATUS report adds ``sal`` to the features and the host's drop counters
to the node's (Appendix C.2), so one read of the counters sees every drop.
The host resolves through the node it shares the endpoint with.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Any

from ref.chord.exchange import Completed, Found, NotRegistered
from ref.chord.node import Node
from ref.sal.host import Host, HostConfig, ResolveNeeded
from ref.sal.table import Rule
from ref.sal.testservices import ConformanceServices
from ref.wire.errors import RemoteProtocolError
from ref.wire.sal import ControlFlags, Endpoint, decode_sal
from ref.wire.status import flat_counters, nested_counters

__all__ = ["SalTarget"]


class SalTarget:
    """A node and a host on one endpoint, driven as one core by the asyncio adapter."""

    def __init__(self, node: Node, rng: Any, now: float) -> None:
        self.node = node
        self.host = Host([node.endpoint], rng=rng, now=now, config=HostConfig(register=False))
        self.services = ConformanceServices(self.host, now)
        self.host.table.add(Rule.delay(), now)  # the initiator's mode 1 resolves
        self._resolving: dict[int, bytes] = {}  # node operation handle -> serviceID
        self._events: deque[Any] = deque()
        node.amend_status = self._amend_status

    # --- the core interface the asyncio adapter drives ---------------------------------

    @property
    def counters(self) -> Counter[str]:
        return self.node.counters

    def receive_datagram(self, data: bytes, source: Endpoint, now: float) -> None:
        if self._for_host(data):
            self.host.receive_datagram(data, source=source, local=self.node.endpoint, now=now)
        else:
            self.node.receive_datagram(data, source, now)
        self._settle(now)

    def datagrams_to_send(self) -> list[tuple[bytes, Endpoint]]:
        out: list[tuple[bytes, Endpoint]] = []
        for data, destination in self.node.datagrams_to_send():
            assert isinstance(data, bytes)  # WireFraming
            out.append((data, destination))
        out.extend((o.data, o.destination) for o in self.host.datagrams_to_send())
        return out

    def next_event(self) -> Any:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        deadlines = [t for t in (self.node.get_timer(), self.host.get_timer()) if t is not None]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        self.node.handle_timer(now)
        self.host.handle_timer(now)
        self._settle(now)

    # --- internals -----------------------------------------------------------------------

    def _for_host(self, data: bytes) -> bool:
        """Whether the host takes ``data``: flow packets and packets for its listeners.

        A packet addressed to a flow is the host's whatever else it holds (the
        host validates it and counts its drops as the node would); only a
        packet without a flowID is decoded here, to read its serviceID.
        """
        if len(data) >= 8 and data[4:8] != bytes(4):
            return True
        try:
            packet = decode_sal(data)
        except RemoteProtocolError:
            return False  # the node drops and counts it as it always has
        if packet.destination_service is None:
            return False
        control = packet.control
        if control is not None and control.flags != ControlFlags.SYN:
            return False
        return packet.destination_service in self.services.service_ids

    def _settle(self, now: float) -> None:
        """Run the host's events through the services and resolutions until none is left."""
        busy = True
        while busy:
            busy = False
            while (event := self.node.next_event()) is not None:
                busy = True
                if isinstance(event, Completed) and event.handle in self._resolving:
                    service_id = self._resolving.pop(event.handle)
                    result = event.result
                    record = (
                        result.record
                        if isinstance(result, Found)
                        else result.tombstone  # None, or the deletion (SAL-TBL-21)
                        if isinstance(result, NotRegistered)
                        else None
                    )
                    error = "" if record is not None else getattr(event.result, "reason", "")
                    self.host.resolved(service_id, record, now, error=error)
                else:
                    self._events.append(event)
            while (host_event := self.host.next_event()) is not None:
                busy = True
                if isinstance(host_event, ResolveNeeded):
                    handle = self.node.resolve(host_event.service_id)
                    self._resolving[handle] = host_event.service_id
                else:
                    self.services.handle(host_event, now)

    def _amend_status(self, report: dict[str, Any]) -> None:
        report["features"] = [*report["features"], "sal"]
        counters = Counter(flat_counters(report.get("counters")) or {})
        for code, count in self.host.drops.items():
            counters[f"drop.{code.name}"] += count
        report["counters"] = nested_counters(counters.items())
