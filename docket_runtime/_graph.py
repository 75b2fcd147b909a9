"""Binding an implementation to a generated graph, and running targets.

A generated module subclasses :class:`Graph` once per proto service, sets its
``plan`` and adds the typed entry points (``run``, ``run_batch``, ``fetch``,
``result``, ``enqueue``, ``schedule``), which call the untyped ones here
(``run_target``, ...) or in :mod:`docket_runtime.durable`. Binding checks the
implementation against the plan once and turns every step into a runner;
running a target fills the execution's values and hands them to the scheduler.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Executor
from typing import Any, ClassVar, Generic, Literal, TypeVar, cast

from google.protobuf.message import Message

from . import _amend
from ._batch import run_batch
from ._checks import check_annotations, unknown_error_names
from ._engine import Engine
from ._ids import check_execution_id
from ._inputs import fill_inputs, not_a_class
from ._lifecycle import Exiting
from ._loopwatch import Watch
from ._persistence import encode, input_key, lookup, persisted_scope, step_keys
from ._runner import Persistence, Runner, make_runner
from ._scheduler import execute
from ._tables import PlanTables, StepTable, TargetTable, build_tables
from ._tracing import StepCall, Tracer
from .context import Execution, context
from .errors import BindError
from .events import Dispatch, Events
from .plan import Delivery, GraphPlan, RetryPolicy, Step
from .retry import Classifier
from .stores.base import Store, default_owner, workflow_key
from .stores.memory import MemoryStore

__all__ = ["Graph"]

_log = logging.getLogger("docket.graph")

S = TypeVar("S")
M = TypeVar("M", bound=Message)


def _tables(cls: type[Graph[Any]]) -> PlanTables:
    """The index tables of a graph class's plan, built when it is first bound."""
    tables = cls.__dict__.get("_docket_tables")
    if not isinstance(tables, PlanTables) or tables.plan is not cls.plan:
        tables = build_tables(cls.plan)
        cls._docket_tables = tables  # type: ignore[attr-defined]
    return tables


