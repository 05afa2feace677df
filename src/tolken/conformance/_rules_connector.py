"""Rules for a PMS checked through its configured connector (``check-pms --config``).

Each rule exercises one thing the engine relies on, through the same
:class:`~tolken.connectors.base.Connector` calls the engine makes; a
capability the configuration does not declare is reported ``absent``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from datetime import timedelta
from types import MappingProxyType

from tolken.conformance._connector_context import ConnectorContext, value_at
from tolken.conformance._context import CapabilityAbsent, RuleFailed, expect
from tolken.conformance._registry import Rule
from tolken.connectors.base import ChangeFeed
from tolken.errors import NotFound, StaleVersion

__all__ = ["CONNECTOR_RULES"]

_FEED_LIMIT = 500
_FEED_MAX_PAGES = 1000
_OTHER_VALUE = "tolken-check@example.com"

ConnectorRule = Rule[ConnectorContext]

CONNECTOR_RULES: dict[str, ConnectorRule] = {}
"""Every configured-connector rule by name, in the order they run."""


def _rule(
    name: str, summary: str, *, creates: int = 0
) -> Callable[[Callable[[ConnectorContext], str]], Callable[[ConnectorContext], str]]:
    def register(fn: Callable[[ConnectorContext], str]) -> Callable[[ConnectorContext], str]:
        counts: Mapping[str, int] = MappingProxyType({"records": creates} if creates else {})
        CONNECTOR_RULES[name] = Rule(name, summary, fn, counts)
        return fn

    return register


def _other(ctx: ConnectorContext) -> dict[str, str]:
    return {ctx.fields.other: _OTHER_VALUE} if ctx.fields.other else {}


@_rule("list", "the configured listing reads the whole resource, page after page")
def check_list(ctx: ConnectorContext) -> str:
    """The credentials work and the listing ends."""
    start = len(ctx.exchanges)
    records = ctx.listing()
    ids = Counter(r.id for r in records)
    repeated = [i for i, n in ids.items() if n > 1]
    expect(not repeated, f"the listing returned ids more than once: {', '.join(repeated[:5])}")
    pages = sum(1 for e in ctx.exchanges[start:] if e.method == "GET")
    return f"listed {len(records)} {ctx.fields.resource} in {pages} request(s)"


@_rule("create-and-read", "a created record has a string id and reads back as written", creates=1)
def check_create_and_read(ctx: ConnectorContext) -> str:
    """What the connector creates, it can read by id."""
    record = ctx.create("read", **_other(ctx))
    expect(record.id, f"the created record has id {record.id!r}")
    again = ctx.connector.get(ctx.fields.resource, record.id)
    for path, value in ctx.body("read", **_other(ctx)).items():
        expect(
            value_at(again.data, path) == value,
            f"{path} read back as {value_at(again.data, path)!r}, written as {value!r}",
        )
    try:
        ctx.connector.get(ctx.fields.resource, f"tolken-check-missing-{ctx.tag}")
    except NotFound:
        return f"created {ctx.fields.resource} {record.id}, read it back; an unknown id is NotFound"
    raise RuleFailed("reading an id that does not exist did not say NotFound")


@_rule("listing", "the full listing holds every record exactly once", creates=3)
def check_listing(ctx: ConnectorContext) -> str:
    """Paging neither skips nor repeats records."""
    made = [ctx.create(f"list-{n}").id for n in range(1, 4)]
    counts = Counter(r.id for r in ctx.listing())
    for record_id in made:
        expect(counts[record_id] == 1, f"record {record_id} was listed {counts[record_id]} times")
    return f"each of {len(made)} new records listed once among {sum(counts.values())}"


@_rule("changed-since", "a listing changed after T holds what changed after T", creates=2)
def check_changed_since(ctx: ConnectorContext) -> str:
    """Incremental change capture finds an edit."""
    if ctx.capture == "feed":
        raise CapabilityAbsent("changes are read from the feed (see changes-feed)")
    if ctx.capture == "none":
        raise CapabilityAbsent(
            "changes type none: each cycle lists everything and compares content hashes"
        )
    first = ctx.create("since-a")
    if first.changed_at is None:
        raise CapabilityAbsent(
            "records carry no modification time: each cycle lists everything and compares "
            "content hashes (change_capture none)"
        )
    second = ctx.create("since-b")
    ctx.connector.update(ctx.fields.resource, second.id, {ctx.fields.name: ctx.name("since-b2")})
    found = list(ctx.connector.list(ctx.fields.resource, changed_after=first.changed_at))
    ids = [r.id for r in found]
    expect(second.id in ids, f"record {second.id}, edited after {first.changed_at}, is missing")
    # An overlap re-reads a little before the bound on purpose.
    bound = first.changed_at - timedelta(seconds=ctx.overlap_seconds)
    older = [r.id for r in found if r.changed_at is not None and r.changed_at < bound]
    expect(not older, f"records changed before the bound were returned: {', '.join(older[:5])}")
    return (
        f"changed after {first.changed_at.isoformat()}: {len(found)} record(s), the edit among them"
    )


@_rule(
    "idempotent-create",
    "a create is found again by its key, or repeating it returns the same record",
    creates=1,
)
def check_idempotent_create(ctx: ConnectorContext) -> str:
    """A create interrupted by a crash is never made twice.

    The engine looks for the record by its key before it creates again; a PMS
    that keeps no reference must return the first record for a repeated key.
    """
    key = f"tolken-check-{ctx.tag}-idem"
    first = ctx.create("idempotent", key=key)
    unused = ctx.connector.find_by_idempotency_key(ctx.fields.resource, f"{key}-never-used")
    expect(unused is None, f"a key never used found record {unused and unused.id}")
    found = ctx.connector.find_by_idempotency_key(ctx.fields.resource, key)
    if found is not None:
        expect(found.id == first.id, f"the key found record {found.id}, not {first.id}")
        how = f"the key finds {first.id} (the engine looks before it creates again)"
    else:
        second = ctx.create("idempotent", key=key)
        expect(
            second.id == first.id,
            f"the key cannot be looked up, and repeating the create made a second record "
            f"({first.id} and {second.id})",
        )
        how = f"repeating the create with the key returned {first.id} again"
    named = ctx.name("idempotent")
    same = [r.id for r in ctx.listing() if value_at(r.data, ctx.fields.name) == named]
    expect(same == [first.id], f"records named {named!r}: {same}")
    return f"{how}; a key never used finds nothing; one record"


@_rule("update", "an update changes the named fields, clears with null, keeps the rest", creates=1)
def check_update(ctx: ConnectorContext) -> str:
    """Partial updates: what is named changes, nothing else."""
    record = ctx.create("update", **_other(ctx))
    renamed = ctx.name("update-2")
    ctx.connector.update(ctx.fields.resource, record.id, {ctx.fields.name: renamed})
    now = ctx.connector.get(ctx.fields.resource, record.id)
    expect(value_at(now.data, ctx.fields.name) == renamed, "the update did not change the name")
    if not ctx.fields.other:
        return "the name changed"
    expect(
        value_at(now.data, ctx.fields.other) == _OTHER_VALUE,
        f"{ctx.fields.other} changed though the update did not name it: "
        f"{value_at(now.data, ctx.fields.other)!r}",
    )
    ctx.connector.update(ctx.fields.resource, record.id, {ctx.fields.other: None})
    cleared = ctx.connector.get(ctx.fields.resource, record.id)
    expect(
        value_at(cleared.data, ctx.fields.other) in (None, ""),
        f"{ctx.fields.other} is {value_at(cleared.data, ctx.fields.other)!r} after clearing it",
    )
    expect(value_at(cleared.data, ctx.fields.name) == renamed, "clearing a field lost the name")
    return f"the name changed, {ctx.fields.other} stayed, then null cleared it"


@_rule("concurrency", "a write based on a stale version is refused", creates=1)
def check_concurrency(ctx: ConnectorContext) -> str:
    """Optimistic concurrency (version field or ETag)."""
    record = ctx.create("version")
    if record.version is None:
        raise CapabilityAbsent(
            "no version field or ETag configured: a write never waits for a concurrent edit"
        )
    ctx.connector.update(
        ctx.fields.resource,
        record.id,
        {ctx.fields.name: ctx.name("version-2")},
        version=record.version,
    )
    try:
        ctx.connector.update(
            ctx.fields.resource,
            record.id,
            {ctx.fields.name: ctx.name("version-3")},
            version=record.version,
        )
    except StaleVersion:
        now = ctx.connector.get(ctx.fields.resource, record.id)
        expect(
            value_at(now.data, ctx.fields.name) == ctx.name("version-2"),
            "the refused write changed the record",
        )
        return f"the current version {record.version} wrote; the same stale version was refused"
    raise RuleFailed(f"a write with the stale version {record.version} was accepted")


@_rule("delete", "a deleted record is then not found", creates=1)
def check_delete(ctx: ConnectorContext) -> str:
    """Delete (optional for a PMS: tolken never deletes by default)."""
    if not ctx.deletes:
        raise CapabilityAbsent("the configuration declares no delete (tolken never needs one)")
    record = ctx.create("delete")
    why = ctx.delete_and_confirm(record.id)
    expect(why is None, f"record {record.id}: {why}")
    ctx.forget(record.id)
    return f"deleted {record.id}; reading it then said NotFound"


@_rule("changes-feed", "a new record appears in the changes feed", creates=1)
def check_changes_feed(ctx: ConnectorContext) -> str:
    """The contract's changes feed, when the connector offers one."""
    feed = ctx.connector
    if not isinstance(feed, ChangeFeed):
        raise CapabilityAbsent("no changes feed: changes are found by listing")
    head = 0
    for _ in range(_FEED_MAX_PAGES):
        page = feed.changes(head, limit=_FEED_LIMIT)
        if not page.items:
            break
        head = max(i.seq for i in page.items)
    record = ctx.create("feed")
    page = feed.changes(head, limit=_FEED_LIMIT)
    ours = [i for i in page.items if i.id == record.id]
    expect(ours and ours[0].op == "upsert", f"the feed after {head} has no upsert of {record.id}")
    return f"the create of {record.id} is feed item {ours[0].seq}"
