"""A schedule, apart from the queue's cron: what each tick runs, its id and its inputs.

Each tick of a schedule starts a new execution, ``<name>@<UTC time of the
tick>``. ``inputs(previous)`` builds its inputs (sync or async); ``previous``
is the output of the schedule's last *succeeded* run (every durable execution
keeps its target's value: ``Graph.result_target``), or ``None`` for the first.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf.message import Message

from .. import Graph
from .._ids import check_execution_id
from ..stores import Store

InputsFn = Callable[[Any], Mapping[str, object] | Awaitable[Mapping[str, object]]]
"""Builds a run's inputs from the previous run's output (or ``None``); sync or async.

The inputs are checked when the run is enqueued (a generated ``<Target>Inputs``
TypedDict is a ``Mapping[str, object]``)."""


@dataclass(frozen=True, slots=True)
class Schedule:
    """One schedule: its name, the target of ``graph`` it runs, and how it builds inputs."""

    name: str
    graph: Graph[Any]
    target: type[Message]
    inputs: InputsFn

    @classmethod
    def define(
        cls, name: str, graph: Graph[Any], target: type[Message], inputs: InputsFn
    ) -> Schedule:
        """A schedule of ``target`` (a ``TypeError`` if ``graph`` cannot produce it, a
        ``ValueError`` if its name makes invalid execution ids)."""
        graph.producer(target)
        schedule = cls(name, graph, target, inputs)
        # Every run's id is the name and a time of the same length: check one now.
        check_execution_id(schedule.run_id(0), f"schedule {name[:40]!r}")
        return schedule

    def run_id(self, timestamp: int) -> str:
        """The execution id of the run due at ``timestamp`` (Unix seconds)."""
        return f"{self.name}@{datetime.fromtimestamp(timestamp, UTC):%Y-%m-%dT%H:%M:%SZ}"

    async def next_inputs(self, store: Store) -> Mapping[str, object]:
        """The inputs of the next run: ``inputs(previous)``, read from ``store``."""
        previous: Message | None = None
        last = await store.last_succeeded_execution(
            self.graph.plan.name,
            self.target.DESCRIPTOR.full_name,
            id_prefix=f"{self.name}@",
        )
        if last is not None:
            previous = await self.graph.result_target(self.target, last.execution_id)
        made = self.inputs(previous)
        return await made if inspect.isawaitable(made) else made
