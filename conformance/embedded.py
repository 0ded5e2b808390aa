"""The reference node, started as a separate process for a run without ``--target``.

The harness never imports the reference (it judges by the draft alone): it
runs ``python -m ref.chord`` on a free loopback port, alone in a new ring,
reads the bound address from its first line of output, and stops it with
SIGTERM when the run ends.
"""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from conformance.model import HarnessError

#: Stabilization runs often so that ring cases need not wait long (Appendix C).
STABILIZE_INTERVAL = 0.5


#: How the harness runs the reference without importing it.
PYTHON_MODULE = (sys.executable, "-m", "ref.chord")


def node_command(program: Sequence[str], key: Path) -> list[str]:
    return [
        *program,
        "--listen",
        "127.0.0.1:0",
        "--key",
        str(key),
        "--stabilize-interval",
        str(STABILIZE_INTERVAL),
        "--forward-mode",  # so that the forward-mode cases (Section 6.9.3) run
        "--test-services",  # and the SAL host cases (Appendix C.4)
    ]


@dataclasses.dataclass
class NodeProcess:
    """A reference node in a process of its own: where it listens, and how it ended."""

    address: tuple[str, int]
    returncode: int | None = None  # set when the context manager has stopped it


@contextlib.contextmanager
def reference_node(
    program: Sequence[str] = PYTHON_MODULE, *, quiet: bool = True
) -> Iterator[NodeProcess]:
    """Run a reference node alone in a new ring; stop it with SIGTERM on exit."""
    with tempfile.TemporaryDirectory(prefix="serval-conform-") as folder:
        process = subprocess.Popen(
            node_command(program, Path(folder, "node.key")),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL if quiet else None,
            text=True,
        )
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            if not line.startswith("listening on "):
                raise HarnessError(f"the reference node did not start (exit {process.poll()})")
            host, _, port = line.removeprefix("listening on ").strip().rpartition(":")
            node = NodeProcess((host.strip("[]"), int(port)))
            yield node
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        node.returncode = process.returncode
