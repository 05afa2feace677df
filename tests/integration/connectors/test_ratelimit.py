"""The PostgreSQL request budget: one budget and one pause per key for every process on a database.

The last tests run three real processes, each a ``PowerOfficeClient`` with its
own ``postgres_limiter`` on one database, against the PowerOffice simulator
enforcing its 10 requests/second over real loopback HTTP. This file is also
the child program (``python test_ratelimit.py child …``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.postgres

LIMIT = 10.0
MEASURE_SECONDS = 5.0  # all three processes hammering, nobody paused
PAUSE_SECONDS = 2.0  # the Retry-After injected into one process's answers
TAIL_SECONDS = 1.0  # after the pause, to see the requests resume


def test_limiters_on_one_database_share_one_budget(postgres_url: str) -> None:
    """Two limiters for one key (as two processes would have) are paced as one: 12 requests
    at 20/s between them take at least 0.55 s."""
    from tolken.connectors.ratelimit import postgres_limiter

    limiters = [postgres_limiter(postgres_url, "key-1", 20.0) for _ in range(2)]
    try:

        def work(n: int) -> None:
            for _ in range(6):
                limiters[n].acquire()

        started = time.monotonic()
        threads = [threading.Thread(target=work, args=(n,)) for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert time.monotonic() - started >= 0.55
    finally:
        for limiter in limiters:
            limiter.close()


def test_a_pause_reaches_every_limiter_of_the_key_on_the_database(postgres_url: str) -> None:
    """A 429 one limiter saw makes another limiter of the key wait; another key goes on."""
    from tolken.connectors.ratelimit import postgres_limiter

    seen_429 = postgres_limiter(postgres_url, "key-1", 1000.0)
    other = postgres_limiter(postgres_url, "key-1", 1000.0)
    unrelated = postgres_limiter(postgres_url, "key-2", 1000.0)
    try:
        seen_429.pause(0.5)
        started = time.monotonic()
        unrelated.acquire()
        assert time.monotonic() - started < 0.2
        other.acquire()
        assert 0.45 <= time.monotonic() - started < 1.0
    finally:
        for limiter in (seen_429, other, unrelated):
            limiter.close()


def test_stop_ends_a_wait_on_the_database(postgres_url: str) -> None:
    """A stop during a 30 s shared pause raises Stopped within a second."""
    from tolken.connectors.ratelimit import postgres_limiter
    from tolken.errors import Stopped

    stop = threading.Event()
    limiter = postgres_limiter(postgres_url, "key-1", 10.0, stop=stop)
    try:
        limiter.pause(30.0)
        threading.Timer(0.2, stop.set).start()
        started = time.monotonic()
        with pytest.raises(Stopped):
            limiter.acquire()
        assert time.monotonic() - started < 1.0
    finally:
        limiter.close()


def test_an_urgent_limiter_gets_through_while_the_others_fill_their_lane(
    postgres_url: str,
) -> None:
    """Twelve threads on three limiters of one key (three workers) keep its 10 req/s busy;
    an urgent limiter's 8 requests, one after another, each get through within 1 s (without
    the reserve this took ~10 s, single waits up to 4 s). The others use more than their lane
    while nothing is urgent, keep to ``rate - reserve`` while it is, and together never
    exceed the key's rate."""
    from tolken.connectors.ratelimit import BudgetLimiter, postgres_limiter
    from tolken.errors import Stopped

    stop = threading.Event()
    workers = [
        postgres_limiter(postgres_url, "key-1", LIMIT, reserve=3.0, stop=stop, max_connections=6)
        for _ in range(3)
    ]
    urgent = BudgetLimiter(workers[0].budget, stop=stop, urgent=True)
    others: list[float] = []
    lock = threading.Lock()

    def saturate(limiter: BudgetLimiter) -> None:
        try:
            while True:
                limiter.acquire()
                with lock:
                    others.append(time.monotonic())
        except Stopped:
            return

    threads = [threading.Thread(target=saturate, args=(workers[n % 3],)) for n in range(12)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(2.0)
        waits, sent = [], []
        for _ in range(8):
            started = time.monotonic()
            urgent.acquire()
            sent.append(time.monotonic())
            waits.append(sent[-1] - started)
            time.sleep(0.05)  # the job's own work between two requests
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        for limiter in workers:
            limiter.close()

    assert max(waits) < 1.0, [round(w, 2) for w in waits]
    begin, end = sent[0] - waits[0], sent[-1]

    def others_between(a: float, b: float) -> int:
        return sum(1 for t in others if a <= t < b)

    assert others_between(begin - 1.5, begin) >= 8  # the whole rate, not the lane's 7/s
    assert others_between(begin, end) <= 7 * (end - begin) + 2
    every = sorted(others + sent)
    busiest = max(sum(1 for t in every if s <= t < s + 1.0) for s in every)
    assert busiest <= LIMIT + 1  # +1: the stamps are taken after the slot, not at it


def test_the_database_holds_neither_the_key_nor_every_past_request(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The subscription key is stored only as a digest, and requests that left the window
    are deleted, so the budget's table does not grow with every request ever sent."""
    import psycopg

    from tolken.connectors import ratelimit
    from tolken.connectors.ratelimit import libpq_url, postgres_limiter

    monkeypatch.setattr(ratelimit, "LEAK_EVERY_SECONDS", 0.0)
    secret = "subscription-key-0451-secret"
    limiter = postgres_limiter(postgres_url, secret, 200.0)
    try:
        for _ in range(30):
            limiter.acquire()
        limiter.pause(1.0)
    finally:
        limiter.close()
    with psycopg.connect(libpq_url(postgres_url)) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema()"
            )
        ]
        budget_tables = [t for t in tables if t.startswith("ratelimit___")]
        assert len(budget_tables) == 1
        kept = conn.execute(f'SELECT count(*) FROM "{budget_tables[0]}"').fetchone()
        pauses = conn.execute("SELECT budget FROM tolken_rate_pauses").fetchall()
    assert kept is not None
    assert kept[0] <= 3
    assert len(pauses) == 1
    assert secret not in json.dumps([tables, pauses])


