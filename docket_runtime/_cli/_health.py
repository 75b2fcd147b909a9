"""Is an execution making progress, or stuck? Its records, its owners, its queue jobs.

An owner (``host:pid:token``) is alive or dead when it names a process of this
host (:func:`~docket_runtime._runner.owner_alive`). For an execution of a
durable worker on another host, the worker running it now tells: its
Procrastinate job's heartbeat (``docket_runtime.durable.job_states``), when the
queue's tables are in the database. Otherwise it cannot be told.

An execution is stuck when it will not end without a human:

- a ``claimed`` or ``running`` step run whose owner is dead (the execution may
  even have ended: a durable resume that met the claim failed with
  ``StepClaimed``);
- ``running``, and its process is dead, or (durable) no job runs it, or the
  worker running its job sent no heartbeat for the stalled timeout;
- ``queued``, durable, and no job is queued for it (a crash between recording
  it and deferring its job), or its job has waited longer than the grace;
- ``waiting``, and its retry was due longer ago than the grace, or (durable)
  no job is scheduled for it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

from .._runner import owner_alive
from ..stores import ExecutionRecord, ExecutionStatus, StepRunRecord, Store, redact_url
from ._common import Failure
from ._render import relative, span, when

if TYPE_CHECKING:
    import procrastinate

    from ..durable import JobState

ACTIVE: Final[tuple[ExecutionStatus, ...]] = ("queued", "running", "waiting")
"""The statuses of an execution that has not ended."""


@dataclass(frozen=True, slots=True)
class Health:
    """One execution as an operator sees it.

    ``execution`` is ``None`` for an execution that was not recorded but has
    step runs (claims are taken without ``record=True``). ``jobs`` is ``None``
    when the queue cannot be seen (not a durable execution, or no queue).
    ``owners`` tells, by owner, whether it is alive (``None``: cannot tell).
    ``stuck`` says why the execution will not end on its own (empty: it is fine).
    """

    execution_id: str
    execution: ExecutionRecord | None
    runs: list[StepRunRecord]
    jobs: list[JobState] | None
    owners: dict[str, bool | None]
    stuck: list[str]

    @property
    def durable(self) -> bool:
        """Whether it was enqueued for durable workers."""
        return self.execution is not None and self.execution.inputs is not None

    @property
    def alive(self) -> bool:
        """Whether something is known to be running it right now."""
        if self.jobs and any(j.status == "doing" and not j.stalled for j in self.jobs):
            return True
        return any(not run.finished and self.owners[run.owner] for run in self.runs)


def assess(
    execution_id: str,
    execution: ExecutionRecord | None,
    runs: list[StepRunRecord],
    jobs: list[JobState] | None,
    *,
    now: datetime,
    grace: timedelta,
    stalled_timeout: float,
) -> Health:
    """The :class:`Health` of one execution from its records and its queue jobs."""
    doing = [j for j in jobs or () if j.status == "doing"]
    runner = None if not doing else not all(j.stalled for j in doing)
    unfinished = {run.owner for run in runs if not run.finished}

    def alive(owner: str) -> bool | None:
        found = owner_alive(owner)
        if found is not None or jobs is None:
            return found
        if runner is not None:
            return runner  # the worker running the execution now
        return False if owner in unfinished else None  # a step in flight, and no job runs it

    owners = {run.owner: alive(run.owner) for run in runs}
    stuck = [
        f"step {run.step} is {run.status} by {run.owner}, which is dead"
        for run in runs
        if not run.finished and owners[run.owner] is False
    ]
    status = None if execution is None else execution.status
    if execution is not None and status in ACTIVE:
        stuck += _why_stuck(execution, runs, owners, jobs, now, grace, stalled_timeout)
    return Health(execution_id, execution, runs, jobs, owners, list(dict.fromkeys(stuck)))


def _why_stuck(
    execution: ExecutionRecord,
    runs: list[StepRunRecord],
    owners: dict[str, bool | None],
    jobs: list[JobState] | None,
    now: datetime,
    grace: timedelta,
    stalled_timeout: float,
) -> list[str]:
    """Why an execution that has not ended will not end on its own, from its status."""
    status, why = execution.status, []
    if jobs is not None:  # durable, and the queue can be seen
        doing = [j for j in jobs if j.status == "doing"]
        if not jobs:
            what = "runs it" if status == "running" else "is queued for it"
            why.append(f"{status}, but no job {what}")
        elif status == "running" and doing and all(j.stalled for j in doing):
            why.append(
                f"the worker of its job #{doing[0].id} sent no heartbeat for {stalled_timeout:g}s"
            )
    elif status == "running" and runs and all(run.finished for run in runs):
        latest = max(runs, key=lambda run: run.started_at)
        if owners[latest.owner] is False:
            why.append(f"its process {latest.owner} is dead")
    wake = execution.wake_at
    if status == "waiting" and wake is not None and wake < now - grace:
        why.append(f"its retry was due at {when(wake)} ({relative(wake, now)})")
    return why


@asynccontextmanager
async def queue_app(url: str, *, required: bool = False) -> AsyncIterator[procrastinate.App | None]:
    """A Procrastinate app on the database at ``url``, open, with Docket's tasks installed;
    ``None`` when there is no queue there (not Postgres, no ``procrastinate_jobs``, or
    Procrastinate not installed), unless ``required``: then that is a :class:`Failure`."""
    if not url.lower().startswith(("postgresql://", "postgres://")):
        if required:
            raise Failure(
                "durable executions run on a Procrastinate queue in Postgres, "
                f"not {redact_url(url)}"
            )
        yield None
        return
    try:
        import procrastinate

        from ..durable import install
    except ImportError as err:
        if required:
            raise Failure(str(err)) from err
        yield None
        return
    connector = procrastinate.PsycopgConnector(conninfo=url, min_size=1, max_size=2)
    app = procrastinate.App(connector=connector)
    install(app)
    try:
        await app.open_async()
    except Exception as err:  # the driver's errors: one line, no traceback
        raise Failure(f"cannot open Procrastinate's queue at {redact_url(url)}: {err}") from err
    try:
        try:
            present = await app.job_manager.check_connection_async()
        except Exception as err:
            raise Failure(f"cannot read Procrastinate's queue at {redact_url(url)}: {err}") from err
        if not present and required:
            raise Failure(
                "no Procrastinate tables in this database "
                f"(`docketctl db migrate --with-queue --url {redact_url(url)}` creates them)"
            )
        yield app if present else None
    finally:
        await app.close_async()


async def queue_tables(url: str) -> bool | None:
    """Whether the database at ``url`` has Procrastinate's tables; ``None`` when it cannot
    have them (not Postgres) or they cannot be looked for (Procrastinate not installed)."""
    if not url.lower().startswith(("postgresql://", "postgres://")):
        return None
    try:
        import procrastinate  # noqa: F401
    except ImportError:
        return None
    async with queue_app(url) as app:
        return app is not None


async def health_of(
    store: Store,
    url: str,
    executions: Sequence[tuple[str, ExecutionRecord | None]],
    *,
    now: datetime,
    grace: timedelta,
    stalled_timeout: float,
) -> list[Health]:
    """The :class:`Health` of each execution, in the order given. The queue at ``url``
    is looked at only when some of them are durable."""
    durable = [eid for eid, row in executions if row is not None and row.inputs is not None]
    jobs: dict[str, list[JobState]] = {}
    if durable:
        async with queue_app(url) as app:
            if app is not None:
                from ..durable import job_states

                jobs = await job_states(app, durable, stalled_timeout=stalled_timeout)
    found = []
    for execution_id, row in executions:
        runs = await store.get_step_runs(execution_id)
        found.append(
            assess(
                execution_id,
                row,
                runs,
                jobs.get(execution_id),
                now=now,
                grace=grace,
                stalled_timeout=stalled_timeout,
            )
        )
    return found


def describe_jobs(jobs: Sequence[JobState], now: datetime) -> str:
    """The jobs of an execution on one line, for people."""
    parts = []
    for job in jobs:
        if job.status == "doing":
            worker = "no worker" if job.worker_id is None else f"worker #{job.worker_id}"
            state = "no heartbeat" if job.stalled else "alive"
            parts.append(f"#{job.id} running on {worker} ({state}), queue {job.queue}")
        else:
            at = job.scheduled_at
            due = (
                "now"
                if at is None or at <= now
                else f"at {when(at)}, in {span((at - now).total_seconds())}"
            )
            parts.append(f"#{job.id} waiting to run {due}, queue {job.queue}")
    return "; ".join(parts) or "none pending"
