"""Exceptions of the runtime.

What a caller of ``run`` can get, and what each means:

- :class:`StepFailed`: a step raised and will not be retried (not retryable, or
  out of attempts). :class:`StepTimedOut` is the same for a step whose last
  attempt ran out of time (its ``timeout``).
- :class:`ExecutionAborted`: a step raised :class:`Abort`; everything in
  flight was cancelled and nothing was retried.
- :class:`DeadlineExceeded`: the execution's overall deadline passed; it names
  the steps it cut (``in_flight``).
- ``asyncio.CancelledError``: the caller itself was cancelled.

Only under a durable queue (:mod:`docket_runtime.durable`) can a run also
end with a :class:`Suspended` signal: :class:`RetryLater` (a durable step's
retry is due later) or :class:`HandOff` (a step asked to continue in a new
job). The queue adapter catches them; a plain ``run`` never sees them.

Each step error carries the step's name, the attempts made, the original
exception as ``__cause__`` and its traceback text.
"""

from __future__ import annotations

import traceback
from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta

__all__ = [
    "Abort",
    "BindError",
    "DeadlineExceeded",
    "DocketError",
    "ExecutionAborted",
    "HandOff",
    "ItemFailed",
    "RetryLater",
    "StepClaimed",
    "StepFailed",
    "StepTimedOut",
    "Suspended",
]


class DocketError(Exception):
    """Base class of every error Docket raises."""


class BindError(DocketError, TypeError):
    """An implementation does not fit the graph it is bound to."""


class Abort(Exception):
    """Raise it from a step to stop the whole execution at once: never retried."""


class _StepError(DocketError):
    def __init__(
        self, step: str, cause: BaseException, attempts: int, what: str, why: str = ""
    ) -> None:
        self.step = step
        self.cause = cause
        self.attempts = attempts
        self.traceback_text = "".join(traceback.format_exception(cause))
        if not why:
            why = type(cause).__qualname__ + (f": {cause}" if str(cause) else "")
        super().__init__(f"step {step!r} {what} after {attempts} attempt(s): {why}")


class StepFailed(_StepError):
    """A step raised; the original exception is ``__cause__`` (and ``cause``).

    ``step`` is the step's name, ``attempts`` how many attempts were made,
    ``traceback_text`` the original traceback, formatted when it was caught.
    """

    def __init__(self, step: str, cause: BaseException, attempts: int = 1) -> None:
        super().__init__(step, cause, attempts, "failed")


class StepTimedOut(StepFailed):
    """A step's last attempt exceeded its ``(docket.step).timeout``: ``timeout``, in seconds.

    ``cause`` is the attempt's ``TimeoutError``.
    """

    def __init__(self, step: str, cause: BaseException, attempts: int, timeout: float) -> None:
        self.timeout = timeout
        _StepError.__init__(
            self,
            step,
            cause,
            attempts,
            "timed out",
            f"the last one ran past the step's timeout of {timeout:g}s; "
            "raise (docket.step).timeout if the step needs longer",
        )


class ExecutionAborted(_StepError):
    """A step raised :class:`Abort`: the execution stopped and cancelled what was in flight.

    A subgraph step whose child execution aborted aborts its parent the same way: its
    ``cause`` is then the child's ExecutionAborted.
    """

    def __init__(self, step: str, cause: BaseException, attempts: int = 1) -> None:
        super().__init__(step, cause, attempts, "aborted the execution")


class DeadlineExceeded(DocketError, TimeoutError):
    """The execution did not finish within its deadline; the steps in flight were cancelled.

    ``in_flight`` maps each step that was cut to its attempt then: the attempt
    it was running, or, for a step in ``waiting``, the attempt that failed
    before the retry it was waiting for. In a batch, a step cut in several
    items appears once, with its highest attempt.
    """

    def __init__(
        self,
        graph: str,
        target: str,
        deadline: float,
        in_flight: Mapping[str, int] | None = None,
        waiting: Collection[str] = (),
    ) -> None:
        self.graph = graph
        self.target = target
        self.deadline = deadline
        self.in_flight: dict[str, int] = dict(in_flight or {})
        self.waiting = frozenset(waiting)
        cut = ", ".join(
            f"{step} (attempt {attempt} failed, waiting to retry)"
            if step in self.waiting
            else f"{step} (attempt {attempt})"
            for step, attempt in sorted(self.in_flight.items())
        )
        super().__init__(
            f"{graph}: {target} not produced within the deadline of {deadline:g}s; "
            + (f"cut in flight: {cut}" if cut else "no step was in flight")
        )


