"""End to end over loopback: a parked PowerOffice record holds the stored cursor back."""

from __future__ import annotations

import json
from datetime import datetime

from integration.sync_harness import Sandbox
from tolken.engine import SyncEngine


def _position(engine: SyncEngine) -> datetime:
    raw = engine.store.get_cursor("poweroffice", "Customers")
    assert raw is not None
    return datetime.fromisoformat(json.loads(raw)["position"])


def _changed_at(sb: Sandbox, record_id: str) -> datetime:
    with sb.po() as client:
        stamp = client.get("Customers", record_id).changed_at
    assert stamp is not None
    return stamp


def _posts(sb: Sandbox) -> int:
    return sum(n for k, n in sb.writes_since_baseline("pms").items() if k.startswith("POST"))


def test_a_parked_customer_keeps_the_cursor_before_it_until_it_syncs(sb: Sandbox) -> None:
    """The PMS rejects a customer: the PowerOffice cursor stays before it while it is parked,
    later customers still sync, and once it is fixed and retried the cursor moves past it."""
    bad = sb.po_create("Customers", {"Name": "Bad Mail AS", "EmailAddress": "not-an-email"})
    sb.po_create("Customers", {"Name": "Early AS"})
    with sb.engine() as engine:
        first = engine.run_cycle()
        bad_at = _changed_at(sb, bad)
        held_at_first = _position(engine)
        late = sb.po_create("Customers", {"Name": "Late AS"})
        second = engine.run_cycle()
        held_at_second = _position(engine)
        links = engine.store.link_map("customers")
        sb.po_update("Customers", bad, {"EmailAddress": "post@bad.no"})
        engine.store.retry_failures_now()
        fixed = engine.run_cycle()
        fixed_at = _changed_at(sb, bad)
        moved_to = _position(engine)
        remaining = engine.store.list_failures()
    assert first.flows["customers"].counts.get("failed") == 1
    assert first.flows["customers"].counts.get("created") == 1
    assert held_at_first < bad_at
    # The later customer syncs although the cursor stays before the parked one.
    assert second.flows["customers"].counts.get("created") == 1
    assert late in links
    assert held_at_second < bad_at
    assert fixed.flows["customers"].counts.get("created") == 1
    assert remaining == []
    assert moved_to >= fixed_at > bad_at


def test_a_parked_customer_is_not_retried_before_its_backoff_is_over(sb: Sandbox) -> None:
    """Cycles that read a parked customer again before its retry is due send it nowhere and
    count it as waiting; records already handled past it are not written again either."""
    sb.po_create("Customers", {"Name": "Bad Mail AS", "EmailAddress": "not-an-email"})
    with sb.engine() as engine:
        engine.run_cycle()
        [failure] = engine.store.list_failures()
        sb.po_create("Customers", {"Name": "Later AS"})
        sb.reset_stats()
        second = engine.run_cycle()
        after_second = _posts(sb)
        third = engine.run_cycle()
        after_third = _posts(sb)
        [still] = engine.store.list_failures()
    assert second.flows["customers"].counts.get("waiting") == 1
    assert second.flows["customers"].counts["failed"] == 0
    assert after_second == 1  # the later customer only
    assert third.flows["customers"].counts.get("waiting") == 1
    assert third.flows["customers"].counts["created"] == 0
    assert after_third == 1  # nothing more: no retry, no second create of the later one
    assert still.attempts == failure.attempts == 1
