"""The reference PMS list cursor under concurrent writes: nothing skipped, nothing repeated.

Guarantee checked (also in docs/pms-contract.md): during one traversal (first
page to ``next_cursor: null``), items come in strictly increasing
``(updated_at, id)`` order; no ``(id, version)`` is returned twice; a record
is returned again only with a newer version, written after its previous
appearance; and every record that exists when the last page is read is
returned, its last appearance showing its current version.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopback import serve
from tolken.sandbox.credentials import PMS_API_KEY
from tolken.sandbox.pms import create_app
from tolken.sandbox.pms.cursor import (
    MonotonicClock,
    decode_cursor,
    encode_cursor,
    format_ts,
    parse_ts,
)

AUTH = {"Authorization": f"Bearer {PMS_API_KEY}"}

Op = tuple[str, int]
ops = st.tuples(st.sampled_from(["insert", "update", "delete"]), st.integers(0, 1000))


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve(create_app()) as url:
        yield url


def check_traversal(seen: list[dict[str, Any]], final: dict[str, int], writes: set[str]) -> None:
    """Assert the documented guarantee for one traversal.

    ``final`` maps every record existing after the traversal to its version;
    ``writes`` holds the ids written (inserted, updated) during the traversal.
    """
    keys = [(r["updated_at"], r["id"]) for r in seen]
    assert keys == sorted(set(keys)), "items out of order or repeated"
    versions: dict[str, list[int]] = {}
    for record in seen:
        versions.setdefault(record["id"], []).append(record["version"])
    for record_id, found in versions.items():
        assert found == sorted(set(found)), f"{record_id} repeated at the same version"
        if len(found) > 1:
            assert record_id in writes, f"{record_id} repeated without being written"
    for record_id, version in final.items():
        assert record_id in versions, f"{record_id} skipped"
        assert versions[record_id][-1] == version, f"{record_id} not shown in its final state"


@pytest.mark.slow
@settings(max_examples=25)
@given(
    initial=st.integers(0, 12),
    limit=st.integers(1, 5),
    between=st.lists(st.lists(ops, max_size=4), max_size=8),
)
def test_cursor_never_skips_or_repeats_under_interleaved_writes(
    base_url: str, initial: int, limit: int, between: list[list[Op]]
) -> None:
    """Inserts, updates and deletes between page reads never make the cursor skip or repeat."""
    httpx.post(f"{base_url}/_sandbox/reset").raise_for_status()
    with httpx.Client(base_url=f"{base_url}/api/v1", headers=AUTH) as api:
        live: dict[str, int] = {}

        def insert() -> str:
            record = api.post("/customers", json={"kind": "company", "name": "A"}).json()
            live[record["id"]] = record["version"]
            return str(record["id"])

        for _ in range(initial):
            insert()
        writes: set[str] = set()
        seen: list[dict[str, Any]] = []
        cursor: str | None = None
        page_number = 0
        while True:
            assert page_number < 200, "the cursor does not advance"
            params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
            page = api.get("/customers", params=params).json()
            seen += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
            for op, pick in between[page_number] if page_number < len(between) else []:
                ids = sorted(live)
                if op == "insert" or not ids:
                    writes.add(insert())
                elif op == "update":
                    target = ids[pick % len(ids)]
                    updated = api.patch(f"/customers/{target}", json={"phone": str(pick)}).json()
                    live[target] = updated["version"]
                    writes.add(target)
                else:
                    target = ids[pick % len(ids)]
                    assert api.delete(f"/customers/{target}").status_code == 204
                    del live[target]
            page_number += 1
    check_traversal(seen, live, writes)


def test_cursor_holds_while_another_thread_writes(base_url: str) -> None:
    """A reader paging over HTTP while a writer thread inserts and updates sees the guarantee."""
    httpx.post(f"{base_url}/_sandbox/reset").raise_for_status()
    stop = threading.Event()
    writes: set[str] = set()
    lock = threading.Lock()
    with httpx.Client(base_url=f"{base_url}/api/v1", headers=AUTH) as api:
        ids = [
            api.post("/customers", json={"kind": "company", "name": f"F{i}"}).json()["id"]
            for i in range(40)
        ]

        def writer() -> None:
            with httpx.Client(base_url=f"{base_url}/api/v1", headers=AUTH) as w:
                n = 0
                while not stop.is_set():
                    n += 1
                    if n % 2:
                        new = w.post("/customers", json={"kind": "person", "name": "P"}).json()
                        with lock:
                            writes.add(new["id"])
                    else:
                        target = ids[n % len(ids)]
                        with lock:
                            writes.add(target)
                        w.patch(f"/customers/{target}", json={"phone": str(n)})

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            seen: list[dict[str, Any]] = []
            cursor = None
            pages = 0
            while True:
                assert pages < 200, "the cursor does not advance"
                params: dict[str, Any] = {"limit": 7, **({"cursor": cursor} if cursor else {})}
                page = api.get("/customers", params=params).json()
                seen += page["items"]
                cursor = page["next_cursor"]
                if cursor is None:
                    break
                pages += 1
                while thread.is_alive() and _count(writes, lock) < 3 * pages:
                    time.sleep(0.001)  # let the writer interleave a few writes per page
                if len(seen) > 20 and thread.is_alive():
                    # Stop writing mid-traversal, so the final state is known before the end.
                    stop.set()
                    thread.join()
        finally:
            stop.set()
            thread.join()
        final = {
            r["id"]: r["version"]
            for r in api.get("/customers", params={"limit": 1000}).json()["items"]
        }
    assert len(writes) > 0
    check_traversal(seen, final, writes)


def _count(items: set[str], lock: threading.Lock) -> int:
    with lock:
        return len(items)


@given(steps=st.lists(st.integers(-5_000_000, 5_000_000), min_size=1, max_size=30))
def test_clock_is_strictly_increasing_even_when_wall_time_steps_back(steps: list[int]) -> None:
    """updated_at values handed out are strictly increasing whatever the wall clock does."""
    base = datetime(2026, 1, 1, tzinfo=UTC)
    offsets = iter(steps)
    clock = MonotonicClock(now=lambda: base + timedelta(microseconds=next(offsets)))
    stamps = [clock.next() for _ in steps]
    assert stamps == sorted(set(stamps))
    assert [parse_ts(s) for s in stamps] == sorted({parse_ts(s) for s in stamps})


def test_clock_continues_after_the_newest_stored_timestamp() -> None:
    """After a restart the clock never hands out a timestamp at or before a stored one."""
    clock = MonotonicClock(now=lambda: datetime(2020, 1, 1, tzinfo=UTC))
    clock.observe("2026-05-01T10:00:00.000009Z")
    assert clock.next() == "2026-05-01T10:00:00.000010Z"


@given(
    stamp=st.datetimes(timezones=st.just(UTC)),
    record_id=st.text(max_size=20),
)
def test_cursor_round_trips(stamp: datetime, record_id: str) -> None:
    """A cursor decodes to exactly the (updated_at, id) it was made from."""
    text = format_ts(stamp)
    assert decode_cursor(encode_cursor(text, record_id)) == (text, record_id)


@pytest.mark.parametrize("bad", ["", "!!!", "bm9wZQ", "WzEsMl0", "WyJ4IiwiYSJd"])
def test_foreign_cursors_are_refused(bad: str) -> None:
    """Text that is not one of our cursors raises ValueError (the API answers 422)."""
    with pytest.raises(ValueError, match=r"cursor|Invalid isoformat"):
        decode_cursor(bad)
