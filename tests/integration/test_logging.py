"""Logs are JSON lines with run, flow and link ids; no configured secret ever appears in them."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import structlog
from pydantic import SecretStr

from integration.sync_harness import Sandbox, no_waits, running_sandbox
from tolken.compose import open_engine
from tolken.config import ServeSettings, TolkenConfig
from tolken.errors import AuthError
from tolken.logging import REDACTED, configure_logging, get_logger, log_context
from tolken.web.serve import serving, watch_loop

TOKEN = "logs-test-dashboard-token"
SECRET = "logs-test-webhook-secret"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Logs of everything (DEBUG, libraries included) into a buffer; the old set-up restored."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


@pytest.fixture
def sb(tmp_path: Path) -> Iterator[Sandbox]:
    with running_sandbox() as (po_url, pms_url), no_waits():
        yield Sandbox(po_url, pms_url, tmp_path)


def _config(sb: Sandbox) -> TolkenConfig:
    serve = ServeSettings(port=0, token=SecretStr(TOKEN), webhook_secret=SecretStr(SECRET))
    return sb.config(interval_seconds=30).model_copy(update={"serve": serve})


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_full_serve_run_logs_json_lines_without_any_secret(
    sb: Sandbox, captured: io.StringIO
) -> None:
    """Sync, webhook, dashboard visits with ?token= and a bad-credential run: no secret logged."""
    config = _config(sb)
    bad_key = "wrong-client-key-123"  # a second config's key, for the refused run below
    configure_logging([*config.secrets(), bad_key], stream=captured, level=logging.DEBUG)
    cust = sb.po_create("Customers", {"Name": "Havbris AS", "OrganizationNumber": "945678912"})
    sb.po_create("Customers", {"Name": "Feil AS", "EmailAddress": "no-at-sign"})
    with serving(config) as srv:
        thread = threading.Thread(target=watch_loop, args=(srv.engine, srv.queue), daemon=True)
        thread.start()
        httpx.get(f"{srv.url}/?token={TOKEN}")  # the access log line holds the token
        httpx.get(f"{srv.url}/api/status", headers={"Authorization": f"Bearer {TOKEN}"})
        deadline = time.monotonic() + 5
        while not sb.pms_list("customers", name="Havbris AS"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        [pms] = sb.pms_list("customers", name="Havbris AS")
        sb.pms_update("customers", pms["id"], {"name": "Havbris Holding AS"})
        while sb.po_get("Customers", cust)["Name"] != "Havbris Holding AS":
            assert time.monotonic() < deadline + 5
            time.sleep(0.05)
        srv.engine.request_stop()
        srv.queue.wake()
        thread.join(timeout=10)
    bad = config.model_copy(update={"poweroffice": sb.po_settings(client_key=bad_key)})
    with pytest.raises(AuthError) as refused, open_engine(bad) as engine:
        engine.run_cycle()
    get_logger().error("cycle failed", error=str(refused.value))
    get_logger().info("a careless line", key=config.pms.api_key_value())

    text = captured.getvalue()
    lines = _lines(captured)  # every line parses: one JSON object per line
    secrets = [*config.secrets(), bad_key]
    assert len(secrets) == 7  # four keys, the dashboard token, the webhook secret, the bad key
    leaked = [s for s in secrets if s in text]
    assert leaked == []
    assert any(REDACTED in str(line.get("event")) for line in lines)  # the access log line
    written = [line for line in lines if line["event"] == "record written"]
    assert written
    assert all({"run_id", "flow", "link_id"} <= line.keys() for line in written)
    assert any(line.get("logger") == "httpx" for line in lines)
    assert any(str(line.get("logger")).startswith("uvicorn") for line in lines)


def test_secrets_are_redacted_in_nested_values_exceptions_and_basic_auth(
    captured: io.StringIO,
) -> None:
    """A secret in a nested dict, an exception, a URL-encoded or Basic form is replaced."""
    import base64

    configure_logging(["app key/1", "client-key-2"], stream=captured)
    log = get_logger()
    basic = base64.b64encode(b"app key/1:client-key-2").decode()
    with log_context(run_id=4, flow="customers"):
        log.info("nested", body={"items": [{"auth": "app key/1"}]}, link_id=9)
        log.info("url", url="https://x.test/?k=app%20key%2F1", header=f"Basic {basic}")
        try:
            raise RuntimeError("refused client-key-2")
        except RuntimeError:
            log.exception("boom")
    logging.getLogger("httpx").warning("token client-key-2 in a library line")
    text = captured.getvalue()
    for form in ("app key/1", "app%20key%2F1", "client-key-2", basic):
        assert form not in text
    first = _lines(captured)[0]
    assert (first["run_id"], first["flow"], first["link_id"]) == (4, "customers", 9)
    assert first["body"] == {"items": [{"auth": REDACTED}]}
