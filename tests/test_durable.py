"""Durable execution end to end: real Postgres, real Procrastinate workers.

The acceptance tests run workers as subprocesses (tests/durable_worker.py):

- (a) a worker is SIGKILLed right after an order's card was charged; a new
  worker recovers the stalled job through the stalled-jobs sweep, the order
  completes, and the charge ran exactly once;
- (b) a step that fails twice then succeeds completes through two scheduled
  retry jobs, while the same single worker completes another execution in
  between; the execution row showed ``waiting`` with ``wake_at``;
- (c) 500 executions across two worker processes: all complete, none lost,
  no persisted step ran twice.

The others run a worker inside the test's event loop: cancelling a running
execution, a worker shutting down mid-execution, a schedule firing every
second, enqueueing inside the caller's transaction, the sweep's superseded
case, and ``docketctl db migrate --with-queue``.

Each test gets a fresh Postgres schema (the ``pg`` fixture of conftest.py)
holding Docket's tables and Procrastinate's, selected through the URL's
search_path. Without Postgres these tests are skipped, and fail under CI=true.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import procrastinate
import psycopg
import pytest
from conftest import PgSession
from durable_support import ROOT, WORKER, generated, pb, queue_schema, wait_for
from durable_worker import MemoryEffects, build

from docket_runtime.cli import main as docket_cli
from docket_runtime.durable import (
    Registry,
    cancel,
    enqueue,
    install,
    lock_key,
    run_worker,
    schedule,
    sweep_stalled,
)
from docket_runtime.stores import ExecutionRecord, Store, open_store

T = TypeVar("T")

# Worker settings of the tests: a scheduled job is picked up within 0.1 s; a worker
# silent for 1 s is dead, and the sweep looks for its jobs every 0.5 s.
FAST = {"polling": 0.1, "heartbeat": 0.2, "stalled_timeout": 1.0, "sweep_interval": 0.5}


@pytest.fixture(scope="module")
def gen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generated(tmp_path_factory)


@pytest.fixture
def url(pg: PgSession, gen: Path) -> str:
    """A fresh schema with Docket's and Procrastinate's tables, and ``durable_effects``."""
    return queue_schema(pg)


class Workers:
    """Worker subprocesses of one test; each logs to its own file."""

    def __init__(self, url: str, gen: Path, logs: Path) -> None:
        self.url, self.gen, self.logs = url, gen, logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, **config: Any) -> subprocess.Popen[bytes]:
        settings = {"url": self.url, "gen_dir": str(self.gen), **FAST, **config}
        log = (self.logs / f"worker-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), json.dumps(settings)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def output(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self.logs.glob("worker-*.log"))
        )

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def workers(url: str, gen: Path, tmp_path: Path) -> Iterator[Workers]:
    started = Workers(url, gen, tmp_path)
    try:
        yield started
    finally:
        started.stop()


class Harness:
    """The test's side: a store, an open app and the registry of durabletest.orders."""

    def __init__(self, url: str, store: Store, app: procrastinate.App, registry: Registry) -> None:
        self.url, self.store, self.app, self.registry = url, store, app, registry
        self.effects = MemoryEffects()  # effects of steps run in this process, if any

    def graph(self, name: str) -> Any:
        graph = self.registry.get(f"durabletest.{name}")
        assert graph is not None
        return graph

    async def enqueue(self, graph: str, target: str, execution_id: str, **inputs: Any) -> Any:
        return await enqueue(
            self.app, self.graph(graph), getattr(pb(), target), inputs, execution_id=execution_id
        )

    async def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            cur = await conn.execute(query.encode(), params)
            return await cur.fetchall() if cur.description else []

    async def effects_of(self, execution_id: str, what: str) -> int:
        rows = await self.sql(
            "SELECT count(*) FROM durable_effects WHERE execution_id = %s AND what = %s",
            execution_id,
            what,
        )
        return int(rows[0][0])

    async def seen(self, execution_id: str, what: str) -> bool | None:
        """For wait_for: True once the effect was recorded."""
        return True if await self.effects_of(execution_id, what) else None

    async def ended(self, execution_id: str) -> ExecutionRecord | None:
        """For wait_for: the row once the execution succeeded, failed or was cancelled."""
        row = await self.store.get_execution(execution_id)
        return row if row is not None and row.status in {"succeeded", "failed"} else None

    async def jobs(self, execution_id: str) -> list[tuple[Any, ...]]:
        """(id, status, scheduled_at, attempts) of the execution's jobs, oldest first."""
        return await self.sql(
            "SELECT id, status::text, scheduled_at, attempts FROM procrastinate_jobs "
            "WHERE lock = %s ORDER BY id",
            lock_key(execution_id),
        )


