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
import operator
import os
import socket
import time
import traceback
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from google.protobuf.message import Message

from ._lifecycle import Exiting, send_unsent
from ._persistence import encode, input_key, lookup
from ._tables import StepTable
from .context import Execution, StepContext, _current, _durable, shielded
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
from .events import CacheLookup, Dispatch, StepEvent, StepRetrying
from .plan import InputKind, RetryPolicy, Step
from .retry import Classifier, retry_delay
from .stores.base import (
    AttemptRecord,
    GlobalKeys,
    Scope,
    StepEnd,
    StepRunRecord,
    Store,
    StoredResult,
    StoreError,
    ended_fields,
    workflow_key,
)

__all__ = ["Persistence", "Runner", "make_runner"]

Runner = Callable[[Execution], Coroutine[Any, Any, None]]
"""Runs one step of a bound graph: reads its inputs from the execution, stores its output there."""

Sleep = Callable[[float], Awaitable[None]]

_log = logging.getLogger("docket.runner")


@dataclass(frozen=True, slots=True)
class Persistence:
    """How one step uses the store: where its result is kept (``scope``), whether it
    claims its run first (``AT_MOST_ONCE``), whether its runs are recorded.

    Recorded runs write one ``docket_step_attempts`` row per attempt, and a
    ``cached`` step run for a ``GLOBAL`` hit."""

    store: Store
    scope: Scope | None
    claim: bool
    record: bool
    owner: str
    keys: GlobalKeys
    """How the step's ``GLOBAL`` keys are made: under the cache namespace, or the graph's
    name (see :func:`~docket_runtime._persistence.step_keys`)."""


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
        # Under a durable queue (docket_runtime.durable) attempts are counted in the
        # store across jobs, and a durable step's retry is a new job instead of a sleep.
        mode = _durable.get()
        counted = mode is not None and persist is not None and persist.record
        queued_retry = counted and (mode == "all" or step.durable)
        if persist is not None:
            key, kept = await _kept(persist, step, execution, args, out_cls)
            if events is not None and persist.scope == "global":
                hit = kept is not None
                events.cache_lookup(CacheLookup(graph, execution.id, name, "global", hit))
            if kept is not None:
                execution.values[out_slot] = kept
                return
        attempt = 1
        while True:
            began: datetime | None = None
            if persist is not None and (persist.record or persist.claim):
                recorded = await _attempt_started(persist, execution, name)
                if counted:
                    attempt = recorded
                if persist.record:
                    began = datetime.now(UTC)
            ctx = StepContext(execution, name, attempt)
            token = _current.set(ctx)
            started = time.perf_counter() if events is not None or began is not None else 0.0
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
                    execution.was_cut(name, attempt)
                    if persist is not None:
                        attempt_end = _Attempt(attempt, began, started, exc)
                        await shielded(_ended(persist, execution, step, "cancelled", attempt_end))
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
            except (SystemExit, KeyboardInterrupt) as exc:
                # The process is asked to stop: record the step's end, stop the execution.
                ctx._cancel()
                if events is not None:
                    events.step_failed(_done(graph, execution, name, attempt, started, exc))
                if persist is not None:
                    attempt_end = _Attempt(attempt, began, started, exc)
                    await shielded(_ended(persist, execution, step, "failed", attempt_end))
                raise Exiting(exc) from exc
            else:
                if type(result) is not out_cls:
                    error = _wrong_type(name, result, out_cls)
                    if events is not None:
                        events.step_failed(_done(graph, execution, name, attempt, started, error))
                    if persist is not None:
                        attempt_end = _Attempt(attempt, began, started, error)
                        await shielded(_ended(persist, execution, step, "failed", attempt_end))
                    raise StepFailed(name, error, attempt) from error
                if persist is not None:
                    row = None
                    if persist.scope is not None and key is not None:
                        row = encode(
                            step,
                            key,
                            persist.scope,
                            execution.id,
                            result,
                            graph=graph,
                            codec=persist.store.codec,
                        )
                    attempt_end = _Attempt(attempt, began, started, None)
                    if execution.chained and persist.record and not persist.claim and mode is None:
                        # Written with the next step's start, before that step's body runs
                        # (or at the chain's end): one round trip fewer per step.
                        end = _step_end(persist, execution, step, "succeeded", attempt_end, row)
                        execution.unsent = (persist.store, end)
                    else:
                        await shielded(
                            _ended(persist, execution, step, "succeeded", attempt_end, row)
                        )
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
            attempt_end = _Attempt(attempt, began, started, error)
            # A subgraph step whose child execution aborted aborts this execution too.
            if isinstance(error, Abort | ExecutionAborted):
                if events is not None:
                    events.step_failed(_done(graph, execution, name, attempt, started, error))
                if persist is not None:
                    await shielded(_ended(persist, execution, step, "failed", attempt_end))
                raise ExecutionAborted(name, error, attempt) from error
            delay = retry_delay(retry, name, error, attempt, classifier)
            if delay is None:
                if events is not None:
                    events.step_failed(_done(graph, execution, name, attempt, started, error))
                if persist is not None:
                    await shielded(_ended(persist, execution, step, "failed", attempt_end))
                if timed_out:
                    assert timeout is not None
                    raise StepTimedOut(name, error, attempt, timeout) from error
                raise StepFailed(name, error, attempt) from error
            if events is not None:
                events.step_retrying(StepRetrying(graph, execution.id, name, attempt, delay, error))
            if persist is not None and persist.record:
                await shielded(_ended(persist, execution, step, "failed", attempt_end))
            if queued_retry:
                raise RetryLater(name, attempt, delay, error) from error
            try:
                await sleep(delay)
            except asyncio.CancelledError:
                execution.was_cut(name, attempt, waiting=True)
                raise
            attempt += 1

    return run


