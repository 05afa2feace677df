"""Crash-safe creates and confirmed deactivations, against the real store and simulators."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from enginehelp import World, linked, open_world, po_customer, stored_shadow
from tolken.engine import lifecycle
from tolken.engine.model import CreateInPMS, DeactivateInPMS
from tolken.engine.plan import idempotency_key


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with open_world(tmp_path) as opened:
        yield opened


def _create_action(world: World, po_id: str) -> CreateInPMS:
    svc = world.executor().services
    projected = svc.project_po(world.po.get("Customers", po_id))
    assert projected is not None
    key = idempotency_key(svc.tenant, "customers", "poweroffice", po_id)
    return CreateInPMS(po_id, projected.values, key)


def test_a_create_whose_answer_was_lost_is_found_not_posted_again(world: World) -> None:
    """After a crash mid-create, the record is looked up by its key: no duplicate in the PMS."""
    svc = world.executor().services
    po = po_customer(world)
    action = _create_action(world, po.id)
    svc.store.add_pending_create("customers", "pms", po.id, action.idempotency_key)
    earlier = world.pms.create(
        "customers", {"kind": "company", "name": "Acme"}, idempotency_key=action.idempotency_key
    )
    pair = lifecycle.create_in_pms(svc, action, po, absent_keys=set(), run_id=None)
    assert pair.pms_id == earlier.id
    assert [r.id for r in world.pms.list("customers")] == [earlier.id]
    assert svc.store.pending_creates("customers") == []


def test_recovery_links_found_records_and_notes_absent_keys(world: World) -> None:
    """Left-over pending creates: a record that exists is linked, one that does not waits."""
    svc = world.executor().services
    found_po, missing_po = po_customer(world), po_customer(world, Name="Beta")
    found = _create_action(world, found_po.id)
    missing = _create_action(world, missing_po.id)
    for action in (found, missing):
        svc.store.add_pending_create("customers", "pms", action.po_id, action.idempotency_key)
    made = world.pms.create(
        "customers", {"kind": "company", "name": "Acme"}, idempotency_key=found.idempotency_key
    )
    recovery = lifecycle.recover_pending_creates(svc, None)
    assert recovery.linked == [(found_po.id, made.id)]
    assert recovery.absent_keys == {missing.idempotency_key}
    assert svc.store.link_map("customers") == {found_po.id: made.id}
    assert [p.source_id for p in svc.store.pending_creates("customers")] == [missing_po.id]


def test_deactivating_a_pair_gone_on_both_sides_still_ends_the_link(world: World) -> None:
    """When the PMS twin is gone as well, the link is still marked source-deleted."""
    ex = world.executor()
    po, pms, _ = linked(world, ex)
    world.pms.delete("customers", pms.id)
    lifecycle.deactivate(ex.services, DeactivateInPMS(po.id, pms.id, {"active": False}), None)
    link = ex.services.store.get_link_by_po("customers", po.id)
    assert link is not None
    assert link.state == "source-deleted"
    assert stored_shadow(world, po.id)["name"] == "Acme"
