"""List queries: paging, filters, ``Fields`` and ``OrderBy`` (reference §4, §5–7).

* Query parameter names are case-insensitive and may carry the
  ``resourceParameter.`` prefix, as ASP.NET binds them.
* ``PageNumber`` is 1-based; ``PageSize`` defaults to 5000 and may not exceed
  20000 (400 above). OData options (``$top``, ``$filter`` …) are a 400 on v2.
* ``…DateTimeOffsetGreaterThan`` is strictly greater; accepted forms are
  ``2021-09-25 08:03:00.1234567 -00:00`` (the spec's example) and ISO 8601
  (``…T…+00:00`` / ``Z``). A ``+`` that arrived unencoded (a space) fails: a
  client must encode it.
* Number filters take lists and ranges: ``10000-11000, 12000, 13000-``.
  ``contactGroupIds`` takes single positive numbers only, with the documented
  detail text otherwise.
* Null or whitespace filter values are ignored. Bad values → 400 titled
  ``Unable to cast object(s)``.
* Default order is ascending ``Id``; ``OrderBy=Name desc, Id`` sorts by DTO
  properties, ``Id`` always last as tie-breaker so pages are stable.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tolken.sandbox.poweroffice.db import TICKS_PER_SECOND
from tolken.sandbox.poweroffice.dtos import ENUMS, EntitySpec
from tolken.sandbox.poweroffice.problems import ApiError, cast_error

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "ListQuery", "parse_list_query", "parse_timestamp"]

DEFAULT_PAGE_SIZE = 5000
MAX_PAGE_SIZE = 20000

_STAMP = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,7}))?)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?$",
    re.IGNORECASE,
)
_RANGE = re.compile(r"^(\d+)?\s*(-)?\s*(\d+)?$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class ListQuery:
    """A parsed list request: SQL conditions, paging and shaping."""

    where: list[str] = field(default_factory=list)
    args: list[Any] = field(default_factory=list)
    page_number: int = 1
    page_size: int = DEFAULT_PAGE_SIZE
    fields: list[str] | None = None
    order_sql: str = "id"
    contact_groups: list[int] | None = None
    """Contact group ids asked for (they must exist: 404 otherwise)."""

    def add(self, sql: str, *args: Any) -> None:
        """AND one condition."""
        self.where.append(sql)
        self.args.extend(args)


def parse_timestamp(name: str, text: str) -> int:
    """100 ns ticks of a filter timestamp; 400 if it does not parse."""
    match = _STAMP.match(text.strip())
    if not match:
        raise cast_error(f"The value '{text}' of {name} is not a valid DateTimeOffset.")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0)
        )
    except ValueError:
        raise cast_error(f"The value '{text}' of {name} is not a valid DateTimeOffset.") from None
    shift = timedelta()
    if offset and offset.upper() != "Z":
        sign = -1 if offset[0] == "-" else 1
        digits = offset[1:].replace(":", "")
        shift = sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    utc = (moment - shift).replace(tzinfo=UTC)
    delta = utc - _EPOCH
    whole = (delta.days * 86400 + delta.seconds) * TICKS_PER_SECOND
    return whole + int((fraction or "").ljust(7, "0"))


def _bool(name: str, text: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "false"):
        raise cast_error(f"The value '{text}' of {name} is not a valid Boolean.")
    return value == "true"


def _int(name: str, text: str) -> int:
    if not re.fullmatch(r"\s*-?\d{1,18}\s*", text):
        raise cast_error(f"The value '{text}' of {name} is not a valid Int64.")
    return int(text)


def _list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _ranges(name: str, text: str, column: str) -> tuple[str, list[int]]:
    """SQL for ``10000-11000, 12000, 13000-`` against ``column``."""
    parts: list[str] = []
    args: list[int] = []
    for item in _list(text):
        match = _RANGE.match(item)
        if not match or match[1] is None or (match[2] is None and match[3] is not None):
            raise cast_error(
                f"{name} contains invalid numbers and/or ranges. Use comma ',' separated "
                "positive numbers and ranges like '10000-11000' or '13000-'."
            )
        low = int(match[1])
        if match[2] is None:
            parts.append(f"{column} = ?")
            args.append(low)
        elif match[3] is None:
            parts.append(f"{column} >= ?")
            args.append(low)
        else:
            parts.append(f"{column} BETWEEN ? AND ?")
            args.extend((low, int(match[3])))
    return "(" + " OR ".join(parts) + ")", args


def _in(column: str, values: list[Any]) -> str:
    return f"{column} IN ({', '.join('?' * len(values))})"


def _enum(name: str, text: str, enum: str) -> str:
    value = text.strip()
    members = ENUMS[enum]
    for member in members:
        if member.lower() == value.lower():
            return member
    if value.isdigit() and int(value) < len(members):
        return members[int(value)]
    raise cast_error(f"The value '{text}' of {name} is not a valid {enum}.")


def _field_names(spec: EntitySpec, name: str, text: str) -> list[str]:
    names = {key.lower(): key for key in spec.read}
    result: list[str] = []
    for item in _list(text):
        canonical = names.get(item.lower())
        if canonical is None:
            raise cast_error(f"{name}: the property '{item}' does not exist on {spec.name}Dto.")
        result.append(canonical)
    return result


def _order_sql(spec: EntitySpec, text: str) -> str:
    names = {key.lower(): key for key in spec.read}
    terms: list[str] = []
    for item in _list(text):
        words = item.split()
        direction = words[1].lower() if len(words) == 2 else "asc"
        canonical = names.get(words[0].lower()) if words else None
        if canonical is None or len(words) > 2 or direction not in ("asc", "desc"):
            raise cast_error(f"OrderBy: '{item}' is not a property of {spec.name}Dto.")
        if spec.read[canonical] in ("address", "int[]"):
            raise cast_error(f"OrderBy: cannot order by '{canonical}'.")
        column = "id" if canonical == "Id" else f"json_extract(doc, '$.{canonical}')"
        terms.append(f"{column} {direction.upper()}")
    if not any(t.startswith("id ") for t in terms):
        terms.append("id ASC")
    return ", ".join(terms)


def _present_params(params: list[tuple[str, str]]) -> dict[str, str]:
    """The non-blank parameters by lower-cased name (``ResourceParameter.`` dropped); ApiError
    400 for an OData ``$`` option."""
    values: dict[str, str] = {}
    for key, value in params:
        lowered = key.lower()
        if lowered.startswith("$"):
            raise ApiError(
                400,
                "Unsupported query option",
                f"The query option '{key}' is not supported in API v2. Use PageNumber, "
                "PageSize, Fields, OrderBy and the documented filters.",
            )
        values[lowered.removeprefix("resourceparameter.")] = value
    return {k: v for k, v in values.items() if v.strip()}


def parse_list_query(spec: EntitySpec, params: list[tuple[str, str]]) -> ListQuery:
    """Parse a list request's query parameters; ApiError 400 on bad values."""
    query = ListQuery()
    present = _present_params(params)
    if "pagenumber" in present:
        query.page_number = _int("PageNumber", present["pagenumber"])
        if query.page_number < 1:
            raise cast_error("PageNumber must be 1 or greater.")
    if "pagesize" in present:
        query.page_size = _int("PageSize", present["pagesize"])
        if not 1 <= query.page_size <= MAX_PAGE_SIZE:
            raise cast_error(f"PageSize must be between 1 and MaxPageSize ({MAX_PAGE_SIZE}).")
    if "fields" in present:
        query.fields = _field_names(spec, "Fields", present["fields"])
    if "orderby" in present:
        query.order_sql = _order_sql(spec, present["orderby"])
    if "usedatabasevalidation" in present:
        _bool("UseDatabaseValidation", present["usedatabasevalidation"])
    stamp_filters = {
        "lastchangeddatetimeoffsetgreaterthan": (
            "lastChangedDateTimeOffsetGreaterThan",
            "last_changed",
        ),
        "createddatetimeoffsetgreaterthan": ("createdDateTimeOffsetGreaterThan", "created"),
    }
    if spec.name == "Customer":
        del stamp_filters["createddatetimeoffsetgreaterthan"]
        stamp_filters["customercreateddatetimeoffsetgreaterthan"] = (
            "customerCreatedDateTimeOffsetGreaterThan",
            "created",
        )
    for key, (name, column) in stamp_filters.items():
        if key in present:
            query.add(f"{column} > ?", parse_timestamp(name, present[key]))
    {"Department": _departments, "Customer": _customers, "Project": _projects}[spec.name](
        query, present
    )
    return query


