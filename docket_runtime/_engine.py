"""A bound graph as the engine's modules see it: tables, runners, store, lifecycle, resume.

:class:`~docket_runtime._graph.Graph` is what users hold; it builds one
:class:`Engine` when bound and passes it to the batch runner, so that no
engine module reaches into the private attributes of another.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._lifecycle import Lifecycle
from ._persistence import decode, persisted_scope, prune
from ._reuse import given, inputs_key, secrecy, settle_inputs
from ._runner import Runner
from ._tables import PlanTables, StepTable, TargetTable
from .context import Execution
from .events import CacheLookup, Dispatch
from .plan import GraphPlan
from .stores.base import Store, StoredResult, workflow_key

if TYPE_CHECKING:
    from ._tracing import ExecutionKind, Tracer

__all__ = ["Engine"]


@dataclass(frozen=True, slots=True, eq=False)
class Engine:
    """The parts of a bound graph that run executions.

    ``store`` is set when the graph keeps results or records; ``record`` when
    executions and step runs are written to it; ``kept[i]`` is true when step
    ``i`` keeps its result; ``trace`` is the bound tracer (:mod:`._tracing`), if any.
    """

    plan: GraphPlan
    tables: PlanTables
    runners: tuple[Runner, ...]
    events: Dispatch | None
    store: Store | None
    record: bool
    kept: tuple[bool, ...]
    trace: Tracer | None = None

    @property
    def keeps_workflow(self) -> bool:
        """Whether a step keeps its result per execution: then a rerun reads checkpoints."""
        return any(
            kept and persisted_scope(t.step) == "workflow"
            for kept, t in zip(self.kept, self.tables.steps, strict=True)
        )

    def lifecycle(
        self,
        execution: Execution,
        target: str,
        deadline: float | None,
        *,
        kind: ExecutionKind = "run",
    ) -> Lifecycle:
        """The lifecycle of one execution of ``target``; a batch ``item`` sends no event
        (its batch reports)."""
        return Lifecycle(
            graph=self.plan.name,
            target=target,
            execution=execution,
            store=self.store if self.record else None,
            events=None if kind == "item" else self.events,
            deadline=deadline,
            trace=self.trace,
            kind=kind,
        )

    async def resume(self, table: TargetTable, execution: Execution) -> TargetTable:
        """Load the execution's checkpoints in one query; prune what they make unnecessary."""
        return self.restore(table, execution, await self.checkpoints(table, execution))

    async def checkpoints(
        self,
        table: TargetTable,
        execution: Execution,
        *,
        where: str | None = None,
        other_inputs: bool = False,
        start: str | None = None,
    ) -> Checkpoints | None:
        """Read the execution's checkpoints of ``table``'s steps, in one query.

        With ``where`` (the entry point, for messages), the same query reads the
        inputs kept under the execution's id, and keeps the given ones if none
        were: other inputs than the target's in ``execution`` are a ``ValueError``
        unless ``other_inputs`` (:mod:`._reuse`); the inputs are kept before any
        step runs. For an id with no inputs kept, ``start`` (the target, when the
        execution is recorded) records the execution's start in that query too
        (:attr:`Checkpoints.started`). ``None`` when there is none to read.
        """
        store = self.store
        if store is None:
            return None
        wanted: dict[str, tuple[int, StepTable]] = {}
        for pos, index in enumerate(table.steps):
            if self.kept[index]:
                step = self.tables.steps[index]
                if persisted_scope(step.step) == "workflow":
                    key = workflow_key(execution.id, step.step.name, step.step.cache.version)
                    wanted[key] = (pos, step)
        if not wanted:
            return None  # no checkpoint to read: other inputs could not mislead this run
        if where is None:
            return Checkpoints(wanted, await store.get_results(wanted))
        inputs = inputs_key(execution.id)
        now_given = given(table.inputs, execution.values, secrecy(store, self.plan.sensitive))
        # The row an id never used before gets, inserted by the read itself when none is kept.
        fresh = settle_inputs(
            execution.id, self.plan.name, now_given, None, resume=other_inputs, where=where
        )
        assert fresh is not None
        found, inserted = await store.read_checkpoints([*wanted, inputs], fresh, target=start)
        if inserted:
            return Checkpoints(wanted, found, started=start is not None)
        kept = found.pop(inputs, None)
        if kept is None:  # kept by another run between the read and the insert: read it now
            kept = (await store.get_results((inputs,))).get(inputs)
        write = settle_inputs(
            execution.id, self.plan.name, now_given, kept, resume=other_inputs, where=where
        )
        if write is not None:
            await store.put_result(write)
        return Checkpoints(wanted, found)

    def restore(
        self, table: TargetTable, execution: Execution, read: Checkpoints | None
    ) -> TargetTable:
        """Put the checkpoints ``read`` in the execution's values, report the lookups, and
        prune what they make unnecessary."""
        if read is None:
            return table
        wanted = read.wanted
        known: set[int] = set()
        codec = None if self.store is None else self.store.codec
        for key, row in read.found.items():
            pos, step = wanted[key]
            value = decode(row, step.out_cls, codec)
            if value is not None:
                execution.values[step.out_slot] = value
                known.add(pos)
        if self.events is not None:
            for pos, step in wanted.values():
                self.events.cache_lookup(
                    CacheLookup(
                        self.plan.name, execution.id, step.step.name, "workflow", pos in known
                    )
                )
        return prune(table, known) if known else table


@dataclass(frozen=True, slots=True)
class Checkpoints:
    """The checkpoints :meth:`Engine.checkpoints` read: ``wanted`` maps each key looked up
    to the step's position in the target and its table; ``found`` holds the rows found;
    ``started`` is true when the same query recorded the execution's start."""

    wanted: dict[str, tuple[int, StepTable]]
    found: dict[str, StoredResult]
    started: bool = False