def _plain_runner(
    table: StepTable,
    call: Callable[..., Awaitable[Any]],
    args_of: Callable[[list[Message | None]], Sequence[Any]],
) -> Runner:
    """The runner of a step with no retry, timeout, hooks or store: one attempt, nothing else.

    Same outcomes as the general runner with those options unset; kept apart
    because most steps are like this and it halves the runtime's cost per step.
    Its context is made only if the step asks for it (:data:`~.context.StepRun`),
    and it leaves the context variable set (see :data:`~.context._current`).
    """
    name, out_slot, out_cls = table.step.name, table.out_slot, table.out_cls
    # Most steps take one required input: read it directly (no argument tuple to unpack).
    single = table.arg_slots[0] if table.all_required and len(table.arg_slots) == 1 else -1

    async def run(execution: Execution) -> None:
        _current.set((execution, name))
        try:
            if single >= 0:
                result = await call(execution.values[single])
            else:
                result = await call(*args_of(execution.values))
        except asyncio.CancelledError as exc:
            execution.step_context(name)._cancel()
            if _cancel_requested():
                execution.was_cut(name, 1)
                raise
            raise StepFailed(name, exc, 1) from exc
        except Suspended:
            raise  # a subgraph step whose child execution continues in a new job
        except Exception as exc:
            execution.step_context(name)._cancel()
            if isinstance(exc, Abort | ExecutionAborted):
                raise ExecutionAborted(name, exc, 1) from exc
            raise StepFailed(name, exc, 1) from exc
        except (SystemExit, KeyboardInterrupt) as exc:
            execution.step_context(name)._cancel()
            raise Exiting(exc) from exc
        if type(result) is not out_cls:
            error = _wrong_type(name, result, out_cls)
            raise StepFailed(name, error, 1) from error
        execution.values[out_slot] = result

    return run


def _wrong_type(name: str, result: object, out_cls: type[Message]) -> TypeError:
    """The error of a step that broke its contract: never retried, since a retry would
    return the same wrong value."""
    if result is None:
        found = "None"
    elif isinstance(result, Message):
        found = f"a {result.DESCRIPTOR.full_name} message"
    else:
        found = f"a {type(result).__qualname__}"
    return TypeError(
        f"step {name!r} returned {found} instead of a {out_cls.DESCRIPTOR.full_name} "
        "message; a wrong return value is a bug in the step, so it is not retried"
    )


