"""``tolken worker`` and ``tolken tenants …``: run and manage a fleet (a config with ``fleet:``)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import typer
from pydantic import SecretStr, ValidationError
from rich.table import Table

from tolken._commands.common import (
    EXIT_CONFIG,
    EXIT_FATAL,
    console,
    dump_json,
    one_line_errors,
    print_error,
)
from tolken.config import FleetConfig, TenantSettings, load_fleet_config
from tolken.errors import ConfigError
from tolken.fleet import (
    Fleet,
    check_tenant,
    finalize_onboarding,
    initiate_onboarding,
    open_fleet,
    run_worker,
)
from tolken.logging import configure_logging
from tolken.store import DuplicateTenant, Tenant, UnknownTenant
from tolken.vocabulary import ConflictPolicy

__all__ = [
    "tenants_add",
    "tenants_check",
    "tenants_list",
    "tenants_onboard",
    "tenants_rekey",
    "tenants_remove",
    "tenants_set",
    "tenants_update",
    "worker_command",
]


def load_fleet(path: Path, *, log_level: str = "ERROR") -> FleetConfig:
    """The fleet config at ``path`` (exit 2 when bad or single-mode); logs on stderr."""
    try:
        config = load_fleet_config(path)
    except ConfigError as exc:
        print_error(str(exc))
        raise typer.Exit(EXIT_CONFIG) from None
    configure_logging(config.secrets(), level=os.environ.get("TOLKEN_LOG_LEVEL", log_level))
    return config


@contextmanager
def _fleet(config_path: Path) -> Iterator[Fleet]:
    config = load_fleet(config_path)
    with one_line_errors(), open_fleet(config) as fleet:
        try:
            yield fleet
        except UnknownTenant as exc:
            print_error(f"{exc} (tolken tenants list shows them)")
            raise typer.Exit(EXIT_CONFIG) from None


def worker_command(config_path: Path, *, concurrency: int | None) -> None:
    """Body of ``tolken worker``."""
    config = load_fleet(config_path, log_level="INFO")
    if concurrency is not None and concurrency < 1:
        print_error("--concurrency must be at least 1")
        raise typer.Exit(EXIT_CONFIG)
    with one_line_errors():
        code = run_worker(config, concurrency=concurrency)
    # Everything is closed and committed: skip the interpreter's teardown of a large heap
    # (seconds on a busy machine), which a supervisor stopping workers one by one waits for.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _row(fleet: Fleet, tenant: Tenant) -> dict[str, Any]:
    counts = fleet.store.for_tenant(tenant.id).flow_counts()
    return {
        "id": tenant.id,
        "state": tenant.status,
        "last_run": tenant.last_run_at,
        "next_run": None if tenant.paused else tenant.next_run_at,
        "links": sum(c.active_links for c in counts.values()),
        "failures": sum(c.open_failures for c in counts.values()),
        "failures_in_a_row": tenant.failures_in_a_row,
        "last_error": tenant.last_error,
    }


def _when(value: Any) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


def tenants_list(config_path: Path, *, as_json: bool) -> None:
    """Body of ``tolken tenants list``."""
    with _fleet(config_path) as fleet:
        rows = [_row(fleet, tenant) for tenant in fleet.registry.all()]
    if as_json:
        dump_json(rows)
        return
    table = Table(title=f"tenants ({len(rows)})")
    for column in ("id", "state", "last run", "next run", "links", "failures", "last error"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["id"],
            row["state"],
            _when(row["last_run"]),
            _when(row["next_run"]),
            str(row["links"]),
            str(row["failures"]),
            row["last_error"] or "",
        )
    console().print(table)


def _invalid_tenant(tenant_id: str, exc: ValidationError) -> NoReturn:
    """Name every problem of a tenant's settings on one line; exit 2."""
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
    print_error(f"tenant {tenant_id!r}: {problems}")
    raise typer.Exit(EXIT_CONFIG) from None


