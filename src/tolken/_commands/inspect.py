"""``tolken status``, ``links``, ``conflicts``, ``failures``, ``link``: read and mend the store."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from tolken._commands.common import console, dump_json, load, one_line_errors, open_command_engine
from tolken.config import TolkenConfig
from tolken.store import TenantStore, open_store
from tolken.vocabulary import FlowId

__all__ = [
    "conflicts_command",
    "failures_command",
    "link_command",
    "links_command",
    "status_command",
]

FLOWS = ("departments", "customers", "projects")


@contextmanager
def _store(config: TolkenConfig) -> Iterator[TenantStore]:
    """The configured tenant's view of the store, closed afterwards."""
    with open_store(config.store) as store:
        yield store.for_tenant(config.tenant)


def _flow(value: str | None) -> FlowId | None:
    if value is None:
        return None
    if value not in FLOWS:
        typer.echo(f"error: unknown flow {value!r}; choose one of {', '.join(FLOWS)}", err=True)
        raise typer.Exit(2)
    return value  # type: ignore[return-value]


def _show(
    rows: list[dict[str, Any]],
    *,
    as_json: bool,
    title: str,
    columns: Sequence[str],
    cells: Callable[[dict[str, Any]], Sequence[str]],
) -> None:
    """``rows`` as a JSON array, or as a table titled with their count, one row each."""
    if as_json:
        dump_json(rows)
        return
    table = Table(title=f"{title} ({len(rows)})")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*cells(row))
    console().print(table)


def status_command(config_path: Path, *, tenant: str | None = None, as_json: bool) -> None:
    """Body of ``tolken status``."""
    config = load(config_path, tenant)
    with one_line_errors(), _store(config) as store:
        counts = store.flow_counts()
        runs = store.last_runs(limit=1)
    flows: dict[str, Any] = {}
    for flow_id in FLOWS:
        c = counts.get(flow_id)
        flows[flow_id] = {
            "links": dict(c.links) if c else {},
            "active_links": c.active_links if c else 0,
            "failures": c.open_failures if c else 0,
            "conflicts": c.parked_conflicts if c else 0,
            "pending_creates": c.pending_creates if c else 0,
        }
    last = asdict(runs[0]) if runs else None
    if as_json:
        dump_json({"tenant": config.tenant, "flows": flows, "last_run": last})
        return
    out = console()
    table = Table(title=f"tolken status (tenant {config.tenant})")
    for column in (
        "flow",
        "active links",
        "other links",
        "failures",
        "parked conflicts",
        "pending creates",
    ):
        table.add_column(column, justify="right" if column != "flow" else "left")
    for flow_id, f in flows.items():
        other = ", ".join(f"{k} {v}" for k, v in f["links"].items() if k != "active") or "-"
        table.add_row(
            flow_id,
            str(f["active_links"]),
            other,
            str(f["failures"]),
            str(f["conflicts"]),
            str(f["pending_creates"]),
        )
    out.print(table)
    if last is None:
        out.print("no sync has run yet")
    else:
        started = f"{last['started_at']:%Y-%m-%d %H:%M:%S}"
        error = f", error: {last['error']}" if last["error"] else ""
        out.print(f"last run #{last['id']}: {last['status']}, started {started}{error}")


def links_command(
    config_path: Path,
    *,
    tenant: str | None = None,
    flow: str | None,
    state: str | None,
    as_json: bool,
) -> None:
    """Body of ``tolken links``."""
    config = load(config_path, tenant)
    with one_line_errors(), _store(config) as store:
        links = store.list_links(_flow(flow), state=state)  # type: ignore[arg-type]
    rows = [link._asdict() for link in links]
    for row in rows:
        row["poweroffice_id"], row["pms_id"] = str(row["poweroffice_id"]), str(row["pms_id"])
    _show(
        rows,
        as_json=as_json,
        title="links",
        columns=("id", "flow", "PowerOffice", "PMS", "state", "since"),
        cells=lambda row: (
            str(row["id"]),
            row["flow"],
            row["poweroffice_id"],
            row["pms_id"],
            row["state"],
            f"{row['created_at']:%Y-%m-%d %H:%M}",
        ),
    )


def conflicts_command(
    config_path: Path, *, tenant: str | None = None, flow: str | None, parked: bool, as_json: bool
) -> None:
    """Body of ``tolken conflicts``."""
    config = load(config_path, tenant)
    with one_line_errors(), _store(config) as store:
        found = store.list_conflicts(_flow(flow), parked_only=parked)
    rows = [asdict(c) for c in found]
    _show(
        rows,
        as_json=as_json,
        title="conflicts",
        columns=("id", "flow", "link", "field", "PowerOffice", "PMS", "policy", "winner"),
        cells=lambda row: (
            str(row["id"]),
            row["flow"],
            str(row["link_id"]),
            row["field"],
            repr(row["poweroffice_value"]),
            repr(row["pms_value"]),
            row["policy"],
            row["winner"],
        ),
    )


def failures_command(
    config_path: Path,
    *,
    tenant: str | None = None,
    flow: str | None,
    include_resolved: bool,
    as_json: bool,
) -> None:
    """Body of ``tolken failures``."""
    config = load(config_path, tenant)
    with one_line_errors(), _store(config) as store:
        found = store.list_failures(_flow(flow), include_resolved=include_resolved)
    rows = [asdict(f) for f in found]
    _show(
        rows,
        as_json=as_json,
        title="parked records",
        columns=("id", "flow", "side", "record", "error", "message", "attempts", "next try"),
        cells=lambda row: (
            str(row["id"]),
            row["flow"],
            row["side"],
            row["record_id"],
            row["error_class"],
            row["message"],
            str(row["attempts"]),
            f"{row['next_attempt_at']:%Y-%m-%d %H:%M:%S}",
        ),
    )


def link_command(
    config_path: Path,
    *,
    tenant: str | None = None,
    flow: str,
    po_id: str,
    pms_id: str,
    as_json: bool,
) -> None:
    """Body of ``tolken link``: link two records by hand and merge them."""
    config = load(config_path, tenant)
    flow_id = _flow(flow)
    assert flow_id is not None
    # A missing record or one already linked is refused with one line and exit 1.
    with one_line_errors(), open_command_engine(config) as engine:
        report = engine.link_by_hand(flow_id, po_id, pms_id)
    counts = report.flow(flow_id).counts
    if as_json:
        dump_json({"flow": flow_id, "poweroffice_id": po_id, "pms_id": pms_id, **counts})
        return
    message = f"linked {flow_id}: PowerOffice {po_id} <-> PMS {pms_id}"
    if counts.get("updated"):
        message += " (merged: values copied across)"
    if counts.get("conflicts"):
        message += f"; {counts['conflicts']} conflict(s) recorded, see tolken conflicts"
    if counts.get("failed"):
        message += "; the merge failed and was parked, see tolken failures"
    console().print(message)
