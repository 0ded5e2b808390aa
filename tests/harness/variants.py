"""Deliberately broken variants of the reference node, for judging the harness.

A :class:`Variant` names the one requirement it violates and how it breaks
the reference: a ``NodeConfig`` change, or a ``patch`` function that
monkeypatches ``ref.chord`` (methods of ``Node``, functions of ``ref.wire``
as ``ref.chord`` imported them, ...).  Nothing here is shipped in ``ref/``.

:func:`running_node` starts the reference in this process on a loopback
port (asyncio in a background thread), so the patches apply to it.  Variants
are declared in ``variants_*.py`` modules of this folder (one per area, so
that they can be written independently) as a module-level ``VARIANTS`` list;
``test_broken_variants.py`` collects them all, runs the harness on each and
prints the share it caught.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ref.chord.aio import NodeServer, start_node
from ref.chord.node import NodeConfig


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    violates: str  # the requirement ID the harness must name in a FAIL
    patch: Callable[[pytest.MonkeyPatch], None] | None = None
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    cases: tuple[str, ...] = ()  # case IDs or group prefixes to run (default: by requirement)


#: The configuration the harness expects of an embedded reference (Appendix C).
BASE_CONFIG: dict[str, Any] = {"stabilize_interval": 0.5}


@contextlib.contextmanager
def running_node(config: dict[str, Any] | None = None) -> Iterator[tuple[str, int]]:
    """A reference node on 127.0.0.1, alone in its ring, in this process."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    settings = BASE_CONFIG | (config or {})

    async def start() -> NodeServer:
        return await start_node(
            "127.0.0.1",
            0,
            key=Ed25519PrivateKey.generate(),
            config=NodeConfig(**settings),
            test_services=True,  # the SAL host cases (Appendix C.4)
        )

    server = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    try:
        yield str(server.endpoint.address), server.endpoint.port
    finally:
        asyncio.run_coroutine_threadsafe(_close(server), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


async def _close(server: NodeServer) -> None:
    server.close()
