"""The reference PMS through ``connector: rest`` with capture choices the built-in connector
lacks: an overlapping, inclusive updated-since filter and a full listing every cycle."""

from __future__ import annotations

from typing import Any

import pytest

from integration.sync_harness import Sandbox
from tolken.config import RestSettings
from tolken.connectors.rest import reference_pms_rest


def _rest(changes: dict[str, Any]) -> dict[str, Any]:
    section = reference_pms_rest("updated-since").model_dump(exclude_unset=True)
    section["changes"] = changes
    return {"connector": "rest", "rest": RestSettings.model_validate(section)}


CAPTURES = [
    pytest.param({"type": "updated-since", "overlap_seconds": 3600}, id="overlap"),
    pytest.param({"type": "none"}, id="full-listing"),
]


@pytest.mark.parametrize("changes", CAPTURES)
def test_records_read_again_change_nothing_and_edits_still_arrive(
    sb: Sandbox, changes: dict[str, Any]
) -> None:
    """Re-reading records (an hour of overlap, or everything each cycle) writes nothing twice,
    and a PMS edit still reaches PowerOffice once."""
    po_id = sb.po_create("Customers", {"Name": "Acme AS", "OrganizationNumber": "912345678"})
    with sb.engine(pms=_rest(changes)) as engine:
        engine.run_cycle()
        pms_id = engine.store.link_map("customers")[po_id]
        sb.reset_stats()
        quiet = engine.run_cycle()
        assert sb.writes_since_baseline("pms") == {}
        assert sb.writes_since_baseline("poweroffice") == {}
        assert quiet.total("updated") == 0
        sb.pms_update("customers", pms_id, {"name": "Acme Holding AS"})
        sb.reset_stats()
        edited = engine.run_cycle()
        again = engine.run_cycle()
    assert sb.po_get("Customers", po_id)["Name"] == "Acme Holding AS"
    assert edited.total("updated") == 1
    assert again.total("updated") == 0
    assert sb.writes_since_baseline("pms") == {}
    assert list(sb.writes_since_baseline("poweroffice").values()) == [1]