def tenants_add(
    config_path: Path,
    tenant_id: str,
    *,
    poweroffice_client_key: str,
    pms_api_key: str,
    pms_base_url: str | None,
    webhook_secret: str | None,
    interval_seconds: float | None,
    conflict_policy: ConflictPolicy | None,
    as_json: bool,
) -> None:
    """Body of ``tolken tenants add``."""
    try:
        settings = TenantSettings(
            id=tenant_id,
            poweroffice_client_key=SecretStr(poweroffice_client_key),
            pms_api_key=SecretStr(pms_api_key),
            pms_base_url=pms_base_url,
            webhook_secret=SecretStr(webhook_secret) if webhook_secret else None,
            interval_seconds=interval_seconds,
            conflict_policy=conflict_policy,
        )
    except ValidationError as exc:
        _invalid_tenant(tenant_id, exc)
    with _fleet(config_path) as fleet:
        try:
            fleet.config.tenant_config(settings)  # a PMS base URL from somewhere
            tenant = fleet.registry.add(settings)
        except DuplicateTenant as exc:
            print_error(f"{exc} (tolken tenants remove it first)")
            raise typer.Exit(EXIT_CONFIG) from None
        row = _row(fleet, tenant)
    if as_json:
        dump_json(row)
    else:
        console().print(f"added tenant {tenant.id}: due now (a worker syncs it)")


def tenants_update(
    config_path: Path, tenant_id: str, *, changes: dict[str, object], as_json: bool
) -> None:
    """Body of ``tolken tenants update``: the options given replace those settings."""
    given = {key: value for key, value in changes.items() if value is not None}
    if not given:
        print_error("nothing to change: give at least one option (see --help)")
        raise typer.Exit(EXIT_CONFIG)
    with _fleet(config_path) as fleet:
        current = fleet.registry.get(tenant_id).settings
        try:
            settings = TenantSettings.model_validate(
                {**current.model_dump(), **given, "id": tenant_id}
            )
            fleet.config.tenant_config(settings)  # a PMS base URL from somewhere
        except ValidationError as exc:
            _invalid_tenant(tenant_id, exc)
        tenant = fleet.registry.update(settings)
        row = _row(fleet, tenant)
    if as_json:
        dump_json(row)
    else:
        console().print(f"updated tenant {tenant.id}: {', '.join(sorted(given))}")


def tenants_rekey(config_path: Path, *, new_secret_key_env: str, as_json: bool) -> None:
    """Body of ``tolken tenants rekey``: every credential sealed under the new passphrase."""
    new_secret = os.environ.get(new_secret_key_env, "")
    if not new_secret:
        print_error(f"set the new passphrase in ${new_secret_key_env} (it is never an argument)")
        raise typer.Exit(EXIT_CONFIG)
    with _fleet(config_path) as fleet:
        if new_secret == fleet.config.fleet.secret_key.get_secret_value():
            print_error(f"${new_secret_key_env} holds the passphrase already in use")
            raise typer.Exit(EXIT_CONFIG)
        count = fleet.registry.rekey(SecretStr(new_secret))
    if as_json:
        dump_json({"tenants": count})
    else:
        console().print(
            f"re-encrypted the credentials of {count} tenant(s); set TOLKEN_SECRET_KEY (the"
            " config's fleet.secret_key) to the new passphrase everywhere before starting"
            " workers and serve again"
        )


def tenants_set(config_path: Path, tenant_id: str, *, action: str, as_json: bool) -> None:
    """Body of ``tolken tenants pause|resume|resync``."""
    with _fleet(config_path) as fleet:
        queued = None
        if action == "pause":
            tenant = fleet.registry.pause(tenant_id)
        elif action == "resume":
            tenant = fleet.registry.resume(tenant_id)
        else:
            tenant = fleet.registry.get(tenant_id)
            if tenant.paused:
                print_error(f"tenant {tenant_id} is paused: resume it first")
                raise typer.Exit(EXIT_FATAL)
            queued = fleet.queue_sync(tenant_id, "resync")
            tenant = fleet.registry.get(tenant_id)
        row = _row(fleet, tenant)
    if as_json:
        dump_json({**row, **({} if queued is None else {"queued": queued})})
        return
    messages = {
        "pause": f"paused {tenant_id}: no further job is queued (one running finishes)",
        "resume": f"resumed {tenant_id}: due now",
        "resync": f"reconcile of {tenant_id} queued"
        + ("" if queued else " (joined the job already waiting)"),
    }
    console().print(messages[action])


