"""Conflicts a person settled: the winner's current value is written across, once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from enginehelp import World, linked, open_world, stored_shadow
from tolken.engine import settle


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with open_world(tmp_path) as opened:
        yield opened


def _parked_name_conflict(world: World) -> tuple[str, str, int]:
    """A linked pair whose names differ, with the conflict parked by the manual policy."""
    ex = world.executor(policy="manual")
    po, pms, _ = linked(world, ex)
    world.po.update("Customers", po.id, {"Name": "Acme PO"})
    world.pms.update("customers", pms.id, {"name": "Acme PMS"})
    svc = ex.services
    link = svc.store.get_link_by_po("customers", po.id)
    assert link is not None
    conflict = svc.store.record_conflict(
        "customers",
        link.id,
        "name",
        poweroffice_value="Acme PO",
        pms_value="Acme PMS",
        shadow_value="Acme",
        policy="manual",
        winner="parked",
    )
    return po.id, pms.id, conflict.id


def test_the_winner_settled_by_hand_is_written_once(world: World) -> None:
    """Settled for the PMS: PowerOffice gets the PMS name; the next cycle does not repeat it."""
    po_id, pms_id, conflict_id = _parked_name_conflict(world)
    store = world.engine.store
    assert settle.apply_settled_conflicts(world.executor(policy="manual")) == 0  # not settled
    store.resolve_conflict(conflict_id, "pms")
    world.pms.update("customers", pms_id, {"name": "Acme PMS later"})  # edited after settling
    assert settle.apply_settled_conflicts(world.executor(policy="manual")) == 1
    assert world.po.get("Customers", po_id).data["Name"] == "Acme PMS later"
    assert stored_shadow(world, po_id)["name"] == "Acme PMS later"
    assert settle.apply_settled_conflicts(world.executor(policy="manual")) == 0


def test_other_policies_and_dry_runs_settle_nothing(world: World) -> None:
    """Only the manual policy parks conflicts, and a dry run writes no winner."""
    po_id, _pms_id, conflict_id = _parked_name_conflict(world)
    world.engine.store.resolve_conflict(conflict_id, "pms")
    assert settle.apply_settled_conflicts(world.executor(policy="newest-wins")) == 0
    assert settle.apply_settled_conflicts(world.executor(policy="manual", dry_run=True)) == 0
    assert world.po.get("Customers", po_id).data["Name"] == "Acme PO"
