"""How the SAL reaches a resolution service: the resolver interface (Section 5.6.3).

Theory of operation.  The SAL core is sans-IO, so it never calls a resolver
itself.  When a packet selects a DELAY rule, the host core asks for the
serviceID to be resolved (a :class:`ref.sal.host.ResolveNeeded` event); when
an application binds or closes a listener the core asks for a registration
or its withdrawal (``RegisterNeeded`` and ``UnregisterNeeded``).  The
adapter that runs the core (``ref.sal.aio``) hands those requests to a
:class:`Resolver` and feeds the answers back with ``Host.resolved``.

``ref.sal`` never imports ``ref.chord``: the ServalDHT client implements
this interface in ``ref.chord``, and the entry points wire the two together.
:class:`StaticResolver` implements it from a table in memory, for tests and
for deployments with fixed service locations.

A resolution answers with a verified, live :class:`ServiceRecord` (the SAL
installs its FORWARD rules, SAL-TBL-19), with None when the serviceID is
not registered, or raises :class:`ResolverUnavailable` when the resolution
service cannot be reached.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ref.wire.constants import DEFAULT_RECORD_LIFETIME
from ref.wire.errors import ServalError
from ref.wire.ids import block_base, block_index
from ref.wire.records import (
    RecordEndpoint,
    RecordFlags,
    ServiceRecord,
    public_key_bytes,
    sign_record,
)
from ref.wire.sal import Endpoint


class ResolverUnavailable(ServalError):
    """The resolution service did not answer (as opposed to: the name is not registered)."""


@dataclasses.dataclass(frozen=True)
class Registration:
    """One endpoint at which this host serves a serviceID (Section 5.6.4)."""

    service_id: bytes
    endpoint: Endpoint
    priority: int = 0
    weight: int = 1


class Resolver(Protocol):
    """What the SAL needs of a resolution service."""

    async def resolve(self, service_id: bytes) -> ServiceRecord | None:
        """The verified live record of ``service_id``'s block; None if not registered."""
        ...

    async def register(self, registration: Registration) -> None:
        """Add ``registration`` to the record of its block (created if need be)."""
        ...

    async def unregister(self, registration: Registration) -> None:
        """Withdraw ``registration``; the record disappears with its last endpoint."""
        ...


def merge_registration(
    endpoints: Sequence[RecordEndpoint], registration: Registration, *, add: bool
) -> tuple[RecordEndpoint, ...]:
    """A block's record endpoints with ``registration`` added to or removed from them.

    A record lists each endpoint once per priority and weight, with a Service
    Mask of the block's serviceIDs served there (Section 6.7): registering a
    second serviceID of the same block at the same endpoint sets one more bit.
    """
    bit = 1 << block_index(registration.service_id)
    where = (registration.endpoint.address, registration.endpoint.port)
    merged: list[RecordEndpoint] = []
    found = False
    for endpoint in endpoints:
        if (endpoint.address, endpoint.port) != where:
            merged.append(endpoint)
            continue
        found = True
        mask = endpoint.service_mask | bit if add else endpoint.service_mask & ~bit
        if add:
            merged.append(
                RecordEndpoint(
                    endpoint.address,
                    endpoint.port,
                    registration.priority,
                    registration.weight,
                    mask,
                )
            )
        elif mask:
            merged.append(dataclasses.replace(endpoint, service_mask=mask))
    if add and not found:
        merged.append(
            RecordEndpoint(
                registration.endpoint.address,
                registration.endpoint.port,
                registration.priority,
                registration.weight,
                bit,
            )
        )
    return tuple(merged)


class StaticResolver:
    """A resolver over a table in memory, signing its records with its own key.

    Every serviceID registered here is answered at once; the records are
    signed, so the SAL installs them by the same path as ServalDHT's.
    ``clock`` gives the records' issue time (Unix time, or a simulator's).
    """

    def __init__(
        self,
        *,
        key: Ed25519PrivateKey | None = None,
        clock: Callable[[], float],
        lifetime: int = DEFAULT_RECORD_LIFETIME,
    ) -> None:
        self._key = key or Ed25519PrivateKey.generate()
        self._clock = clock
        self._lifetime = lifetime
        self._endpoints: dict[bytes, tuple[RecordEndpoint, ...]] = {}
        self._sequence = 0
        self.resolutions = 0

    def add(self, registration: Registration) -> None:
        """Register at once (the synchronous form of :meth:`register`)."""
        base = block_base(registration.service_id)
        current = self._endpoints.get(base, ())
        self._endpoints[base] = merge_registration(current, registration, add=True)

    def remove(self, registration: Registration) -> None:
        base = block_base(registration.service_id)
        merged = merge_registration(self._endpoints.get(base, ()), registration, add=False)
        if merged:
            self._endpoints[base] = merged
        else:
            self._endpoints.pop(base, None)

    def record(self, service_id: bytes) -> ServiceRecord | None:
        """The record this resolver answers for ``service_id`` now (synchronous)."""
        self.resolutions += 1
        base = block_base(service_id)
        bit = 1 << block_index(service_id)
        endpoints = self._endpoints.get(base, ())
        if not any(endpoint.service_mask & bit for endpoint in endpoints):
            return None
        self._sequence += 1
        record = ServiceRecord(
            service_id=base,
            owner_key=public_key_bytes(self._key),
            sequence=self._sequence,
            issued_at=int(self._clock()),
            lifetime=self._lifetime,
            flags=RecordFlags(0),
            endpoints=endpoints,
        )
        return sign_record(record, self._key)

    async def resolve(self, service_id: bytes) -> ServiceRecord | None:
        return self.record(service_id)

    async def register(self, registration: Registration) -> None:
        self.add(registration)

    async def unregister(self, registration: Registration) -> None:
        self.remove(registration)
