"""Event hooks: a step started, is retrying, succeeded or failed; a step looked up a kept
result; an execution finished; a batch run made progress.

Subclass :class:`Events`, override what you need and bind it with
``Graph(steps, events=[MyEvents()])``. Hooks are plain functions called on
the event loop (keep them quick: log, count, move a progress bar). An
exception raised by a hook is logged and does not affect the execution.
With no hooks bound, the runtime builds step runners without any event code.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import DeadlineExceeded, ExecutionAborted, ItemFailed, StepTimedOut, Suspended

__all__ = [
    "BatchProgress",
    "CacheLookup",
    "Events",
    "ExecutionFinished",
    "StepEvent",
    "StepRetrying",
]

_log = logging.getLogger("docket.events")


@dataclass(frozen=True, slots=True)
class StepEvent:
    """A step's attempt started, succeeded or failed.

    ``duration`` is the attempt's wall time in seconds (0 when it started);
    ``error`` the exception of a failed attempt.
    """

    graph: str
    execution_id: str
    step: str
    attempt: int
    duration: float = 0.0
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class StepRetrying:
    """A step's attempt failed and the step will run again after ``delay`` seconds."""

    graph: str
    execution_id: str
    step: str
    attempt: int
    delay: float
    error: BaseException


@dataclass(frozen=True, slots=True)
class CacheLookup:
    """A kept result of a step was looked for: ``hit`` if it was found and used instead of
    running the step.

    ``scope`` is ``global`` for a ``GLOBAL`` cache lookup (made before the
    step would run), ``workflow`` for a checkpoint looked for when an
    execution with a given id starts or resumes (one per ``WORKFLOW`` step
    the target needs).
    """

    graph: str
    execution_id: str
    step: str
    scope: str
    hit: bool


@dataclass(frozen=True, slots=True)
class ExecutionFinished:
    """An execution ended: ``outcome`` is ``succeeded``, ``failed``, ``aborted``,
    ``timed_out`` or ``cancelled``; ``error`` what the caller got, if anything.

    Under a durable worker a run can also end ``suspended``: it continues in a
    new job (a durable retry, a hand-off), and ``error`` is the
    :class:`~docket_runtime.errors.Suspended` signal."""

    graph: str
    execution_id: str
    target: str
    outcome: str
    duration: float
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class BatchProgress:
    """An item of a batch run finished a stage, or failed.

    ``total`` items in the batch; ``done`` of them finished stage ``stage``
    (0-based, of ``stages``; in the last stage: have their result); ``failed``
    failed so far, in any stage. Most batches have one stage; a batch has more
    when an aggregate needs every item's value from the stage before it.
    ``execution_id`` is the batch's id (its items run as ``<id>/<index>``).
    """

    graph: str
    execution_id: str
    target: str
    stage: int
    stages: int
    total: int
    done: int
    failed: int


def outcome_of(error: BaseException) -> str:
    """The :class:`ExecutionFinished` ``outcome`` of an execution that raised ``error``."""
    if isinstance(error, ItemFailed):
        error = error.error  # a batch ends as its failed item did
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"
    if isinstance(error, ExecutionAborted):
        return "aborted"
    if isinstance(error, Suspended):
        return "suspended"
    if isinstance(error, DeadlineExceeded | StepTimedOut):
        return "timed_out"
    return "failed"


class Events:
    """Base class of event hooks; every method does nothing unless overridden."""

    def step_started(self, event: StepEvent) -> None:
        """An attempt of a step starts."""

    def step_retrying(self, event: StepRetrying) -> None:
        """An attempt failed; the step runs again after ``event.delay`` seconds."""

    def step_succeeded(self, event: StepEvent) -> None:
        """A step produced its output."""

    def step_failed(self, event: StepEvent) -> None:
        """A step failed for good (out of attempts, not retryable, or aborting)."""

    def cache_lookup(self, event: CacheLookup) -> None:
        """A step's kept result was looked for (a ``GLOBAL`` cache, or a checkpoint)."""

    def execution_finished(self, event: ExecutionFinished) -> None:
        """An execution ended, whatever the outcome."""

    def batch_progress(self, event: BatchProgress) -> None:
        """An item of a batch run finished a stage or failed (drive a progress bar)."""


class Dispatch:
    """Calls every bound hook for one event, logging (not raising) what a hook raises."""

    __slots__ = ("hooks",)

    def __init__(self, hooks: Sequence[Events]) -> None:
        self.hooks = tuple(hooks)

    def step_started(self, event: StepEvent) -> None:
        for hook in self.hooks:
            _call(hook.step_started, event)

    def step_retrying(self, event: StepRetrying) -> None:
        for hook in self.hooks:
            _call(hook.step_retrying, event)

    def step_succeeded(self, event: StepEvent) -> None:
        for hook in self.hooks:
            _call(hook.step_succeeded, event)

    def step_failed(self, event: StepEvent) -> None:
        for hook in self.hooks:
            _call(hook.step_failed, event)

    def cache_lookup(self, event: CacheLookup) -> None:
        for hook in self.hooks:
            _call(hook.cache_lookup, event)

    def execution_finished(self, event: ExecutionFinished) -> None:
        for hook in self.hooks:
            _call(hook.execution_finished, event)

    def batch_progress(self, event: BatchProgress) -> None:
        for hook in self.hooks:
            _call(hook.batch_progress, event)


def _call(method: object, event: object) -> None:
    try:
        method(event)  # type: ignore[operator]
    except Exception:
        _log.exception("event hook %r raised; the execution goes on", method)