class Graph(Generic[S]):
    """A graph bound to an implementation of its steps.

    ``steps`` implements the generated ``<Graph>Steps`` protocol.
    ``executor`` runs blocking steps (default: asyncio's thread pool).
    ``subgraphs`` maps the full name of each graph that a ``subgraph`` step
    delegates to, to a bound instance of that graph. ``default_retry`` is the
    retry policy of steps that set none in the proto (default: no retry).
    ``retry_classifier(step, error)`` may overrule the policies: ``True``
    retries, ``False`` never retries, ``None`` lets the policy decide.
    ``events`` are hooks (:class:`~docket_runtime.events.Events`); a
    :class:`docket_runtime.otel.Tracing` among them traces the graph's runs
    with OpenTelemetry (it is then ``tracer``).
    ``deadline`` bounds every execution, in seconds, unless ``run`` is given
    its own. ``sleep`` waits between retries (a fake clock in tests).

    ``store`` keeps the results of steps with a cache scope or ``AT_MOST_ONCE``
    delivery (see :func:`~docket_runtime.stores.open_store`; default: an
    in-memory store, which lives as long as this object). ``record`` also
    writes every execution and step run to it, for SQL and the CLI.
    ``owner`` names this process in claims (default: host, pid and a random part).

    ``loop_block_warning``: an ``async def`` step that holds the event loop
    longer than this, in seconds, is logged once (logger ``docket.runner``)
    with the advice to make it ``blocking: true``; ``None`` (the default) does
    not check: the watch costs a few microseconds per execution (see
    :mod:`docket_runtime._loopwatch`), so turn it on in development and tests.
    """

    plan: ClassVar[GraphPlan]

    def __init__(
        self,
        steps: S,
        *,
        executor: Executor | None = None,
        subgraphs: Mapping[str, Graph[Any]] | None = None,
        default_retry: RetryPolicy | None = None,
        retry_classifier: Classifier | None = None,
        events: Sequence[Events] = (),
        deadline: float | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        store: Store | None = None,
        record: bool = False,
        owner: str | None = None,
        loop_block_warning: float | None = None,
    ) -> None:
        self.steps = steps
        self.deadline = deadline
        self.record = record
        self.subgraphs: Mapping[str, Graph[Any]] = dict(subgraphs or {})
        self._tables = _tables(type(self))
        self._events = Dispatch(events) if events else None
        self.tracer: Tracer | None = next((h for h in events if isinstance(h, Tracer)), None)
        kept = [persisted_scope(t.step) is not None for t in self._tables.steps]
        self.store: Store | None = store or (MemoryStore() if any(kept) or record else None)
        owner = owner or default_owner()
        self._owner = owner
        self._kept = tuple(kept)
        # Targets with a step kept per execution: only their runs under a caller's id look up
        # checkpoints. A GLOBAL step has none (Engine.checkpoints would read nothing), so
        # its hits under an id skip the lifecycle when nothing else needs it.
        per_execution = [
            kept[i] and persisted_scope(t.step) == "workflow"
            for i, t in enumerate(self._tables.steps)
        ]
        self._resumable = frozenset(
            cls for cls, t in self._tables.targets.items() if any(per_execution[i] for i in t.steps)
        )
        self._runners: tuple[Runner, ...] = tuple(
            make_runner(
                table,
                self._traced(
                    table, _bind_call(table, steps, executor, subgraphs or {}, self.plan.name)
                ),
                graph=self.plan.name,
                # An AT_MOST_ONCE step never runs twice: a failed run is reported, not retried.
                retry=None
                if table.step.delivery is Delivery.AT_MOST_ONCE
                else table.step.retry or default_retry,
                classifier=retry_classifier,
                events=self._events,
                sleep=sleep,
                persist=None
                if self.store is None or not (kept[index] or record)
                else Persistence(
                    store=self.store,
                    scope=persisted_scope(table.step),
                    claim=table.step.delivery is Delivery.AT_MOST_ONCE,
                    record=record,
                    owner=owner,
                    keys=step_keys(self.plan, table.step),
                ),
            )
            for index, table in enumerate(self._tables.steps)
        )
        check_annotations(self.plan, self._tables.steps, steps, f"{type(self).__name__}Steps")
        watched = [
            (t.step.name, getattr(steps, t.step.method))
            for t in self._tables.steps
            if t.step.subgraph is None and not t.step.blocking
        ]
        self._watch = (
            Watch(self.plan.name, loop_block_warning, watched)
            if loop_block_warning is not None and watched
            else None
        )
        unknown, modules = unknown_error_names(self.plan, steps, default_retry)
        if unknown:
            _log.warning(
                "%s: non_retryable_errors %s match no exception class among the builtins, "
                "%s and the modules it imports, so they never stop a retry; check the "
                "spelling, or name the class as module.Qualname (e.g. acme.errors.Declined)",
                self.plan.name,
                "; ".join(unknown),
                ", ".join(modules) or "the implementation's module",
            )
        self._engine = Engine(
            plan=self.plan,
            tables=self._tables,
            runners=self._runners,
            events=self._events,
            store=self.store,
            record=record,
            kept=self._kept,
            trace=self.tracer,
        )

    def _traced(self, table: StepTable, call: StepCall) -> StepCall:
        """``call``, each attempt under a span of its own when a tracer is bound."""
        if self.tracer is None:
            return call
        return self.tracer.step_call(self.plan.name, table.step, table.out_cls, call)

    async def run_target(
        self,
        target: type[M],
        inputs: Mapping[str, Message | None],
        *,
        execution_id: str | None = None,
        deadline: float | None = None,
        resume: bool = False,
        keep_result: bool = False,
    ) -> M:
        """Run ``target`` with graph inputs given by keyword; the untyped form of ``run``.

        ``execution_id`` names the execution (a random one otherwise; a
        ``ValueError`` for an id that is empty, holds a NUL character or is
        longer than 255 bytes in UTF-8); ``deadline`` bounds it, in seconds
        (default: the graph's). An ``execution_id`` whose checkpoints were
        computed from other inputs is a ``ValueError`` naming both, unless
        ``resume`` is true: then the run continues from those checkpoints.
        ``keep_result`` keeps the target's value as a ``WORKFLOW`` row of the
        execution before it is recorded ``succeeded``, for :meth:`result_target`,
        even when the step producing it keeps nothing (a durable worker's runs do).
        """
        if execution_id is not None:
            check_execution_id(execution_id, f"{self.plan.name}.run()")
        return await self._run(target, inputs, execution_id, deadline, resume, keep_result)

    async def _run(
        self,
        target: type[M],
        inputs: Mapping[str, Message | None],
        execution_id: str | None,
        deadline: float | None,
        resume: bool,
        keep_result: bool,
    ) -> M:
        """:meth:`run_target` after its id is checked; a subgraph's child run starts here."""
        table = self._target_table(target, "run")
        if keep_result and (self.store is None or not self.record):
            raise ValueError(
                f"graph {self.plan.name} keeps results of executions only when bound with "
                "a store and record=True"
            )
        execution = Execution(self.plan.name, len(self._tables.slots), execution_id)
        fill_inputs(table.inputs, table.keywords, inputs, execution.values, table.where)
        deadline = self.deadline if deadline is None else deadline
        # Checkpoints can exist only for an id the caller chose (a rerun or a resume).
        lookup = execution_id is not None and target in self._resumable
        watch = self._watch
        if watch is not None:
            watch.enter()
        try:
            if self._events is None and deadline is None and not lookup and not self.record:
                try:
                    await execute(table, self._runners, execution)
                except Exiting as exc:
                    raise exc.exc from None
            else:
                lifecycle = self._engine.lifecycle(execution, table.type_name, deadline)
                # Read before the execution is recorded: a run refused for other inputs
                # leaves the record of the run that used the id first alone.
                read = (
                    await self._engine.checkpoints(
                        table,
                        execution,
                        where=table.where,
                        other_inputs=resume,
                        start=table.type_name if self.record else None,
                    )
                    if lookup
                    else None
                )
                if read is not None and read.started:
                    lifecycle.recorded_start = True
                # The execution's end is the next write: the last step's end goes with it.
                execution.ends_with_run = self.record

                async def body() -> None:
                    pending = self._engine.restore(table, execution, read)
                    await execute(pending, self._runners, execution)
                    if keep_result:
                        await self._keep_result(table, execution)

                await lifecycle.run(body)
        finally:
            if watch is not None:
                watch.leave()
        result = execution.values[table.slot]
        assert isinstance(result, target)
        return result

    # Batch runs live in docket_runtime._batch; this is only their entry point.
    async def run_batch_target(
        self,
        target: type[M],
        items: Sequence[Message],
        inputs: Mapping[str, Message | None],
        *,
        max_concurrency: int | None = None,
        on_error: Literal["raise", "collect"] = "raise",
        execution_id: str | None = None,
        deadline: float | None = None,
        resume: bool = False,
    ) -> list[Any]:
        """Run ``target`` over ``items`` with shared graph inputs by keyword; the untyped
        form of the generated ``run_batch`` (see :mod:`docket_runtime._batch`).

        The result has one entry per item, in order: the target's value, or, with
        ``on_error="collect"``, an :class:`~docket_runtime._batch.ItemError`.
        ``deadline`` bounds the whole batch (the graph's own deadline does not apply).
        ``execution_id`` and ``resume`` are checked as :meth:`run_target` checks them,
        the items counting as inputs.
        """
        if execution_id is not None:
            check_execution_id(execution_id, f"{self.plan.name}.run_batch()")
        watch = self._watch
        if watch is not None:
            watch.enter()
        try:
            return await run_batch(
                self._engine,
                target,
                items,
                inputs,
                max_concurrency=max_concurrency,
                on_error=on_error,
                execution_id=execution_id,
                deadline=deadline,
                resume=resume,
            )
        finally:
            if watch is not None:
                watch.leave()

    async def fetch_target(
        self,
        target: type[M],
        *,
        execution_id: str | None = None,
        inputs: Sequence[Any] | None = None,
    ) -> M | None:
        """The kept result of the step producing ``target``, without computing anything;
        the untyped form of the generated ``fetch``.

        For a ``WORKFLOW``-scoped (or ``AT_MOST_ONCE``) step, give the
        ``execution_id``; for a ``GLOBAL`` one, the step's ``inputs`` in
        parameter order. ``None`` when nothing valid is kept. ``TypeError``
        for a step that keeps nothing, or without what its scope needs.
        """
        table = self._step_producing(target, "fetch")
        step = table.step
        scope = persisted_scope(step)
        if scope is None or self.store is None:
            raise TypeError(f"step {step.name!r} keeps no results (it has no cache scope)")
        if scope == "workflow":
            if execution_id is None:
                raise TypeError(f"step {step.name!r} keeps results per execution_id")
            check_execution_id(execution_id, f"{self.plan.name}.fetch()")
            key = workflow_key(execution_id, step.name, step.cache.version)
        else:
            if inputs is None or len(inputs) != len(step.inputs):
                names = ", ".join(i.name for i in step.inputs) or "none"
                raise TypeError(
                    f"step {step.name!r} keeps results by its inputs: give them in order ({names})"
                )
            key = input_key(step_keys(self.plan, step), inputs, self.store.codec)
        found = await lookup(self.store, key, step.name, table.out_cls)
        assert found is None or isinstance(found, target)
        return found

    async def result_target(self, target: type[M], execution_id: str) -> M | None:
        """The value of execution ``execution_id`` of ``target`` once it succeeded; the
        untyped form of the generated ``result``.

        An execution run by a durable worker keeps its value (``keep_result``);
        one run in process only when the step producing ``target`` keeps its
        result per execution. ``None`` until the execution succeeded, and when
        nothing is kept (forgotten by :meth:`rerun_from`, or expired). Raises
        ``ValueError`` when the graph does not record executions, or when the
        execution ran another graph or target.
        """
        table = self._target_table(target)
        check_execution_id(execution_id, f"{self.plan.name}.result()")
        store = self.store
        if store is None or not self.record:
            raise ValueError(
                f"graph {self.plan.name} does not record executions: bind it with a store "
                "and record=True (as a durable Registry does)"
            )
        row = await store.get_execution(execution_id)
        if row is None or row.status != "succeeded":
            return None
        if (row.graph, row.target) != (self.plan.name, table.type_name):
            raise ValueError(
                f"execution {execution_id!r} ran {row.graph} -> {row.target}, "
                f"not {self.plan.name} -> {table.type_name}"
            )
        producer = self._producer_of(table)
        key = workflow_key(execution_id, producer.step.name, producer.step.cache.version)
        value = await lookup(store, key, producer.step.name, producer.out_cls)
        assert value is None or isinstance(value, target)
        return value

    async def _keep_result(self, table: TargetTable, execution: Execution) -> None:
        """Keep the target's value as a ``WORKFLOW`` row of the execution, keyed as its
        step's checkpoint (which, when the step keeps one, is that row already)."""
        producer = self._producer_of(table)
        if persisted_scope(producer.step) == "workflow":
            return
        assert self.store is not None  # checked by run_target
        step = producer.step
        key = workflow_key(execution.id, step.name, step.cache.version)
        value = execution.values[table.slot]
        row = encode(
            step, key, "workflow", execution.id, value, graph=self.plan.name, codec=self.store.codec
        )
        # The execution's value lasts as long as the execution's records: no cache ttl.
        await self.store.put_result(dataclasses.replace(row, expires_at=None))

    async def rerun_from(self, step: str, execution_id: str) -> list[str]:
        """Forget what execution ``execution_id`` kept of ``step`` and of every step after it.

        The next run with that id computes them again (an ``AT_MOST_ONCE`` step
        is released too). Returns the names of the steps forgotten.
        """
        check_execution_id(execution_id, f"{self.plan.name}.rerun_from()")
        if self.store is None:
            return []
        forgotten, _ = await _amend.rerun_from(self.plan, self.store, step, execution_id)
        return forgotten

    async def settle(
        self,
        step: str,
        execution_id: str,
        result: Message | None = None,
        *,
        release: bool = False,
    ) -> None:
        """Decide an ``AT_MOST_ONCE`` step whose claim has no result, after checking its effect.

        With ``result`` (the step's output message, as the effect turned out),
        it becomes the step's checkpoint and the next run with ``execution_id``
        continues from it. With ``release=True`` the claim is dropped and the
        next run runs the step again. Raises ``TypeError`` for a result of
        another message type, ``ValueError`` when the step is not
        ``AT_MOST_ONCE``, when there is no claim to settle, or when it already
        succeeded (use :meth:`rerun_from` to run it again).
        """
        check_execution_id(execution_id, f"{self.plan.name}.settle()")
        # No store only when no step keeps results: none is AT_MOST_ONCE, and settle says so.
        store = self.store or MemoryStore()
        await _amend.settle(
            self.plan,
            store,
            step,
            execution_id,
            result,
            release=release,
            owner=f"settled:{self._owner}",
        )

    # -- the interface the batch runner and the durable adapter use -------------------------

    def check_inputs(self, target: type[Message], inputs: Mapping[str, Message | None]) -> None:
        """Raise TypeError unless ``inputs`` are valid graph inputs for running ``target``."""
        table = self._target_table(target)
        values = [None] * len(self._tables.slots)
        fill_inputs(table.inputs, table.keywords, inputs, values, table.where)

    def producer(self, target: type[Message]) -> Step:
        """The plan step producing ``target`` (TypeError if the graph has none)."""
        return self._step_producing(target).step

    def _target_table(self, target: type[Message], entry: str | None = None) -> TargetTable:
        try:
            table = self._tables.targets.get(target)
        except TypeError:  # unhashable: a message instead of its class
            table = None
        if table is None:
            self._check_class(target, entry)
            raise TypeError(
                f"graph {self.plan.name} cannot produce {_type_name(target)}; "
                f"it produces {', '.join(t.type for t in self.plan.targets)}"
            )
        return table

    def _producer_of(self, table: TargetTable) -> StepTable:
        return next(t for t in self._tables.steps if t.out_slot == table.slot)

    def _step_producing(self, target: type[Message], entry: str | None = None) -> StepTable:
        self._check_class(target, entry)
        name = _type_name(target)
        for table in self._tables.steps:
            if table.step.output == name:
                return table
        raise TypeError(f"graph {self.plan.name} has no step producing {name}")

    def _check_class(self, target: object, entry: str | None) -> None:
        """Raise TypeError unless ``target`` is a class; ``entry`` names the method called."""
        where = f"graph {self.plan.name}" if entry is None else f"{self.plan.name}.{entry}()"
        error = not_a_class(where, target, _example(self.plan))
        if error is not None:
            raise error


