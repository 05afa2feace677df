"""Page-number paging: when to stop and what to ask next."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tolken.connectors.poweroffice import Page, PageRequest, next_page, paginate
from tolken.connectors.poweroffice._paging import paginate_ahead, parse_pagination_header

FIRST = PageRequest(1, 3)


def _listing(count: int, fetched: list[int] | None = None) -> Callable[[PageRequest], Page[int]]:
    """A listing of ``range(count)``: full pages, then a short one or 204; notes page numbers."""
    data = list(range(count))

    def fetch(request: PageRequest) -> Page[int]:
        if fetched is not None:
            fetched.append(request.number)
        start = (request.number - 1) * request.size
        chunk = data[start : start + request.size]
        return Page(request, 200 if chunk else 204, chunk)

    return fetch


def test_full_page_asks_for_the_next() -> None:
    """A full page without paging header leads to the next page number."""
    assert next_page(Page(FIRST, 200, [1, 2, 3])) == PageRequest(2, 3)


def test_stops_on_204_empty_or_short_page() -> None:
    """204, an empty array or a page shorter than the page size ends the listing."""
    assert next_page(Page(FIRST, 204, [])) is None
    assert next_page(Page(FIRST, 200, [])) is None
    assert next_page(Page(FIRST, 200, [1, 2])) is None


def test_next_page_link_decides_when_present() -> None:
    """With X-Pagination, an empty nextPageLink stops and a link is followed by its numbers."""
    stop = parse_pagination_header(json.dumps({"nextPageLink": None, "totalPages": 1}))
    assert next_page(Page(FIRST, 200, [1, 2, 3], stop)) is None
    header = parse_pagination_header(
        json.dumps(
            {"NextPageLink": "https://elsewhere.example/v2/Customers?PageNumber=2&PageSize=3"}
        )
    )
    # A short page with a next link continues (the server may cap the page size).
    assert next_page(Page(FIRST, 200, [1], header)) == PageRequest(2, 3)


def test_a_link_that_does_not_move_forward_cannot_loop() -> None:
    """A nextPageLink pointing at the same or an earlier page steps on by one instead."""
    header = parse_pagination_header(json.dumps({"nextPageLink": "/v2/Customers?PageNumber=1"}))
    assert next_page(Page(FIRST, 200, [1, 2, 3], header)) == PageRequest(2, 3)


def test_bad_pagination_header_is_ignored() -> None:
    """A header that is not a JSON object is treated as absent."""
    assert parse_pagination_header("not json") is None
    assert parse_pagination_header("[1]") is None
    assert parse_pagination_header(None) is None


def test_paginate_streams_until_the_short_page() -> None:
    """The generator fetches pages lazily and stops after the short one."""
    fetched: list[int] = []
    pages = paginate(_listing(8, fetched), FIRST)
    first = next(pages)
    assert fetched == [1]
    assert list(first.items) == [0, 1, 2]
    assert [list(p.items) for p in pages] == [[3, 4, 5], [6, 7]]
    assert fetched == [1, 2, 3]


def test_paginate_exact_multiple_ends_on_204() -> None:
    """When the count is a multiple of the page size, one more request sees 204 and stops."""
    assert [len(p.items) for p in paginate(_listing(6), FIRST)] == [3, 3, 0]


def test_read_ahead_yields_the_same_pages_and_fetches_one_ahead() -> None:
    """The read-ahead pager gives the same pages in order, fetching at most one page early."""
    fetched: list[int] = []
    pages = paginate_ahead(_listing(8, fetched), FIRST)
    first = next(pages)
    assert list(first.items) == [0, 1, 2]
    assert [list(p.items) for p in pages] == [[3, 4, 5], [6, 7]]
    assert fetched == [1, 2, 3]


def test_read_ahead_raises_a_failed_page_in_order() -> None:
    """An error fetching page 2 surfaces after page 1 was yielded, not before."""

    def fetch(request: PageRequest) -> Page[int]:
        if request.number == 2:
            raise RuntimeError("page 2 failed")
        return Page(request, 200, [1, 2, 3])

    pages = paginate_ahead(fetch, FIRST)
    assert list(next(pages).items) == [1, 2, 3]
    with pytest.raises(RuntimeError, match="page 2"):
        next(pages)


@given(
    count=st.integers(0, 60),
    size=st.integers(1, 12),
    header=st.booleans(),
    ahead=st.booleans(),
)
def test_property_every_record_once_and_no_wasted_requests(
    count: int, size: int, header: bool, ahead: bool
) -> None:
    """For any record count and page size, paging yields every record once, in order, with
    ceil(count/size) requests (one more only for an exact multiple without a header)."""
    data = list(range(count))
    requests: list[int] = []

    def fetch(request: PageRequest) -> Page[int]:
        requests.append(request.number)
        start = (request.number - 1) * request.size
        chunk = data[start : start + request.size]
        pages = -(-count // request.size)
        paging = None
        if header:
            more = request.number < pages
            paging = {"nextpagelink": f"/v2/X?PageNumber={request.number + 1}" if more else None}
        return Page(request, 200 if chunk else 204, chunk, paging)

    pager = paginate_ahead if ahead else paginate
    seen = [item for page in pager(fetch, PageRequest(1, size)) for item in page.items]
    assert seen == data
    if count == 0:
        expected = 1  # the 204
    else:
        exact_multiple = count % size == 0
        expected = -(-count // size) + (1 if exact_multiple and not header else 0)
    assert len(requests) == expected
