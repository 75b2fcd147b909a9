"""Cron schedules, through Procrastinate's periodic tasks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar, cast

import procrastinate
from google.protobuf.message import Message

from .. import Graph
from ._jobs import DEFAULT_QUEUE, RESUME_TASK, SCHEDULE_TASK
from ._registry import Registry
from ._schedule import Schedule

M = TypeVar("M", bound=Message)


def schedule(
    app: procrastinate.App,
    registry: Registry,
    graph: Graph[Any],
    target: type[M],
    *,
    cron: str,
    inputs: Callable[[M | None], Mapping[str, object] | Awaitable[Mapping[str, object]]],
    name: str | None = None,
    queue: str | None = None,
) -> str:
    """Run ``target`` of ``graph`` on a cron schedule, through Procrastinate's periodic tasks.

    ``cron`` has 5 fields, or 6 with seconds last (``"*/10 * * * * *"``).
    Each tick starts a new execution, ``<name>@<UTC time of the tick>``
    (``name`` defaults to ``<graph>:<target>``), enqueued like any other.
    ``inputs(previous)`` builds its inputs (sync or async); ``previous`` is the
    output of the schedule's last *succeeded* run, or ``None`` for the first.
    This is the untyped form of the generated ``schedule`` method.

    Call it where the worker is set up (a tick runs in a worker, which needs
    the ``inputs`` function), after :func:`install`, before the worker starts.
    A tick fires only while some worker runs; Procrastinate defers each tick
    once across all workers and skips ticks more than 10 minutes late.
    Returns the schedule's name.
    """
    if RESUME_TASK not in app.tasks:
        raise RuntimeError("call install(app, registry) before schedule(...)")
    if graph.plan.name not in registry:
        registry.add(graph)
    label = name or f"{graph.plan.name}:{target.DESCRIPTOR.full_name}"
    if registry.schedule(label) is not None:
        raise ValueError(f"a schedule named {label!r} exists already")
    registry.add_schedule(Schedule.define(label, graph, target, inputs))
    task = cast(Any, app.tasks[SCHEDULE_TASK])
    app.periodic_registry.register_task(
        task=task,
        cron=cron,
        periodic_id=label,
        configure_kwargs={"task_kwargs": {"schedule": label}, "queue": queue or DEFAULT_QUEUE},
    )
    return label
