"""PowerOfficeClient behaviour beyond the shared contract: tokens, POST retry rule, rate limit."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from starlette.testclient import TestClient

from tolken.config import PowerOfficeSettings
from tolken.connectors import _http
from tolken.connectors._http import RetryPolicy
from tolken.connectors.poweroffice import PowerOfficeClient
from tolken.connectors.ratelimit import clear_shared_limiters, memory_limiter
from tolken.errors import (
    AuthError,
    Fatal,
    RateLimited,
    ServerError,
    Stopped,
    Unreachable,
    ValidationFailed,
)
from tolken.sandbox import credentials
from tolken.sandbox.poweroffice import create_app


def settings(base: str = "http://testserver", **overrides: object) -> PowerOfficeSettings:
    values: dict[str, object] = {
        "base_url": f"{base}/v2",
        "token_url": f"{base}/OAuth/Token",
        "application_key": credentials.APPLICATION_KEY,
        "client_key": credentials.CLIENT_KEY,
        "subscription_key": credentials.SUBSCRIPTION_KEY,
    }
    values.update(overrides)
    return PowerOfficeSettings.model_validate(values)


@pytest.fixture
def sim() -> Iterator[TestClient]:
    with TestClient(create_app(rate_limit_per_second=None)) as http, _http.testing():
        yield http


def client(http: httpx.Client, **kwargs: object) -> PowerOfficeClient:
    options: dict[str, object] = {
        "http": http,
        "rate_limiter": memory_limiter(1000.0),
        "retry": RetryPolicy(attempts=3),
    }
    options.update(kwargs)
    return PowerOfficeClient(settings(), **options)  # type: ignore[arg-type]


def stats(http: TestClient) -> dict[str, int]:
    result: dict[str, int] = http.get("/_sandbox/stats").json()["requests"]
    return result


def test_token_request_is_exactly_the_documented_one() -> None:
    """Basic app:client key, the subscription key header and the client_credentials form."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/OAuth/Token":
            return httpx.Response(200, json={"access_token": "T", "expires_in": 1200})
        return httpx.Response(204)

    http = httpx.Client(transport=httpx.MockTransport(handler))
    list(client(http).list("Customers"))
    token, api = seen
    assert token.method == "POST"
    expected = httpx.BasicAuth(credentials.APPLICATION_KEY, credentials.CLIENT_KEY)
    assert (
        token.headers["Authorization"] == next(expected.auth_flow(token)).headers["Authorization"]
    )
    assert token.headers["Ocp-Apim-Subscription-Key"] == credentials.SUBSCRIPTION_KEY
    assert token.content == b"grant_type=client_credentials"
    assert api.headers["Authorization"] == "Bearer T"
    assert api.headers["Ocp-Apim-Subscription-Key"] == credentials.SUBSCRIPTION_KEY
    assert api.url.params["PageNumber"] == "1"


def test_token_is_renewed_before_expiry(sim: TestClient) -> None:
    """With a fake clock, a token is reused for 19 minutes and replaced before 20."""
    now = [0.0]
    po = client(sim, clock=lambda: now[0])
    list(po.list("Departments"))
    now[0] = 1100.0
    list(po.list("Departments"))
    assert stats(sim)["POST /OAuth/Token"] == 1
    now[0] = 1150.0
    list(po.list("Departments"))
    assert stats(sim)["POST /OAuth/Token"] == 2


def test_a_401_gets_one_fresh_token_and_one_retry() -> None:
    """A token refused early is replaced once; a second 401 is an AuthError."""
    answers = iter([401, 204, 401, 401])
    tokens = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal tokens
        if request.url.path == "/OAuth/Token":
            tokens += 1
            return httpx.Response(200, json={"access_token": f"T{tokens}", "expires_in": 1200})
        return httpx.Response(next(answers), json={"statusCode": 401, "message": "Invalid token"})

    po = client(httpx.Client(transport=httpx.MockTransport(handler)))
    assert list(po.list("Projects")) == []
    assert tokens == 2
    with pytest.raises(AuthError, match="Invalid token"):
        list(po.list("Projects"))
    assert tokens == 3


def test_refused_subscription_key_names_poweroffice_not_the_key(sim: TestClient) -> None:
    """A wrong subscription key is an AuthError naming the subscription key, never showing it."""
    po = PowerOfficeClient(
        settings(subscription_key="wrong-subscription-0451"),
        http=sim,
        rate_limiter=memory_limiter(1e3),
    )
    with pytest.raises(AuthError) as info:
        po.get("Customers", "1")
    assert info.value.message.startswith("PowerOffice refused the subscription key: ")
    assert "invalid subscription key" in str(info.value)
    assert "wrong-subscription-0451" not in str(info.value)


