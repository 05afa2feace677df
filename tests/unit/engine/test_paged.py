"""Planning unlinked records a page at a time keeps plan_flow's cross-record rules."""

from __future__ import annotations

from tolken.engine.match import DEFAULT_RULES
from tolken.engine.model import Ambiguous, CreateInPMS, Link, ProjectedRecord, Skipped
from tolken.engine.paged import pages, plan_flow_paged
from tolken.engine.plan import FlowContext, plan_flow

CTX = FlowContext("t", "customers", rules=DEFAULT_RULES["customers"])


def _company(record_id: str, org: str) -> ProjectedRecord:
    return ProjectedRecord(record_id, {"kind": "company", "organization_number": org})


def test_two_claims_on_different_pages_are_one_ambiguous_and_nothing_is_linked() -> None:
    """A PMS record claimed by a record on page 1 and one on page 3 is reported once, naming
    both; neither is linked or created, and the PMS record is not skipped."""
    po = [_company("p1", "912345678"), _company("p2", "111"), _company("p3", "912 345 678")]
    pms = [_company("m1", "912345678"), _company("m2", "222")]
    actions = plan_flow_paged(
        CTX, po_changes=po, pms_changes=pms, links=[], pms_candidates=pms, page_size=1
    )
    assert Ambiguous("pms", "m1", ("p1", "p3"), "organization-number") in actions
    assert not [a for a in actions if isinstance(a, Link)]
    assert [a.po_id for a in actions if isinstance(a, CreateInPMS)] == ["p2"]
    assert [a.pms_id for a in actions if isinstance(a, Skipped)] == ["m2"]
    whole = plan_flow(CTX, po_changes=po, pms_changes=pms, links=[], pms_candidates=pms)
    assert sorted(map(repr, actions)) == sorted(map(repr, whole))


def test_pages_split_as_they_come() -> None:
    """Lists of at most the size, in order, the last one shorter."""
    assert list(pages(range(5), 2)) == [[0, 1], [2, 3], [4]]
    assert list(pages([], 3)) == []
