"""What the dashboard, its JSON twin and ``/metrics`` show, computed from the store.

Plain functions from store values to JSON-able dicts, so the HTML page and
the ``/api/...`` twin can never disagree: the templates render exactly these.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from tolken.store import ConflictRecord, Failure, HistoryEntry, Link, Run, TenantStore

__all__ = [
    "FLOWS",
    "FlowStatus",
    "conflict_json",
    "failure_json",
    "flow_statuses",
    "history_json",
    "link_json",
    "run_json",
]

FLOWS = ("departments", "customers", "projects")
# How far back to look for a flow's last successful run.
_RUN_WINDOW = 50


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True)
class FlowStatus:
    """One flow at a glance.

    ``lag_seconds`` is the time since the start of the newest successful
    cycle that ran this flow: every change made before that start has been
    synchronised, so it bounds how stale the other side can be. ``None``
    before the first successful cycle. A parked record waits longer: its change
    is pending since ``oldest_failure_at`` (the oldest open failure's first sight).
    """

    flow: str
    links: dict[str, int] = field(default_factory=dict)
    failures: int = 0
    conflicts: int = 0
    pending_creates: int = 0
    last_run_id: int | None = None
    last_run_status: str | None = None
    last_run_at: datetime | None = None
    last_success_at: datetime | None = None
    lag_seconds: float | None = None
    last_counts: dict[str, int] = field(default_factory=dict)
    oldest_failure_at: datetime | None = None

    @property
    def active_links(self) -> int:
        return self.links.get("active", 0)

    @property
    def total_links(self) -> int:
        return sum(self.links.values())

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["active_links"] = self.active_links
        data["total_links"] = self.total_links
        data["last_run_at"] = _iso(self.last_run_at)
        data["last_success_at"] = _iso(self.last_success_at)
        data["oldest_failure_at"] = _iso(self.oldest_failure_at)
        if self.lag_seconds is not None:
            data["lag_seconds"] = round(self.lag_seconds, 3)
        return data


def flow_statuses(
    store: TenantStore, now: datetime, flows: tuple[str, ...] = FLOWS
) -> list[FlowStatus]:
    """Counts, last run, lag and the oldest parked record of each flow (four store reads)."""
    counts = store.flow_counts()
    runs = store.last_runs(limit=_RUN_WINDOW)
    oldest: dict[str, datetime] = {}
    for failure in store.list_failures():
        seen = oldest.get(failure.flow)
        if seen is None or failure.first_seen < seen:
            oldest[failure.flow] = failure.first_seen
    result = []
    for flow in flows:
        c = counts.get(flow)
        ran = [r for r in runs if flow in r.counts]
        last = ran[0] if ran else None
        success = next((r for r in ran if r.status == "ok"), None)
        lag = None
        if success is not None:
            lag = max((now - success.started_at).total_seconds(), 0.0)
        result.append(
            FlowStatus(
                flow=flow,
                links=dict(c.links) if c else {},
                failures=c.open_failures if c else 0,
                conflicts=c.parked_conflicts if c else 0,
                pending_creates=c.pending_creates if c else 0,
                last_run_id=last.id if last else None,
                last_run_status=last.status if last else None,
                last_run_at=(last.finished_at or last.started_at) if last else None,
                last_success_at=success.started_at if success else None,
                lag_seconds=lag,
                last_counts=dict(last.counts.get(flow, {})) if last else {},
                oldest_failure_at=oldest.get(flow),
            )
        )
    return result


def run_json(run: Run) -> dict[str, Any]:
    """A run as JSON, with its duration."""
    data = asdict(run)
    data["started_at"] = _iso(run.started_at)
    data["finished_at"] = _iso(run.finished_at)
    data["duration_seconds"] = (
        round((run.finished_at - run.started_at).total_seconds(), 3) if run.finished_at else None
    )
    return data


def failure_json(failure: Failure) -> dict[str, Any]:
    """A parked record as JSON; ``message`` is the remote system's text, verbatim."""
    data = asdict(failure)
    for key in ("next_attempt_at", "first_seen", "last_seen", "resolved_at"):
        data[key] = _iso(getattr(failure, key))
    return data


def conflict_json(conflict: ConflictRecord) -> dict[str, Any]:
    """A conflict as JSON: both values, the shadow, the policy and the winner."""
    data = asdict(conflict)
    data["created_at"] = _iso(conflict.created_at)
    data["resolved_at"] = _iso(conflict.resolved_at)
    return data


def link_json(link: Link) -> dict[str, Any]:
    """A link as JSON."""
    data = link._asdict()
    data["created_at"] = _iso(link.created_at)
    data["updated_at"] = _iso(link.updated_at)
    return data


def history_json(entry: HistoryEntry) -> dict[str, Any]:
    """One write tolken made for a link, as JSON."""
    data = asdict(entry)
    data["at"] = _iso(entry.at)
    return data
