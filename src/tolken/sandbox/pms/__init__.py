"""The reference PMS server: the REST contract of DESIGN §2 on FastAPI and SQLite.

Public API::

    create_app(data_dir=None, *, api_key=PMS_API_KEY, webhook_max_attempts=6,
               webhook_base_delay=0.5) -> fastapi.FastAPI
    merge_patch(target, patch)      # RFC 7396, pure
    sign(secret, timestamp, body)   # the X-PMS-Signature value

``data_dir=None`` keeps state in a fresh temporary SQLite file; otherwise in
``data_dir/pms.sqlite3``, which survives restarts. Every API key
``<api_key>`` or ``<api_key>-<name>`` is a workspace of its own (records,
feed, idempotency keys, webhooks; see `workspaces`); the other workspaces
live under ``data_dir/pms-workspaces/``. The app works in-process
(starlette ``TestClient``) and under uvicorn; webhooks are delivered while its
lifespan runs. ``tolken sandbox`` serves it with the PowerOffice simulator.

Endpoints (all under ``/api/v1`` need ``Authorization: Bearer <api key>``,
else 401; ``/api/v1/openapi.json`` is public)::

    GET    /customers|/projects?updated_after=ISO&limit=N&cursor=C&external_ref=R
    GET    /customers|/projects/{id}         200 | 404
    POST   /customers|/projects              201 (Idempotency-Key honoured)
    PATCH  /customers|/projects/{id}         200 merge patch; If-Match -> 412
    DELETE /customers|/projects/{id}         204; 409 for a referenced customer
    GET    /changes?after=SEQ&limit=N        {"items", "last_seq", "has_more"}
    POST   /webhooks {"url", "secret"}       201 {"id", "url", "created_at"}
    GET    /webhooks                         {"items": [...]} (no secrets)
    DELETE /webhooks/{id}                    204 | 404
    /_sandbox/faults|stats|reset|seed        the shared control surface (field api_key)

Choices where the contract leaves room:

- **Lists** are ordered by ``(updated_at, id)``; ``limit`` 1–1000 (default
  100); ``updated_after`` is exclusive (an offset-less value is UTC);
  ``external_ref=`` filters by exact value; ``next_cursor`` is null when no
  record follows at the time of the read. Every write takes a fresh
  ``updated_at`` (UTC, microseconds) strictly later than every earlier one,
  under the same lock as the write, so a written record always moves to the
  end of the order.
- **Cursor guarantee.** During one traversal (first page until
  ``next_cursor`` is null) items come in strictly increasing
  ``(updated_at, id)``; no record is returned twice at the same version; a
  record is returned again only when it was written after its previous
  appearance (it moved to the end); and every record that exists when the
  last page is read is returned, its last appearance showing the version it
  had at that read. Deleted records simply stop appearing (the changes feed
  carries their tombstones). Tested with Hypothesis in
  ``tests/property/test_pms_cursor.py``.
- **Idempotency-Key** (1–255 characters) is scoped per resource. The same key
  with the same body answers 201 with the record's current state and
  ``Idempotent-Replayed: true``; with a different body 422 on field
  ``Idempotency-Key``; when that record has since been deleted, 409. A failed
  create stores nothing, not even the key.
- **PATCH** applies RFC 7396 to the writable fields (``address`` merges
  line by line); ``null`` removes a field, which then reads as its default
  (``active`` true, ``billable`` false, ``status`` planned, address lines and
  everything else null); ``kind`` and ``name`` (customers) and ``name``
  (projects) cannot be removed. ``id``, ``version``, ``created_at`` and
  ``updated_at`` are read-only (422). A patch that changes nothing keeps the
  version and logs no change. ``If-Match: "N"`` (also ``W/"N"``, ``N``, ``*``)
  on PATCH and DELETE answers 412 with ``current_version`` when stale.
- **Errors** are always ``{"errors": [{"field", "message"}]}``: 400 malformed
  JSON or header, 413 bodies over 1 MB, 422 field errors (all at once, dotted
  paths such as ``address.city``), 404, 409, 412, and 429 + ``Retry-After``
  from the fault injector.
- **Changes feed**: one item per write (``type`` is ``customer`` or
  ``project``); ``last_seq`` is the seq of the page's last item (or ``after``
  when empty), so resuming with ``after=last_seq`` never skips; each workspace
  has its own ``seq``, which keeps counting up across ``/_sandbox/reset``.
- **Webhooks**: each feed item is POSTed to every receiver of its workspace by a background
  thread, signed with a fresh timestamp per attempt; failures (errors,
  non-2xx) are retried with exponential backoff and jitter up to
  ``webhook_max_attempts`` tries, then dropped (the feed stays the source of
  truth); pending deliveries are dropped at shutdown.
"""

from tolken.sandbox.credentials import PMS_API_KEY
from tolken.sandbox.pms.app import create_app
from tolken.sandbox.pms.validation import merge_patch
from tolken.sandbox.pms.webhooks import sign

__all__ = ["PMS_API_KEY", "create_app", "merge_patch", "sign"]
