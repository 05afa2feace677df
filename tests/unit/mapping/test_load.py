"""The mapping file: the built-in default is DESIGN §3, and bad files name file, line and reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tolken.errors import ConfigError
from tolken.mapping import (
    Flow,
    Mapping,
    Property,
    load_mapping,
    register_transform,
    to_pms,
    to_pms_flat,
    to_poweroffice,
)
from tolken.mapping.load import DEFAULT_MAPPING_PATH, mapping_path_from_config
from tolken.mapping.transforms import (
    _CUSTOM,
    ConstantTransform,
    EnumTransform,
    InvertTransform,
    ReferenceTransform,
)

DESIGN_TABLE = {
    "departments": [
        ("Code", "number", "string"),
        ("Name", "name", "string"),
        ("IsActive", "active", "boolean"),
        (None, "kind", "string"),
    ],
    "customers": [
        ("Number", "number", "string"),
        ("Name", "name", "string"),
        ("FirstName", "first_name", "string"),
        ("LastName", "last_name", "string"),
        ("IsPerson", "kind", "string"),
        ("OrganizationNumber", "organization_number", "string"),
        ("EmailAddress", "email", "string"),
        ("PhoneNumber", "phone", "string"),
        ("WebsiteUrl", "website", "string"),
        ("MailAddress.AddressLine1", "address.line1", "string"),
        ("MailAddress.AddressLine2", "address.line2", "string"),
        ("MailAddress.ZipCode", "address.postal_code", "string"),
        ("MailAddress.City", "address.city", "string"),
        ("MailAddress.CountryCode", "address.country", "string"),
        ("IsArchived", "active", "boolean"),
    ],
    "projects": [
        ("Code", "code", "string"),
        ("Name", "name", "string"),
        ("CustomerId", "customer_id", "reference"),
        ("DepartmentId", "department_id", "reference"),
        ("StartDate", "start_date", "date"),
        ("EndDate", "end_date", "date"),
        ("ProjectStatus", "status", "enum"),
        ("IsBillable", "billable", "boolean"),
        ("Progress", "progress", "integer"),
    ],
}


def write(tmp_path: Path, text: str, name: str = "mapping.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_for(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_mapping(write(tmp_path, text))
    return str(info.value)


def test_default_mapping_is_the_design_table() -> None:
    """The built-in mapping has exactly the properties of DESIGN §3, in order, with PMS types."""
    mapping = load_mapping(None)
    for flow_id, rows in DESIGN_TABLE.items():
        flow = mapping.flow(flow_id)
        assert [(p.poweroffice, p.pms, p.type) for p in flow.properties] == rows


def test_the_built_in_file_reads_the_same_as_a_users_file() -> None:
    """The built-in mapping (read by the fast parser) equals the same file loaded as a user's."""
    assert load_mapping(None) == load_mapping(DEFAULT_MAPPING_PATH)


def test_default_transforms_and_filters() -> None:
    """Archive is inverted, status is the DESIGN enum, references go through the right flows."""
    mapping = load_mapping(None)
    customers = mapping.flow("customers")
    assert isinstance(customers.property_for("active").transform, InvertTransform)
    kind = customers.property_for("kind").transform
    assert isinstance(kind, EnumTransform)
    assert kind.values == {True: "person", False: "company"}
    status = mapping.flow("projects").property_for("status").transform
    assert isinstance(status, EnumTransform)
    assert status.values == {
        "NotStarted": "planned",
        "Active": "active",
        "Complete": "completed",
        "Archived": "archived",
        "Tentative": "tentative",
    }
    refs = {
        p.pms: p.transform.flow
        for p in mapping.flow("projects").properties
        if isinstance(p.transform, ReferenceTransform)
    }
    assert refs == {"customer_id": "customers", "department_id": "departments"}
    dept_kind = mapping.flow("departments").property_for("kind")
    assert isinstance(dept_kind.transform, ConstantTransform)
    assert dept_kind.transform.value == "department"
    assert dept_kind.direction == "to_pms"
    assert mapping.flow("departments").pms_filter == {"kind": ["department"]}
    assert mapping.flow("customers").pms_filter == {"kind": ["company", "person"]}


def test_default_merge_rules() -> None:
    """Merge rules are §3's: org number by digits, then e-mail case-insensitively for persons."""
    mapping = load_mapping(None)
    rules = [
        (r.poweroffice, r.pms, r.normalise, dict(r.when))
        for r in mapping.flow("customers").merge_rules
    ]
    assert rules == [
        ("OrganizationNumber", "organization_number", "digits", {}),
        ("EmailAddress", "email", "casefold", {"kind": "person"}),
    ]
    assert [(r.poweroffice, r.pms) for r in mapping.flow("departments").merge_rules] == [
        ("Code", "number")
    ]
    assert [(r.poweroffice, r.pms) for r in mapping.flow("projects").merge_rules] == [
        ("Code", "code")
    ]


def test_flows_in_dependency_order() -> None:
    """Departments and customers come before projects, which reference them."""
    assert load_mapping(None).order() == ["departments", "customers", "projects"]


