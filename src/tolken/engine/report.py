"""What one sync cycle did: per-flow counts, the ambiguous matches, requests per system."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["COUNT_KEYS", "AmbiguousMatch", "CycleReport", "FlowReport", "PlannedChange"]

COUNT_KEYS = (
    "created",
    "linked",
    "updated",
    "conflicts",
    "failed",
    "unchanged",
    "waiting",
    "ambiguous",
    "skipped",
    "deactivated",
    "pms_deleted",
)
"""Every per-flow counter; the first six are the fixed ``sync --json`` contract."""


@dataclass(frozen=True)
class AmbiguousMatch:
    """A record of ``source`` that matches several records of the other side by ``rule``."""

    flow: str
    source: str
    record_id: str
    candidates: tuple[str, ...]
    rule: str

    def to_json(self) -> dict[str, Any]:
        """A JSON-able form."""
        return {
            "flow": self.flow,
            "source": self.source,
            "record_id": self.record_id,
            "candidates": list(self.candidates),
            "rule": self.rule,
        }


@dataclass(frozen=True)
class PlannedChange:
    """One write a dry run would make (``tolken plan``)."""

    flow: str
    kind: str  # create-in-pms, create-in-poweroffice, link, update-pms, update-poweroffice, ...
    poweroffice_id: str | None
    pms_id: str | None
    detail: str

    def to_json(self) -> dict[str, Any]:
        """A JSON-able form."""
        return {
            "flow": self.flow,
            "kind": self.kind,
            "poweroffice_id": self.poweroffice_id,
            "pms_id": self.pms_id,
            "detail": self.detail,
        }


@dataclass
class FlowReport:
    """Counts for one flow in one cycle; ``stopped`` says why the flow stopped early, if it did."""

    flow: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNT_KEYS, 0))
    stopped: str | None = None

    def add(self, key: str, n: int = 1) -> None:
        """Count ``n`` more of ``key``."""
        self.counts[key] = self.counts.get(key, 0) + n

    def to_json(self) -> dict[str, Any]:
        """The flow's counters (and ``stopped`` when set)."""
        out: dict[str, Any] = dict(self.counts)
        if self.stopped:
            out["stopped"] = self.stopped
        return out


@dataclass
class CycleReport:
    """The outcome of :meth:`tolken.engine.SyncEngine.run_cycle`.

    ``flows`` in the order they ran; ``requests`` counts HTTP requests per
    system (token requests and retries included); ``dry_run`` reports what a
    sync *would* do, with the writes in ``planned``.
    """

    flows: dict[str, FlowReport] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    ambiguous: list[AmbiguousMatch] = field(default_factory=list)
    planned: list[PlannedChange] = field(default_factory=list)
    reconciled: bool = False
    dry_run: bool = False
    interrupted: bool = False
    run_id: int | None = None

    def flow(self, flow_id: str) -> FlowReport:
        """The report of ``flow_id`` (created on first use)."""
        if flow_id not in self.flows:
            self.flows[flow_id] = FlowReport(flow_id)
        return self.flows[flow_id]

    def total(self, key: str) -> int:
        """The sum of one counter over every flow."""
        return sum(report.counts.get(key, 0) for report in self.flows.values())

    def to_json(self) -> dict[str, Any]:
        """The ``sync --json`` object: ``{"flows": {...}, "requests": {...}, ...}``."""
        out: dict[str, Any] = {
            "flows": {flow_id: report.to_json() for flow_id, report in self.flows.items()},
            "requests": dict(self.requests),
            "ambiguous": [match.to_json() for match in self.ambiguous],
            "reconciled": self.reconciled,
            "dry_run": self.dry_run,
        }
        if self.dry_run:
            out["planned"] = [change.to_json() for change in self.planned]
        if self.interrupted:
            out["interrupted"] = True
        if self.run_id is not None:
            out["run_id"] = self.run_id
        return out
