"""PowerOffice Go v2 simulator: Departments, Customers and Projects (DESIGN §7).

Public API::

    create_app(data_dir=None, *, rate_limit_per_second=10.0, camel_case=False,
               token_ttl_seconds=1200) -> fastapi.FastAPI

``data_dir=None`` keeps a fresh in-memory SQLite state; otherwise the state is
``data_dir/poweroffice.sqlite3`` (the default client ``sandbox-client-key``)
plus one file per other client under ``data_dir/poweroffice-clients/``, and
survives restarts. Every client key ``sandbox-client-key[-<name>]`` is a
client with its own data (`clients`); the rate limit is per subscription key,
shared by all clients. The app runs
in-process (starlette ``TestClient``, base URL ``http://testserver``) or under
uvicorn. Credentials are in `tolken.sandbox.credentials`.

Served paths (any casing): ``POST /OAuth/Token`` and ``/Demo/OAuth/Token``;
``GET|POST /v2/{Departments|Customers|Projects}`` and
``GET|PATCH|DELETE /v2/{…}/{id}``, ``POST /v2/Onboarding/Initiate|Finalize``
and ``GET /v2/ClientIntegrationInformation`` (`onboarding`), the same under
``/Demo/v2`` (demo tokens only). Control surface (no auth):
``/_sandbox/faults``, ``/_sandbox/stats``, ``/_sandbox/reset``,
``/_sandbox/seed`` (see `tolken.sandbox.control`; the client field is
``client``), ``GET /_sandbox/onboarding`` and ``POST
/_sandbox/onboarding/consent`` (the person's consent) and
``GET|POST /_sandbox/settings`` with ``{"camel_case": bool,
"rate_limit_per_second": float | null, "token_ttl_seconds": int}``.

The module docstrings of `app`, `auth`, `listing`, `jsonpatch`, `resources`,
`validation` and `db` explain the awkward parts with references to the
sections of ``reference/poweroffice-go-v2.md``.
"""

from __future__ import annotations

from tolken.sandbox.poweroffice.app import create_app

__all__ = ["create_app"]