def test_user_mapping_renames_and_drops(tmp_path: Path) -> None:
    """A user's file for a custom PMS connector can rename a PMS field and drop properties."""
    text = DEFAULT_MAPPING_PATH.read_text(encoding="utf-8")
    text = text.replace("pms: website, type: string", "pms: homepage, type: string")
    text = text.replace("      - {poweroffice: PhoneNumber, pms: phone, type: string}\n", "")
    mapping = load_mapping(write(tmp_path, text), pms_contract=False)
    paths = [p.pms for p in mapping.flow("customers").properties]
    assert "homepage" in paths
    assert "website" not in paths
    assert "phone" not in paths


def test_unknown_key_names_file_and_line(tmp_path: Path) -> None:
    """A misspelt key is rejected with file, line and the key's location."""
    text = DEFAULT_MAPPING_PATH.read_text(encoding="utf-8")
    lines = text.splitlines()
    index = next(i for i, line in enumerate(lines) if "pms: projects" in line)
    lines.insert(index + 1, "    colour: blue")
    message = error_for(tmp_path, "\n".join(lines) + "\n")
    assert f"mapping.yaml:{index + 2}:" in message
    assert "flows.projects.colour" in message
    assert "Extra inputs are not permitted" in message


def test_unknown_transform_is_rejected(tmp_path: Path) -> None:
    """A transform name not in the registry is reported on its line."""
    text = DEFAULT_MAPPING_PATH.read_text(encoding="utf-8").replace(
        "type: boolean, transform: invert", "type: boolean, transform: negate"
    )
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "transform: negate" in t)
    message = error_for(tmp_path, text)
    assert f"mapping.yaml:{line}:" in message
    assert "negate" in message


def test_enum_table_must_be_one_to_one(tmp_path: Path) -> None:
    """An enum mapping two PowerOffice values to one PMS value cannot run backwards: rejected."""
    text = DEFAULT_MAPPING_PATH.read_text(encoding="utf-8").replace(
        "Tentative: tentative", "Tentative: planned"
    )
    assert "'planned' is used for both" in error_for(tmp_path, text)


def test_missing_flow_and_bad_paths(tmp_path: Path) -> None:
    """A mapping must define every flow, with property paths in the right shape."""
    assert "missing flow(s): customers, projects" in error_for(
        tmp_path,
        "flows:\n  departments:\n    poweroffice: Departments\n    pms: customers\n"
        "    properties:\n      - {poweroffice: Code, pms: number}\n",
    )
    bad = DEFAULT_MAPPING_PATH.read_text(encoding="utf-8").replace(
        "pms: address.city", "pms: address..city"
    )
    assert "not a PMS property path" in error_for(tmp_path, bad)


def test_reference_to_enum_needs_transform(tmp_path: Path) -> None:
    """A property of type enum or reference without a transform says which transform it needs."""
    text = DEFAULT_MAPPING_PATH.read_text(encoding="utf-8").replace(
        "      - {poweroffice: Progress, pms: progress, type: integer}",
        "      - {poweroffice: ProjectBillingMethod, pms: billing, type: enum}",
    )
    assert "needs a transform (enum)" in error_for(tmp_path, text)


def test_duplicate_pms_path_is_rejected() -> None:
    """Two properties writing the same PMS path would fight; the model refuses them."""
    with pytest.raises(ValueError, match="mapped twice"):
        Flow(
            poweroffice="Departments",
            pms="customers",
            properties=[
                Property(poweroffice="Code", pms="number"),
                Property(poweroffice="Name", pms="number"),
            ],
        )


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    """Broken YAML is reported with file and line, not a traceback."""
    message = error_for(tmp_path, "flows:\n  departments: [\n")
    assert "mapping.yaml:" in message
    assert "invalid YAML" in message


def test_python_objects_fill_slots() -> None:
    """A mapping built in Python may put its own transform object in a slot."""

    class Upper:
        def to_pms(self, value: object, _ctx: object) -> object:
            return str(value).upper()

        def to_poweroffice(self, value: object, _ctx: object) -> object:
            return str(value).lower()

        def describe(self) -> str:
            return "upper case"

    flow = Flow(
        poweroffice="Departments",
        pms="customers",
        properties=[Property(poweroffice="Name", pms="name", transform=Upper())],
    )
    assert to_pms(flow, {"Name": "Research"}) == {"name": "RESEARCH"}
    assert to_poweroffice(flow, {"name": "RESEARCH"}) == {"Name": "research"}


def test_config_mapping_key_is_read_without_secrets(tmp_path: Path) -> None:
    """tolken docs reads only `mapping:` from tolken.yaml, relative to the config's folder."""
    config = write(
        tmp_path,
        "poweroffice:\n  application_key: ${UNSET_VAR_FOR_TEST}\nmapping: maps/m.yaml\n",
        "tolken.yaml",
    )
    assert mapping_path_from_config(config) == (tmp_path / "maps" / "m.yaml").resolve()
    none = write(tmp_path, "store: sqlite:///x.db\n", "other.yaml")
    assert mapping_path_from_config(none) is None


