"""The cycle's staging: records set aside by kind, the match index and claims in SQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
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
    empty = CandidateIndex.build("pms", [], RULES)
    with Staging() as staging:
        staged = staging.candidates("pool", "pms", RULES)
        assert staged.find_many(queries) == [empty.find(q) for q in queries]  # nothing pooled
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


def test_records_read_back_equal_whatever_their_time_zone() -> None:
    """The compact form (fields as a tuple, a UTC or naive time as ISO text) loses nothing:
    other offsets, naive times, versions, tombstones, extras and unresolved fields survive."""
    oslo = timezone(timedelta(hours=1), "CET")
    times = [
        None,
        datetime(2026, 12, 7, 18, 1, 2, 345678, tzinfo=UTC),
        datetime(2026, 12, 7, 19, 1, 2, tzinfo=oslo),
        datetime(2026, 12, 7, 18, 1, 2),
    ]
    raws = [
        RemoteRecord("r", f"{i}", {"n": i, "nested": {"a": [1, 2]}}, at, i, i % 2 == 0, {"e": i})
        for i, at in enumerate(times)
    ]
    projected = [
        ProjectedRecord(f"{i}", {"v": i}, at, i, frozenset({"ref"}) if i else frozenset(), i == 3)
        for i, at in enumerate(times)
    ]
    with Staging() as staging:
        staging.put("raw", raws)
        staging.put_projected("projected", projected)
        assert [r for page in staging.pages("raw") for r in page] == raws
        assert list(staging.get_projected("projected", ["0", "1", "2", "3"]).values()) == projected
        again = staging.get_many("raw", ["1", "2"])
        first, second = again["1"].changed_at, again["2"].changed_at
        assert first is not None
        assert first.tzinfo is UTC
        assert second is not None
        assert second.tzname() == "CET"


def test_a_record_put_with_its_hash_comes_back_with_it_copies_included() -> None:
    """The hash rides with the record (copied with it); one put without one has None, and a
    later copy put without one replaces the hash too."""
    with Staging() as staging:
        records = [RemoteRecord("r", f"{i}", {"n": i}) for i in range(3)]
        staging.put_hashed("a", [(r, f"h{r.id}") for r in records])
        staging.put("a", [RemoteRecord("r", "2", {"n": "new"})])
        staging.copy("a", "b", ["0", "2"])
        for kind in ("a", "b"):
            got = staging.get_hashed(kind, ["0", "2"])
            assert got == {
                "0": (records[0], "h0"),
                "2": (RemoteRecord("r", "2", {"n": "new"}), None),
            }
        assert staging.get_hashed("a", ["1"]) == {"1": (records[1], "h1")}
        assert staging.get_many("a", ["1"]) == {"1": records[1]}


def test_copy_keeps_the_same_records_under_another_kind() -> None:
    """Copied in SQL: the chosen ids only, equal to the originals, replacing an earlier copy."""
    with Staging() as staging:
        staging.put("a", [RemoteRecord("r", f"{i}", {"n": i}) for i in range(4)])
        staging.put("b", [RemoteRecord("r", "1", {"n": "old"})])
        staging.copy("a", "b", ["1", "3", "missing"])
        assert staging.get_many("b", ["1", "3"]) == staging.get_many("a", ["1", "3"])
        assert staging.count("b") == 2


def test_a_pool_of_staged_records_matches_and_reads_them_from_where_they_are() -> None:
    """add_staged writes only keys: matches, projected and raw reads come from the staged kinds,
    alongside records pooled with add; a tombstone is no candidate."""
    with Staging() as staging:
        staged = [_pms("m1", kind="person", email="kari@example.no"), _pms("m2", kind="person")]
        tombstone = ProjectedRecord(
            "m3", {"kind": "person", "email": "ola@example.no"}, deleted=True
        )
        staging.put("raw", [raw for raw, _ in staged])
        staging.put_projected("new", [p for _, p in staged] + [tombstone])
        pool = staging.candidates("pool", "pms", RULES)
        assert pool.empty()
        pool.add_staged([tombstone], "new", "raw")
        assert pool.empty()
        pool.add([_pms("m4", kind="person", email="per@example.no")])
        assert not pool.empty()
        pool.add_staged([p for _, p in staged] + [tombstone], "new", "raw")
        found = pool.find_many(
            [
                {"kind": "person", "email": "Kari@example.no"},
                {"kind": "person", "email": "per@example.no"},
                {"kind": "person", "email": "ola@example.no"},
            ]
        )
        assert [f.candidates for f in found] == [("m1",), ("m4",), ()]
        assert set(pool.get_many(["m1", "m4"])) == {"m1", "m4"}
        assert pool.get_many(["m1"])["m1"] == staged[0][1]
        assert pool.raw_many(["m1", "m4"])["m1"] == staged[0][0]
        assert set(pool.raw_many(["m1", "m4"])) == {"m1", "m4"}


def test_a_listing_is_noted_by_id_hash_and_time_and_its_ids_read_as_a_set() -> None:
    """Noted rows come back by id a page at a time (a later row of an id replaces the earlier,
    times keep their offset); the ids read as a set from SQL, prefetched a page at a time or
    asked one by one; dropping the kind forgets them."""
    oslo = timezone(timedelta(hours=1))
    at = datetime(2026, 1, 1, 12, 0, 0, 250, tzinfo=oslo)
    with Staging() as staging:
        assert len(staging.listed_ids("l")) == 0  # nothing noted: nothing opened
        staging.note_listed(
            "l", [(f"{i:03d}", f"h{i}", at + timedelta(seconds=i)) for i in range(5)]
        )
        staging.note_listed("l", [("002", "again", None), ("x", "hx", at)])
        staging.note_listed("other", [("009", "h", at)])
        pages = list(staging.listed("l", size=2))
        assert [[i for i, _, _ in page] for page in pages] == [
            ["000", "001"],
            ["002", "003"],
            ["004", "x"],
        ]
        assert pages[0][1] == ("001", "h1", at + timedelta(seconds=1))
        assert pages[0][1][2].utcoffset() == timedelta(hours=1)
        assert pages[1][0] == ("002", "again", None)
        assert sorted(staging.listed_rows("l", ["004", "009", "x"])) == [
            ("004", "h4", at + timedelta(seconds=4)),
            ("x", "hx", at),
        ]
        ids = staging.listed_ids("l")
        assert len(ids) == 6
        assert list(ids) == ["000", "001", "002", "003", "004", "x"]
        assert "003" in ids
        assert "009" not in ids
        ids.prefetch(["000", "009"])
        assert "000" in ids
        assert "009" not in ids
        assert "004" in ids  # not prefetched: asked on its own
        staging.drop("l")
        assert len(staging.listed_ids("l")) == 0
        assert "003" not in staging.listed_ids("l")
        assert len(staging.listed_ids("other")) == 1


def test_the_ids_of_records_set_aside_read_as_a_set() -> None:
    """:meth:`Staging.ids`: membership and size of a kind's records, without reading them."""
    with Staging() as staging:
        staging.put("k", [RemoteRecord("r", i, {}) for i in ("b", "a", "c")])
        ids = staging.ids("k")
        assert sorted(ids) == ["a", "b", "c"]
        assert len(ids) == 3
        assert "b" in ids
        assert "z" not in ids
