"""The registry of conformance cases.

Cases are plain functions declared with :func:`case`; each names the draft
section it comes from and the requirement IDs it judges.  Every module of
this package registers its cases on import and declares ``ORDER`` (groups of
lower ORDER run first) and, optionally, ``UNOBSERVABLE``: the MUSTs of its
sections that no test over the wire can judge, each with the reason.
:func:`all_cases` imports them all and returns the cases in a stable order.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable
from types import ModuleType

from conformance.context import Context
from conformance.model import Case
from conformance.requirements import requirements

_REGISTRY: dict[str, Case] = {}


def case(
    group: str,
    section: str,
    *requirement_ids: str,
    title: str,
    needs: tuple[str, ...] = (),
    version: int = 1,
    slow: bool = False,
) -> Callable[[Callable[[Context], None]], Callable[[Context], None]]:
    """Declare a case: ``@case("dht.header", "6.3", "DHT-HDR-2", title=...)``.

    ``needs`` names the target features the case requires (Appendix C.2);
    ``slow`` marks a case that waits for one of the draft's long timers
    (TIME-WAIT, the retransmission limit), which runs only with ``--slow``.
    """

    def register(run: Callable[[Context], None]) -> Callable[[Context], None]:
        case_id = f"{group}.{run.__name__.replace('_', '-')}"
        known = requirements()
        unknown = [r for r in requirement_ids if r not in known]
        if unknown:
            raise ValueError(f"case {case_id} names unknown requirements {unknown}")
        if case_id in _REGISTRY:
            raise ValueError(f"case {case_id} declared twice")
        _REGISTRY[case_id] = Case(
            id=case_id,
            title=title,
            section=section,
            requirements=requirement_ids,
            group=group,
            run=run,
            needs=frozenset(needs),
            version=version,
            slow=slow,
        )
        return run

    return register


@functools.cache
def _modules() -> tuple[ModuleType, ...]:
    modules = [
        importlib.import_module(f"{__name__}.{info.name}")
        for info in pkgutil.iter_modules(__path__)
    ]
    return tuple(sorted(modules, key=lambda m: (getattr(m, "ORDER", 100), m.__name__)))


def all_cases() -> list[Case]:
    """Every case, grouped, in the order of the modules' ORDER and then of declaration."""
    rank = {module.__name__: i for i, module in enumerate(_modules())}
    cases = list(_REGISTRY.values())
    return sorted(cases, key=lambda c: (rank[c.run.__module__], cases.index(c)))


def unobservable() -> dict[str, str]:
    """MUSTs that no case can judge over the wire, with the reason, from every module."""
    reasons: dict[str, str] = {}
    for module in _modules():
        reasons.update(getattr(module, "UNOBSERVABLE", {}))
    return reasons
