"""Exceptions of the runtime.

What a caller of ``run`` can get, and what each means:

- :class:`StepFailed`: a step raised and will not be retried (not retryable, or
  out of attempts). :class:`StepTimedOut` is the same for a step whose last
  attempt ran out of time.
- :class:`ExecutionAborted`: a step raised :class:`Abort`; everything in
  flight was cancelled and nothing was retried.
- :class:`DeadlineExceeded`: the execution's overall deadline passed.
- ``asyncio.CancelledError``: the caller itself was cancelled.

Each carries the step's name, the attempts made, the original exception as
``__cause__`` and its traceback text.
"""

from __future__ import annotations

import traceback

__all__ = [
    "Abort",
    "BindError",
    "DeadlineExceeded",
    "DocketError",
    "ExecutionAborted",
    "StepClaimed",
    "StepFailed",
    "StepTimedOut",
]


class DocketError(Exception):
    """Base class of every error Docket raises."""


class BindError(DocketError, TypeError):
    """An implementation does not fit the graph it is bound to."""


class Abort(Exception):
    """Raise it from a step to stop the whole execution at once: never retried."""


class _StepError(DocketError):
    def __init__(self, step: str, cause: BaseException, attempts: int, what: str) -> None:
        self.step = step
        self.cause = cause
        self.attempts = attempts
        self.traceback_text = "".join(traceback.format_exception(cause))
        kind = type(cause).__qualname__
        detail = f": {cause}" if str(cause) else ""
        super().__init__(f"step {step!r} {what} after {attempts} attempt(s): {kind}{detail}")


class StepFailed(_StepError):
    """A step raised; the original exception is ``__cause__`` (and ``cause``).

    ``step`` is the step's name, ``attempts`` how many attempts were made,
    ``traceback_text`` the original traceback, formatted when it was caught.
    """

    def __init__(self, step: str, cause: BaseException, attempts: int = 1) -> None:
        super().__init__(step, cause, attempts, "failed")


class StepTimedOut(StepFailed):
    """A step's last attempt exceeded its ``(docket.step).timeout``."""


class ExecutionAborted(_StepError):
    """A step raised :class:`Abort`: the execution stopped and cancelled what was in flight.

    A subgraph step whose child execution aborted aborts its parent the same way: its
    ``cause`` is then the child's ExecutionAborted.
    """

    def __init__(self, step: str, cause: BaseException, attempts: int = 1) -> None:
        super().__init__(step, cause, attempts, "aborted the execution")


class DeadlineExceeded(DocketError, TimeoutError):
    """The execution did not finish within its deadline; the steps in flight were cancelled."""

    def __init__(self, graph: str, target: str, deadline: float) -> None:
        self.graph = graph
        self.target = target
        self.deadline = deadline
        super().__init__(f"{graph}: {target} not produced within the deadline of {deadline:g}s")


class StepClaimed(DocketError):
    """An ``AT_MOST_ONCE`` step was already claimed in this execution and has no result.

    Its run may have had its effect (it is still running elsewhere, its worker
    died, or it failed), so Docket does not run it again on its own: check the
    effect, then ``Graph.rerun_from(step, execution_id)`` to allow a new run.
    """

    def __init__(self, step: str, execution_id: str, status: str, owner: str) -> None:
        self.step = step
        self.execution_id = execution_id
        self.status = status
        self.owner = owner
        super().__init__(
            f"step {step!r} of execution {execution_id!r} is AT_MOST_ONCE and was already "
            f"claimed by {owner} (status {status}, no result recorded); it is not run again: "
            f"check its effect, then call rerun_from({step!r}, {execution_id!r}) to allow a new run"
        )
