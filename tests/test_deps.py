"""The dependency graph derivations (docket_runtime._deps) and the runtime's check of ``needs``."""

from __future__ import annotations

from dataclasses import replace

import pytest
from google.protobuf import wrappers_pb2

from docket_runtime import GraphPlan, Input, InputKind, Step, Target, _deps
from docket_runtime._tables import build_tables

# A diamond A -> B, C -> D, and E on its own.
DIAMOND = {"A": (), "B": ("A",), "C": ("A",), "D": ("B", "C"), "E": ()}
JOINED = ("A", "B", "C", "D")


def test_minimal_steps_levels_and_closures() -> None:
    assert _deps.topological_order(DIAMOND) == ["A", "B", "C", "D", "E"]
    assert _deps.target_steps(DIAMOND, "D") == JOINED
    assert _deps.target_steps(DIAMOND, "C") == ("A", "C")
    assert _deps.levels(DIAMOND, JOINED) == (("A",), ("B", "C"), ("D",))
    assert _deps.upstream(DIAMOND, ["C"]) == ["A", "C"]
    assert _deps.downstream(DIAMOND, ["B"]) == ["B", "D"]
    assert _deps.downstream(DIAMOND, ["A"]) == ["A", "B", "C", "D"]
    assert _deps.reverse(DIAMOND) == {"A": ["B", "C"], "B": ["D"], "C": ["D"], "D": [], "E": []}


def test_ties_keep_declaration_order() -> None:
    needs = {"X": ("Y",), "Y": (), "Z": ()}
    assert _deps.topological_order(needs) == ["Y", "X", "Z"]
    assert _deps.levels(needs, ["Y", "X", "Z"]) == (("Y", "Z"), ("X",))


def test_schedule_of_a_target_and_of_a_subset() -> None:
    assert _deps.schedule(DIAMOND, JOINED) == _deps.Schedule(
        dep_counts=(0, 1, 1, 2),
        dependents=((1, 2), (3,), (3,), ()),
        roots=(0,),
        chain=False,
    )
    # Needs outside the subset are satisfied already: B and D alone are a chain.
    assert _deps.schedule(DIAMOND, ["B", "D"]) == _deps.Schedule((0, 1), ((1,), ()), (0,), True)
    assert _deps.schedule(DIAMOND, ["B", "C"]).roots == (0, 1)


def test_still_needed_stops_at_known_results() -> None:
    assert _deps.still_needed(DIAMOND, JOINED, {"B"}) == ["A", "C", "D"]
    assert _deps.still_needed(DIAMOND, JOINED, {"B", "C"}) == ["D"]
    assert _deps.still_needed(DIAMOND, JOINED, {"D"}) == []
    # Every sink of a batch stage is kept: here B and C, with A known.
    assert _deps.still_needed(DIAMOND, ["A", "B", "C"], {"A"}) == ["B", "C"]


def test_stages_start_at_each_aggregate() -> None:
    assert _deps.stages(DIAMOND, JOINED, {"D"}) == (("A", "B", "C"), ("D",))
    assert _deps.stages(DIAMOND, JOINED, {"B"}) == (("A", "C"), ("B", "D"))
    assert _deps.stages(DIAMOND, JOINED, ()) == (JOINED,)


def test_cycles_are_paths_from_their_first_step() -> None:
    needs = {"A": ("C",), "B": ("A",), "C": ("B",), "D": ("D",), "E": ("A",)}
    assert _deps.cycles(needs) == [["A", "C", "B", "A"], ["D", "D"]]
    assert _deps.cycles(DIAMOND) == []
    with pytest.raises(ValueError, match="cycle"):
        _deps.topological_order(needs)


def _step(name: str, output: str, *inputs: tuple[str, InputKind]) -> Step:
    return Step(
        name=name,
        method=name.lower(),
        output=f"google.protobuf.{output}",
        inputs=tuple(Input(t.lower(), f"google.protobuf.{t}", kind) for t, kind in inputs),
    )


REQ, OPT, REP = InputKind.REQUIRED, InputKind.OPTIONAL, InputKind.REPEATED
STEPS = (
    _step("Count", "Int32Value", ("StringValue", REQ)),
    _step("Check", "BoolValue", ("Int32Value", REQ), ("StringValue", OPT)),
    _step("Sum", "Int64Value", ("BoolValue", REP), ("Int32Value", OPT), ("BoolValue", REQ)),
)


def test_step_needs_follow_the_inputs() -> None:
    # In input order, once each; a graph input (StringValue) needs no step.
    assert _deps.step_needs(STEPS) == {"Count": (), "Check": ("Count",), "Sum": ("Check", "Count")}


def _plan(steps: tuple[Step, ...], joined: tuple[str, ...] = ("Count", "Check")) -> GraphPlan:
    types = (wrappers_pb2.StringValue, wrappers_pb2.Int32Value, wrappers_pb2.BoolValue)
    return GraphPlan(
        name="t.Checked",
        steps=steps,
        targets=(Target("google.protobuf.BoolValue", joined, (("Count",), ("Check",))),),
        types={cls.DESCRIPTOR.full_name: cls for cls in types},
        inputs={"google.protobuf.StringValue": "text"},
    )


def test_tables_follow_the_plan_needs() -> None:
    needs = _deps.step_needs(STEPS[:2])
    steps = tuple(replace(step, needs=needs[step.name]) for step in STEPS[:2])
    table = next(iter(build_tables(_plan(steps)).targets.values()))
    assert (table.steps, table.dep_counts, table.roots, table.chain) == ((0, 1), (0, 1), (0,), True)


def test_a_plan_without_needs_does_not_bind() -> None:
    """A module generated before ``needs`` existed: its steps would start before their inputs."""
    with pytest.raises(ValueError) as caught:
        build_tables(_plan(STEPS[:2]))
    assert str(caught.value) == (
        "plan of graph t.Checked is inconsistent: step Check needs no step, but its inputs "
        "come from Count; generate the module again"
    )


def test_a_target_must_list_every_step_it_needs() -> None:
    needs = _deps.step_needs(STEPS[:2])
    steps = tuple(replace(step, needs=needs[step.name]) for step in STEPS[:2])
    with pytest.raises(ValueError) as caught:
        build_tables(_plan(steps, joined=("Check",)))
    assert str(caught.value) == (
        "plan of graph t.Checked is inconsistent: target google.protobuf.BoolValue needs step "
        "Count, which it does not list"
    )
