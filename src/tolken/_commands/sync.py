"""``tolken sync``, ``tolken plan`` and ``tolken retry``: run the engine and show what it did."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from tolken._commands.common import (
    EXIT_CONFIG,
    console,
    dump_json,
    load,
    one_line_errors,
    open_command_engine,
)
from tolken._signals import stop_on_signals
from tolken.engine import CycleReport, SyncEngine
from tolken.errors import AuthError, ConfigError, TolkenError

if TYPE_CHECKING:
    from rich.progress import TaskID

__all__ = ["plan_command", "print_report", "retry_command", "sync_command"]

_COLUMNS = ("created", "linked", "updated", "conflicts", "failed", "unchanged", "waiting")


def print_report(report: CycleReport, *, title: str = "sync") -> None:
    """A table of per-flow counts, the requests, the ambiguous matches and stopped flows."""
    from rich.table import Table  # rich's tables and bars load only when they are shown

    out = console()
    table = Table(title=f"tolken {title}" + (" (reconcile)" if report.reconciled else ""))
    table.add_column("flow")
    for column in (*_COLUMNS, "ambiguous"):
        table.add_column(column, justify="right")
    for flow_id, flow in report.flows.items():
        table.add_row(flow_id, *(str(flow.counts.get(c, 0)) for c in (*_COLUMNS, "ambiguous")))
    out.print(table)
    requests = ", ".join(f"{system} {n}" for system, n in report.requests.items())
    out.print(f"requests: {requests}")
    for flow_id, flow in report.flows.items():
        if flow.stopped:
            out.print(f"[bold red]{flow_id} stopped:[/] {flow.stopped}")
        extra = {k: flow.counts.get(k, 0) for k in ("deactivated", "pms_deleted")}
        if any(extra.values()):
            out.print(
                f"{flow_id}: {extra['deactivated']} deactivated in the PMS, "
                f"{extra['pms_deleted']} deleted in the PMS (links marked)"
            )
    for match in report.ambiguous:
        other = "PMS" if match.source == "poweroffice" else "PowerOffice"
        out.print(
            f"ambiguous: {match.flow} {match.source} {match.record_id} matches {other} "
            f"{', '.join(match.candidates)} by {match.rule} (settle with tolken link)"
        )
    if report.total("failed"):
        out.print(f"{report.total('failed')} record(s) parked: see tolken failures")
    if report.interrupted:
        out.print("interrupted: the record in flight was finished and committed")


@dataclass
class _Hooks:
    """The engine's progress callbacks (both None when nothing is shown)."""

    start: Callable[[str], None] | None = None
    record: Callable[[str, int, int], None] | None = None


