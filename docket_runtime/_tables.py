"""Index tables built once from a GraphPlan, so the scheduler works on integers.

Every message type of a graph gets a slot in a per-execution list of values;
every target gets, per step position, its dependency count and dependents
(its schedule, from the steps' ``needs``: see :mod:`docket_runtime._deps`).
This runs when a generated module's graph is first bound, never per execution.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import Message

from . import _deps
from .plan import GraphPlan, InputKind, Step


@dataclass(frozen=True, slots=True)
class StepTable:
    """A step with its argument slots resolved."""

    step: Step
    arg_slots: tuple[int, ...]
    arg_kinds: tuple[InputKind, ...]
    all_required: bool
    out_slot: int
    out_cls: type[Message]


@dataclass(frozen=True, slots=True)
class GraphInput:
    """A graph input a target takes: its keyword, slot, class and whether it may be left out."""

    keyword: str
    slot: int
    cls: type[Message]
    required: bool


@dataclass(frozen=True, slots=True)
class TargetTable:
    """One target's schedule: positions index ``steps`` (global step indexes).

    ``tolerable[pos]`` is true when only optional inputs consume the step's
    output: its failure leaves None there instead of failing the execution.
    """

    type_name: str
    slot: int
    steps: tuple[int, ...]
    dep_counts: tuple[int, ...]
    dependents: tuple[tuple[int, ...], ...]
    roots: tuple[int, ...]
    tolerable: tuple[bool, ...]
    chain: bool
    inputs: tuple[GraphInput, ...]
    keywords: frozenset[str]
    where: str
    """How errors about a run of the target start (``"shop.Orders: target shop.Receipt"``)."""


@dataclass(frozen=True, slots=True)
class PlanTables:
    """All tables of one graph plan."""

    plan: GraphPlan
    slots: dict[str, int]
    steps: tuple[StepTable, ...]
    targets: dict[type[Message], TargetTable]


def build_tables(plan: GraphPlan) -> PlanTables:
    """Index ``plan``; raises ValueError if the plan is inconsistent (a hand-edited module)."""
    slots = {name: index for index, name in enumerate(plan.types)}
    step_index = {step.name: index for index, step in enumerate(plan.steps)}
    needs = _deps.needs_of(plan.steps)
    _check_needs(plan, needs)
    try:
        steps = tuple(
            StepTable(
                step=step,
                arg_slots=tuple(slots[i.type] for i in step.inputs),
                arg_kinds=tuple(i.kind for i in step.inputs),
                all_required=all(i.kind is InputKind.REQUIRED for i in step.inputs),
                out_slot=slots[step.output],
                out_cls=plan.types[step.output],
            )
            for step in plan.steps
        )
        targets = {}
        for target in plan.targets:
            table = _target_table(plan, target.type, slots, step_index, needs)
            targets[plan.types[target.type]] = table
    except KeyError as exc:
        raise ValueError(f"plan of graph {plan.name} is inconsistent: unknown {exc}") from None
    return PlanTables(plan=plan, slots=slots, steps=steps, targets=targets)


def _check_needs(plan: GraphPlan, needs: dict[str, tuple[str, ...]]) -> None:
    """The plan's needs must be those its steps' inputs imply (a module generated before
    ``needs`` existed has none: its steps would start before their inputs exist)."""
    for name, implied in _deps.step_needs(plan.steps).items():
        if needs[name] != implied:
            raise ValueError(
                f"plan of graph {plan.name} is inconsistent: step {name} needs "
                f"{', '.join(needs[name]) or 'no step'}, but its inputs come from "
                f"{', '.join(implied) or 'no step'}; generate the module again"
            )


def _target_table(
    plan: GraphPlan,
    type_name: str,
    slots: dict[str, int],
    step_index: dict[str, int],
    needs: dict[str, tuple[str, ...]],
) -> TargetTable:
    target = plan.target(type_name)
    outside = [n for n in _deps.upstream(needs, target.steps) if n not in target.steps]
    if outside:
        raise ValueError(
            f"plan of graph {plan.name} is inconsistent: target {type_name} needs step "
            f"{outside[0]}, which it does not list"
        )
    order = tuple(step_index[name] for name in target.steps)
    schedule = _deps.schedule(needs, target.steps)
    tolerable = tuple(
        _only_optional(plan, plan.steps[index].output, order)
        and plan.steps[index].output != type_name
        for index in order
    )
    inputs = tuple(
        GraphInput(plan.inputs[name], slots[name], plan.types[name], required)
        for names, required in ((target.inputs, True), (target.optional_inputs, False))
        for name in names
    )
    return TargetTable(
        type_name=type_name,
        slot=slots[type_name],
        steps=order,
        dep_counts=schedule.dep_counts,
        dependents=schedule.dependents,
        roots=schedule.roots,
        tolerable=tolerable,
        chain=schedule.chain,
        inputs=inputs,
        keywords=frozenset(i.keyword for i in inputs),
        where=f"{plan.name}: target {type_name}",
    )


def _only_optional(plan: GraphPlan, type_name: str, order: tuple[int, ...]) -> bool:
    """Whether every step of ``order`` that takes ``type_name`` takes it as an optional input.

    Such a step's failure is tolerated: its consumers receive None.
    """
    kinds = [i.kind for index in order for i in plan.steps[index].inputs if i.type == type_name]
    return bool(kinds) and all(kind is InputKind.OPTIONAL for kind in kinds)
