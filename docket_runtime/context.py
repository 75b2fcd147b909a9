"""The step context: who is running, reached through a contextvar, as in Temporal's and DBOS's SDKs.

Step methods take only their proto inputs; what they need to know about the
execution comes from :func:`context`::

    async def charge_card(self, order: Order, /) -> ChargeResult:
        ctx = docket_runtime.context()
        ctx.logger.info("charging %s", order.id)
        return await payments.charge(order, idempotency_key=ctx.idempotency_key)

Called outside an execution (a unit test calling the method directly),
:func:`context` returns a detached context, so the same code runs unchanged.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import uuid
from collections.abc import Awaitable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Literal, TypeVar

if TYPE_CHECKING:
    from .stores.base import StepEnd, Store

__all__ = ["Execution", "StepContext", "context", "shielded"]

T = TypeVar("T")

DETACHED = "detached"


class Execution:
    """One execution of a target: its values and its id, made on first use when not given."""

    __slots__ = ("_id", "chained", "contexts", "cut", "ends_with_run", "graph", "unsent", "values")

    def __init__(self, graph: str, slots: int, execution_id: str | None = None) -> None:
        self.graph = graph
        self.values: list[Any] = [None] * slots
        self._id = execution_id
        self.cut: dict[str, tuple[int, bool]] | None = None
        self.contexts: dict[str, StepContext] | None = None
        """The contexts of steps with one attempt (see :data:`StepRun`), made on first use."""
        self.chained = False
        """True while the steps run one after another (a chain), none at the same time."""
        self.unsent: tuple[Store, StepEnd] | None = None
        """A recorded step's end not written yet: in a chain, the next step's start writes
        it (before that step's body runs), else the chain's end does."""
        self.ends_with_run = False
        """Set when the execution's recorded end writes the last ``unsent`` step end with it
        (:mod:`._lifecycle`): then the chain leaves it there."""

    def step_context(self, step: str) -> StepContext:
        """The context of ``step``'s one attempt in this execution, made on its first use.

        Called by :func:`context` from the step, or from a task or thread it
        started, possibly at the same time: the lock makes them get one object.
        """
        contexts = self.contexts
        found = None if contexts is None else contexts.get(step)
        if found is None:
            with _made:
                if self.contexts is None:
                    self.contexts = {}
                found = self.contexts.setdefault(step, StepContext(self, step, 1))
        return found

    def was_cut(self, step: str, attempt: int, waiting: bool = False) -> None:
        """Note that ``step`` was cancelled on ``attempt``: the attempt it was running, or,
        ``waiting``, the failed one whose retry it was waiting for. Called on the way out of
        a cancelled step only; a :class:`~docket_runtime.errors.DeadlineExceeded` reads it."""
        cut = self.cut
        if cut is None:
            cut = self.cut = {}
        seen = cut.get(step)
        if seen is None or seen[0] <= attempt:
            cut[step] = (attempt, waiting)

    @property
    def id(self) -> str:
        """The execution id: the caller's, or a random one made on first use."""
        if self._id is None:
            self._id = uuid.uuid4().hex
        return self._id


class StepContext:
    """What a running step may know about its execution.

    ``execution_id``: the execution's id (``"detached"`` outside one);
    ``step``: the step's name; ``attempt``: 1 for the first attempt;
    ``idempotency_key``: the same for every attempt and every resume of this
    step in this execution, different for any other (a key for payment APIs);
    ``logger``: a logger whose records carry the execution id, step and attempt.
    """

    __slots__ = ("_cancelled", "_execution", "_hand_off", "_logger", "attempt", "step")

    def __init__(self, execution: Execution | None, step: str, attempt: int) -> None:
        self._execution = execution
        self.step = step
        self.attempt = attempt
        self._cancelled = False
        self._hand_off = False
        self._logger: logging.LoggerAdapter[logging.Logger] | None = None

    @property
    def execution_id(self) -> str:
        return DETACHED if self._execution is None else self._execution.id

    @property
    def detached(self) -> bool:
        """True outside an execution (a step method called directly)."""
        return self._execution is None

    @property
    def idempotency_key(self) -> str:
        digest = hashlib.sha256(f"{self.execution_id}\0{self.step}".encode())
        return digest.hexdigest()[:32]

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        if self._logger is None:
            extra = {"execution_id": self.execution_id, "step": self.step, "attempt": self.attempt}
            self._logger = logging.LoggerAdapter(
                logging.getLogger(f"docket.step.{self.step}"), extra
            )
        return self._logger

    def is_cancelled(self) -> bool:
        """True once the execution no longer wants this attempt's result.

        A blocking step keeps running in its thread after a cancellation or a
        timeout; it can poll this to stop early.
        """
        if self._cancelled:
            return True
        try:
            task = asyncio.current_task()
        except RuntimeError:  # in a worker thread: no event loop here
            return False
        return task is not None and task.cancelling() > 0

    def hand_off(self) -> None:
        """Continue the execution in a new job once this step's result is checkpointed.

        For long or heavy executions run by a durable worker
        (:mod:`docket_runtime.durable`): when the step returns, its result
        is written, the current job ends and a new job resumes the execution
        from the checkpoints. Only a step whose result is kept (a cache scope,
        or ``AT_MOST_ONCE``) can hand off; elsewhere (no durable worker, or
        nothing kept) the call is ignored and the execution goes on in place.
        """
        self._hand_off = True

    def _cancel(self) -> None:
        self._cancelled = True


StepRun = tuple[Execution, str]
"""What the context variable holds while a step without retry, timeout, hooks or store
runs (its one attempt): its execution and name. Its :class:`StepContext` is made only if
the step, or a task or thread it started, asks for it (:meth:`Execution.step_context`)."""

_current: ContextVar[StepContext | StepRun | None] = ContextVar("docket_step_context", default=None)
"""The running step. A step's runner sets it and does not reset it: the scheduler
(:func:`docket_runtime._scheduler.execute`) restores the value it found once the
execution's steps are done, and a step running in a task of its own sets it in the
task's own copy of the context."""

_made = threading.Lock()

DurableMode = Literal["steps", "all"]
"""How a run under a durable queue retries: ``"steps"``: the steps marked
``durable`` retry through the queue, the others in memory; ``"all"``: every
retryable step retries through the queue."""

_durable: ContextVar[DurableMode | None] = ContextVar("docket_durable_mode", default=None)
"""Set by the queue adapter around a run; ``None`` (no queue): every retry is in memory."""


def context() -> StepContext:
    """The running step's context, or a detached one outside an execution."""
    current = _current.get()
    if current is None:
        return StepContext(None, "", 1)
    if isinstance(current, tuple):
        return current[0].step_context(current[1])
    return current


async def shielded(awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` to the end even if the step is cancelled meanwhile, then re-raise.

    For cleanup that must not be cut short (releasing a reservation, closing
    a remote session): the execution waits for it before it reports.
    """
    task = asyncio.ensure_future(awaitable)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return result
