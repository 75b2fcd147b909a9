"""The static execution plan that protoc-gen-docket writes into each generated module.

Everything here is plain, immutable data computed at generation time: the
steps with their options and the steps each one needs, and for every
producible type the minimal set of steps, their order, their concurrency
levels and the graph inputs they need. The runtime only indexes it once, when
the generated module is imported (the derivations over ``needs`` live in
:mod:`docket_runtime._deps`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from google.protobuf.message import Message

__all__ = [
    "BATCH_OPTIONS",
    "ENQUEUE_OPTIONS",
    "RUN_OPTIONS",
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
]


RUN_OPTIONS: Final = ("execution_id", "deadline", "resume")
"""The keyword options of a generated ``run`` (and of ``Graph.run_target``) besides the
graph inputs, in signature order: no graph input may take one as its keyword."""

BATCH_OPTIONS: Final = ("max_concurrency", "on_error")
"""The keyword options ``run_batch`` adds to :data:`RUN_OPTIONS`, before them: no graph
input of a graph with batch runs may take one as its keyword (nor ``items``)."""

ENQUEUE_OPTIONS: Final = ("execution_id", "queue", "priority", "connection")
"""The keyword options of a generated ``enqueue`` besides the graph inputs, in signature
order: no graph input may take one as its keyword."""


class InputKind(enum.Enum):
    """How a step receives one of its inputs."""

    REQUIRED = "required"
    """The value must exist for the step to run."""
    OPTIONAL = "optional"
    """The step receives ``None`` when the value is missing."""
    REPEATED = "repeated"
    """The step receives a sequence of every value of the type (fan-in)."""


class CacheScope(enum.Enum):
    """Where a step's result is kept (``(docket.step).cache.scope``)."""

    NONE = "none"
    WORKFLOW = "workflow"
    GLOBAL = "global"


