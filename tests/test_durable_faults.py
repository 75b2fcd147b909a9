"""Durable execution under infrastructure faults: real Postgres, real worker processes.

One test per fault, each failing without the defence it checks:

- a heartbeat write that fails once does not stop the heartbeat, so a live
  worker's job is not handed to another worker; a worker that cannot write
  its heartbeat for long stops its own job before another may start it;
  a step that holds the event loop does not make its worker look dead;
- executions left ``queued``, ``waiting`` or ``running`` without a job get
  one from the workers' sweep, one each however many workers sweep, and
  ``enqueue`` of such an id gives it one;
- a store write that fails mid-run leaves the execution ``waiting``, and a
  resume finishes it;
- a worker on a database without Procrastinate's tables stops at once and
  says how to create them; one whose database goes away waits and carries on;
- the crash-detection defaults.

The last test is the fault-injection run: a few hundred executions across
three workers while backends are terminated and workers are SIGKILLed.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import random
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import procrastinate
import pytest
from conftest import PG_URL, PgSession, Proxy, proxied
from durable_support import generated, pb, queue_schema, wait_for
from durable_worker import MemoryEffects, build
from test_durable import Harness, Workers, harness, report, run

from docket_runtime.cli import main as docket_cli
from docket_runtime.durable import enqueue, install, run_worker
from docket_runtime.durable._record import record_execution
from docket_runtime.durable._resume import MISSING_KEY_DELAY, STORE_RETRY_DELAY
from docket_runtime.durable._sweep import jobless_executions, sweep_executions
from docket_runtime.stores import ExecutionRecord, open_store


@pytest.fixture(scope="module")
def gen_durable(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generated(tmp_path_factory)


@pytest.fixture
def url_durable(pg: PgSession, gen_durable: Path) -> str:
    """A fresh schema with Docket's and Procrastinate's tables, and ``durable_effects``."""
    return queue_schema(pg)


@pytest.fixture
def fleet(url_durable: str, gen_durable: Path, tmp_path: Path) -> Iterator[Workers]:
    """The test's worker processes, stopped at the end."""
    started = Workers(url_durable, gen_durable, tmp_path)
    try:
        yield started
    finally:
        started.stop()


# A worker silent for 2 s is dead; one that could not beat for 1.6 s stops its jobs.
BEAT = {"heartbeat": 0.2, "stalled_timeout": 2.0}


async def heartbeat_fails_for(h: Harness, worker_ids: Iterable[int]) -> None:
    """Make the heartbeat writes of ``worker_ids`` fail (none: restore them)."""
    ids = ",".join(str(int(i)) for i in worker_ids) or "NULL"
    await h.sql(
        "CREATE OR REPLACE FUNCTION procrastinate_update_heartbeat_v1(worker_id bigint) "
        "RETURNS void LANGUAGE plpgsql AS $$ BEGIN "
        f"IF worker_id IN ({ids}) THEN RAISE EXCEPTION 'heartbeat broken by the test'; END IF; "
        "UPDATE procrastinate_workers SET last_heartbeat = NOW() WHERE id = worker_id; END $$"
    )


async def worker_ids(h: Harness, count: int) -> list[int]:
    """The ids of the registered workers, once there are ``count``."""

    async def registered() -> list[int] | None:
        rows = await h.sql("SELECT id FROM procrastinate_workers ORDER BY id")
        return [r[0] for r in rows] if len(rows) == count else None

    return await wait_for(registered, timeout=20)


async def napping(
    h: Harness, fleet: Workers, execution_id: str, seconds: float, **timing: float
) -> tuple[subprocess.Popen[bytes], int]:
    """Start a worker and an execution whose Sleep step naps; return them once it naps."""
    proc = fleet.start(**timing)
    (worker_id,) = await worker_ids(h, 1)
    await h.enqueue("Sleeper", "Woken", execution_id, nap=pb().Nap(seconds=seconds))
    await wait_for(lambda: h.seen(execution_id, "Sleep:start"), timeout=20)
    return proc, worker_id


