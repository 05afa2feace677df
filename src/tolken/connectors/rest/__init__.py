"""The ``rest`` connector: a PMS with a REST API of its own, described in ``pms.rest``.

- :class:`RestConnector` implements :class:`tolken.connectors.base.Connector`
  for ``customers`` and ``projects`` as the section describes them (auth,
  endpoints, where records are in answers and fields in requests, paging,
  identity and versions, idempotent creates, error messages). Built as
  ``RestConnector(settings)``, it is a :class:`RestListingConnector`
  (an :class:`~tolken.connectors.base.UpdatedAfterListing`) when changes are
  read by an updated-since filter, a :class:`RestFeedConnector` (a
  :class:`~tolken.connectors.base.ChangeFeed`) with the contract's changes
  feed, and neither with ``changes.type: none``.
- :func:`classify_response` is the one place its HTTP answers become
  :mod:`tolken.errors` classes, with the PMS's message found at
  ``errors.message_path``.
- :func:`first_page` / :func:`next_page` are the paging rules, and
  :func:`reference_pms_rest` the section that describes tolken's own
  reference PMS (the contract) for this connector.
"""

from tolken.connectors.rest._client import RestConnector, RestFeedConnector, RestListingConnector
from tolken.connectors.rest._errors import classify_response, error_message
from tolken.connectors.rest._paging import PageRequest, first_page, next_link, next_page
from tolken.connectors.rest._presets import reference_pms_rest

__all__ = [
    "PageRequest",
    "RestConnector",
    "RestFeedConnector",
    "RestListingConnector",
    "classify_response",
    "error_message",
    "first_page",
    "next_link",
    "next_page",
    "reference_pms_rest",
]
