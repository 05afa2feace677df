"""Executor pieces: action groups, create bodies, the report JSON, the mapping's merge rules."""

from __future__ import annotations

from tolken.engine.flow import match_rules
from tolken.engine.match import CandidateIndex
from tolken.engine.model import (
    Action,
    Ambiguous,
    CreateInPMS,
    FieldConflict,
    Link,
    ProjectedRecord,
    RecordConflict,
    SaveShadow,
    UpdatePMS,
    UpdatePowerOffice,
)
from tolken.engine.pairs import group_actions, jsonable, without_empty
from tolken.engine.report import CycleReport
from tolken.mapping import default_mapping


def test_actions_are_grouped_per_record_and_pair() -> None:
    """Everything about one pair is applied (or parked) together; a Link starts its pair."""
    conflict = FieldConflict("name", "A", "B", "C", "pms", "newest-wins")
    actions: list[Action] = [
        RecordConflict("1", "a", conflict),
        UpdatePMS("1", "a", {"name": "B"}, 3),
        UpdatePowerOffice("1", "a", {"name": "B"}),
        CreateInPMS("2", {"name": "X"}, "k2"),
        CreateInPMS("3", {"name": "Y"}, "k3"),
        Link("4", "d", "rule"),
        SaveShadow("4", "d", {"name": "Z"}),
        Ambiguous("poweroffice", "5", ("e", "f"), "rule"),
    ]
    groups = [[type(a).__name__ for a in g] for g in group_actions(actions)]
    assert groups == [
        ["RecordConflict", "UpdatePMS", "UpdatePowerOffice"],
        ["CreateInPMS"],
        ["CreateInPMS"],
        ["Link", "SaveShadow"],
        ["Ambiguous"],
    ]


def test_create_bodies_leave_out_empty_values() -> None:
    """A create sends no nulls or empty nested objects; values that are set stay."""
    body = {"name": "Acme", "email": None, "active": False, "address": {"line1": None, "city": ""}}
    assert without_empty(body) == {"name": "Acme", "active": False}
    assert without_empty({"address": {"city": "Oslo", "line2": None}}) == {
        "address": {"city": "Oslo"}
    }


def test_conflict_values_are_stored_as_json() -> None:
    """Values that are not JSON types (dates) are stored as text, containers kept."""
    from datetime import date

    assert jsonable({"a": (1, date(2025, 1, 2))}) == {"a": [1, "2025-01-02"]}


def test_the_report_json_has_the_contract_counts_for_every_flow() -> None:
    """`sync --json`: per flow the six contract counters, and requests per system."""
    report = CycleReport(requests={"poweroffice": 3, "pms": 4})
    report.flow("departments").add("created")
    report.flow("customers").add("failed", 2)
    data = report.to_json()
    for counts in data["flows"].values():
        assert {"created", "linked", "updated", "conflicts", "failed", "unchanged"} <= set(counts)
    assert data["flows"]["departments"]["created"] == 1
    assert data["flows"]["customers"]["failed"] == 2
    assert data["requests"] == {"poweroffice": 3, "pms": 4}
    assert report.total("failed") == 2


def _record(record_id: str, **values: object) -> ProjectedRecord:
    return ProjectedRecord(record_id, values)


def test_mapping_merge_rules_match_organisation_numbers_by_digits() -> None:
    """The default customer rule links ``NO 912 345 678 MVA`` to ``912345678``."""
    rules = match_rules(default_mapping().flow("customers"))
    pms = [
        _record("c1", kind="company", organization_number="912345678"),
        _record("c2", kind="company", organization_number="998877665"),
    ]
    index = CandidateIndex.build("pms", pms, rules)
    found = index.find({"kind": "company", "organization_number": "NO 912 345 678 MVA"})
    assert found.unique == "c1"


def test_mapping_email_rule_applies_to_persons_only() -> None:
    """Two companies sharing an e-mail are not matched by it; two persons are."""
    rules = match_rules(default_mapping().flow("customers"))
    pms = [
        _record("p1", kind="person", email="Kari@Example.no"),
        _record("c1", kind="company", email="post@example.no"),
    ]
    index = CandidateIndex.build("pms", pms, rules)
    assert index.find({"kind": "person", "email": "kari@example.no"}).unique == "p1"
    assert index.find({"kind": "company", "email": "post@example.no"}).unique is None


def test_json_values_are_kept_and_keys_made_text() -> None:
    """Plain JSON values pass as they are at any depth; keys become text, a str subclass stays."""
    from enum import StrEnum

    class Kind(StrEnum):
        COMPANY = "company"

    body = {"a": {"b": None, "c": True, 1: 2.5}, "kind": Kind.COMPANY, "n": [0, "x"]}
    out = jsonable(body)
    assert out == {"a": {"b": None, "c": True, "1": 2.5}, "kind": "company", "n": [0, "x"]}
    assert out["kind"] is Kind.COMPANY
