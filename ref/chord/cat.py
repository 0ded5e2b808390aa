"""``serval-cat`` with ServalDHT as the SAL's resolver.

``ref.sal`` never imports ``ref.chord`` (DESIGN.md), so the command itself
(``ref.sal.cli``) takes the function that connects its resolver, and this
entry point hands it :meth:`DhtResolver.connect`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

from ref.chord.aio import DhtResolver
from ref.sal.cli import cat_command


def cat_main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point of ``serval-cat``."""
    cat_command(argv, DhtResolver.connect)


if __name__ == "__main__":
    cat_main()
