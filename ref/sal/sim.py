"""An in-memory network for SAL hosts with a virtual clock (deterministic tests).

Theory of operation.  :class:`SalNetwork` carries the :class:`~ref.sal.host.Host`
cores' datagrams as bytes between their interfaces, with a seeded latency,
loss, duplication and reordering, and fires each host's timer at its
deadline.  Every event a host raises is kept in :attr:`SalNetwork.events`
(per host) for the test to read; resolution and registration requests are
answered from one :class:`~ref.sal.resolver.StaticResolver` after
``resolver_delay`` (or never, when the resolver is ``None``).  ``tap`` sees
every datagram before it travels and may drop it (return False): the test's
attacker, or its packet capture.  Nothing here reads a clock or draws
randomness of its own: the generator is injected, as in the cores.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from ref.sal.host import (
    Host,
    HostConfig,
    HostEvent,
    Outgoing,
    RegisterNeeded,
    ResolveNeeded,
    UnregisterNeeded,
)
from ref.sal.resolver import StaticResolver
from ref.sal.table import canonical_endpoint
from ref.wire.sal import Endpoint

Tap = Callable[[Outgoing, float], bool]


class SimRandom(Protocol):
    def random(self) -> float: ...

    def randrange(self, stop: int, /) -> int: ...

    def randbytes(self, n: int, /) -> bytes: ...


class SalNetwork:
    """SAL hosts on an in-memory network with virtual time."""

    def __init__(
        self,
        rng: SimRandom,
        *,
        start: float = 1_800_000_000.0,
        latency: float = 0.01,
        jitter: float = 0.0,
        loss: float = 0.0,
        duplicate: float = 0.0,
        resolver: StaticResolver | None = None,
        resolver_delay: float = 0.005,
    ) -> None:
        self.rng = rng
        self.now = start
        self.latency, self.jitter = latency, jitter
        self.loss, self.duplicate = loss, duplicate
        self.resolver = resolver
        self.resolver_delay = resolver_delay
        self.hosts: dict[Endpoint, Host] = {}
        self.events: dict[int, list[HostEvent]] = {}
        self.taps: list[Tap] = []
        #: Per host (by id), an application that takes events: True when it took one.
        self.applications: dict[int, Callable[[HostEvent, float], bool]] = {}
        self.down: set[Endpoint] = set()  # interfaces that neither send nor receive
        self.sent = 0
        self.delivered = 0
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._sequence = itertools.count()
        self._wake: dict[int, float] = {}

    # --- hosts ------------------------------------------------------------------------

    def add_host(self, interfaces: Iterable[Endpoint], config: HostConfig | None = None) -> Host:
        host = Host(interfaces, rng=self.rng, now=self.now, config=config)
        for endpoint in host.interfaces:
            self.hosts[endpoint] = host
        self.events[id(host)] = []
        return host

    def attach(self, host: Host, endpoint: Endpoint) -> None:
        """Give ``host`` a new interface (as after an address change)."""
        endpoint = canonical_endpoint(endpoint)
        self.hosts[endpoint] = host
        host.add_interface(endpoint, self.now)
        self.service(host)

    def events_of(self, host: Host) -> list[HostEvent]:
        return self.events[id(host)]

    def take(self, host: Host, kind: type[Any]) -> list[Any]:
        """Remove and return ``host``'s events of type ``kind``."""
        events = self.events[id(host)]
        taken = [event for event in events if isinstance(event, kind)]
        events[:] = [event for event in events if not isinstance(event, kind)]
        return taken

    # --- the clock --------------------------------------------------------------------

    def call_at(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._queue, (when, next(self._sequence), action))

    def run_until(self, until: float) -> None:
        while self._queue and self._queue[0][0] <= until:
            when, _, action = heapq.heappop(self._queue)
            self.now = max(self.now, when)
            action()
        self.now = max(self.now, until)

    def run_for(self, seconds: float) -> None:
        self.run_until(self.now + seconds)

    def run_while(self, condition: Callable[[], bool], limit: float = 600.0) -> None:
        """Run until ``condition()`` is false or ``limit`` virtual seconds pass."""
        deadline = self.now + limit
        while condition() and self._queue and self._queue[0][0] <= deadline:
            when, _, action = heapq.heappop(self._queue)
            self.now = max(self.now, when)
            action()

    # --- plumbing ---------------------------------------------------------------------

    def service(self, host: Host) -> None:
        """Carry out what ``host`` produced: datagrams, events, its next timer."""
        while True:  # an application's handler may send more, or raise more events
            for outgoing in host.datagrams_to_send():
                self._send(outgoing)
            event = host.next_event()
            if event is None:
                break
            self._on_event(host, event)
        deadline = host.get_timer()
        if deadline is not None and self._wake.get(id(host), float("inf")) > deadline:
            self._wake[id(host)] = deadline
            self.call_at(max(deadline, self.now), lambda: self._fire(host, deadline))

    def _fire(self, host: Host, deadline: float) -> None:
        if self._wake.get(id(host)) == deadline:
            del self._wake[id(host)]
        host.handle_timer(self.now)
        self.service(host)

    def _send(self, outgoing: Outgoing) -> None:
        self.sent += 1
        if outgoing.source in self.down:
            return
        if not all(tap(outgoing, self.now) for tap in self.taps):
            return
        copies = 1
        if self.loss and self.rng.random() < self.loss:
            copies = 0
        elif self.duplicate and self.rng.random() < self.duplicate:
            copies = 2
        for _ in range(copies):
            delay = self.latency + (self.rng.random() * self.jitter if self.jitter else 0.0)
            self.call_at(self.now + delay, lambda: self._deliver(outgoing))

    def _deliver(self, outgoing: Outgoing) -> None:
        destination = canonical_endpoint(outgoing.destination)
        host = self.hosts.get(destination)
        if host is None or destination in self.down or destination not in host.interfaces:
            return
        self.delivered += 1
        host.receive_datagram(
            outgoing.data, source=outgoing.source, local=destination, now=self.now
        )
        self.service(host)

    def _on_event(self, host: Host, event: HostEvent) -> None:
        handler = self.applications.get(id(host))
        if handler is not None and handler(event, self.now):
            return
        resolver = self.resolver
        if isinstance(event, ResolveNeeded):
            if resolver is not None:
                service_id = event.service_id

                def answer() -> None:
                    host.resolved(service_id, resolver.record(service_id), self.now)
                    self.service(host)

                self.call_at(self.now + self.resolver_delay, answer)
            return
        if isinstance(event, RegisterNeeded):
            if resolver is not None:
                resolver.add(event.registration)
            return
        if isinstance(event, UnregisterNeeded):
            if resolver is not None:
                resolver.remove(event.registration)
            return
        self.events[id(host)].append(event)
