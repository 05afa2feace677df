"""Paging of a described PMS's lists (``pms.rest.paging``), as pure functions over values.

:func:`first_page` is the first request of a listing; :func:`next_page` reads
an answer (its body, its ``Link`` header, how many records it held) and gives
the next request, or None at the end:

- ``page`` / ``offset``: the number goes up by one page (or by the records
  read); the end is an empty page, ``total_path``'s count reached, or (with
  ``short_page_ends``) a page shorter than asked;
- ``cursor``: the value at ``cursor_path`` goes back as ``cursor_param`` (a
  full URL there is followed as it is); the end is a missing or empty cursor;
- ``link``: the ``Link`` header's ``rel="next"`` URL; the end is no such link;
- ``none``: one request.

A listing that never ends is the caller's to stop
(:class:`~tolken.connectors._listing.ListingGuard`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from tolken.config import RestPaging
from tolken.connectors.rest._wire import MISSING, at

__all__ = ["PageRequest", "first_page", "next_link", "next_page"]


@dataclass(frozen=True)
class PageRequest:
    """One list request: the URL and its query parameters (a followed URL carries its own)."""

    url: str
    params: Mapping[str, str] = field(default_factory=dict)
    read: int = 0
    """Records read on the pages before this one."""


def first_page(paging: RestPaging, url: str, params: Mapping[str, str], size: int) -> PageRequest:
    """The first request of a listing of ``size`` records per page."""
    out = dict(params)
    if paging.type != "none" and paging.size_param:
        out[paging.size_param] = str(size)
    if paging.type == "page":
        out[paging.page_param] = str(paging.first_page)
    elif paging.type == "offset":
        out[paging.offset_param] = "0"
    return PageRequest(url, out)


def next_link(headers: httpx.Headers) -> str | None:
    """The ``rel="next"`` URL of a ``Link`` header (RFC 8288), or None."""
    for value in headers.get_list("link"):
        for part in value.split(","):
            target, _, rest = part.strip().partition(">")
            rels = [
                p.strip().split("=", 1)[1].strip('"').split()
                for p in rest.split(";")
                if p.strip().lower().startswith("rel=")
            ]
            if target.startswith("<") and any("next" in r for r in rels):
                return target[1:].strip()
    return None


def _total(body: Any, path: str | None) -> int | None:
    if not path:
        return None
    value = at(body, path)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def next_page(
    paging: RestPaging,
    current: PageRequest,
    body: Any,
    headers: httpx.Headers,
    count: int,
    size: int,
) -> PageRequest | None:
    """The request after ``current``, whose answer held ``count`` records; None at the end."""
    read = current.read + count
    if paging.type == "none":
        return None
    if paging.type in ("page", "offset"):
        total = _total(body, paging.total_path)
        if count == 0 or (total is not None and read >= total):
            return None
        if total is None and paging.short_page_ends and count < size:
            return None
        params = dict(current.params)
        if paging.type == "page":
            params[paging.page_param] = str(int(params[paging.page_param]) + 1)
        else:
            params[paging.offset_param] = str(read)
        return replace(current, params=params, read=read)
    if paging.type == "cursor":
        cursor = at(body, paging.cursor_path)
        if cursor is MISSING or cursor is None or cursor == "":
            return None
        text = str(cursor)
        if text.startswith(("http://", "https://")):
            return PageRequest(text, {}, read)
        return replace(current, params={**current.params, paging.cursor_param: text}, read=read)
    link = next_link(headers)
    if link is None:
        return None
    return PageRequest(str(httpx.URL(current.url).join(link)), {}, read)
