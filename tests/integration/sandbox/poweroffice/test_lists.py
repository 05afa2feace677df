"""PowerOffice simulator: list paging, X-Pagination, filters, Fields, OrderBy and 204."""

from __future__ import annotations

import json
from typing import Any

from starlette.testclient import TestClient


def _ids(response: Any) -> list[int]:
    return [] if response.status_code == 204 else [row["Id"] for row in response.json()]


def test_paging_and_x_pagination(po: TestClient) -> None:
    """Pages are 1-based, bare arrays with an X-Pagination header; past the end is an empty 204."""
    po.post("/_sandbox/seed", json={"customers": 25})
    first = po.get("/v2/Customers", params={"PageSize": 10})
    assert first.status_code == 200
    assert isinstance(first.json(), list)
    paging = json.loads(first.headers["X-Pagination"])
    assert {k: paging[k] for k in ("totalCount", "pageSize", "currentPage", "totalPages")} == {
        "totalCount": 25,
        "pageSize": 10,
        "currentPage": 1,
        "totalPages": 3,
    }
    assert paging["previousPageLink"] is None
    third = po.get(paging["nextPageLink"].replace("PageNumber=2", "PageNumber=3"))
    assert len(third.json()) == 5
    assert json.loads(third.headers["X-Pagination"])["nextPageLink"] is None
    seen = _ids(first) + _ids(po.get(paging["nextPageLink"])) + _ids(third)
    assert seen == sorted(seen)
    assert len(set(seen)) == 25
    past = po.get("/v2/Customers", params={"PageSize": 10, "PageNumber": 4})
    assert past.status_code == 204
    assert past.content == b""
    assert len(po.get("/v2/Customers").json()) == 25


def test_page_size_limits_and_odata(po: TestClient) -> None:
    """PageSize above 20000, PageNumber 0 and OData options are 400 ProblemDetails."""
    assert po.get("/v2/Customers", params={"PageSize": 20000}).status_code == 204
    for params in ({"PageSize": 20001}, {"PageNumber": 0}, {"PageSize": "x"}, {"$top": 5}):
        response = po.get("/v2/Customers", params=params)
        assert response.status_code == 400, params
        assert response.headers["content-type"].startswith("application/problem+json")
    assert po.get("/v2/Customers", params={"resourceParameter.pageSize": 20001}).status_code == 400


def test_last_changed_filter_is_strict(po: TestClient) -> None:
    """lastChangedDateTimeOffsetGreaterThan excludes the record stamped exactly at the value."""
    a = po.post("/v2/Departments", json={"Name": "A", "Code": "1"}).json()
    b = po.post("/v2/Departments", json={"Name": "B", "Code": "2"}).json()
    after_a = po.get(
        "/v2/Departments",
        params={"lastChangedDateTimeOffsetGreaterThan": a["LastChangedDateTimeOffset"]},
    )
    assert _ids(after_a) == [b["Id"]]
    spaced = a["LastChangedDateTimeOffset"].replace("T", " ").replace("+00:00", " -00:00")
    assert _ids(
        po.get("/v2/departments", params={"lastchangeddatetimeoffsetgreaterthan": spaced})
    ) == [b["Id"]]
    created = po.get(
        "/v2/Departments", params={"createdDateTimeOffsetGreaterThan": b["CreatedDateTimeOffset"]}
    )
    assert created.status_code == 204
    bad = po.get("/v2/Departments", params={"lastChangedDateTimeOffsetGreaterThan": "yesterday"})
    assert bad.status_code == 400
    assert bad.json()["title"] == "Unable to cast object(s)"
    unencoded_plus = "2020-01-01T00:00:00 00:00"
    assert (
        po.get(
            "/v2/Departments", params={"lastChangedDateTimeOffsetGreaterThan": unencoded_plus}
        ).status_code
        == 400
    )


