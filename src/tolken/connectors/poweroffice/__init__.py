"""The PowerOffice Go v2 connector (``tolken.connectors`` entry point ``poweroffice``).

Public surface: :class:`PowerOfficeClient` plus the pure helpers it is built
from, exported for the engine and for tests. Its ``rate_limiter`` is a
:class:`tolken.connectors.ratelimit.RateLimiter`.
"""

from tolken.connectors.poweroffice._auth import needs_renewal, renew_at
from tolken.connectors.poweroffice._client import (
    PowerOfficeClient,
    external_reference,
    format_filter_timestamp,
)
from tolken.connectors.poweroffice._paging import Page, PageRequest, next_page, paginate
from tolken.connectors.poweroffice._patch import build_patch, field_diff
from tolken.connectors.poweroffice._records import canonical_key, normalise, parse_timestamp

__all__ = [
    "Page",
    "PageRequest",
    "PowerOfficeClient",
    "build_patch",
    "canonical_key",
    "external_reference",
    "field_diff",
    "format_filter_timestamp",
    "needs_renewal",
    "next_page",
    "normalise",
    "paginate",
    "parse_timestamp",
    "renew_at",
]
