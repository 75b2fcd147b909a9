"""Resuming an execution, apart from the queue: run it, then say what the queue must do next.

:func:`resume` loads the execution's row, finds its graph in the
:class:`Registry`, decodes its stored inputs and runs the target in durable
mode: the checkpoints are read from the store in one query and only what is
missing is computed. The target's value is kept for ``Graph.result_target``
(the generated ``result``) before the execution is recorded ``succeeded``,
even when the step producing it keeps nothing. It returns an
:data:`Outcome`; the queue adapter acts on it (defers a job, or nothing) and
reports it:

- :class:`Done`: the execution succeeded, or had ended (or vanished, or was
  cancelled) before or while this run went on: nothing to do;
- :class:`Failed`: the execution is recorded ``failed``: a failure that is
  not retried (not retryable, out of attempts, an ``Abort``, a
  ``StepClaimed``, a ``StoreRejected``), an unknown graph, or unreadable inputs;
- :class:`Continue`: a step that fails and may be retried, if it is
  ``durable: true`` (or every step, for a graph added with
  ``durable_all=True``), ends the run instead of sleeping: the execution is
  recorded ``waiting`` with ``wake_at``, and it continues at ``wake_at``.
  Attempts are counted in the store (``docket_step_runs.attempts``), so
  ``max_attempts`` spans jobs. A step that calls
  ``docket_runtime.context().hand_off()`` ends the run once its result is
  checkpointed; the execution continues at once (``at=None``);
- :class:`Requeue`: the run was cancelled because the worker is stopping;
  nothing is lost (the checkpoints stay) and the execution is queued again
  in the store: the adapter defers a job now, then lets the cancellation
  through;
- :class:`StoreFailed`: the store failed mid-run, so what was recorded is
  unknown: resume at ``at``. The run recorded the execution ``waiting``
  until ``at`` (when the store let it), never ``failed``: if the job of
  ``at`` cannot be deferred either, the worker's sweep of executions
  without a job resumes it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from google.protobuf.message import DecodeError

from .._lifecycle import STORE_RETRY_DELAY as STORE_RETRY_DELAY
from ..codec import MissingKey
from ..context import _durable
from ..errors import RetryLater, Suspended
from ..stores import StoreError, StoreRejected
from ._inputs import decode_inputs
from ._registry import Registry

_log = logging.getLogger("docket.durable")

MISSING_KEY_DELAY: Final = 60.0
"""Seconds before a resume whose inputs need a key this worker lacks is tried again."""

ENDED: Final = frozenset({"succeeded", "failed", "cancelled"})
"""The statuses of an execution that a resume leaves alone."""


@dataclass(frozen=True, slots=True)
class Done:
    """Nothing more to do; ``detail`` says why (``"succeeded"``, ``"already failed"``, ...)."""

    detail: str


@dataclass(frozen=True, slots=True)
class Failed:
    """The execution is recorded ``failed`` with ``error``; nothing more to do."""

    error: str


@dataclass(frozen=True, slots=True)
class Continue:
    """The execution goes on in a new job at ``at`` (``None``: at once); ``reason`` says why."""

    at: datetime | None
    reason: str


@dataclass(frozen=True, slots=True)
class Requeue:
    """The worker is stopping: the execution is queued again in the store.

    Defer a job at once, then re-raise ``asyncio.CancelledError``: the run
    was cancelled, and :func:`resume` returned this instead of raising.
    """


@dataclass(frozen=True, slots=True)
class StoreFailed:
    """The store failed mid-run with ``error``: resume the execution at ``at``."""

    at: datetime
    error: StoreError


Outcome = Done | Failed | Continue | Requeue | StoreFailed
"""What :func:`resume` tells the queue adapter to do next."""


async def resume(registry: Registry, execution_id: str, *, stopping: Callable[[], bool]) -> Outcome:
    """Resume execution ``execution_id`` with the graphs of ``registry``.

    ``stopping`` is asked when the run is cancelled: ``True`` if the worker
    is stopping (the execution goes back to the queue: :class:`Requeue`),
    ``False`` if the execution itself was cancelled (the cancellation goes
    through; the run recorded it).
    """
    store = registry.store
    row = await store.get_execution(execution_id)
    if row is None:
        _log.warning("no execution %r to resume (never enqueued, or purged)", execution_id)
        return Done("no such execution")
    if row.status in ENDED:
        return Done(f"already {row.status}")
    entry = registry.entry(row.graph)
    if entry is None:
        error = (
            f"graph {row.graph} is not in this worker's registry (it has "
            f"{', '.join(registry.names) or 'none'}); enqueue again once a worker has it"
        )
        await store.finish_execution(execution_id, status="failed", error=error)
        _log.error("execution %s failed: %s", execution_id, error)
        return Failed(error)
    graph = entry.graph
    try:
        target, inputs = decode_inputs(graph, row)
    except MissingKey as err:
        # Another worker may hold the key: leave the row as it is and try again later.
        _log.error("execution %s: %s; resuming in %gs", execution_id, err, MISSING_KEY_DELAY)
        return Continue(datetime.now(UTC) + timedelta(seconds=MISSING_KEY_DELAY), str(err))
    except (ValueError, TypeError, KeyError, DecodeError) as err:
        error = f"cannot read the inputs of execution {execution_id!r}: {err}"
        await store.finish_execution(execution_id, status="failed", error=error)
        _log.error("%s", error)
        return Failed(error)
    token = _durable.set("all" if entry.durable_all else "steps")
    # A traced graph's run joins the trace the execution was enqueued in.
    joined = nullcontext() if graph.tracer is None else graph.tracer.resumed(row.trace_context)
    try:
        with joined:
            # The stored inputs are the execution's own (enqueue compared them): resume.
            await graph.run_target(
                target, inputs, execution_id=execution_id, resume=True, keep_result=True
            )
    except Suspended as signal:
        # After a durable retry or a hand-off: go on, unless cancelled meanwhile.
        now = await store.get_execution(execution_id)
        if now is None or now.status == "cancelled":
            return Done("cancelled")
        at = signal.wake_at if isinstance(signal, RetryLater) else None
        return Continue(at, str(signal))
    except asyncio.CancelledError:
        if not stopping():
            raise
        # The worker is shutting down (or was cancelled): nothing is lost, the
        # checkpoints stay; the execution goes back to the queue. The run recorded
        # itself 'cancelled' on its way out; queue_execution puts back a cancelled
        # execution with the same graph, target and inputs.
        _log.info("worker stopping: execution %s goes back to the queue", execution_id)
        assert row.inputs is not None  # decode_inputs read them
        await store.queue_execution(
            execution_id,
            graph=row.graph,
            target=row.target,
            inputs=row.inputs,
            trace_context=row.trace_context,
        )
        return Requeue()
    except StoreRejected as err:
        # Permanent (data refused, a damaged file): a resume would meet it again. Recorded
        # 'failed' by the run itself.
        _log.error("execution %s failed: the store refused a write: %s", execution_id, err)
        return Failed(str(err))
    except StoreError as err:
        # The store failed mid-run: what was recorded is unknown. Try again later.
        _log.warning(
            "execution %s: store error (%s); resuming in %gs", execution_id, err, STORE_RETRY_DELAY
        )
        return StoreFailed(datetime.now(UTC) + timedelta(seconds=STORE_RETRY_DELAY), err)
    except Exception as err:
        # Recorded 'failed' by the run itself.
        _log.warning("execution %s failed: %s", execution_id, err)
        return Failed(str(err))
    finally:
        _durable.reset(token)
    return Done("succeeded")
