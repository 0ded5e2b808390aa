"""The canonical packet traces (``conformance/traces/*.trace``), one case each.

Each trace is replayed by :func:`conformance.trace.replay`; the case ID is
``dht.traces.<file name>``, or ``sal.traces.<file name>`` for a trace that
sends or expects SAL packets of flows (it needs the feature ``sal``), and
the case declares the trace's section and requirements.  The format is
described in :mod:`conformance.trace`.
"""

from __future__ import annotations

from conformance.cases import case
from conformance.context import Context
from conformance.trace import Trace, replay, shipped

ORDER = 90
GROUP = "dht.traces"
SAL_GROUP = "sal.traces"


def group_of(trace: Trace) -> str:
    """The group a shipped trace's case belongs to."""
    return SAL_GROUP if trace.uses_sal else GROUP


def _register(trace: Trace) -> None:
    def run(ctx: Context) -> None:
        replay(trace, ctx)

    # The case ID comes from the function's name, with "_" read as "-".
    run.__name__ = run.__qualname__ = trace.name.replace("-", "_")
    case(group_of(trace), trace.section, *trace.requirements, title=trace.title, needs=trace.needs)(
        run
    )


# The DHT traces first, then the SAL ones: each group's cases run together.
for _trace in sorted(shipped(), key=lambda trace: (trace.uses_sal, trace.name)):
    _register(_trace)
