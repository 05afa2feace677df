"""PATCH on the reference PMS behaves as RFC 7396 JSON Merge Patch applied to the record."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tolken.sandbox.pms import merge_patch
from tolken.sandbox.pms.db import Store
from tolken.sandbox.pms.validation import ApiError


def rfc7396(target: Any, patch: Any) -> Any:
    """The pseudo-code of RFC 7396 section 2, transcribed literally."""
    if isinstance(patch, dict):
        if not isinstance(target, dict):
            target = {}
        target = dict(target)
        for name, value in patch.items():
            if value is None:
                if name in target:
                    del target[name]
            else:
                target[name] = rfc7396(target.get(name), value)
        return target
    return patch


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=10,
)

text = st.text(alphabet="abcæøå ÆØÅ-1", min_size=1, max_size=8).filter(str.strip)
email = st.builds(
    lambda a, b: f"{a}@{b}.no", st.text("abc", min_size=1), st.text("xyz", min_size=1)
)
address_patch = st.dictionaries(
    st.sampled_from(["line1", "line2", "postal_code", "city", "country"]),
    st.none() | text,
    max_size=5,
)
# Each writable customer field, with null (remove) as a possible value.
customer_values: dict[str, st.SearchStrategy[Any]] = {
    "kind": st.none() | st.sampled_from(["company", "person", "department"]),
    "number": st.none() | text,
    "name": st.none() | text,
    "first_name": st.none() | text,
    "last_name": st.none() | text,
    "organization_number": st.none() | st.from_regex(r"\A\d{9}\Z"),
    "email": st.none() | email,
    "phone": st.none() | text,
    "website": st.none() | text,
    "address": st.none() | address_patch,
    "active": st.none() | st.booleans(),
    "external_ref": st.none() | text,
}
patches = st.fixed_dictionaries({}, optional=customer_values)
DEFAULTS = {"active": True}


def canonical(doc: dict[str, Any]) -> dict[str, Any]:
    """Drop nulls and empty objects, then fill defaults: how the PMS shows an absent field."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if v is not None} or None
        if value is not None:
            out[key] = value
    return {**DEFAULTS, **out}


@given(json_values, json_values)
def test_merge_patch_matches_rfc7396_on_any_json(target: Any, patch: Any) -> None:
    """The server's merge_patch equals the RFC's algorithm for arbitrary JSON values."""
    assert merge_patch(target, patch) == rfc7396(target, patch)


@given(json_values, json_values)
def test_merge_patch_does_not_mutate_its_inputs(target: Any, patch: Any) -> None:
    """Applying a patch leaves the original target and patch untouched."""
    before = repr((target, patch))
    merge_patch(target, patch)
    assert repr((target, patch)) == before


@given(base=patches, patch=patches)
def test_patching_a_customer_is_rfc7396_on_its_fields(
    base: dict[str, Any], patch: dict[str, Any]
) -> None:
    """PATCH result = RFC 7396 applied to the stored fields; version +1 only on a real change."""
    store = Store()
    try:
        body = {**base, "kind": base.get("kind") or "company", "name": base.get("name") or "A"}
        record, _ = store.create("customer", body)
        fields = {k: record[k] for k in customer_values}
        expected = rfc7396(canonical(fields), patch)
        if not {"kind", "name"} <= expected.keys():
            # The only invalid patches generated remove a required field; nothing is stored.
            with pytest.raises(ApiError) as info:
                store.patch("customer", record["id"], patch)
            assert {p.field for p in info.value.problems} <= {"kind", "name"}
            assert store.get("customer", record["id"]) == record
            return
        updated = store.patch("customer", record["id"], patch)
        got = canonical({k: updated[k] for k in customer_values})
        assert got == canonical(expected)
        changed = got != canonical(fields)
        assert updated["version"] == record["version"] + (1 if changed else 0)
        assert (updated["updated_at"] > record["updated_at"]) is changed
    finally:
        store.close()