def test_a_lost_database_connection_is_replaced(postgres_url: str) -> None:
    """PostgreSQL dropping the limiter's connection fails the call that meets it as a retriable
    transport error (never a raw database error); the next request gets a fresh one and goes."""
    import psycopg

    from tolken.connectors.ratelimit import APPLICATION_NAME, libpq_url, postgres_limiter
    from tolken.errors import TransportError

    limiter = postgres_limiter(postgres_url, "key-1", 1000.0, max_connections=1)
    try:
        limiter.acquire()
        with psycopg.connect(libpq_url(postgres_url), autocommit=True) as admin:
            ended = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s AND datname = current_database()",
                (APPLICATION_NAME,),
            ).fetchall()
        assert ended == [(True,)]
        with pytest.raises(TransportError, match="rate-limit budget"):
            limiter.pause(1.0)
        limiter.acquire()
    finally:
        limiter.close()


# -- three processes against the simulator ---------------------------------------


@pytest.fixture
def limited_simulator() -> Iterator[str]:
    """The PowerOffice simulator over loopback, enforcing 10 requests/s per subscription key."""
    from loopback import serve
    from tolken.sandbox.poweroffice import create_app

    with serve(create_app(rate_limit_per_second=LIMIT)) as url:
        httpx.post(f"{url}/_sandbox/seed", json={"departments": 1}).raise_for_status()
        yield url


