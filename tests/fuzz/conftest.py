"""The tests of ``fuzz/`` (the campaigns) and of what the campaigns found.

This folder is not a package: as one, it would be the package ``fuzz`` (pytest
puts ``tests/`` on ``sys.path``) and hide the ``fuzz`` package under test.  As
a plain folder it is only a namespace portion, which a regular package found
anywhere on ``sys.path`` wins over; the repository's root is added at the end
so that ``pytest`` finds that package without being run from the root.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.append(ROOT)
