"""JSON Patch documents for PowerOffice updates."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tolken.connectors.poweroffice import build_patch, field_diff
from tolken.errors import ValidationFailed


def test_patch_from_field_changes_in_pascal_case() -> None:
    """Changed fields (any casing) become replace operations on PascalCase paths."""
    patch = build_patch("Customers", {"name": "Ny AS", "EmailAddress": None, "isArchived": True})
    assert patch == [
        {"op": "replace", "path": "/Name", "value": "Ny AS"},
        {"op": "replace", "path": "/EmailAddress", "value": None},
        {"op": "replace", "path": "/IsArchived", "value": True},
    ]


def test_nested_mail_address_paths() -> None:
    """Address changes address the nested object: /MailAddress/City."""
    patch = build_patch("Customers", {"mailAddress": {"city": "Bergen", "ZipCode": "5003"}})
    assert patch == [
        {"op": "replace", "path": "/MailAddress/City", "value": "Bergen"},
        {"op": "replace", "path": "/MailAddress/ZipCode", "value": "5003"},
    ]


@pytest.mark.parametrize(
    ("resource", "changes", "field"),
    [
        ("Customers", {"IsActive": False}, "IsActive"),
        ("Customers", {"DepartmentCode": "10"}, "DepartmentCode"),
        ("Departments", {"ManagerEmployeeNo": 3}, "ManagerEmployeeNo"),
        ("Projects", {"CustomerNo": 10001}, "CustomerNo"),
        ("Projects", {"LastChangedDateTimeOffset": "x"}, "LastChangedDateTimeOffset"),
        ("Customers", {"MailAddress": {"Id": 4}}, "MailAddress.Id"),
    ],
)
def test_fields_outside_the_patch_dto_are_refused_locally(
    resource: str, changes: dict[str, object], field: str
) -> None:
    """A read-only or unknown field is refused before sending, naming the field."""
    with pytest.raises(ValidationFailed, match=field) as info:
        build_patch(resource, changes)
    assert info.value.field_errors[0].field == field


def test_address_must_be_given_as_a_mapping() -> None:
    """Replacing the whole address with a scalar is refused with a clear message."""
    with pytest.raises(ValidationFailed, match="mapping"):
        build_patch("Customers", {"MailAddress": "Storgata 1"})


def test_field_diff_finds_changed_and_nested_fields() -> None:
    """Only fields whose value changed appear; nested address changes stay nested."""
    before = {"Name": "A", "PhoneNumber": "1", "MailAddress": {"City": "Oslo", "ZipCode": "0150"}}
    after = {"name": "A", "PhoneNumber": "2", "mailAddress": {"City": "Oslo", "ZipCode": "0151"}}
    assert field_diff(before, after) == {"PhoneNumber": "2", "MailAddress": {"ZipCode": "0151"}}
    assert field_diff(before, before) == {}


names = st.sampled_from(["Name", "PhoneNumber", "EmailAddress", "WebsiteUrl", "LegalName"])
values = st.one_of(st.none(), st.text(max_size=5))


@given(before=st.dictionaries(names, values), after=st.dictionaries(names, values))
def test_patch_of_a_diff_turns_before_into_after(
    before: dict[str, object], after: dict[str, object]
) -> None:
    """Applying the patch built from a diff to `before` yields `before` updated with `after`."""
    result = dict(before)
    for op in build_patch("Customers", field_diff(before, after)):
        result[op["path"].lstrip("/")] = op["value"]
    assert result == {**before, **after}