def test_post_failing_with_5xx_is_not_sent_again(sim: TestClient) -> None:
    """An ambiguous create (503) is raised after one POST, telling the caller to look it up."""
    po = client(sim)
    list(po.list("Customers"))
    sim.post("/_sandbox/faults", json={"rate": 1.0, "statuses": [503]})
    with pytest.raises(ServerError, match="look it up"):
        po.create("Customers", {"Name": "Once AS"}, idempotency_key="k-once")
    assert stats(sim)["POST /v2/Customers"] == 1


def test_post_refused_with_429_is_retried(sim: TestClient) -> None:
    """A throttled create was never processed, so it is retried up to the bound."""
    po = client(sim)
    list(po.list("Customers"))
    sim.post("/_sandbox/faults", json={"rate": 1.0, "statuses": [429]})
    with pytest.raises(RateLimited):
        po.create("Customers", {"Name": "Later AS"}, idempotency_key="k-later")
    assert stats(sim)["POST /v2/Customers"] == 3


def test_retry_after_pauses_the_shared_budget() -> None:
    """A 429 with Retry-After: 2 pauses the key's budget for 2 s, for every user of the key."""
    limiter = memory_limiter(1000.0)
    answers = iter([httpx.Response(429, headers={"Retry-After": "2"}), httpx.Response(204)])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/OAuth/Token":
            return httpx.Response(200, json={"access_token": "T", "expires_in": 1200})
        return next(answers)

    po = client(httpx.Client(transport=httpx.MockTransport(handler)), rate_limiter=limiter)
    with _http.testing():
        assert list(po.list("Customers")) == []
    assert 1.5 < limiter.budget.paused_for() <= 2.0


def test_retry_after_below_the_floor_pauses_for_the_floor() -> None:
    """A 429 with Retry-After: 0 still pauses the budget for the retry policy's 1 s floor."""
    limiter = memory_limiter(1000.0)
    answers = iter([httpx.Response(429, headers={"Retry-After": "0"}), httpx.Response(204)])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/OAuth/Token":
            return httpx.Response(200, json={"access_token": "T", "expires_in": 1200})
        return next(answers)

    po = client(httpx.Client(transport=httpx.MockTransport(handler)), rate_limiter=limiter)
    with _http.testing():
        assert list(po.list("Customers")) == []
    assert 0.5 < limiter.budget.paused_for() <= 1.0


def test_a_stopped_limiter_ends_the_request_without_retrying_or_sending() -> None:
    """Once the stop is set, a request raises Stopped at once: nothing is sent, nothing retried."""
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"access_token": "T", "expires_in": 1200})

    stop = threading.Event()
    stop.set()
    po = client(
        httpx.Client(transport=httpx.MockTransport(handler)),
        rate_limiter=memory_limiter(10.0, stop=stop),
    )
    with pytest.raises(Stopped):
        po.get("Customers", "1")
    assert sent == []


def test_clients_with_one_subscription_key_share_one_budget() -> None:
    """Two clients for the same key (and none for another) pace through one budget."""
    clear_shared_limiters()
    a = PowerOfficeClient(settings())
    b = PowerOfficeClient(settings())
    c = PowerOfficeClient(settings(subscription_key="another-key"))
    try:
        assert a._limiter.budget is b._limiter.budget  # type: ignore[attr-defined]
        assert a._limiter.budget is not c._limiter.budget  # type: ignore[attr-defined]
        assert a._limiter.budget.rate == 10.0  # type: ignore[attr-defined]
    finally:
        for po in (a, b, c):
            po.close()
        clear_shared_limiters()


def test_next_page_link_saves_the_final_empty_request(sim: TestClient) -> None:
    """With X-Pagination, a listing of exactly two full pages makes two requests, not three."""
    sim.post("/_sandbox/seed", json={"departments": 10})
    po = PowerOfficeClient(settings(page_size=5), http=sim, rate_limiter=memory_limiter(1e3))
    assert len(list(po.list("Departments"))) == 10
    assert stats(sim)["GET /v2/Departments"] == 2


