"""``tox -e conform``: run serval-conform against a serval-node in a process of its own.

Starts the installed ``serval-node`` on a free loopback port (alone in a new
ring, with the settings of the draft's Appendix C), runs ``serval-conform
--target`` against it with any extra arguments given, stops the node with
SIGTERM and checks that it left cleanly.  The exit status is serval-conform's
(or 2 if the node would not start or did not stop cleanly).
"""

from __future__ import annotations

import shutil
import subprocess
import sys

from conformance.embedded import reference_node
from conformance.model import HarnessError


def main(argv: list[str]) -> int:
    node_program = shutil.which("serval-node")
    conform_program = shutil.which("serval-conform")
    if node_program is None or conform_program is None:
        print("conform_node: serval-node and serval-conform must be installed", file=sys.stderr)
        return 2
    try:
        with reference_node([node_program], quiet=False) as node:
            host, port = node.address
            target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            print(f"conform_node: serval-node listening on {target}", flush=True)
            status = subprocess.call([conform_program, "--target", target, *argv])
    except HarnessError as error:
        print(f"conform_node: {error}", file=sys.stderr)
        return 2
    if node.returncode != 0:
        print(f"conform_node: serval-node exited with {node.returncode}", file=sys.stderr)
        return status or 2
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
