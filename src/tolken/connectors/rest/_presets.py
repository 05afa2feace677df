"""The ``pms.rest`` section that describes tolken's reference PMS (docs/pms-contract.md).

The same API the built-in ``pms`` connector speaks, written as configuration:
the proof that the ``rest`` connector covers the contract, and a worked
example of a complete section (docs/pms-rest.md shows it as YAML).
"""

from __future__ import annotations

from typing import Literal

from tolken.config import RestSettings

__all__ = ["reference_pms_rest"]


def reference_pms_rest(changes: Literal["feed", "updated-since"] = "feed") -> RestSettings:
    """The reference PMS as a ``pms.rest`` section, its changes read by ``changes``."""
    return RestSettings.model_validate(
        {
            "auth": {"type": "bearer"},
            "resources": {"customers": {"path": "/customers"}, "projects": {"path": "/projects"}},
            "body": {"list_path": "items"},
            "identity": {
                "id_field": "id",
                "updated_at_field": "updated_at",
                "version_field": "version",
                "version_in": "if-match",
            },
            "update_mode": "merge-patch",
            "paging": {
                "type": "cursor",
                "size_param": "limit",
                "cursor_param": "cursor",
                "cursor_path": "next_cursor",
            },
            "changes": {"type": changes, "param": "updated_after", "feed_path": "/changes"},
            "idempotency": {"header": "Idempotency-Key", "reference_field": "external_ref"},
            "errors": {"message_path": "errors"},
        }
    )
