"""Listing bounds: a listing that makes no progress, runs too long or is stopped ends clearly."""

from __future__ import annotations

import threading

import pytest
import structlog.testing

from tolken.connectors._listing import LOG_EVERY_PAGES, ListingGuard, ListingLimits
from tolken.errors import Fatal, Stopped


def _guard(**kwargs: object) -> ListingGuard:
    return ListingGuard("the PMS", "pms", "GET /api/v1/customers", **kwargs)  # type: ignore[arg-type]


def test_pages_that_move_forward_pass() -> None:
    """New ids, or a later (updated_at, id) with the same ids, count as progress."""
    guard = _guard()
    guard.page(["a", "b"], ("2026-01-01", "b"), more=True)
    guard.page(["c", "d"], ("2026-01-02", "d"), more=True)
    guard.page(["c", "d"], ("2026-01-03", "d"), more=True)  # edited meanwhile: moved on
    guard.page([], None, more=False)  # an empty last page ends a listing
    assert (guard.pages, guard.records) == (4, 6)


def test_the_same_page_again_is_fatal_naming_the_system_and_request() -> None:
    """A page with only the records of the page before, and more to come: a clear error."""
    guard = _guard()
    guard.page(["a", "b"], ("2026-01-01", "b"), more=True)
    with pytest.raises(Fatal, match=r"^pms: the PMS listing GET /api/v1/customers sent page 2"):
        guard.page(["a", "b"], ("2026-01-01", "b"), more=True)


def test_pages_that_alternate_are_caught_too() -> None:
    """A, B, A: the third page repeats the first, so the listing is going round."""
    guard = _guard()
    guard.page(["a"], None, more=True)
    guard.page(["b"], None, more=True)
    with pytest.raises(Fatal, match="same records"):
        guard.page(["a"], None, more=True)


def test_an_empty_page_that_asks_to_go_on_is_fatal() -> None:
    """No items and a next cursor is no progress."""
    with pytest.raises(Fatal, match="empty page 1"):
        _guard().page([], None, more=True)


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (ListingLimits(pages=3), "more than 3 pages"),
        (ListingLimits(records=5), "more than 5 records"),
    ],
)
def test_caps_on_pages_and_records(limits: ListingLimits, message: str) -> None:
    """A listing that keeps bringing new records still ends at its caps."""
    guard = _guard(limits=limits)

    def page_on() -> None:
        for n in range(100):
            guard.page([f"r{n}a", f"r{n}b"], None, more=True)

    with pytest.raises(Fatal, match=message):
        page_on()
    assert guard.pages <= 3


def test_cap_on_time() -> None:
    """A listing that takes longer than its time cap ends with a clear error."""
    now = [0.0]
    guard = _guard(limits=ListingLimits(seconds=60), clock=lambda: now[0])
    guard.page(["a"], None, more=True)
    now[0] = 61.0
    with pytest.raises(Fatal, match="longer than 60 seconds"):
        guard.page(["b"], None, more=True)


def test_a_stop_ends_the_listing_before_the_next_page() -> None:
    """Once a stop is asked for, a listing with more to come raises Stopped; a last page not."""
    stop = threading.Event()
    guard = _guard(stop=stop)
    guard.page(["a"], None, more=True)
    stop.set()
    guard.page(["b"], None, more=False)
    with pytest.raises(Stopped):
        guard.page(["c"], None, more=True)


def test_a_long_listing_logs_its_progress() -> None:
    """Every LOG_EVERY_PAGES pages a listing logs how far it got, naming the request."""
    guard = _guard()
    with structlog.testing.capture_logs() as logs:
        for n in range(LOG_EVERY_PAGES * 2):
            guard.page([f"r{n}"], None, more=True)
    progress = [entry for entry in logs if entry["event"] == "listing in progress"]
    assert [entry["pages"] for entry in progress] == [LOG_EVERY_PAGES, LOG_EVERY_PAGES * 2]
    assert progress[0]["request"] == "GET /api/v1/customers"
