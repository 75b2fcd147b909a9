"""One step's run inside an execution: cache lookups, claims, attempts, timeouts, context, events.

A runner is built once per step when a graph is bound; options that are not
set cost one ``is None`` test each on the way. A step whose result is kept
(a cache scope, or ``AT_MOST_ONCE`` delivery) looks it up before running and
writes it before anything downstream can see it, so no step is recorded done
that did not finish.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from .context import Execution, StepContext, _current, _durable
from .errors import (
    Abort,
    ExecutionAborted,
    HandOff,
    RetryLater,
    StepClaimed,
    StepFailed,
    StepTimedOut,
    Suspended,
)
from .events import Dispatch, StepEvent, StepRetrying
from .persistence import decode, encode, input_key
from .plan import InputKind, RetryPolicy, Step
from .retry import Classifier, retry_delay
from .stores.base import Scope, Store, workflow_key
from .tables import StepTable

__all__ = ["Persistence", "Runner", "make_runner"]

Runner = Callable[[Execution], Coroutine[Any, Any, None]]
"""Runs one step of a bound graph: reads its inputs from the execution, stores its output there."""

Sleep = Callable[[float], Awaitable[None]]

_log = logging.getLogger("docket.runner")


@dataclass(frozen=True, slots=True)
class Persistence:
    """How one step uses the store: where its result is kept (``scope``), whether it
    claims its run first (``AT_MOST_ONCE``), whether its runs are recorded."""

    store: Store
    scope: Scope | None
    claim: bool
    record: bool
    owner: str


def make_runner(
    table: StepTable,
    call: Callable[..., Awaitable[Any]],
    *,
    graph: str,
    retry: RetryPolicy | None,
    classifier: Classifier | None,
    events: Dispatch | None,
    sleep: Sleep,
    persist: Persistence | None = None,
) -> Runner:
    """The runner of one step, calling ``call`` with the step's inputs."""
    name, out_slot, out_cls, timeout = (
        table.step.name,
        table.out_slot,
        table.out_cls,
        table.step.timeout,
    )
    args_of = _args_reader(table)

    step = table.step
    if retry is None and timeout is None and events is None and persist is None:
        return _plain_runner(table, call, args_of)

    async def run(execution: Execution) -> None:
        args = args_of(execution.values)
        key: str | None = None
        # Under a durable queue (docket_runtime.procrastinate) attempts are counted in the
        # store across jobs, and a durable step's retry is a new job instead of a sleep.
        mode = _durable.get()
        counted = mode is not None and persist is not None and persist.record
        queued_retry = counted and (mode == "all" or step.durable)
        if persist is not None:
            key, kept = await _kept(persist, step, execution, args, out_cls)
            if kept is not None:
                execution.values[out_slot] = kept
                return
        attempt = 1
        while True:
            if persist is not None and persist.record:
                recorded = await persist.store.step_started(execution.id, name, owner=persist.owner)
                if counted:
                    attempt = recorded
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
            except Suspended:
                # A subgraph step whose child execution continues in a new job: so does this one.
                raise
            except Exception as exc:
                ctx._cancel()
                error = exc
                timed_out = (
                    timeout is not None and isinstance(exc, TimeoutError) and scope.expired()
                )
            else:
                if type(result) is not out_cls:
                    error = _wrong_type(name, result, out_cls)
                    if events is not None:
                        events.step_failed(_done(graph, execution, name, attempt, started, error))
                    if persist is not None:
                        await _failed(persist, execution, name, error)
                    raise StepFailed(name, error, attempt) from error
                if persist is not None:
                    await _succeeded(persist, step, key, execution, result)
                execution.values[out_slot] = result
                if events is not None:
                    events.step_succeeded(_done(graph, execution, name, attempt, started, None))
                if ctx._hand_off and mode is not None:
                    if persist is not None and persist.scope is not None:
                        raise HandOff(name)
                    _log.warning(
                        "step %r asked to hand off, but it keeps no result to resume from "
                        "(give it a cache scope); the execution goes on in this job",
                        name,
                    )
                return
            finally:
                _current.reset(token)
            # A subgraph step whose child execution aborted aborts this execution too.
            if isinstance(error, Abort | ExecutionAborted):
                if events is not None:
                    events.step_failed(_done(graph, execution, name, attempt, started, error))
                if persist is not None:
                    await _failed(persist, execution, name, error)
                raise ExecutionAborted(name, error, attempt) from error
            delay = retry_delay(retry, name, error, attempt, classifier)
            if delay is None:
                if events is not None:
                    events.step_failed(_done(graph, execution, name, attempt, started, error))
                if persist is not None:
                    await _failed(persist, execution, name, error)
                failure = StepTimedOut if timed_out else StepFailed
                raise failure(name, error, attempt) from error
            if events is not None:
                events.step_retrying(StepRetrying(graph, execution.id, name, attempt, delay, error))
            if queued_retry:
                assert persist is not None
                await _failed(persist, execution, name, error)
                raise RetryLater(name, attempt, delay, error) from error
            await sleep(delay)
            attempt += 1

    return run


