"""Merge rules read from the mapping file drive matching (the thin adapter to the mapping)."""

from __future__ import annotations

from tolken.engine.match import CandidateIndex, rules_from_mapping
from tolken.engine.model import ProjectedRecord
from tolken.mapping.load import default_mapping


def index(flow: str, *records: ProjectedRecord) -> CandidateIndex:
    rules = rules_from_mapping(default_mapping().flow(flow))
    return CandidateIndex.build("pms", records, rules)


def test_default_mapping_customer_rules_in_order() -> None:
    """The default customers flow matches by org number first, then e-mail."""
    names = [r.name for r in rules_from_mapping(default_mapping().flow("customers"))]
    assert names == ["OrganizationNumber = organization_number", "EmailAddress = email"]


def test_mapping_rule_matches_org_number_digits() -> None:
    """An org number written with spaces matches the plain digits through the mapping's rule."""
    found = index(
        "customers",
        ProjectedRecord("m1", {"kind": "company", "organization_number": "912 345 678"}),
    ).find({"kind": "company", "organization_number": "912345678"})
    assert (found.rule, found.unique) == ("OrganizationNumber = organization_number", "m1")


def test_mapping_email_rule_is_for_persons_only() -> None:
    """The mapping's e-mail rule links persons and ignores companies."""
    candidates = (
        ProjectedRecord("m1", {"kind": "person", "email": "Kari@Example.no"}),
        ProjectedRecord("m2", {"kind": "company", "email": "post@acme.no"}),
    )
    assert (
        index("customers", *candidates).find({"kind": "person", "email": "kari@example.no"}).unique
        == "m1"
    )
    assert (
        index("customers", *candidates)
        .find({"kind": "company", "email": "post@acme.no"})
        .candidates
        == ()
    )


def test_mapping_rule_reports_ambiguity() -> None:
    """Two projects with the same code are ambiguous under the mapping's rule."""
    found = index(
        "projects", ProjectedRecord("p1", {"code": "P-1"}), ProjectedRecord("p2", {"code": "P-1"})
    ).find({"code": "P-1"})
    assert found.ambiguous
