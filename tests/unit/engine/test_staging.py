"""The cycle's staging: records set aside by kind, the match index and claims in SQL."""

from __future__ import annotations

from typing import Any

from tolken.connectors.base import RemoteRecord
from tolken.engine.match import DEFAULT_RULES, CandidateIndex
from tolken.engine.model import ProjectedRecord
from tolken.engine.paged import MemoryClaims
from tolken.engine.staging import Staging

RULES = DEFAULT_RULES["customers"]


def _pms(record_id: str, **values: Any) -> tuple[RemoteRecord, ProjectedRecord]:
    return RemoteRecord("customers", record_id, dict(values)), ProjectedRecord(record_id, values)


def test_records_come_back_by_id_a_page_at_a_time_the_later_copy_replacing_the_earlier() -> None:
    """Put twice, the later copy is kept; pages follow the ids; deleted ids are gone."""
    with Staging() as staging:
        staging.put("k", [RemoteRecord("r", f"{i:03d}", {"n": i}) for i in range(7)])
        staging.put("k", [RemoteRecord("r", "003", {"n": "again"})])
        staging.put("other", [RemoteRecord("r", "x", {})])
        pages = list(staging.pages("k", size=3))
        assert [[r.id for r in page] for page in pages] == [
            ["000", "001", "002"],
            ["003", "004", "005"],
            ["006"],
        ]
        assert pages[1][0].data == {"n": "again"}
        staging.delete("k", ["000", "006"])
        assert staging.count("k") == 5
        assert staging.has("k", ["000", "001", "x"]) == {"001"}


def test_an_unused_staging_answers_empty_and_opens_nothing() -> None:
    """An idle cycle sets nothing aside: questions are answered without a database."""
    staging = Staging()
    assert list(staging.pages("k")) == []
    assert staging.count("k") == 0
    assert staging._conn is None  # noqa: SLF001 (what the test is about)
    staging.close()


def test_staged_candidates_find_what_the_in_memory_index_finds() -> None:
    """The SQL index gives each record the match CandidateIndex gives: first rule with any
    candidate decides, candidates in id order, ambiguous when several."""
    pool = [
        _pms("m1", kind="company", organization_number="912 345 678"),
        _pms("m2", kind="company", organization_number="912345678"),
        _pms("m3", kind="person", email="Kari@Example.no"),
        _pms("m4", kind="company", organization_number="987654321"),
        _pms("m5", kind="person", email="ola@example.no", organization_number=None),
    ]
    queries: list[dict[str, Any]] = [
        {"kind": "company", "organization_number": "912345678"},
        {"kind": "person", "email": "kari@example.no"},
        {"kind": "company", "organization_number": "NO 987 654 321 MVA"},
        {"kind": "person", "email": "OLA@example.no", "organization_number": "111"},
        {"kind": "company", "organization_number": None},
    ]
    index = CandidateIndex.build("pms", (p for _, p in pool), RULES)
    with Staging() as staging:
        staged = staging.candidates("pool", "pms", RULES)
        staged.add(pool)
        assert staged.find_many(queries) == [index.find(q) for q in queries]
        assert staged.find_many(queries)[0].candidates == ("m1", "m2")
        # A later copy replaces the earlier one's keys: m2 no longer shares m1's number.
        staged.add([_pms("m2", kind="company", organization_number="923456789")])
        assert staged.find_many(queries[:1])[0].candidates == ("m1",)
        assert staged.get_many(["m3"])["m3"].values["email"] == "Kari@Example.no"
        assert staged.raw_many(["m3"])["m3"].id == "m3"


def test_staged_claims_hold_what_the_memory_book_holds() -> None:
    """Claimants by source id, and which targets were claimed or named ambiguous."""
    with Staging() as staging:
        index = CandidateIndex.build(
            "pms",
            [
                ProjectedRecord("m1", {"kind": "company", "organization_number": "1"}),
                ProjectedRecord("m2", {"kind": "company", "organization_number": "2"}),
                ProjectedRecord("m3", {"kind": "company", "organization_number": "2"}),
            ],
            RULES,
        )
        matched = [
            ("p9", index.find({"organization_number": "1"})),
            ("p1", index.find({"organization_number": "1"})),
            ("p5", index.find({"organization_number": "2"})),
            ("p6", index.find({"organization_number": "3"})),
        ]
        sql, memory = staging.claims("book"), MemoryClaims()
        sql.note(matched)
        memory.note(matched)
        targets = ["m1", "m2", "m3", "m4"]
        assert sql.claimants(targets) == memory.claimants(targets)
        assert sql.claimants(["m1"])["m1"] == [
            ("p1", "organization-number"),
            ("p9", "organization-number"),
        ]
        assert sql.reported(targets) == memory.reported(targets) == {"m1", "m2", "m3"}