def test_update_without_changes_sends_no_patch(sim: TestClient) -> None:
    """An empty diff reads the record and writes nothing."""
    po = client(sim)
    dept = po.create("Departments", {"Code": "10", "Name": "Salg"}, idempotency_key="10")
    assert po.update("Departments", dept.id, {}).id == dept.id
    assert "PATCH /v2/Departments/{id}" not in stats(sim)


def test_code_is_the_idempotency_key_of_departments_and_projects(sim: TestClient) -> None:
    """Creating a department with a key other than its Code is refused before sending."""
    po = client(sim)
    with pytest.raises(ValueError, match="Code"):
        po.create("Departments", {"Code": "10", "Name": "Salg"}, idempotency_key="other")
    assert "POST /v2/Departments" not in stats(sim)


def test_long_idempotency_keys_fit_external_import_reference(sim: TestClient) -> None:
    """A key over 50 characters is stored as a stable digest and still finds the record."""
    po = client(sim)
    key = "tolken:default:customers:" + "x" * 60
    created = po.create("Customers", {"Name": "Lang AS"}, idempotency_key=key)
    assert len(created.data["ExternalImportReference"]) <= 50
    found = po.find_by_idempotency_key("Customers", key)
    assert found is not None
    assert found.id == created.id


def test_delete_accepts_200_and_204_and_a_404_after_a_lost_answer() -> None:
    """DELETE succeeds on 200 or 204; a retry that finds the record gone is success too."""
    answers = iter([200, 204, 503, 404])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/OAuth/Token":
            return httpx.Response(200, json={"access_token": "T", "expires_in": 1200})
        return httpx.Response(next(answers), json={"title": "t", "detail": "d"})

    po = client(httpx.Client(transport=httpx.MockTransport(handler)))
    with _http.testing():
        po.delete("Projects", "1")
        po.delete("Projects", "2")
        po.delete("Projects", "3")


def test_unreachable_host_is_fatal_after_bounded_retries() -> None:
    """Nothing listening: a few quick tries, then Unreachable naming PowerOffice."""
    po = PowerOfficeClient(
        settings("http://127.0.0.1:1", timeout_seconds=2),
        rate_limiter=memory_limiter(1e3),
        retry=RetryPolicy(attempts=2),
    )
    with _http.testing(), pytest.raises(Unreachable, match="PowerOffice"):
        list(po.list("Customers"))
    po.close()


def test_camel_case_answers_are_written_back_in_pascal_case() -> None:
    """Whatever casing arrives, the client writes PascalCase bodies and patch paths."""
    bodies: list[object] = []
    types: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/OAuth/Token":
            return httpx.Response(200, json={"access_token": "T", "expires_in": 1200})
        if request.content:
            bodies.append(json.loads(request.content))
            types.append(request.headers["Content-Type"])
        return httpx.Response(200, json={"id": 5, "name": "x", "mailAddress": {"city": "Oslo"}})

    po = client(httpx.Client(transport=httpx.MockTransport(handler)))
    record = po.update("Customers", "5", {"mailaddress.CITY": "Oslo"})
    assert record.data == {"Id": 5, "Name": "x", "MailAddress": {"City": "Oslo"}}
    po.create("Customers", {"name": "x", "mailAddress.zipCode": "1"}, idempotency_key="k")
    assert bodies == [
        [{"op": "replace", "path": "/MailAddress/City", "value": "Oslo"}],
        {"Name": "x", "MailAddress": {"ZipCode": "1"}, "ExternalImportReference": "k"},
    ]
    assert types == ["application/json-patch+json", "application/json"]


@pytest.mark.parametrize(
    ("data", "field"),
    [({"Name": "x", "MailAddress.Id": 3}, "Id"), ({"Name": "x", "Id": 3}, "Id")],
)
def test_create_refuses_fields_outside_the_post_dto_before_sending(
    data: dict[str, object], field: str
) -> None:
    """A create naming a read-only field, an address's too, is refused without a request."""
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(500)

    po = client(httpx.Client(transport=httpx.MockTransport(handler)))
    with pytest.raises(ValidationFailed) as info:
        po.create("Customers", data, idempotency_key="k")
    assert [e.field for e in info.value.field_errors] == [field]
    assert sent == []


def test_post_is_retried_when_the_token_request_failed_before_it() -> None:
    """A 503 from the token endpoint happens before the create is sent, so it is retried."""
    token_answers = iter([503, 200])
    posts = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal posts
        if request.url.path == "/OAuth/Token":
            status = next(token_answers)
            if status != 200:
                return httpx.Response(status, json={"statusCode": status, "message": "busy"})
            return httpx.Response(200, json={"access_token": "T", "expires_in": 1200})
        posts += 1
        return httpx.Response(201, json={"Id": 9, "Name": "Ny AS"})

    po = client(httpx.Client(transport=httpx.MockTransport(handler)))
    with _http.testing():
        record = po.create("Customers", {"Name": "Ny AS"}, idempotency_key="k-9")
    assert record.id == "9"
    assert posts == 1


