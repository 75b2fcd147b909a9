"""Binding an implementation to a generated graph, and running targets.

A generated module subclasses :class:`Graph` once per proto service, sets its
``plan`` and adds typed ``run`` overloads. Binding checks the implementation
against the plan once and turns every step into a runner; running a target
fills a list of values and hands it to the scheduler.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from typing import Any, ClassVar, Generic, TypeVar, cast

from google.protobuf.message import Message

from .errors import BindError, StepFailed
from .plan import GraphPlan, InputKind
from .scheduler import Runner, Values, execute
from .tables import PlanTables, StepTable, TargetTable, build_tables

__all__ = ["Graph"]

S = TypeVar("S")
M = TypeVar("M", bound=Message)

_tables_cache: dict[int, PlanTables] = {}


def _tables(plan: GraphPlan) -> PlanTables:
    tables = _tables_cache.get(id(plan))
    if tables is None or tables.plan is not plan:
        tables = _tables_cache[id(plan)] = build_tables(plan)
    return tables


class Graph(Generic[S]):
    """A graph bound to an implementation of its steps.

    ``steps`` implements the generated ``<Graph>Steps`` protocol. ``executor``
    runs blocking steps (default: asyncio's thread pool). ``subgraphs`` maps
    the full name of each graph that a ``subgraph`` step delegates to, to a
    bound instance of that graph.
    """

    plan: ClassVar[GraphPlan]

    def __init__(
        self,
        steps: S,
        *,
        executor: Executor | None = None,
        subgraphs: Mapping[str, Graph[Any]] | None = None,
    ) -> None:
        self.steps = steps
        self._tables = _tables(self.plan)
        self._runners: tuple[Runner, ...] = tuple(
            _bind_step(table, steps, executor, subgraphs or {}, self.plan.name)
            for table in self._tables.steps
        )

    async def run_target(self, target: type[M], inputs: Mapping[str, Message | None]) -> M:
        """Run ``target`` with graph inputs given by keyword; the untyped form of ``run``."""
        table = self._tables.targets.get(target)
        if table is None:
            raise TypeError(
                f"graph {self.plan.name} cannot produce {_type_name(target)}; "
                f"it produces {', '.join(t.type for t in self.plan.targets)}"
            )
        values: Values = [None] * len(self._tables.slots)
        _fill_inputs(table, inputs, values, self.plan.name)
        await execute(table, self._runners, values)
        result = values[table.slot]
        assert isinstance(result, target)
        return result


def _type_name(cls: type[Any]) -> str:
    descriptor = getattr(cls, "DESCRIPTOR", None)
    return str(getattr(descriptor, "full_name", cls.__qualname__))


def _fill_inputs(
    table: TargetTable, inputs: Mapping[str, Message | None], values: Values, graph: str
) -> None:
    for graph_input in table.inputs:
        value = inputs.get(graph_input.keyword)
        if value is None:
            if graph_input.required:
                raise TypeError(
                    f"{graph}: target {table.type_name} needs input "
                    f"{graph_input.keyword}={graph_input.cls.DESCRIPTOR.full_name}(...)"
                )
            continue
        if type(value) is not graph_input.cls:
            raise TypeError(
                f"{graph}: input {graph_input.keyword} must be "
                f"{graph_input.cls.DESCRIPTOR.full_name}, got {type(value).__qualname__}"
            )
        values[graph_input.slot] = value
    if len(inputs) > len(table.inputs) or not table.keywords.issuperset(inputs):
        unknown = sorted(set(inputs) - table.keywords)
        if unknown:
            raise TypeError(
                f"{graph}: target {table.type_name} takes no input {', '.join(unknown)}; "
                f"it takes {', '.join(sorted(table.keywords)) or 'none'}"
            )


def _bind_step(
    table: StepTable,
    impl: object,
    executor: Executor | None,
    subgraphs: Mapping[str, Graph[Any]],
    graph: str,
) -> Runner:
    step = table.step
    if step.subgraph is not None:
        call = _subgraph_call(table, subgraphs, graph)
    else:
        call = _method_call(table, impl, executor, graph)
    out_slot, out_cls, name = table.out_slot, table.out_cls, step.name
    args_of = _args_reader(table)

    async def run(values: Values) -> None:
        try:
            result = await call(*args_of(values))
        except Exception as exc:
            raise StepFailed(name, exc) from exc
        if type(result) is not out_cls:
            error = TypeError(
                f"step {name!r} returned {type(result).__qualname__}, "
                f"expected {out_cls.DESCRIPTOR.full_name}"
            )
            raise StepFailed(name, error) from error
        values[out_slot] = result

    return run


def _args_reader(table: StepTable) -> Callable[[Values], list[Any]]:
    slots = table.arg_slots
    if table.all_required:
        return lambda values: [values[s] for s in slots]
    # Outside batch runs a repeated input gathers the one value its type has.
    kinds = tuple(kind is InputKind.REPEATED for kind in table.arg_kinds)

    def read(values: Values) -> list[Any]:
        args: list[Any] = []
        for slot, repeated in zip(slots, kinds, strict=True):
            value = values[slot]
            args.append(([] if value is None else [value]) if repeated else value)
        return args

    return read


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
        return await child.run_target(out_cls, inputs)

    return call