def _plain_runner(
    table: StepTable,
    call: Callable[..., Awaitable[Any]],
    args_of: Callable[[list[Message | None]], list[Any]],
) -> Runner:
    """The runner of a step with no retry, timeout, hooks or store: one attempt, nothing else.

    Same outcomes as the general runner with those options unset; kept apart
    because most steps are like this and it halves the runtime's cost per step.
    """
    name, out_slot, out_cls = table.step.name, table.out_slot, table.out_cls

    async def run(execution: Execution) -> None:
        ctx = StepContext(execution, name, 1)
        token = _current.set(ctx)
        try:
            result = await call(*args_of(execution.values))
        except asyncio.CancelledError as exc:
            ctx._cancel()
            if _cancel_requested():
                raise
            raise StepFailed(name, exc, 1) from exc
        except Suspended:
            raise  # a subgraph step whose child execution continues in a new job
        except Exception as exc:
            ctx._cancel()
            if isinstance(exc, Abort | ExecutionAborted):
                raise ExecutionAborted(name, exc, 1) from exc
            raise StepFailed(name, exc, 1) from exc
        finally:
            _current.reset(token)
        if type(result) is not out_cls:
            error = _wrong_type(name, result, out_cls)
            raise StepFailed(name, error, 1) from error
        execution.values[out_slot] = result

    return run


def _wrong_type(name: str, result: object, out_cls: type[Message]) -> TypeError:
    return TypeError(
        f"step {name!r} returned {type(result).__qualname__}, "
        f"expected {out_cls.DESCRIPTOR.full_name}"
    )


async def _kept(
    persist: Persistence, step: Step, execution: Execution, args: Sequence[Any], cls: type[Message]
) -> tuple[str | None, Message | None]:
    """The step's result key, and its kept result when there is one to use instead of running."""
    key: str | None = None
    if persist.scope == "global":
        key = input_key(execution.graph, step, args)
        kept = await _lookup(persist.store, key, cls)
        if kept is not None:
            return key, kept
    elif persist.scope == "workflow":
        key = workflow_key(execution.id, step.name, step.cache.version)
    if persist.claim:
        claim = await persist.store.claim_step(execution.id, step.name, owner=persist.owner)
        if not claim.won:
            # Another executor got here first: use its result if it recorded one.
            kept = await _lookup(persist.store, key, cls) if key is not None else None
            if kept is None or claim.run.status != "succeeded":
                raise StepClaimed(step.name, execution.id, claim.run.status, claim.run.owner)
            return key, kept
    return key, None


async def _lookup(store: Store, key: str, cls: type[Message]) -> Message | None:
    row = (await store.get_results((key,))).get(key)
    return None if row is None else decode(row, cls)


async def _succeeded(
    persist: Persistence, step: Step, key: str | None, execution: Execution, result: Message
) -> None:
    row = None
    if persist.scope is not None and key is not None:
        row = encode(step, key, persist.scope, execution.id, result)
    if persist.record or persist.claim:
        await persist.store.step_finished(execution.id, step.name, status="succeeded", result=row)
    elif row is not None:
        await persist.store.put_result(row)


async def _failed(
    persist: Persistence, execution: Execution, step: str, error: BaseException
) -> None:
    if persist.record or persist.claim:
        text = "".join(traceback.format_exception(error))
        await persist.store.step_finished(execution.id, step, status="failed", error=text)


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
