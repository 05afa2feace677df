"""Leave nothing behind: the delete probe before the rules, and the cleanup after them.

The check must not leave test records in a PMS, whatever the PMS answers.
So, before any rule creates records, :func:`probe_delete` creates one test
customer and deletes it; when that does not work (the DELETE is refused, or
the record is still readable afterwards) the rules that create records are
not run. Afterwards :func:`clean_up` deletes every record the run made and
confirms each is gone (a GET answering 404), then :func:`_sweep` lists both
resources for records carrying this run's name tag (a POST that answered
an error may still have stored one) and deletes those too; webhooks to the
run's receiver are swept the same way. Whatever is still there is listed by
resource and id, to remove by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tolken.conformance._context import CheckContext, describe

__all__ = ["CleanupReport", "clean_up", "probe_delete"]

_RESOURCES = ("customers", "projects")
_SWEEP_PAGE = 1000
_SWEEP_MAX_PAGES = 20
# The PMS's clock may differ from ours; records of this run are newer than this anyway.
_SWEEP_MARGIN = timedelta(days=1)


@dataclass(frozen=True)
class CleanupReport:
    """What the cleanup did (``notes``, one line each) and what it could not remove."""

    notes: tuple[str, ...]
    left_behind: tuple[str, ...] = field(default=())


def probe_delete(ctx: CheckContext) -> str | None:
    """Create one test customer and delete it: None when it is gone after, else why not."""
    response = ctx.call("POST", "customers", json={"kind": "company", "name": ctx.name("probe")})
    body = _json(response)
    if not response.is_success or not isinstance(body, dict) or "id" not in body:
        # The rules will say what is wrong with creating; the sweep finds any stray record.
        return None
    ctx.track("customers", body)
    record_id = str(body["id"])
    read = ctx.call("GET", f"customers/{record_id}")
    outcome = _delete_and_confirm(ctx, "customers", record_id)
    if outcome == _DELETED and read.status_code == 200:
        ctx.forget("customers", record_id)
        return None
    if read.status_code != 200:
        why = f"GET customers/{record_id} then answered {read.status_code}"
    else:
        why = "DELETE answered 404 for it" if outcome == _NOT_FOUND else outcome
    return (
        f"the check cannot delete what it creates: it created customers/{record_id} "
        f"and {why}; no further test records are created"
    )


def clean_up(ctx: CheckContext, started_at: datetime) -> CleanupReport:
    """Delete every record and webhook this run made, confirm, sweep; report what remains."""
    deleted = 0
    left: dict[tuple[str, str], str] = {}
    # Newest first, so projects go before the customers they reference.
    for key in reversed(ctx.created):
        if key in ctx.deleted:
            continue
        outcome = _delete_and_confirm(ctx, *key)
        if outcome in (_DELETED, _NOT_FOUND):
            ctx.forget(*key)
            deleted += outcome == _DELETED
        else:
            left[key] = outcome
    for key in _sweep(ctx, started_at):
        if key in left:
            continue
        if key in ctx.deleted:
            # DELETE and GET answered 404, yet the listing still has it.
            left[key] = "DELETE and GET answered 404 yet the listing still shows it"
            continue
        # A record the run never heard of: its POST answered an error but stored it.
        outcome = _delete_and_confirm(ctx, *key)
        if outcome == _DELETED:
            ctx.forget(*key)
            deleted += 1
        else:
            left[key] = "found in the listing; " + (
                "DELETE answered 404" if outcome == _NOT_FOUND else outcome
            )
    notes = [f"deleted {deleted} test record(s)"]
    if left:
        notes.append(
            "could not delete (remove by hand): "
            + ", ".join(
                f"{resource}/{record_id} ({why})" for (resource, record_id), why in left.items()
            )
        )
    notes += [_remove_webhook(ctx, hook_id, url) for hook_id, url in ctx.webhooks]
    notes += [_remove_webhook(ctx, hook_id, url) for hook_id, url in _stray_webhooks(ctx)]
    return CleanupReport(
        tuple(notes), tuple(f"{resource}/{record_id}" for resource, record_id in left)
    )


_DELETED = "deleted"
_NOT_FOUND = "not found"


def _delete_and_confirm(ctx: CheckContext, resource: str, record_id: str) -> str:
    """DELETE the record, then GET it.

    ``_DELETED`` when the DELETE succeeded and the GET says 404, ``_NOT_FOUND``
    when both answered 404 (gone already, or not where it was looked for: the
    sweep tells which), else why the record is still there.
    """
    try:
        response = ctx.call("DELETE", f"{resource}/{record_id}")
    except httpx.HTTPError as exc:
        return f"DELETE failed: {type(exc).__name__}"
    if not response.is_success and response.status_code != 404:
        return f"DELETE answered HTTP {response.status_code}"
    try:
        after = ctx.call("GET", f"{resource}/{record_id}")
    except httpx.HTTPError as exc:
        return f"GET after DELETE failed: {type(exc).__name__}"
    if after.status_code == 404:
        return _DELETED if response.is_success else _NOT_FOUND
    return f"DELETE answered {response.status_code} but GET then answered {after.status_code}"


def _sweep(ctx: CheckContext, started_at: datetime) -> list[tuple[str, str]]:
    """Records of both resources whose name carries this run's tag, as far as a listing shows."""
    prefix = ctx.name("")
    since = (started_at - _SWEEP_MARGIN).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    found: list[tuple[str, str]] = []
    for resource in _RESOURCES:
        params: dict[str, str | int] = {"limit": _SWEEP_PAGE, "updated_after": since}
        for _ in range(_SWEEP_MAX_PAGES):
            try:
                response = ctx.call("GET", resource, params=params)
            except httpx.HTTPError:
                break
            body = _json(response)
            items = body.get("items") if isinstance(body, dict) else body
            if not response.is_success or not isinstance(items, list):
                break
            found += [
                (resource, str(item["id"]))
                for item in items
                if isinstance(item, dict)
                and str(item.get("name", "")).startswith(prefix)
                and "id" in item
            ]
            cursor = body.get("next_cursor") if isinstance(body, dict) else None
            if not isinstance(cursor, str) or not cursor:
                break
            params["cursor"] = cursor
    return found