class Delivery(enum.Enum):
    """How often a step may run for one execution (``(docket.step).delivery``)."""

    AT_LEAST_ONCE = "at_least_once"
    AT_MOST_ONCE = "at_most_once"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When and how a failed step is tried again. Intervals are in seconds.

    The wait after attempt ``n`` is ``initial_interval * backoff_coefficient **
    (n - 1)``, at most ``maximum_interval``, then spread by ``jitter`` (0.2:
    anywhere from 80% to 120% of it) so that failing callers do not retry in step.
    """

    max_attempts: int = 3
    initial_interval: float = 1.0
    backoff_coefficient: float = 2.0
    maximum_interval: float = 100.0
    non_retryable_errors: tuple[str, ...] = ()
    jitter: float = 0.2


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """Which results of a step are kept, and for how long (``ttl`` in seconds).

    ``namespace`` (``GLOBAL`` scope only) keys the results under that name instead
    of the graph's full name, so that graphs setting the same one share them.
    ``key`` (``GLOBAL`` scope only) makes the key from these fields of the step's
    inputs instead of the whole inputs: dotted paths whose first name is an
    input's parameter name (:attr:`Input.name`), then proto field names
    (``chunk.text``); empty: the whole inputs.
    """

    scope: CacheScope = CacheScope.NONE
    ttl: float | None = None
    version: str = ""
    namespace: str = ""
    key: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Input:
    """One input of a step: the parameter name, the message type's full name, its kind."""

    name: str
    type: str
    kind: InputKind = InputKind.REQUIRED


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a graph (one ``rpc``) and its options.

    ``needs`` names the steps whose outputs it takes, in input order, without
    repeats: the plan's dependency graph (its inputs that are graph inputs need
    no step). ``retry`` is ``None`` when the step sets no retry policy of its
    own. ``timeout`` bounds each attempt, in seconds. ``subgraph`` names the
    graph that implements the step, if any. ``sensitive`` (the step's option, or
    its output message's) keeps its stored results without a JSON rendering.
    """

    name: str
    method: str
    output: str
    inputs: tuple[Input, ...] = ()
    needs: tuple[str, ...] = ()
    blocking: bool = False
    timeout: float | None = None
    retry: RetryPolicy | None = None
    cache: CachePolicy = CachePolicy()
    max_concurrency: int = 0
    delivery: Delivery = Delivery.AT_LEAST_ONCE
    subgraph: str | None = None
    durable: bool = False
    sensitive: bool = False


@dataclass(frozen=True, slots=True)
class Stage:
    """One stage of a batch run of a target.

    ``once`` steps run a single time for the whole batch: the aggregates (over
    the per-item values of earlier stages) and the shared steps after them.
    Then ``each`` steps run once per item. Both are in a topological order.
    """

    once: tuple[str, ...] = ()
    each: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Batch:
    """How a target is produced over a batch of items (``run_batch``).

    A batch runs its ``stages`` one after another; a new stage starts when an
    aggregate needs every item's value from the earlier ones. ``per_item`` is
    false when the target itself is shared: one value for the whole batch.
    """

    stages: tuple[Stage, ...]
    per_item: bool = True


@dataclass(frozen=True, slots=True)
class Target:
    """What it takes to produce one type.

    ``steps`` is the minimal set of steps in a topological order; ``levels``
    groups them so that the steps of one level depend only on earlier levels;
    ``inputs`` are the graph inputs that must be given and ``optional_inputs``
    those that may be left out (only optional fields consume them). ``batch``
    is the target's batch schedule, ``None`` when it does not depend on the
    graph's items (or the graph has none).
    """

    type: str
    steps: tuple[str, ...]
    levels: tuple[tuple[str, ...], ...]
    inputs: tuple[str, ...] = ()
    optional_inputs: tuple[str, ...] = ()
    batch: Batch | None = None


@dataclass(frozen=True)
class GraphPlan:
    """The whole static plan of one graph (one proto ``service``).

    ``types`` maps every message type's full name to its generated class.
    ``inputs`` maps each graph input's type to the keyword that passes it.
    ``items`` is the graph input that batch runs iterate over, if any.
    ``sensitive`` names the graph inputs marked sensitive in the proto: a
    durable execution keeps them without a JSON rendering.
    """

    name: str
    steps: tuple[Step, ...]
    targets: tuple[Target, ...]
    types: Mapping[str, type[Message]]
    inputs: Mapping[str, str] = field(default_factory=dict)
    description: str = ""
    items: str | None = None
    sensitive: tuple[str, ...] = ()

    def step(self, name: str) -> Step:
        """Return the step called ``name``."""
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(f"graph {self.name} has no step {name!r}")

    def target(self, type_name: str) -> Target:
        """Return the target plan of the type whose full name is ``type_name``."""
        for target in self.targets:
            if target.type == type_name:
                return target
        raise KeyError(f"graph {self.name} cannot produce {type_name!r}")

    def describe(self) -> str:
        """Render the plan as text: one block per target with its levels."""
        lines = [f"graph {self.name}"]
        if self.items is not None:
            lines[0] += f" (batches of {self.items})"
        for target in self.targets:
            lines.append(f"  {target.type}")
            for depth, level in enumerate(target.levels):
                lines.append(f"    level {depth}: {', '.join(level)}")
            if target.inputs:
                lines.append(f"    inputs: {', '.join(target.inputs)}")
            if target.optional_inputs:
                lines.append(f"    optional inputs: {', '.join(target.optional_inputs)}")
            if target.batch is not None:
                shared = "" if target.batch.per_item else " (one shared value)"
                lines.append(f"    batch{shared}:")
                for number, stage in enumerate(target.batch.stages):
                    if stage.once:
                        lines.append(f"      stage {number} once: {', '.join(stage.once)}")
                    if stage.each:
                        lines.append(f"      stage {number} per item: {', '.join(stage.each)}")
        return "\n".join(lines)
