"""Dashboard pages and their JSON twins (``/x`` renders exactly what ``/api/x`` returns).

Two routers over one tenant's store: :data:`router` (the HTML pages and their
forms) and :data:`api_router` (the JSON twins, mounted under ``/api``). Single
mode mounts them at the root; fleet mode mounts them under ``/tenants/{tenant}``
and ``/api/tenants/{tenant}`` (:mod:`tolken.web.fleet`). Each request finds its
:class:`Context` through ``app.state.context(request)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from tolken.logging import get_logger, log_context
from tolken.store import AlreadySettled, Failure, TenantStore, UnknownRecord
from tolken.vocabulary import FlowId, Side
from tolken.web.status import (
    conflict_json,
    failure_json,
    flow_statuses,
    history_json,
    link_json,
    run_json,
)

__all__ = ["Context", "api_router", "router"]

router = APIRouter()
api_router = APIRouter()
_log = get_logger("tolken.web")
_PAGE_SIZE = 100


@dataclass(frozen=True)
class Context:
    """What every page needs: the store, the tenant, the enabled flows, and the loop's bell.

    ``base`` is where the tenant's pages live (``""`` in single mode,
    ``/tenants/{id}`` in fleet mode) and ``api_base`` where their JSON twins do.
    """

    store: TenantStore
    tenant: str
    flows: tuple[str, ...]
    wake: Callable[[], None]
    templates: Jinja2Templates
    base: str = ""
    api_base: str = "/api"


def _ctx(request: Request) -> Context:
    resolve = cast(Callable[[Request], Context], request.app.state.context)
    return resolve(request)


def _page(request: Request, template: str, title: str, data: dict[str, Any]) -> Response:
    ctx = _ctx(request)
    here = request.url.path.removeprefix(ctx.base) or "/"
    return ctx.templates.TemplateResponse(
        request,
        template,
        {
            "title": title,
            "tenant": ctx.tenant,
            "now": ctx.store.now(),
            "base": ctx.base,
            "here": here,
            "api_path": ctx.api_base + (here if here != "/" else "/status"),
            **data,
        },
    )


def _flow(value: str | None) -> FlowId | None:
    if value in (None, ""):
        return None
    if value not in ("departments", "customers", "projects"):
        raise HTTPException(400, f"unknown flow {value!r}")
    return cast(FlowId, value)


# -- overview -------------------------------------------------------------------


def status_data(ctx: Context) -> dict[str, Any]:
    """Per flow counts, last run and lag; the newest runs and writes."""
    now = ctx.store.now()
    flows = flow_statuses(ctx.store, now, ctx.flows)
    runs = ctx.store.last_runs(limit=10)
    recent = ctx.store.recent_history(limit=15)
    return {
        "tenant": ctx.tenant,
        "now": now.isoformat(),
        "flows": [f.to_json() for f in flows],
        "totals": {
            "failures": sum(f.failures for f in flows),
            "conflicts": sum(f.conflicts for f in flows),
            "links": sum(f.active_links for f in flows),
        },
        "runs": [run_json(r) for r in runs],
        "recent": [history_json(h) for h in recent],
    }


@router.get("/")
def overview(request: Request) -> Response:
    # The overview is left open on a screen: it refreshes itself.
    data = {**status_data(_ctx(request)), "refresh": 15}
    return _page(request, "index.html", "Overview", data)


@api_router.get("/status")
def api_status(request: Request) -> dict[str, Any]:
    return status_data(_ctx(request))


# -- failures -------------------------------------------------------------------


def _failure_row(ctx: Context, failure: Failure) -> dict[str, Any]:
    data = failure_json(failure)
    if failure.side == "poweroffice":
        link = ctx.store.get_link_by_po(failure.flow, failure.record_id)
    else:
        link = ctx.store.get_link_by_pms(failure.flow, failure.record_id)
    data["link_id"] = link.id if link else None
    return data


def failures_data(ctx: Context, flow: FlowId | None, include_resolved: bool) -> dict[str, Any]:
    failures = ctx.store.list_failures(flow, include_resolved=include_resolved)
    return {"failures": [failure_json(f) for f in failures]}


@router.get("/failures")
def failures_page(
    request: Request, flow: str | None = None, include_resolved: bool = Query(False, alias="all")
) -> Response:
    ctx = _ctx(request)
    data = failures_data(ctx, _flow(flow), include_resolved)
    return _page(
        request,
        "failures.html",
        "Failures",
        {**data, "flow": flow or "", "include_resolved": include_resolved},
    )


@api_router.get("/failures")
def api_failures(
    request: Request, flow: str | None = None, include_resolved: bool = Query(False, alias="all")
) -> list[dict[str, Any]]:
    ctx = _ctx(request)
    return list(failures_data(ctx, _flow(flow), include_resolved)["failures"])


def _one_failure(ctx: Context, failure_id: int) -> dict[str, Any]:
    for failure in ctx.store.list_failures(include_resolved=True):
        if failure.id == failure_id:
            return _failure_row(ctx, failure)
    raise HTTPException(404, f"no failure {failure_id}")


@router.get("/failures/{failure_id}")
def failure_page(request: Request, failure_id: int) -> Response:
    failure = _one_failure(_ctx(request), failure_id)
    return _page(request, "failure.html", f"Failure {failure_id}", {"failure": failure})


@api_router.get("/failures/{failure_id}")
def api_failure(request: Request, failure_id: int) -> dict[str, Any]:
    return _one_failure(_ctx(request), failure_id)


def _retry(ctx: Context, failure_ids: list[int] | None) -> int:
    due = ctx.store.retry_failures_now(failure_ids)
    _log.info("retry requested from the dashboard", failure_ids=failure_ids or "all", due=due)
    if due:
        ctx.wake()
    return due


@router.post("/failures/{failure_id}/retry")
def retry_form(request: Request, failure_id: int) -> Response:
    ctx = _ctx(request)
    if not _retry(ctx, [failure_id]):
        raise HTTPException(404, f"no open failure {failure_id}")
    return RedirectResponse(f"{ctx.base}/failures?retried={failure_id}", status_code=303)


@router.post("/failures/retry")
def retry_all_form(request: Request) -> Response:
    ctx = _ctx(request)
    _retry(ctx, None)
    return RedirectResponse(f"{ctx.base}/failures?retried=all", status_code=303)


@api_router.post("/failures/{failure_id}/retry")
def api_retry(request: Request, failure_id: int) -> JSONResponse:
    due = _retry(_ctx(request), [failure_id])
    if not due:
        return JSONResponse({"error": f"no open failure {failure_id}", "retried": 0}, 404)
    return JSONResponse({"retried": due}, 202)


@api_router.post("/failures/retry")
def api_retry_all(request: Request) -> JSONResponse:
    return JSONResponse({"retried": _retry(_ctx(request), None)}, 202)


# -- conflicts ------------------------------------------------------------------


def conflicts_data(ctx: Context, flow: FlowId | None, parked_only: bool) -> dict[str, Any]:
    conflicts = ctx.store.list_conflicts(flow, parked_only=parked_only, limit=500)
    return {"conflicts": [conflict_json(c) for c in conflicts]}


@router.get("/conflicts")
def conflicts_page(request: Request, flow: str | None = None, parked: bool = False) -> Response:
    ctx = _ctx(request)
    data = conflicts_data(ctx, _flow(flow), parked)
    return _page(
        request, "conflicts.html", "Conflicts", {**data, "flow": flow or "", "parked": parked}
    )


@api_router.get("/conflicts")
def api_conflicts(
    request: Request, flow: str | None = None, parked: bool = False
) -> list[dict[str, Any]]:
    ctx = _ctx(request)
    return list(conflicts_data(ctx, _flow(flow), parked)["conflicts"])


def _settle(ctx: Context, conflict_id: int, winner: str) -> dict[str, Any]:
    if winner not in ("poweroffice", "pms"):
        raise HTTPException(400, "winner must be 'poweroffice' or 'pms'")
    try:
        settled = ctx.store.resolve_conflict(conflict_id, cast(Side, winner))
    except UnknownRecord:
        raise HTTPException(404, f"no conflict {conflict_id}") from None
    except AlreadySettled as exc:
        raise HTTPException(409, str(exc)) from None
    with log_context(flow=settled.flow, link_id=settled.link_id):
        _log.info("conflict settled from the dashboard", conflict_id=conflict_id, winner=winner)
    ctx.wake()
    return conflict_json(settled)


@router.post("/conflicts/{conflict_id}/resolve")
def resolve_form(request: Request, conflict_id: int, winner: str = Form(...)) -> Response:
    ctx = _ctx(request)
    _settle(ctx, conflict_id, winner)
    return RedirectResponse(f"{ctx.base}/conflicts", status_code=303)


@api_router.post("/conflicts/{conflict_id}/resolve")
def api_resolve(request: Request, conflict_id: int, winner: str = Query(...)) -> dict[str, Any]:
    return _settle(_ctx(request), conflict_id, winner)


# -- links ----------------------------------------------------------------------


def links_data(ctx: Context, flow: FlowId | None, offset: int) -> dict[str, Any]:
    links = ctx.store.list_links(flow, limit=_PAGE_SIZE + 1, offset=offset)
    return {
        "links": [link_json(link) for link in links[:_PAGE_SIZE]],
        "offset": offset,
        "next_offset": offset + _PAGE_SIZE if len(links) > _PAGE_SIZE else None,
    }


@router.get("/links")
def links_page(request: Request, flow: str | None = None, offset: int = Query(0, ge=0)) -> Response:
    ctx = _ctx(request)
    data = links_data(ctx, _flow(flow), offset)
    return _page(request, "links.html", "Links", {**data, "flow": flow or ""})


@api_router.get("/links")
def api_links(
    request: Request, flow: str | None = None, offset: int = Query(0, ge=0)
) -> dict[str, Any]:
    ctx = _ctx(request)
    return links_data(ctx, _flow(flow), offset)


def link_data(ctx: Context, link_id: int) -> dict[str, Any]:
    link = ctx.store.get_link(link_id)
    if link is None:
        raise HTTPException(404, f"no link {link_id}")
    shadow = ctx.store.load_shadow(link_id)
    failures = [
        failure_json(f)
        for f in ctx.store.list_failures(link.flow, include_resolved=True)
        if (f.side, f.record_id) in {("poweroffice", link.poweroffice_id), ("pms", link.pms_id)}
    ]
    return {
        "link": link_json(link),
        "shadow": dict(sorted(shadow.fields.items())) if shadow else None,
        "history": [history_json(h) for h in reversed(ctx.store.history_for_link(link_id))],
        "conflicts": [conflict_json(c) for c in ctx.store.list_conflicts(link_id=link_id)],
        "failures": failures,
    }


@router.get("/links/{link_id}")
def link_page(request: Request, link_id: int) -> Response:
    data = link_data(_ctx(request), link_id)
    return _page(request, "link.html", f"Link {link_id}", data)


@api_router.get("/links/{link_id}")
def api_link(request: Request, link_id: int) -> dict[str, Any]:
    return link_data(_ctx(request), link_id)
