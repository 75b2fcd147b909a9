"""One execution's lifecycle: its record, its deadline, its end and its ``ExecutionFinished``.

Every way an execution runs goes through :class:`Lifecycle`: ``run`` of a
target, a batch run (one lifecycle for the batch, one per item), a child
graph, a durable resume. It writes the ``docket_executions`` row when the
graph records (``running`` at start; ``succeeded``, ``failed``, ``cancelled``
at the end; ``waiting`` or ``queued`` when a durable run suspends), bounds the
run by its deadline, and reports the outcome to the event hooks and, when a
tracer is bound (:mod:`._tracing`), to the execution's span, which is current
while the body runs.

A step that raised ``SystemExit`` or ``KeyboardInterrupt`` reaches here as
:class:`Exiting`, so that the scheduler cancels the steps in flight like for
any fatal error; the execution is recorded ``failed`` and the original
exception is raised again, unwrapped, to the caller.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final, Literal, TypeVar

from .context import Execution, _durable, shielded
from .errors import DeadlineExceeded, RetryLater, Suspended
from .events import Dispatch, ExecutionFinished, outcome_of
from .stores.base import StepEnd, Store, StoreError, StoreUnavailable, ended_fields

if TYPE_CHECKING:
    from ._tracing import ExecutionKind, ExecutionSpan, Tracer

__all__ = ["STORE_RETRY_DELAY", "Exiting", "Lifecycle", "error_text", "send_unsent"]

STORE_RETRY_DELAY: Final = 5.0
"""Seconds before a durable execution is resumed after the store was unreachable mid-run."""

T = TypeVar("T")

_log = logging.getLogger("docket.graph")


class Exiting(Exception):
    """Carries a step's ``SystemExit`` or ``KeyboardInterrupt`` out of the scheduler.

    Those are not ``Exception``: raised in a task they would escape asyncio's
    task machinery and stop the event loop, leaving the records ``running``.
    """

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
        super().__init__(f"{type(exc).__qualname__}: {exc}")


def error_text(error: BaseException) -> str:
    """The one-line form of an error kept in ``docket_executions.error``."""
    if isinstance(error, Exiting):
        error = error.exc
    return f"{type(error).__qualname__}: {error}"


class Lifecycle:
    """The lifecycle of one execution (see the module docstring).

    ``execution`` notes the steps that a passing deadline cut. ``store`` is
    set when the execution is recorded; ``events`` when hooks are bound and
    this execution reports to them (a batch's items do not: their batch
    does). ``deadline`` is in seconds. ``trace`` is the bound tracer, if any;
    ``kind`` (``run``, ``batch`` or ``item``) is for its span.
    """

    __slots__ = (
        "deadline",
        "events",
        "execution",
        "execution_id",
        "graph",
        "kind",
        "recorded_start",
        "span",
        "started",
        "store",
        "target",
        "trace",
    )

    def __init__(
        self,
        *,
        graph: str,
        target: str,
        execution: Execution,
        store: Store | None,
        events: Dispatch | None,
        deadline: float | None,
        trace: Tracer | None = None,
        kind: ExecutionKind = "run",
    ) -> None:
        self.graph = graph
        self.target = target
        self.execution = execution
        self.execution_id = execution.id
        self.store = store
        self.events = events
        self.deadline = deadline
        self.started = 0.0
        self.trace = trace
        self.kind = kind
        self.span: ExecutionSpan | None = None
        # Set when the query that read the checkpoints also recorded the start.
        self.recorded_start = False

    async def run(self, body: Callable[[], Awaitable[T]]) -> T:
        """Start, run ``body`` under the deadline, and end with its outcome."""
        try:
            await self.start()
            if self.span is None:
                result = await self._bounded(body)
            else:
                with self.span.current():
                    result = await self._bounded(body)
        except BaseException as exc:
            await self.end(exc)
            if isinstance(exc, Exiting):
                raise exc.exc from None
            raise
        await self.end(None)
        return result

    async def start(self) -> None:
        """Record the execution ``running`` (when recorded) and start its clock."""
        self.started = time.perf_counter()
        if self.trace is not None:
            self.span = self.trace.execution(
                self.graph, self.target, self.execution_id, kind=self.kind
            )
        if self.store is not None and not self.recorded_start:
            await self.store.start_execution(
                self.execution_id, graph=self.graph, target=self.target
            )

    async def end(self, error: BaseException | None) -> None:
        """Record how the execution ended and report it; ``error`` is what the caller gets.

        A ``Suspended`` signal records the durable states (``waiting`` with its
        wake time, or ``queued``). Runs to the end even when the caller is
        being cancelled, so that no record stays ``running``.
        """
        unsent, self.execution.unsent = self.execution.unsent, None
        try:
            if self.store is not None:
                await shielded(self._record(error, unsent))
            elif unsent is not None:
                await shielded(send_unsent(unsent))
        finally:
            if self.span is not None:
                self.span.end(error.exc if isinstance(error, Exiting) else error)
                self.span = None
        if self.events is not None:
            outcome = "succeeded" if error is None else outcome_of(error)
            self.events.execution_finished(
                ExecutionFinished(
                    self.graph,
                    self.execution_id,
                    self.target,
                    outcome,
                    time.perf_counter() - self.started,
                    error.exc if isinstance(error, Exiting) else error,
                )
            )

    async def _bounded(self, body: Callable[[], Awaitable[T]]) -> T:
        if self.deadline is None:
            return await body()
        try:
            async with asyncio.timeout(self.deadline) as scope:
                return await body()
        except TimeoutError as exc:
            if not scope.expired():
                raise
            # What was cut: each cancelled step noted itself on its way out (no cost before).
            cut = self.execution.cut or {}
            raise DeadlineExceeded(
                self.graph,
                self.target,
                self.deadline,
                {step: attempt for step, (attempt, _) in cut.items()},
                [step for step, (_, waiting) in cut.items() if waiting],
            ) from exc

    async def _record(
        self, error: BaseException | None, unsent: tuple[Store, StepEnd] | None
    ) -> None:
        store = self.store
        assert store is not None
        if unsent is not None and (error is not None or unsent[0] is not store):
            # Only a success ends with its last step's end; else that end goes first.
            await _send_first(unsent, error)
            unsent = None
        if isinstance(error, RetryLater):
            await store.suspend_execution(
                self.execution_id, status="waiting", wake_at=error.wake_at, error=str(error)
            )
            return
        if isinstance(error, Suspended):
            await store.suspend_execution(self.execution_id, status="queued")
            return
        if isinstance(error, StoreUnavailable) and _durable.get() is not None:
            # A durable run cut by the database: nothing says the execution failed, and a
            # resume will finish it. 'waiting' with its wake time lets the worker's sweep
            # resume it even if the job that should cannot be deferred.
            wake_at = datetime.now(UTC) + timedelta(seconds=STORE_RETRY_DELAY)
            try:
                await store.suspend_execution(
                    self.execution_id, status="waiting", wake_at=wake_at, error=error_text(error)
                )
            except StoreError:
                _log.warning(
                    "could not record execution %s as waiting for the store; the worker's "
                    "sweep resumes it",
                    self.execution_id,
                    exc_info=True,
                )
            return
        try:
            await store.finish_execution(
                self.execution_id,
                status=_status(error),
                error=None if error is None else error_text(error),
                ended=None if unsent is None else unsent[1],
            )
        except StoreError as exc:
            if error is None:
                raise
            if isinstance(error, StoreUnavailable) and isinstance(exc, StoreUnavailable):
                return  # the store failed the execution: its error already says so
            # The execution already failed: its own error says more than this one.
            _log.warning(
                "could not record the end of execution %s", self.execution_id, exc_info=True
            )


def _status(error: BaseException | None) -> Literal["succeeded", "failed", "cancelled"]:
    if error is None:
        return "succeeded"
    return "cancelled" if isinstance(error, asyncio.CancelledError) else "failed"


async def _send_first(unsent: tuple[Store, StepEnd], error: BaseException | None) -> None:
    """Write the last step's end before the execution's: when the execution failed, a store
    that refuses it too is logged (the execution's own error says more)."""
    try:
        await send_unsent(unsent)
    except StoreError:
        if error is None:
            raise
        _log.warning("could not record the end of step %r", unsent[1].step, exc_info=True)


async def send_unsent(unsent: tuple[Store, StepEnd]) -> None:
    """Write a step's end that was kept to go with a later write (see ``Execution.unsent``)."""
    store, end = unsent
    await store.step_finished(**ended_fields(end))
