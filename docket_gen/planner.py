"""The static plan: each step's needs; for every producible type, its minimal steps, levels
and graph inputs."""

from __future__ import annotations

import dataclasses

from docket_runtime import _deps
from docket_runtime.plan import InputKind, Target

from .model import Diagnostic, GraphModel


def plan_graph(graph: GraphModel) -> None:
    """Write the plan of a wired graph (acyclic, one producer per type) into it: each step's
    needs, then one Target per step output, in step declaration order."""
    needs = _deps.step_needs([step.spec for step in graph.steps])
    for step in graph.steps:
        step.spec = dataclasses.replace(step.spec, needs=needs[step.spec.name])
    steps = {step.spec.name: step.spec for step in graph.steps}
    targets = []
    for step in graph.steps:
        chosen = _deps.target_steps(needs, step.spec.name)
        required: list[str] = []
        optional: list[str] = []
        for name in chosen:
            for item in steps[name].inputs:
                if item.type not in graph.inputs:
                    continue
                bucket = optional if item.kind is InputKind.OPTIONAL else required
                if item.type not in bucket:
                    bucket.append(item.type)
        targets.append(
            Target(
                type=step.spec.output,
                steps=chosen,
                levels=_deps.levels(needs, chosen),
                inputs=tuple(t for t in graph.inputs if t in required),
                optional_inputs=tuple(
                    t for t in graph.inputs if t in optional and t not in required
                ),
            )
        )
    graph.targets = targets


def check_subgraphs(graphs: dict[str, GraphModel], graph: GraphModel) -> list[Diagnostic]:
    """A subgraph step's graph must produce the step's output from the step's inputs."""
    errors = []
    for step in graph.steps:
        name = step.spec.subgraph
        if name is None:
            continue
        child = graphs.get(name)
        if child is None or not child.targets:
            continue  # unknown graphs are reported by the reader; broken ones by their own checks
        if name == graph.full_name:
            errors.append(
                Diagnostic(
                    step.option_location,
                    f"step {step.spec.name}: a graph cannot be its own subgraph",
                )
            )
            continue
        target = next((t for t in child.targets if t.type == step.spec.output), None)
        if target is None:
            errors.append(
                Diagnostic(
                    step.option_location,
                    f"step {step.spec.name}: subgraph {name} does not produce {step.spec.output}",
                )
            )
            continue
        given = {item.type for item in step.spec.inputs}
        missing = [t for t in target.inputs if t not in given]
        if missing:
            errors.append(
                Diagnostic(
                    step.option_location,
                    f"step {step.spec.name}: subgraph {name} needs {', '.join(missing)} to "
                    f"produce {step.spec.output}, which the step does not take as input",
                )
            )
    return errors