def test_customer_filters(po: TestClient) -> None:
    """customerNos ranges, externalNos, externalImportReference and contactGroupIds filter."""
    made = [
        po.post(
            "/v2/Customers",
            json={
                "Name": f"K{i} AS",
                "ExternalNumber": 100 + i,
                "ExternalImportReference": f"ref-{i}",
                "ContactGroupIds": [i % 2 + 1],
            },
        ).json()
        for i in range(6)
    ]
    numbers = [c["Number"] for c in made]
    assert numbers == list(range(10000, 10006))
    ranged = po.get("/v2/Customers", params={"customerNos": "10000-10001, 10003, 10005-"})
    assert [c["Number"] for c in ranged.json()] == [10000, 10001, 10003, 10005]
    assert _ids(po.get("/v2/Customers", params={"externalNos": "102-103"})) == [
        made[2]["Id"],
        made[3]["Id"],
    ]
    assert _ids(po.get("/v2/Customers", params={"externalImportReference": "ref-4"})) == [
        made[4]["Id"]
    ]
    assert len(_ids(po.get("/v2/Customers", params={"contactGroupIds": "2"}))) == 3
    negative = po.get("/v2/Customers", params={"contactGroupIds": "1-3"})
    assert negative.status_code == 400
    assert negative.json()["detail"].startswith("contactGroupIds contains negative numbers")
    unknown = po.get("/v2/Customers", params={"contactGroupIds": "41345, 2"})
    assert unknown.status_code == 404
    assert unknown.json()["detail"] == "Could not find contact group(s) with id = 41345."
    assert po.get("/v2/Customers", params={"customerNos": "abc"}).status_code == 400
    assert len(_ids(po.get("/v2/Customers", params={"customerNos": "  "}))) == 6


def test_department_and_project_filters(po: TestClient) -> None:
    """codes/isActive/name for departments; codes, customers, status and archive for projects."""
    sales = po.post("/v2/Departments", json={"Name": "Salg Oslo", "Code": "10"}).json()
    old = po.post(
        "/v2/Departments", json={"Name": "Gammel", "Code": "20", "IsActive": False}
    ).json()
    assert _ids(po.get("/v2/Departments", params={"codes": "10, 20"})) == [sales["Id"], old["Id"]]
    assert _ids(po.get("/v2/Departments", params={"isActive": "false"})) == [old["Id"]]
    assert _ids(po.get("/v2/Departments", params={"name": "salg"})) == [sales["Id"]]
    assert po.get("/v2/Departments", params={"isActive": "maybe"}).status_code == 400
    customer = po.post("/v2/Customers", json={"Name": "Kunde AS"}).json()
    p1 = po.post(
        "/v2/Projects",
        json={
            "Name": "Nettside",
            "Code": "A1",
            "CustomerId": customer["Id"],
            "DepartmentId": sales["Id"],
        },
    ).json()
    p2 = po.post(
        "/v2/Projects", json={"Name": "Arkiv", "Code": "B2", "ProjectStatus": "Archived"}
    ).json()
    assert _ids(po.get("/v2/Projects", params={"projectCodes": "B2"})) == [p2["Id"]]
    assert _ids(po.get("/v2/Projects", params={"customerNos": str(customer["Number"])})) == [
        p1["Id"]
    ]
    assert _ids(po.get("/v2/Projects", params={"departmentCodes": "10"})) == [p1["Id"]]
    assert _ids(po.get("/v2/Projects", params={"excludeArchivedProject": "true"})) == [p1["Id"]]
    assert _ids(po.get("/v2/Projects", params={"status": "archived"})) == [p2["Id"]]
    assert _ids(po.get("/v2/Projects", params={"name": "NETT"})) == [p1["Id"]]
    assert po.get("/v2/Projects", params={"status": "Sleeping"}).status_code == 400


def test_fields_and_order_by(po: TestClient) -> None:
    """Fields trims each row to the named properties; OrderBy 'Name desc, Id' sorts."""
    for name in ("Beta", "Alfa", "Gamma", "Alfa"):
        po.post("/v2/Departments", json={"Name": name})
    rows = po.get(
        "/v2/Departments", params={"Fields": "id,Name", "OrderBy": "Name desc, Id"}
    ).json()
    assert [r["Name"] for r in rows] == ["Gamma", "Beta", "Alfa", "Alfa"]
    assert all(set(r) == {"Id", "Name"} for r in rows)
    assert rows[2]["Id"] < rows[3]["Id"]
    assert po.get("/v2/Departments", params={"Fields": "Nope"}).status_code == 400
    assert po.get("/v2/Departments", params={"OrderBy": "Name sideways"}).status_code == 400
