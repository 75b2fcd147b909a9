"""The service's side, and the operator's: enqueue an execution, cancel one, enqueue
one again from its stored inputs, see its jobs."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeAlias

import procrastinate
import psycopg
from google.protobuf.message import Message

from .. import Graph
from ..stores import Store
from ._jobs import defer_resume, lock_key
from ._record import record_execution
from ._sweep import ensure_job

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
    nothing once it succeeded, nor while it is queued, running or waiting
    with a job to carry it on; one left without a job by a fault (a job that
    could not be deferred) gets one; one that failed or was cancelled is
    queued again (its checkpoints kept; the steps that ran out of attempts
    get one more). The same id with another graph, target or inputs is a
    ``ValueError``.

    ``connection`` (an open psycopg connection to the database of the store
    and the queue) joins the caller's transaction: the execution row and its
    job are written there and appear when the caller commits.

    Returns the id of the job deferred, or ``None`` when none was needed.
    """
    row = await record_execution(
        graph, target, inputs, execution_id=execution_id, connection=connection
    )
    if row.status != "queued":
        return await ensure_job(app, row, connection=connection)
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


async def requeue(
    app: procrastinate.App,
    store: Store,
    execution_id: str,
    *,
    queue: str | None = None,
    priority: int | None = None,
) -> int | None:
    """Enqueue execution ``execution_id`` again from the inputs it was enqueued with.

    For an operator, who has no bound graph: the stored inputs are taken as
    they are. A ``failed`` or ``cancelled`` execution goes back to ``queued``
    (its checkpoints kept, as with :func:`enqueue`) and a resume job is
    deferred; a ``queued`` or ``waiting`` one only gets a job if it has none
    pending (a crash between recording and deferring; a lost retry job), at
    its ``wake_at`` when that is still to come. ``queue`` defaults to the
    queue of the execution's last job. ``app`` needs Docket's tasks
    (:func:`install`).

    Returns the id of the job deferred, or ``None`` when a job was pending
    already. Raises ``LookupError`` when there is no such execution and
    ``ValueError`` when it cannot be enqueued again: it ran in process (no
    inputs stored), it is running, or it succeeded.
    """
    row = await store.get_execution(execution_id)
    if row is None:
        raise LookupError(f"no execution {execution_id!r}")
    if row.inputs is None:
        raise ValueError(
            f"execution {execution_id!r} ran in process, not enqueued: no inputs are stored "
            "to enqueue it with (run it again from your code with the same execution_id)"
        )
    if row.status in ("failed", "cancelled"):
        row = await store.queue_execution(
            execution_id, graph=row.graph, target=row.target, inputs=row.inputs
        )
    if row.status not in ("queued", "waiting"):
        raise ValueError(
            f"execution {execution_id!r} is {row.status}: only a failed or cancelled one is "
            "enqueued again (or a queued or waiting one that lost its job)"
        )
    if queue is None:
        jobs = list(await app.job_manager.list_jobs_async(lock=lock_key(execution_id)))
        queue = jobs[-1].queue if jobs else None
    wake = row.wake_at if row.status == "waiting" else None
    at = wake if wake is not None and wake > datetime.now(UTC) else None
    return await defer_resume(app, execution_id, schedule_at=at, queue=queue, priority=priority)


@dataclass(frozen=True, slots=True)
class JobState:
    """A resume job of an execution that is waiting to run (``todo``) or running (``doing``).

    ``stalled`` is true for a ``doing`` job whose worker sent no heartbeat for
    the stalled timeout (the process is likely dead; :func:`run_worker`'s
    sweep puts such jobs back to the queue).
    """

    id: int
    status: Literal["todo", "doing"]
    queue: str
    scheduled_at: datetime | None
    worker_id: int | None
    stalled: bool


async def job_states(
    app: procrastinate.App, execution_ids: Collection[str], *, stalled_timeout: float = 5.0
) -> dict[str, list[JobState]]:
    """The pending and running resume jobs of each of ``execution_ids``, oldest first.

    ``stalled_timeout`` is the worker's (:func:`run_worker`): a ``doing`` job
    whose worker's heartbeat is older is ``stalled``. An execution with no
    such job maps to an empty list.
    """
    manager = app.job_manager
    stalled = {
        job.id for job in await manager.get_stalled_jobs(seconds_since_heartbeat=stalled_timeout)
    }
    found: dict[str, list[JobState]] = {}
    for execution_id in execution_ids:
        states = []
        for job in await manager.list_jobs_async(lock=lock_key(execution_id)):
            status = job.status
            if job.id is None or status not in ("todo", "doing"):
                continue
            states.append(
                JobState(
                    id=job.id,
                    status="todo" if status == "todo" else "doing",
                    queue=job.queue,
                    scheduled_at=job.scheduled_at,
                    worker_id=job.worker_id,
                    stalled=status == "doing" and job.id in stalled,
                )
            )
        found[execution_id] = states
    return found