@contextmanager
def _progress(enabled: bool) -> Iterator[_Hooks]:
    """A progress bar per flow on a terminal (records applied of those planned)."""
    out = console()
    if not enabled or not out.is_terminal:
        yield _Hooks()
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = (
        TextColumn("{task.description:<12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=out, transient=False) as bars:
        tasks: dict[str, TaskID] = {}

        def start(flow: str) -> None:
            tasks[flow] = bars.add_task(flow, total=None)

        def record(flow: str, done: int, total: int) -> None:
            if flow in tasks:
                bars.update(tasks[flow], completed=done, total=total)

        yield _Hooks(start, record)


def sync_command(
    config_path: Path,
    *,
    tenant: str | None = None,
    once: bool,
    watch: bool,
    as_json: bool,
    reconcile: bool,
    confirm_deletes: bool,
) -> None:
    """Body of ``tolken sync``."""
    if once and watch:
        typer.echo("error: choose one of --once and --watch", err=True)
        raise typer.Exit(EXIT_CONFIG)
    if watch and tenant is not None:
        typer.echo(
            "error: a fleet's tenants are synced by `tolken worker`; "
            "use sync --once --tenant ID for one cycle now",
            err=True,
        )
        raise typer.Exit(EXIT_CONFIG)
    config = load(config_path, tenant)
    if watch and config.serve is not None and config.serve.token is not None:
        # With a serve: section the watch loop also receives PMS webhooks, which
        # needs the web app: run exactly what `tolken serve` runs.
        from tolken.web.serve import run_serve

        with one_line_errors():
            code = run_serve(
                config,
                echo=typer.echo,
                on_cycle=_cycle_printer(as_json),
                reconcile_first=reconcile,
            )
        raise typer.Exit(code)
    with one_line_errors(), open_command_engine(config) as engine, _started_frozen():
        if not watch:
            with stop_on_signals(engine.request_stop), _progress(not as_json) as hooks:
                report = engine.run_cycle(
                    reconcile=reconcile,
                    confirm_deletes=confirm_deletes,
                    progress=hooks.start,
                    on_record=hooks.record,
                )
            if as_json:
                dump_json(report.to_json())
            else:
                print_report(report)
            return
        _watch(engine, as_json=as_json, reconcile_first=reconcile)


@contextmanager
def _started_frozen() -> Iterator[None]:
    """Keep the garbage collector off what start-up built while the command runs.

    The modules, models, mapping and engine live as long as the command, but
    each full collection walked them again (about 40 % of the collector's time
    in an initial sync). Unfrozen at the end, so a caller that runs the
    command in-process (the CLI tests) can collect them afterwards.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _cycle_printer(as_json: bool) -> Callable[[CycleReport], None]:
    def on_cycle(report: CycleReport) -> None:
        if as_json:
            dump_json(report.to_json(), one_line=True)  # JSON Lines: one object per cycle
        else:
            counts = ", ".join(f"{k} {report.total(k)}" for k in _COLUMNS if report.total(k))
            kind = "reconcile" if report.reconciled else "cycle"
            console().print(f"{kind} done: {counts or 'nothing to do'}")

    return on_cycle


def _watch(engine: SyncEngine, *, as_json: bool, reconcile_first: bool) -> None:
    on_cycle = _cycle_printer(as_json)

    def on_error(exc: TolkenError) -> bool:
        # Bad credentials or config need a person; an outage is waited out.
        if isinstance(exc, AuthError | ConfigError):
            return False
        typer.echo(f"error: {exc} (retrying next cycle)", err=True)
        return True

    with stop_on_signals(engine.request_stop):
        engine.watch(on_cycle=on_cycle, on_error=on_error, reconcile_first=reconcile_first)


def plan_command(
    config_path: Path, *, tenant: str | None = None, as_json: bool, reconcile: bool
) -> None:
    """Body of ``tolken plan``: a dry run that writes nothing anywhere."""
    config = load(config_path, tenant)
    with (
        one_line_errors(),
        open_command_engine(config) as engine,
        _progress(not as_json) as hooks,
    ):
        report = engine.run_cycle(
            dry_run=True, reconcile=reconcile, progress=hooks.start, on_record=hooks.record
        )
    if as_json:
        dump_json(report.to_json())
        return
    from rich.table import Table

    out = console()
    table = Table(title="tolken plan (dry run: nothing was written)")
    for column in ("flow", "action", "PowerOffice", "PMS", "detail"):
        table.add_column(column)
    for change in report.planned:
        table.add_row(
            change.flow,
            change.kind,
            change.poweroffice_id or "-",
            change.pms_id or "-",
            change.detail,
        )
    out.print(table)
    if not report.planned:
        out.print("nothing to write")
    for match in report.ambiguous:
        out.print(
            f"ambiguous: {match.flow} {match.source} {match.record_id} matches "
            f"{', '.join(match.candidates)} by {match.rule}"
        )
    for flow_id, flow in report.flows.items():
        if flow.counts.get("waiting"):
            out.print(f"{flow_id}: {flow.counts['waiting']} record(s) wait for a linked reference")
        if flow.stopped:
            out.print(f"{flow_id} would stop: {flow.stopped}")


def retry_command(
    config_path: Path, failure_ids: list[int], *, tenant: str | None = None, as_json: bool
) -> None:
    """Body of ``tolken retry``: make parked records due now, then run a cycle."""
    config = load(config_path, tenant)
    with one_line_errors(), open_command_engine(config) as engine:
        due = engine.store.retry_failures_now(failure_ids or None)
        if failure_ids and due == 0:
            typer.echo("error: no open failure with that id (see tolken failures)", err=True)
            raise typer.Exit(1)
        report = engine.run_cycle()
    if as_json:
        dump_json({"retried": due, **report.to_json()})
    else:
        console().print(f"retrying {due} parked record(s)")
        print_report(report, title="retry")
