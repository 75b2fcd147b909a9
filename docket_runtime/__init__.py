"""Docket's runtime: runs the graphs that protoc-gen-docket generates from .proto files.

A generated ``<file>_docket.py`` module holds, per proto service, a
``<Graph>Steps`` protocol to implement and a ``<Graph>`` class to bind it to::

    graph = users_docket.UserGraph(MySteps())
    enriched = await graph.run(users_pb2.EnrichedUser, user_id=users_pb2.UserId(id="u1"))

The names below are imported on first use (PEP 562): importing the package, or
``docket_runtime.options_pb2`` as every generated ``_pb2`` module of an annotated
proto does, loads no engine module.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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

# Where each public name is defined, relative to this package (the imports above, again,
# for the run time; tests/test_public_api.py checks that the two agree).
_HOMES = {
    "ItemError": "._batch",
    "Graph": "._graph",
    **dict.fromkeys(("StepContext", "context", "shielded"), ".context"),
    **dict.fromkeys(
        (
            "Abort",
            "BindError",
            "DeadlineExceeded",
            "DocketError",
            "ExecutionAborted",
            "HandOff",
            "ItemFailed",
            "RetryLater",
            "StepClaimed",
            "StepFailed",
            "StepTimedOut",
            "Suspended",
        ),
        ".errors",
    ),
    **dict.fromkeys(
        (
            "BatchProgress",
            "CacheLookup",
            "Events",
            "ExecutionFinished",
            "StepEvent",
            "StepRetrying",
        ),
        ".events",
    ),
    **dict.fromkeys(
        (
            "Batch",
            "CachePolicy",
            "CacheScope",
            "Delivery",
            "GraphPlan",
            "Input",
            "InputKind",
            "RetryPolicy",
            "Stage",
            "Step",
            "Target",
        ),
        ".plan",
    ),
}


if not TYPE_CHECKING:  # type checkers read the imports above; a module __getattr__
    # would make them accept any name imported from this package.

    def __getattr__(name: str) -> object:
        home = _HOMES.get(name)
        if home is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home, __name__), name)
        globals()[name] = value  # later lookups find it without this hook
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})

    class _Package(types.ModuleType):
        """This package, where ``context`` stays the function when its module is imported.

        ``docket_runtime.context`` names both the public function and the module that
        defines it. Importing the module sets the package's attribute to the module; the
        eager imports that ran last used to put the function back, so the property does.
        """

        @property
        def context(self) -> object:
            return importlib.import_module(".context", __name__).context

        @context.setter
        def context(self, value: object) -> None:
            pass  # the import system records the submodule here: it stays in sys.modules

    sys.modules[__name__].__class__ = _Package
