"""Docket's two Procrastinate tasks, ``resume_execution`` and ``run_schedule``, and installing them.

The task bodies call the queue-independent core (:mod:`._resume`,
:mod:`._schedule`) and act on what it says. Procrastinate's own retry is
never used (``retry=False``): Docket owns retries, and a retry of a job that
re-deferred itself under its queueing lock would hit the queue's unique index
and stay ``doing`` forever. A failure that is not retried marks the
execution ``failed``; the job itself ends normally.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Final, assert_never

import procrastinate
from procrastinate.job_context import AbortReason, JobContext

from ._client import enqueue
from ._jobs import DEFAULT_QUEUE, NAMESPACE, RESUME_TASK, defer_resume
from ._registry import Registry
from ._resume import Continue, Done, Failed, Requeue, StoreFailed, resume

_log = logging.getLogger("docket.durable")

CONTEXT_KEY: Final = "docket_registry"
"""The ``additional_context`` key under which :func:`run_worker` passes the registry."""

_registries: weakref.WeakKeyDictionary[procrastinate.App, Registry] = weakref.WeakKeyDictionary()


def make_blueprint() -> procrastinate.Blueprint:
    """A new blueprint holding Docket's two tasks (``resume_execution``, ``run_schedule``).

    Register it with ``app.add_tasks_from(bp, namespace="docket")``, or let
    :func:`install` do it. Both tasks go to the ``docket`` queue by default,
    never retry on their own (Docket owns retries), and receive the job
    context.
    """
    bp = procrastinate.Blueprint()

    @bp.task(name="resume_execution", queue=DEFAULT_QUEUE, retry=False, pass_context=True)
    async def resume_execution(context: JobContext, execution_id: str) -> str:
        """Resume execution ``execution_id``: compute what its checkpoints lack."""
        return await _resume_job(context, execution_id)

    @bp.task(name="run_schedule", queue=DEFAULT_QUEUE, retry=False, pass_context=True)
    async def run_schedule(context: JobContext, timestamp: int, schedule: str) -> str:
        """Start the run of schedule ``schedule`` due at ``timestamp`` (Unix seconds)."""
        return await _tick(context, timestamp, schedule)

    return bp


blueprint: Final = make_blueprint()
"""Docket's tasks, for ``app.add_tasks_from(blueprint, namespace="docket")``.

A blueprint's tasks can be added to one app only; :func:`install` uses a new
one each time, so prefer it when a process has several apps (tests)."""


def install(app: procrastinate.App, registry: Registry | None = None) -> None:
    """Add Docket's tasks to ``app`` (namespace ``docket``) and bind ``registry`` to it.

    With a registry bound here, any worker of ``app`` can resume executions,
    even one started with ``app.run_worker_async`` rather than
    :func:`run_worker`. Installing twice only rebinds the registry.
    """
    if RESUME_TASK not in app.tasks:
        app.add_tasks_from(make_blueprint(), namespace=NAMESPACE)
    if registry is not None:
        _registries[app] = registry


def _registry_for(context: JobContext) -> Registry:
    found = context.additional_context.get(CONTEXT_KEY) or _registries.get(context.app)
    if not isinstance(found, Registry):
        raise RuntimeError(
            "no Docket registry in this worker: start it with "
            "docket_runtime.durable.run_worker(app, registry), or install(app, registry)"
        )
    return found


async def _resume_job(context: JobContext, execution_id: str) -> str:
    """The body of ``resume_execution``; returns what happened (Procrastinate logs it)."""
    job = context.job

    def stopping() -> bool:
        return context.abort_reason() is not AbortReason.USER_REQUEST

    outcome = await resume(_registry_for(context), execution_id, stopping=stopping)
    match outcome:
        case Done(detail):
            return detail
        case Failed(error):
            return f"failed: {error}"
        case Continue(at, reason):
            await defer_resume(
                context.app, execution_id, schedule_at=at, queue=job.queue, priority=job.priority
            )
            return reason
        case StoreFailed(at, error):
            await defer_resume(
                context.app, execution_id, schedule_at=at, queue=job.queue, priority=job.priority
            )
            return f"store error, resuming later: {error}"
        case Requeue():
            await defer_resume(context.app, execution_id, queue=job.queue, priority=job.priority)
            raise asyncio.CancelledError
        case _:
            assert_never(outcome)


async def _tick(context: JobContext, timestamp: int, schedule_name: str) -> str:
    """The body of ``run_schedule``: build the inputs, enqueue the run of this tick."""
    registry = _registry_for(context)
    found = registry.schedule(schedule_name)
    if found is None:
        _log.error("schedule %r is not defined in this worker", schedule_name)
        return f"unknown schedule {schedule_name!r}"
    given = await found.next_inputs(registry.store)
    execution_id = found.run_id(timestamp)
    await enqueue(
        context.app,
        found.graph,
        found.target,
        given,
        execution_id=execution_id,
        queue=context.job.queue,
    )
    return f"enqueued {execution_id}"