async def effects(h: Harness, execution_id: str) -> list[tuple[str, int, datetime]]:
    """(what, pid, at) of the execution's side effects, in order."""
    rows = await h.sql(
        "SELECT what, pid, at FROM durable_effects WHERE execution_id = %s ORDER BY at, id",
        execution_id,
    )
    return [(r[0], r[1], r[2]) for r in rows]


async def record(h: Harness, graph: str, target: str, execution_id: str, **inputs: Any) -> None:
    """Record an execution as enqueued, without deferring its job (a fault's leftover)."""
    row = await record_execution(
        h.graph(graph), getattr(pb(), target), inputs, execution_id=execution_id
    )
    assert row.status == "queued"


async def terminate(h: Harness, names: Iterable[str]) -> int:
    """Terminate the backends whose application_name is one of ``names``; how many."""
    rows = await h.sql(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE application_name = ANY(%s) AND pid <> pg_backend_pid()",
        list(names),
    )
    return int(rows[0][0])


# -- the heartbeat --------------------------------------------------------------------------


def test_a_failed_heartbeat_write_does_not_hand_a_live_workers_job_to_another(
    url_durable: str, fleet: Workers
) -> None:
    async def body() -> None:
        async with harness(url_durable) as h:
            _, first = await napping(h, fleet, "nap-beat", 4.0, **BEAT)
            await heartbeat_fails_for(h, [first])
            await asyncio.sleep(0.5)  # two failed beats, fewer than a stalled timeout
            await heartbeat_fails_for(h, [])
            fleet.start(**BEAT)  # its sweep would take the job of a silent worker
            done = await wait_for(lambda: h.ended("nap-beat"), timeout=30)
            assert done.status == "succeeded", fleet.output()
            assert [e[0] for e in await effects(h, "nap-beat")] == [
                "Sleep:start",
                "Sleep:end",
                "After",
            ], fleet.output()
            (job,) = await h.jobs("nap-beat")
            events = await h.sql(
                "SELECT type::text FROM procrastinate_events WHERE job_id = %s", job[0]
            )
            assert ("deferred_for_retry",) not in events

    run(body)


def test_a_worker_that_cannot_write_its_heartbeat_stops_its_job_before_another_starts_it(
    url_durable: str, fleet: Workers
) -> None:
    async def body() -> None:
        async with harness(url_durable) as h:
            first_proc, first = await napping(h, fleet, "nap-fence", 4.0, **BEAT)
            broken = time.monotonic()
            await heartbeat_fails_for(h, [first])  # for good: the worker is cut off
            fleet.start(**BEAT)
            done = await wait_for(lambda: h.ended("nap-fence"), timeout=30)
            assert done.status == "succeeded", fleet.output()
            seen = await effects(h, "nap-fence")
            starts = [at for what, _, at in seen if what == "Sleep:start"]
            cancelled = [at for what, pid, at in seen if what == "Sleep:cancelled"]
            # The first run was cancelled by its own worker before the step started again.
            assert len(starts) == 2 and cancelled, (seen, fleet.output())
            assert cancelled[0] < starts[1]
            assert first_proc.poll() is None  # alive: it started again, with a new id
            log = fleet.output()
            assert "no heartbeat written for" in log and "stops its 1 running job" in log
            report("a cut-off worker's job resumed elsewhere", time.monotonic() - broken)

    run(body)


def test_a_step_holding_the_event_loop_does_not_make_its_worker_look_dead(
    url_durable: str, fleet: Workers
) -> None:
    async def body() -> None:
        async with harness(url_durable) as h:
            # The loop is held for 2.5x stalled_timeout; the margins leave room for a busy
            # machine (the heartbeat thread may be late by a second and still not fence).
            timing = {"heartbeat": 0.4, "stalled_timeout": 2.0}
            await napping(h, fleet, "busy-1", 5.0, **timing)
            fleet.start(**timing)  # would take the job if the first one looked dead
            done = await wait_for(lambda: h.ended("busy-1"), timeout=30)
            assert done.status == "succeeded", fleet.output()
            assert await h.effects_of("busy-1", "Sleep:start") == 1, fleet.output()
            assert "its event loop has not run for" in fleet.output()

    run(body)


