"""Batch runs: one graph over a list of items, per-item steps once per item, aggregates once.

The generated ``run_batch(Target, items, **shared_inputs)`` lands here. The
plan says, per target, which steps run once per item and which once for the
whole batch, grouped in stages (see :class:`~docket_runtime.plan.Batch`); this
module only follows it:

- a stage's ``once`` steps (aggregates, then shared steps) run in one shared
  execution; an aggregate's ``repeated`` input receives the list of every
  item's value, in input order;
- then its ``each`` steps run once per item, each item in an execution of its
  own (id ``<batch id>/<index>``) seeded with the shared values, under the
  ordinary scheduler and step runners (retries, timeouts, context, events).

Event hooks see every step, a ``batch_progress`` each time an item finishes a
stage or fails, and one ``execution_finished`` for the whole batch (its id is
the batch's; items report through ``batch_progress`` only).

Items are pulled from a shared index by a fixed pool of worker tasks (at most
``max_concurrency``), so no task or coroutine exists per pending item: memory
grows with the concurrency, plus one reference per item for the results and for
the per-item values a later stage needs. A step's ``max_concurrency`` is a
semaphore per batch run around each run of the step (its retries included).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from google.protobuf.message import Message

from . import _deps
from ._inputs import fill_inputs, not_a_class
from ._lifecycle import Exiting, Lifecycle
from ._reuse import given, given_items, keep_inputs, secrecy
from ._runner import Runner
from ._scheduler import execute
from ._tables import GraphInput, PlanTables, TargetTable
from .context import Execution
from .errors import ItemFailed, StepClaimed, StepFailed
from .events import BatchProgress, Dispatch
from .plan import GraphPlan

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["DEFAULT_CONCURRENCY", "ItemError", "run_batch"]

DEFAULT_CONCURRENCY = 100
"""Items in flight at once when ``run_batch`` is given no ``max_concurrency``."""

OnError = Literal["raise", "collect"]


@dataclass(frozen=True, slots=True)
class ItemError:
    """The result of an item that failed in ``run_batch(..., on_error="collect")``.

    ``index`` is the item's position in ``items``; ``error`` why it failed:
    usually a :class:`~docket_runtime.errors.StepFailed` (the step's name,
    attempts, and the original exception as ``__cause__``), or a
    :class:`~docket_runtime.errors.StepClaimed` for an ``AT_MOST_ONCE`` step
    claimed by an earlier run.
    """

    index: int
    error: StepFailed | StepClaimed


# Tables, built once per plan ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _StageTable:
    """One stage: what runs once, what runs per item, and which per-item values move where.

    ``gather``: per-item slots the aggregates of ``once`` read as lists;
    ``seed``: per-item slots from earlier stages that ``each`` reads;
    ``keep``: slots ``each`` produces that a later stage reads;
    ``drop``: slots no stage after this one reads.
    """

    once: TargetTable | None
    each: TargetTable | None
    gather: tuple[int, ...]
    seed: tuple[int, ...]
    keep: tuple[int, ...]
    drop: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class BatchTable:
    """A target's batch schedule, resolved to slots and step indexes."""

    type_name: str
    slot: int
    per_item: bool
    item_slot: int
    item_cls: type[Message]
    item_keyword: str
    stages: tuple[_StageTable, ...]
    inputs: tuple[GraphInput, ...]
    keywords: frozenset[str]
    limits: tuple[tuple[int, int], ...]
    """(step index, max_concurrency) of the per-item steps that bound their runs."""


