"""Suite-wide pytest configuration.

Hypothesis profiles: ``ci`` (chosen when the CI environment variable is set)
is derandomized so that a CI run is reproducible; ``dev`` is the default.
HYPOTHESIS_PROFILE picks one explicitly.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, max_examples=200, deadline=None)
settings.register_profile("dev")
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)
