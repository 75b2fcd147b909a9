"""Kept steps and cache hits against the database's own floor, each ratio from one run.

    python bench/store_floors.py [--quick] [--executions 300] [--hits 2000] [--rounds 5]
                                 [--postgres URL | --no-postgres] [--hits-only]

Three rows, each timed in alternating rounds against a baseline run in the
same process on the same database (median of the rounds):

1. **3 steps kept, Postgres**: ``DurableChain`` (bench/protos/benchgraphs/
   durable.proto: three steps in a chain, each ``cache: {scope: WORKFLOW}``)
   run in process with a new execution id each time, bound without and with
   ``record=True``. The baseline is what a hand-written program keeping the
   same facts would send: five autocommit statements on one synchronous
   psycopg connection (insert the execution's row, insert three results,
   mark the execution done), into the same tables. Ratio: executions per
   second of Docket / of the baseline (higher is better; 1.0x is parity).
2. **The same on SQLite**, ``synchronous=normal`` and ``full`` (WAL), against
   the same five statements on a plain ``sqlite3`` connection to another file
   at the same level.
3. **GLOBAL cache hit, whole ``run()``**: ``Cached`` (persisted.proto) after
   its result was stored, against a bare primary-key SELECT of one row:
   ``sqlite3`` on the event loop's thread, an async psycopg connection for
   Postgres. Ratio: µs per Docket hit / µs per bare SELECT (lower is better).

``--quick`` runs fewer executions and rounds (well under a minute); the
figures are noisier. Postgres tables go into a temporary schema that is
dropped afterwards. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import platform
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from generated import add_store_options, check_store_options, generate

from docket_runtime.stores import Store, open_store

Timed = Callable[[int], Awaitable[None]]
"""Runs ``n`` executions (or hits) one after another."""


class Chain:
    """The three trivial steps of ``DurableChain``."""

    def __init__(self, pb: Any) -> None:
        self.pb = pb

    async def step_a(self, seed: Any, /) -> Any:
        return self.pb.DurA(value=seed.value + 1)

    async def step_b(self, a: Any, /) -> Any:
        return self.pb.DurB(value=a.value * 2)

    async def step_c(self, b: Any, /) -> Any:
        return self.pb.DurC(value=b.value - 3)


class Lookup:
    """The one trivial step of ``Cached``."""

    def __init__(self, pb: Any) -> None:
        self.pb = pb

    async def lookup(self, key: Any, /) -> Any:
        return self.pb.Found(value=key.value * 2)


Times = tuple[float, float]
"""Seconds per call: wall clock, and this process's CPU."""


async def seconds(call: Timed, n: int) -> Times:
    started, cpu = time.perf_counter(), time.process_time()
    await call(n)
    return (time.perf_counter() - started) / n, (time.process_time() - cpu) / n


def median(times: list[Times]) -> Times:
    return statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)


