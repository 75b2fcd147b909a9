"""Docket's runtime: runs the graphs that protoc-gen-docket generates from .proto files.

A generated ``<file>_docket.py`` module holds, per proto service, a
``<Graph>Steps`` protocol to implement and a ``<Graph>`` class to bind it to::

    graph = users_docket.UserGraph(MySteps())
    enriched = await graph.run(users_pb2.EnrichedUser, user_id=users_pb2.UserId(id="u1"))
"""

from ._batch import ItemError
from ._graph import Graph
from .context import StepContext, context, shielded
from .errors import (
    Abort,
    BindError,
    DeadlineExceeded,
    DocketError,
    ExecutionAborted,
    HandOff,
    ItemFailed,
    RetryLater,
    StepClaimed,
    StepFailed,
    StepTimedOut,
    Suspended,
)
from .events import (
    BatchProgress,
    CacheLookup,
    Events,
    ExecutionFinished,
    StepEvent,
    StepRetrying,
)
from .plan import (
    Batch,
    CachePolicy,
    CacheScope,
    Delivery,
    GraphPlan,
    Input,
    InputKind,
    RetryPolicy,
    Stage,
    Step,
    Target,
)

__all__ = [
    "Abort",
    "Batch",
    "BatchProgress",
    "BindError",
    "CacheLookup",
    "CachePolicy",
    "CacheScope",
    "DeadlineExceeded",
    "Delivery",
    "DocketError",
    "Events",
    "ExecutionAborted",
    "ExecutionFinished",
    "Graph",
    "GraphPlan",
    "HandOff",
    "Input",
    "InputKind",
    "ItemError",
    "ItemFailed",
    "RetryLater",
    "RetryPolicy",
    "Stage",
    "Step",
    "StepClaimed",
    "StepContext",
    "StepEvent",
    "StepFailed",
    "StepRetrying",
    "StepTimedOut",
    "Suspended",
    "Target",
    "context",
    "shielded",
]

__version__ = "0.1.0"
