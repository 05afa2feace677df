"""The sync engine: a pure core (plan, merge, match, cursor rules) and a thin executor.

Public surface: :class:`SyncEngine` (build it with :meth:`SyncEngine.from_config`),
its :class:`CycleReport`, and :func:`build_connectors` for the two connectors of
a config.
"""

from tolken.engine.connect import ConnectorPair, RequestCounter, build_connectors
from tolken.engine.report import AmbiguousMatch, CycleReport, FlowReport, PlannedChange
from tolken.engine.run import SyncEngine

__all__ = [
    "AmbiguousMatch",
    "ConnectorPair",
    "CycleReport",
    "FlowReport",
    "PlannedChange",
    "RequestCounter",
    "SyncEngine",
    "build_connectors",
]
