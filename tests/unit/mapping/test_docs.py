"""`tolken docs`: the dataflow RST is valid, complete, and follows the active mapping."""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path

import docutils.core  # type: ignore[import-untyped]  # no stubs in the lockfile
import docutils.utils  # type: ignore[import-untyped]
import pytest
from typer.testing import CliRunner

from tolken.cli import app
from tolken.mapping import default_mapping, load_mapping
from tolken.mapping.docs import TITLE, dataflow_document, render_dataflow
from tolken.mapping.load import DEFAULT_MAPPING_PATH

SECTIONS = [
    "PowerOffice Go Departments to Custom PMS Customer",
    "PowerOffice Go Customers to Custom PMS Customer",
    "PowerOffice Go Projects to Custom PMS Project",
]


def to_html(rst: str) -> str:
    """Render with docutils; any warning (level 2+) fails the render."""
    warnings = io.StringIO()
    html = docutils.core.publish_string(
        rst,
        writer="html5",
        settings_overrides={
            "halt_level": 2,
            "report_level": 1,
            "warning_stream": warnings,
            "output_encoding": "unicode",
        },
    )
    assert warnings.getvalue() == ""
    assert isinstance(html, str)
    return html


def table_cells(rst: str) -> list[str]:
    return [
        line.split("- ", 1)[1]
        for line in rst.splitlines()
        if line.startswith(("   * - ", "     - "))
    ]


def test_document_renders_without_warnings_and_lists_every_property() -> None:
    """The RST renders cleanly and names every mapped PowerOffice and PMS property."""
    mapping = default_mapping()
    rst = render_dataflow(mapping, generated=date(2026, 1, 31))
    html = to_html(rst)
    assert TITLE in html
    assert "2026-01-31" in html
    for section in SECTIONS:
        assert section in html
    assert rst.count(".. list-table::") == 6  # merge rules + properties per flow
    cells = table_cells(rst)
    for flow in mapping.flows.values():
        for prop in flow.properties:
            if prop.poweroffice:
                assert f"``{prop.poweroffice}``" in cells
            assert any(cell.startswith(f"``{prop.pms}``") for cell in cells), prop.pms
            assert f">{prop.pms}</span>" in html, prop.pms
    assert "``MailAddress.City``" in cells
    assert "PMS data type" in cells
    assert "reference" in cells
    assert "kept in sync whichever side is edited" in html


def test_merge_rules_appear_per_flow() -> None:
    """Each flow's merge rules are tabulated with how values are compared."""
    rst = render_dataflow(default_mapping(), generated=date(2026, 1, 31))
    customers = rst[rst.index(SECTIONS[1]) : rst.index(SECTIONS[2])]
    assert "``OrganizationNumber``" in customers
    assert "digits only" in customers
    assert "case-insensitive" in customers
    assert "kind = person" in customers


def test_user_mapping_changes_the_document(tmp_path: Path) -> None:
    """Renaming (custom PMS connector) and dropping PMS fields shows in the document."""
    text = DEFAULT_MAPPING_PATH.read_text(encoding="utf-8")
    text = text.replace("pms: website, type: string", "pms: homepage_url, type: string")
    text = text.replace("      - {poweroffice: PhoneNumber, pms: phone, type: string}\n", "")
    user = tmp_path / "mapping.yaml"
    user.write_text(text, encoding="utf-8")
    config = tmp_path / "tolken.yaml"
    config.write_text(
        "pms:\n  api_key: ${NOT_SET_ANYWHERE}\n  connector: acme\nmapping: mapping.yaml\n", "utf-8"
    )

    rst = dataflow_document(config, generated=date(2026, 1, 31))
    to_html(rst)
    cells = table_cells(rst)
    assert "``homepage_url``" in cells
    assert "``website``" not in cells
    assert "``PhoneNumber``" not in cells
    assert f":Mapping: ``{user.resolve()}``" in rst
    assert rst != render_dataflow(load_mapping(None), generated=date(2026, 1, 31))


def test_without_config_uses_builtin_or_local_tolken_yaml(tmp_path: Path) -> None:
    """No --config: ./tolken.yaml's mapping when that file exists, else the built-in mapping."""
    builtin = dataflow_document(None, generated=date(2026, 1, 31), cwd=tmp_path)
    assert ":Mapping: built-in" in builtin
    (tmp_path / "m.yaml").write_text(
        DEFAULT_MAPPING_PATH.read_text("utf-8").replace("pms: name,", "pms: title,"), "utf-8"
    )
    (tmp_path / "tolken.yaml").write_text("mapping: m.yaml\npms: {connector: acme}\n", "utf-8")
    local = dataflow_document(None, generated=date(2026, 1, 31), cwd=tmp_path)
    assert "``title``" in table_cells(local)


def test_cli_writes_file_and_rejects_bad_mapping(tmp_path: Path) -> None:
    """`tolken docs --output F` writes the RST; a bad mapping exits 2 naming file and line."""
    runner = CliRunner()
    out = tmp_path / "dataflow.rst"
    result = runner.invoke(app, ["docs", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text("utf-8").startswith("#" * len(TITLE) + "\n" + TITLE)

    stdout = runner.invoke(app, ["docs"])
    assert stdout.exit_code == 0
    assert TITLE in stdout.stdout

    (tmp_path / "bad.yaml").write_text("version: 1\nflows:\n  departments: 5\n", "utf-8")
    config = tmp_path / "tolken.yaml"
    config.write_text("mapping: bad.yaml\n", "utf-8")
    failed = runner.invoke(app, ["docs", "--config", str(config)])
    assert failed.exit_code == 2
    assert "bad.yaml:3" in failed.output
    assert "Traceback" not in failed.output


@pytest.mark.parametrize("char", ["*", "`", "|"])
def test_markup_in_user_text_is_escaped(tmp_path: Path, char: str) -> None:
    """A note with RST markup characters in a user mapping still renders without warnings."""
    text = DEFAULT_MAPPING_PATH.read_text("utf-8").replace(
        "{poweroffice: Progress, pms: progress, type: integer}",
        f"{{poweroffice: Progress, pms: progress, type: integer, note: 'a {char}b'}}",
    )
    path = tmp_path / "m.yaml"
    path.write_text(text, "utf-8")
    html = to_html(render_dataflow(load_mapping(path), generated=date(2026, 1, 31)))
    assert f"a {char}b" in html.replace("&lt;", "<")


def test_level_names_are_docutils_levels() -> None:
    """Guard: docutils level 2 is WARNING, so halt_level=2 really fails on warnings."""
    assert docutils.utils.Reporter.WARNING_LEVEL == 2
