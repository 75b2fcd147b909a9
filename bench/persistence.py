"""What keeping results costs: cache hits, and a diamond with every step checkpointed.

    python bench/persistence.py [--hits 2000] [--executions 300] [--rounds 3]
                                [--postgres URL | --no-postgres]

The code is generated from bench/protos with the real docket-gen into a temp
folder first (``persisted.proto``). Two measurements, each against the plain
in-memory run in the same process, in alternating rounds (median of rounds):

1. **Cache hit**: ``Cached`` is one trivial step with ``cache: {scope: GLOBAL}``.
   After one run has stored its result, every run with the same input is a
   hit: the input key (SHA-256 of step, version and input bytes), one
   ``get_results`` and a proto parse, and the step does not run. Compared with
   ``Uncached``, the same trivial step with no cache, computed every time.
2. **Diamond, every step persisted**: ``PersistedDiamond`` is bench/diamond.py's
   diamond (A; B and C at once; D) with ``cache: {scope: WORKFLOW}`` on each
   step. A *first run* of a new execution id reads the execution's
   checkpoints (one query, none found) and writes four; a *rerun* of a
   finished id reads them in one query and runs nothing. Compared with the
   plain ``Diamond`` run in memory.

Backends: the in-memory store, a SQLite file in a temp folder (default
``synchronous=full``: an fsync per commit; and ``synchronous=normal``), and
Postgres at ``--postgres`` (default ``$DOCKET_BENCH_POSTGRES_URL`` or the local
``test`` database) in a temporary schema that is dropped afterwards. See
bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import platform
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from generated import add_store_options, check_store_options, generate

from docket_runtime.stores import Store, open_store

Variant = Callable[[int], Awaitable[Any]]
"""Runs ``n`` executions one after another; returns the last result."""


class Steps:
    """Trivial steps for every graph of persisted.proto and diamond.proto."""

    def __init__(self, pb: Any, dpb: Any) -> None:
        self.pb, self.dpb = pb, dpb

    async def lookup(self, key: Any, /) -> Any:
        return self.pb.Found(value=key.value * 2)

    async def step_a(self, seed: Any, /) -> Any:
        return self.dpb.A(value=seed.value + 1)

    async def step_b(self, a: Any, /) -> Any:
        return self.dpb.B(value=a.value * 2)

    async def step_c(self, a: Any, /) -> Any:
        return self.dpb.C(value=a.value * 3)

    async def step_d(self, b: Any, c: Any, /) -> Any:
        return self.dpb.D(value=b.value + c.value)


async def per_execution(variant: Variant, n: int) -> float:
    """Microseconds per execution over ``n`` executions."""
    started = time.perf_counter()
    await variant(n)
    return (time.perf_counter() - started) / n * 1e6


async def compare(
    ours: Variant, base: Variant, n: int, base_n: int, rounds: int
) -> tuple[float, float]:
    """Median µs per execution of (``ours``, ``base``), rounds interleaved, after a warm-up."""
    if await ours(max(1, n // 10)) != await base(max(1, base_n // 10)):
        raise SystemExit("the persisted and the in-memory runs disagree")
    mine: list[float] = []
    theirs: list[float] = []
    for _ in range(rounds):
        mine.append(await per_execution(ours, n))
        theirs.append(await per_execution(base, base_n))
    return statistics.median(mine), statistics.median(theirs)


@asynccontextmanager
async def stores(folder: Path, postgres: str | None) -> AsyncIterator[list[tuple[str, Store]]]:
    """The stores to measure, migrated and empty; closed (and the schema dropped) after."""
    opened: list[tuple[str, Store]] = [
        ("memory", await open_store("memory://")),
        ("sqlite", await open_store(f"sqlite:///{folder / 'full.db'}", migrate=True)),
        (
            "sqlite (synchronous=normal)",
            await open_store(f"sqlite:///{folder / 'normal.db'}?synchronous=normal", migrate=True),
        ),
    ]
    admin = None
    schema = f"docket_bench_{uuid.uuid4().hex[:8]}"
    if postgres:
        import psycopg

        try:
            admin = psycopg.connect(postgres, autocommit=True, connect_timeout=3)
        except psycopg.Error as err:
            print(f"(Postgres skipped: {err})")
        else:
            admin.execute(f"CREATE SCHEMA {schema}".encode())
            sep = "&" if "?" in postgres else "?"
            url = f"{postgres}{sep}options=-csearch_path%3D{schema}"
            opened.append(("postgres", await open_store(url, migrate=True)))
    try:
        yield opened
    finally:
        for _, store in opened:
            await store.close()
        if admin is not None:
            admin.execute(f"DROP SCHEMA {schema} CASCADE".encode())
            admin.close()


async def main(hits: int, executions: int, rounds: int, postgres: str | None) -> None:
    with tempfile.TemporaryDirectory(prefix="docket-bench-") as tmp:
        pb, persisted = generate(Path(tmp) / "gen", "persisted")
        dpb, diamond = generate(Path(tmp) / "gen", "diamond")
        steps = Steps(pb, dpb)
        key, seed = pb.Key(value=21), dpb.Seed(value=1)
        print(
            f"Python {platform.python_version()}; median of {rounds} rounds, "
            "µs per execution; ratio = persisted / in memory without a store"
        )
        async with stores(Path(tmp), postgres) as measured:
            uncached = persisted.Uncached(steps)

            async def compute(n: int) -> Any:
                for _ in range(n):
                    found = await uncached.run(pb.Found, key=key)
                return found

            print(f"\n1. cache hit of a GLOBAL step ({hits} executions per round)")
            print(f"{'':32} {'hit':>9} {'computed':>9} {'ratio':>8}")
            for label, store in measured:
                cached = persisted.Cached(steps, store=store)
                await cached.run(pb.Found, key=key)  # stores the result: every later run hits

                async def hit(n: int, graph: Any = cached) -> Any:
                    for _ in range(n):
                        found = await graph.run(pb.Found, key=key)
                    return found

                ours, base = await compare(hit, compute, hits, hits, rounds)
                print(f"{label:32} {ours:9.1f} {base:9.2f} {ours / base:7.1f}x")

            plain = diamond.Diamond(steps)

            async def in_memory(n: int) -> Any:
                for _ in range(n):
                    d = await plain.run(dpb.D, seed=seed)
                return d

            print(
                f"\n2. diamond, every step WORKFLOW-persisted ({executions} executions per round)"
            )
            print(f"{'':32} {'1st run':>9} {'rerun':>9} {'memory':>9} {'1st':>8} {'rerun':>8}")
            ids = itertools.count()
            for label, store in measured:
                graph = persisted.PersistedDiamond(steps, store=store)
                done: list[str] = []

                async def first(n: int, graph: Any = graph, done: list[str] = done) -> Any:
                    for _ in range(n):
                        execution_id = f"bench-{next(ids)}"
                        d = await graph.run(dpb.D, seed=seed, execution_id=execution_id)
                        done.append(execution_id)
                    return d

                async def rerun(n: int, graph: Any = graph, done: list[str] = done) -> Any:
                    for i in range(n):
                        d = await graph.run(dpb.D, seed=seed, execution_id=done[i % len(done)])
                    return d

                base_n = executions * 10
                first_us, memory_us = await compare(first, in_memory, executions, base_n, rounds)
                rerun_us, memory_us2 = await compare(rerun, in_memory, executions, base_n, rounds)
                memory_us = statistics.median([memory_us, memory_us2])
                print(
                    f"{label:32} {first_us:9.1f} {rerun_us:9.1f} {memory_us:9.2f} "
                    f"{first_us / memory_us:7.1f}x {rerun_us / memory_us:7.1f}x"
                )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_store_options(parser, hits=2000, executions=300, rounds=3)
    args = parser.parse_args(argv)
    check_store_options(parser, args)
    return args


if __name__ == "__main__":
    options = parse_args()
    asyncio.run(main(options.hits, options.executions, options.rounds, options.postgres))