def _departments(query: ListQuery, present: dict[str, str]) -> None:
    if "codes" in present:
        codes = _list(present["codes"])
        query.add(_in("code", codes), *codes)
    if "isactive" in present:
        query.add("is_active = ?", int(_bool("isActive", present["isactive"])))
    if "name" in present:
        # Match semantics are undocumented (§5); contains, as for projects.
        query.add("instr(lower(name), lower(?)) > 0", present["name"].strip())
    if "manageremployeeno" in present:
        number = _int("managerEmployeeNo", present["manageremployeeno"])
        query.add("json_extract(doc, '$.ManagerEmployeeNo') = ?", number)
    if "createdfromimportjournalid" in present:
        text = present["createdfromimportjournalid"].strip()
        try:
            journal = str(uuid.UUID(text))
        except ValueError:
            raise cast_error(
                f"The value '{text}' of createdFromImportJournalId is not a valid Guid."
            ) from None
        query.add("json_extract(doc, '$.CreatedFromImportJournalId') = ?", journal)


def _customers(query: ListQuery, present: dict[str, str]) -> None:
    if "customernos" in present:
        query.add(*_flat(_ranges("customerNos", present["customernos"], "number")))
    if "externalnos" in present:
        query.add(*_flat(_ranges("externalNos", present["externalnos"], "ext_no")))
    if "externalimportreference" in present:
        query.add("ext_ref = ?", present["externalimportreference"].strip())
    if "contactgroupids" in present:
        text = present["contactgroupids"]
        items = _list(text)
        if not all(item.isdigit() for item in items):
            raise cast_error(
                "contactGroupIds contains negative numbers and/or range of numbers. '-' is not "
                "allowed, only comma ',' separated single positive numbers are allowed."
            )
        groups = [int(item) for item in items]
        query.contact_groups = groups
        query.add(
            "EXISTS (SELECT 1 FROM json_each(doc, '$.ContactGroupIds') WHERE "
            + _in("value", groups)
            + ")",
            *groups,
        )
    # Newer filters reported by recent clients (§6), not in the 2025-03 spec.
    for key, prop in (
        ("organizationnumbers", "OrganizationNumber"),
        ("emailaddresses", "EmailAddress"),
        ("phonenumbers", "PhoneNumber"),
    ):
        if key in present:
            items = _list(present[key])
            query.add(_in(f"json_extract(doc, '$.{prop}')", items), *items)


