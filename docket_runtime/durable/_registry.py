"""The registry: the graphs a worker can resume, by full name, and the schedules it runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from .. import Graph
from ..stores import Store
from ._schedule import Schedule

G = TypeVar("G", bound=Graph[Any])


@dataclass(frozen=True, slots=True)
class Entry:
    """A registered graph and whether every run of it is in durable mode."""

    graph: Graph[Any]
    durable_all: bool


class Registry:
    """The graphs a worker can resume, by full name, all bound to one store.

    ``store`` holds the executions, checkpoints and step runs; in production
    it is a Postgres store, in the database that holds the queue's tables
    (then ``enqueue(..., connection=...)`` records an execution and defers its
    job in one transaction). Every graph, and every graph its ``subgraph``
    steps run, must be bound to this store with ``record=True`` (a durable run
    always records: attempts are counted in ``docket_step_runs``).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._entries: dict[str, Entry] = {}
        self._schedules: dict[str, Schedule] = {}

    def add(self, graph: G, *, durable_all: bool = False) -> G:
        """Register ``graph`` (a bound graph) under its full name; returns it.

        ``durable_all=True`` puts every run of the graph in durable mode: each
        retryable failure of any step (not only ``durable: true`` ones) is
        retried by a scheduled job rather than a sleep in the worker.
        """
        _check_bound(graph, self.store, path=graph.plan.name)
        name = graph.plan.name
        old = self._entries.get(name)
        if old is not None and old.graph is not graph:
            raise ValueError(f"graph {name} is already registered (with another bound instance)")
        self._entries[name] = Entry(graph, durable_all)
        return graph

    def bind(
        self, graph_cls: type[G], steps: Any, *, durable_all: bool = False, **options: Any
    ) -> G:
        """Bind ``graph_cls`` to ``steps`` with this registry's store and ``record=True``,
        then :meth:`add` it. ``options`` are the other ``Graph`` arguments."""
        graph = graph_cls(steps, store=self.store, record=True, **options)
        return self.add(graph, durable_all=durable_all)

    def get(self, name: str) -> Graph[Any] | None:
        """The graph registered under the full name ``name``, or ``None``."""
        entry = self._entries.get(name)
        return None if entry is None else entry.graph

    def entry(self, name: str) -> Entry | None:
        """The graph registered under ``name`` with its durable mode, or ``None``."""
        return self._entries.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    @property
    def names(self) -> list[str]:
        """The full names of the registered graphs, sorted."""
        return sorted(self._entries)

    def add_schedule(self, schedule: Schedule) -> None:
        """Keep ``schedule`` under its name (a ``ValueError`` if the name is taken)."""
        if schedule.name in self._schedules:
            raise ValueError(f"a schedule named {schedule.name!r} exists already")
        self._schedules[schedule.name] = schedule

    def schedule(self, name: str) -> Schedule | None:
        """The schedule named ``name``, or ``None``."""
        return self._schedules.get(name)


def _check_bound(graph: Graph[Any], store: Store, *, path: str) -> None:
    if graph.store is not store or not graph.record:
        raise ValueError(
            f"graph {path} must be bound with the registry's store and record=True "
            "(Graph(steps, store=registry.store, record=True), or registry.bind(...))"
        )
    for name, child in graph.subgraphs.items():
        _check_bound(child, store, path=f"{path} -> {name}")