@asynccontextmanager
async def harness(url: str) -> AsyncIterator[Harness]:
    store = await open_store(url)
    effects = MemoryEffects()
    registry = build(store, effects)
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url, max_size=4))
    install(app, registry)
    try:
        async with app.open_async():
            h = Harness(url, store, app, registry)
            h.effects = effects
            yield h
    finally:
        await store.close()


@asynccontextmanager
async def worker_here(h: Harness, **options: Any) -> AsyncIterator[asyncio.Task[None]]:
    """A worker running in this event loop until the block ends."""
    task = asyncio.create_task(
        run_worker(
            h.app,
            h.registry,
            install_signal_handlers=False,
            polling_interval=0.1,
            heartbeat_interval=0.2,
            stalled_timeout=1.0,
            sweep_interval=0.5,
            **options,
        )
    )
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def run(body: Callable[[], Awaitable[T]], limit: float = 60.0) -> T:
    async def guarded() -> T:
        return await asyncio.wait_for(body(), limit)

    return asyncio.run(guarded())


def report(what: str, seconds: float) -> None:
    print(f"[durable] {what}: {seconds:.2f}s")


# -- (a) crash recovery --------------------------------------------------------------------


def test_a_killed_worker_loses_nothing_and_the_charge_runs_once(url: str, workers: Workers) -> None:
    async def body() -> None:
        async with harness(url) as h:
            order = pb().Order(order_id="order-a", amount_cents=4200)
            await h.enqueue("Orders", "Confirmation", "order-a", order=order)
            started = time.monotonic()
            first = workers.start(block=["Ship"])
            # Ship starts only once ChargeCard's result is checkpointed; it then blocks.
            await wait_for(lambda: h.seen("order-a", "Ship:blocked"), timeout=20)
            assert await h.effects_of("order-a", "ChargeCard") == 1
            runs = {r.step: r for r in await h.store.get_step_runs("order-a")}
            assert (runs["ChargeCard"].status, runs["Ship"].status) == ("succeeded", "running")
            ((job_id, status, _, _),) = await h.jobs("order-a")
            assert status == "doing"

            first.send_signal(signal.SIGKILL)
            assert first.wait(timeout=10) == -signal.SIGKILL
            killed = time.monotonic()
            (row,) = await h.sql(
                "SELECT status::text FROM procrastinate_jobs WHERE id = %s", job_id
            )
            assert row == ("doing",)  # stalled: nobody will finish it on its own

            workers.start()
            done = await wait_for(lambda: h.ended("order-a"), timeout=30)
            finished = time.monotonic()
            assert done.status == "succeeded", workers.output()
            # The charge ran exactly once; Ship's interrupted attempt counted as one.
            assert await h.effects_of("order-a", "ChargeCard") == 1
            assert await h.effects_of("order-a", "Ship:2") == 1
            runs = {r.step: r for r in await h.store.get_step_runs("order-a")}
            assert (runs["ChargeCard"].attempts, runs["Ship"].attempts) == (1, 2)
            # The same job was swept back to the queue and then succeeded.
            assert [(j[0], j[1]) for j in await h.jobs("order-a")] == [(job_id, "succeeded")]
            events = await h.sql(
                "SELECT type::text FROM procrastinate_events WHERE job_id = %s ORDER BY id", job_id
            )
            assert ("deferred_for_retry",) in events
            confirmation = await h.graph("Orders").fetch(pb().Confirmation, execution_id="order-a")
            assert (confirmation.charge_id, confirmation.tracking) == (
                "ch-order-a",
                "tr-order-a",
            )
            report("(a) until the first worker blocked in Ship", killed - started)
            report("(a) from SIGKILL to the order completed by a new worker", finished - killed)

    run(body)


