"""The store keeps configured secrets out of the failure and run messages it writes."""

from __future__ import annotations

from pathlib import Path

from tolken import _redact
from tolken.errors import FieldError, ValidationFailed
from tolken.store import open_store

SECRET = "store-side-secret-8675309"


def test_failure_and_run_messages_are_redacted_before_they_are_stored(tmp_path: Path) -> None:
    """A message, field error or run error holding a configured secret is stored [redacted]."""
    _redact.shared().add(SECRET)
    with open_store(f"sqlite:///{tmp_path / 'tolken.db'}") as store:
        error = ValidationFailed(
            f"refused {SECRET}",
            field_errors=[FieldError("name", f"key {SECRET} is wrong")],
            remote={"detail": SECRET},
        )
        failure = store.for_tenant("acme").record_error("customers", "pms", "c-1", error)
        run_id = store.for_tenant("acme").start_run()
        run = store.for_tenant("acme").finish_run(
            run_id, "failed", counts={}, requests={}, error=f"fatal: {SECRET}"
        )
    assert failure.message == "refused [redacted]"
    assert failure.details == {
        "field_errors": [{"field": "name", "message": "key [redacted] is wrong"}],
        "remote": {"detail": "[redacted]"},
    }
    assert run.error == "fatal: [redacted]"
    stored = b"".join(path.read_bytes() for path in tmp_path.glob("tolken.db*"))
    assert SECRET.encode() not in stored
