"""Recording an execution for a queue: the store's half of enqueueing, before a job is deferred."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any

from google.protobuf.message import Message

from .. import Graph
from .._ids import check_execution_id
from .._reuse import reused_id
from ..stores import ExecutionRecord
from ._inputs import describe_inputs, encode_inputs, same_inputs, same_messages


async def record_execution(
    graph: Graph[Any],
    target: type[Message],
    inputs: Mapping[str, object],
    *,
    execution_id: str,
    connection: Any = None,
) -> ExecutionRecord:
    """Record execution ``execution_id`` of ``target`` as queued; return its row.

    ``graph`` must be bound with a store and ``record=True``; ``inputs`` are
    checked and stored (:mod:`._inputs`). ``connection`` (an open psycopg
    connection, with a graph bound to a Postgres store in the same database)
    writes the row in the caller's transaction. A new id is ``queued``; an
    id already queued, running, waiting or succeeded is left as it is; one
    that failed or was cancelled is queued again. The same id with another
    graph, target or inputs is a ``ValueError``.
    """
    check_execution_id(execution_id, f"{graph.plan.name}.enqueue()")
    store = graph.store
    if store is None or not graph.record:
        raise ValueError(
            f"graph {graph.plan.name} must be bound with a store and record=True to be enqueued"
        )
    text = encode_inputs(graph, target, inputs)
    target_name = target.DESCRIPTOR.full_name
    # A traced graph stores the trace context of this enqueue: its jobs join that trace.
    tracer = graph.tracer
    with (
        nullcontext(None)
        if tracer is None
        else tracer.enqueued(graph.plan.name, target_name, execution_id)
    ) as trace_context:
        # With connection=, the row is written in the caller's transaction (Postgres only).
        extra: dict[str, Any] = {}
        if connection is not None:
            from ..stores.postgres import PostgresStore

            if not isinstance(store, PostgresStore):
                raise TypeError(
                    "connection= needs the graph bound to a Postgres store in the same database"
                )
            extra["connection"] = connection

        async def queue(text: str) -> ExecutionRecord:
            return await store.queue_execution(
                execution_id,
                graph=graph.plan.name,
                target=target_name,
                inputs=text,
                trace_context=trace_context,
                **extra,
            )

        row = await queue(text)
        same_run = (row.graph, row.target) == (graph.plan.name, target_name)
        if same_run and not same_inputs(row.inputs, text) and same_messages(graph, row, inputs):
            # The same inputs, encoded under an older codec key: queue with the stored text.
            assert row.inputs is not None  # same_messages read them
            text = row.inputs
            row = await queue(text)
        if not same_run or not same_inputs(row.inputs, text):
            raise reused_id(
                execution_id,
                f"{row.graph} -> {row.target} with {describe_inputs(graph, row.inputs)}",
                f"{graph.plan.name} -> {target_name} with {describe_inputs(graph, text)}",
                f"{graph.plan.name}.enqueue()",
            )
    return row
