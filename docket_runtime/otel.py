"""OpenTelemetry traces and metrics of a graph's runs: bind ``events=[Tracing()]``.

Needs the OpenTelemetry API (``pip install 'docket-proto[otel]'``); the SDK,
its exporters and their setup are the application's. Nothing imports this
module unless you do: a graph bound without a :class:`Tracing` never loads
OpenTelemetry and runs exactly as before. ::

    from docket_runtime.otel import Tracing

    graph = orders_docket.Orders(OrderSteps(), events=[Tracing()])

Spans (their names; every attribute is listed in ``docs/tracing.md``):

- ``docket.execution <target>``, ``docket.batch <target>``, ``docket.item
  <target>``: one per execution, batch run and batch item, current while its
  steps run; an item's parent is its batch. Ended with ``docket.outcome``;
  error status when the execution failed, aborted or timed out; an event
  ``suspended`` (with ``docket.wake_at`` for a durable retry) when a durable
  run continues in a new job; events ``docket.retry`` (a step's backoff
  starts) and ``docket.cache_hit`` (a kept result used instead of a run).
- ``docket.step <step>``: one per attempt, current while the step's body runs
  (a span the step opens is its child, in a thread too); error status and the
  exception recorded when the attempt failed or timed out.
- ``docket.enqueue <target>``: a durable enqueue (``docket_runtime.durable``).
  Its trace context is stored with the execution's row, and each job that
  resumes the execution, in any worker process, starts its execution span
  as a child of it: one trace from the enqueue to the end, across retries,
  hand-offs and crashes.

Metrics: ``docket.step.duration`` (s, per attempt), ``docket.step.attempts``,
``docket.step.retries``, ``docket.cache.hits``, ``docket.cache.misses``,
``docket.executions``, ``docket.execution.duration`` (s) and
``docket.batch.items``.

A subgraph's child graph is traced when it is bound with a ``Tracing`` too
(its execution span is then a child of the parent's step span).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics, propagate, trace
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode
except ImportError as err:  # pragma: no cover - exercised by hand without the extra
    raise ImportError(
        "docket_runtime.otel needs the OpenTelemetry API: pip install 'docket-proto[otel]'"
    ) from err

from google.protobuf.message import Message

from . import __version__
from ._tracing import ExecutionKind, StepCall
from .context import context
from .errors import Abort, ExecutionAborted, RetryLater, Suspended
from .events import CacheLookup, Events, StepRetrying, outcome_of
from .plan import Step

__all__ = ["SCOPE", "Tracing"]

SCOPE: Final = "docket_runtime"
"""The instrumentation scope of Docket's spans and metrics."""

# Attribute names.
GRAPH: Final = "docket.graph"
TARGET: Final = "docket.target"
EXECUTION_ID: Final = "docket.execution_id"
OUTCOME: Final = "docket.outcome"
STEP: Final = "docket.step"
ATTEMPT: Final = "docket.attempt"
DELIVERY: Final = "docket.delivery"
CACHE_SCOPE: Final = "docket.cache.scope"

DURATION_BUCKETS: Final = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)
"""The bucket boundaries (seconds) advised for the duration histograms."""

_ERROR_OUTCOMES: Final = frozenset({"failed", "aborted", "timed_out"})

_log = logging.getLogger("docket.otel")