def test_clients_sharing_a_key_stay_under_the_limit_together() -> None:
    """Two clients listing at once through the shared 10/s budget never get a 429 from a
    simulator enforcing 10/s, and are paced (not merely lucky)."""
    clear_shared_limiters()
    with TestClient(create_app(rate_limit_per_second=10.0)) as http:
        http.post("/_sandbox/seed", json={"departments": 7})
        clients = [
            PowerOfficeClient(
                settings(page_size=1), http=http, retry=RetryPolicy(attempts=1), read_ahead=False
            )
            for _ in range(2)
        ]
        errors: list[Exception] = []

        def work(po: PowerOfficeClient) -> None:
            try:
                assert len(list(po.list("Departments"))) == 7
            except Exception as exc:  # noqa: BLE001 - a thread's error, for the assertion below
                errors.append(exc)

        started = time.monotonic()
        threads = [threading.Thread(target=work, args=(po,)) for po in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
    clear_shared_limiters()
    assert errors == []
    # 2 tokens + 2 x 7 pages = 16 requests at 10/s, one every 0.1 s: at least 1.5 s.
    assert elapsed >= 1.45


def test_a_server_that_ignores_the_page_number_ends_with_a_clear_error() -> None:
    """PowerOffice answering every page with the same full page: Fatal naming the request."""
    pages = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal pages
        if request.url.path == "/OAuth/Token":
            return httpx.Response(200, json={"access_token": "T", "expires_in": 1200})
        pages += 1
        return httpx.Response(200, json=[{"Id": 1, "Name": "A"}, {"Id": 2, "Name": "B"}])

    http = httpx.Client(transport=httpx.MockTransport(handler))
    po = PowerOfficeClient(
        settings(page_size=2), http=http, rate_limiter=memory_limiter(1000.0), read_ahead=False
    )
    with pytest.raises(
        Fatal, match="PowerOffice listing GET /v2/Customers sent page 2 with the same"
    ):
        list(po.list("Customers"))
    assert pages == 2


def test_a_stop_ends_a_listing_between_pages() -> None:
    """A stop request while PowerOffice pages through a listing ends it before the next page."""
    stop = threading.Event()
    pages = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal pages
        if request.url.path == "/OAuth/Token":
            return httpx.Response(200, json={"access_token": "T", "expires_in": 1200})
        pages += 1
        if pages == 3:
            stop.set()
        ids = [pages * 2, pages * 2 + 1]
        return httpx.Response(200, json=[{"Id": i, "Name": "A"} for i in ids])

    http = httpx.Client(transport=httpx.MockTransport(handler))
    po = PowerOfficeClient(
        settings(page_size=2), http=http, rate_limiter=memory_limiter(1000.0), stop=stop
    )
    with pytest.raises(Stopped):
        list(po.list("Customers"))
    assert pages <= 4


def test_server_time_is_poweroffice_s_clock_from_its_date_header(sim: TestClient) -> None:
    """The connector tells the engine PowerOffice's own time (its Date header), never ahead."""
    po = client(sim)
    assert po.server_time() is None
    before = datetime.now(UTC).replace(microsecond=0)
    list(po.list("Customers"))
    said = po.server_time()
    assert said is not None
    assert before <= said <= datetime.now(UTC)
    assert len(sim.get("/v2/Customers").headers.get_list("Date")) == 1


def test_server_time_takes_the_earliest_of_repeated_date_headers() -> None:
    """Two Date headers (a proxy adding its own): the earlier, so the clock is never overstated."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/Token"):
            return httpx.Response(200, json={"access_token": "t", "expires_in": 1200})
        dates = [
            ("Date", "Fri, 04 Dec 2026 18:00:05 GMT"),
            ("Date", "Fri, 04 Dec 2026 18:00:01 GMT"),
        ]
        return httpx.Response(204, headers=dates)

    po = client(httpx.Client(transport=httpx.MockTransport(handler), base_url="http://testserver"))
    list(po.list("Customers"))
    assert po.server_time() == datetime(2026, 12, 4, 18, 0, 1, tzinfo=UTC)
