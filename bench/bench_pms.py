"""Reference PMS throughput: creates/s and listed records/s over loopback, beside a bare app.

Both variants run in their own server process on the same uvicorn settings,
each round on a fresh SQLite file (WAL, synchronous=NORMAL on both), and get
the same requests from one keep-alive httpx client: ``CREATES`` POSTs of
realistic customer bodies, then ``LIST_PASSES`` full listings in pages of
``PAGE``. The bare app is a raw ASGI function that only parses the body, does
one INSERT (or one SELECT per page) and answers JSON, so the ratio shows what
the contract costs: validation, the monotonic clock, the changes feed,
idempotency bookkeeping, FastAPI routing and the sandbox middleware.

``python -m bench.bench_pms`` (also run by ``make bench``); the server side is
``python -m bench.bench_pms --serve pms|bare DATA_DIR``.
"""

from __future__ import annotations

import json
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import machine_description, now_utc, write_section

MODULE = "bench.bench_pms"
CREATES = 2000
LIST_PASSES = 20
PAGE = 500
ROUNDS = 5
BUDGET_SECONDS = 110
AUTH = {"Authorization": "Bearer sandbox-pms-key"}


def _bare_app(path: Path) -> Any:
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE customers (n INTEGER PRIMARY KEY, body TEXT NOT NULL)")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if scope["method"] == "POST":
            record = json.loads(body)
            n = conn.execute("INSERT INTO customers (body) VALUES (?)", (body.decode(),)).lastrowid
            record["id"] = str(n)
            status, out = 201, json.dumps(record).encode()
        else:
            query = dict(p.split("=", 1) for p in scope["query_string"].decode().split("&") if p)
            after, limit = int(query.get("cursor", "0")), int(query.get("limit", "100"))
            rows = conn.execute(
                "SELECT n, body FROM customers WHERE n > ? ORDER BY n LIMIT ?", (after, limit + 1)
            ).fetchall()
            items = ",".join(body for _, body in rows[:limit])
            cursor = f'"{rows[limit - 1][0]}"' if len(rows) > limit else "null"
            status, out = 200, f'{{"items":[{items}],"next_cursor":{cursor}}}'.encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": out})

    return app


def _serve(variant: str, data_dir: Path) -> None:
    import uvicorn

    from tolken.sandbox.pms import create_app

    app = create_app(data_dir) if variant == "pms" else _bare_app(data_dir / "bare.sqlite3")
    # IPPROTO_TCP so asyncio sets TCP_NODELAY on connections (see tolken.sandbox.runner).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


def _bodies() -> list[dict[str, Any]]:
    from tolken.sandbox.pms.seed import company, person

    rng = random.Random(7)
    return [(company if i % 3 else person)(rng, 10000 + i) for i in range(CREATES)]


def _round(variant: str, bodies: list[dict[str, Any]]) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="tolken-bench-pms-") as data_dir:
        server = subprocess.Popen(
            [sys.executable, "-m", MODULE, "--serve", variant, data_dir],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            base = f"http://127.0.0.1:{server.stdout.readline().strip()}/api/v1/customers"
            with httpx.Client(headers=AUTH, timeout=30) as client:
                _wait(client, base)
                started = time.perf_counter()
                for body in bodies:
                    client.post(base, json=body).raise_for_status()
                create_seconds = time.perf_counter() - started
                started = time.perf_counter()
                listed = 0
                size = 0
                for _ in range(LIST_PASSES):
                    cursor = None
                    while True:
                        params: dict[str, Any] = {"limit": PAGE}
                        if cursor:
                            params["cursor"] = cursor
                        response = client.get(base, params=params)
                        size += len(response.content)
                        page = response.json()
                        listed += len(page["items"])
                        cursor = page["next_cursor"]
                        if cursor is None:
                            break
                list_seconds = time.perf_counter() - started
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(30)
            if server.stdout is not None:
                server.stdout.close()
    if listed != CREATES * LIST_PASSES:
        raise RuntimeError(f"{variant} listed {listed} records, expected {CREATES * LIST_PASSES}")
    return {
        "create": CREATES / create_seconds,
        "list": listed / list_seconds,
        "bytes": size / listed,
    }


def _wait(client: httpx.Client, base: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            client.get(base, params={"limit": 1})
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def main() -> int:
    """Run the benchmark, print the figures and record them in bench/RESULTS.md."""
    started = time.monotonic()
    bodies = _bodies()
    runs: dict[str, list[dict[str, float]]] = {"pms": [], "bare": []}
    for _ in range(ROUNDS):
        for variant in ("pms", "bare"):
            runs[variant].append(_round(variant, bodies))
        if time.monotonic() - started > BUDGET_SECONDS / 2:
            break  # a slow machine: keep the whole benchmark under two minutes
    med = {
        v: {k: statistics.median(r[k] for r in rs) for k in ("create", "list", "bytes")}
        for v, rs in runs.items()
    }
    elapsed = time.monotonic() - started
    rows = "\n".join(
        f"| {label} | {med[v]['create']:,.0f} | {med[v]['list']:,.0f} | {med[v]['bytes']:,.0f} |"
        for v, label in (("pms", "reference PMS (FastAPI)"), ("bare", "bare ASGI + sqlite3"))
    )
    section = f"""## Reference PMS: create and list throughput

- Machine: {machine_description()}
- Command: `make bench` (or `python -m bench.bench_pms`)
- Date: {now_utc()}; whole benchmark {elapsed:.0f} s, {len(runs["pms"])} rounds per variant
- Set-up: each variant in its own uvicorn process on loopback, a fresh SQLite
  file per round (WAL, synchronous=NORMAL); one keep-alive httpx client sends
  {CREATES:,} POSTs of seeded Norwegian customers, then lists them {LIST_PASSES} times
  in pages of {PAGE}. Medians over rounds, variants alternating.

| variant | creates/s | listed records/s | bytes/record listed |
|---|---:|---:|---:|
{rows}

- Ratio reference PMS / bare: creates **{med["pms"]["create"] / med["bare"]["create"]:.2f}**,
  lists **{med["pms"]["list"] / med["bare"]["list"]:.2f}**. The bare app stores the
  body as sent and pages by rowid; the PMS validates every field, takes a
  monotonic timestamp, writes the record, its changes-feed row and
  indexes in one transaction, and pages by (updated_at, id) through FastAPI
  and the sandbox middleware (fault injector, request counter, bearer auth).
  Its records carry every contract field (nulls, id, version, timestamps), so
  each listed record is larger, and the client spends longer decoding it.
- Absolute figures swing several-fold with the load of the shared machine
  between runs; compare the two rows of one run.
"""
    write_section("pms", section)
    print(section)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        _serve(sys.argv[2], Path(sys.argv[3]))
    else:
        sys.exit(main())
