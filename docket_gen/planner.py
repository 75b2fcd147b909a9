"""The static plan: for every producible type, its minimal steps, levels and graph inputs."""

from __future__ import annotations

from docket_runtime.plan import InputKind, Target

from .model import Diagnostic, GraphModel
from .wiring import step_dependencies


def plan_targets(graph: GraphModel) -> list[Target]:
    """One Target per step output, in step declaration order. The graph must be acyclic."""
    deps = step_dependencies(graph)
    order = topological_order(graph, deps)
    level: dict[str, int] = {}
    for name in order:
        level[name] = 1 + max((level[d] for d in deps[name]), default=-1)
    steps = {step.spec.name: step.spec for step in graph.steps}
    targets = []
    for step in graph.steps:
        needed = _ancestors(step.spec.name, deps)
        chosen = [name for name in order if name in needed]
        depth = max(level[name] for name in chosen) + 1
        levels = tuple(
            tuple(name for name in chosen if level[name] == d)
            for d in range(depth)
            if any(level[name] == d for name in chosen)
        )
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
                steps=tuple(chosen),
                levels=levels,
                inputs=tuple(t for t in graph.inputs if t in required),
                optional_inputs=tuple(
                    t for t in graph.inputs if t in optional and t not in required
                ),
            )
        )
    return targets


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


def topological_order(graph: GraphModel, deps: dict[str, list[str]]) -> list[str]:
    """Kahn's algorithm; ties keep declaration order so the output is stable."""
    declared = [step.spec.name for step in graph.steps]
    remaining = {name: len(deps[name]) for name in declared}
    users: dict[str, list[str]] = {name: [] for name in declared}
    for name in declared:
        for dep in deps[name]:
            users[dep].append(name)
    order: list[str] = []
    ready = [name for name in declared if remaining[name] == 0]
    while ready:
        name = ready.pop(0)
        order.append(name)
        for user in users[name]:
            remaining[user] -= 1
            if remaining[user] == 0:
                ready.append(user)
                ready.sort(key=declared.index)
    if len(order) != len(declared):
        raise ValueError(f"graph {graph.name} has a cycle; check_graph reports it")
    return order


def _ancestors(name: str, deps: dict[str, list[str]]) -> set[str]:
    seen = {name}
    stack = [name]
    while stack:
        for dep in deps[stack.pop()]:
            if dep not in seen:
                seen.add(dep)
                stack.append(dep)
    return seen
