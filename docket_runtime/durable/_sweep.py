"""Executions that nothing would resume: each gets a resume job.

An enqueued execution that has not ended always has a resume job ``todo``
or ``doing``, except after a fault: its first job was never deferred (the
process died between recording and deferring), the job of its durable retry
or of a resume after a store error could not be deferred (the connection
dropped), or its job ended while the database was gone. Nothing would ever
resume such an execution; :func:`sweep_executions`, which every worker runs
periodically (:func:`~docket_runtime.durable.run_worker`), defers a job for
each, and :func:`ensure_job` does it for one execution when it is enqueued
again.

The sweep works in the queue's database, on the executions table there (the
production layout: one Postgres database for both). Each execution is
locked (``FOR UPDATE SKIP LOCKED``), looked at again and given its job in
one transaction, so that any number of workers sweeping at once defer one
job per execution.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any, Final

import procrastinate
from psycopg.rows import tuple_row

from ..stores import ExecutionRecord
from ._jobs import NAMESPACE, defer_resume, lock_key

_log = logging.getLogger("docket.durable")

_ACTIVE: Final = ("queued", "waiting", "running")
"""The statuses of an execution that a job must carry on."""

_NO_JOB: Final = (
    "NOT EXISTS (SELECT FROM procrastinate_jobs j"
    " WHERE j.lock = %(prefix)s || e.execution_id AND j.status IN ('todo', 'doing'))"
)

_JOBLESS: Final = (
    "SELECT e.execution_id FROM docket_executions e"
    " WHERE e.status IN ('queued', 'waiting', 'running') AND e.inputs IS NOT NULL"
    f" AND {_NO_JOB} ORDER BY e.started_at LIMIT %(limit)s"
)

_LOCK: Final = (
    "SELECT e.status, e.wake_at FROM docket_executions e"
    " WHERE e.execution_id = %(id)s AND e.status IN ('queued', 'waiting', 'running')"
    " AND e.inputs IS NOT NULL FOR UPDATE SKIP LOCKED"
)

_STILL_JOBLESS: Final = f"SELECT {_NO_JOB} FROM (SELECT %(id)s::text AS execution_id) e"

_LAST_QUEUE: Final = (
    "SELECT queue_name FROM procrastinate_jobs WHERE lock = %(key)s ORDER BY id DESC LIMIT 1"
)


async def jobless_executions(app: procrastinate.App, *, limit: int = 500) -> list[str]:
    """The ids of enqueued executions ``queued``, ``waiting`` or ``running`` with no job
    ``todo`` or ``doing``, oldest first (at most ``limit``)."""
    async with app.connector.pool.connection() as conn:  # type: ignore[attr-defined]
        cur = conn.cursor(row_factory=tuple_row)
        await cur.execute(_JOBLESS, {"prefix": f"{NAMESPACE}:", "limit": limit})
        return [row[0] for row in await cur.fetchall()]


async def sweep_executions(app: procrastinate.App, execution_ids: Collection[str]) -> list[str]:
    """Defer a resume job for each of ``execution_ids`` that still has none; return those ids.

    Only executions that were enqueued and are ``queued``, ``waiting`` or
    ``running`` with no job ``todo`` or ``doing`` get one (a ``waiting`` one
    at its ``wake_at`` when that is to come), on the queue of their last job
    (Docket's queue if none is left). Safe with many workers sweeping at once:
    each execution gets one job.
    """
    deferred: list[str] = []
    for execution_id in execution_ids:
        async with app.connector.pool.connection() as conn, conn.transaction():  # type: ignore[attr-defined]
            cur = conn.cursor(row_factory=tuple_row)
            await cur.execute(_LOCK, {"id": execution_id})
            row = await cur.fetchone()
            if row is None:  # ended meanwhile, or another worker's sweep holds it
                continue
            # A statement of its own: it sees jobs committed since the lock was waited for.
            await cur.execute(_STILL_JOBLESS, {"prefix": f"{NAMESPACE}:", "id": execution_id})
            still = await cur.fetchone()
            if still is None or not still[0]:
                continue
            status, wake_at = row
            await cur.execute(_LAST_QUEUE, {"key": lock_key(execution_id)})
            last = await cur.fetchone()
            job = await defer_resume(
                app,
                execution_id,
                schedule_at=_future(wake_at) if status == "waiting" else None,
                queue=None if last is None else last[0],
                connection=conn,
            )
        if job is not None:
            _log.warning(
                "execution %s was %s with no job (a job lost to a fault): resume job %s deferred",
                execution_id,
                status,
                job,
            )
            deferred.append(execution_id)
    return deferred


async def ensure_job(
    app: procrastinate.App, row: ExecutionRecord, *, connection: Any = None
) -> int | None:
    """Defer a resume job for enqueued execution ``row`` if it has none; the job's id.

    ``None`` when the execution ended, or when a job ``todo`` or ``doing``
    carries it already. ``connection`` (the caller's psycopg connection)
    looks and defers in the caller's transaction.
    """
    if row.status not in _ACTIVE:
        return None
    key = lock_key(row.execution_id)
    if connection is not None:
        cur = connection.cursor(row_factory=tuple_row)
        await cur.execute(_STILL_JOBLESS, {"prefix": f"{NAMESPACE}:", "id": row.execution_id})
        found = await cur.fetchone()
        if found is None or not found[0]:
            return None
    else:
        jobs = await app.job_manager.list_jobs_async(lock=key)
        if any(job.status in ("todo", "doing") for job in jobs):
            return None
    at = _future(row.wake_at) if row.status == "waiting" else None
    return await defer_resume(app, row.execution_id, schedule_at=at, connection=connection)


def _future(when: datetime | None) -> datetime | None:
    """``when`` if it is still to come, else ``None`` (at once)."""
    return when if when is not None and when > datetime.now(UTC) else None
