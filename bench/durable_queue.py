"""bench/durable.py's queue rows: Docket's durable queue against Procrastinate no-op jobs.

Each row runs Docket and its baseline on the same Postgres, with the same
worker processes (the same options: concurrency 1, LISTEN/NOTIFY, the same
polling interval, Docket's default), in alternating order:

- **throughput**: ``n`` executions of ``QueueTouch`` (one trivial step,
  nothing kept but the execution's row) are enqueued, then ``w`` worker
  processes take them until the queue is empty; against ``n`` no-op
  Procrastinate jobs. Measured from the first job started to the last one
  finished (the queue's own event times), so neither the enqueues nor the
  workers' start count;
- **latency**: an idle worker; one execution is enqueued, and the next as
  soon as the last is done (back to back); from the call to ``enqueue`` to
  the job finished. The baseline defers a no-op job instead;
- **lateness**: executions of ``QueueRetry``, whose step fails once and is
  retried by the queue 1 s later; how late the retry job starts after its
  due time. The baseline: no-op jobs deferred with ``schedule_in`` 1 s.

Every phase has a queue of its own in one temporary schema.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import signal
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import psycopg

SYSTEMS = ("noop", "docket")
NOOP_TASK = "bench_noop"
RETRY_WAIT = 1.0
"""Seconds: QueueRetry's initial_interval, and the baseline's schedule_in."""


@dataclass(frozen=True)
class Sizes:
    """How much each row does."""

    executions: int
    rounds: int
    samples: int
    retries: int

    @classmethod
    def of(cls, quick: bool, executions: int) -> Sizes:
        if quick:
            return cls(executions=min(executions, 300), rounds=1, samples=60, retries=8)
        return cls(executions=executions, rounds=3, samples=200, retries=25)


def default_polling() -> float:
    """Docket's default polling interval, given to both systems' workers."""
    from docket_runtime.durable import run_worker

    value = inspect.signature(run_worker).parameters["polling_interval"].default
    assert isinstance(value, float)
    return value


# -- the worker process ------------------------------------------------------------------


def worker_main(config: dict[str, Any]) -> None:
    """Say ``ready``, wait for a line on stdin, then run one worker (see :func:`_work`)."""
    sys.path.insert(0, config["gen_dir"])
    asyncio.run(_work(config))


def new_app(url: str) -> Any:
    """An app with the baseline's no-op task (Docket's tasks are installed apart)."""
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url, max_size=6))

    @app.task(name=NOOP_TASK)
    async def noop() -> None:
        return None

    return app


def bind(registry: Any) -> tuple[Any, Any, Any]:
    """Bind QueueTouch and QueueRetry to ``registry``; return (pb2, touch, retry)."""
    import importlib

    from docket_runtime import context

    pb = importlib.import_module("benchgraphs.queue_pb2")
    dk = importlib.import_module("benchgraphs.queue_docket")

    class Touch:
        async def touch(self, seed: Any, /) -> Any:
            return pb.QDone(value=seed.value)

    class Retry:
        async def flaky(self, seed: Any, /) -> Any:
            if context().attempt == 1:
                raise ConnectionError("fails once")
            return pb.QDone(value=seed.value)

    return pb, registry.bind(dk.QueueTouch, Touch()), registry.bind(dk.QueueRetry, Retry())


async def _work(config: dict[str, Any]) -> None:
    from docket_runtime.durable import Registry, install, run_worker
    from docket_runtime.stores import open_store

    url, queue, wait = config["url"], config["queue"], config["wait"]
    app = new_app(url)
    store = await open_store(url)
    registry = Registry(store)
    bind(registry)
    install(app, registry)
    polling = config["polling"]
    async with app.open_async():
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        if config["system"] == "docket":
            await run_worker(app, registry, queues=[queue], wait=wait, polling_interval=polling)
        else:
            await app.run_worker_async(
                queues=[queue],
                wait=wait,
                fetch_job_polling_interval=polling,
                abort_job_polling_interval=max(polling, 1.0),
            )
    await store.close()


class Workers:
    """``count`` worker processes of ``system`` on ``queue``, started together."""

    def __init__(self, bench: Path, config: dict[str, Any], count: int) -> None:
        self.args = [str(bench), "--part", "queue-worker", "--config", json.dumps(config)]
        self.count = count
        self.running: list[asyncio.subprocess.Process] = []

    async def start(self) -> None:
        """Start them, wait until each is ready, then let them all go at once."""
        for _ in range(self.count):
            self.running.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    *self.args,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                )
            )
        for proc in self.running:
            assert proc.stdout is not None
            line = await proc.stdout.readline()
            if line.strip() != b"ready":
                raise RuntimeError(f"a worker failed to start: {line!r}")
        for proc in self.running:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()

    async def finished(self) -> None:
        for proc in self.running:
            await proc.wait()

    async def stop(self) -> None:
        for proc in self.running:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        await self.finished()


# -- the driver -----------------------------------------------------------------------------


class Bench:
    """Enqueues, worker processes and measurements on one temporary schema."""

    def __init__(self, url: str, gen_dir: Path, bench: Path) -> None:
        self.url, self.gen_dir, self.bench = url, gen_dir, bench
        self.polling = default_polling()
        self.phase = 0

    async def __aenter__(self) -> Bench:
        from docket_runtime.durable import Registry, apply_queue_schema, install
        from docket_runtime.stores import open_store

        self.store = await open_store(self.url, migrate=True)
        await apply_queue_schema(self.url)
        self.app = new_app(self.url)
        self.pb, self.touch, self.retry = bind(Registry(self.store))
        install(self.app)
        await self.app.open_async()
        self.conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.conn.close()
        await self.app.close_async()
        await self.store.close()

    def queue(self, name: str) -> str:
        self.phase += 1
        return f"{name}-{self.phase}"

    def workers(self, system: str, queue: str, count: int, *, wait: bool) -> Workers:
        config = {
            "url": self.url,
            "gen_dir": str(self.gen_dir),
            "system": system,
            "queue": queue,
            "wait": wait,
            "polling": self.polling,
        }
        return Workers(self.bench, config, count)

    async def enqueue(self, system: str, queue: str, i: int, *, retry: bool = False) -> int | None:
        """Enqueue one execution (or a no-op job; with ``retry``, due in 1 s); its job id."""
        from docket_runtime.durable import enqueue

        seed = {"q_seed": self.pb.QSeed(value=i)}
        if system == "docket":
            graph = self.retry if retry else self.touch
            return await enqueue(
                self.app, graph, self.pb.QDone, seed, execution_id=f"{queue}/{i}", queue=queue
            )
        schedule = {"schedule_in": {"seconds": RETRY_WAIT}} if retry else {}
        job: int = await self.app.configure_task(NOOP_TASK, queue=queue, **schedule).defer_async()
        return job

    async def rows(self, query: str, *params: object) -> list[tuple[Any, ...]]:
        cur = await self.conn.execute(query.encode(), params)
        return await cur.fetchall()

    async def throughput(self, system: str, *, n: int, count: int) -> float:
        """Executions (or jobs) per second through ``count`` workers."""
        queue = self.queue(f"{system}-t{count}")
        for i in range(n):
            await self.enqueue(system, queue, i)
        workers = self.workers(system, queue, count, wait=False)
        await workers.start()
        await workers.finished()
        [(jobs, span)] = await self.rows(
            "SELECT count(DISTINCT j.id), extract(epoch FROM max(e.at) - min(e.at))"
            " FROM procrastinate_jobs j JOIN procrastinate_events e ON e.job_id = j.id"
            " WHERE j.queue_name = %s AND e.type IN ('started', 'succeeded')",
            queue,
        )
        if jobs != n:
            raise RuntimeError(f"{system}: {jobs} of {n} jobs ran")
        return n / float(span)

    async def latency(self, system: str, samples: int) -> list[float]:
        """Milliseconds from each enqueue to its job finished, back to back, idle worker."""
        queue = self.queue(f"{system}-l")
        workers = self.workers(system, queue, 1, wait=True)
        await workers.start()
        await asyncio.sleep(0.5)  # let it LISTEN
        found = []
        try:
            for i in range(samples):
                began = time.time()
                job = await self.enqueue(system, queue, i)
                while True:
                    [(status, at)] = await self.rows(
                        "SELECT j.status, max(e.at) FILTER (WHERE e.type = 'succeeded')"
                        " FROM procrastinate_jobs j JOIN procrastinate_events e"
                        " ON e.job_id = j.id WHERE j.id = %s GROUP BY j.status",
                        job,
                    )
                    if status == "succeeded":
                        break
                    await asyncio.sleep(0.002)
                found.append((at.timestamp() - began) * 1000)
        finally:
            await workers.stop()
        return found

    async def lateness(self, system: str, count: int) -> list[float]:
        """Milliseconds each retry (or scheduled job) started after its due time."""
        queue = self.queue(f"{system}-r")
        workers = self.workers(system, queue, 1, wait=True)
        await workers.start()
        await asyncio.sleep(0.5)
        try:
            for i in range(count):
                await self.enqueue(system, queue, i, retry=True)
                # Spaced so that due times fall anywhere in the polling interval.
                await asyncio.sleep(0.237)
            await asyncio.sleep(RETRY_WAIT + 2 * self.polling + 0.5)
        finally:
            await workers.stop()
        found = await self.rows(
            "SELECT extract(epoch FROM e.at - j.scheduled_at) * 1000"
            " FROM procrastinate_jobs j JOIN procrastinate_events e ON e.job_id = j.id"
            " WHERE j.queue_name = %s AND j.scheduled_at IS NOT NULL AND e.type = 'started'",
            queue,
        )
        if len(found) != count:
            raise RuntimeError(f"{system}: {len(found)} of {count} scheduled jobs started")
        return [float(late) for (late,) in found]


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def alternate(rounds: int, measure: Callable[[str], Awaitable[Any]]) -> dict[str, list[Any]]:
    """``measure`` each system ``rounds`` times, alternating which goes first."""
    found: dict[str, list[Any]] = {system: [] for system in SYSTEMS}
    for r in range(rounds):
        for system in SYSTEMS if r % 2 == 0 else SYSTEMS[::-1]:
            found[system].append(await measure(system))
    return found


async def queue_rows(url: str, gen_dir: Path, bench: Path, sizes: Sizes) -> None:
    """Measure and print the three queue rows."""
    async with Bench(url, gen_dir, bench) as b:
        print(
            f"\nqueue rows: Docket's durable queue against Procrastinate no-op jobs "
            f"(same worker processes, concurrency 1, polling {b.polling:g}s)"
        )
        print(f"{'':<44}{'docket':>10}{'no-op':>10}{'ratio':>9}")
        n = sizes.executions
        for count in (1, 2):
            per_round = await alternate(sizes.rounds, partial(b.throughput, n=n, count=count))
            ratios = [d / o for d, o in zip(per_round["docket"], per_round["noop"], strict=True)]
            mine, theirs = (statistics.median(per_round[s]) for s in ("docket", "noop"))
            label = f"{n} executions, {count} worker{'s' if count > 1 else ''} (per s)"
            print(f"{label:<44}{mine:>10.0f}{theirs:>10.0f}{statistics.median(ratios):>8.2f}x")

        waits = await alternate(1, lambda system: b.latency(system, sizes.samples))
        mine_l, theirs_l = waits["docket"][0], waits["noop"][0]
        base = statistics.median(theirs_l)
        print(f"idle worker, enqueue -> done, {sizes.samples} back to back (ms)")
        for name, q in (("median", 0.5), ("p90", 0.9), ("max", 1.0)):
            mine_q = quantile(mine_l, q)
            print(
                f"  {name:<42}{mine_q:>10.1f}{quantile(theirs_l, q):>10.1f}{mine_q / base:>8.2f}x"
            )
        print("  (ratio: against the no-op job's median)")

        late = await alternate(1, lambda system: b.lateness(system, sizes.retries))
        mine_r, theirs_r = late["docket"][0], late["noop"][0]
        print(f"start after the due time, {sizes.retries} retries due in {RETRY_WAIT:g}s (ms)")
        for name, q in (("median", 0.5), ("max", 1.0)):
            print(f"  {name:<42}{quantile(mine_r, q):>10.1f}{quantile(theirs_r, q):>10.1f}")
