"""The PMS connector: tolken's client of any PMS that offers the REST contract (DESIGN §2).

- :class:`PMSClient` implements :class:`tolken.connectors.base.Connector` for
  the ``customers`` and ``projects`` resources, and the optional capabilities
  :class:`~tolken.connectors.base.ChangeFeed` (:meth:`PMSClient.changes`, raw
  pages of the ``changes`` feed), :class:`~tolken.connectors.base.UpdatedAfterListing`
  (:meth:`PMSClient.list_updated_after`) and
  :class:`~tolken.connectors.base.WebhookSource` (:meth:`PMSClient.ensure_webhook`).
  Positions in the feed or listing are the engine's (:mod:`tolken.engine.cursor`).
- :func:`verify_webhook` checks a webhook delivery's HMAC-SHA256 signature
  (constant-time) and its timestamp (five-minute replay window), raising
  :class:`WebhookRejected` with the reason; :func:`sign_webhook` makes the
  headers a PMS sends.
- :func:`classify_response` is the one place PMS HTTP answers become
  :mod:`tolken.errors` classes; 422 field errors are kept verbatim.
- :func:`parse_changes_page` reads a ``/changes`` answer (the ``rest``
  connector reads the same feed); :func:`parse_timestamp` and
  :func:`parse_retry_after` read the contract's timestamps and a
  ``Retry-After`` header, as the client does (``tolken check-pms`` judges a
  PMS by the same rules).
"""

from tolken.connectors._http import parse_retry_after
from tolken.connectors.pms._client import PMSClient
from tolken.connectors.pms._errors import classify_response
from tolken.connectors.pms._records import parse_changes_page, parse_timestamp
from tolken.connectors.pms._webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookRejected,
    sign_webhook,
    verify_webhook,
)

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "PMSClient",
    "WebhookRejected",
    "classify_response",
    "parse_changes_page",
    "parse_retry_after",
    "parse_timestamp",
    "sign_webhook",
    "verify_webhook",
]
