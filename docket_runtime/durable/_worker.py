"""The worker: run Procrastinate's worker with Docket's registry, its heartbeat and sweeps.

A worker killed mid-execution leaves its job ``doing``: :func:`run_worker`
sweeps such stalled jobs (:func:`sweep_stalled`) back to ``todo``, and the
resume computes only what was not checkpointed; an ``AT_MOST_ONCE`` step that
had finished is not run again. The heartbeat that tells live workers from
dead ones is Docket's (:mod:`._heartbeat`); executions that a fault left
without a job get one from the other sweep (:mod:`._sweep`); a worker that
loses the database waits for it and starts again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TypedDict, cast

import procrastinate
import psycopg
from procrastinate import exceptions as queue_errors
from procrastinate.app import WorkerOptions
from procrastinate.jobs import Status
from procrastinate.worker import Worker
from psycopg.rows import tuple_row
from psycopg_pool import PoolTimeout
from typing_extensions import Unpack

from ._heartbeat import Heartbeat
from ._jobs import DEFAULT_QUEUE, RESUME_TASK, SCHEDULE_TASK
from ._registry import Registry
from ._sweep import jobless_executions, sweep_executions
from ._tasks import CONTEXT_KEY, install
from ._wake import attach

_log = logging.getLogger("docket.durable")


class WorkerExtras(TypedDict, total=False):
    """The options of ``App.run_worker_async`` that :func:`run_worker` passes through."""

    name: str
    wait: bool
    shutdown_graceful_timeout: float
    listen_notify: bool
    delete_jobs: str
    additional_context: dict[str, Any]
    task_middleware: list[Any]
    worker_middleware: list[Any]


async def run_worker(
    app: procrastinate.App,
    registry: Registry,
    *,
    queues: Iterable[str] | None = (DEFAULT_QUEUE,),
    concurrency: int = 1,
    polling_interval: float = 0.5,
    heartbeat_interval: float = 1.0,
    stalled_timeout: float = 5.0,
    sweep_interval: float = 1.0,
    install_signal_handlers: bool = True,
    **options: Unpack[WorkerExtras],
) -> None:
    """Run a Procrastinate worker that resumes Docket executions (``app`` must be open).

    - ``polling_interval`` (seconds): the fallback poll. New jobs wake the
      worker at once through LISTEN/NOTIFY, and a job scheduled for later (a
      durable retry's ``wake_at``) through a timer set to the earliest one
      (:mod:`._wake`); the poll finds what those miss, such as a job the
      stalled-jobs sweep puts back (an update, which notifies nobody). Each
      idle worker costs one cheap query per poll.
    - crash detection: the worker writes its heartbeat every
      ``heartbeat_interval`` seconds, from a thread with a connection of its
      own (:mod:`._heartbeat`), so a busy event loop does not stop it and a
      failed write is retried at the next beat. Every ``sweep_interval``
      seconds (and at start) each worker puts back to the queue the jobs of
      workers silent for ``stalled_timeout`` seconds (:func:`sweep_stalled`):
      a killed worker's executions resume within about ``stalled_timeout +
      sweep_interval``. A worker that could write no heartbeat for
      ``stalled_timeout - 2 * heartbeat_interval`` seconds (its database
      unreachable) stops its own jobs first, so that a step never runs in two
      workers at once; keep ``stalled_timeout`` above ``2 * heartbeat_interval``
      and above the database outages a worker should ride out while running.
    - every ``sweep_interval`` seconds each worker also gives a resume job to
      executions that a fault left without one (:mod:`._sweep`), once seen
      in two sweeps in a row.
    - the database: a worker on a database without Procrastinate's tables
      stops at once with a ``RuntimeError`` saying how to create them; one
      that loses the database (an outage, a restart) waits for it and starts
      again, instead of exiting.
    - ``queues``: the queues to take jobs from (``None``: all).
    - ``install_signal_handlers``: stop gracefully on SIGINT/SIGTERM (running
      executions finish; pass ``shutdown_graceful_timeout`` to cancel them
      after a while: they go back to the queue). ``False`` when embedding.

    Other keyword arguments go to ``app.run_worker_async``.
    """
    if stalled_timeout <= 2 * heartbeat_interval:
        raise ValueError(
            f"stalled_timeout ({stalled_timeout:g}s) must be longer than twice "
            f"heartbeat_interval ({heartbeat_interval:g}s)"
        )
    install(app)
    # Docket's heartbeat thread, the schema check and the sweep of executions need a psycopg
    # pool (Postgres); another connector (an in-memory one, in tests) keeps Procrastinate's.
    threaded = isinstance(app.connector, procrastinate.PsycopgConnector)
    fixed: WorkerOptions = {
        "concurrency": concurrency,
        "fetch_job_polling_interval": polling_interval,
        "abort_job_polling_interval": max(polling_interval, 1.0),
        # Docket beats from a thread (see Heartbeat); Procrastinate's own beat never comes.
        "update_heartbeat_interval": _NEVER if threaded else heartbeat_interval,
        "stalled_worker_timeout": stalled_timeout,
        "install_signal_handlers": install_signal_handlers,
    }
    settings = cast(WorkerOptions, {**fixed, **options})
    if queues is not None:
        settings["queues"] = list(queues)
    settings["additional_context"] = {
        **options.get("additional_context", {}),
        CONTEXT_KEY: registry,
    }
    if threaded:
        await check_queue_schema(app)
    beat = _Beat(heartbeat_interval, stalled_timeout, sweep_interval) if threaded else None
    sweeper = asyncio.create_task(
        _sweep_forever(app, stalled_timeout, sweep_interval, executions=threaded),
        name="docket sweeps",
    )
    try:
        await _run_until_stopped(app, settings, beat)
    finally:
        sweeper.cancel()
        await asyncio.gather(sweeper, return_exceptions=True)


_POOL_ONLY: Final = frozenset({"row_factory", "autocommit"})
"""Connection arguments of Procrastinate's pool that the heartbeat sets its own way."""

_NEVER: Final = 10.0**9
"""A heartbeat interval for Procrastinate's own beat that never comes."""


@dataclass(frozen=True, slots=True)
class _Beat:
    """A worker's heartbeat and sweep settings (seconds)."""

    interval: float
    stalled_timeout: float
    sweep_interval: float


async def _run_until_stopped(
    app: procrastinate.App, settings: WorkerOptions, beat: _Beat | None
) -> None:
    """Run Procrastinate's worker; start it again after it lost the database or fenced itself."""
    while True:
        try:
            fenced = await _run_once(app, settings, beat)
        except Exception as err:
            if not connection_lost(err):
                raise
            _log.warning("the worker lost the database (%s); waiting for it", err)
        else:
            if not fenced:
                return
        await wait_for_database(app)


async def _run_once(app: procrastinate.App, settings: WorkerOptions, beat: _Beat | None) -> bool:
    """One run of Procrastinate's worker; ``True`` if it stopped because its heartbeat was lost."""
    running: set[asyncio.Task[Any]] = set()
    inflight: set[int] = set()  # ids of the jobs taken, until their end is written (or not)

    async def track(call_next: Any, context: Any, worker: Any) -> Any:
        task = asyncio.current_task()
        # Only Docket's jobs are stopped when the heartbeat is lost: only they are swept.
        if task is None or context.job.task_name not in (RESUME_TASK, SCHEDULE_TASK):
            return await call_next()
        job_id = context.job.id
        inflight.add(job_id)
        task.add_done_callback(lambda _: inflight.discard(job_id))
        running.add(task)
        try:
            return await call_next()
        finally:
            running.discard(task)

    run_settings = cast(
        WorkerOptions,
        {**settings, "worker_middleware": [*settings.get("worker_middleware", []), track]},
    )
    # Built here rather than by app.run_worker_async: the heartbeat needs its id.
    worker: Any = Worker(app=app, **cast(dict[str, Any], {**app.worker_defaults, **run_settings}))
    wake = attach(worker)
    try:
        return await _drive(app, worker, beat, running, inflight)
    finally:
        if wake is not None:
            wake.close()


async def _drive(
    app: procrastinate.App,
    worker: Any,
    beat: _Beat | None,
    running: set[asyncio.Task[Any]],
    inflight: set[int],
) -> bool:
    """Run ``worker`` (with the heartbeat of ``beat``, if any) until it stops; ``True`` if it
    stopped because its heartbeat was lost."""
    if beat is None:
        await worker.run()
        return False
    lost: list[str] = []

    def fence(reason: str) -> None:
        lost.append(reason)
        _log.error(
            "worker %s: %s; it stops its %d running job(s) now, before another worker may "
            "take them over, and starts again once the database answers",
            worker.worker_id,
            reason,
            len(running),
        )
        for task in running:
            task.cancel()
        worker.stop()

    run = asyncio.create_task(worker.run(), name="docket worker")
    heart: Heartbeat | None = None
    watch: asyncio.Task[None] | None = None
    own: asyncio.Task[None] | None = None
    try:
        while worker.worker_id is None and not run.done():
            await asyncio.sleep(0.005)
        if worker.worker_id is not None:
            pool = app.connector.pool  # type: ignore[attr-defined]
            heart = Heartbeat(
                pool.conninfo,
                {k: v for k, v in (pool.kwargs or {}).items() if k not in _POOL_ONLY},
                worker_id=worker.worker_id,
                interval=beat.interval,
                stalled_timeout=beat.stalled_timeout,
                loop=asyncio.get_running_loop(),
                on_lost=fence,
            )
            heart.start()
            watch = asyncio.create_task(heart.watch(), name="docket heartbeat watch")
            own = asyncio.create_task(
                _sweep_own(app, worker, inflight, beat.sweep_interval), name="docket own jobs"
            )
        await asyncio.shield(run)
    except asyncio.CancelledError:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        raise
    finally:
        if heart is not None:
            heart.stop()
        for task in (watch, own):
            if task is not None:
                task.cancel()
    return bool(lost)


def connection_lost(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) says the database could not be reached."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, psycopg.OperationalError | psycopg.InterfaceError | PoolTimeout):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


async def wait_for_database(app: procrastinate.App, *, every: float = 1.0) -> None:
    """Return once ``app``'s database answers, trying every ``every`` seconds."""
    started = time.monotonic()
    while True:
        try:
            if await asyncio.wait_for(app.check_connection_async(), timeout=max(every, 5.0)):
                break
        except Exception as err:  # any failure means: not yet
            _log.debug("database not reachable yet: %s", err)
        await asyncio.sleep(every)
    _log.warning(
        "the database answers again (after %.1fs); the worker starts again",
        time.monotonic() - started,
    )


async def check_queue_schema(app: procrastinate.App) -> None:
    """Raise a ``RuntimeError`` naming the fix when Procrastinate's tables are missing.

    A database that cannot be reached is waited for (the worker is started
    before the database, or during an outage).
    """
    while True:
        try:
            row = await app.connector.execute_query_one_async(
                "SELECT to_regclass('procrastinate_jobs') IS NOT NULL AS found, "
                "current_database() AS db, current_schemas(false)::text AS path"
            )
            break
        except Exception as err:
            if not connection_lost(err):
                raise
            _log.warning("the worker cannot reach the database (%s); waiting for it", err)
            await wait_for_database(app)
    if not row["found"]:
        raise RuntimeError(
            f"Procrastinate's tables are missing in database {row['db']!r} (no "
            f"procrastinate_jobs in schemas {row['path']}): create them with "
            "'docketctl db migrate --url URL --with-queue' (or "
            "docket_runtime.durable.apply_queue_schema(url)), then start the worker again"
        )


async def _sweep_forever(
    app: procrastinate.App, stalled_timeout: float, every: float, *, executions: bool
) -> None:
    """Sweep stalled jobs, then executions without a job, every ``every`` seconds."""
    seen: set[str] = set()
    failing = False
    while True:
        try:
            await sweep_stalled(app, stalled_timeout=stalled_timeout)
            if executions:
                # Acted on once seen twice: a job being deferred right now is not a lost one.
                try:
                    jobless = await jobless_executions(app)
                except psycopg.errors.UndefinedTable:
                    _log.warning(
                        "no docket_executions table in the queue's database: executions "
                        "left without a job are not swept (docketctl executions list --stuck)"
                    )
                    executions, jobless = False, []
                await sweep_executions(app, [i for i in jobless if i in seen])
                seen = set(jobless)
        except Exception as err:
            if not connection_lost(err):
                _log.exception("the sweep failed; trying again in %gs", every)
            elif not failing:
                _log.warning(
                    "the sweep cannot reach the database (%s); trying every %gs", err, every
                )
            failing = connection_lost(err)
        else:
            failing = False
        await asyncio.sleep(every)


async def sweep_stalled(app: procrastinate.App, *, stalled_timeout: float = 5.0) -> list[int]:
    """Put Docket's jobs stuck in ``doing`` by dead workers back to ``todo``; return their ids.

    A job is stalled when the worker that took it sent no heartbeat for
    ``stalled_timeout`` seconds (or was pruned). When another resume job of
    the same execution is already queued, the stalled one is marked
    ``failed`` instead (the queued one resumes the execution). Only Docket's
    tasks are touched: other tasks may not be safe to run twice.
    """
    manager = app.job_manager
    retried: list[int] = []
    for job in await manager.get_stalled_jobs(seconds_since_heartbeat=stalled_timeout):
        if job.task_name not in (RESUME_TASK, SCHEDULE_TASK) or job.id is None:
            continue
        if await _requeue_job(app, job.id, "of a dead worker"):
            retried.append(job.id)
    return retried


async def _requeue_job(app: procrastinate.App, job_id: int, whose: str) -> bool:
    """Put ``doing`` job ``job_id`` back to ``todo`` (``True``), or mark it ``failed`` when
    a resume of the same execution is queued already (``False``)."""
    manager = app.job_manager
    try:
        await manager.retry_job_by_id_async(job_id, retry_at=datetime.now(UTC))
    except queue_errors.UniqueViolation:
        _log.info("job %s %s superseded by a queued resume; marked failed", job_id, whose)
        await manager.finish_job_by_id_async(job_id, Status.FAILED, delete_job=False)
        return False
    except queue_errors.ConnectorException as err:
        # Another worker's sweep got there first, or the job moved on.
        _log.debug("job %s %s not retried: %s", job_id, whose, err)
        return False
    _log.warning("job %s %s goes back to the queue", job_id, whose)
    return True


_MINE: Final = (
    "SELECT id FROM procrastinate_jobs WHERE worker_id = %(worker)s AND status = 'doing' "
    "AND task_name = ANY(%(tasks)s)"
)


async def _sweep_own(app: procrastinate.App, worker: Any, inflight: set[int], every: float) -> None:
    """Put back to the queue this worker's jobs left ``doing`` though it does not run them.

    A job whose end could not be written (its connection dropped) stays
    ``doing`` under a live worker, whose heartbeat keeps the stalled-jobs
    sweep away: the execution's next job would wait for its lock for good.
    A job is taken for such once seen in two passes in a row, so that one
    fetched just now is not.
    """
    seen: set[int] = set()
    while True:
        await asyncio.sleep(every)
        try:
            async with app.connector.pool.connection() as conn:  # type: ignore[attr-defined]
                cur = conn.cursor(row_factory=tuple_row)
                tasks = [RESUME_TASK, SCHEDULE_TASK]
                await cur.execute(_MINE, {"worker": worker.worker_id, "tasks": tasks})
                mine = {row[0] for row in await cur.fetchall()} - inflight
            for job_id in mine & seen:
                await _requeue_job(app, job_id, "whose end was not recorded")
            seen = mine
        except Exception as err:
            if not connection_lost(err):
                _log.exception("the sweep of this worker's own jobs failed")
