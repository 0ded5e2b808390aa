"""``tox -e conform``: run serval-conform against a serval-node in a process of its own.

Starts ``serval-node`` on a free loopback port (alone in a new ring, with the
settings of the draft's Appendix C), runs ``serval-conform --target`` against
it with any extra arguments given, stops the node with SIGTERM and checks that
it left cleanly.  The exit status is serval-conform's (or 2 if the node would
not start or did not stop cleanly).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

NODE_ARGS = ["--stabilize-interval", "0.5", "--forward-mode"]


def main(argv: list[str]) -> int:
    node_program = shutil.which("serval-node")
    conform_program = shutil.which("serval-conform")
    if node_program is None or conform_program is None:
        print("conform_node: serval-node and serval-conform must be installed", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="conform-node-") as folder:
        key = Path(folder, "node.key")
        node = subprocess.Popen(
            [node_program, "--listen", "127.0.0.1:0", "--key", str(key), *NODE_ARGS],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert node.stdout is not None
        line = node.stdout.readline().strip()
        if not line.startswith("listening on "):
            print(f"conform_node: serval-node did not start: {line!r}", file=sys.stderr)
            node.kill()
            return 2
        target = line.removeprefix("listening on ")
        print(f"conform_node: serval-node (pid {node.pid}) listening on {target}", flush=True)
        try:
            status = subprocess.call([conform_program, "--target", target, *argv])
        finally:
            node.terminate()
            try:
                node_status = node.wait(timeout=15)
            except subprocess.TimeoutExpired:
                node.kill()
                node_status = -1
        if node_status != 0:
            print(f"conform_node: serval-node exited with {node_status}", file=sys.stderr)
            return status or 2
        return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
