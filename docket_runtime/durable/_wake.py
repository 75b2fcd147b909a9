"""Waking Procrastinate's worker when a job becomes runnable, instead of at its next poll.

Procrastinate's worker fetches jobs when a LISTEN/NOTIFY notification sets
its new-job flag, and at each poll. Three cases are left to the poll, which
:func:`attach` (called by ``run_worker``) closes:

- **a lost notification**: the fetch loop clears the flag after every fetch,
  so a notification that arrives while a fetch is in flight (a job inserted
  just after the fetch's snapshot) is erased and its job waits for the poll.
  The flag here keeps a notification received since the previous clear: at
  worst one more fetch, which finds nothing.
- **a job scheduled for later** (a durable retry, a ``schedule_at`` resume):
  its notification fires at insert, when it is not due yet. Each time the
  fetch loop runs dry, one query finds the earliest due ``todo`` job of the
  worker's queues, and a timer sets the flag at that time (the delay is
  computed by the database clock, like ``scheduled_at``).
- **a lock released**: a job deferred while another job holding its lock
  runs (a hand-off) cannot be fetched until that job ends, and its end
  notifies nobody. When a job that held a lock ends while the fetch loop is
  idle (``concurrency`` above 1), the flag is set.

The poll stays as the fallback (a dropped LISTEN connection, a job deferred
by another database client with notifications off).

This reaches into Procrastinate's worker (``App._worker``, and on the
``Worker``: ``_new_job_event``, ``_fetch_and_process_jobs``,
``_process_job``, ``_stop_event``, ``queues``), as of Procrastinate 3.10.
:func:`attach` checks that those are there and leaves the worker as it is
(polling only, with a warning) when they are not; tests/test_durable_wake.py
fails then, and when they are there but no longer do what this relies on.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Final

import procrastinate
from procrastinate.job_context import JobContext
from procrastinate.worker import Worker

_log = logging.getLogger("docket.durable")

NEXT_DUE: Final = (
    "SELECT extract(epoch FROM min(scheduled_at) - now())::float8 AS delay "
    "FROM procrastinate_jobs WHERE status = 'todo' AND scheduled_at > now() "
    "AND (%(queues)s::varchar[] IS NULL OR queue_name = ANY(%(queues)s))"
)
"""Seconds until the earliest job of ``queues`` (``NULL``: all) that is scheduled and not due."""

LATE_BY: Final = 0.001
"""Seconds added to a timer: ``scheduled_at <= now()`` must hold when the fetch runs."""


class NewJobFlag(asyncio.Event):
    """The worker's new-job flag, whose ``clear`` keeps a ``set`` made since the last clear.

    The fetch loop clears the flag once a fetch returns; a ``set`` made
    while that fetch was in flight may announce a job the fetch did not
    see. That ``set`` survives one clear, so the loop fetches once more.
    """

    def __init__(self) -> None:
        super().__init__()
        self.sets = 0
        self._seen = 0

    def set(self) -> None:
        self.sets += 1
        super().set()

    def clear(self) -> None:
        if self.sets != self._seen:
            self._seen = self.sets
            return
        super().clear()


class Wake:
    """The wake-ups of one worker: the guarded flag, the due-job timer, the lock-release wake."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.flag = NewJobFlag()
        self.timer: asyncio.TimerHandle | None = None
        self.idle = False
        queues = worker.queues
        self.queues = None if queues is None else list(queues)

    def install(self) -> None:
        worker = self.worker
        worker._new_job_event = self.flag
        fetch: Callable[[], Awaitable[None]] = worker._fetch_and_process_jobs
        process: Callable[[JobContext], Awaitable[None]] = worker._process_job

        async def fetch_then_arm() -> None:
            self.idle = False
            try:
                await fetch()
            finally:
                self.idle = True
            if not worker._stop_event.is_set():
                await self.arm()

        async def process_then_wake(context: JobContext) -> None:
            try:
                await process(context)
            finally:
                # A job that held a lock may have blocked the job a fetch just missed.
                if self.idle and context.job.lock is not None:
                    self.flag.set()

        worker._fetch_and_process_jobs = fetch_then_arm  # type: ignore[method-assign]
        worker._process_job = process_then_wake  # type: ignore[method-assign]

    async def arm(self) -> None:
        """Set the timer to the earliest job that is scheduled and not due yet, if any.

        A pending timer that fires earlier is kept: its job may have become
        due since the fetch, and so be missing from this query's answer.
        """
        try:
            row = await self.worker.app.connector.execute_query_one_async(
                NEXT_DUE, queues=self.queues
            )
        except Exception as err:
            # The poll finds the job; a store outage is reported by the worker's own queries.
            _log.debug("cannot read the next due job (%s); polling only", err)
            return
        delay = row["delay"]
        if delay is None:
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + float(delay) + LATE_BY
        timer = self.timer
        if timer is not None:
            if not timer.cancelled() and loop.time() < timer.when() <= when:
                return
            timer.cancel()
        self.timer = loop.call_at(when, self.flag.set)

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


def attach(worker: Worker) -> Wake | None:
    """Add the wake-ups to ``worker``; ``None`` (and a warning) if its internals changed."""
    found = [
        isinstance(getattr(worker, "_new_job_event", None), asyncio.Event),
        inspect.iscoroutinefunction(getattr(worker, "_fetch_and_process_jobs", None)),
        inspect.iscoroutinefunction(getattr(worker, "_process_job", None)),
        isinstance(getattr(worker, "_stop_event", None), asyncio.Event),
        hasattr(worker, "queues"),
    ]
    if not all(found):
        _log.warning(
            "procrastinate %s's worker is not the one Docket knows: jobs scheduled for "
            "later and lost notifications wait for the next poll",
            procrastinate.__version__,
        )
        return None
    wake = Wake(worker)
    wake.install()
    return wake
