"""Kill-to-resume latency: how long after a worker is SIGKILLed its execution goes on elsewhere.

    python bench/kill_resume.py [--kills 7] [--postgres URL] [--old-defaults]

Two worker processes run ``run_worker`` with its default crash-detection
settings (``heartbeat_interval``, ``stalled_timeout``, ``sweep_interval``).
Each round enqueues one execution of ``benchgraphs.DurableChain``, whose
first step, on its first attempt, writes a marker row and then waits forever;
the script SIGKILLs the worker holding it, starts a replacement, and times
from the kill to the step's second attempt starting in the other worker
(*resumed*) and to the execution recorded ``succeeded`` (*done*). It prints
each round and the median, minimum and maximum.

``--old-defaults`` measures again, in the same run, with the settings of the
previous release (heartbeat every 10 s, stalled after 30 s, sweep every
30 s; about 30 s a kill) and prints the ratio of the medians. Docket's and
Procrastinate's tables go into a temporary schema, dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from durable import DEFAULT_URL, with_search_path

OLD = {"heartbeat_interval": 10.0, "stalled_timeout": 30.0, "sweep_interval": 30.0}
MARKERS = "CREATE TABLE kill_markers (execution_id text, attempt int, pid int, at timestamptz)"


class Steps:
    """The chain's steps: StepA writes a marker row, and hangs on its first attempt."""

    def __init__(self, pb: Any, conn: Any) -> None:
        self.pb, self.conn = pb, conn

    async def step_a(self, seed: Any, /) -> Any:
        from docket_runtime import context

        ctx = context()
        await self.conn.execute(
            "INSERT INTO kill_markers VALUES (%s, %s, %s, clock_timestamp())",
            (ctx.execution_id, ctx.attempt, os.getpid()),
        )
        if ctx.attempt == 1:
            await asyncio.Event().wait()  # until this process is killed
        return self.pb.DurA(value=seed.value + 1)

    async def step_b(self, a: Any, /) -> Any:
        return self.pb.DurB(value=a.value * 2)

    async def step_c(self, b: Any, /) -> Any:
        return self.pb.DurC(value=b.value - 3)


async def worker(url: str, gen: str, settings: dict[str, float]) -> None:
    """A worker process: the chain, whose StepA hangs on its first attempt."""
    import procrastinate

    sys.path.insert(0, gen)
    import importlib

    from docket_runtime.durable import Registry, install, run_worker
    from docket_runtime.stores import open_store

    pb = importlib.import_module("benchgraphs.durable_pb2")
    dk = importlib.import_module("benchgraphs.durable_docket")
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)

    store = await open_store(url)
    registry = Registry(store)
    registry.bind(dk.DurableChain, Steps(pb, conn))
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))
    install(app, registry)
    async with app.open_async():
        await run_worker(app, registry, **settings)  # type: ignore[arg-type]


class Fleet:
    """The two worker processes of one measurement."""

    def __init__(self, url: str, gen: str, settings: dict[str, float]) -> None:
        self.args = [sys.executable, __file__, "--worker", url, gen, json.dumps(settings)]
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        proc = subprocess.Popen(self.args, stderr=subprocess.DEVNULL)
        self.procs[proc.pid] = proc

    def kill(self, pid: int) -> None:
        proc = self.procs.pop(pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            proc.wait()


async def measure(
    url: str, gen: str, settings: dict[str, float], kills: int, label: str
) -> list[tuple[float, float]]:
    """(kill to resumed, kill to done) in seconds, for each of ``kills`` rounds."""
    sys.path.insert(0, gen)
    import importlib

    import procrastinate

    from docket_runtime.durable import Registry, enqueue, install
    from docket_runtime.stores import open_store

    pb = importlib.import_module("benchgraphs.durable_pb2")
    dk = importlib.import_module("benchgraphs.durable_docket")
    store = await open_store(url)
    registry = Registry(store)
    graph = registry.bind(dk.DurableChain, Steps(pb, None))
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))
    install(app, registry)
    fleet = Fleet(url, gen, settings)
    figures: list[tuple[float, float]] = []
    async with (
        app.open_async(),
        await psycopg.AsyncConnection.connect(url, autocommit=True) as conn,
    ):

        async def poll(query: str, *params: Any) -> Any:
            while True:
                row = await (await conn.execute(query, params)).fetchone()
                if row is not None:
                    return row
                await asyncio.sleep(0.01)

        async def started() -> None:
            """Start a worker and wait until it has registered."""
            (last,) = await poll("SELECT coalesce(max(id), 0) FROM procrastinate_workers")
            fleet.start()
            await poll("SELECT 1 FROM procrastinate_workers WHERE id > %s", last)

        for _ in range(2):
            await started()
        for n in range(kills):
            execution_id = f"{label}-{n}"
            seed = {"dur_seed": pb.DurSeed(value=n)}
            await enqueue(app, graph, pb.DurC, seed, execution_id=execution_id)
            (pid,) = await poll(
                "SELECT pid FROM kill_markers WHERE execution_id = %s AND attempt = 1",
                execution_id,
            )
            fleet.kill(pid)
            killed = time.monotonic()
            await poll(
                "SELECT 1 FROM kill_markers WHERE execution_id = %s AND attempt = 2", execution_id
            )
            resumed = time.monotonic() - killed
            await poll(
                "SELECT 1 FROM docket_executions WHERE execution_id = %s AND status = 'succeeded'",
                execution_id,
            )
            done = time.monotonic() - killed
            figures.append((resumed, done))
            await started()  # the replacement, before the next round
            print(f"  {label} kill {n + 1}: resumed after {resumed:.2f}s, done after {done:.2f}s")
    fleet.stop()
    await store.close()
    return figures


def summary(label: str, figures: list[tuple[float, float]]) -> float:
    resumed = [f[0] for f in figures]
    done = [f[1] for f in figures]
    median = statistics.median(resumed)
    print(
        f"{label:<14} resumed: median {median:.2f}s (min {min(resumed):.2f}, max "
        f"{max(resumed):.2f}); done: median {statistics.median(done):.2f}s"
    )
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=7)
    parser.add_argument("--postgres", default=DEFAULT_URL)
    parser.add_argument("--old-defaults", action="store_true")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        url, gen, settings = args.worker
        asyncio.run(worker(url, gen, json.loads(settings)))
        return
    from generated import generate

    gen = tempfile.mkdtemp(prefix="docket-bench-")
    generate(Path(gen), "durable")
    schema = f"docket_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.postgres, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"'.encode())
    url = with_search_path(args.postgres, schema)
    try:
        from docket_runtime.cli import main as docket_cli

        if docket_cli(["db", "migrate", "--url", url, "--with-queue"]) != 0:
            sys.exit("could not create the tables")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(MARKERS)
        print(f"Python {platform.python_version()}, {args.kills} SIGKILLs, 2 workers")
        new = asyncio.run(measure(url, gen, {}, args.kills, "defaults"))
        median = summary("defaults", new)
        if args.old_defaults:
            old = asyncio.run(measure(url, gen, OLD, args.kills, "old"))
            before = summary("old defaults", old)
            print(f"ratio of the medians, defaults / old defaults: {median / before:.2f}x")
    finally:
        with psycopg.connect(args.postgres, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE'.encode())


if __name__ == "__main__":
    main()