def test_the_typed_enqueue_and_result_with_a_worker_process(url: str, workers: Workers) -> None:
    async def body() -> None:
        async with harness(url) as h:
            chain, orders = h.graph("Chain"), h.graph("Orders")
            seed = pb().Seed(value=2)
            job = await chain.enqueue(h.app, pb().Report, seed=seed, execution_id="typed-chain")
            assert job is not None
            order = pb().Order(order_id="typed-order", amount_cents=700)
            await orders.enqueue(h.app, pb().Confirmation, order=order, execution_id="typed-order")
            assert await chain.result(pb().Report, "typed-chain") is None  # queued
            workers.start()
            for execution_id in ("typed-chain", "typed-order"):
                row = await wait_for(functools.partial(h.ended, execution_id), timeout=30)
                assert row.status == "succeeded", workers.output()
            # Chain's Third keeps nothing, yet the execution's value is kept (handed off
            # twice: three jobs); Confirm keeps its result, which is the value.
            assert await chain.result(pb().Report, "typed-chain") == pb().Report(value=35)
            confirmation = await orders.result(pb().Confirmation, "typed-order")
            assert confirmation.charge_id == "ch-typed-order"
            kept = await h.sql(
                "SELECT step FROM docket_results WHERE execution_id = %s ORDER BY step",
                "typed-chain",
            )
            assert kept == [("First",), ("Second",), ("Third",), ("docket.inputs",)]
            assert len(await h.jobs("typed-chain")) == 3

    run(body)


# -- (b) durable retries --------------------------------------------------------------------


def test_b_a_flaky_step_completes_through_two_scheduled_retries_without_blocking_the_worker(
    url: str, workers: Workers
) -> None:
    async def body() -> None:
        async with harness(url) as h:
            workers.start(concurrency=1)
            flaky = pb().Order(order_id="flaky-b", amount_cents=100)
            started = time.monotonic()
            await h.enqueue("Orders", "Confirmation", "flaky-b", order=flaky)

            async def waiting() -> ExecutionRecord | None:
                row = await h.store.get_execution("flaky-b")
                return row if row is not None and row.status == "waiting" else None

            first_wait = await wait_for(waiting, timeout=20)
            assert first_wait.wake_at is not None and first_wait.error is not None
            assert "failed on attempt 1" in first_wait.error
            # The worker is free while flaky-b waits: another order completes meanwhile.
            quick = pb().Order(order_id="quick-b", amount_cents=100)
            await h.enqueue("Orders", "Confirmation", "quick-b", order=quick)
            quick_done = await wait_for(lambda: h.ended("quick-b"), timeout=20)
            assert quick_done.status == "succeeded", workers.output()
            assert quick_done.finished_at is not None
            assert quick_done.finished_at < first_wait.wake_at

            async def second_wait() -> ExecutionRecord | None:
                row = await waiting()
                return row if row is not None and row.wake_at != first_wait.wake_at else None

            again = await wait_for(second_wait, timeout=20)
            assert again.error is not None and "failed on attempt 2" in again.error
            done = await wait_for(lambda: h.ended("flaky-b"), timeout=20)
            elapsed = time.monotonic() - started
            assert done.status == "succeeded", workers.output()
            assert done.wake_at is None
            for what in ("Ship:failed:1", "Ship:failed:2", "Ship:3", "ChargeCard"):
                assert await h.effects_of("flaky-b", what) == 1, what
            runs = {r.step: r for r in await h.store.get_step_runs("flaky-b")}
            assert runs["Ship"].attempts == 3
            # One job to start, then one job per retry, scheduled at the recorded wake_at.
            jobs = await h.jobs("flaky-b")
            assert [j[1] for j in jobs] == ["succeeded"] * 3
            assert jobs[0][2] is None
            assert [j[2] for j in jobs[1:]] == [first_wait.wake_at, again.wake_at]
            assert again.wake_at is not None
            gap = again.wake_at - first_wait.wake_at
            assert timedelta(seconds=0.9) < gap < timedelta(seconds=3)  # the 1 s backoff
            report("(b) flaky-b through two 1 s durable retries", elapsed)

    run(body)


# -- (c) many executions, two workers -------------------------------------------------------