def test_the_crash_detection_defaults_fit_a_service() -> None:
    # The figures the docs give: durable.md's Faults, and the worker it describes.
    defaults = {
        name: p.default
        for name, p in inspect.signature(run_worker).parameters.items()
        if name in ("heartbeat_interval", "stalled_timeout", "sweep_interval", "polling_interval")
    }
    assert defaults == {
        "heartbeat_interval": 1.0,
        "stalled_timeout": 5.0,
        "sweep_interval": 1.0,
        "polling_interval": 0.5,
    }
    # Cut off for stalled_timeout - 2 * heartbeat_interval, a worker stops its jobs: 3 s.
    assert defaults["stalled_timeout"] - 2 * defaults["heartbeat_interval"] == 3.0
    # A store write failing mid-run is resumed 5 s later; inputs under a missing key, in 60 s.
    assert (STORE_RETRY_DELAY, MISSING_KEY_DELAY) == (5.0, 60.0)


# -- executions without a job ------------------------------------------------------------------


def test_executions_left_without_a_job_are_resumed_by_a_workers_sweep(
    url_durable: str, fleet: Workers
) -> None:
    async def body() -> None:
        async with harness(url_durable) as h:
            order = pb().Order
            past = datetime.now(UTC) - timedelta(seconds=1)
            await record(
                h,
                "Orders",
                "Confirmation",
                "lost-queued",
                order=order(order_id="q", amount_cents=1),
            )
            await record(
                h,
                "Orders",
                "Confirmation",
                "lost-waiting",
                order=order(order_id="w", amount_cents=1),
            )
            await h.store.suspend_execution("lost-waiting", status="waiting", wake_at=past)
            await record(
                h,
                "Orders",
                "Confirmation",
                "lost-running",
                order=order(order_id="r", amount_cents=1),
            )
            await h.store.start_execution(
                "lost-running", graph="durabletest.Orders", target="durabletest.Confirmation"
            )
            later = datetime.now(UTC) + timedelta(seconds=3)
            await record(
                h, "Orders", "Confirmation", "lost-later", order=order(order_id="l", amount_cents=1)
            )
            await h.store.suspend_execution("lost-later", status="waiting", wake_at=later)
            # Run in process, never enqueued: no job is its business.
            await h.store.start_execution("in-process", graph="g", target="t")
            started = time.monotonic()
            fleet.start()
            lost = ("lost-queued", "lost-waiting", "lost-running", "lost-later")
            for execution_id in lost:
                done = await wait_for(lambda i=execution_id: h.ended(i), timeout=20)  # type: ignore[misc]
                assert done.status == "succeeded", fleet.output()
                assert [j[1] for j in await h.jobs(execution_id)] == ["succeeded"]
            report("executions without a job resumed", time.monotonic() - started)
            late = await h.store.get_execution("lost-later")
            assert late is not None and late.finished_at is not None
            assert late.finished_at >= later  # its job waited for its wake time
            row = await h.store.get_execution("in-process")
            assert row is not None and row.status == "running"
            assert await h.jobs("in-process") == []

    run(body)


def test_a_job_whose_end_was_not_written_is_requeued_by_its_own_live_worker(
    url_durable: str, fleet: Workers
) -> None:
    async def body() -> None:
        async with harness(url_durable) as h:
            fleet.start()
            (worker,) = await worker_ids(h, 1)
            order = pb().Order(order_id="zombie", amount_cents=2)
            await record(h, "Orders", "Confirmation", "zombie", order=order)
            # The worker took the job, and the write of its end met a dropped connection.
            await h.sql(
                "INSERT INTO procrastinate_jobs (queue_name, task_name, lock, queueing_lock, "
                "args, status, worker_id) VALUES ('docket', 'docket:resume_execution', "
                "'docket:zombie', 'docket:zombie', '{\"execution_id\": \"zombie\"}', "
                "'doing', %s)",
                worker,
            )
            done = await wait_for(lambda: h.ended("zombie"), timeout=20)
            assert done.status == "succeeded", fleet.output()
            assert [j[1] for j in await h.jobs("zombie")] == ["succeeded"]
            assert "whose end was not recorded goes back to the queue" in fleet.output()

    run(body)


