"""Identifier arithmetic on the ring and the peers a node knows (draft 6.1.5, 6.5).

Identifiers are 256-bit unsigned integers on a ring modulo 2^256.  A peer is
a Node Info entry (host key and endpoint) with its node ID computed once:
node IDs are never transmitted, only derived from keys.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import operator
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
        peer = _PEERS.get(key)
        if peer is not None and peer.endpoint == endpoint:
            return peer
        return _intern(cls(key, endpoint, node_id_of(key), NodeInfo(key=key, endpoint=endpoint)))

    @classmethod
    def from_info(cls, info: NodeInfo) -> Peer:
        peer = _PEERS.get(info.key)
        if peer is not None and (peer.node_info is info or peer.node_info == info):
            return peer
        return _intern(cls(info.key, info.endpoint, node_id_of(info.key), info))

    def info(self) -> NodeInfo:
        return self.node_info


#: The newest Peer made for each key.  Peers are values, so every node that names
#: the same member shares one object: a ring of 10,000 nodes would otherwise hold
#: hundreds of thousands of equal copies, and build one for every entry of every
#: answer.
_PEERS: dict[bytes, Peer] = {}
_PEERS_LIMIT = 1 << 17


def _intern(peer: Peer) -> Peer:
    if len(_PEERS) >= _PEERS_LIMIT:
        _PEERS.clear()
    _PEERS[peer.key] = peer
    return peer


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
    # in_open(peer.id, owner, target) inline: 0 < gap < span, with the whole ring
    # as the span when owner equals target.  Nearest to the target is the largest
    # gap; the ranking is stable, as a sort by (target - peer.id) mod 2^256 is.
    span = (target - owner) % RING or RING
    eligible: dict[bytes, tuple[int, Peer]] = {}
    for peer in peers:
        key = peer.key
        if key not in eligible:
            gap = (peer.id - owner) % RING
            if 0 < gap < span:
                eligible[key] = (gap, peer)
    ranked = sorted(eligible.values(), key=operator.itemgetter(0), reverse=True)
    return [peer for _, peer in ranked[:count]]
