"""FlowServices: projections, existence checks and the store writes that must go together."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from enginehelp import World, history, open_world, pms_customer, po_customer, stored_shadow
from tolken.engine.model import Ambiguous, FieldConflict
from tolken.engine.pairs import PairState
from tolken.store import DuplicateLink


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with open_world(tmp_path) as opened:
        yield opened


def test_projections_put_both_sides_in_one_field_space(world: World) -> None:
    """A PowerOffice and a PMS customer with the same data project to the same values."""
    svc = world.executor().services
    po = po_customer(world)
    pms = pms_customer(world, email="post@acme.no", number=str(po.data["Number"]))
    po_values, pms_values = svc.project_po(po), svc.project_pms(pms)
    assert po_values is not None
    assert pms_values is not None
    for name in ("name", "organization_number", "email", "number", "kind"):
        assert po_values.values[name] == pms_values.values[name], name
    assert pms_values.version == pms.version
    assert svc.project_po(None) is None


def test_exists_answers_false_only_on_404(world: World) -> None:
    """A record is gone only when its system says 404."""
    svc = world.executor().services
    po = po_customer(world)
    assert svc.exists("poweroffice", po.id)
    world.po.delete("Customers", po.id)
    assert not svc.exists("poweroffice", po.id)
    assert not svc.exists("pms", "no-such-id")


def test_new_link_is_stored_with_shadow_history_and_resolved_pending_create(world: World) -> None:
    """A created record's link, shadow, history and pending row are settled together."""
    svc = world.executor().services
    po, pms = po_customer(world), pms_customer(world)
    svc.store.add_pending_create("customers", "pms", po.id, "tk-1")
    pair = PairState(None, po.id, pms.id, {"name": "Acme"}, True)
    svc.store_new_link(pair, ("to_pms", {"name": "Acme"}, "new PowerOffice record"), "tk-1", None)
    assert pair.link_id is not None
    assert stored_shadow(world, po.id) == {"name": "Acme"}
    assert history(world, po.id) == [("to_pms", "create")]
    assert svc.store.pending_creates("customers") == []
    assert svc.resolver.to_pms("customers", po.id) == pms.id


def test_a_duplicate_new_link_stores_nothing(world: World) -> None:
    """A record linked meanwhile is refused, and its pending create stays pending."""
    svc = world.executor().services
    po, pms = po_customer(world), pms_customer(world)
    svc.store.create_link("customers", po.id, "other")
    svc.store.add_pending_create("customers", "pms", po.id, "tk-1")
    pair = PairState(None, po.id, pms.id, {"name": "Acme"}, True)
    with pytest.raises(DuplicateLink):
        svc.store_new_link(pair, ("to_pms", {}, "new PowerOffice record"), "tk-1", None)
    assert pair.link_id is None
    assert [p.idempotency_key for p in svc.store.pending_creates("customers")] == ["tk-1"]


def test_save_pair_without_a_stored_link_writes_nothing(world: World) -> None:
    """A pair never linked (a dry run's) leaves the store as it was."""
    svc = world.executor().services
    pair = PairState(None, "1", "m1", {"name": "Acme"}, False)
    svc.save_pair(pair, ("to_pms", "update", {"name": "Acme"}, "why"), None)
    assert not pair.has_shadow
    assert pair.stored is None
    assert svc.store.list_links("customers") == []


def test_end_link_marks_the_link_and_says_why(world: World) -> None:
    """Ending a link sets its state and records the reason in its history."""
    svc = world.executor().services
    po = po_customer(world)
    link = svc.store.create_link("customers", po.id, "m1")
    svc.end_link(po.id, "pms-deleted", ("to_poweroffice", "pms-deleted", {}, "deleted"), None)
    ended = svc.store.get_link(link.id)
    assert ended is not None
    assert ended.state == "pms-deleted"
    assert history(world, po.id) == [("to_poweroffice", "pms-deleted")]
    svc.end_link("unknown", "pms-deleted", ("to_poweroffice", "pms-deleted", {}, "x"), None)


def test_conflict_values_are_stored_once_per_pair_of_values(world: World) -> None:
    """The same conflict seen twice is one row; new values are a new row."""
    svc = world.executor().services
    link = svc.store.create_link("customers", "1", "m1")
    first = FieldConflict("name", "A", "B", "Acme", None, "manual")
    svc.record_conflict(link.id, first, None)
    svc.record_conflict(link.id, first, None)
    svc.record_conflict(link.id, FieldConflict("name", "A", "C", "Acme", None, "manual"), None)
    stored = svc.store.list_conflicts("customers", parked_only=True)
    assert sorted(c.pms_value for c in stored) == ["B", "C"]


def test_ambiguous_record_is_parked_with_the_candidates(world: World) -> None:
    """An ambiguous match becomes a failure naming every candidate and the way out."""
    svc = world.executor().services
    svc.record_ambiguous(Ambiguous("poweroffice", "7", ("m1", "m2"), "org number"))
    [failure] = svc.store.list_failures("customers")
    assert "m1, m2" in failure.message
    assert "tolken link" in failure.message


def test_clock_defaults_to_the_store_and_can_be_given(world: World) -> None:
    """The services tell time by the store's clock unless another clock is given."""
    svc = world.executor().services
    assert abs((svc.now() - svc.store.now()).total_seconds()) < 5
    fixed = datetime(2026, 1, 1, tzinfo=UTC)
    other = type(svc)(
        svc.tenant,
        svc.flow_id,
        svc.flow,
        svc.ctx,
        svc.store,
        svc.poweroffice,
        svc.pms,
        svc.resolver,
        clock=lambda: fixed,
    )
    assert other.now() == fixed