def test_enqueue_of_an_execution_left_without_a_job_defers_one(url_durable: str) -> None:
    async def body() -> None:
        async with harness(url_durable) as h:
            order = pb().Order(order_id="again", amount_cents=5)
            await record(h, "Orders", "Confirmation", "again", order=order)
            job = await h.enqueue("Orders", "Confirmation", "again", order=order)
            assert job is not None
            assert await h.enqueue("Orders", "Confirmation", "again", order=order) is None
            # A waiting one gets its job at its wake time.
            wake = datetime.now(UTC) + timedelta(seconds=30)
            await record(h, "Orders", "Confirmation", "later", order=order)
            await h.store.suspend_execution("later", status="waiting", wake_at=wake)
            job = await h.enqueue("Orders", "Confirmation", "later", order=order)
            assert job is not None
            ((_, status, scheduled_at, _),) = await h.jobs("later")
            assert (status, scheduled_at) == ("todo", wake)

    run(body)


def test_many_workers_sweeping_at_once_defer_one_job_per_execution(url_durable: str) -> None:
    async def body() -> None:
        async with harness(url_durable) as h:
            ids = [f"swept-{n:02d}" for n in range(40)]
            for execution_id in ids:
                order = pb().Order(order_id=execution_id, amount_cents=1)
                await record(h, "Orders", "Confirmation", execution_id, order=order)
            assert sorted(await jobless_executions(h.app)) == ids
            apps = [
                procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url_durable))
                for _ in range(4)
            ]
            for app in apps:
                install(app)
                await app.open_async()
            try:
                swept = await asyncio.gather(*(sweep_executions(app, ids) for app in apps))
            finally:
                for app in apps:
                    await app.close_async()
            assert sorted(i for found in swept for i in found) == ids
            rows = await h.sql(
                "SELECT lock, count(*) FROM procrastinate_jobs GROUP BY lock ORDER BY lock"
            )
            assert rows == [(f"docket:{i}", 1) for i in ids]
            assert await jobless_executions(h.app) == []

    run(body)


# -- the store and the database ---------------------------------------------------------------


def test_with_the_store_elsewhere_the_worker_runs_without_the_sweep_of_executions(
    pg: PgSession, gen_durable: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    queue = pg.fresh_url()
    assert docket_cli(["db", "migrate", "--url", queue, "--with-queue"]) == 0
    pg.sql(queue, "DROP TABLE docket_executions CASCADE")  # Docket's rows live in SQLite

    async def body() -> None:
        store = await open_store(f"sqlite:///{tmp_path / 'docket.db'}", migrate=True)
        registry = build(store, MemoryEffects())
        app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=queue))
        install(app, registry)
        try:
            async with app.open_async():
                graph = registry.get("durabletest.Orders")
                order = pb().Order(order_id="split", amount_cents=3)
                await enqueue(app, graph, pb().Confirmation, {"order": order}, execution_id="s")
                worker = asyncio.create_task(
                    run_worker(app, registry, install_signal_handlers=False, sweep_interval=0.1)
                )

                async def done() -> ExecutionRecord | None:
                    row = await store.get_execution("s")
                    return row if row is not None and row.status == "succeeded" else None

                await wait_for(done, timeout=20)
                await asyncio.sleep(0.5)  # a few sweeps
                worker.cancel()
                await asyncio.gather(worker, return_exceptions=True)
        finally:
            await store.close()

    with caplog.at_level(logging.WARNING, logger="docket.durable"):
        run(body)
    warned = [r for r in caplog.records if "no docket_executions table" in r.getMessage()]
    assert len(warned) == 1