class ItemFailed(DocketError):
    """An item of a batch failed; the items still in flight were cancelled.

    Raised by ``run_batch`` with ``on_error="raise"`` (the default) at the first
    failed item, and in any mode when a step aborts (``Abort``). ``index`` is
    the item's position in ``items``; ``error`` (also ``__cause__``) says why:
    a :class:`StepFailed`, :class:`ExecutionAborted` or :class:`StepClaimed`.
    """

    def __init__(self, index: int, error: BaseException) -> None:
        self.index = index
        self.error = error
        super().__init__(f"item {index} of the batch failed: {error}")


class StepClaimed(DocketError):
    """An ``AT_MOST_ONCE`` step was already claimed in this execution and has no result.

    Its step ran (it is still running elsewhere, its process died, it failed or
    was cancelled), so its effect may have happened and Docket does not run it
    again on its own: check the effect, then ``Graph.settle(step, execution_id,
    result)`` if it happened, or ``Graph.settle(step, execution_id,
    release=True)`` to let the next run run it. ``status`` is the claim's
    (``running``, ``failed``, ``cancelled``; ``claimed`` while another owner
    that is alive is about to start it; ``succeeded`` when its recorded result
    is damaged or was removed: the log of ``docket.persistence`` says which).
    """

    def __init__(self, step: str, execution_id: str, status: str, owner: str) -> None:
        self.step = step
        self.execution_id = execution_id
        self.status = status
        self.owner = owner
        if status == "succeeded":
            super().__init__(
                f"step {step!r} of execution {execution_id!r} is AT_MOST_ONCE and succeeded "
                f"(claimed by {owner}), but its recorded result is unreadable (damaged or "
                "removed; see the docket.persistence log); it is not run again: check its "
                f"effect, then rerun_from({step!r}, {execution_id!r}) to run it again"
            )
            return
        super().__init__(
            f"step {step!r} of execution {execution_id!r} is AT_MOST_ONCE and was already "
            f"claimed by {owner} (status {status}, no result recorded); it is not run again: "
            f"check its effect, then settle({step!r}, {execution_id!r}, <its result>) if it "
            f"happened, or settle({step!r}, {execution_id!r}, release=True) to run it again"
        )


class Suspended(DocketError):
    """The run stopped on purpose and continues in a new job of the durable queue.

    Raised only in durable mode (set by :mod:`docket_runtime.durable`):
    what is checkpointed stays, the execution is recorded ``waiting`` or
    ``queued``, and the adapter defers the job that resumes it. ``step`` is the
    step that asked for it.
    """

    def __init__(self, step: str, message: str) -> None:
        self.step = step
        super().__init__(message)


class RetryLater(Suspended):
    """A retryable failure of a durable step: the retry is a job scheduled after the backoff.

    ``attempt`` is the attempt that failed (counted across jobs), ``delay`` the
    backoff in seconds, ``wake_at`` when the retry is due (aware UTC), ``error``
    the step's exception (also ``__cause__``).
    """

    def __init__(self, step: str, attempt: int, delay: float, error: BaseException) -> None:
        self.attempt = attempt
        self.delay = delay
        self.error = error
        self.wake_at = datetime.now(UTC) + timedelta(seconds=delay)
        kind = type(error).__qualname__
        detail = f": {error}" if str(error) else ""
        super().__init__(
            step,
            f"step {step!r} failed on attempt {attempt} ({kind}{detail}); "
            f"retrying in {delay:.3g}s, in a new job",
        )


class HandOff(Suspended):
    """A step called ``context().hand_off()``: its result is checkpointed, the rest of
    the execution continues in a new job."""

    def __init__(self, step: str) -> None:
        super().__init__(step, f"step {step!r} handed the rest of the execution to a new job")
