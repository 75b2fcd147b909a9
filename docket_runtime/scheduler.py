"""Runs one target's steps on asyncio, each as soon as its inputs exist.

The schedule comes precomputed from the plan (dependency counts, dependents,
roots), so the loop below only counts down integers. A step that is the only
runnable one while nothing else is in flight is awaited inline, without a
task: a chain of steps costs no task at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from google.protobuf.message import Message

from .tables import TargetTable

Values = list[Message | None]
"""Per-execution values, indexed by the type slots of the plan's tables."""

Runner = Callable[[Values], Coroutine[Any, Any, None]]
"""Runs one step of a bound graph: reads its inputs from, and stores its output into, the values."""

_eager = getattr(asyncio, "eager_task_factory", None)


def _start(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    loop = asyncio.get_running_loop()
    if _eager is not None:
        # Python 3.12+: a step that finishes without suspending never reaches the event loop queue.
        task: asyncio.Task[None] = _eager(loop, coro)
        return task
    return loop.create_task(coro)


async def execute(target: TargetTable, runners: tuple[Runner, ...], values: Values) -> None:
    """Run every step of ``target``; on the first failure cancel the rest and re-raise."""
    steps = target.steps
    if target.chain:
        for index in steps:
            await runners[index](values)
        return
    remaining = list(target.dep_counts)
    dependents = target.dependents
    ready = list(target.roots)
    pending: dict[asyncio.Task[None], int] = {}
    while ready or pending:
        if len(ready) == 1 and not pending:
            pos = ready.pop()
            await runners[steps[pos]](values)
            _release(pos, dependents, remaining, ready)
            continue
        for pos in ready:
            pending[_start(runners[steps[pos]](values))] = pos
        ready.clear()
        done, _ = await _wait(pending)
        for task in done:
            pos = pending.pop(task)
            if task.cancelled() or task.exception() is not None:
                await _cancel_all(pending)
                task.result()  # re-raises the step's error (or CancelledError)
            _release(pos, dependents, remaining, ready)


async def _wait(
    pending: dict[asyncio.Task[None], int],
) -> tuple[set[asyncio.Task[None]], set[asyncio.Task[None]]]:
    try:
        return await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        # The caller was cancelled: no step may outlive its execution.
        await _cancel_all(pending)
        raise


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