# Ship's success cannot be written for 6 s (longer than a store may retry a write): the
# server refuses the statement as it does when it shuts down (SQLSTATE 57P01) or when its
# disk is full (53100), which the store reports as StoreUnavailable.
FAIL_SHIP_WRITES = """
CREATE FUNCTION fail_ship_writes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.step = 'Ship' AND NEW.status = 'succeeded' AND clock_timestamp() < %s THEN
    RAISE EXCEPTION 'injected: the write is refused' USING ERRCODE = 'SQLSTATE';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER fail_ship_writes BEFORE INSERT OR UPDATE ON docket_step_runs
  FOR EACH ROW EXECUTE FUNCTION fail_ship_writes();
"""


@pytest.mark.parametrize("sqlstate", ["57P01", "53100"], ids=["server-shutdown", "disk-full"])
def test_a_store_write_failing_mid_run_leaves_the_execution_to_a_resume(
    url_durable: str, fleet: Workers, sqlstate: str
) -> None:
    async def body() -> None:
        async with harness(url_durable) as h:
            until = datetime.now(UTC) + timedelta(seconds=6)
            trigger = FAIL_SHIP_WRITES.replace("SQLSTATE", sqlstate)
            await h.sql(trigger.replace("%s", f"'{until.isoformat()}'::timestamptz"))
            fleet.start()
            order = pb().Order(order_id="cut", amount_cents=10)
            await h.enqueue("Orders", "Confirmation", "cut", order=order)
            seen: list[ExecutionRecord] = []

            async def ended() -> ExecutionRecord | None:
                row = await h.store.get_execution("cut")
                assert row is not None
                if not seen or seen[-1].status != row.status:
                    seen.append(row)
                return row if row.status in ("succeeded", "failed") else None

            done = await wait_for(ended, timeout=30)
            assert done.status == "succeeded", (seen, fleet.output())
            waiting = [row for row in seen if row.status == "waiting"]
            assert waiting, seen
            assert waiting[0].error is not None
            assert waiting[0].error.startswith("StoreUnavailable")
            assert await h.effects_of("cut", "ChargeCard") == 1
            # Ship's end was never recorded: a resume ran it again (each attempt once).
            assert await h.effects_of("cut", "Ship:1") == 1
            assert await h.effects_of("cut", "Ship:2") == 1

    run(body)


def test_a_worker_without_procrastinates_tables_stops_and_says_how_to_create_them(
    pg: PgSession, gen_durable: Path
) -> None:
    fresh = pg.fresh_url()
    assert docket_cli(["db", "migrate", "--url", fresh]) == 0  # Docket's tables only

    async def body() -> None:
        store = await open_store(fresh)
        registry = build(store, MemoryEffects())
        app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=fresh))
        try:
            async with app.open_async():
                with pytest.raises(RuntimeError) as caught:
                    await asyncio.wait_for(
                        run_worker(app, registry, install_signal_handlers=False), 10
                    )
        finally:
            await store.close()
        message = str(caught.value)
        assert "Procrastinate's tables are missing" in message
        assert "procrastinate_jobs" in message
        assert "docketctl db migrate --url URL --with-queue" in message

    run(body)


def test_a_worker_waits_through_a_database_outage_and_carries_on(
    url_durable: str, gen_durable: Path, tmp_path: Path
) -> None:
    server = urlsplit(PG_URL)
    target = (server.hostname or "127.0.0.1", server.port or 5432)
    proxy = Proxy(target)
    through = Workers(proxied(url_durable, proxy), gen_durable, tmp_path)

    async def body() -> None:
        async with harness(url_durable) as h:
            proc = through.start(pool_timeout=1.0)
            order = pb().Order
            await h.enqueue(
                "Orders", "Confirmation", "before", order=order(order_id="b", amount_cents=1)
            )
            done = await wait_for(lambda: h.ended("before"), timeout=20)
            assert done.status == "succeeded", through.output()
            proxy.cut()
            await asyncio.sleep(4)  # several pool timeouts without a connection
            assert proc.poll() is None, through.output()
            Proxy(target, port=proxy.port)  # the database is back
            await h.enqueue(
                "Orders", "Confirmation", "after", order=order(order_id="a", amount_cents=1)
            )
            done = await wait_for(lambda: h.ended("after"), timeout=30)
            assert done.status == "succeeded", through.output()
            assert proc.poll() is None
            assert "waiting for it" in through.output()

    try:
        run(body)
    finally:
        through.stop()