def run_three_processes(po_url: str, pg_url: str) -> tuple[float, list[dict[str, Any]]]:
    """Start three processes, release them together, return the start and what each saw."""
    children = [
        subprocess.Popen(
            [sys.executable, __file__, "child", po_url, pg_url, str(n == 0)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    try:
        for child in children:  # each has its token and its limiter
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
        start = time.time() + 0.2
        for child in children:
            assert child.stdin is not None
            child.stdin.write(f"{start}\n")
            child.stdin.flush()
        seen = []
        for child in children:
            out, err = child.communicate(timeout=60)
            assert child.returncode == 0, err
            seen.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for child in children:
            child.kill()
    return start, seen


def test_three_processes_share_one_budget_and_one_pause(
    limited_simulator: str, postgres_url: str
) -> None:
    """Three processes on one key send ≥ 90 % of 10 requests/s together, < 1 % answered 429;
    after one of them is answered 429 with Retry-After: 2, none sends for 2 s, then all go on."""
    start, children = run_three_processes(limited_simulator, postgres_url)

    sent = sorted(t for child in children for t, _ in child["sent"])
    in_window = [t for t in sent if start <= t < start + MEASURE_SECONDS]
    assert len(in_window) / MEASURE_SECONDS >= 0.9 * LIMIT
    statuses = [status for child in children for _, status in child["sent"]]
    assert statuses.count(429) < 0.01 * len(statuses)
    # What the processes sent (and their three token requests) is all the simulator saw.
    stats = httpx.get(f"{limited_simulator}/_sandbox/stats").json()
    assert sum(stats["requests"].values()) == len(sent) + len(children)

    refused = children[0]["injected_at"]
    assert refused is not None
    assert [t for t in sent if refused + 0.05 < t < refused + PAUSE_SECONDS - 0.1] == []
    for child in children:
        assert any(t >= refused + PAUSE_SECONDS for t, _ in child["sent"])


# -- the child process ---------------------------------------------------------------


class _RecordingTransport(httpx.BaseTransport):
    """Records when each API request went and its status; answers one of them 429 itself
    (as PowerOffice's gateway would) once ``refuse_after`` has passed."""

    def __init__(self, refuse_after: float | None) -> None:
        self.inner = httpx.HTTPTransport()
        self.refuse_after = refuse_after
        self.sent: list[tuple[float, int]] = []
        self.injected_at: float | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        now = time.time()
        if "/OAuth/" in request.url.path:
            return self.inner.handle_request(request)
        if self.refuse_after is not None and self.injected_at is None and now >= self.refuse_after:
            self.injected_at = now
            return httpx.Response(
                429,
                headers={"Retry-After": str(int(PAUSE_SECONDS))},
                json={"statusCode": 429, "message": "Rate limit is exceeded."},
                request=request,
            )
        response = self.inner.handle_request(request)
        self.sent.append((now, response.status_code))
        return response

    def close(self) -> None:
        self.inner.close()


def _child(po_url: str, pg_url: str, refuses: bool) -> int:
    from tolken.config import PowerOfficeSettings
    from tolken.connectors.poweroffice import PowerOfficeClient
    from tolken.connectors.ratelimit import postgres_limiter
    from tolken.sandbox import credentials

    settings = PowerOfficeSettings.model_validate(
        {
            "base_url": f"{po_url}/v2",
            "token_url": f"{po_url}/OAuth/Token",
            "application_key": credentials.APPLICATION_KEY,
            "client_key": credentials.CLIENT_KEY,
            "subscription_key": credentials.SUBSCRIPTION_KEY,
        }
    )
    limiter = postgres_limiter(pg_url, credentials.SUBSCRIPTION_KEY, LIMIT)
    transport = _RecordingTransport(None)
    try:
        with (
            httpx.Client(transport=transport, timeout=30) as http,
            PowerOfficeClient(settings, http=http, rate_limiter=limiter) as po,
        ):
            po.tokens.get()
            print("ready", flush=True)
            start = float(sys.stdin.readline())
            if refuses:
                transport.refuse_after = start + MEASURE_SECONDS
            time.sleep(max(0.0, start - time.time()))
            end = start + MEASURE_SECONDS + PAUSE_SECONDS + TAIL_SECONDS
            while time.time() < end:
                list(po.list("Departments"))
    finally:
        limiter.close()
    print(json.dumps({"sent": transport.sent, "injected_at": transport.injected_at}))
    return 0


if __name__ == "__main__" and sys.argv[1:2] == ["child"]:
    sys.exit(_child(sys.argv[2], sys.argv[3], sys.argv[4] == "True"))
