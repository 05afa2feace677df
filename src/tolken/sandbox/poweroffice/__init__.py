"""PowerOffice Go v2 simulator: Departments, Customers and Projects (DESIGN §7).

`create_app` builds the ASGI app; it runs in-process (starlette ``TestClient``
or ``httpx.ASGITransport``, base URL ``http://testserver``) or under uvicorn.
The module docstrings of `app`, `auth`, `listing`, `jsonpatch` and
`resources` explain the awkward parts with references to
``reference/poweroffice-go-v2.md``.
"""

from __future__ import annotations

from tolken.sandbox.poweroffice.app import create_app

__all__ = ["create_app"]
