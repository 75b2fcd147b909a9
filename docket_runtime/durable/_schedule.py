"""A schedule, apart from the queue's cron: what each tick runs, its id and its inputs.

Each tick of a schedule starts a new execution, ``<name>@<UTC time of the
tick>``. ``inputs(previous)`` builds its inputs (sync or async); ``previous``
is the output of the schedule's last *succeeded* run, or ``None`` for the
first. The previous output can be read only if the step producing the target
keeps its result per execution (``cache: { scope: WORKFLOW }``, or an
``AT_MOST_ONCE`` step without a cache); otherwise ``previous`` is always
``None``, and :meth:`Schedule.define` warns.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf.message import Message

from .. import Graph
from ..plan import CacheScope, Delivery
from ..stores import Store

_log = logging.getLogger("docket.durable")

InputsFn = Callable[[Any], Mapping[str, Message | None] | Awaitable[Mapping[str, Message | None]]]
"""Builds a run's inputs from the previous run's output (or ``None``); sync or async."""


@dataclass(frozen=True, slots=True)
class Schedule:
    """One schedule: its name, the target of ``graph`` it runs, and how it builds inputs."""

    name: str
    graph: Graph[Any]
    target: type[Message]
    inputs: InputsFn
    keeps_output: bool
    """Whether the output of a run can be read back for the next one."""

    @classmethod
    def define(
        cls, name: str, graph: Graph[Any], target: type[Message], inputs: InputsFn
    ) -> Schedule:
        """A schedule of ``target``; warns when its runs' outputs cannot be read back."""
        producer = graph.producer(target)
        keeps = producer.cache.scope is CacheScope.WORKFLOW or (
            producer.delivery is Delivery.AT_MOST_ONCE and producer.cache.scope is CacheScope.NONE
        )
        if not keeps:
            _log.warning(
                "schedule %s: step %s keeps no result per execution, so inputs() will always "
                "receive None as the previous output (give it cache: { scope: WORKFLOW })",
                name,
                producer.name,
            )
        return cls(name, graph, target, inputs, keeps)

    def run_id(self, timestamp: int) -> str:
        """The execution id of the run due at ``timestamp`` (Unix seconds)."""
        return f"{self.name}@{datetime.fromtimestamp(timestamp, UTC):%Y-%m-%dT%H:%M:%SZ}"

    async def next_inputs(self, store: Store) -> Mapping[str, Message | None]:
        """The inputs of the next run: ``inputs(previous)``, read from ``store``."""
        previous: Message | None = None
        if self.keeps_output:
            last = await store.last_succeeded_execution(
                self.graph.plan.name,
                self.target.DESCRIPTOR.full_name,
                id_prefix=f"{self.name}@",
            )
            if last is not None:
                previous = await self.graph.fetch(self.target, execution_id=last.execution_id)
        made = self.inputs(previous)
        return await made if inspect.isawaitable(made) else made