class Tracing(Events):
    """Traces and measures the runs of the graphs it is bound to (see the module docstring).

    ``tracer_provider`` and ``meter_provider`` default to OpenTelemetry's
    global ones. One instance may be bound to several graphs.
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self._tracer = trace.get_tracer(SCOPE, __version__, tracer_provider)
        meter = metrics.get_meter(SCOPE, __version__, meter_provider)
        self._step_duration = _seconds(meter, "docket.step.duration", "Duration of step attempts")
        self._attempts = meter.create_counter(
            "docket.step.attempts", "{attempt}", "Step attempts started"
        )
        self._retries = meter.create_counter(
            "docket.step.retries", "{retry}", "Failed step attempts that will be retried"
        )
        self._hits = meter.create_counter(
            "docket.cache.hits", "{lookup}", "Kept results found and used instead of a run"
        )
        self._misses = meter.create_counter(
            "docket.cache.misses", "{lookup}", "Kept results looked for and not found"
        )
        self._executions = meter.create_counter(
            "docket.executions", "{execution}", "Executions and batch runs ended, by outcome"
        )
        self._execution_duration = _seconds(
            meter, "docket.execution.duration", "Duration of executions and batch runs"
        )
        self._items = meter.create_counter(
            "docket.batch.items", "{item}", "Batch items ended, by outcome"
        )

    # -- the engine's side (docket_runtime._tracing.Tracer) ----------------------------------

    def execution(
        self, graph: str, target: str, execution_id: str, *, kind: ExecutionKind
    ) -> _ExecutionSpan:
        """Start the span of an execution, a batch run or a batch item."""
        parent = trace.get_current_span().get_span_context()
        span = self._tracer.start_span(
            f"docket.{'execution' if kind == 'run' else kind} {target}",
            # Resumed by a durable worker: its parent is the enqueue, in another process.
            kind=SpanKind.CONSUMER if parent.is_remote else SpanKind.INTERNAL,
            attributes={GRAPH: graph, TARGET: target, EXECUTION_ID: execution_id},
        )
        return _ExecutionSpan(self, span, graph, target, kind)

    def step_call(self, graph: str, step: Step, out_cls: type[Message], call: StepCall) -> StepCall:
        """``call`` with each attempt under a ``docket.step`` span, measured."""
        tracer, name, timeout = self._tracer, f"docket.step {step.name}", step.timeout
        static = {GRAPH: graph, STEP: step.name, DELIVERY: step.delivery.value}
        measured = {GRAPH: graph, STEP: step.name}
        durations, attempts = self._step_duration, self._attempts

        async def traced(*args: Any) -> Any:
            ctx = context()
            attempts.add(1, measured)
            span = tracer.start_span(
                name, attributes={**static, EXECUTION_ID: ctx.execution_id, ATTEMPT: ctx.attempt}
            )
            started = time.perf_counter()
            outcome = "succeeded"
            token = otel_context.attach(trace.set_span_in_context(span))
            try:
                result = await call(*args)
                if type(result) is not out_cls:
                    outcome = "failed"  # the runner fails the step for it
                    span.set_status(
                        Status(
                            StatusCode.ERROR,
                            f"returned {type(result).__qualname__}, "
                            f"expected {out_cls.DESCRIPTOR.full_name}",
                        )
                    )
                return result
            except BaseException as exc:
                outcome = _attempt_outcome(exc, time.perf_counter() - started, timeout)
                if outcome == "timed_out":
                    span.set_status(Status(StatusCode.ERROR, f"timed out after {timeout:g}s"))
                elif outcome in _ERROR_OUTCOMES:
                    _failed(span, exc)
                raise
            finally:
                otel_context.detach(token)
                span.set_attribute(OUTCOME, outcome)
                span.end()
                durations.record(time.perf_counter() - started, {**measured, OUTCOME: outcome})

        return traced

    @contextmanager
    def enqueued(self, graph: str, target: str, execution_id: str) -> Iterator[str | None]:
        """A ``docket.enqueue`` span around recording an enqueued execution; yields its
        trace context as JSON text, stored with the execution's row."""
        span = self._tracer.start_span(
            f"docket.enqueue {target}",
            kind=SpanKind.PRODUCER,
            attributes={GRAPH: graph, TARGET: target, EXECUTION_ID: execution_id},
        )
        with trace.use_span(span, end_on_exit=True):
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            yield json.dumps(carrier, sort_keys=True) if carrier else None

    @contextmanager
    def resumed(self, carried: str | None) -> Iterator[None]:
        """Make the trace context stored at enqueue current around a durable resume."""
        carrier = _carrier(carried)
        if not carrier:
            yield
            return
        token = otel_context.attach(propagate.extract(carrier))
        try:
            yield
        finally:
            otel_context.detach(token)

    # -- event hooks --------------------------------------------------------------------------

    def step_retrying(self, event: StepRetrying) -> None:
        """Count the retry; a ``docket.retry`` event on the execution's span."""
        self._retries.add(1, {GRAPH: event.graph, STEP: event.step})
        trace.get_current_span().add_event(
            "docket.retry",
            {
                STEP: event.step,
                ATTEMPT: event.attempt,
                "docket.retry.delay": event.delay,
                "exception.type": _qualified(type(event.error)),
                "exception.message": str(event.error),
            },
        )

    def cache_lookup(self, event: CacheLookup) -> None:
        """Count the hit or miss; a hit is a ``docket.cache_hit`` event on the execution's span."""
        attributes = {GRAPH: event.graph, STEP: event.step, CACHE_SCOPE: event.scope}
        if event.hit:
            self._hits.add(1, attributes)
            trace.get_current_span().add_event(
                "docket.cache_hit", {STEP: event.step, CACHE_SCOPE: event.scope}
            )
        else:
            self._misses.add(1, attributes)


