"""Docket's jobs on Procrastinate: their names, their locks, and deferring a resume job.

Job arguments carry the execution id only; inputs and checkpoints stay in
Docket's tables. At most one resume job per execution is queued
(Procrastinate's queueing lock ``docket:<execution id>``) and at most one
runs (the lock of the same name).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import procrastinate
from procrastinate import exceptions as queue_errors

NAMESPACE: Final = "docket"
DEFAULT_QUEUE: Final = "docket"
"""The queue Docket's jobs go to unless told otherwise."""
RESUME_TASK: Final = f"{NAMESPACE}:resume_execution"
"""The name of the generic resume task once installed on an app."""
SCHEDULE_TASK: Final = f"{NAMESPACE}:run_schedule"
"""The name of the task that starts one run of a schedule."""


def lock_key(execution_id: str) -> str:
    """The queueing lock and lock of an execution's resume jobs: ``docket:<execution id>``."""
    return f"{NAMESPACE}:{execution_id}"


async def defer_resume(
    app: procrastinate.App,
    execution_id: str,
    *,
    schedule_at: datetime | None = None,
    queue: str | None = None,
    priority: int | None = None,
    connection: Any = None,
) -> int | None:
    """Defer a resume job of ``execution_id``; ``None`` if one is already queued.

    ``connection`` (an open psycopg connection) defers it in the caller's
    transaction, under a savepoint.
    """
    key = lock_key(execution_id)
    try:
        deferrer = app.configure_task(
            RESUME_TASK,
            allow_unknown=False,
            lock=key,
            queueing_lock=key,
            schedule_at=schedule_at,
            queue=queue,
            priority=priority,
            connection=connection,
        )
    except queue_errors.TaskNotFound:
        raise RuntimeError(
            "Docket's tasks are not installed on this app: call "
            "docket_runtime.durable.install(app, registry) first"
        ) from None
    try:
        if connection is not None:
            # A savepoint: a queueing-lock conflict must not abort the caller's transaction.
            async with connection.transaction():
                return await deferrer.defer_async(execution_id=execution_id)
        return await deferrer.defer_async(execution_id=execution_id)
    except queue_errors.AlreadyEnqueued:
        return None
