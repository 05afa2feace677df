"""PowerOffice records: case-insensitive keys, timestamps, dates and changed_at."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from tolken.connectors.poweroffice import _schema
from tolken.connectors.poweroffice._records import (
    canonical_key,
    changed_at,
    normalise,
    parse_date,
    parse_timestamp,
    to_record,
)
from tolken.errors import ServerError

SPEC = Path(__file__).parents[3] / "data" / "poweroffice-go-v2-dept-cust-proj.subset.json"
KINDS = ("Dto", "PostDto", "PatchDto")


def test_field_tables_match_the_public_spec() -> None:
    """The client's DTO field tables are exactly those of the spec copy in tests/data."""
    schemas = json.loads(SPEC.read_text())["components"]["schemas"]
    for spec in _schema.RESOURCES.values():
        assert spec.read == set(schemas[f"{spec.entity}Dto"]["properties"])
        assert spec.post == set(schemas[f"{spec.entity}PostDto"]["properties"])
        assert spec.patch == set(schemas[f"{spec.entity}PatchDto"]["properties"])
    assert set(schemas["ContactAddressDto"]["properties"]) == _schema.ADDRESS_READ
    assert set(schemas["ContactAddressPatchDto"]["properties"]) == _schema.ADDRESS_PATCH


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("mailAddress", "MailAddress"),
        ("MAILADDRESS", "MailAddress"),
        ("invoiceemailaddresscc", "InvoiceEmailAddressCC"),
        ("subledgerAccountId", "SubledgerAccountId"),
        ("lastChangedDateTimeOffset", "LastChangedDateTimeOffset"),
        ("somethingNew", "SomethingNew"),
    ],
)
def test_keys_are_read_case_insensitively(key: str, expected: str) -> None:
    """Any casing of a spec field maps to the spec's PascalCase spelling."""
    assert canonical_key(key) == expected


def test_nested_camel_case_is_normalised() -> None:
    """A camelCase body, nested MailAddress included, comes out in canonical PascalCase."""
    raw = {
        "id": 7,
        "name": "Fjord AS",
        "mailAddress": {"addressLine1": "Storgata 1", "zipCode": "0150", "city": "Oslo"},
        "contactGroupIds": [1, 2],
    }
    assert normalise(raw) == {
        "Id": 7,
        "Name": "Fjord AS",
        "MailAddress": {"AddressLine1": "Storgata 1", "ZipCode": "0150", "City": "Oslo"},
        "ContactGroupIds": [1, 2],
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2021-09-30T08:03:00.1234567Z", datetime(2021, 9, 30, 8, 3, 0, 123457, tzinfo=UTC)),
        (
            "2021-09-30T08:03:00.1234567+02:00",
            datetime(2021, 9, 30, 8, 3, 0, 123457, tzinfo=timezone(timedelta(hours=2))),
        ),
        ("2021-09-25 08:03:00.1234567 -00:00", datetime(2021, 9, 25, 8, 3, 0, 123457, tzinfo=UTC)),
        ("2021-09-30T08:03:00+0100", datetime(2021, 9, 30, 7, 3, tzinfo=UTC)),
        ("2021-09-30T08:03:00", datetime(2021, 9, 30, 8, 3, tzinfo=UTC)),
        ("2021-09-30T08:03", datetime(2021, 9, 30, 8, 3, tzinfo=UTC)),
        ("2021-09-30T08:03:00.5z", datetime(2021, 9, 30, 8, 3, 0, 500000, tzinfo=UTC)),
        ("2021-09-30T08:03:00.1234560Z", datetime(2021, 9, 30, 8, 3, 0, 123456, tzinfo=UTC)),
        ("2021-09-30T08:03:59.9999999Z", datetime(2021, 9, 30, 8, 4, tzinfo=UTC)),
    ],
)
def test_timestamps_with_seven_fraction_digits_and_offsets(text: str, expected: datetime) -> None:
    """Timestamps parse whatever the fraction or offset form; a 7th digit rounds up."""
    assert parse_timestamp(text) == expected


def test_bad_timestamp_is_refused() -> None:
    """A value that is not a timestamp raises ValueError naming it."""
    with pytest.raises(ValueError, match="yesterday"):
        parse_timestamp("yesterday")


@pytest.mark.parametrize(
    "text", ["2022-10-26", "2022-10-26T00:00:00", "2022-10-26T00:00:00.0000000+02:00"]
)
def test_dates_with_or_without_time_part(text: str) -> None:
    """Date fields parse with or without a time part and are normalised to YYYY-MM-DD."""
    assert parse_date(text) == date(2022, 10, 26)
    assert normalise({"startDate": text}) == {"StartDate": "2022-10-26"}


def test_customer_changed_at_is_the_later_of_customer_and_address() -> None:
    """An address edit (its own timestamp) makes the customer's changed_at later."""
    data = normalise(
        {
            "Id": 1,
            "LastChangedDateTimeOffset": "2024-01-01T10:00:00.0000000+00:00",
            "mailAddress": {"lastChangedDateTimeOffset": "2024-02-01T10:00:00.1234567Z"},
        }
    )
    assert changed_at(data) == datetime(2024, 2, 1, 10, 0, 0, 123457, tzinfo=UTC)
    data2 = {"LastChangedDateTimeOffset": "2024-03-01T00:00:00Z", "MailAddress": None}
    assert changed_at(data2) == datetime(2024, 3, 1, tzinfo=UTC)
    assert changed_at({}) is None


def test_to_record_uses_string_ids_and_canonical_resource() -> None:
    """A raw row becomes a RemoteRecord with a string id and PascalCase data."""
    record = to_record("customers", {"id": 42, "name": "X", "lastChangedDateTimeOffset": None})
    assert record.resource == "Customers"
    assert record.id == "42"
    assert record.data["Name"] == "X"
    assert record.changed_at is None
    with pytest.raises(ServerError, match="without an Id"):
        to_record("Customers", {"Name": "no id"})


@pytest.mark.parametrize(
    "raw", [{"Name": "no id"}, {"Id": {"a": 1}}, [1], {"Id": 1, "LastChangedDateTimeOffset": "x"}]
)
def test_a_broken_row_is_a_server_error_not_a_crash(raw: object) -> None:
    """A row without an Id, not an object, or with a bad timestamp ends the run with ServerError."""
    with pytest.raises(ServerError, match="PowerOffice sent a Customers record"):
        to_record("Customers", raw)  # type: ignore[arg-type]


def test_length_limits_match_the_public_spec() -> None:
    """Every maxLength the spec subset declares for these DTOs, and no other, is checked."""
    schemas = json.loads(SPEC.read_text())["components"]["schemas"]
    dtos = [f"{spec.entity}{kind}" for spec in _schema.RESOURCES.values() for kind in KINDS]
    dtos += [f"ContactAddress{kind}" for kind in KINDS]
    declared = {
        dto: {
            field: prop["maxLength"]
            for field, prop in schemas[dto]["properties"].items()
            if "maxLength" in prop
        }
        for dto in dtos
    }
    assert {dto: limits for dto, limits in declared.items() if limits} == _schema.MAX_LENGTH
