"""What the demo prints: per-flow progress bars, the summary table and the story's notes.

Everything goes through one rich :class:`~rich.console.Console`; when standard
output is not a terminal (a pipe, a test) rich prints the final state of the
bars and plain tables, so the output stays readable in a log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from tolken.engine import CycleReport
from tolken.mapping import Mapping as SyncMapping

__all__ = [
    "SUMMARY_COLUMNS",
    "EditResult",
    "FlowProgress",
    "edit_lines",
    "flow_progress",
    "merge_rule_text",
    "summary_table",
]

SUMMARY_COLUMNS = ("created", "linked", "updated", "conflicts", "failed")


class FlowProgress:
    """One bar per flow, advanced as records are linked or created."""

    def __init__(self, progress: Progress, totals: Mapping[str, int]) -> None:
        self._progress = progress
        self._tasks: dict[str, TaskID] = {
            flow: progress.add_task(flow, total=max(total, 1), start=False, status="waiting")
            for flow, total in totals.items()
        }
        self._current: str | None = None

    def start(self, flow: str) -> None:
        """``flow`` begins (the engine's ``progress`` callback): the one before it is done."""
        self._finish_current()
        self._current = flow
        task = self._tasks.get(flow)
        if task is not None:
            self._progress.start_task(task)
            self._progress.update(task, status="reading both sides, matching")

    def record_done(self, flow: str) -> None:
        """One record of ``flow`` was linked or created."""
        task = self._tasks.get(flow)
        if task is not None:
            self._progress.update(task, advance=1, status="linking and creating")

    def finish(self) -> None:
        """The cycle is over: every bar is full."""
        self._finish_current()
        for flow, task in self._tasks.items():
            if not self._progress.tasks[task].finished:
                self._complete(flow, task)

    def _finish_current(self) -> None:
        if self._current is not None and self._current in self._tasks:
            self._complete(self._current, self._tasks[self._current])
        self._current = None

    def _complete(self, _flow: str, task: TaskID) -> None:
        total = self._progress.tasks[task].total or 1
        self._progress.start_task(task)
        self._progress.update(task, completed=total, status="done")


@contextmanager
def flow_progress(console: Console, totals: Mapping[str, int]) -> Iterator[FlowProgress]:
    """Bars for the flows of one cycle; ``totals``: PowerOffice records per flow."""
    progress = Progress(
        SpinnerColumn(finished_text="[green]✓[/]"),
        TextColumn("[bold]{task.description:<12}"),
        BarColumn(bar_width=32),
        MofNCompleteColumn(),
        TextColumn("records"),
        TimeElapsedColumn(),
        TextColumn("[dim]{task.fields[status]}"),
        console=console,
        transient=False,
    )
    with progress:
        bars = FlowProgress(progress, totals)
        try:
            yield bars
        finally:
            bars.finish()


def summary_table(report: CycleReport, *, title: str) -> Table:
    """Per flow: created, linked, updated, conflicts, failed, and a total row."""
    table = Table(title=title, title_justify="left", show_footer=True)
    table.add_column("flow", footer="total")
    for column in SUMMARY_COLUMNS:
        total = sum(flow.counts.get(column, 0) for flow in report.flows.values())
        table.add_column(column, justify="right", footer=str(total))
    for flow_id, flow in report.flows.items():
        table.add_row(
            flow_id, *(_cell(column, flow.counts.get(column, 0)) for column in SUMMARY_COLUMNS)
        )
    return table


def _cell(column: str, value: int) -> str:
    if not value:
        return "[dim]0[/]"
    colour = {"conflicts": "yellow", "failed": "red"}.get(column, "green")
    return f"[{colour}]{value}[/]"


def merge_rule_text(mapping: SyncMapping, flow_id: str) -> str:
    """The flow's merge rules in words: ``OrganizationNumber = organization_number, or ...``."""
    rules = mapping.flow(flow_id).merge_rules
    parts = []
    for rule in rules:
        text = f"{rule.poweroffice} = {rule.pms}"
        if rule.when:
            text += " (" + ", ".join(f"{k} {v}" for k, v in rule.when.items()) + ")"
        parts.append(text)
    return ", or ".join(parts) or "no merge rule"


@dataclass(frozen=True)
class EditResult:
    """One edit made on one side and what the other side held before and after a cycle."""

    direction: str  # "PowerOffice → PMS"
    what: str  # 'customer "Nordlys Elektro AS" phone'
    source_system: str
    target_system: str
    old: Any
    new: Any
    target_before: Any
    target_after: Any
    seconds: float

    @property
    def arrived(self) -> bool:
        """True when the other side now holds the edited value."""
        return bool(self.target_after == self.new)


def edit_lines(result: EditResult, quote: Callable[[Any], str]) -> list[str]:
    """The lines telling one edit's journey."""
    mark = "[green]✓ arrived[/]" if result.arrived else "[red]✗ did not arrive[/]"
    width = max(len(result.source_system) + 10, len(result.target_system) + 13)
    return [
        f"[bold]{result.direction}[/]  {result.what}",
        f"  {'edited in ' + result.source_system:<{width}} "
        f"{quote(result.old)} → {quote(result.new)}",
        f"  {result.target_system + ' before sync':<{width}} {quote(result.target_before)}",
        f"  {result.target_system + ' after sync':<{width}} {quote(result.target_after)}   "
        f"{mark} [dim](one sync cycle, {result.seconds:.1f} s)[/]",
    ]
