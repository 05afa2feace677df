"""Rules about change notification: the changes feed and signed webhooks."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from itertools import pairwise
from typing import Any

from tolken.conformance import _rules_records  # noqa: F401  (record rules run first)
from tolken.conformance._context import CheckContext, describe
from tolken.conformance._receiver import Delivery, WebhookReceiver
from tolken.conformance._registry import CapabilityAbsent, RuleFailed, expect, rule
from tolken.connectors.pms import WebhookRejected, verify_webhook

_FEED_LIMIT = 1000
_MAX_FEED_PAGES = 1000
_ITEM_FIELDS = ("seq", "type", "id", "op")
# Answers that say an optional endpoint does not exist.
_ABSENT = (404, 405, 501)


def _feed_after(ctx: CheckContext, after: int) -> list[dict[str, Any]]:
    """Every feed item after ``after``, paging by the last seq received."""
    items: list[dict[str, Any]] = []
    for _ in range(_MAX_FEED_PAGES):
        response = ctx.call("GET", "changes", params={"after": after, "limit": _FEED_LIMIT})
        if response.status_code in _ABSENT:
            raise CapabilityAbsent(
                f"no changes feed (GET /changes gave {response.status_code}): "
                "set pms.change_capture: polling, and tolken lists by updated_after"
            )
        expect(response.status_code == 200, f"GET /changes gave {describe(response)}")
        page = response.json()
        expect(
            isinstance(page, dict) and isinstance(page.get("items"), list) and "last_seq" in page,
            f"GET /changes did not answer {{items, last_seq}}: {describe(response)}",
        )
        batch = page["items"]
        for item in batch:
            expect(
                isinstance(item, dict) and all(k in item for k in _ITEM_FIELDS),
                f"a feed item lacks one of {', '.join(_ITEM_FIELDS)}: {item!r}",
            )
            expect(
                isinstance(item["seq"], int) and item["seq"] > after,
                f"GET /changes?after={after} returned seq {item['seq']!r}",
            )
        items.extend(batch)
        if not batch:
            return items
        after = max(int(i["seq"]) for i in batch)
    raise RuleFailed(f"the changes feed did not end after {_MAX_FEED_PAGES} pages")


@rule(
    "changes-feed",
    "GET /changes lists upserts and a delete tombstone in increasing seq order",
    creates={"customers": 1},
)
def check_changes_feed(ctx: CheckContext) -> str:
    """Every write shows up in the feed, in order, deletes included."""
    head_items = _feed_after(ctx, 0)
    head = max((int(i["seq"]) for i in head_items), default=0)
    record = ctx.create_customer("feed")
    patched = ctx.call(
        "PATCH",
        f"customers/{record['id']}",
        json={"name": ctx.name("feed-2")},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    expect(patched.status_code == 200, f"PATCH gave {describe(patched)}")
    deleted = ctx.call("DELETE", f"customers/{record['id']}")
    expect(deleted.status_code == 204, f"DELETE gave {describe(deleted)}")
    ctx.forget("customers", record["id"])
    items = _feed_after(ctx, head)
    seqs = [int(i["seq"]) for i in items]
    for before, after in pairwise(seqs):
        expect(before < after, f"feed seq is not strictly increasing: {before} then {after}")
    ours = [i for i in items if str(i["id"]) == str(record["id"])]
    ops = [i["op"] for i in ours]
    expect(
        ops == ["upsert", "upsert", "delete"],
        f"create, update, delete of {record['id']} gave feed ops {ops}, "
        "expected ['upsert', 'upsert', 'delete']",
    )
    kinds = {str(i["type"]).lower() for i in ours}
    expect(
        kinds <= {"customer", "customers"},
        f"feed items for a customer have type {sorted(kinds)}",
    )
    return f"create, update, delete appeared as upsert, upsert, delete (seq {ours[0]['seq']}..)"


def _head(ctx: CheckContext) -> int:
    """The feed's last seq now."""
    return max((int(i["seq"]) for i in _feed_after(ctx, 0)), default=0)


