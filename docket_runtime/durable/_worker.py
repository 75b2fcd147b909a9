"""The worker: run Procrastinate's worker with Docket's registry, and sweep stalled jobs.

A worker killed mid-execution leaves its job ``doing``: :func:`run_worker`
sweeps such stalled jobs (:func:`sweep_stalled`) back to ``todo``, and the
resume computes only what was not checkpointed; an ``AT_MOST_ONCE`` step that
had finished is not run again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any, TypedDict, cast

import procrastinate
from procrastinate import exceptions as queue_errors
from procrastinate.app import WorkerOptions
from procrastinate.jobs import Status
from typing_extensions import Unpack

from ._jobs import DEFAULT_QUEUE, RESUME_TASK, SCHEDULE_TASK
from ._registry import Registry
from ._tasks import CONTEXT_KEY, install
from ._wake import run_woken

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
    polling_interval: float = 2.0,
    heartbeat_interval: float = 10.0,
    stalled_timeout: float = 30.0,
    sweep_interval: float = 30.0,
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
    - every ``sweep_interval`` seconds (and at start), jobs left ``doing`` by
      a worker whose heartbeat is older than ``stalled_timeout`` (a killed
      process) go back to the queue (:func:`sweep_stalled`). The heartbeat is
      written every ``heartbeat_interval`` seconds; keep ``stalled_timeout``
      several times larger, and keep the event loop free (blocking steps run
      in threads): a worker that misses its heartbeats looks dead.
    - ``queues``: the queues to take jobs from (``None``: all).
    - ``install_signal_handlers``: stop gracefully on SIGINT/SIGTERM (running
      executions finish; pass ``shutdown_graceful_timeout`` to cancel them
      after a while: they go back to the queue). ``False`` when embedding.

    Other keyword arguments go to ``app.run_worker_async``.
    """
    if stalled_timeout <= heartbeat_interval:
        raise ValueError("stalled_timeout must be longer than heartbeat_interval")
    install(app)
    fixed: WorkerOptions = {
        "concurrency": concurrency,
        "fetch_job_polling_interval": polling_interval,
        "abort_job_polling_interval": max(polling_interval, 1.0),
        "update_heartbeat_interval": heartbeat_interval,
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
    sweeper = asyncio.create_task(
        _sweep_forever(app, stalled_timeout, sweep_interval), name="docket stalled-jobs sweep"
    )
    try:
        await run_woken(app, settings)
    finally:
        sweeper.cancel()
        await asyncio.gather(sweeper, return_exceptions=True)


async def _sweep_forever(app: procrastinate.App, stalled_timeout: float, every: float) -> None:
    while True:
        try:
            await sweep_stalled(app, stalled_timeout=stalled_timeout)
        except Exception:
            _log.exception("the stalled-jobs sweep failed; trying again in %gs", every)
        await asyncio.sleep(every)


async def sweep_stalled(app: procrastinate.App, *, stalled_timeout: float = 30.0) -> list[int]:
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
        try:
            await manager.retry_job(job)
        except queue_errors.UniqueViolation:
            _log.info("stalled job %s superseded by a queued resume; marked failed", job.id)
            await manager.finish_job_by_id_async(job.id, Status.FAILED, delete_job=False)
        except queue_errors.ConnectorException as err:
            # Another worker's sweep got there first, or the job moved on.
            _log.debug("stalled job %s not retried: %s", job.id, err)
        else:
            _log.warning("job %s of a dead worker goes back to the queue", job.id)
            retried.append(job.id)
    return retried
