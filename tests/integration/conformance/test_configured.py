"""`check-pms --config`: the PMS checked as tolken.yaml configures it (rest, or the contract)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from integration.conformance.test_check_pms import _leftovers
from integration.sync_harness import run_cli
from loopback import serve
from tolken.config import PMSSettings, PowerOfficeSettings, TolkenConfig
from tolken.conformance import CONNECTOR_RULES, RULES, run_configured_check
from tolken.connectors.rest import reference_pms_rest
from tolken.sandbox import credentials
from tolken.sandbox.pms import PMS_API_KEY, create_app


@pytest.fixture
def reference() -> Iterator[str]:
    """The reference PMS on loopback."""
    with serve(create_app(webhook_base_delay=0.05)) as url:
        yield url


def _config(url: str, **pms: object) -> TolkenConfig:
    return TolkenConfig(
        poweroffice=PowerOfficeSettings(
            application_key=SecretStr(credentials.APPLICATION_KEY),
            client_key=SecretStr(credentials.CLIENT_KEY),
            subscription_key=SecretStr(credentials.SUBSCRIPTION_KEY),
        ),
        pms=PMSSettings(
            base_url=f"{url}/api/v1", api_key=SecretStr(PMS_API_KEY), timeout_seconds=5, **pms
        ),
    )


def test_reference_pms_described_as_rest_passes_and_is_left_clean(reference: str) -> None:
    """Through `connector: rest` the reference PMS passes every rule; only the listing is absent."""
    report = run_configured_check(_config(reference, connector="rest", rest=reference_pms_rest()))
    statuses = {r.name: r.status for r in report.results}
    assert list(statuses) == list(CONNECTOR_RULES)
    assert statuses.pop("changed-since") == "absent"  # the feed is how it reads changes
    assert set(statuses.values()) == {"pass"}, report.results
    assert report.passed
    assert report.left_behind == ()
    assert _leftovers(reference) == ([], [])


def test_an_updated_since_pms_is_checked_by_its_filter_and_has_no_feed(reference: str) -> None:
    """With changes read by updated_after, that filter is checked and the feed reported absent."""
    rest = reference_pms_rest("updated-since")
    report = run_configured_check(
        _config(reference, connector="rest", rest=rest, change_capture="polling")
    )
    statuses = {r.name: r.status for r in report.results}
    assert statuses["changed-since"] == "pass"
    assert statuses["changes-feed"] == "absent"
    assert report.passed
    assert _leftovers(reference) == ([], [])


def test_a_pms_without_delete_is_told_up_front_and_every_record_is_listed(reference: str) -> None:
    """delete: false: the plan says the records stay, and the report lists each one by id."""
    rest = reference_pms_rest()
    customers = rest.resources.customers.model_copy(update={"delete": False})
    rest = rest.model_copy(
        update={"resources": rest.resources.model_copy(update={"customers": customers})}
    )
    plan: list[str] = []
    report = run_configured_check(
        _config(reference, connector="rest", rest=rest), announce=plan.append
    )
    assert "declares no delete" in plan[1]
    assert {r.name: r.status for r in report.results}["delete"] == "absent"
    names, _ = _leftovers(reference)
    assert len(report.left_behind) == len(names) > 0
    assert report.left_behind == report.created


def test_cli_config_with_the_builtin_connector_runs_the_contract_rules(
    reference: str, tmp_path: Path
) -> None:
    """`check-pms --config` with the built-in connector checks the contract at pms.base_url."""
    path = tmp_path / "tolken.yaml"
    path.write_text(
        "poweroffice:\n"
        f"  application_key: {credentials.APPLICATION_KEY}\n"
        f"  client_key: {credentials.CLIENT_KEY}\n"
        f"  subscription_key: {credentials.SUBSCRIPTION_KEY}\n"
        "pms:\n"
        f"  base_url: {reference}/api/v1\n"
        f"  api_key: {PMS_API_KEY}\n"
    )
    code, out, err = run_cli("check-pms", "--config", str(path), "--rule", "auth")
    assert code == 0, out + err
    assert out.splitlines()[0].startswith("check-pms will create up to")
    assert any(line.startswith("PASS") and " auth " in line for line in out.splitlines())
    assert "auth" in RULES


def test_cli_refuses_a_url_and_a_config_together(tmp_path: Path) -> None:
    """Giving both a URL and --config is a usage error (exit 2) naming the choice."""
    code, _out, err = run_cli("check-pms", "http://127.0.0.1:1", "--config", str(tmp_path / "x"))
    assert code == 2
    assert "not both" in err
