"""One step's run inside an execution: attempts, per-attempt timeout, context, events.

A runner is built once per step when a graph is bound; options that are not
set cost one ``is None`` test each on the way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from google.protobuf.message import Message

from .context import Execution, StepContext, _current
from .errors import Abort, ExecutionAborted, StepFailed, StepTimedOut
from .events import Dispatch, StepEvent, StepRetrying
from .plan import InputKind, RetryPolicy
from .retry import Classifier, retry_delay
from .tables import StepTable

__all__ = ["Runner", "make_runner"]

Runner = Callable[[Execution], Coroutine[Any, Any, None]]
"""Runs one step of a bound graph: reads its inputs from the execution, stores its output there."""

Sleep = Callable[[float], Awaitable[None]]


def make_runner(
    table: StepTable,
    call: Callable[..., Awaitable[Any]],
    *,
    graph: str,
    retry: RetryPolicy | None,
    classifier: Classifier | None,
    events: Dispatch | None,
    sleep: Sleep,
) -> Runner:
    """The runner of one step, calling ``call`` with the step's inputs."""
    name, out_slot, out_cls, timeout = (
        table.step.name,
        table.out_slot,
        table.out_cls,
        table.step.timeout,
    )
    args_of = _args_reader(table)

    async def run(execution: Execution) -> None:
        args = args_of(execution.values)
        attempt = 1
        while True:
            ctx = StepContext(execution, name, attempt)
            token = _current.set(ctx)
            started = time.perf_counter() if events is not None else 0.0
            if events is not None:
                events.step_started(StepEvent(graph, execution.id, name, attempt))
            timed_out = False
            try:
                if timeout is None:
                    result = await call(*args)
                else:
                    async with asyncio.timeout(timeout) as scope:
                        result = await call(*args)
            except asyncio.CancelledError as exc:
                ctx._cancel()
                if _cancel_requested():
                    raise
                error: BaseException = exc  # cancelled from inside the step: a failure like any
            except Exception as exc:
                ctx._cancel()
                error = exc
                timed_out = (
                    timeout is not None and isinstance(exc, TimeoutError) and scope.expired()
                )
            else:
                if type(result) is not out_cls:
                    error = TypeError(
                        f"step {name!r} returned {type(result).__qualname__}, "
                        f"expected {out_cls.DESCRIPTOR.full_name}"
                    )
                    if events is not None:
                        events.step_failed(_done(graph, execution, name, attempt, started, error))
                    raise StepFailed(name, error, attempt) from error
                execution.values[out_slot] = result
                if events is not None:
                    events.step_succeeded(_done(graph, execution, name, attempt, started, None))
                return
            finally:
                _current.reset(token)
            # A subgraph step whose child execution aborted aborts this execution too.
            if isinstance(error, Abort | ExecutionAborted):
                if events is not None:
                    events.step_failed(_done(graph, execution, name, attempt, started, error))
                raise ExecutionAborted(name, error, attempt) from error
            delay = retry_delay(retry, name, error, attempt, classifier)
            if delay is None:
                if events is not None:
                    events.step_failed(_done(graph, execution, name, attempt, started, error))
                failure = StepTimedOut if timed_out else StepFailed
                raise failure(name, error, attempt) from error
            if events is not None:
                events.step_retrying(StepRetrying(graph, execution.id, name, attempt, delay, error))
            await sleep(delay)
            attempt += 1

    return run


def _done(
    graph: str,
    execution: Execution,
    step: str,
    attempt: int,
    started: float,
    error: BaseException | None,
) -> StepEvent:
    duration = time.perf_counter() - started
    return StepEvent(graph, execution.id, step, attempt, duration, error)


def _cancel_requested() -> bool:
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0


def _args_reader(table: StepTable) -> Callable[[list[Message | None]], list[Any]]:
    slots = table.arg_slots
    if table.all_required:
        return lambda values: [values[s] for s in slots]
    # Outside batch runs a repeated input gathers the one value its type has; in a batch
    # run (docket_runtime.batch) an aggregate finds the list of every item's value there.
    kinds = tuple(kind is InputKind.REPEATED for kind in table.arg_kinds)

    def read(values: list[Message | None]) -> list[Any]:
        args: list[Any] = []
        for slot, repeated in zip(slots, kinds, strict=True):
            value: Any = values[slot]
            if repeated and type(value) is not list:
                value = [] if value is None else [value]
            args.append(value)
        return args

    return read
