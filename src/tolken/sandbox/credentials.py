"""Fixed sandbox credentials (DESIGN §7).

The simulators accept exactly these keys, and `tolken sandbox` prints them at
start, so scripts and acceptance checks can hard-code them. They open nothing
but the loopback sandbox.
"""

from __future__ import annotations

__all__ = ["APPLICATION_KEY", "CLIENT_KEY", "PMS_API_KEY", "SUBSCRIPTION_KEY"]

#: PowerOffice application key (the OAuth client id).
APPLICATION_KEY = "sandbox-application-key"
#: PowerOffice client key (the OAuth client secret).
CLIENT_KEY = "sandbox-client-key"
#: PowerOffice `Ocp-Apim-Subscription-Key`.
SUBSCRIPTION_KEY = "sandbox-subscription-key"
#: Bearer API key of the reference PMS.
PMS_API_KEY = "sandbox-pms-key"