def _projects(query: ListQuery, present: dict[str, str]) -> None:
    if "projectcodes" in present:
        codes = _list(present["projectcodes"])
        include_sub = "includesubprojects" in present and _bool(
            "includeSubProjects", present["includesubprojects"]
        )
        condition = _in("code", codes)
        if include_sub:
            condition = f"({condition} OR json_extract(doc, '$.ParentProjectCode') IN " + (
                f"({', '.join('?' * len(codes))}))"
            )
            query.add(condition, *codes, *codes)
        else:
            query.add(condition, *codes)
    elif "includesubprojects" in present:
        _bool("includeSubProjects", present["includesubprojects"])
    if "customernos" in present:
        sql, args = _ranges("customerNos", present["customernos"], "number")
        query.add(f"customer_id IN (SELECT id FROM customers WHERE {sql})", *args)
    if "departmentcodes" in present:
        codes = _list(present["departmentcodes"])
        query.add(
            f"department_id IN (SELECT id FROM departments WHERE {_in('code', codes)})", *codes
        )
    if "excludearchivedproject" in present and _bool(
        "excludeArchivedProject", present["excludearchivedproject"]
    ):
        query.add("status IS NOT 'Archived'")
    if "name" in present:
        query.add("instr(lower(name), lower(?)) > 0", present["name"].strip())
    if "status" in present:
        query.add("status = ?", _enum("status", present["status"], "ProjectStatusType"))
    if "projectbillingmethod" in present:
        method = _enum(
            "projectBillingMethod", present["projectbillingmethod"], "ProjectBillingMethod"
        )
        query.add("json_extract(doc, '$.ProjectBillingMethod') = ?", method)
    if "projectmanageremployeenos" in present:
        sql, args = _ranges(
            "projectManagerEmployeeNos",
            present["projectmanageremployeenos"],
            "json_extract(doc, '$.ProjectManagerEmployeeNo')",
        )
        query.add(sql, *args)


def _flat(pair: tuple[str, list[int]]) -> tuple[Any, ...]:
    return (pair[0], *pair[1])