def test_c_500_executions_across_two_workers_all_complete_once(url: str, workers: Workers) -> None:
    count = 500

    async def body() -> None:
        async with harness(url) as h:
            for _ in range(2):
                workers.start(concurrency=4)

            async def both_up() -> bool | None:
                (row,) = await h.sql("SELECT count(*) FROM procrastinate_workers")
                return True if row[0] == 2 else None

            await wait_for(both_up, timeout=20)
            started = time.monotonic()
            ids = [f"c-{n:03d}" for n in range(count)]
            for chunk in range(0, count, 25):
                await asyncio.gather(
                    *(
                        h.enqueue(
                            "Orders",
                            "Confirmation",
                            i,
                            order=pb().Order(order_id=i, amount_cents=10),
                        )
                        for i in ids[chunk : chunk + 25]
                    )
                )
            enqueued = time.monotonic()

            async def all_done() -> bool | None:
                (row,) = await h.sql(
                    "SELECT count(*) FROM docket_executions WHERE status = 'succeeded'"
                )
                return True if row[0] == count else None

            await wait_for(all_done, timeout=60, every=0.1)
            finished = time.monotonic()
            statuses = await h.sql("SELECT status, count(*) FROM docket_executions GROUP BY status")
            assert statuses == [("succeeded", count)], workers.output()
            # Each charge once, and both workers charged some.
            charges = await h.sql(
                "SELECT execution_id, count(*) FROM durable_effects WHERE what = 'ChargeCard' "
                "GROUP BY execution_id"
            )
            assert sorted(charges) == [(i, 1) for i in ids]
            (pids,) = await h.sql(
                "SELECT count(DISTINCT pid) FROM durable_effects WHERE what = 'ChargeCard'"
            )
            assert pids == (2,)
            # Every step of every execution ran exactly once (attempts recorded in the store).
            runs = await h.sql(
                "SELECT step, status, attempts, count(*) FROM docket_step_runs "
                "GROUP BY step, status, attempts ORDER BY step"
            )
            assert runs == [
                (step, "succeeded", 1, count)
                for step in sorted(("ChargeCard", "Confirm", "Ship", "Validate"))
            ]
            jobs = await h.sql("SELECT status::text, count(*) FROM procrastinate_jobs GROUP BY 1")
            assert jobs == [("succeeded", count)]
            kept = await h.sql("SELECT count(*) FROM docket_results")
            # ChargeCard, Ship and Confirm keep theirs; each execution keeps its inputs.
            assert kept == [(4 * count,)]
            report(f"(c) enqueue {count}", enqueued - started)
            report(f"(c) {count} executions done by 2 workers", finished - started)
            print(f"[durable] (c) {count / (finished - started):.0f} executions/s end to end")

    run(body, limit=90)


# -- cancellation and shutdown, in process ---------------------------------------------------


def test_cancelling_a_running_execution_cancels_its_step_and_starts_no_other(url: str) -> None:
    async def body() -> None:
        async with harness(url) as h:
            nap = pb().Nap(seconds=30.0)
            await h.enqueue("Sleeper", "Woken", "nap-run", nap=nap)
            async with worker_here(h):

                async def sleeping() -> bool | None:
                    return True if h.effects.count("nap-run", "Sleep:start") else None

                await wait_for(sleeping, timeout=10)
                asked = time.monotonic()
                assert await cancel(h.app, h.store, "nap-run")

                async def cancelled() -> bool | None:
                    return True if h.effects.count("nap-run", "Sleep:cancelled") else None

                await wait_for(cancelled, timeout=10)
                report("abort of a running execution", time.monotonic() - asked)
                await asyncio.sleep(0.3)
            row = await h.store.get_execution("nap-run")
            assert row is not None and row.status == "cancelled"
            assert h.effects.count("nap-run", "After") == 0
            assert [j[1] for j in await h.jobs("nap-run")] == ["aborted"]
            runs = {r.step for r in await h.store.get_step_runs("nap-run")}
            assert runs == {"Sleep"}

    run(body)


def test_a_worker_shutting_down_puts_its_execution_back_in_the_queue(url: str) -> None:
    async def body() -> None:
        async with harness(url) as h:
            await h.enqueue("Sleeper", "Woken", "nap-stop", nap=pb().Nap(seconds=1.0))
            async with worker_here(h, shutdown_graceful_timeout=0.1):

                async def sleeping() -> bool | None:
                    return True if h.effects.count("nap-stop", "Sleep:start") else None

                await wait_for(sleeping, timeout=10)
            # The worker stopped mid-step: back to the queue, with a new job.
            row = await h.store.get_execution("nap-stop")
            assert row is not None and row.status == "queued"
            assert [j[1] for j in await h.jobs("nap-stop")] == ["aborted", "todo"]
            async with worker_here(h):
                done = await wait_for(lambda: h.ended("nap-stop"), timeout=10)
            assert done.status == "succeeded"
            assert h.effects.count("nap-stop", "Sleep:end") == 1

    run(body)


# -- cron, in process ------------------------------------------------------------------------


