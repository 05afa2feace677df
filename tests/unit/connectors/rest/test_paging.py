"""Each paging variant of ``pms.rest.paging`` against a loopback API that really pages that way."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from restapi import Connect, RestApi, Shape
from tolken.config import RestPaging
from tolken.connectors.rest import PageRequest, first_page, next_link, next_page
from tolken.errors import Fatal

SEVEN = [f"c{i}" for i in range(7)]


def _seed(api: RestApi) -> None:
    for name in SEVEN:
        api.add("customers", name=name)


VARIANTS: list[tuple[Shape, dict[str, Any], int]] = [
    # (how the server pages, the section that describes it, list requests for 7 records by 3)
    (Shape(body="root", paging="page"), {"paging": {"type": "page"}}, 4),
    (
        Shape(body="root", paging="page"),
        {"paging": {"type": "page", "short_page_ends": True}},
        3,
    ),
    (Shape(body="items", paging="page"), {"body": {"list_path": "items"}}, 4),
    (
        Shape(body="items", paging="page", total=True),
        {"body": {"list_path": "items"}, "paging": {"total_path": "total"}},
        3,
    ),
    (Shape(body="root", paging="offset"), {"paging": {"type": "offset"}}, 4),
    (
        Shape(body="items", paging="cursor"),
        {"body": {"list_path": "items"}, "paging": {"type": "cursor"}},
        3,
    ),
    (
        Shape(body="items", paging="cursor-url"),
        {"body": {"list_path": "items"}, "paging": {"type": "cursor", "cursor_path": "next"}},
        3,
    ),
    (Shape(body="root", paging="link"), {"paging": {"type": "link"}}, 3),
    (Shape(body="root", paging="none"), {"paging": {"type": "none"}}, 1),
]


@pytest.mark.parametrize(("shape", "rest", "requests"), VARIANTS)
def test_every_record_is_listed_once_in_order_across_pages(
    api: RestApi, connect: Connect, shape: Shape, rest: dict[str, Any], requests: int
) -> None:
    """Seven records paged by three arrive once each, in order, with no request past the end."""
    api.shape = shape
    _seed(api)
    connector = connect(rest, page_size=3)
    names = [r.data["name"] for r in connector.list("customers")]
    assert names == SEVEN
    assert len([r for r in api.requests if r.method == "GET"]) == requests


def test_a_full_last_page_ends_at_the_empty_page_after_it(api: RestApi, connect: Connect) -> None:
    """Six records by three: the page after the second full one is empty, and the listing ends."""
    api.shape = Shape(body="root", paging="page")
    for i in range(6):
        api.add("customers", name=f"c{i}")
    connector = connect({"paging": {"type": "page"}}, page_size=3)
    assert len(list(connector.list("customers"))) == 6
    pages = [r.query["page"] for r in api.requests]
    assert pages == ["1", "2", "3"]


def test_a_pms_that_caps_the_page_size_loses_no_record(api: RestApi, connect: Connect) -> None:
    """Asked for 5 a page, given 2: the short pages do not end the listing, the empty one does."""
    api.shape = Shape(body="root", paging="offset", max_page=2)
    _seed(api)
    connector = connect({"paging": {"type": "offset"}}, page_size=5)
    assert [r.data["name"] for r in connector.list("customers")] == SEVEN
    assert [r.query["offset"] for r in api.requests] == ["0", "2", "4", "6", "7"]


def test_a_page_that_never_ends_is_stopped(api: RestApi, connect: Connect) -> None:
    """An API that ignores the page number (same page forever) stops the listing with Fatal."""
    api.shape = Shape(body="root", paging="none")
    for i in range(3):
        api.add("customers", name=f"c{i}")
    connector = connect({"paging": {"type": "page"}}, page_size=3)
    with pytest.raises(Fatal, match="same records"):
        list(connector.list("customers"))


def test_the_page_numbers_start_where_the_section_says() -> None:
    """``first_page: 0`` asks for page 0 first, then 1."""
    paging = RestPaging(type="page", first_page=0, page_param="p", size_param="n")
    first = first_page(paging, "http://x/c", {}, 2)
    assert first.params == {"p": "0", "n": "2"}
    following = next_page(paging, first, [], httpx.Headers(), 2, 2)
    assert following is not None
    assert following.params["p"] == "1"


def test_a_link_header_next_is_found_among_other_relations() -> None:
    """``Link: <...>; rel="prev", <...>; rel="next"`` gives the next URL; no next gives None."""
    headers = httpx.Headers({"Link": '<http://x/c?p=1>; rel="prev", <http://x/c?p=3>; rel="next"'})
    assert next_link(headers) == "http://x/c?p=3"
    assert next_link(httpx.Headers({"Link": '<http://x/c?p=1>; rel="prev"'})) is None


def test_a_relative_next_link_is_resolved_against_the_request() -> None:
    """A ``Link`` target relative to the list URL becomes an absolute URL."""
    paging = RestPaging(type="link")
    current = PageRequest("http://x/api/c?cursor=3", {})
    headers = httpx.Headers({"Link": '</api/c?cursor=6>; rel="next"'})
    following = next_page(paging, current, [], headers, 3, 3)
    assert following is not None
    assert following.url == "http://x/api/c?cursor=6"
