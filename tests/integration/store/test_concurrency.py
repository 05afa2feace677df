"""Several workers, each with its own Store, on one database at the same time."""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Callable

from tolken.store import DuplicateLink, DuplicatePendingCreate, TenantStore, open_store

WORKERS = 4
RECORDS = 30


def run_workers(url: str, work: Callable[[TenantStore, int], None]) -> list[BaseException]:
    """Run ``work(store, worker_number)`` in WORKERS threads, each with its own Store."""
    errors: list[BaseException] = []
    stores = [open_store(url) for _ in range(WORKERS)]
    barrier = threading.Barrier(WORKERS)

    def worker(number: int) -> None:
        try:
            barrier.wait()
            work(stores[number].for_tenant("acme"), number)
        except BaseException as exc:  # noqa: BLE001 - a thread's error, reported by the caller's assertion
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for store in stores:
        store.close()
    return errors


def test_concurrent_workers_never_duplicate_links(store_url: str) -> None:
    """Workers racing to link the same records end with exactly one link per record."""
    open_store(store_url).close()  # migrate once, so the race is about links only
    refused = [0] * WORKERS

    def work(store: TenantStore, number: int) -> None:
        ids = list(range(RECORDS))
        random.Random(number).shuffle(ids)
        for i in ids:
            if store.get_link_by_po("customers", str(i)) is not None:
                continue
            try:
                # Each worker would have created its own PMS record: only one may win.
                with store.transaction():
                    link = store.create_link("customers", str(i), f"c-{i}-w{number}")
                    store.add_history(link.id, "to_pms", "create", {}, "new in poweroffice")
            except DuplicateLink:
                refused[number] += 1

    assert run_workers(store_url, work) == []
    with open_store(store_url) as db:
        store = db.for_tenant("acme")
        links = store.list_links("customers")
        assert sorted(int(ln.poweroffice_id) for ln in links) == list(range(RECORDS))
        assert len({ln.pms_id for ln in links}) == RECORDS
        assert all(len(store.history_for_link(ln.id)) == 1 for ln in links)


def test_concurrent_workers_link_the_same_pms_record_once(store_url: str) -> None:
    """Two PowerOffice records matched to one PMS record by racing workers link only one."""
    open_store(store_url).close()

    def work(store: TenantStore, number: int) -> None:
        for i in range(RECORDS):
            with contextlib.suppress(DuplicateLink):
                store.create_link("departments", f"{i}-w{number}", f"c-{i}")

    assert run_workers(store_url, work) == []
    with open_store(store_url) as db:
        store = db.for_tenant("acme")
        links = store.list_links()
        assert sorted(ln.pms_id for ln in links) == sorted(f"c-{i}" for i in range(RECORDS))


def test_concurrent_workers_pend_one_create_per_record(store_url: str) -> None:
    """Only one worker gets to create a given record; the others are told it is pending."""
    open_store(store_url).close()
    won: list[str] = []
    lock = threading.Lock()

    def work(store: TenantStore, _number: int) -> None:
        for i in range(RECORDS):
            try:
                store.add_pending_create("customers", "pms", str(i))
            except DuplicatePendingCreate:
                continue
            with lock:
                won.append(str(i))

    assert run_workers(store_url, work) == []
    assert sorted(won, key=int) == [str(i) for i in range(RECORDS)]
    with open_store(store_url) as db:
        store = db.for_tenant("acme")
        assert len(store.pending_creates()) == RECORDS


def test_concurrent_failures_count_every_attempt(store_url: str) -> None:
    """Failures of one record reported by several workers make one row counting them all."""
    open_store(store_url).close()

    def work(store: TenantStore, number: int) -> None:
        for _ in range(10):
            store.record_failure("projects", "pms", "p-1", "ServerError", f"w{number}")

    assert run_workers(store_url, work) == []
    with open_store(store_url) as db:
        store = db.for_tenant("acme")
        [failure] = store.list_failures()
        assert failure.attempts == WORKERS * 10
