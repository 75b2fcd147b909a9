"""Docket's runtime: runs the graphs that protoc-gen-docket generates from .proto files.

A generated ``<file>_docket.py`` module holds, per proto service, a
``<Graph>Steps`` protocol to implement and a ``<Graph>`` class to bind it to::

    graph = users_docket.UserGraph(MySteps())
    enriched = await graph.run(users_pb2.EnrichedUser, user_id=users_pb2.UserId(id="u1"))
"""

from .errors import BindError, DocketError, StepFailed
from .graph import Graph
from .plan import (
    CachePolicy,
    CacheScope,
    Delivery,
    GraphPlan,
    Input,
    InputKind,
    RetryPolicy,
    Step,
    Target,
)

__all__ = [
    "BindError",
    "CachePolicy",
    "CacheScope",
    "Delivery",
    "DocketError",
    "Graph",
    "GraphPlan",
    "Input",
    "InputKind",
    "RetryPolicy",
    "Step",
    "StepFailed",
    "Target",
]

__version__ = "0.1.0"