# -- the fault-injection run ------------------------------------------------------------------

# Dead after 3 s of silence; a worker unable to beat for 2 s stops its own jobs.
SUITE = {
    "concurrency": 3,
    "pools": 3,  # about 11 connections a worker: the server's are shared
    "heartbeat": 0.5,
    "stalled_timeout": 3.0,
    "sweep_interval": 0.5,
}

UNIQUE_CHARGE = (
    "CREATE UNIQUE INDEX durable_effects_one_charge ON durable_effects (execution_id, what) "
    "WHERE what = 'ChargeCard'"
)


@pytest.mark.slow
def test_executions_survive_terminated_backends_and_killed_workers(
    url_durable: str, fleet: Workers, pg: PgSession
) -> None:
    pg.sql(url_durable, UNIQUE_CHARGE)
    orders = [f"o-{n:03d}" for n in range(180)]
    flaky = [f"flaky-{n:03d}" for n in range(60)]  # Ship fails twice: two durable retries
    chains = [f"chain-{n:03d}" for n in range(60)]  # two hand-offs each
    everything = orders + flaky + chains
    rng = random.Random(10)
    names = ["w0", "w1", "w2"]

    async def body() -> None:
        async with harness(url_durable) as h:
            procs = {name: fleet.start(**SUITE, app_name=name) for name in names}
            started = time.monotonic()
            for chunk in range(0, len(everything), 20):
                batch = everything[chunk : chunk + 20]
                await asyncio.gather(*(enqueue_one(h, i) for i in batch))
            faults: list[str] = []
            killed_pids: set[int] = set()
            for round_ in range(8):
                await asyncio.sleep(1.5)
                if round_ % 2 == 0:
                    targets = [f"{n}{part}" for n in names for part in ("", "-store")]
                    killed = await terminate(h, targets)
                    faults.append(f"terminated {killed} backends")
                else:
                    name = rng.choice(names)
                    procs[name].send_signal(signal.SIGKILL)
                    procs[name].wait()
                    killed_pids.add(procs[name].pid)
                    procs[name] = fleet.start(**SUITE, app_name=name)
                    faults.append(f"SIGKILLed {name}")

            async def all_ended() -> bool | None:
                rows = await h.sql(
                    "SELECT count(*) FROM docket_executions "
                    "WHERE status NOT IN ('succeeded', 'failed', 'cancelled')"
                )
                return True if rows[0][0] == 0 else None

            try:
                await wait_for(all_ended, timeout=60, every=0.2)
            except AssertionError:
                stuck = await h.sql(
                    "SELECT e.execution_id, e.status, e.wake_at, e.error, "
                    "(SELECT string_agg(j.id || ':' || j.status || ':' || coalesce(j.worker_id, 0),"
                    " ',') FROM procrastinate_jobs j WHERE j.lock = 'docket:' || e.execution_id) "
                    "FROM docket_executions e WHERE e.status NOT IN ('succeeded', 'failed')"
                )
                workers_rows = await h.sql(
                    "SELECT id, now() - last_heartbeat FROM procrastinate_workers"
                )
                raise AssertionError((stuck, workers_rows, faults, fleet.output())) from None
            elapsed = time.monotonic() - started
            decided, lost_writes = await decide_claims(h, killed_pids)
            statuses = await h.sql(
                "SELECT execution_id, status, error FROM docket_executions "
                "WHERE status <> 'succeeded' ORDER BY execution_id"
            )
            assert statuses == [], (statuses, faults)
            (count,) = await h.sql("SELECT count(*) FROM docket_executions")
            assert count == (len(everything),)
            # Each charge exactly once (the unique index stops a second one).
            charges = await h.sql(
                "SELECT execution_id, count(*) FROM durable_effects WHERE what = 'ChargeCard' "
                "GROUP BY execution_id ORDER BY execution_id"
            )
            assert charges == [(i, 1) for i in sorted(orders + flaky)]
            # No step ran in two places at once: the attempts of a step never overlap.
            attempts = await h.sql(
                "SELECT execution_id, step, started_at, finished_at FROM docket_step_attempts "
                "ORDER BY execution_id, step, started_at"
            )
            for before, after in itertools.pairwise(attempts):
                if before[:2] == after[:2]:
                    assert before[3] <= after[2], (before, after)
            # Durable retries went through their jobs: Ship failed (twice, unless a fault
            # interrupted one of those attempts) in each.
            retried = await h.sql(
                "SELECT count(DISTINCT execution_id) FROM durable_effects "
                "WHERE what LIKE 'Ship:failed:%%' AND execution_id LIKE 'flaky-%%'"
            )
            assert retried == [(len(flaky),)]

            # Jobs of killed workers left 'doing' are swept and end, finding nothing to do.
            async def no_job_left() -> bool | None:
                rows = await h.sql(
                    "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
                )
                return True if rows == [(0,)] else None

            await wait_for(no_job_left, timeout=20, every=0.2)
            print(f"[durable] faults: {faults}; claims of killed workers decided: {decided}")
            report(f"{len(everything)} executions through {len(faults)} faults", elapsed)

            # A live worker's AT_MOST_ONCE result write is tried again through dropped
            # connections: no claim is left to a person for a fault of the database alone.
            assert lost_writes == [], (lost_writes, faults)

    run(body, limit=150)