def _example(plan: GraphPlan) -> str:
    """The Python name of a class the graph produces, for messages."""
    return plan.types[plan.targets[-1].type].__qualname__ if plan.targets else "Receipt"


def _type_name(cls: type[Any]) -> str:
    descriptor = getattr(cls, "DESCRIPTOR", None)
    return str(getattr(descriptor, "full_name", cls.__qualname__))


def _bind_call(
    table: StepTable,
    impl: object,
    executor: Executor | None,
    subgraphs: Mapping[str, Graph[Any]],
    graph: str,
) -> Callable[..., Awaitable[Any]]:
    if table.step.subgraph is not None:
        return _subgraph_call(table, subgraphs, graph)
    return _method_call(table, impl, executor, graph)


def _method_call(
    table: StepTable, impl: object, executor: Executor | None, graph: str
) -> Callable[..., Any]:
    step = table.step
    method = getattr(impl, step.method, None)
    if method is None or not callable(method) or _protocol_stub(impl, step.method):
        raise BindError(
            f"{type(impl).__qualname__} does not implement step {step.name!r} of {graph}: "
            f"it needs a method {step.method}()"
        )
    is_async = inspect.iscoroutinefunction(method)
    if step.blocking:
        if is_async:
            raise BindError(
                f"step {step.name!r} of {graph} is blocking: "
                f"{type(impl).__qualname__}.{step.method} must be a plain def, not async def"
            )
        if executor is None:
            return functools.partial(asyncio.to_thread, method)

        def in_executor(*args: Any) -> asyncio.Future[Any]:
            context = contextvars.copy_context()
            call = functools.partial(context.run, method, *args)
            return asyncio.get_running_loop().run_in_executor(executor, call)

        return in_executor
    if not is_async:
        raise BindError(
            f"step {step.name!r} of {graph} is async: {type(impl).__qualname__}.{step.method} "
            "must be an async def (mark the step blocking: true to run a plain def in a thread)"
        )
    return cast(Callable[..., Any], method)


