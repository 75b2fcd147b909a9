"""Runs one target's steps on asyncio, each as soon as its inputs exist.

The schedule comes precomputed from the plan (dependency counts, dependents,
roots), so the loop below only counts down integers. A step that is the only
runnable one while nothing else is in flight is awaited inline, without a
task: a chain of steps costs no task at all.

When a step fails, the steps still in flight are cancelled and the failure
is raised, unless only optional inputs consume the step's output: then its
consumers receive None and the execution goes on.

Under a durable queue a step may instead suspend the run (a durable retry, a
hand-off): then no new step starts, the steps in flight finish (so that their
results are kept), and the suspension is raised.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from ._runner import Runner
from ._tables import TargetTable
from .context import Execution
from .errors import RetryLater, StepFailed, Suspended

_eager = getattr(asyncio, "eager_task_factory", None)


def _start(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    loop = asyncio.get_running_loop()
    if _eager is not None:
        # Python 3.12+: a step that finishes without suspending never reaches the event loop queue.
        task: asyncio.Task[None] = _eager(loop, coro)
        return task
    return loop.create_task(coro)


async def execute(target: TargetTable, runners: tuple[Runner, ...], execution: Execution) -> None:
    """Run every step of ``target``; on a failure that matters cancel the rest and re-raise."""
    steps = target.steps
    tolerable = target.tolerable
    if target.chain:
        for pos, index in enumerate(steps):
            try:
                await runners[index](execution)
            except StepFailed:
                if not tolerable[pos]:
                    raise
        return
    remaining = list(target.dep_counts)
    dependents = target.dependents
    ready = list(target.roots)
    pending: dict[asyncio.Task[None], int] = {}
    suspended: Suspended | None = None
    while ready or pending:
        if len(ready) == 1 and not pending:
            pos = ready.pop()
            try:
                await runners[steps[pos]](execution)
            except StepFailed:
                if not tolerable[pos]:
                    raise
            _release(pos, dependents, remaining, ready)
            continue
        for pos in ready:
            pending[_start(runners[steps[pos]](execution))] = pos
        ready.clear()
        done, _ = await _wait(pending)
        for task in done:
            pos = pending.pop(task)
            if task.cancelled() or task.exception() is not None:
                error = _error(task)
                if isinstance(error, Suspended):
                    suspended = _sooner(suspended, error)
                    continue
                tolerated = tolerable[pos] and isinstance(error, StepFailed)
                if not tolerated:
                    await _cancel_all(pending)
                    task.result()  # re-raises the step's error (or CancelledError)
            _release(pos, dependents, remaining, ready)
        if suspended is not None:
            ready.clear()  # start nothing new; let what is in flight finish
    if suspended is not None:
        raise suspended


async def _wait(
    pending: dict[asyncio.Task[None], int],
) -> tuple[set[asyncio.Task[None]], set[asyncio.Task[None]]]:
    try:
        return await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        # The caller was cancelled: no step may outlive its execution.
        await _cancel_all(pending)
        raise


def _sooner(current: Suspended | None, new: Suspended) -> Suspended:
    """Of two suspensions, the one whose job must run first (a hand-off runs at once)."""
    if current is None:
        return new
    if isinstance(current, RetryLater) and (
        not isinstance(new, RetryLater) or new.wake_at < current.wake_at
    ):
        return new
    return current


def _error(task: asyncio.Task[None]) -> BaseException | None:
    return None if task.cancelled() else task.exception()


def _release(
    pos: int, dependents: tuple[tuple[int, ...], ...], remaining: list[int], ready: list[int]
) -> None:
    for dep in dependents[pos]:
        remaining[dep] -= 1
        if remaining[dep] == 0:
            ready.append(dep)


async def _cancel_all(pending: dict[asyncio.Task[None], int]) -> None:
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    pending.clear()
