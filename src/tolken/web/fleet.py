"""The fleet-mode web app: the tenants page, each tenant's pages, per-tenant webhooks.

Built by :func:`create_fleet_app` over an open :class:`tolken.fleet.Fleet`
(its store, tenant registry and job queue); like the
single-mode app it holds no sync logic and runs no sync: the workers do.

- ``/`` (JSON twin ``/api/tenants``): every tenant with its state, last and
  next run, links, open failures, parked conflicts and last error, with
  pause / resume / resync buttons (``POST /tenants/{id}/pause`` ..., JSON twins
  under ``/api/tenants/{id}/...``), behind the dashboard token and CSRF.
- ``/tenants/{id}/...`` (JSON ``/api/tenants/{id}/...``): the single-mode pages
  of that tenant (overview, conflicts, failures, links and their actions),
  reading ``store.for_tenant(id)`` only. A retry or a settled conflict queues
  the tenant's job.
- ``POST /webhooks/pms/{id}``: verified with that tenant's own webhook secret
  under single mode's rules (signature, timestamp, replay, size); an accepted
  delivery queues the tenant's job with reason ``webhook``. Unknown tenant:
  404; a tenant without a webhook secret or a bad signature: 401; a paused
  tenant: 202 but no job (the answer says so; resuming catches the change up
  from the PMS changes feed).
- ``/onboarding/...``: see :mod:`tolken.web.onboarding`; ``/metrics``: see
  :mod:`tolken.web.fleet_metrics`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from tolken.connectors.pms import WebhookRejected
from tolken.fleet import Fleet
from tolken.logging import get_logger, log_context
from tolken.store import FlowCounts, JobReason, Store, Tenant, TenantRegistry, UnknownTenant
from tolken.vocabulary import FlowId
from tolken.web.app import app_shell, make_templates
from tolken.web.fleet_metrics import FleetMetrics
from tolken.web.pages import Context, api_router, router
from tolken.web.webhooks import (
    BodyTooLarge,
    ChangeItem,
    InvalidDelivery,
    WebhookReceiver,
    read_capped,
)

__all__ = ["create_fleet_app", "tenant_json"]

_log = get_logger("tolken.web")

# Paths that need no dashboard token: they authenticate by a signature or a sealed state.
_PUBLIC = frozenset({"/healthz", "/static/tolken.css", "/onboarding/callback"})
_WEBHOOKS = "/webhooks/pms/"


def _is_public(path: str) -> bool:
    return path in _PUBLIC or path.startswith(_WEBHOOKS)


def create_fleet_app(
    fleet: Fleet,
    *,
    metrics: FleetMetrics | None = None,
    clock: Callable[[], float] = time.time,
    extra: Callable[[FastAPI, Jinja2Templates], None] | None = None,
) -> FastAPI:
    """The fleet's web app; ``extra(app, templates)`` adds routes (the onboarding callback).

    ``clock`` (unix seconds) is for webhook freshness checks in tests.
    """
    config, store = fleet.config, fleet.store
    all_flows: tuple[FlowId, ...] = ("departments", "customers", "projects")
    flows = tuple(f for f in all_flows if config.sync.flow(f).enabled)
    templates = make_templates()
    metrics = metrics or FleetMetrics(fleet)

    def context(request: Request) -> Context:
        tenant_id = str(request.path_params.get("tenant", ""))
        _known(fleet.registry, tenant_id)  # a removed tenant's pages are gone at once
        return Context(
            store=store.for_tenant(tenant_id),
            tenant=tenant_id,
            flows=flows,
            # A retry or a settled conflict should not wait for the tenant's interval.
            wake=lambda: _wake(fleet, tenant_id),
            templates=templates,
            base=f"/tenants/{tenant_id}",
            api_base=f"/api/tenants/{tenant_id}",
        )

    def health() -> None:
        fleet.queue_depth()  # the store's database and the job queue in it

    app = app_shell(config.serve, templates, is_public=_is_public, health=health)
    app.state.context = context
    app.state.metrics = metrics
    _add_tenant_routes(app, store, fleet, templates)
    app.include_router(router, prefix="/tenants/{tenant}")
    app.include_router(api_router, prefix="/api/tenants/{tenant}")

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    _add_webhook_route(app, fleet, metrics, clock)
    if extra is not None:
        extra(app, templates)
    return app


def _known(registry: TenantRegistry, tenant_id: str) -> Tenant:
    try:
        return registry.get(tenant_id)
    except UnknownTenant:
        raise HTTPException(404, f"no tenant {tenant_id!r}") from None


def _wake(fleet: Fleet, tenant_id: str) -> None:
    _queue(fleet, tenant_id, "scheduled")


def _queue(fleet: Fleet, tenant_id: str, reason: JobReason) -> bool:
    queued = fleet.queue_sync(tenant_id, reason)
    _log.info("tenant job queued" if queued else "tenant job already waiting", tenant=tenant_id)
    return queued


# -- the tenants page -----------------------------------------------------------------


def tenant_json(tenant: Tenant, counts: Mapping[str, FlowCounts]) -> dict[str, Any]:
    """One row of the tenants page (``counts``: its flows' figures); never a secret."""
    return {
        "id": tenant.id,
        "state": tenant.status,
        "paused": tenant.paused,
        "last_run_at": _iso(tenant.last_run_at),
        "next_run_at": _iso(tenant.next_run_at),
        "last_error": tenant.last_error,
        "failures_in_a_row": tenant.failures_in_a_row,
        "links": sum(c.active_links for c in counts.values()),
        "open_failures": sum(c.open_failures for c in counts.values()),
        "conflicts": sum(c.parked_conflicts for c in counts.values()),
        "pms_base_url": tenant.settings.pms_base_url,
        "has_webhook_secret": tenant.settings.webhook_secret is not None,
        "pages": f"/tenants/{tenant.id}/",
    }


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def tenants_data(store: Store, fleet: Fleet) -> dict[str, Any]:
    """The tenants page: every tenant, by id, and the jobs waiting."""
    counts = store.fleet_view().flow_counts_by_tenant()  # four queries for the whole fleet
    tenants = [tenant_json(t, counts.get(t.id, {})) for t in fleet.registry.all()]
    states: dict[str, int] = {}
    for tenant in tenants:
        states[tenant["state"]] = states.get(tenant["state"], 0) + 1
    return {
        "now": store.now().isoformat(),
        "tenants": tenants,
        "states": states,
        "queue_depth": fleet.queue_depth(),
    }


Action = Literal["pause", "resume", "resync"]
_DONE = {"pause": "paused", "resume": "resumed", "resync": "queued for a resync"}


def _act(fleet: Fleet, tenant_id: str, action: Action) -> dict[str, Any]:
    """Pause, resume (due at once, and queued) or resync (a reconcile queued now) a tenant."""
    registry = fleet.registry
    _known(registry, tenant_id)
    queued = False
    with log_context(tenant=tenant_id):
        if action == "pause":
            registry.pause(tenant_id)
        elif action == "resume":
            registry.resume(tenant_id)
            queued = _queue(fleet, tenant_id, "scheduled")
        else:
            if registry.get(tenant_id).paused:
                raise HTTPException(409, f"tenant {tenant_id} is paused: resume it first")
            queued = _queue(fleet, tenant_id, "resync")
        _log.info("tenant action from the dashboard", action=action, queued=queued)
    return {"tenant": tenant_id, "action": action, "queued": queued}


def _add_tenant_routes(
    app: FastAPI, store: Store, fleet: Fleet, templates: Jinja2Templates
) -> None:
    @app.get("/")
    def tenants_page(request: Request) -> Response:
        data = tenants_data(store, fleet)
        return templates.TemplateResponse(
            request,
            "tenants.html",
            {
                **data,
                "title": "Tenants",
                "tenant": None,
                "base": "",
                "here": "/",
                "api_path": "/api/tenants",
                "refresh": 15,
                "done": _DONE.get(request.query_params.get("done", "")),
                "who": request.query_params.get("tenant", ""),
            },
        )

    @app.get("/api/tenants")
    def api_tenants() -> dict[str, Any]:
        return tenants_data(store, fleet)

    @app.get("/tenants/{tenant}")
    def tenant_home(tenant: str) -> Response:
        return RedirectResponse(f"/tenants/{tenant}/", status_code=307)

    @app.get("/api/tenants/{tenant}")
    def api_tenant(tenant: str) -> dict[str, Any]:
        found = _known(fleet.registry, tenant)
        return tenant_json(found, store.for_tenant(tenant).flow_counts())

    for action in ("pause", "resume", "resync"):
        _add_action(app, fleet, action)


def _add_action(app: FastAPI, fleet: Fleet, action: Action) -> None:
    @app.post(f"/tenants/{{tenant}}/{action}", name=f"{action}_form")
    def form(tenant: str) -> Response:
        _act(fleet, tenant, action)
        return RedirectResponse(f"/?done={action}&tenant={tenant}", status_code=303)

    @app.post(f"/api/tenants/{{tenant}}/{action}", name=f"{action}_api")
    def api(tenant: str) -> JSONResponse:
        return JSONResponse(_act(fleet, tenant, action), 202 if action != "pause" else 200)


# -- webhooks ---------------------------------------------------------------------------


def _receive_webhook(
    fleet: Fleet, tenant_id: str, headers: Any, body: bytes, clock: Callable[[], float]
) -> dict[str, Any]:
    """Verify one delivery with the tenant's secret and queue its job; the answer's body."""
    try:
        tenant = fleet.registry.get(tenant_id)
    except UnknownTenant:
        raise HTTPException(404, f"no tenant {tenant_id!r}") from None
    outcome: dict[str, Any] = {"accepted": True, "tenant": tenant_id}

    def take(_item: ChangeItem) -> None:
        if tenant.paused:
            # The change stays in the PMS changes feed: the first cycle after a resume reads it.
            outcome["queued"] = False
            outcome["note"] = f"tenant {tenant_id} is paused: no job is queued until it is resumed"
            return
        outcome["queued"] = fleet.queue_sync(tenant_id, "webhook")
        if not outcome["queued"]:
            outcome["note"] = "a job of this tenant is waiting already; it reads this change"

    store = fleet.store.for_tenant(tenant_id)
    receiver = WebhookReceiver(tenant.settings.webhook_secret, take, store=store, clock=clock)
    if not receiver.configured:
        raise WebhookRejected(f"tenant {tenant_id} has no webhook secret")
    item = receiver.receive(headers, body)
    outcome["item"] = {k: item.get(k) for k in ("seq", "type", "id", "op")}
    return outcome


def _add_webhook_route(
    app: FastAPI, fleet: Fleet, metrics: FleetMetrics, clock: Callable[[], float]
) -> None:
    """``POST /webhooks/pms/{tenant}``: the tenant's own secret, single mode's rules, a job."""

    @app.post("/webhooks/pms/{tenant}", include_in_schema=False)
    async def pms_webhook(request: Request, tenant: str) -> JSONResponse:
        def rejected(status: int, message: str) -> JSONResponse:
            metrics.webhooks.labels(tenant=tenant, outcome="rejected").inc()
            _log.warning("webhook rejected", tenant=tenant, reason=message)
            return JSONResponse({"error": message}, status)

        try:
            body = await read_capped(request.headers.get("content-length"), request.stream())
            # The registry and the replay cache block: keep them off the event loop.
            outcome = await run_in_threadpool(
                _receive_webhook, fleet, tenant, request.headers, body, clock
            )
        except HTTPException as exc:
            return rejected(exc.status_code, str(exc.detail))
        except BodyTooLarge as exc:
            return rejected(413, str(exc))
        except WebhookRejected as exc:
            return rejected(401, exc.message)
        except InvalidDelivery as exc:
            return rejected(400, str(exc))
        metrics.webhooks.labels(tenant=tenant, outcome="accepted").inc()
        _log.info("webhook accepted", tenant=tenant, queued=outcome.get("queued"))
        return JSONResponse(outcome, 202)