def test_mapping_model_is_strict() -> None:
    """Unknown top-level keys are refused by the model itself."""
    with pytest.raises(ValueError, match="Extra inputs"):
        Mapping.model_validate({"flows": {}, "extra": 1})


def test_merge_rule_must_compare_a_mapped_property(tmp_path: Path) -> None:
    """Dropping a property that a merge rule compares is reported, not silently unmatched."""
    text = DEFAULT_MAPPING_PATH.read_text(encoding="utf-8").replace(
        "      - {poweroffice: OrganizationNumber, pms: organization_number, type: string}\n", ""
    )
    assert "merge rule OrganizationNumber = organization_number" in error_for(tmp_path, text)


def test_registered_transform_is_picked_by_name(tmp_path: Path) -> None:
    """A transform registered from Python can be named in a mapping file, with its parameters."""

    class Prefix:
        def __init__(self, params: dict[str, Any]) -> None:
            self.prefix = str(params.get("prefix", ""))

        def to_pms(self, value: Any, _ctx: Any) -> Any:
            return None if value is None else f"{self.prefix}{value}"

        def to_poweroffice(self, value: Any, _ctx: Any) -> Any:
            return None if value is None else str(value).removeprefix(self.prefix)

        def describe(self) -> str:
            return f"prefixed {self.prefix}"

    register_transform("prefix", Prefix)
    try:
        text = DEFAULT_MAPPING_PATH.read_text(encoding="utf-8").replace(
            "{poweroffice: Code, pms: code, type: string}",
            "{poweroffice: Code, pms: code, type: string, transform: {name: prefix, prefix: PO-}}",
        )
        flow = load_mapping(write(tmp_path, text)).flow("projects")
        assert to_pms_flat(flow, {"Code": "7"}, unresolved=set())["code"] == "PO-7"
        assert to_poweroffice(flow, {"code": "PO-7"})["Code"] == "7"
    finally:
        _CUSTOM.pop("prefix")


def test_a_poweroffice_field_outside_the_spec_names_file_line_and_field(tmp_path: Path) -> None:
    """`poweroffice: Phone` is refused at load with its line, not parked at every sync."""
    text = DEFAULT_MAPPING_PATH.read_text(encoding="utf-8")
    text = text.replace("{poweroffice: PhoneNumber, pms: phone", "{poweroffice: Phone, pms: phone")
    path = write(tmp_path, text)
    line = 1 + text[: text.index("poweroffice: Phone,")].count("\n")
    with pytest.raises(ConfigError) as info:
        load_mapping(path)
    assert info.value.location == f"{path}:{line}"
    assert info.value.key == "flows.customers.properties.7.poweroffice"
    assert info.value.message == (
        "PowerOffice Customers has no field 'Phone' (not in the PowerOffice Go v2 spec)"
    )


def test_poweroffice_fields_match_in_any_casing(tmp_path: Path) -> None:
    """Real fields load in any casing (PowerOffice reads keys case-insensitively)."""
    text = DEFAULT_MAPPING_PATH.read_text(encoding="utf-8")
    text = text.replace("poweroffice: MailAddress.City,", "poweroffice: mailAddress.city,")
    assert (
        load_mapping(write(tmp_path, text)).flow("customers").property_for("address.city")
        is not None
    )


def test_a_pms_field_outside_the_contract_is_refused_unless_the_connector_is_custom(
    tmp_path: Path,
) -> None:
    """`pms: telephone` is refused for the built-in PMS connector and accepted for a custom one."""
    text = DEFAULT_MAPPING_PATH.read_text(encoding="utf-8")
    text = text.replace("pms: phone, type: string", "pms: telephone, type: string")
    path = write(tmp_path, text)
    line = 1 + text[: text.index("pms: telephone")].count("\n")
    with pytest.raises(ConfigError) as info:
        load_mapping(path)
    assert info.value.location == f"{path}:{line}"
    assert info.value.key == "flows.customers.properties.7.pms"
    assert info.value.message == (
        "a PMS customers record has no field 'telephone' (not in the PMS contract)"
    )
    custom = load_mapping(path, pms_contract=False)
    assert custom.flow("customers").property_for("telephone").poweroffice == "PhoneNumber"


def test_unknown_resources_and_filter_fields_are_refused(tmp_path: Path) -> None:
    """A PowerOffice resource, PMS resource or pms_filter field that does not exist is refused."""
    text = DEFAULT_MAPPING_PATH.read_text(encoding="utf-8")
    cases = {
        "poweroffice: Projects\n": ("poweroffice: Projekts\n", "PowerOffice has no resource"),
        "pms: projects\n": ("pms: jobs\n", "the PMS contract has no resource 'jobs'"),
        "kind: [company, person]": ("sort: [company, person]", "has no field 'sort'"),
    }
    for old, (new, says) in cases.items():
        with pytest.raises(ConfigError, match=says):
            load_mapping(write(tmp_path, text.replace(old, new)))
