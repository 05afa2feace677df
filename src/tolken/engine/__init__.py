"""The sync engine: a pure core (plan, merge, match, cursor rules) and a thin executor.

Public surface: :class:`SyncEngine` (built from a config by
:func:`tolken.compose.open_engine`), its :class:`CycleReport`, and
:class:`RequestCounts`, what the engine reads for the requests per system in
its report. The engine never speaks HTTP: it is handed its connectors.
"""

from tolken.engine.report import AmbiguousMatch, CycleReport, FlowReport, PlannedChange
from tolken.engine.run import RequestCounts, SyncEngine

__all__ = [
    "AmbiguousMatch",
    "CycleReport",
    "FlowReport",
    "PlannedChange",
    "RequestCounts",
    "SyncEngine",
]