def build_batch_tables(tables: PlanTables) -> dict[type[Message], BatchTable]:
    """Index the batch schedule of every target that has one."""
    plan = tables.plan
    if plan.items is None:
        return {}
    step_index = {step.name: index for index, step in enumerate(plan.steps)}
    needs = {index: [step_index[n] for n in step.needs] for index, step in enumerate(plan.steps)}
    item_slot = tables.slots[plan.items]
    out: dict[type[Message], BatchTable] = {}
    for target in plan.targets:
        if target.batch is None:
            continue
        cls = plan.types[target.type]
        full = tables.targets[cls]
        tolerable = dict(zip(full.steps, full.tolerable, strict=True))
        stages = [
            ([step_index[n] for n in stage.once], [step_index[n] for n in stage.each])
            for stage in target.batch.stages
        ]
        per_item = {item_slot}
        for _, each in stages:
            per_item.update(tables.steps[i].out_slot for i in each)
        reads_later: list[set[int]] = []
        stage_tables = []
        for once, each in stages:
            gather = {s for i in once for s in tables.steps[i].arg_slots if s in per_item}
            made = {tables.steps[i].out_slot for i in each}
            seed = {
                s
                for i in each
                for s in tables.steps[i].arg_slots
                if s in per_item and s not in made and s != item_slot
            }
            reads_later.append(gather | seed)
            stage_tables.append((once, each, gather, seed, made))
        built = []
        for number, (once, each, gather, seed, made) in enumerate(stage_tables):
            later = set().union(*reads_later[number + 1 :])
            keep = made & later
            drop = (gather | seed) - later - {item_slot}
            built.append(
                _StageTable(
                    once=_sub_table(tables, target.type, once, needs, tolerable) if once else None,
                    each=_sub_table(tables, target.type, each, needs, tolerable) if each else None,
                    gather=tuple(sorted(gather)),
                    seed=tuple(sorted(seed)),
                    keep=tuple(sorted(keep)),
                    drop=tuple(sorted(drop)),
                )
            )
        inputs = tuple(i for i in full.inputs if i.slot != item_slot)
        limits = tuple(
            (i, plan.steps[i].max_concurrency)
            for _, each in stages
            for i in each
            if plan.steps[i].max_concurrency > 0
        )
        out[cls] = BatchTable(
            type_name=target.type,
            slot=full.slot,
            per_item=target.batch.per_item,
            item_slot=item_slot,
            item_cls=plan.types[plan.items],
            item_keyword=plan.inputs[plan.items],
            stages=tuple(built),
            inputs=inputs,
            keywords=frozenset(i.keyword for i in inputs),
            limits=limits,
        )
    return out


def _sub_table(
    tables: PlanTables,
    type_name: str,
    order: list[int],
    needs: Mapping[int, Sequence[int]],
    tolerable: Mapping[int, bool],
) -> TargetTable:
    """The schedule of ``order`` (a topological order of step indexes) on its own.

    Inputs produced outside ``order`` are in the execution's values already.
    """
    schedule = _deps.schedule(needs, order)
    return TargetTable(
        type_name=type_name,
        slot=tables.slots[type_name],
        steps=tuple(order),
        dep_counts=schedule.dep_counts,
        dependents=schedule.dependents,
        roots=schedule.roots,
        tolerable=tuple(tolerable[index] for index in order),
        chain=schedule.chain,
        inputs=(),
        keywords=frozenset(),
        where=f"{tables.plan.name}: target {type_name}",
    )


_cache: dict[int, tuple[PlanTables, dict[type[Message], BatchTable]]] = {}


def _batch_tables(tables: PlanTables) -> dict[type[Message], BatchTable]:
    cached = _cache.get(id(tables.plan))
    if cached is None or cached[0] is not tables:
        cached = _cache[id(tables.plan)] = (tables, build_batch_tables(tables))
    return cached[1]


# Running ------------------------------------------------------------------------------------


class _ItemExecution(Execution):
    """One item's execution: the batch's values plus its own, id ``<batch id>/<index>``."""

    __slots__ = ("_batch", "_index")

    def __init__(self, graph: str, values: list[Any], batch: Execution, index: int) -> None:
        self.graph = graph
        self.values = values
        self._id = None
        self._batch = batch
        self._index = index
        self.cut = None
        self.contexts = None
        self.chained = False
        self.unsent = None
        self.ends_with_run = False

    def was_cut(self, step: str, attempt: int, waiting: bool = False) -> None:
        self._batch.was_cut(step, attempt, waiting)  # the batch's deadline reports it

    @property
    def id(self) -> str:
        if self._id is None:
            self._id = f"{self._batch.id}/{self._index}"
        return self._id


