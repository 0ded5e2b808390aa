"""Identifier arithmetic on the ring and the peers a node knows (draft 6.1.5, 6.5).

Identifiers are 256-bit unsigned integers on a ring modulo 2^256.  A peer is
a Node Info entry (host key and endpoint) with its node ID computed once:
node IDs are never transmitted, only derived from keys.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Iterable, Sequence

from ref.wire.dht import NodeInfo
from ref.wire.sal import Endpoint

RING = 1 << 256


def distance(a: int, b: int) -> int:
    """Clockwise distance d(a, b) = (b - a) mod 2^256."""
    return (b - a) % RING


def in_half_open(x: int, a: int, b: int) -> bool:
    """x in (a, b]; the whole ring when a equals b."""
    return a == b or 0 < (x - a) % RING <= (b - a) % RING


def in_open(x: int, a: int, b: int) -> bool:
    """x in (a, b); the whole ring except a when a equals b."""
    if a == b:
        return x != a
    return 0 < (x - a) % RING < (b - a) % RING


def in_closed_open(x: int, a: int, b: int) -> bool:
    """x in [a, b); only a when a equals b."""
    return x == a or (a != b and in_open(x, a, b))


def id_of(identifier: bytes) -> int:
    """A 32-byte identifier (serviceID, target) as an integer."""
    return int.from_bytes(identifier, "big")


def id_bytes(identifier: int) -> bytes:
    return identifier.to_bytes(32, "big")


@functools.lru_cache(maxsize=1 << 16)
def node_id_of(key: bytes) -> int:
    """The node ID of a host key: SHA-256 of the key (DHT-ID-6, Section 6.1.5)."""
    return int.from_bytes(hashlib.sha256(key).digest(), "big")


@dataclasses.dataclass(frozen=True, slots=True)
class Peer:
    """A ring member as a node knows it: its key, endpoint and node ID."""

    key: bytes
    endpoint: Endpoint
    id: int
    node_info: NodeInfo

    @classmethod
    def of(cls, key: bytes, endpoint: Endpoint) -> Peer:
        return cls(key, endpoint, node_id_of(key), NodeInfo(key=key, endpoint=endpoint))

    @classmethod
    def from_info(cls, info: NodeInfo) -> Peer:
        return cls(info.key, info.endpoint, node_id_of(info.key), info)

    def info(self) -> NodeInfo:
        return self.node_info


def extend(owner: int, base: Sequence[Peer], candidates: Iterable[Peer], length: int) -> list[Peer]:
    """Extend a successor list as Section 6.5 ("Extending a list") describes.

    Append candidates in order, skipping entries already present, and stop at
    the owner itself or at the first entry no farther than the last one (the
    list has wrapped around the ring); keep the first ``length`` entries.
    """
    result = list(base)
    keys = {peer.key for peer in result}
    last = distance(owner, result[-1].id) if result else 0
    for peer in candidates:
        if len(result) >= length:
            break
        if peer.key in keys:
            continue
        far = distance(owner, peer.id)
        if far == 0 or far <= last:
            break
        result.append(peer)
        keys.add(peer.key)
        last = far
    return result[:length]


def closest_preceding(owner: int, target: int, peers: Iterable[Peer], count: int) -> list[Peer]:
    """The known peers in (owner, target), nearest to the target first (Section 6.6)."""
    eligible: dict[bytes, Peer] = {}
    for peer in peers:
        if peer.key not in eligible and in_open(peer.id, owner, target):
            eligible[peer.key] = peer
    ranked = sorted(eligible.values(), key=lambda peer: (target - peer.id) % RING)
    return ranked[:count]