class _ExecutionSpan:
    """The span of one execution (``docket_runtime._tracing.ExecutionSpan``)."""

    __slots__ = ("graph", "kind", "span", "started", "target", "tracing")

    def __init__(
        self, tracing: Tracing, span: Span, graph: str, target: str, kind: ExecutionKind
    ) -> None:
        self.tracing = tracing
        self.span = span
        self.graph = graph
        self.target = target
        self.kind = kind
        self.started = time.perf_counter()

    @contextmanager
    def current(self) -> Iterator[None]:
        token = otel_context.attach(trace.set_span_in_context(self.span))
        try:
            yield
        finally:
            otel_context.detach(token)

    def end(self, error: BaseException | None) -> None:
        span = self.span
        outcome = "succeeded" if error is None else outcome_of(error)
        span.set_attribute(OUTCOME, outcome)
        if isinstance(error, Suspended):
            attributes: dict[str, str] = {STEP: error.step, "docket.reason": str(error)}
            if isinstance(error, RetryLater):
                attributes["docket.wake_at"] = error.wake_at.isoformat()
            span.add_event("suspended", attributes)
        elif error is not None and outcome in _ERROR_OUTCOMES:
            _failed(span, error)
        span.end()
        tracing = self.tracing
        measured = {GRAPH: self.graph, TARGET: self.target, OUTCOME: outcome}
        if self.kind == "item":
            tracing._items.add(1, measured)
        else:
            tracing._executions.add(1, measured)
            tracing._execution_duration.record(time.perf_counter() - self.started, measured)


def _attempt_outcome(error: BaseException, elapsed: float, timeout: float | None) -> str:
    """How an attempt that raised ``error`` ended, as the runner will see it."""
    if isinstance(error, Suspended):
        return "suspended"  # a subgraph step whose child continues in a new job
    if isinstance(error, Abort | ExecutionAborted):
        return "aborted"
    if isinstance(error, asyncio.CancelledError):
        task = asyncio.current_task()
        if task is None or task.cancelling() == 0:
            return "failed"  # raised by the step itself
        # Cut by the step's own timeout (asyncio.timeout cancels the task), or cancelled.
        return "timed_out" if timeout is not None and elapsed >= timeout else "cancelled"
    return "failed"


def _failed(span: Span, error: BaseException) -> None:
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__qualname__}: {error}"))


def _qualified(cls: type[BaseException]) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _carrier(carried: str | None) -> Mapping[str, str] | None:
    """The propagation carrier stored with an execution, or ``None`` if there is none to use."""
    if not carried:
        return None
    try:
        value = json.loads(carried)
    except ValueError:
        _log.warning("ignoring an unreadable trace context: %r", carried[:200])
        return None
    if not isinstance(value, dict):
        return None
    return {str(k): str(v) for k, v in value.items()}


def _seconds(meter: metrics.Meter, name: str, description: str) -> metrics.Histogram:
    """A duration histogram in seconds, advising second-scale buckets where the API can."""
    try:
        return meter.create_histogram(
            name,
            unit="s",
            description=description,
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
    except TypeError:  # OpenTelemetry API before 1.30: no advisory (configure a View)
        return meter.create_histogram(name, unit="s", description=description)
