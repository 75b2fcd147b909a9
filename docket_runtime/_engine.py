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
from ._runner import Runner
from ._tables import PlanTables, StepTable, TargetTable
from .context import Execution
from .events import CacheLookup, Dispatch
from .plan import GraphPlan
from .stores.base import Store, workflow_key

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
        store = self.store
        if store is None:
            return table
        wanted: dict[str, tuple[int, StepTable]] = {}
        for pos, index in enumerate(table.steps):
            if self.kept[index]:
                step = self.tables.steps[index]
                if persisted_scope(step.step) == "workflow":
                    key = workflow_key(execution.id, step.step.name, step.step.cache.version)
                    wanted[key] = (pos, step)
        if not wanted:
            return table
        known: set[int] = set()
        for key, row in (await store.get_results(wanted)).items():
            pos, step = wanted[key]
            value = decode(row, step.out_cls)
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
