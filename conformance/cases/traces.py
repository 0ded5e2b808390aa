"""The canonical packet traces (``conformance/traces/*.trace``), one case each.

Each trace is replayed by :func:`conformance.trace.replay`; the case ID is
``dht.traces.<file name>`` and the case declares the trace's section and
requirements.  The format is described in :mod:`conformance.trace`.
"""

from __future__ import annotations

from conformance.cases import case
from conformance.context import Context
from conformance.trace import Trace, replay, shipped

ORDER = 90
GROUP = "dht.traces"


def _register(trace: Trace) -> None:
    def run(ctx: Context) -> None:
        replay(trace, ctx)

    # The case ID comes from the function's name, with "_" read as "-".
    run.__name__ = run.__qualname__ = trace.name.replace("-", "_")
    case(GROUP, trace.section, *trace.requirements, title=trace.title, needs=trace.needs)(run)


for _trace in shipped():
    _register(_trace)