def tenants_remove(config_path: Path, tenant_id: str, *, purge: bool, as_json: bool) -> None:
    """Body of ``tolken tenants remove``."""
    with _fleet(config_path) as fleet:
        fleet.remove(tenant_id, purge=purge)
    if as_json:
        dump_json({"id": tenant_id, "removed": True, "purged": purge})
    elif purge:
        console().print(f"removed {tenant_id} and every row of its data")
    else:
        console().print(f"removed {tenant_id} (its links stay: add it again to carry on)")


def tenants_check(config_path: Path, tenant_id: str, *, as_json: bool) -> None:
    """Body of ``tolken tenants check``: exit 1 when something is missing."""
    with _fleet(config_path) as fleet:
        check = check_tenant(fleet, tenant_id)
    if as_json:
        dump_json(
            {
                "id": check.tenant,
                "ok": check.ok,
                "client_name": check.client_name,
                "valid_privileges": check.valid_privileges,
                "invalid_privileges": check.invalid_privileges,
                "poweroffice_error": check.poweroffice_error,
                "pms_error": check.pms_error,
            }
        )
    else:
        out = console()
        if check.poweroffice_error:
            out.print(f"FAIL poweroffice: {check.poweroffice_error}")
        else:
            out.print(f"PASS poweroffice: client {check.client_name}")
            out.print(f"  valid privileges: {', '.join(check.valid_privileges) or '-'}")
            out.print(f"  invalid privileges: {', '.join(check.invalid_privileges) or '-'}")
        out.print(f"FAIL pms: {check.pms_error}" if check.pms_error else "PASS pms: authorised")
    raise typer.Exit(0 if check.ok else EXIT_FATAL)


def tenants_onboard(
    config_path: Path,
    *,
    redirect_uri: str | None,
    organization_number: str | None,
    finalize: str | None,
    pms_api_key: str | None,
    pms_base_url: str | None,
    interval_seconds: float | None,
    conflict_policy: ConflictPolicy | None,
    as_json: bool,
) -> None:
    """Body of ``tolken tenants onboard``: the consent URL, or the tenants of a consent."""
    if (redirect_uri is None) == (finalize is None):
        print_error("give one of --redirect-uri URL (start) and --finalize TOKEN (finish)")
        raise typer.Exit(EXIT_CONFIG)
    if finalize is None:
        assert redirect_uri is not None
        config = load_fleet(config_path)
        with one_line_errors():
            consent = initiate_onboarding(
                config, redirect_uri, organization_number=organization_number
            )
        if as_json:
            dump_json({"consent_url": consent.url, "valid_until": consent.valid_until})
        else:
            typer.echo(consent.url)
        return
    if not pms_api_key:
        print_error("--finalize needs --pms-api-key (or PMS_API_KEY) for the new tenants")
        raise typer.Exit(EXIT_CONFIG)
    with _fleet(config_path) as fleet:
        if pms_base_url is None and fleet.config.pms.base_url is None:
            print_error("--finalize needs --pms-base-url (the config has no pms.base_url)")
            raise typer.Exit(EXIT_CONFIG)
        added = finalize_onboarding(
            fleet,
            finalize,
            pms_api_key=SecretStr(pms_api_key),
            pms_base_url=pms_base_url,
            interval_seconds=interval_seconds,
            conflict_policy=conflict_policy,
        )
        rows = [_row(fleet, tenant) for tenant in added]
    if as_json:
        dump_json(rows)
    else:
        for tenant in added:
            if tenant.status == "paused":
                console().print(
                    f"added tenant {tenant.id}: paused (several clients came with one PMS key;"
                    f" give it its own and run `tolken tenants resume {tenant.id}`)"
                )
            else:
                console().print(f"added tenant {tenant.id}: due now (a worker syncs it)")