def _protocol_stub(impl: object, name: str) -> bool:
    """Whether ``impl`` only inherits ``name`` from the generated protocol it subclasses."""
    if name in getattr(impl, "__dict__", ()):
        return False
    for cls in type(impl).__mro__:
        if name in cls.__dict__:
            return bool(cls.__dict__.get("_is_protocol", False))
    return False


def _subgraph_call(
    table: StepTable, subgraphs: Mapping[str, Graph[Any]], graph: str
) -> Callable[..., Any]:
    step = table.step
    child = subgraphs.get(step.subgraph or "")
    if child is None:
        raise BindError(
            f"step {step.name!r} of {graph} runs graph {step.subgraph}: "
            f"bind it with subgraphs={{{step.subgraph!r}: <bound {step.subgraph}>}}"
        )
    if child.plan.name != step.subgraph:
        raise BindError(
            f"step {step.name!r} of {graph} runs graph {step.subgraph}, "
            f"but subgraphs[{step.subgraph!r}] is bound to {child.plan.name}"
        )
    child_target = child.plan.target(step.output)
    keyword_of = child.plan.inputs
    names = tuple(keyword_of.get(i.type) for i in step.inputs)
    needed = set(child_target.inputs)
    missing = needed - {i.type for i in step.inputs}
    if missing:
        raise BindError(
            f"step {step.name!r} of {graph}: graph {step.subgraph} needs "
            f"{', '.join(sorted(missing))} to produce {step.output}"
        )
    out_cls = table.out_cls

    async def call(*args: Any) -> Message:
        inputs = {n: a for n, a in zip(names, args, strict=True) if n is not None}
        # The child's id derives from the parent's, so a rerun of the parent finds the child again.
        child_id = f"{context().execution_id}/{step.name}"
        # Derived from a checked id, and from inputs the parent's own run checked.
        return await child._run(out_cls, inputs, child_id, None, True, False)

    return call
