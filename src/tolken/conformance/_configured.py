"""Run the configured-connector rules: ``tolken check-pms --config`` for a non-contract PMS."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import islice
from typing import Any

import httpx

from tolken.config import RestResource, TolkenConfig
from tolken.conformance._connector_context import ConnectorContext, TestFields, record_exchanges
from tolken.conformance._registry import RuleResult
from tolken.conformance._rules_connector import CONNECTOR_RULES
from tolken.conformance._runner import PROBE_RULE, ConformanceReport
from tolken.connectors.base import Connector, load_connector_class
from tolken.errors import ConfigError, Stopped, TolkenError, TransportError, Unreachable
from tolken.mapping import load_mapping

__all__ = ["declares_delete", "run_configured_check"]


def declares_delete(config: TolkenConfig, resource: str) -> bool:
    """Whether the configured PMS connector can delete records of ``resource``.

    Only a ``rest`` section can say it cannot (``delete: false``); a Python
    connector is taken at its word until its delete fails.
    """
    rest = config.pms.rest
    if rest is None or resource not in ("customers", "projects"):
        return True
    spec: RestResource = getattr(rest.resources, resource)
    return spec.delete is not False


def _capture(config: TolkenConfig) -> tuple[str, float]:
    """How the configured PMS is read for changes, and the overlap it re-reads (seconds)."""
    rest = config.pms.rest
    if rest is None:
        return "listing", 0.0
    return rest.changes.type, rest.changes.overlap_seconds


def run_configured_check(
    config: TolkenConfig,
    *,
    rules: Sequence[str] | None = None,
    announce: Callable[[str], None] | None = None,
    transport: httpx.BaseTransport | None = None,
) -> ConformanceReport:
    """Check the PMS through the connector ``config`` declares, and clean up after.

    ``transport`` lets tests send through an in-process app.
    """
    names = list(rules) if rules is not None else list(CONNECTOR_RULES)
    unknown = [n for n in names if n not in CONNECTOR_RULES]
    if unknown:
        raise ConfigError(
            f"unknown rule(s) {', '.join(unknown)}; known: {', '.join(CONNECTOR_RULES)}"
        )
    fields = TestFields.from_mapping(load_mapping(config.mapping, pms_contract=False))
    deletes = declares_delete(config, fields.resource)
    capture, overlap = _capture(config)
    selected = [CONNECTOR_RULES[n] for n in names]
    exchanges: list[Any] = []
    with httpx.Client(
        timeout=config.pms.timeout_seconds,
        event_hooks=record_exchanges(exchanges),
        transport=transport,
    ) as http:
        connector = _connector(config, http)
        try:
            ctx = ConnectorContext(
                connector, fields, deletes, capture, overlap, exchanges=exchanges
            )
            total = 1 + sum(r.creates.get("records", 0) for r in selected)
            plan = [
                f"check-pms will create up to {total} {fields.resource} named "
                f"'{ctx.name('')}…' through the {config.pms.connector} connector",
                "it deletes one first to make sure it can, deletes them all at the end, "
                "and lists any it cannot delete"
                if deletes
                else "the configuration declares no delete: those records stay, "
                "and are listed at the end",
            ]
            _reach(ctx, config)
            for line in plan:
                if announce is not None:
                    announce(line)
            results: list[RuleResult] = []
            try:
                cannot = _probe_delete(ctx) if deletes else None
                if cannot is not None:
                    results.append(RuleResult(PROBE_RULE, False, cannot, "fail", tuple(exchanges)))
                for chosen in selected:
                    if cannot is not None and chosen.creates:
                        results.append(chosen.skip(f"it creates test records ({PROBE_RULE})"))
                    else:
                        results.append(chosen.run(ctx))
            finally:
                notes, left = ctx.clean_up()
        finally:
            connector.close()
    return ConformanceReport(
        url=config.pms.base_url,
        results=tuple(results),
        cleanup=tuple(notes),
        plan=tuple(plan),
        left_behind=tuple(left),
        created=tuple(f"{resource}/{record_id}" for resource, record_id in ctx.created),
    )


def _connector(config: TolkenConfig, http: httpx.Client) -> Connector:
    connector_class: Any = load_connector_class(config.pms.connector)
    try:
        connector: Connector = connector_class(config.pms, http=http)
    except TypeError as exc:
        raise ConfigError(f"cannot build the {config.pms.connector} connector: {exc}") from exc
    return connector


def _reach(ctx: ConnectorContext, config: TolkenConfig) -> None:
    """Fail fast, with one clear error, when nothing answers at the PMS's URL."""
    try:
        list(islice(ctx.connector.list(ctx.fields.resource), 1))
    except (Unreachable, TransportError) as exc:
        raise Unreachable(
            f"cannot reach the PMS at {config.pms.base_url}: {exc}", system="pms"
        ) from exc
    except Stopped:
        raise
    except TolkenError:
        return  # the list rule says what is wrong


def _probe_delete(ctx: ConnectorContext) -> str | None:
    """Create one test record and delete it: None when it is gone after, else why not."""
    try:
        record = ctx.create("probe")
    except TolkenError:
        return None  # the rules say what is wrong with creating
    why = ctx.delete_and_confirm(record.id)
    if why is None:
        ctx.forget(record.id)
        return None
    return (
        f"the check cannot delete what it creates: it created {ctx.fields.resource}/{record.id} "
        f"and {why}; no further test records are created"
    )
