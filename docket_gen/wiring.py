"""Wiring checks of a graph: producers, declared inputs, names and cycles."""

from __future__ import annotations

from docket_runtime._deps import cycles, step_needs

from .model import Diagnostic, GraphModel, StepModel


def check_graph(graph: GraphModel) -> list[Diagnostic]:
    """Every wiring error of ``graph``, each located at the proto element to fix."""
    errors: list[Diagnostic] = []
    errors += _check_names(graph)
    errors += _check_producers(graph)
    errors += _check_needs(graph)
    if len({step.spec.name for step in graph.steps}) == len(graph.steps):
        # Dependencies are keyed by step name: with a duplicate name they would show cycles
        # that are not there; the duplicate is reported by _check_names.
        errors += _check_cycles(graph)
    return errors


def _check_names(graph: GraphModel) -> list[Diagnostic]:
    errors = []
    by_name: dict[str, StepModel] = {}
    by_method: dict[str, StepModel] = {}
    for step in graph.steps:
        name, method = step.spec.name, step.spec.method
        first = by_name.setdefault(name, step)
        if first is not step:
            errors.append(
                Diagnostic(
                    step.location,
                    f"step name {name!r} of rpc {step.rpc} is already used by rpc {first.rpc} "
                    f"({first.location}); give one of them another (docket.step).name",
                )
            )
            continue
        first = by_method.setdefault(method, step)
        if first is not step:
            errors.append(
                Diagnostic(
                    step.location,
                    f"step {name} and step {first.spec.name} ({first.location}) both become "
                    f"the Python method {method}(); rename one of them",
                )
            )
        params: dict[str, int] = {}
        for position, item in enumerate(step.spec.inputs):
            if item.name == "self":
                errors.append(
                    Diagnostic(
                        step.input_locations[position],
                        f"step {name}: input {item.type} would be the parameter self of "
                        f"{method}(), which already names the instance; rename the bundle "
                        "field (a message named Self needs a bundle field with another name)",
                    )
                )
            elif params.setdefault(item.name, position) != position:
                errors.append(
                    Diagnostic(
                        step.input_locations[position],
                        f"step {name}: two inputs become the parameter {item.name}; "
                        "rename one of the bundle's fields",
                    )
                )
    return errors


def _check_producers(graph: GraphModel) -> list[Diagnostic]:
    errors = []
    producers: dict[str, StepModel] = {}
    for step in graph.steps:
        output = step.spec.output
        first = producers.setdefault(output, step)
        if first is not step:
            errors.append(
                Diagnostic(
                    step.output_location,
                    f"steps {first.spec.name} ({first.location}) and {step.spec.name} both "
                    f"produce {output}; a graph has one producer per type, so wrap one "
                    "output in its own message",
                )
            )
        if output in graph.inputs:
            errors.append(
                Diagnostic(
                    step.output_location,
                    f"step {step.spec.name} produces {output}, which graph {graph.name} also "
                    f"declares as an input ({graph.option_location}); remove it from "
                    "(docket.graph).inputs or from the step",
                )
            )
    return errors


def _check_needs(graph: GraphModel) -> list[Diagnostic]:
    errors = []
    produced = {step.spec.output for step in graph.steps}
    for step in graph.steps:
        for position, item in enumerate(step.spec.inputs):
            if item.type in produced or item.type in graph.inputs:
                continue
            short = item.type.rsplit(".", 1)[-1]
            # The name to declare must resolve from the graph's package, as inputs do.
            package = graph.full_name.rpartition(".")[0]
            declared = item.type.removeprefix(f"{package}.") if package else item.type
            errors.append(
                Diagnostic(
                    step.input_locations[position],
                    f"step {step.spec.name} needs {item.type} ({item.name}), which no step of "
                    f"graph {graph.name} produces and the graph does not declare as an input; "
                    f'add a step that returns {short} or add "{declared}" to (docket.graph).inputs',
                )
            )
    return errors


def _check_cycles(graph: GraphModel) -> list[Diagnostic]:
    steps = {step.spec.name: step for step in graph.steps}
    return [
        Diagnostic(
            steps[path[0]].location,
            f"cycle in graph {graph.name}: {' -> '.join(path)}; each step needs the output "
            "of the next one, so none can start",
        )
        for path in cycles(step_needs([step.spec for step in graph.steps]))
    ]
