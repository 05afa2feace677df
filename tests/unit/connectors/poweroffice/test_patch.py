"""JSON Patch documents for PowerOffice updates, built from flat field paths."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tolken.connectors.fields import nest
from tolken.connectors.poweroffice import build_patch, field_diff
from tolken.connectors.poweroffice._schema import ADDRESS_PATCH, CUSTOMER_PATCH
from tolken.errors import ValidationFailed
from tolken.sandbox.poweroffice.dtos import CUSTOMER
from tolken.sandbox.poweroffice.jsonpatch import apply_patch, patch_view


def test_patch_from_field_changes_in_pascal_case() -> None:
    """Changed fields (any casing) become replace operations on PascalCase paths."""
    patch = build_patch("Customers", {"name": "Ny AS", "EmailAddress": None, "isArchived": True})
    assert patch == [
        {"op": "replace", "path": "/Name", "value": "Ny AS"},
        {"op": "replace", "path": "/EmailAddress", "value": None},
        {"op": "replace", "path": "/IsArchived", "value": True},
    ]


def test_flat_mail_address_paths_address_the_nested_object() -> None:
    """``MailAddress.City`` (any casing) becomes one operation on /MailAddress/City."""
    patch = build_patch("Customers", {"mailAddress.city": "Bergen", "MailAddress.ZIPCODE": "5003"})
    assert patch == [
        {"op": "replace", "path": "/MailAddress/City", "value": "Bergen"},
        {"op": "replace", "path": "/MailAddress/ZipCode", "value": "5003"},
    ]


def test_cleared_fields_are_replaced_with_null() -> None:
    """A None clears a field, the address's too, with a retry-safe replace (never a remove)."""
    patch = build_patch("Customers", {"PhoneNumber": None, "MailAddress.AddressLine2": None})
    assert patch == [
        {"op": "replace", "path": "/PhoneNumber", "value": None},
        {"op": "replace", "path": "/MailAddress/AddressLine2", "value": None},
    ]


def test_operations_on_one_object_stay_together() -> None:
    """Address fields given apart are patched together, where the first one was given."""
    patch = build_patch(
        "Customers", {"MailAddress.City": "Bergen", "Name": "Ny AS", "MailAddress.ZipCode": "5003"}
    )
    assert [op["path"] for op in patch] == ["/MailAddress/City", "/MailAddress/ZipCode", "/Name"]


def test_a_mapping_value_stands_for_its_field_paths() -> None:
    """A nested address mapping patches the same paths as its flat field paths."""
    patch = build_patch("Customers", {"MailAddress": {"City": "Bergen", "ZipCode": "5003"}})
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
        ("Customers", {"MailAddress.Id": 4}, "MailAddress.Id"),
        ("Customers", {"MailAddress.LastChangedDateTimeOffset": "x"}, "MailAddress.Last"),
        ("Departments", {"MailAddress.City": "Oslo"}, "MailAddress"),
    ],
)
def test_fields_outside_the_patch_dto_are_refused_locally(
    resource: str, changes: dict[str, object], field: str
) -> None:
    """A read-only or unknown field is refused before sending, naming the field."""
    with pytest.raises(ValidationFailed, match=field) as info:
        build_patch(resource, changes)
    named = info.value.field_errors[0].field
    assert named is not None
    assert named.startswith(field)


@pytest.mark.parametrize(
    ("changes", "wanted"),
    [
        ({"MailAddress": "Storgata 1"}, "give its fields as paths like MailAddress.City"),
        ({"MailAddress": None}, "give its fields as paths like MailAddress.City"),
        ({"MailAddress.City.Name": "Oslo"}, "give its fields as paths like MailAddress.City"),
        ({"Name.First": "Kari"}, "is not an object; give it a plain value"),
        ({"Name": {"First": "Kari"}}, "is not an object; give it a plain value"),
    ],
)
def test_paths_that_do_not_fit_the_shape_are_refused(
    changes: dict[str, object], wanted: str
) -> None:
    """A whole address as one value, or a path into a plain field, is refused with a clear
    message before anything is sent."""
    with pytest.raises(ValidationFailed, match=wanted):
        build_patch("Customers", changes)


def test_field_diff_gives_the_changed_field_paths() -> None:
    """Only fields whose value changed appear, address fields as MailAddress.* paths."""
    before = {"Name": "A", "PhoneNumber": "1", "MailAddress": {"City": "Oslo", "ZipCode": "0150"}}
    after = {"name": "A", "PhoneNumber": "2", "mailAddress": {"City": "Oslo", "zipCode": "0151"}}
    assert field_diff(before, after) == {"PhoneNumber": "2", "MailAddress.ZipCode": "0151"}
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


# Every CustomerPatchDto field of a plain type, and every address field, as a flat path.
_TYPED = {"str": st.text(max_size=8), "bool": st.booleans(), "int": st.integers(0, 10**6)}
_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    name: st.none() | _TYPED[CUSTOMER.read[name]]
    for name in sorted(CUSTOMER_PATCH)
    if CUSTOMER.read.get(name) in _TYPED
}
_FIELDS |= {f"MailAddress.{sub}": st.none() | st.text(max_size=8) for sub in sorted(ADDRESS_PATCH)}


def _change_sets() -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(sorted(_FIELDS)), st.none(), max_size=12).flatmap(
        lambda chosen: st.fixed_dictionaries({path: _FIELDS[path] for path in chosen})
    )


def _spelled(path: str, lower: bool) -> str:
    return path.lower() if lower else path


@given(before=_change_sets(), changes=_change_sets(), lower=st.booleans())
def test_a_patch_applied_changes_exactly_the_given_fields(
    before: dict[str, Any], changes: dict[str, Any], lower: bool
) -> None:
    """For any flat change set over the PatchDto fields, the simulator's JSON Patch engine turns
    the record into the record with exactly those fields changed and nothing else."""
    record = patch_view(CUSTOMER, nest(before))
    expected = copy.deepcopy(record)
    for path, value in changes.items():
        field, _, sub = path.partition(".")
        if sub:
            expected[field][sub] = value
        else:
            expected[field] = value
    patch = build_patch("Customers", {_spelled(p, lower): v for p, v in changes.items()})
    assert len(patch) == len(changes)
    assert apply_patch(CUSTOMER, record, patch) == expected
