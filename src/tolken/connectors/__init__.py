"""tolken.connectors.

The connector of each system is in its own package (:mod:`tolken.connectors.poweroffice`,
:mod:`tolken.connectors.pms`); what they share is here: the contract
(:mod:`tolken.connectors.base`), the request budgets (:mod:`tolken.connectors.ratelimit`)
and :class:`TokenClient`, the cookie-less httpx client a connector is handed.
"""

from tolken.connectors._http import TokenClient

__all__ = ["TokenClient"]