CLAIM_STALE_AFTER = 60.0
"""Seconds after which a claim still ``claimed`` (its step never started) is taken over,
whoever holds it: a live owner marks its claim ``running`` within milliseconds."""


async def _kept(
    persist: Persistence, step: Step, execution: Execution, args: Sequence[Any], cls: type[Message]
) -> tuple[str | None, Message | None]:
    """The step's result key, and its kept result when there is one to use instead of running."""
    key: str | None = None
    store = persist.store
    if persist.scope == "global":
        key = input_key(persist.keys, args, store.codec)
        kept = await lookup(store, key, step.name, cls)
        if kept is not None:
            if persist.record:
                await store.record_cache_hit(execution.id, step.name, owner=persist.owner)
            return key, kept
    elif persist.scope == "workflow":
        key = workflow_key(execution.id, step.name, step.cache.version)
    if persist.claim:
        try:
            claim = await store.claim_step(execution.id, step.name, owner=persist.owner)
        except asyncio.CancelledError:
            # The claim may have been taken: the step never started, so give it back.
            await shielded(store.release_claim(execution.id, step.name, owner=persist.owner))
            raise
        if claim.won:
            return key, None
        run = claim.run
        # A claim whose step never started had no effect: take it over from a gone owner.
        if (
            run.status == "claimed"
            and _abandoned(run)
            and await store.take_over_claim(
                execution.id, step.name, old_owner=run.owner, owner=persist.owner
            )
        ):
            _log.info(
                "step %r of %s: took over the claim of %s, which never started it",
                step.name,
                execution.id,
                run.owner,
            )
            return key, None
        # Another executor got here first: use its result if it recorded one.
        kept = await lookup(store, key, step.name, cls) if key is not None else None
        if kept is None or run.status != "succeeded":
            raise StepClaimed(step.name, execution.id, run.status, run.owner)
        return key, kept
    return key, None


def _abandoned(run: StepRunRecord) -> bool:
    """Whether a ``claimed`` claim's owner is gone: a dead process on this host, or stale."""
    if owner_dead(run.owner):
        return True
    return (datetime.now(UTC) - run.started_at).total_seconds() > CLAIM_STALE_AFTER


def owner_dead(owner: str) -> bool:
    """Whether ``owner`` (``host:pid:token``) names a process of this host that is gone."""
    return owner_alive(owner) is False


def owner_alive(owner: str) -> bool | None:
    """Whether the process ``owner`` (``host:pid:token``) names is alive: ``True`` or
    ``False`` for a process of this host, ``None`` when it cannot be told (another
    host, or an owner given by hand in another form). This very process is alive.
    """
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return None
    pid = int(pid_text)
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, under another user
        pass
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """Whether ``pid`` has exited but was not reaped yet (Linux; ``False`` elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # "pid (comm) state ...": the command may hold spaces and parentheses.
            return stat.read().rpartition(b")")[2].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


async def _attempt_started(persist: Persistence, execution: Execution, step: str) -> int:
    """Record an attempt's start; an ``AT_MOST_ONCE`` step marks its claim ``running``.

    A claim is marked only if it is still this owner's; if it was taken over or
    released meanwhile, the step does not run (``StepClaimed``). Cancelled
    before the step's body starts, the claim is released, since nothing ran.
    """
    store = persist.store
    unsent, execution.unsent = execution.unsent, None
    ended = None
    if unsent is not None:
        if unsent[0] is store:
            ended = unsent[1]
        else:  # another store's (not in one graph's chain): written on its own, first
            await send_unsent(unsent)
    try:
        try:
            count = await store.step_started(
                execution.id, step, owner=persist.owner, claimed=persist.claim, ended=ended
            )
        except BaseException:
            # Whether the previous step's end went with it is unknown: write it again
            # (harmless: the same values), as step_finished alone would have been retried.
            if ended is not None:
                await shielded(send_unsent((store, ended)))
            raise
    except asyncio.CancelledError:
        # The write may have happened: say that the attempt never started its body.
        if persist.claim:
            release = store.release_claim(execution.id, step, owner=persist.owner, running=True)
            await shielded(release)
        else:
            await shielded(store.step_finished(execution.id, step, status="cancelled"))
        raise
    if persist.claim and count == 0:
        runs = {run.step: run for run in await store.get_step_runs(execution.id)}
        run = runs.get(step)
        raise StepClaimed(
            step,
            execution.id,
            "released" if run is None else run.status,
            "nobody" if run is None else run.owner,
        )
    return count


@dataclass(frozen=True, slots=True)
class _Attempt:
    """How an attempt ended: its number, start (wall clock when recorded, and
    ``perf_counter``) and error."""

    number: int
    began: datetime | None
    started: float
    error: BaseException | None


def _step_end(
    persist: Persistence,
    execution: Execution,
    step: Step,
    status: Literal["succeeded", "failed", "cancelled"],
    attempt: _Attempt,
    row: StoredResult | None,
) -> StepEnd:
    """The end of an attempt as the store records it: the step run, its result, the
    attempt's row (when recorded), at this moment."""
    error = attempt.error
    text = None if error is None else "".join(traceback.format_exception(error))
    now = datetime.now(UTC)
    record = None
    if attempt.began is not None:
        record = AttemptRecord(
            execution_id=execution.id,
            step=step.name,
            attempt=attempt.number,
            status=status,
            started_at=attempt.began,
            finished_at=now,
            duration_ms=(time.perf_counter() - attempt.started) * 1000.0,
            error_type=None if error is None else _qualified(type(error)),
            error_message=None if error is None else str(error),
            traceback=text,
            owner=persist.owner,
        )
    owner = persist.owner if persist.claim else None
    return StepEnd(execution.id, step.name, status, text, row, record, owner, now)


