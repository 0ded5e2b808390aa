"""``python -m conformance`` is ``serval-conform``."""

from conformance.cli import entry

entry()
