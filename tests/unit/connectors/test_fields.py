"""Flat field paths for connector writes, and the nested bodies built from them."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tolken.connectors.fields import field_paths, nest


def test_nest_builds_the_nested_body_in_first_seen_order() -> None:
    """Dotted paths become nested objects; keys keep the order in which they were first given."""
    body = nest({"name": "Acme", "address.city": "Oslo", "active": True, "address.line1": "Gate 1"})
    assert body == {"name": "Acme", "address": {"city": "Oslo", "line1": "Gate 1"}, "active": True}
    assert list(body) == ["name", "address", "active"]
    assert list(body["address"]) == ["city", "line1"]


def test_nest_keeps_cleared_fields_and_empty_objects() -> None:
    """None stays None (a merge patch clears the field); an empty object stays an empty object."""
    assert nest({"phone": None, "address.line2": None}) == {
        "phone": None,
        "address": {"line2": None},
    }
    assert nest({"address": {}}) == {"address": {}}


def test_nest_merges_mapping_values_without_changing_them() -> None:
    """A nested mapping merges with paths under the same object and is itself left untouched."""
    address = {"city": "Oslo"}
    body = nest({"address": address, "address.line1": "Gate 1"})
    assert body == {"address": {"city": "Oslo", "line1": "Gate 1"}}
    assert address == {"city": "Oslo"}


def test_field_paths_spell_out_nested_mappings() -> None:
    """A nested mapping is read as the dotted paths of its leaves; flat paths pass as they are."""
    assert field_paths({"Name": "A", "MailAddress": {"City": "Oslo", "ZipCode": None}}) == {
        "Name": "A",
        "MailAddress.City": "Oslo",
        "MailAddress.ZipCode": None,
    }
    assert field_paths({"MailAddress.City": "Oslo", "MailAddress": {}}) == {
        "MailAddress.City": "Oslo"
    }


_paths = st.sampled_from(["name", "phone", "active", "address.city", "address.line1", "a.b.c"])
_values = st.none() | st.booleans() | st.integers() | st.text(max_size=4)


@given(st.dictionaries(_paths, _values))
def test_flat_paths_survive_nesting(flat: dict[str, Any]) -> None:
    """Nesting flat paths and spelling them out again gives back the same paths and values."""
    assert field_paths(nest(flat)) == flat