def test_a_schedule_runs_every_second_and_each_run_reads_the_previous_output(url: str) -> None:
    async def body() -> None:
        async with harness(url) as h:

            def inputs(previous: Any) -> dict[str, Any]:
                return {"tally_input": pb().TallyInput(previous=previous.count if previous else 0)}

            name = schedule(
                h.app,
                h.registry,
                h.graph("Tally"),
                pb().Total,
                cron="* * * * * *",  # every second (the sixth field is seconds)
                inputs=inputs,
                name="tally",
            )
            async with worker_here(h):

                async def three_runs() -> bool | None:
                    rows = await h.sql(
                        "SELECT count(*) FROM docket_executions "
                        "WHERE status = 'succeeded' AND execution_id LIKE 'tally@%%'"
                    )
                    return True if rows[0][0] >= 3 else None

                await wait_for(three_runs, timeout=15, every=0.1)
            rows = await h.sql(
                "SELECT execution_id FROM docket_executions WHERE status = 'succeeded' "
                "ORDER BY execution_id"
            )
            totals = [
                (await h.graph("Tally").fetch(pb().Total, execution_id=r[0])).count for r in rows
            ]
            assert totals == list(range(1, len(totals) + 1))
            assert all(r[0].startswith(f"{name}@") and r[0].endswith("Z") for r in rows)

    run(body)


# -- the caller's transaction, the sweep, the schema ------------------------------------------


def test_enqueue_joins_the_callers_transaction(url: str) -> None:
    async def body() -> None:
        async with harness(url) as h:
            order = pb().Order(order_id="tx-1", amount_cents=1)
            graph, target = h.graph("Orders"), pb().Confirmation
            async with await psycopg.AsyncConnection.connect(url) as conn:
                await enqueue(
                    h.app, graph, target, {"order": order}, execution_id="tx-1", connection=conn
                )
                await conn.rollback()
            assert await h.store.get_execution("tx-1") is None
            assert await h.jobs("tx-1") == []
            async with await psycopg.AsyncConnection.connect(url) as conn:
                await conn.execute("SELECT 1")  # the caller's own work, same transaction
                job = await enqueue(
                    h.app, graph, target, {"order": order}, execution_id="tx-1", connection=conn
                )
                # A duplicate inside the same transaction is harmless (a savepoint).
                again = await enqueue(
                    h.app, graph, target, {"order": order}, execution_id="tx-1", connection=conn
                )
                assert job is not None and again is None
                assert await h.store.get_execution("tx-1") is None  # not committed yet
                await conn.commit()
            row = await h.store.get_execution("tx-1")
            assert row is not None and row.status == "queued"
            assert [j[0] for j in await h.jobs("tx-1")] == [job]

    run(body)


def test_the_sweep_retries_a_dead_workers_job_or_fails_it_when_superseded(url: str) -> None:
    async def body() -> None:
        async with harness(url) as h:
            manager = h.app.job_manager
            for name in ("swept", "superseded"):
                order = pb().Order(order_id=name, amount_cents=1)
                await h.enqueue("Orders", "Confirmation", name, order=order)
            # A worker takes both jobs, then dies (its heartbeat stops).
            dead = await manager.register_worker()
            taken = [await manager.fetch_job(queues=None, worker_id=dead) for _ in range(2)]
            assert all(job is not None for job in taken)
            await h.sql(
                "UPDATE procrastinate_workers SET last_heartbeat = now() - interval '30 seconds'"
            )
            assert await sweep_stalled(h.app, stalled_timeout=60) == []  # none stalled enough
            # Meanwhile "superseded" was cancelled and enqueued again: a new job waits.
            await h.store.cancel_execution("superseded")
            order = pb().Order(order_id="superseded", amount_cents=1)
            assert await h.enqueue("Orders", "Confirmation", "superseded", order=order)
            retried = await sweep_stalled(h.app, stalled_timeout=1)
            (swept_job,) = await h.jobs("swept")
            assert retried == [swept_job[0]] and swept_job[1] == "todo"
            assert [j[1] for j in await h.jobs("superseded")] == ["failed", "todo"]
            async with worker_here(h):
                for name in ("swept", "superseded"):
                    done = await wait_for(lambda n=name: h.ended(n), timeout=10)  # type: ignore[misc]
                    assert done.status == "succeeded"

    run(body)


def test_migrate_with_queue_is_idempotent_and_needs_postgres(
    pg: PgSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh = pg.fresh_url()
    assert docket_cli(["db", "migrate", "--url", fresh, "--with-queue"]) == 0
    assert "created Procrastinate's tables" in capsys.readouterr().out
    assert docket_cli(["db", "migrate", "--url", fresh, "--with-queue"]) == 0
    assert "Procrastinate's tables exist already" in capsys.readouterr().out
    assert pg.sql(fresh, "SELECT to_regclass('procrastinate_jobs') IS NOT NULL") == [(True,)]
    sqlite = f"sqlite:///{tmp_path / 'x.db'}"
    assert docket_cli(["db", "migrate", "--url", sqlite, "--with-queue"]) == 1
    assert "needs a postgresql:// URL" in capsys.readouterr().err
