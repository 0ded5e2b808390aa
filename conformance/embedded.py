"""The reference node, started as a separate process for a run without ``--target``.

The harness never imports the reference (it judges by the draft alone): it
runs ``python -m ref.chord`` on a free loopback port, alone in a new ring,
reads the bound address from its first line of output, and stops it with
SIGTERM when the run ends.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from conformance.model import HarnessError

#: Stabilization runs often so that ring cases need not wait long (Appendix C).
STABILIZE_INTERVAL = 0.5


def node_command(key: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "ref.chord",
        "--listen",
        "127.0.0.1:0",
        "--key",
        str(key),
        "--stabilize-interval",
        str(STABILIZE_INTERVAL),
        "--forward-mode",  # so that the forward-mode cases (Section 6.9.3) run
        *extra,
    ]


@contextlib.contextmanager
def reference_node(*extra: str) -> Iterator[tuple[str, int]]:
    """Run a reference node; yield its (host, port)."""
    with tempfile.TemporaryDirectory(prefix="serval-conform-") as folder:
        process = subprocess.Popen(
            node_command(Path(folder, "node.key"), *extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            if not line.startswith("listening on "):
                raise HarnessError(f"the reference node did not start (exit {process.poll()})")
            host, _, port = line.removeprefix("listening on ").strip().rpartition(":")
            yield host.strip("[]"), int(port)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
