"""Cache-hit latency of the stores, and the SQLite threading choice it rests on.

    python bench/store_hits.py [--hits 5000] [--postgres postgresql://...]

A hit is ``get_payload(key)`` for one present 200-byte row (the three columns a
cache hit reads), beside ``get_results([key])`` (the whole row). For SQLite it
also times the same query sent through a worker thread (``run_in_executor``),
the alternative that docket_runtime/stores/sqlite.py rejected for reads, and a
write (``put_result``, which does go through the writer thread). Postgres is
measured when ``--postgres`` (or ``$DOCKET_BENCH_POSTGRES_URL``) is given; the
tables go into a temporary schema that is dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from docket_runtime.stores import Store, StoredResult, open_store
from docket_runtime.stores.sqlite import SqliteStore


def row(key: str) -> StoredResult:
    return StoredResult(
        key=key,
        scope="global",
        execution_id=None,
        step="bench.Step",
        version="",
        output_type="bench.Out",
        output=os.urandom(200),
        output_json='{"id": "x"}',
        created_at=datetime.now(UTC),
    )


async def timed(n: int, call: Callable[[int], Awaitable[Any]]) -> tuple[float, float]:
    """Median and p99 of ``n`` calls, in microseconds (after 200 warm-up calls)."""
    for i in range(200):
        await call(i)
    times: list[float] = []
    for i in range(n):
        start = time.perf_counter()
        await call(i)
        times.append(time.perf_counter() - start)
    times.sort()
    return statistics.median(times) * 1e6, times[int(n * 0.99)] * 1e6


async def measure(label: str, store: Store, n: int) -> None:
    keys = [uuid.uuid4().hex * 2 for _ in range(100)]
    for key in keys:
        await store.put_result(row(key))
    med, p99 = await timed(n, lambda i: store.get_payload(keys[i % 100]))
    print(f"{label:8} hit, get_payload(key)           median {med:8.1f} us   p99 {p99:8.1f} us")
    med, p99 = await timed(n, lambda i: store.get_results([keys[i % 100]]))
    print(f"{label:8} whole row, get_results([key])  median {med:8.1f} us   p99 {p99:8.1f} us")
    med, p99 = await timed(n, lambda i: store.get_results(keys[:10]))
    print(f"{label:8} batch of 10, get_results(keys) median {med:8.1f} us   p99 {p99:8.1f} us")
    med, p99 = await timed(n // 5, lambda i: store.put_result(row(f"w{i:063d}")))
    print(f"{label:8} put_result                      median {med:8.1f} us   p99 {p99:8.1f} us")
    if isinstance(store, SqliteStore):
        loop = asyncio.get_running_loop()
        sqlite_store = store

        def hit_in_thread(i: int) -> Awaitable[Any]:
            key = keys[i % 100]
            return loop.run_in_executor(
                None,
                lambda: sqlite_store._reader.execute(
                    "SELECT * FROM docket_results WHERE key IN (?)", (key,)
                ).fetchall(),
            )

        med, p99 = await timed(n, hit_in_thread)
        print(f"{label:8} hit via a worker thread         median {med:8.1f} us   p99 {p99:8.1f} us")


async def main(hits: int, postgres: str | None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        async with await open_store(f"sqlite:///{Path(folder) / 'bench.db'}", migrate=True) as s:
            await measure("sqlite", s, hits)
    async with await open_store("memory://") as m:
        await measure("memory", m, hits)
    if postgres:
        import psycopg

        schema = f"docket_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(postgres, autocommit=True) as admin:
            admin.execute(f"CREATE SCHEMA {schema}".encode())
            try:
                sep = "&" if "?" in postgres else "?"
                url = f"{postgres}{sep}options=-csearch_path%3D{schema}"
                async with await open_store(url, migrate=True) as p:
                    await measure("postgres", p, hits)
            finally:
                admin.execute(f"DROP SCHEMA {schema} CASCADE".encode())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hits", type=int, default=5000)
    parser.add_argument("--postgres", default=os.environ.get("DOCKET_BENCH_POSTGRES_URL"))
    args = parser.parse_args()
    asyncio.run(main(args.hits, args.postgres))
