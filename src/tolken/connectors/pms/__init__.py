"""The PMS connector: tolken's client of any PMS that offers the REST contract (DESIGN §2).

- :class:`PMSClient` implements :class:`tolken.connectors.base.Connector` for
  the ``customers`` and ``projects`` resources, plus change capture
  (:meth:`PMSClient.changes_since`, from the ``changes`` feed or by
  ``updated_after`` polling as ``pms.change_capture`` says) and
  :meth:`PMSClient.register_webhook`.
- :func:`verify_webhook` checks a webhook delivery's HMAC-SHA256 signature
  (constant-time) and its timestamp (five-minute replay window), raising
  :class:`WebhookRejected` with the reason; :func:`sign_webhook` makes the
  headers a PMS sends.
- :func:`classify_response` is the one place PMS HTTP answers become
  :mod:`tolken.errors` classes; 422 field errors are kept verbatim.
- :func:`parse_timestamp` and :func:`parse_retry_after` read the contract's
  timestamps and a ``Retry-After`` header, as the client does (``tolken
  check-pms`` judges a PMS by the same rules).
"""

from tolken.connectors._http import parse_retry_after
from tolken.connectors.pms._client import PMSClient
from tolken.connectors.pms._errors import classify_response
from tolken.connectors.pms._records import Change, ChangeBatch, ChangesPage, parse_timestamp
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
    "Change",
    "ChangeBatch",
    "ChangesPage",
    "PMSClient",
    "WebhookRejected",
    "classify_response",
    "parse_retry_after",
    "parse_timestamp",
    "sign_webhook",
    "verify_webhook",
]
