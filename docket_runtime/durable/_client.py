"""The service's side: enqueue an execution, cancel one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

import procrastinate
import psycopg
from google.protobuf.message import Message

from .. import Graph
from ..stores import Store
from ._jobs import defer_resume, lock_key
from ._record import record_execution

App: TypeAlias = procrastinate.App
"""``procrastinate.App``, as the generated ``enqueue`` and ``schedule`` name it."""

Connection: TypeAlias = psycopg.AsyncConnection[Any]
"""An open psycopg connection, as the generated ``enqueue`` names its ``connection``."""


async def enqueue(
    app: App,
    graph: Graph[Any],
    target: type[Message],
    inputs: Mapping[str, object],
    *,
    execution_id: str,
    connection: Connection | None = None,
    queue: str | None = None,
    priority: int | None = None,
) -> int | None:
    """Record execution ``execution_id`` of ``target`` and defer the job that runs it.

    The untyped form of the generated ``enqueue`` method. ``graph`` is a bound
    graph (the one a worker's registry has under the same name); ``inputs``
    are the graph inputs by keyword, as for ``run_target``, and are checked
    here. The execution id is an idempotency key: enqueueing an id again does
    nothing while it is queued, running or waiting, or once it succeeded; one
    that failed or was cancelled is queued again (its checkpoints kept; the
    steps that ran out of attempts get one more). The same id with another
    graph, target or inputs is a ``ValueError``.

    ``connection`` (an open psycopg connection to the database of the store
    and the queue) joins the caller's transaction: the execution row and its
    job are written there and appear when the caller commits.

    Returns the id of the job deferred, or ``None`` when none was needed.
    """
    needs_job = await record_execution(
        graph, target, inputs, execution_id=execution_id, connection=connection
    )
    if not needs_job:
        return None
    return await defer_resume(
        app, execution_id, queue=queue, priority=priority, connection=connection
    )


async def cancel(app: procrastinate.App, store: Store, execution_id: str) -> bool:
    """Cancel execution ``execution_id``; ``True`` if it is cancelled now.

    A queued or waiting execution is marked ``cancelled`` and its pending job
    cancelled; a running one is marked too, and its job aborted: the worker
    cancels the steps in flight (asyncio cancellation), and no new step
    starts. A job that starts later finds the execution cancelled and does
    nothing. ``False`` when the execution already succeeded or failed, or
    does not exist. Enqueueing the same id again resumes it from its
    checkpoints.
    """
    row = await store.cancel_execution(execution_id)
    if row is None or row.status != "cancelled":
        return False
    key = lock_key(execution_id)
    manager = app.job_manager
    for job in await manager.list_jobs_async(queueing_lock=key, status="todo"):
        assert job.id is not None
        await manager.cancel_job_by_id_async(job.id)
    # Listed after the pending ones: a job that started in between is caught here.
    for job in await manager.list_jobs_async(lock=key, status="doing"):
        assert job.id is not None
        await manager.cancel_job_by_id_async(job.id, abort=True)
    return True
