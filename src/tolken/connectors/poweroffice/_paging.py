"""Page-number paging as pure values and one small generator.

PowerOffice lists are bare JSON arrays. The spec declares no paging envelope,
so the loop follows the robust rule of the reference (§4.1): ask for pages
from 1 and stop on 204, on an empty page, or on a page shorter than the page
size. When the response carries an ``X-Pagination`` JSON header, its
``nextPageLink`` decides instead (a missing or empty link stops; a link is
followed by its ``PageNumber``/``PageSize``, but against our own base URL, so
the token and subscription key never go to a host named in a header).

Every listing is bounded (:func:`guarded`): a page after which the listing
goes on must bring record ids the page before did not, and pages, records and
time are capped (:class:`~tolken.connectors._listing.ListingGuard`), so a
server that ignores ``PageNumber`` ends the run with a clear error instead of
a listing that never ends.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qsl, urlsplit

from tolken.connectors._listing import ListingGuard

__all__ = [
    "Page",
    "PageRequest",
    "guarded",
    "next_page",
    "paginate",
    "paginate_ahead",
    "parse_pagination_header",
]

T = TypeVar("T")


@dataclass(frozen=True)
class PageRequest:
    """Which page to ask for."""

    number: int
    size: int


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page as it came back: status, items and the parsed ``X-Pagination`` header."""

    request: PageRequest
    status: int
    items: Sequence[T]
    pagination: Mapping[str, Any] | None = None


def parse_pagination_header(value: str | None) -> dict[str, Any] | None:
    """The ``X-Pagination`` header as a dict with lower-cased keys; None when absent or not JSON."""
    if not value:
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None
    return {str(key).lower(): item for key, item in parsed.items()}


def _link_request(link: str, current: PageRequest) -> PageRequest:
    query = {key.lower(): item for key, item in parse_qsl(urlsplit(link).query)}
    try:
        number = int(query.get("pagenumber", current.number + 1))
        size = int(query.get("pagesize", current.size))
    except ValueError:
        return PageRequest(current.number + 1, current.size)
    if number <= current.number or size < 1:
        # A link that does not move forward would loop forever; step on instead.
        return PageRequest(current.number + 1, current.size)
    return PageRequest(number, size)


def next_page(page: Page[Any]) -> PageRequest | None:
    """The request for the page after ``page``, or None when the listing is complete."""
    if page.status == 204 or not page.items:
        return None
    if page.pagination is not None:
        link = page.pagination.get("nextpagelink")
        if not link or not isinstance(link, str):
            return None
        return _link_request(link, page.request)
    if len(page.items) < page.request.size:
        return None
    return PageRequest(page.request.number + 1, page.request.size)


def guarded(
    fetch: Callable[[PageRequest], Page[T]], guard: ListingGuard, record_id: Callable[[T], str]
) -> Callable[[PageRequest], Page[T]]:
    """``fetch`` telling ``guard`` about every page before it is used (progress, caps, stop)."""

    def fetch_guarded(request: PageRequest) -> Page[T]:
        if request.number == 1:
            guard.check_stop()
        page = fetch(request)
        ids = [record_id(item) for item in page.items]
        guard.page(ids, more=next_page(page) is not None)
        return page

    return fetch_guarded


def paginate(fetch: Callable[[PageRequest], Page[T]], first: PageRequest) -> Iterator[Page[T]]:
    """Yield pages from ``first`` on, asking :func:`next_page` what comes next.

    Only one page is alive at a time, so memory stays flat whatever the count.
    """
    request: PageRequest | None = first
    while request is not None:
        page = fetch(request)
        yield page
        request = next_page(page)


def paginate_ahead(
    fetch: Callable[[PageRequest], Page[T]], first: PageRequest
) -> Iterator[Page[T]]:
    """Like :func:`paginate`, but the next page is fetched while the caller works on this one.

    The next request is known as soon as a page arrives (:func:`next_page` is
    pure), so one worker thread asks for it at once: network and server time
    overlap the caller's processing. At most two pages are alive, so memory
    stays flat. Errors surface, in order, when the failed page is reached;
    closing the generator early waits for the one request in flight.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="page-ahead") as pool:
        future: Future[Page[T]] | None = pool.submit(fetch, first)
        while future is not None:
            page = future.result()
            request = next_page(page)
            future = pool.submit(fetch, request) if request is not None else None
            yield page