@rule(
    "feed-has-more",
    "optional: has_more is true on a page cut at limit and false at the end",
    creates={"customers": 2},
)
def check_feed_has_more(ctx: CheckContext) -> str:
    """``has_more`` lets tolken stop without asking for an empty page."""
    head = _head(ctx)
    first = ctx.create_customer("more-1")
    ctx.create_customer("more-2")
    cut = ctx.call("GET", "changes", params={"after": head, "limit": 1})
    expect(cut.status_code == 200, f"GET /changes gave {describe(cut)}")
    page = cut.json()
    if not isinstance(page, dict) or "has_more" not in page:
        raise CapabilityAbsent("the feed sends no has_more: tolken reads until an empty page")
    expect(
        page["has_more"] is True,
        f"a page of 1 with another change after it says has_more {page['has_more']!r}",
    )
    items = _feed_after(ctx, head)
    last = max(int(i["seq"]) for i in items)
    end = ctx.call("GET", "changes", params={"after": last, "limit": _FEED_LIMIT})
    expect(end.status_code == 200, f"GET /changes gave {describe(end)}")
    expect(
        end.json().get("has_more") is False,
        f"the end of the feed says has_more {end.json().get('has_more')!r}",
    )
    return f"has_more true on a cut page (after {first['id']}), false at the end"


@rule(
    "feed-records",
    "optional: include=record puts each upserted record, as GET returns it, in its feed item",
    creates={"customers": 1},
)
def check_feed_records(ctx: CheckContext) -> str:
    """Feed bodies save tolken one GET per changed record."""
    head = _head(ctx)
    record = ctx.create_customer("feed-body")
    response = ctx.call(
        "GET", "changes", params={"after": head, "limit": _FEED_LIMIT, "include": "record"}
    )
    expect(response.status_code == 200, f"GET /changes?include=record gave {describe(response)}")
    ours = [i for i in response.json().get("items", []) if str(i.get("id")) == str(record["id"])]
    expect(ours, f"the feed after {head} has no item for {record['id']}")
    if "record" not in ours[0]:
        raise CapabilityAbsent(
            "the feed ignores include=record: tolken reads each changed record with a GET"
        )
    now = ctx.get("customers", record["id"])
    expect(
        ours[0]["record"] == now,
        f"the feed's record differs from GET: {ours[0]['record']} vs {now}",
    )
    return f"the upsert of {record['id']} carried the record as GET returns it"


def _is_for(record_id: str) -> Callable[[Delivery], bool]:
    def matches(delivery: Delivery) -> bool:
        try:
            body = json.loads(delivery.body)
        except ValueError:
            return False
        return isinstance(body, dict) and str(body.get("id")) == record_id

    return matches


@rule(
    "webhook-signature",
    "a registered webhook receives each change, correctly signed and fresh",
    creates={"customers": 1},
)
def check_webhook(ctx: CheckContext) -> str:
    """Webhook deliveries carry a valid HMAC-SHA256 signature over timestamp and body."""
    secret = secrets.token_urlsafe(24)
    with WebhookReceiver(ctx.webhook_host, ctx.webhook_port) as receiver:
        url = ctx.webhook_public_url or receiver.url
        ctx.webhook_urls.append(url)
        response = ctx.call("POST", "webhooks", json={"url": url, "secret": secret})
        if response.status_code in _ABSENT:
            raise CapabilityAbsent(
                f"no webhooks (POST /webhooks gave {response.status_code}): tolken polls instead"
            )
        body = response.json() if response.is_success else {}
        hook_id = body.get("id") if isinstance(body, dict) else None
        if response.is_success:
            ctx.webhooks.append((str(hook_id) if hook_id is not None else None, url))
        expect(
            response.status_code == 201, f"POST /webhooks gave {describe(response)}, expected 201"
        )
        record = ctx.create_customer("webhook")
        delivery = receiver.wait_for(_is_for(str(record["id"])), ctx.webhook_wait)
        expect(
            delivery is not None,
            f"no delivery for {record['id']} reached {url} within {ctx.webhook_wait:g} s "
            f"({len(receiver.deliveries)} other deliveries)",
        )
        assert delivery is not None
        try:
            verify_webhook(secret, delivery.headers, delivery.body, now=delivery.received_at)
        except WebhookRejected as exc:
            raise RuleFailed(
                f"the delivery for {record['id']} failed verification: {exc.reason}"
            ) from exc
        item = json.loads(delivery.body)
        missing = [k for k in _ITEM_FIELDS if k not in item]
        expect(not missing, f"the delivery body is not a feed item (missing {missing}): {item}")
        expect(item["op"] == "upsert", f"the delivery for a create has op {item['op']!r}")
    return "the delivery for a new record was signed correctly, fresh, and a feed item"