async def _ended(
    persist: Persistence,
    execution: Execution,
    step: Step,
    status: Literal["succeeded", "failed", "cancelled"],
    attempt: _Attempt,
    row: StoredResult | None = None,
) -> None:
    """Record the end of an attempt: the step run, its result and the attempt's row."""
    store = persist.store
    if not (persist.record or persist.claim):
        if row is not None:
            await store.put_result(row)
        return
    try:
        written = await store.step_finished(
            **ended_fields(_step_end(persist, execution, step, status, attempt, row))
        )
    except StoreError as err:
        if persist.claim and row is not None:
            raise _unrecorded(step, execution.id, row, err) from err
        raise
    if not written:
        _log.warning(
            "step %r of %s ended %s, but its claim is no longer this process's "
            "(settled or released meanwhile); its end was not recorded",
            step.name,
            execution.id,
            status,
        )


def _unrecorded(step: Step, execution_id: str, row: StoredResult, err: StoreError) -> StoreError:
    """The error of an ``AT_MOST_ONCE`` step that succeeded but whose result the store did not
    take even when retried: its effect happened, so its result is logged (the JSON the row
    would have held) for a person to settle the claim with, and the error says how. A
    sensitive step's row holds no JSON: its result is not logged."""
    shown = row.output_json
    if step.sensitive:
        shown = "not logged (the step is sensitive); find it where the step's effect went"
    _log.error(
        "step %r of %s succeeded, but its result was not recorded; its result: %s",
        step.name,
        execution_id,
        shown,
    )
    return type(err)(
        f"step {step.name!r} of execution {execution_id!r} succeeded, but its result was not "
        f"recorded ({err}); its claim stays 'running' and the next run reports StepClaimed "
        "until it is settled: once the store is back, settle it with the result logged by "
        f"docket.runner (docketctl settle {execution_id} {step.name} --result-json ...)"
    )


def _qualified(cls: type[BaseException]) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


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


def _args_reader(table: StepTable) -> Callable[[list[Message | None]], Sequence[Any]]:
    slots = table.arg_slots
    if table.all_required:
        # operator.itemgetter reads in C: a one-item slice for one input (a list to unpack),
        # the values themselves for more.
        if len(slots) == 1:
            return operator.itemgetter(slice(slots[0], slots[0] + 1))
        return operator.itemgetter(*slots) if slots else lambda values: ()
    # Outside batch runs a repeated input gathers the one value its type has; in a batch
    # run (docket_runtime._batch) an aggregate finds the list of every item's value there.
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
