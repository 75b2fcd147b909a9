"""The narrow interface through which the engine reports to a tracer.

:class:`docket_runtime.otel.Tracing` implements it; the engine holds ``None``
when no tracer is bound, and then skips every tracing site with one ``is
None`` test (a graph bound without one never imports OpenTelemetry). A
tracer is bound by passing it among a graph's event hooks: it also receives
the :class:`~docket_runtime.events.Events` it cares for (retries, cache
lookups).

What the engine calls, and where:

- :meth:`Tracer.execution`, by the lifecycle (:mod:`._lifecycle`) of every
  execution, batch and batch item: a span that is current while the
  execution's steps run, and ended with the execution's outcome;
- :meth:`Tracer.step_call`, once per step when a graph is bound: wraps the
  step's body so that each attempt runs under a span of its own;
- :meth:`Tracer.enqueued` and :meth:`Tracer.resumed`, by the durable core:
  the trace context written with an enqueued execution's row, and joined
  again by each job that resumes it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any, Literal, Protocol, runtime_checkable

from google.protobuf.message import Message

from .plan import Step

__all__ = ["ExecutionKind", "ExecutionSpan", "StepCall", "Tracer"]

ExecutionKind = Literal["run", "batch", "item"]
"""What an execution is: a run of a target, a batch run, or one item of a batch."""

StepCall = Callable[..., Awaitable[Any]]
"""A bound step's body: takes the step's inputs, returns its output message."""


class ExecutionSpan(Protocol):
    """The span of one execution, from its start to its end."""

    def current(self) -> AbstractContextManager[None]:
        """Make the span current while the execution's steps run (in this task)."""
        ...

    def end(self, error: BaseException | None) -> None:
        """End the span with the execution's outcome (``error`` as the caller gets it)."""
        ...


@runtime_checkable
class Tracer(Protocol):
    """What the engine needs of a tracer (see the module docstring)."""

    def execution(
        self, graph: str, target: str, execution_id: str, *, kind: ExecutionKind
    ) -> ExecutionSpan:
        """Start the span of an execution."""
        ...

    def step_call(self, graph: str, step: Step, out_cls: type[Message], call: StepCall) -> StepCall:
        """``call`` wrapped so that each attempt of ``step`` runs under its own span."""
        ...

    def enqueued(
        self, graph: str, target: str, execution_id: str
    ) -> AbstractContextManager[str | None]:
        """Around recording an enqueued execution: yields the trace context to store with it
        (JSON text, or ``None`` when there is nothing to carry)."""
        ...

    def resumed(self, carried: str | None) -> AbstractContextManager[None]:
        """Around a durable resume: joins the trace context stored at enqueue."""
        ...