def _stray_webhooks(ctx: CheckContext) -> list[tuple[str | None, str]]:
    """Webhooks to this run's receiver the PMS holds though it never said so (or kept)."""
    if not ctx.webhook_urls:
        return []
    try:
        response = ctx.call("GET", "webhooks")
    except httpx.HTTPError:
        return []
    body = _json(response)
    items = body.get("items") if isinstance(body, dict) else body
    if not response.is_success or not isinstance(items, list):
        return []
    known = {hook_id for hook_id, _ in ctx.webhooks}
    return [
        (str(item["id"]), str(item["url"]))
        for item in items
        if isinstance(item, dict)
        and item.get("url") in ctx.webhook_urls
        and "id" in item
        and str(item["id"]) not in known
    ]


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _remove_webhook(ctx: CheckContext, hook_id: str | None, url: str) -> str:
    if hook_id is None:
        return f"the PMS gave the webhook no id; remove the webhook to {url} by hand"
    try:
        response = ctx.call("DELETE", f"webhooks/{hook_id}")
    except httpx.HTTPError as exc:
        return f"could not remove webhook {hook_id} ({type(exc).__name__}); remove it by hand"
    if response.is_success:
        return f"removed webhook {hook_id}"
    if response.status_code in (404, 405):
        return (
            f"the PMS offers no DELETE /webhooks/{{id}} (HTTP {response.status_code}); "
            f"remove the webhook to {url} by hand"
        )
    return f"could not remove webhook {hook_id}: {describe(response)}"


def now() -> datetime:
    """The run's start, for the sweep's listing bound."""
    return datetime.now(UTC)