async def run_batch(
    engine: Engine,
    target: type[Message],
    items: Sequence[Message],
    inputs: Mapping[str, Message | None],
    *,
    max_concurrency: int | None = None,
    on_error: OnError = "raise",
    execution_id: str | None = None,
    deadline: float | None = None,
    resume: bool = False,
) -> list[Any]:
    """Run ``target`` over ``items`` on a bound graph: the untyped form of ``run_batch``."""
    plan = engine.plan
    try:
        table = _batch_tables(engine.tables).get(target)
    except TypeError:  # unhashable: a message instead of its class
        table = None
    if table is None:
        batched = [t.type for t in plan.targets if t.batch is not None]
        example = plan.types[batched[-1]].__qualname__ if batched else "Receipt"
        error = not_a_class(f"{plan.name}.run_batch()", target, example)
        raise error or TypeError(_no_batch(plan, target))
    if on_error not in ("raise", "collect"):
        raise ValueError(f"on_error must be 'raise' or 'collect', not {on_error!r}")
    limit = DEFAULT_CONCURRENCY if max_concurrency is None else max_concurrency
    if type(limit) is not int or limit < 1:
        raise ValueError(f"max_concurrency must be a positive int, not {max_concurrency!r}")
    shared = Execution(plan.name, len(engine.tables.slots), execution_id)
    fill_inputs(
        table.inputs,
        table.keywords,
        inputs,
        shared.values,
        f"{plan.name}: a batch of {table.type_name}",
        items=GraphInput(table.item_keyword, table.item_slot, table.item_cls, True),
    )
    values = list(items)
    item_cls = table.item_cls
    for index, item in enumerate(values):
        if type(item) is not item_cls:
            raise TypeError(
                f"{plan.name}: item {index} must be {item_cls.DESCRIPTOR.full_name}, "
                f"got {type(item).__qualname__}"
            )
    if not values:
        return []
    run = _Run(engine, table, values, shared, limit, on_error == "collect")
    # Checkpoints can exist only under an id the caller chose (a rerun of the batch).
    run.resume = execution_id is not None and any(engine.kept)
    if execution_id is not None and engine.store is not None and engine.keeps_workflow:
        # Once per batch, before anything is recorded: the same inputs and items.
        hidden = secrecy(engine.store, plan.sensitive)
        now_given = given(table.inputs, shared.values, hidden) | given_items(
            table.item_keyword, values, hidden
        )
        where = f"{plan.name}: a batch of {table.type_name}"
        await keep_inputs(
            engine.store, execution_id, plan.name, now_given, resume=resume, where=where
        )
    if run.events is None and deadline is None and not engine.record:
        try:
            return await run.run()
        except Exiting as exc:
            raise exc.exc from None
    lifecycle = engine.lifecycle(shared, table.type_name, deadline, kind="batch")
    return await lifecycle.run(run.run)


def _no_batch(plan: GraphPlan, target: type[Message]) -> str:
    name = getattr(getattr(target, "DESCRIPTOR", None), "full_name", target.__qualname__)
    if plan.items is None:
        return (
            f"graph {plan.name} has no batch runs: it has no item type "
            "(set (docket.graph).items to the input that batches iterate over)"
        )
    if any(t.type == name for t in plan.targets):
        return (
            f"graph {plan.name}: {name} does not depend on the items ({plan.items}), "
            "so a batch would compute one value for nothing; use run()"
        )
    batched = ", ".join(t.type for t in plan.targets if t.batch is not None)
    return f"graph {plan.name} cannot produce {name} over a batch; it produces {batched}"


def _limited(runner: Runner, semaphore: asyncio.Semaphore) -> Runner:
    async def run(execution: Execution) -> None:
        async with semaphore:
            await runner(execution)

    return run