async def compare(ours: Timed, base: Timed, n: int, rounds: int) -> tuple[Times, Times]:
    """Median times per call of (``ours``, ``base``): rounds alternate, after a warm-up."""
    await ours(max(1, n // 5))
    await base(max(1, n // 5))
    mine: list[Times] = []
    theirs: list[Times] = []
    for i in range(rounds):
        # Alternate which goes first, so that neither always follows the other's writes.
        if i % 2:
            theirs.append(await seconds(base, n))
            mine.append(await seconds(ours, n))
        else:
            mine.append(await seconds(ours, n))
            theirs.append(await seconds(base, n))
    return median(mine), median(theirs)


_RESULT_JSON = json.dumps({"value": 1})


def raw_rows(execution_id: str) -> Iterator[tuple[str, str]]:
    """(key, step) of the three results a hand-written program keeps for one execution."""
    for step in ("StepA", "StepB", "StepC"):
        yield f"raw/{execution_id}/{step}", step


def raw_statements(execute: Callable[[str, tuple[Any, ...]], object], ids: Iterator[int]) -> Timed:
    """The baseline of rows 1-2: five autocommit statements per execution (``?`` marks)."""

    async def run(n: int) -> None:
        for _ in range(n):
            eid = f"raw-{next(ids)}"
            now = datetime.now(UTC).isoformat(" ")
            execute(
                "INSERT INTO docket_executions (execution_id, graph, target, status, started_at) "
                "VALUES (?, 'raw', 'raw', 'running', ?)",
                (eid, now),
            )
            for key, step in raw_rows(eid):
                execute(
                    "INSERT INTO docket_results (key, scope, execution_id, step, version, "
                    "output_type, output, output_json, created_at) "
                    "VALUES (?, 'workflow', ?, ?, '', 'benchgraphs.DurA', ?, ?, ?)",
                    (key, eid, step, b"\x08\x02", _RESULT_JSON, now),
                )
            execute(
                "UPDATE docket_executions SET status = 'succeeded', finished_at = ? "
                "WHERE execution_id = ?",
                (now, eid),
            )

    return run


def docket_chain(graph: Any, pb: Any, ids: Iterator[int]) -> Timed:
    async def run(n: int) -> None:
        for _ in range(n):
            i = next(ids)
            out = await graph.run_target(
                pb.DurC, {"dur_seed": pb.DurSeed(value=i)}, execution_id=f"docket-{i}"
            )
            assert out.value == (i + 1) * 2 - 3

    return run


def docket_hits(graph: Any, pb: Any) -> Timed:
    key = pb.Key(value=21)

    async def run(n: int) -> None:
        for _ in range(n):
            await graph.run(pb.Found, key=key)

    return run


def header(title: str, ours: str, base: str) -> None:
    print(f"\n{title:42} {ours:>9} {base:>9} {'ratio':>8}   CPU µs per call: docket, base")


def row(label: str, ours: Times, base: Times, *, speed: bool) -> None:
    cpu = f"{ours[1] * 1e6:9.0f} {base[1] * 1e6:6.0f}"
    if speed:  # executions per second, Docket / baseline
        print(f"  {label:40} {1 / ours[0]:9.0f} {1 / base[0]:9.0f} {base[0] / ours[0]:8.2f}x {cpu}")
    else:  # µs per call, Docket / baseline
        ratio = ours[0] / base[0]
        print(f"  {label:40} {ours[0] * 1e6:9.1f} {base[0] * 1e6:9.1f} {ratio:8.2f}x {cpu}")


async def kept_rows(
    label: str, store: Store, raw: Timed, pb: Any, dk: Any, n: int, rounds: int
) -> None:
    ids = itertools.count()
    for record in (False, True):
        graph = dk.DurableChain(Chain(pb), store=store, record=record)
        ours, base = await compare(docket_chain(graph, pb, ids), raw, n, rounds)
        row(f"{label}{', record=True' if record else ''}", ours, base, speed=True)


@contextmanager
def postgres_schema(url: str | None) -> Iterator[str | None]:
    """A URL whose connections use a new schema (dropped after), or ``None`` without one."""
    if not url:
        yield None
        return
    import psycopg

    try:
        admin = psycopg.connect(url, autocommit=True, connect_timeout=3)
    except psycopg.Error as err:
        print(f"(Postgres skipped: {err})")
        yield None
        return
    schema = f"docket_bench_{uuid.uuid4().hex[:8]}"
    admin.execute(f"CREATE SCHEMA {schema}".encode())
    try:
        sep = "&" if "?" in url else "?"
        yield f"{url}{sep}options=-csearch_path%3D{schema}"
    finally:
        admin.execute(f"DROP SCHEMA {schema} CASCADE".encode())
        admin.close()


async def main(args: argparse.Namespace) -> None:
    n, hits, rounds = args.executions, args.hits, args.rounds
    with (
        tempfile.TemporaryDirectory(prefix="docket-bench-") as tmp,
        postgres_schema(args.postgres) as pg_url,
    ):
        folder = Path(tmp)
        pb, dk = generate(folder / "gen", "durable")
        ppb, pdk = generate(folder / "gen", "persisted")
        print(
            f"Python {platform.python_version()}; median of {rounds} alternating rounds; "
            f"{n} executions, {hits} hits per round"
        )
        if not args.hits_only:
            await kept_steps(folder, pg_url, pb, dk, n, rounds)
        header("3. GLOBAL cache hit, whole run()", "docket µs", "bare µs")
        await sqlite_hits(folder, ppb, pdk, hits, rounds)
        if pg_url is not None:
            await postgres_hits(pg_url, ppb, pdk, hits, rounds)


async def kept_steps(
    folder: Path, pg_url: str | None, pb: Any, dk: Any, n: int, rounds: int
) -> None:
    """Rows 1-2: three kept steps on Postgres, then on SQLite at both levels."""
    header("1-2. three WORKFLOW steps kept", "docket/s", "raw/s")
    if pg_url is not None:
        import psycopg

        store = await open_store(pg_url, migrate=True)
        with psycopg.connect(pg_url, autocommit=True) as pg_conn:
            # Converted once, as a program would write them: %s marks.
            converted: dict[str, bytes] = {}

            def execute(query: str, args: tuple[Any, ...]) -> object:
                sql = converted.get(query)
                if sql is None:
                    sql = converted[query] = query.replace("?", "%s").encode()
                return pg_conn.execute(sql, args)

            raw = raw_statements(execute, itertools.count())
            await kept_rows("postgres", store, raw, pb, dk, n, rounds)
        await store.close()
    for level in ("normal", "full"):
        url = f"sqlite:///{folder / f'{level}.db'}?synchronous={level}"
        store = await open_store(url, migrate=True)
        raw_path = folder / f"raw-{level}.db"
        await (await open_store(f"sqlite:///{raw_path}", migrate=True)).close()
        conn = sqlite3.connect(raw_path, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {level.upper()}")
        raw = raw_statements(conn.execute, itertools.count())
        await kept_rows(f"sqlite, synchronous={level}", store, raw, pb, dk, n, rounds)
        conn.close()
        await store.close()


async def stored_hit(store: Store, pb: Any, dk: Any) -> Timed:
    """The cached graph's hit, once its result is stored (the only global row)."""
    graph = dk.Cached(Lookup(pb), store=store)
    await graph.run(pb.Found, key=pb.Key(value=21))
    return docket_hits(graph, pb)


async def sqlite_hits(folder: Path, pb: Any, dk: Any, hits: int, rounds: int) -> None:
    path = folder / "hits.db"
    store = await open_store(f"sqlite:///{path}", migrate=True)
    ours = await stored_hit(store, pb, dk)
    conn = sqlite3.connect(path, isolation_level=None)
    (key,) = conn.execute("SELECT key FROM docket_results WHERE scope = 'global'").fetchone()

    async def bare(n: int) -> None:
        for _ in range(n):
            found = conn.execute("SELECT output FROM docket_results WHERE key = ?", (key,))
            assert found.fetchone() is not None

    mine, base = await compare(ours, bare, hits, rounds)
    row("sqlite (bare: sqlite3 SELECT)", mine, base, speed=False)
    conn.close()
    await store.close()


async def postgres_hits(url: str, pb: Any, dk: Any, hits: int, rounds: int) -> None:
    import psycopg

    store = await open_store(url, migrate=True)  # done by rows 1-2 unless --hits-only
    ours = await stored_hit(store, pb, dk)
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    cur = await conn.execute("SELECT key FROM docket_results WHERE scope = 'global'")
    (key,) = await cur.fetchone() or ("",)

    async def bare(n: int) -> None:
        for _ in range(n):
            cur = await conn.execute("SELECT output FROM docket_results WHERE key = %s", (key,))
            assert await cur.fetchone() is not None

    mine, base = await compare(ours, bare, hits // 4, rounds)
    row("postgres (bare: async psycopg SELECT)", mine, base, speed=False)
    await conn.close()
    await store.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer executions and rounds")
    parser.add_argument("--hits-only", action="store_true", help="row 3 alone")
    add_store_options(parser, hits=2000, executions=300, rounds=5)
    args = parser.parse_args(argv)
    if args.quick:
        args.executions, args.hits, args.rounds = 100, 1000, 3
    check_store_options(parser, args)
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
