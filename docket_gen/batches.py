"""Batch roles of a graph: its item type, which steps run per item, once, or over every item.

A batch run runs a graph over a list of items of one graph input, the item
type. Relative to it:

- the *per-item* types are the item type and the outputs of steps that take a
  per-item type as a singular (required or optional) input: those steps run
  once per item;
- an *aggregate* is a step with a ``repeated`` field of a per-item type: it runs
  once, over every item's value, and its output is shared;
- every other step is *shared*: it runs once per batch.

A target's batch schedule is a list of stages: a stage starts where an
aggregate needs every item's value from the stages before it. All of this is
computed here, at generation time, and written into the plan.
"""

from __future__ import annotations

import dataclasses
import enum

from docket_runtime import _deps
from docket_runtime.plan import BATCH_OPTIONS, Batch, Input, InputKind, Stage

from .model import Diagnostic, GraphModel, StepModel

# Parameters of the generated run_batch() besides the graph inputs and those of run().
BATCH_KEYWORDS = frozenset({"items", *BATCH_OPTIONS})


class Role(enum.Enum):
    """How often a step runs in a batch: per item, once over every item, or once."""

    EACH = "each"
    AGGREGATE = "aggregate"
    SHARED = "shared"


def plan_batches(graph: GraphModel) -> list[Diagnostic]:
    """Check the batch roles of a wired, planned graph and add them to its targets.

    Sets ``graph.item_type`` and each target's ``batch`` when the graph has an
    item type and no batch errors; returns the errors otherwise.
    """
    if graph.items_option and graph.items is None:
        return []  # a bad (docket.graph).items is reported by the reader
    item, errors = _item_type(graph)
    if item is None:
        return errors
    roles, errors = _roles(graph, item)
    errors += _check_keywords(graph, item)
    if errors:
        return errors
    # A stage starts at each aggregate: it needs every item's value from the stages before.
    needs = graph.needs()
    aggregates = {name for name, role in roles.items() if role is Role.AGGREGATE}
    producers = graph.producers()
    targets = []
    for target in graph.targets:
        names = target.steps
        batch = None
        if any(roles[n] is not Role.SHARED for n in names):
            stages = tuple(
                Stage(
                    once=tuple(n for n in stage if roles[n] is not Role.EACH),
                    each=tuple(n for n in stage if roles[n] is Role.EACH),
                )
                for stage in _deps.stages(needs, names, aggregates)
            )
            per_item = roles[producers[target.type].spec.name] is Role.EACH
            batch = Batch(stages=stages, per_item=per_item)
        targets.append(dataclasses.replace(target, batch=batch))
    graph.targets = targets
    graph.item_type = item
    return []


def _item_type(graph: GraphModel) -> tuple[str | None, list[Diagnostic]]:
    """The item type: declared, or inferred from the repeated fields, or the only input.

    Inferred: the one graph input relative to which every repeated field gathers
    a per-item type; failing that, the one relative to which some do.
    """
    if graph.items is not None:
        return graph.items, []
    gathered = [
        i.type for step in graph.steps for i in step.spec.inputs if i.kind is InputKind.REPEATED
    ]
    if gathered:
        order = _deps.topological_order(graph.needs())
        covered = {t: _per_item(graph, t, order).intersection(gathered) for t in graph.inputs}
        full = [t for t, types in covered.items() if len(types) == len(set(gathered))]
        partial = [t for t, types in covered.items() if types]
        candidates = full or partial
        if len(candidates) == 1:
            return candidates[0], []
        if len(candidates) > 1:
            return None, [
                Diagnostic(
                    graph.option_location,
                    f"graph {graph.name}: a batch could iterate over "
                    f"{' or '.join(candidates)} (its repeated inputs gather values derived "
                    "from each); set (docket.graph).items to the one it runs over, e.g. "
                    f'items: "{_declared(graph, candidates[0])}"',
                )
            ]
    if len(graph.inputs) == 1:
        return next(iter(graph.inputs)), []
    return None, []


def _per_item(graph: GraphModel, item: str, order: list[str]) -> set[str]:
    """The item type and every output derived from it through singular inputs."""
    steps = {step.spec.name: step.spec for step in graph.steps}
    per_item = {item}
    for name in order:
        spec = steps[name]
        if any(i.kind is not InputKind.REPEATED and i.type in per_item for i in spec.inputs):
            per_item.add(spec.output)
    return per_item


def _roles(graph: GraphModel, item: str) -> tuple[dict[str, Role], list[Diagnostic]]:
    steps = {step.spec.name: step for step in graph.steps}
    per_item = {item}
    roles: dict[str, Role] = {}
    errors: list[Diagnostic] = []
    for name in _deps.topological_order(graph.needs()):
        step = steps[name]
        singular: list[Input] = []
        gathered: list[int] = []
        for position, put in enumerate(step.spec.inputs):
            if put.kind is not InputKind.REPEATED:
                if put.type in per_item:
                    singular.append(put)
            elif put.type in per_item:
                gathered.append(position)
            else:
                errors.append(_not_per_item(graph, step, position, item))
        if singular:
            roles[name] = Role.EACH
            per_item.add(step.spec.output)
            for position in gathered:
                errors.append(_both(step, singular[0], position))
        else:
            roles[name] = Role.AGGREGATE if gathered else Role.SHARED
    return roles, errors


def _not_per_item(graph: GraphModel, step: StepModel, position: int, item: str) -> Diagnostic:
    put = step.spec.inputs[position]
    return Diagnostic(
        step.input_locations[position],
        f"step {step.spec.name}: repeated field {put.name} would gather {put.type} from every "
        f"item of a batch over {item}, but {put.type} does not depend on the item: graph "
        f"{graph.name} computes it once per batch; make the field singular",
    )


def _both(step: StepModel, singular: Input, position: int) -> Diagnostic:
    put = step.spec.inputs[position]
    short = put.type.rsplit(".", 1)[-1]
    return Diagnostic(
        step.input_locations[position],
        f"step {step.spec.name} takes one item's {singular.type} ({singular.name}) and every "
        f"item's {put.type} ({put.name}); a step runs once per item or once per batch, not "
        f"both: gather the {short} values in a step of their own and give its output to "
        f"{step.spec.name}",
    )


def _check_keywords(graph: GraphModel, item: str) -> list[Diagnostic]:
    return [
        Diagnostic(
            graph.option_location,
            f"graph {graph.name}: input {type_name} would be passed to run_batch() as "
            f"{keyword}=, which run_batch() already uses; rename the message",
        )
        for type_name, keyword in graph.inputs.items()
        if type_name != item and keyword in BATCH_KEYWORDS
    ]


def _declared(graph: GraphModel, type_name: str) -> str:
    """``type_name`` as the graph's options would name it: relative to the graph's package."""
    package = graph.full_name.rpartition(".")[0]
    return type_name.removeprefix(f"{package}.") if package else type_name
