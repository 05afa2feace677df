"""Merge rules (DESIGN §3): which existing PMS record a PowerOffice record links to."""

from __future__ import annotations

import pytest

from tolken.engine.match import DEFAULT_RULES, CandidateIndex, MatchRule
from tolken.engine.model import ProjectedRecord, Values


def pms(record_id: str, **values: object) -> ProjectedRecord:
    return ProjectedRecord(record_id, values)


def customers(
    *candidates: ProjectedRecord, exclude: frozenset[str] = frozenset()
) -> CandidateIndex:
    return CandidateIndex.build("pms", candidates, DEFAULT_RULES["customers"], exclude=exclude)


COMPANY: Values = {"kind": "company", "name": "Acme AS", "organization_number": "912345678"}


def test_organization_number_matches_digits_only() -> None:
    """Org numbers match when their digits agree ("912 345 678 MVA" = "912345678")."""
    index = customers(pms("m1", kind="company", organization_number="NO 912 345 678 MVA"))
    found = index.find(COMPANY)
    assert (found.rule, found.unique) == ("organization-number", "m1")


def test_different_organization_number_does_not_match() -> None:
    """A different org number finds nothing."""
    index = customers(pms("m1", kind="company", organization_number="987654321"))
    assert index.find(COMPANY).unique is None
    assert not index.find(COMPANY).ambiguous


def test_person_matches_by_email_case_insensitively() -> None:
    """A person with no org number matches a PMS person by e-mail, ignoring case."""
    index = customers(pms("m1", kind="person", email=" Kari@Example.NO"))
    found = index.find({"kind": "person", "email": "kari@example.no"})
    assert (found.rule, found.unique) == ("person-email", "m1")


def test_company_does_not_match_by_email() -> None:
    """The e-mail rule is for persons only: companies sharing an e-mail are not linked."""
    index = customers(pms("m1", kind="company", email="post@acme.no"))
    assert index.find({"kind": "company", "email": "post@acme.no"}).candidates == ()


def test_person_does_not_match_a_company_by_email() -> None:
    """A PowerOffice person does not match a PMS company with the same e-mail."""
    index = customers(pms("m1", kind="company", email="kari@example.no"))
    assert index.find({"kind": "person", "email": "kari@example.no"}).candidates == ()


def test_first_matching_rule_wins() -> None:
    """The org-number rule decides before the e-mail rule is tried."""
    index = customers(
        pms("by-org", kind="person", organization_number="912345678", email="x@y.no"),
        pms("by-mail", kind="person", email="kari@example.no"),
    )
    found = index.find(
        {"kind": "person", "organization_number": "912345678", "email": "kari@example.no"}
    )
    assert found.unique == "by-org"


def test_later_rule_is_used_when_the_first_finds_nothing() -> None:
    """No org-number match: the e-mail rule is tried next."""
    index = customers(pms("m1", kind="person", email="kari@example.no"))
    found = index.find(
        {"kind": "person", "organization_number": "111111111", "email": "kari@example.no"}
    )
    assert found.unique == "m1"


def test_several_candidates_are_ambiguous() -> None:
    """Two PMS records with the same org number: reported as ambiguous, none picked."""
    index = customers(
        pms("m2", kind="company", organization_number="912345678"),
        pms("m1", kind="company", organization_number="912345678"),
    )
    found = index.find(COMPANY)
    assert found.ambiguous
    assert found.unique is None
    assert found.candidates == ("m1", "m2")


def test_ambiguity_stops_the_search() -> None:
    """An ambiguous rule is not resolved by a weaker later rule."""
    index = customers(
        pms("m1", kind="person", organization_number="912345678", email="kari@example.no"),
        pms("m2", kind="person", organization_number="912345678"),
    )
    found = index.find(
        {"kind": "person", "organization_number": "912345678", "email": "kari@example.no"}
    )
    assert found.rule == "organization-number"
    assert found.ambiguous


def test_linked_records_are_not_candidates() -> None:
    """An already-linked PMS record is never matched again."""
    index = customers(
        pms("m1", kind="company", organization_number="912345678"), exclude=frozenset({"m1"})
    )
    assert index.find(COMPANY).candidates == ()


def test_linked_duplicate_leaves_a_unique_candidate() -> None:
    """Of two records with the same key, the linked one drops out and the other matches."""
    index = customers(
        pms("m1", kind="company", organization_number="912345678"),
        pms("m2", kind="company", organization_number="912345678"),
        exclude=frozenset({"m1"}),
    )
    assert index.find(COMPANY).unique == "m2"


def test_deleted_records_are_not_candidates() -> None:
    """A PMS tombstone is never a match."""
    tomb = ProjectedRecord(
        "m1", {"kind": "company", "organization_number": "912345678"}, deleted=True
    )
    assert customers(tomb).find(COMPANY).candidates == ()


def test_empty_keys_never_match() -> None:
    """Two records both lacking an org number and e-mail do not match each other."""
    index = customers(pms("m1", kind="company", organization_number="", email=None))
    assert index.find({"kind": "company", "organization_number": None}).candidates == ()


def test_departments_are_not_customer_candidates() -> None:
    """A PMS department is never linked to a PowerOffice customer."""
    index = customers(pms("d1", kind="department", organization_number="912345678"))
    assert index.find(COMPANY).candidates == ()


def test_department_code_matches_number_among_departments() -> None:
    """Departments match Code = number, only among PMS records of kind department."""
    index = CandidateIndex.build(
        "pms",
        [pms("c1", kind="company", number="10"), pms("d1", kind="department", number="10")],
        DEFAULT_RULES["departments"],
    )
    assert index.find({"kind": "department", "number": "10"}).unique == "d1"


def test_project_code_matches_code() -> None:
    """Projects match Code = code."""
    index = CandidateIndex.build(
        "pms", [pms("p1", code="P-1"), pms("p2", code="P-2")], DEFAULT_RULES["projects"]
    )
    assert index.find({"code": "P-2"}).unique == "p2"


def test_integer_code_matches_string_code() -> None:
    """A numeric code on one side matches the same digits as a string on the other."""
    index = CandidateIndex.build("pms", [pms("p1", code="1001")], DEFAULT_RULES["projects"])
    assert index.find({"code": 1001}).unique == "p1"


def test_rules_match_in_the_reverse_direction() -> None:
    """A PMS record is matched against PowerOffice candidates with the same rules."""
    index = CandidateIndex.build(
        "poweroffice", [ProjectedRecord("7", COMPANY)], DEFAULT_RULES["customers"]
    )
    assert index.find({"kind": "company", "organization_number": "912345678"}).unique == "7"


def test_callable_keys_and_conditions() -> None:
    """A rule may read its keys and condition through functions (the mapping's adapter)."""
    rule = MatchRule(
        "ext",
        po_key=lambda v: v.get("ExternalNumber"),
        pms_key=lambda v: v.get("number"),
        normalise=lambda v: None if v is None else int(v),
        pms_condition=lambda v: v.get("active") is True,
    )
    index = CandidateIndex.build(
        "pms", [pms("m1", number="42", active=True), pms("m2", number="42", active=False)], [rule]
    )
    assert index.find({"ExternalNumber": 42}).unique == "m1"


def test_unknown_normaliser_is_rejected() -> None:
    """A misspelt normaliser name is an error when the rule is made."""
    with pytest.raises(ValueError, match="unknown normaliser"):
        MatchRule("x", "a", "a", "digit")
