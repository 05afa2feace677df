"""The ``tolken serve`` web side: dashboard, JSON twins, ``/metrics``, ``/healthz``, PMS webhooks.

- :func:`create_app` builds the FastAPI app over a store (no sync logic in it);
- :class:`Metrics` holds the Prometheus registry; connectors count requests
  with :meth:`Metrics.response_hook` or :meth:`Metrics.transport`;
- :mod:`tolken.web.security` holds the browser defences: security headers on
  every response, and CSRF protection (same origin plus a token) on every POST;
- :mod:`tolken.web.serve` runs the app next to the watch loop: ``serving()``,
  ``watch_loop()``, the ``WorkQueue`` between the webhook receiver (and the retry
  buttons) and the loop, and ``run_serve()`` for ``tolken serve``;
- fleet mode: :mod:`tolken.web.fleet` (the tenants page, each tenant's pages
  under ``/tenants/{id}/``, per-tenant webhooks), :mod:`tolken.web.onboarding`
  (``/onboarding/callback``), :mod:`tolken.web.fleet_metrics` and
  :mod:`tolken.web.fleet_serve` (``tolken serve`` on a fleet config).
"""

from tolken.web.app import create_app
from tolken.web.metrics import Metrics
from tolken.web.webhooks import ChangeItem, WebhookReceiver

__all__ = ["ChangeItem", "Metrics", "WebhookReceiver", "create_app"]
