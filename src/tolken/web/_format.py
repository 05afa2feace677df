"""Jinja filters: times and values as an operator reads them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import jinja2

__all__ = ["ago", "ago_on_page", "duration", "value", "when"]


def duration(seconds: float | None) -> str:
    """``0.4 s``, ``12 s``, ``3 min 5 s``, ``2 h 10 min``, ``3 d 4 h``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    if whole < 86400:
        return f"{whole // 3600} h {whole % 3600 // 60} min"
    return f"{whole // 86400} d {whole % 86400 // 3600} h"


def _parse(moment: datetime | str | None) -> datetime | None:
    if moment is None or isinstance(moment, datetime):
        return moment
    return datetime.fromisoformat(moment)


def ago(moment: datetime | str | None, now: datetime | None = None) -> str:
    """How long ago ``moment`` was (``never`` when ``None``)."""
    parsed = _parse(moment)
    if parsed is None:
        return "never"
    now = now or datetime.now(UTC)
    return f"{duration(max((now - parsed).total_seconds(), 0.0))} ago"


@jinja2.pass_context
def ago_on_page(context: jinja2.runtime.Context, moment: datetime | str | None) -> str:
    """:func:`ago` against the page's ``now`` (the store's clock), so a page is consistent."""
    now = context.get("now")
    return ago(moment, _parse(now) if isinstance(now, datetime | str) else None)


def when(moment: datetime | str | None) -> str:
    """An exact UTC time for tooltips and tables: ``2025-01-06 14:03:12 UTC``."""
    parsed = _parse(moment)
    if parsed is None:
        return "-"
    return parsed.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def value(raw: Any) -> str:
    """A field value: strings as they are, ``(empty)`` for None/"", the rest as JSON."""
    if raw is None or raw == "":
        return "(empty)"
    if isinstance(raw, str):
        return raw
    return json.dumps(raw, ensure_ascii=False, sort_keys=True)