class _Run:
    """The state of one batch run.

    When the graph records or is traced, each item is an execution of its own
    (a row, a span): started when it first runs, ended when it fails or has
    run its last stage; items still open when the batch stops end as the
    batch did (``cancelled``, or the failure of the item that stopped it).
    """

    def __init__(
        self,
        engine: Engine,
        table: BatchTable,
        items: list[Message],
        shared: Execution,
        limit: int,
        collect: bool,
    ) -> None:
        self.name = engine.plan.name
        self.table = table
        self.items = items
        self.shared = shared
        self.limit = limit
        self.collect = collect
        self.events: Dispatch | None = engine.events
        self.engine = engine
        self.resume = False
        runners = engine.runners
        if table.limits:
            patched = list(runners)
            for index, bound in table.limits:
                patched[index] = _limited(runners[index], asyncio.Semaphore(bound))
            runners = tuple(patched)
        self.runners = runners
        self.columns: dict[int, list[Any]] = {}
        self.errors: dict[int, StepFailed | StepClaimed] = {}
        self.results: list[Any] = []
        self.open: dict[int, Lifecycle] = {}
        self.failures: dict[int, BaseException] = {}
        self.last_each = max(
            (number for number, stage in enumerate(table.stages) if stage.each is not None),
            default=-1,
        )

    async def run(self) -> list[Any]:
        try:
            return await self._stages()
        except BaseException as exc:
            if self.open:
                await self._close_open(exc)
            raise

    async def _stages(self) -> list[Any]:
        table, n = self.table, len(self.items)
        last = len(table.stages) - 1
        if table.per_item:
            self.results = [None] * n
        for number, stage in enumerate(table.stages):
            if stage.once is not None:
                await self._once(stage, stage.once)
            if stage.each is not None:
                await self._each(number, stage, stage.each, number == last)
            for slot in stage.drop:
                self.columns.pop(slot, None)
            if len(self.errors) == n:
                break  # every item failed: nothing left to run, not even an aggregate
        errors = self.errors
        if not table.per_item:
            value = self.shared.values[table.slot]
            self.results = [value] * n
            if self.events is not None:
                self._progress(last, n - len(errors))
        for index, error in errors.items():
            self.results[index] = ItemError(index, error)
        return self.results

    async def _close_open(self, batch_error: BaseException) -> None:
        """End the items still open when the batch stopped."""
        for index, lifecycle in list(self.open.items()):
            await lifecycle.end(self.failures.get(index) or asyncio.CancelledError())
        self.open.clear()

    def _column(self, slot: int) -> list[Any]:
        """Every surviving item's value of ``slot``, in input order: a new list, so that an
        aggregate that changes it (it is typed ``Sequence``, but) cannot disturb the batch."""
        column = self.items if slot == self.table.item_slot else self.columns[slot]
        errors = self.errors
        if not errors:
            return column[:]
        return [value for index, value in enumerate(column) if index not in errors]

    async def _once(self, stage: _StageTable, once: TargetTable) -> None:
        values = self.shared.values
        for slot in stage.gather:
            values[slot] = self._column(slot)
        try:
            if self.resume:
                once = await self.engine.resume(once, self.shared)
            await execute(once, self.runners, self.shared)
        finally:
            for slot in stage.gather:
                values[slot] = None

    async def _each(self, number: int, stage: _StageTable, each: TargetTable, last: bool) -> None:
        n = len(self.items)
        items, columns, errors = self.items, self.columns, self.errors
        for slot in stage.keep:
            columns[slot] = [None] * n
        template = self.shared.values
        item_slot, seed, keep = self.table.item_slot, stage.seed, stage.keep
        seeds = [(slot, columns[slot]) for slot in seed]
        kept = [(slot, columns[slot]) for slot in keep]
        results = self.results if last and self.table.per_item else None
        result_slot = self.table.slot
        runners, name, shared, collect = self.runners, self.name, self.shared, self.collect
        events, resume, engine = self.events, self.resume, self.engine
        # Items have lifecycles of their own when recorded or traced (their spans).
        tracked, opened = engine.record or engine.trace is not None, self.open
        closes = number == self.last_each
        target = self.table.type_name
        done = 0
        indices: Iterator[int] = iter(range(n))

        async def worker() -> None:
            nonlocal done
            for index in indices:
                if errors and index in errors:
                    continue
                values = template.copy()
                values[item_slot] = items[index]
                for slot, column in seeds:
                    values[slot] = column[index]
                execution = _ItemExecution(name, values, shared, index)
                lifecycle = None
                if tracked:
                    lifecycle = opened.get(index)
                    if lifecycle is None:
                        lifecycle = engine.lifecycle(execution, target, None, kind="item")
                        opened[index] = lifecycle
                        await lifecycle.start()
                try:
                    with _current_span(lifecycle):
                        table = await engine.resume(each, execution) if resume else each
                        await execute(table, runners, execution)
                except (StepFailed, StepClaimed) as exc:
                    if not collect:
                        self.failures[index] = exc
                        raise ItemFailed(index, exc) from exc
                    errors[index] = exc
                    if lifecycle is not None:
                        del opened[index]
                        await lifecycle.end(exc)
                except Exception as exc:
                    # An abort, a store that went away, a step's SystemExit: the batch stops.
                    self.failures[index] = exc
                    if isinstance(exc, Exiting):
                        raise
                    raise ItemFailed(index, exc) from exc
                else:
                    for slot, column in kept:
                        column[index] = values[slot]
                    if results is not None:
                        results[index] = values[result_slot]
                    done += 1
                    if closes and lifecycle is not None:
                        del opened[index]
                        await lifecycle.end(None)
                if events is not None:
                    self._progress(number, done)

        await _pool(worker, min(self.limit, n - len(errors)))

    def _progress(self, stage: int, done: int) -> None:
        assert self.events is not None
        self.events.batch_progress(
            BatchProgress(
                graph=self.name,
                execution_id=self.shared.id,
                target=self.table.type_name,
                stage=stage,
                stages=len(self.table.stages),
                total=len(self.items),
                done=done,
                failed=len(self.errors),
            )
        )


def _current_span(lifecycle: Lifecycle | None) -> AbstractContextManager[None]:
    """The item's span made current while its steps run, when it is traced."""
    if lifecycle is None or lifecycle.span is None:
        return nullcontext()
    return lifecycle.span.current()


async def _pool(worker: Callable[[], Any], count: int) -> None:
    """Run ``count`` copies of ``worker``; on a failure cancel the others and raise it."""
    if count <= 1:
        await worker()
        return
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(worker()) for _ in range(count)]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except BaseException:
        # The caller was cancelled: no item may outlive its batch.
        await _cancel(tasks)
        raise
    failed = [t for t in tasks if t.done() and not t.cancelled() and t.exception() is not None]
    if failed:
        await _cancel(tasks)
        first = min(failed, key=lambda t: getattr(t.exception(), "index", -1))
        first.result()  # re-raises the item's failure


async def _cancel(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
