"""Durable executions: Docket on Procrastinate against DBOS, and against Procrastinate alone.

    python bench/durable.py [--executions 500] [--concurrency 8] [--postgres URL]
                            [--quick] [--only dbos|queue]

``--quick`` runs smaller sizes (under a minute); ``--only`` runs one part.
The queue rows (Docket's queue against Procrastinate no-op jobs: throughput,
latency, retry lateness) are described in bench/durable_queue.py.

The work: a workflow of three trivial steps in a chain (A = seed + 1, B = A * 2,
C = B - 3), every step's result persisted, the execution's status recorded.
Each system runs it two ways, in a process of its own, one after the other:

- **direct**: the workflow called in process, one execution after another
  (Docket: ``graph.run_target(..., execution_id=...)`` bound to a Postgres
  store with ``record=True``; DBOS: the ``@DBOS.workflow`` under
  ``SetWorkflowID``);
- **queued**: one worker process takes executions from a Postgres queue.
  The executions are enqueued one by one while the worker runs, and the
  clock runs from the first enqueue to the last execution done (Docket:
  :func:`docket_runtime.durable.enqueue` and ``run_worker``; DBOS: a
  database-backed queue and ``DBOS.enqueue_workflow_async``, its polling
  interval lowered to 0.05 s: its default, 1 s, would cap it at
  ``concurrency`` executions per second). Both workers run ``--concurrency``
  executions at a time.

Docket's tables and Procrastinate's go into a temporary schema; DBOS's
system tables into another (``dbos_system_schema``); both are dropped at the
end. DBOS is optional (``pip install -e . --group bench`` from the repository
root); without it the script says so and reports Docket alone. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import durable_queue
import psycopg

DEFAULT_URL = os.environ.get(
    "DOCKET_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
WARMUP = 30


def with_search_path(url: str, schema: str) -> str:
    """``url`` whose connections put ``schema`` first in the search_path."""
    parts = urlsplit(url)
    extra = f"options={quote(f'-csearch_path={schema}', safe='')}"
    return urlunsplit(parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra))


class Counter:
    """Counts finished executions with one query on a connection it keeps open."""

    def __init__(self, url: str, query: str) -> None:
        self.url, self.query = url, query
        self.conn: psycopg.AsyncConnection[Any] | None = None

    async def __call__(self) -> int:
        if self.conn is None:
            self.conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
        cur = await self.conn.execute(self.query.encode())
        row = await cur.fetchone()
        return 0 if row is None else int(row[0])

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()


async def timed_queue(
    n: int,
    enqueue_one: Callable[[int], Awaitable[Any]],
    done: Callable[[], Awaitable[int]],
    already: int,
) -> float:
    """Seconds from the first enqueue until ``done()`` reports ``n`` more executions done."""
    started = time.perf_counter()
    for i in range(n):
        await enqueue_one(i)
    while await done() < already + n:
        await asyncio.sleep(0.005)
    return time.perf_counter() - started


# -- Docket -------------------------------------------------------------------------------


async def docket_part(url: str, n: int, concurrency: int) -> dict[str, float]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import procrastinate
    from generated import generate

    from docket_runtime.durable import (
        Registry,
        apply_queue_schema,
        enqueue,
        install,
        run_worker,
    )
    from docket_runtime.stores import open_store

    pb, dk = generate(Path(tempfile.mkdtemp(prefix="docket-bench-")), "durable")

    class Steps:
        async def step_a(self, seed: Any, /) -> Any:
            return pb.DurA(value=seed.value + 1)

        async def step_b(self, a: Any, /) -> Any:
            return pb.DurB(value=a.value * 2)

        async def step_c(self, b: Any, /) -> Any:
            return pb.DurC(value=b.value - 3)

    store = await open_store(url, migrate=True)
    await apply_queue_schema(url)
    registry = Registry(store)
    graph = registry.bind(dk.DurableChain, Steps())
    results: dict[str, float] = {}

    # direct
    for i in range(WARMUP):
        await graph.run_target(pb.DurC, {"dur_seed": pb.DurSeed(value=i)}, execution_id=f"w{i}")
    started = time.perf_counter()
    for i in range(n):
        out = await graph.run_target(
            pb.DurC, {"dur_seed": pb.DurSeed(value=i)}, execution_id=f"d{i}"
        )
    results["direct"] = n / (time.perf_counter() - started)
    assert out.value == (n - 1 + 1) * 2 - 3

    # queued
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=url, max_size=concurrency + 4)
    )
    install(app, registry)
    done = Counter(
        url,
        "SELECT count(*) FROM docket_executions WHERE status = 'succeeded' "
        "AND execution_id LIKE 'q%'",
    )

    async def enqueue_one(prefix: str, i: int) -> Any:
        seed = {"dur_seed": pb.DurSeed(value=i)}
        return await enqueue(app, graph, pb.DurC, seed, execution_id=f"{prefix}{i}")

    async with app.open_async():
        worker = asyncio.create_task(
            run_worker(app, registry, concurrency=concurrency, install_signal_handlers=False)
        )
        await timed_queue(WARMUP, lambda i: enqueue_one("qw", i), done, 0)
        seconds = await timed_queue(n, lambda i: enqueue_one("q", i), done, WARMUP)
        await done.close()
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    results["queued"] = n / seconds
    await store.close()
    return results


# -- DBOS ---------------------------------------------------------------------------------


async def dbos_part(url: str, schema: str, n: int, concurrency: int) -> dict[str, float]:
    # Imported by name: the bench extra is optional, and mypy must not need it.
    dbos: Any = importlib.import_module("dbos")
    DBOS, SetWorkflowID = dbos.DBOS, dbos.SetWorkflowID
    DBOS(
        config={
            "name": "docket-bench",
            "system_database_url": url,
            "dbos_system_schema": schema,
            "log_level": "WARNING",
        }
    )

    async def plus_one(x: int) -> int:
        return x + 1

    async def double(x: int) -> int:
        return x * 2

    async def minus_three(x: int) -> int:
        return x - 3

    step_a, step_b, step_c = (DBOS.step()(f) for f in (plus_one, double, minus_three))

    async def three_steps(seed: int) -> int:
        return int(await step_c(await step_b(await step_a(seed))))

    chain = DBOS.workflow()(three_steps)

    DBOS.launch()
    results: dict[str, float] = {}
    try:
        for i in range(WARMUP):
            with SetWorkflowID(f"w{i}"):
                await chain(i)
        started = time.perf_counter()
        for i in range(n):
            with SetWorkflowID(f"d{i}"):
                out = await chain(i)
        results["direct"] = n / (time.perf_counter() - started)
        assert out == (n - 1 + 1) * 2 - 3

        await DBOS.register_queue_async(
            "bench", worker_concurrency=concurrency, polling_interval_sec=0.05
        )
        done = Counter(
            url,
            f'SELECT count(*) FROM "{schema}".workflow_status '
            "WHERE status = 'SUCCESS' AND queue_name = 'bench'",
        )

        async def enqueue_one(i: int) -> Any:
            return await DBOS.enqueue_workflow_async("bench", chain, i)

        await timed_queue(WARMUP, enqueue_one, done, 0)
        seconds = await timed_queue(n, enqueue_one, done, WARMUP)
        await done.close()
        results["queued"] = n / seconds
    finally:
        DBOS.destroy()
    return results


# -- the driver -----------------------------------------------------------------------------


def run_part(args: list[str]) -> dict[str, float] | str:
    """Run one part in a subprocess; its last output line is JSON (or an error message)."""
    done = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return f"failed ({done.returncode}): {done.stderr.strip()[-800:]}"
    result: dict[str, float] | str = json.loads(lines[-1])
    return result


def queue_part(url: str, sizes: durable_queue.Sizes) -> None:
    """The queue rows, in a schema of their own (dropped afterwards)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from generated import generate

    gen_dir = Path(tempfile.mkdtemp(prefix="docket-bench-"))
    generate(gen_dir, "queue")
    schema = f"docket_bench_q_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"'.encode())
        try:
            asyncio.run(
                durable_queue.queue_rows(
                    with_search_path(url, schema), gen_dir, Path(__file__).resolve(), sizes
                )
            )
        finally:
            admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'.encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--executions", type=int)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--postgres", default=DEFAULT_URL)
    parser.add_argument("--quick", action="store_true", help="smaller sizes: under a minute")
    parser.add_argument("--only", choices=["dbos", "queue"], help="run one part only")
    parser.add_argument(
        "--part", choices=["docket", "dbos", "queue-worker"], help=argparse.SUPPRESS
    )
    parser.add_argument("--schema", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args()
    c = args.concurrency
    n = args.executions or (200 if args.quick else 500)

    if args.part == "queue-worker":
        durable_queue.worker_main(json.loads(args.config))
        return
    if args.part == "docket":
        print(json.dumps(asyncio.run(docket_part(args.postgres, n, c))))
        return
    if args.part == "dbos":
        print(json.dumps(asyncio.run(dbos_part(args.postgres, args.schema, n, c))))
        return
    if args.only != "queue":
        dbos_comparison(args.postgres, n, c)
    if args.only != "dbos":
        sizes = durable_queue.Sizes.of(args.quick, args.executions or 1000)
        queue_part(args.postgres, sizes)


def dbos_comparison(url: str, n: int, c: int) -> None:
    """Docket against DBOS, each in a process of its own, direct and queued."""
    try:
        has_dbos = importlib.util.find_spec("dbos") is not None
    except (ImportError, ValueError):  # ValueError: hidden with sys.modules["dbos"] = None
        has_dbos = False
    tag = uuid.uuid4().hex[:8]
    docket_schema, dbos_schema = f"docket_bench_{tag}", f"dbos_bench_{tag}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{docket_schema}"'.encode())
        try:
            common = ["--executions", str(n), "--concurrency", str(c)]
            docket_url = with_search_path(url, docket_schema)
            docket = run_part(["--part", "docket", "--postgres", docket_url, *common])
            if has_dbos:
                other = run_part(
                    [
                        "--part",
                        "dbos",
                        "--postgres",
                        url,
                        "--schema",
                        dbos_schema,
                        *common,
                    ]
                )
            else:
                other = "not installed: pip install -e . --group bench (or pip install dbos)"
        finally:
            for schema in (docket_schema, dbos_schema):
                admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'.encode())

    print(
        f"Python {platform.python_version()}, {n} executions of 3 persisted steps, "
        f"concurrency {c} in the queued runs; executions per second"
    )
    if isinstance(docket, str):
        sys.exit(f"Docket: {docket}")
    print(f"{'':<38}{'docket':>10}{'dbos':>10}{'ratio':>9}")
    for mode, label in (
        ("direct", "direct  (in process, one after another)"),
        ("queued", "queued  (enqueue -> one worker -> done)"),
    ):
        mine = docket[mode]
        if isinstance(other, str):
            print(f"{label:<38}{mine:>10.0f}{'-':>10}{'-':>9}")
        else:
            theirs = other[mode]
            print(f"{label:<38}{mine:>10.0f}{theirs:>10.0f}{mine / theirs:>8.2f}x")
    if isinstance(other, str):
        print(f"DBOS: {other}")


if __name__ == "__main__":
    main()