async def decide_claims(h: Harness, killed: set[int]) -> tuple[list[str], list[str]]:
    """Do what a person does for executions failed on the claim of an ``AT_MOST_ONCE`` step.

    A ChargeCard claim whose step was cut (its worker SIGKILLed, or stopping
    its jobs because it could not write its heartbeat) may or may not have
    charged: the person looks at the effect (here, the effects table) and
    settles the step with its result, or releases it, then enqueues the
    execution again. Returns the ids so decided, and those whose claim holder
    was neither killed nor stopped (its result write was lost, not its run).
    """
    decided: list[str] = []
    lost: list[str] = []
    rows = await h.sql(
        "SELECT e.execution_id, r.owner, r.status FROM docket_executions e "
        "JOIN docket_step_runs r USING (execution_id) WHERE e.status = 'failed' "
        "AND e.error LIKE 'StepClaimed:%%' AND r.step = 'ChargeCard' "
        "AND r.status IN ('claimed', 'running', 'cancelled')"
    )
    for execution_id, owner, status in rows:
        if status == "running" and int(owner.split(":")[1]) not in killed:
            lost.append(execution_id)
            continue
        charged = await h.effects_of(execution_id, "ChargeCard")
        graph = h.graph("Orders")
        if charged:
            charge = pb().Charge(charge_id=f"ch-{execution_id}", amount_cents=1)
            await graph.settle("ChargeCard", execution_id, charge)
        else:
            await graph.settle("ChargeCard", execution_id, release=True)
        await enqueue_one(h, execution_id)
        decided.append(f"{execution_id} ({status})")
    for label in decided:
        execution_id = label.split()[0]
        await wait_for(lambda i=execution_id: h.ended(i), timeout=30)  # type: ignore[misc]
    return decided, lost


async def enqueue_one(h: Harness, execution_id: str) -> Any:
    if execution_id.startswith("chain"):
        return await h.enqueue("Chain", "Report", execution_id, seed=pb().Seed(value=1))
    order = pb().Order(order_id=execution_id, amount_cents=10)
    return await h.enqueue("Orders", "Confirmation", execution_id, order=order)
