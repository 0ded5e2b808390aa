"""Run ServalDHT cores on asyncio: one UDP socket per node or client.

This is all the I/O a node or client does.  Each core sits on one datagram
endpoint, and after every call into it (a datagram arrived, its timer fired,
the application started an operation) the adapter sends what the core
produced and re-arms a single timer for the core's next deadline.  The cores
keep Unix time (records carry Unix times, Section 6.7), so deadlines are
converted to the loop's clock when the timer is armed.

:func:`start_node` runs a ring member; :class:`DhtClient` resolves and
registers without joining.  Operations return the core's result objects
(:class:`Found`, :class:`NotRegistered`, :class:`Stored`, :class:`Failure`,
...): a peer that misbehaves or a ring that does not answer is a result, not
an exception.  Only a caller's mistake raises, as ``LocalProtocolError``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ref.chord.client import Client, Pinged, Stored
from ref.chord.exchange import Completed, Engine, Failure, Found, LookupResult, NotRegistered
from ref.chord.framing import WireFraming
from ref.chord.node import Joined, Left, Node, NodeConfig, NodeState
from ref.chord.ring import Peer
from ref.chord.saltarget import SalTarget
from ref.sal.aio import bind_udp, endpoint_of
from ref.sal.resolver import Registration, ResolverUnavailable, merge_registration
from ref.wire.constants import DEFAULT_RECORD_LIFETIME, DEFAULT_REPLICAS, MAX_ADDRESS_TOKENS
from ref.wire.errors import ErrorCode, LocalProtocolError, ServalError
from ref.wire.ids import (
    block_base,
    block_index,
    key_bound_service_id,
    parse_service_name,
    service_id_for_name,
)
from ref.wire.records import (
    RecordEndpoint,
    RecordFlags,
    ServiceRecord,
    public_key_bytes,
    sign_record,
)
from ref.wire.sal import Endpoint

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Log = Callable[[dict[str, Any]], None]

__all__ = [
    "DhtClient",
    "DhtResolver",
    "NodeServer",
    "RegistrationFailed",
    "endpoint_of",
    "start_node",
]


class _Driver(asyncio.DatagramProtocol):
    """One core on one datagram endpoint: delivers datagrams, sends, keeps the timer."""

    def __init__(self, family: socket.AddressFamily) -> None:
        self.family = family
        self.core: Engine | SalTarget | None = None
        self.on_event: Callable[[Any], None] = _ignore
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for: float | None = None
        self._operations: dict[int, asyncio.Future[Any]] = {}

    def attach(self, core: Engine | SalTarget) -> None:
        self.core = core
        self.service()

    async def operation(self, handle: int) -> Any:
        """The result of the core's operation ``handle`` (its Completed event)."""
        future: asyncio.Future[Any] = self._loop.create_future()
        self._operations[handle] = future
        self.service()
        return await future

    def service(self) -> None:
        """Send what the core produced, hand out its events and re-arm its timer."""
        core, transport = self.core, self._transport
        if core is None or transport is None or transport.is_closing():
            return
        for data, destination in core.datagrams_to_send():
            assert isinstance(data, bytes)  # WireFraming produces bytes only
            address = self._socket_address(destination)
            if address is None:
                core.counters["send_errors"] += 1  # another address family
            else:
                transport.sendto(data, address)
        while (event := core.next_event()) is not None:
            if isinstance(event, Completed):
                future = self._operations.pop(event.handle, None)
                if future is not None and not future.done():
                    future.set_result(event.result)
            else:
                self.on_event(event)
        self._arm(core.get_timer())

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._stop()

    # --- asyncio callbacks ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        core = self.core
        if core is None:
            return
        try:
            source = endpoint_of(addr[0], addr[1])
        except ValueError:
            return
        core.receive_datagram(data, source, time.time())
        self.service()

    def error_received(self, exc: Exception) -> None:
        # An ICMP error or a refused send; the core's timeouts deal with the peer.
        if self.core is not None:
            self.core.counters["send_errors"] += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop()

    # --- internals -----------------------------------------------------------------------

    def _stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        operations, self._operations = self._operations, {}
        for future in operations.values():
            future.cancel()

    def _socket_address(self, endpoint: Endpoint) -> tuple[str, int] | None:
        address = endpoint.address
        if isinstance(address, ipaddress.IPv4Address):
            if self.family == socket.AF_INET6:
                return f"::ffff:{address}", endpoint.port  # a dual-stack socket
            return str(address), endpoint.port
        if self.family == socket.AF_INET6:
            return str(address), endpoint.port
        return None

    def _arm(self, deadline: float | None) -> None:
        if deadline == self._armed_for and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._armed_for = deadline
        if deadline is not None:
            delay = max(0.0, deadline - time.time())
            self._timer = self._loop.call_at(self._loop.time() + delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        deadline, self._armed_for = self._armed_for, None
        if self.core is None or deadline is None:
            return
        # The loop's clock says the deadline has come, even if the wall clock lags it
        # by a fraction of a millisecond: never hand the core a time before it.
        self.core.handle_timer(max(time.time(), deadline))
        self.service()


def _ignore(event: Any) -> None:
    """Events nobody listens for."""


async def _open(host: str, port: int) -> tuple[_Driver, Endpoint]:
    """Bind a UDP socket to ``host`` (an IP literal) and ``port`` (0: any)."""
    sock, endpoint = bind_udp(host, port, buffer=None)
    loop = asyncio.get_running_loop()
    _, driver = await loop.create_datagram_endpoint(lambda: _Driver(sock.family), sock=sock)
    return driver, endpoint


# --- nodes -------------------------------------------------------------------------------


class NodeServer:
    """A ring member running on a UDP socket (made by :func:`start_node`)."""

    def __init__(self, driver: _Driver, node: Node, endpoint: Endpoint) -> None:
        self.endpoint = endpoint  # the bound endpoint
        self.node = node
        self._driver = driver
        self._joined = asyncio.Event()
        driver.on_event = self._on_event

    async def wait_joined(self, timeout: float | None = None) -> bool:
        """Wait until the node is a ring member; False if ``timeout`` passes first."""
        if self.node.state is NodeState.MEMBER:
            return True
        try:
            await asyncio.wait_for(self._joined.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def leave(self, timeout: float) -> bool:
        """Hand the records over and leave (Section 6.5); False if not done in time."""
        if self.node.state is not NodeState.MEMBER:
            return False
        handle = self.node.leave()
        try:
            result = await asyncio.wait_for(self._driver.operation(handle), timeout)
        except TimeoutError:
            return False
        return isinstance(result, Left)

    def close(self) -> None:
        """Stop at once, without a word to the ring (as a crash looks to it)."""
        self._driver.close()

    def _on_event(self, event: Any) -> None:
        if isinstance(event, Joined):
            self._joined.set()


async def start_node(
    host: str,
    port: int,
    *,
    key: Ed25519PrivateKey,
    bootstrap: Sequence[Endpoint] = (),
    config: NodeConfig | None = None,
    log: Log | None = None,
    test_services: bool = False,
) -> NodeServer:
    """Bind ``host``:``port`` (an IP literal; port 0 picks one) and start a node.

    With no ``bootstrap`` endpoint the node creates a ring (DHT-BOOT-1); otherwise
    it joins through them, retrying until one answers (DHT-BOOT-2).  With
    ``test_services`` the endpoint is also a SAL host serving the conformance
    test services (Appendix C.4, :mod:`ref.chord.saltarget`).
    """
    driver, endpoint = await _open(host, port)
    node = Node(
        WireFraming(key),
        public_key_bytes(key),
        endpoint,
        random.SystemRandom(),  # SEC-GEN-1: transaction IDs and token secrets
        time.time(),
        config,
        log=log,
    )
    server = NodeServer(driver, node, endpoint)
    node.start(bootstrap)
    driver.attach(SalTarget(node, random.SystemRandom(), time.time()) if test_services else node)
    return server


# --- clients -----------------------------------------------------------------------------


class _Sequence:
    """Record Sequence numbers: Unix time in ms, strictly increasing (DHT-REC-1, -2)."""

    last = 0

    @classmethod
    def next(cls) -> int:
        cls.last = max(cls.last + 1, time.time_ns() // 1_000_000)
        return cls.last


class DhtClient:
    """Resolve, register and query a ring from one UDP socket, without joining it."""

    def __init__(self, driver: _Driver, core: Client, endpoint: Endpoint) -> None:
        self.endpoint = endpoint  # the bound endpoint
        self.core = core
        self._driver = driver

    @classmethod
    async def connect(cls, nodes: Sequence[Endpoint], *, host: str | None = None) -> DhtClient:
        """A client of the ring reachable at ``nodes``, on an ephemeral port of ``host``.

        Without ``host`` the socket binds the wildcard address of the nodes' family
        (both families if the nodes have both).  Nothing is sent until an operation.
        """
        if not nodes:
            raise LocalProtocolError("a client needs the endpoint of at least one node")
        if host is None:
            ipv4 = all(isinstance(n.address, ipaddress.IPv4Address) for n in nodes)
            host = "0.0.0.0" if ipv4 else "::"
        driver, endpoint = await _open(host, 0)
        core = Client(WireFraming(None), endpoint, nodes, random.SystemRandom(), time.time())
        driver.attach(core)
        return cls(driver, core, endpoint)

    async def resolve(self, name: str | bytes) -> Found | NotRegistered | Failure:
        """Resolve a name, a key-bound name ``name@key`` or a 32-byte serviceID."""
        if isinstance(name, bytes):
            service_id, owner_key = name, None
        else:
            text, owner_key = parse_service_name(name)
            service_id = (
                key_bound_service_id(owner_key, text) if owner_key else service_id_for_name(text)
            )
        # With owner_key, the walk applies DHT-RES-5 item 4 to every record it gets.
        result = await self._run(lambda: self.core.resolve(service_id, owner_key))
        return cast(Found | NotRegistered | Failure, result)

    async def register(
        self,
        name: str,
        endpoints: Sequence[RecordEndpoint],
        key: Ed25519PrivateKey,
        ttl: int = DEFAULT_RECORD_LIFETIME,
    ) -> Stored | Failure:
        """Sign a record for ``name`` with the owner ``key`` and STORE it.

        ``name`` is a plain name or ``name@key`` with the owner's own key.  An
        endpoint address other than the one the ring sees this client send from
        needs a token (DHT-TOKEN-6): the client PINGs the replicas from that
        address, which must be one of this host's.
        """
        if not endpoints:
            raise LocalProtocolError("a registration needs at least one endpoint")
        return await self.register_block(_owned_service_id(name, key), endpoints, key, ttl)

    async def register_block(
        self,
        service_id: bytes,
        endpoints: Sequence[RecordEndpoint],
        key: Ed25519PrivateKey,
        ttl: int = DEFAULT_RECORD_LIFETIME,
    ) -> Stored | Failure:
        """Sign and STORE a record for the block of ``service_id`` (a tombstone if no endpoints).

        The serviceID of the record is the block's first (Section 6.1.3); the
        owner ``key`` must own the block or get NOT_OWNER.
        """
        record = _signed(block_base(service_id), key, ttl, tuple(endpoints))
        if not endpoints:
            return cast(Stored | Failure, await self._run(lambda: self.core.register(record)))
        tokens = await self._address_tokens(record)
        if isinstance(tokens, Failure):
            return tokens
        return cast(Stored | Failure, await self._run(lambda: self.core.register(record, tokens)))

    async def unregister(
        self, name: str, key: Ed25519PrivateKey, ttl: int = DEFAULT_RECORD_LIFETIME
    ) -> Stored | Failure:
        """Store a signed tombstone (Section 6.7.2); the owner keeps the name for ``ttl``."""
        return await self.register_block(_owned_service_id(name, key), (), key, ttl)

    async def status(self, endpoint: Endpoint) -> dict[str, Any] | Failure:
        """The STATUS report of the node at ``endpoint`` (Section 6.4.9)."""
        return cast(dict[str, Any] | Failure, await self._run(lambda: self.core.status(endpoint)))

    async def lookup(self, target: bytes) -> LookupResult | Failure:
        """successor(target) and its successors (Section 6.6)."""
        return cast(LookupResult | Failure, await self._run(lambda: self.core.lookup(target)))

    async def ping(self, endpoint: Endpoint) -> Pinged | Failure:
        return cast(Pinged | Failure, await self._run(lambda: self.core.ping(endpoint)))

    def close(self) -> None:
        self._driver.close()

    async def _run(self, start: Callable[[], int]) -> Any:
        # The core knows the time only from its last input: bring it up to date
        # first, or an idle client's deadlines would already lie in the past.
        self.core.now = time.time()
        return await self._driver.operation(start())

    async def _address_tokens(self, record: ServiceRecord) -> tuple[bytes, ...] | Failure:
        """Tokens for the record's addresses that the replicas will not observe."""
        addresses = list(dict.fromkeys(endpoint.address for endpoint in record.endpoints))
        for address in addresses:
            if address.is_unspecified or address.is_multicast:
                raise LocalProtocolError(f"{address} cannot be a service endpoint")
        found = await self.lookup(record.service_id)
        if isinstance(found, Failure):
            return found
        replicas = list(found.nodes[:DEFAULT_REPLICAS])  # where the STORE may go
        pinged = await asyncio.gather(*(self.ping(peer.endpoint) for peer in replicas))
        observed = {p.observed.address for p in pinged if isinstance(p, Pinged)}
        if not observed:
            return Failure(ErrorCode.INTERNAL_ERROR, "no replica answers")
        foreign = [address for address in addresses if address not in observed]
        if not foreign:
            return ()
        if len(foreign) > MAX_ADDRESS_TOKENS:
            raise LocalProtocolError(
                f"at most {MAX_ADDRESS_TOKENS} endpoint addresses other than the client's own",
                ErrorCode.LIMIT_EXCEEDED,
            )
        # A token per address from each replica the STORE may reach, within the 8 a
        # STORE carries: the first replica's come first.
        reach = max(1, MAX_ADDRESS_TOKENS // len(foreign))
        tokens: list[bytes] = []
        for address in foreign:
            same_family = [p for p in replicas if p.endpoint.address.version == address.version]
            if not same_family:
                raise LocalProtocolError(
                    f"cannot validate {address}: no replica has an IPv{address.version} endpoint",
                    ErrorCode.ADDRESS_NOT_VALIDATED,
                )
            got = await _tokens_from(address, same_family[:reach])
            if not got:
                return Failure(
                    ErrorCode.ADDRESS_NOT_VALIDATED, f"no replica answered a PING from {address}"
                )
            tokens.extend(got)
        return tuple(tokens)


async def _tokens_from(address: IPAddress, replicas: Sequence[Peer]) -> list[bytes]:
    """PING the replicas from ``address`` and keep the tokens they return for it."""
    try:
        driver, endpoint = await _open(str(address), 0)
    except OSError as exc:
        reason = (exc.strerror or type(exc).__name__).lower()
        raise LocalProtocolError(
            f"cannot register {address}: this host cannot send from it ({reason})",
            ErrorCode.ADDRESS_NOT_VALIDATED,
        ) from None
    try:
        core = Client(WireFraming(None), endpoint, [], random.SystemRandom(), time.time())
        driver.attach(core)
        replies = await asyncio.gather(
            *(driver.operation(core.ping(peer.endpoint)) for peer in replicas)
        )
    finally:
        driver.close()
    return [r.token for r in replies if isinstance(r, Pinged) and r.observed.address == address]


def _owned_service_id(name: str, key: Ed25519PrivateKey) -> bytes:
    text, bound_to = parse_service_name(name)
    if bound_to is None:
        return service_id_for_name(text)
    if bound_to != public_key_bytes(key):
        raise LocalProtocolError(f"{name!r} is bound to another key than the owner key")
    return key_bound_service_id(bound_to, text)


def _signed(
    service_id: bytes,
    key: Ed25519PrivateKey,
    ttl: int,
    endpoints: tuple[RecordEndpoint, ...],
) -> ServiceRecord:
    record = ServiceRecord(
        service_id=service_id,
        owner_key=public_key_bytes(key),
        sequence=_Sequence.next(),
        issued_at=int(time.time()),
        lifetime=ttl,
        flags=RecordFlags(0) if endpoints else RecordFlags.TOMBSTONE,
        endpoints=endpoints,
    )
    return sign_record(record, key)  # LocalProtocolError for a record the draft forbids


# --- the SAL's resolver --------------------------------------------------------------------


class RegistrationFailed(ServalError):
    """The ring refused a registration (for example NOT_OWNER: another key owns the name)."""


_RETRY_CODES = (ErrorCode.STALE_SEQUENCE, ErrorCode.RATE_LIMITED)
_REFUSAL_CODES = (ErrorCode.NOT_OWNER, ErrorCode.BAD_SIGNATURE, ErrorCode.ADDRESS_NOT_VALIDATED)


class DhtResolver:
    """ServalDHT as the SAL's resolver (``ref.sal.resolver.Resolver``).

    Resolution is a return-mode lookup (Section 6.9.1) whose walk verifies the
    record before the SAL installs FORWARD rules from it.  Registration by
    binding (Section 5.6.4) edits the block's record: read it, add or remove
    this host's endpoint (``merge_registration``), sign under a new sequence
    number, STORE.  Hosts that serve one name share its owner key, so two of
    them may edit the record at once and the higher sequence number hides the
    other edit: the resolver reads the record back and edits again until its
    endpoint is in (or out), up to ``attempts`` times with a random pause.
    """

    def __init__(
        self,
        client: DhtClient,
        key: Ed25519PrivateKey | None = None,
        *,
        ttl: int = DEFAULT_RECORD_LIFETIME,
        attempts: int = 6,
    ) -> None:
        self.client = client
        self.key = key
        self.ttl = ttl
        self.attempts = attempts

    @classmethod
    async def connect(
        cls,
        nodes: Sequence[Endpoint],
        key: Ed25519PrivateKey | None = None,
        *,
        host: str | None = None,
        ttl: int = DEFAULT_RECORD_LIFETIME,
    ) -> DhtResolver:
        return cls(await DhtClient.connect(nodes, host=host), key, ttl=ttl)

    def close(self) -> None:
        self.client.close()

    async def resolve(self, service_id: bytes) -> ServiceRecord | None:
        result = await self.client.resolve(service_id)
        if isinstance(result, Found):
            return result.record
        if isinstance(result, NotRegistered):
            return None
        raise ResolverUnavailable(f"{result.code.name}: {result.reason}")

    async def register(self, registration: Registration) -> None:
        await self._edit(registration, add=True)

    async def unregister(self, registration: Registration) -> None:
        await self._edit(registration, add=False)

    async def _edit(self, registration: Registration, *, add: bool) -> None:
        if self.key is None:
            raise LocalProtocolError("registering a service needs an owner key")
        owner = public_key_bytes(self.key)
        for attempt in range(self.attempts + 1):
            current = await self._own_endpoints(registration.service_id, owner)
            if _holds(current, registration, exact=add) == add:
                return
            if attempt == self.attempts:
                break  # the last edit was read back and did not hold
            endpoints = merge_registration(current, registration, add=add)
            stored = await self.client.register_block(
                registration.service_id, endpoints, self.key, self.ttl
            )
            if isinstance(stored, Failure):
                if stored.code in _REFUSAL_CODES:
                    raise RegistrationFailed(f"{stored.code.name}: {stored.reason}")
                if stored.code not in _RETRY_CODES:
                    raise ResolverUnavailable(f"{stored.code.name}: {stored.reason}")
            # A concurrent edit may land meanwhile; the next round reads it back.
            await asyncio.sleep(random.uniform(0.02, 0.1) * (attempt + 1))
        raise ResolverUnavailable("the record kept changing under concurrent registrations")

    async def _own_endpoints(self, service_id: bytes, owner: bytes) -> tuple[RecordEndpoint, ...]:
        result = await self.client.resolve(service_id)
        if isinstance(result, Failure):
            raise ResolverUnavailable(f"{result.code.name}: {result.reason}")
        if isinstance(result, Found) and result.record.owner_key == owner:
            return result.record.endpoints
        return ()


def _holds(endpoints: Sequence[RecordEndpoint], registration: Registration, *, exact: bool) -> bool:
    """Whether the record serves the registration's serviceID at its endpoint.

    ``exact`` also asks for the registration's priority and weight.
    """
    bit = 1 << block_index(registration.service_id)
    where = (registration.endpoint.address, registration.endpoint.port)
    for endpoint in endpoints:
        if (endpoint.address, endpoint.port) != where or not endpoint.service_mask & bit:
            continue
        wanted = (registration.priority, registration.weight)
        if not exact or (endpoint.priority, endpoint.weight) == wanted:
            return True
    return False
