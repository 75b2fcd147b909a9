"""Renders a checked FileModel into the source of its ``<file>_docket.py`` module."""

from __future__ import annotations

import dataclasses
import functools
import re
import textwrap
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import jinja2

from docket_runtime._persistence import persisted_scope
from docket_runtime.plan import (
    BATCH_OPTIONS,
    ENQUEUE_OPTIONS,
    RUN_OPTIONS,
    Batch,
    CachePolicy,
    CacheScope,
    Delivery,
    Input,
    InputKind,
    RetryPolicy,
    Step,
    Target,
)

from . import pyfmt
from .model import FileModel, GraphModel, MessageInfo
from .names import snake_case
from .pyfmt import Call, Dict, Node, Raw, Tuple, string
from .resources import templates_dir

_DEFAULT_STEP = Step(name="", method="", output="")
# The fields of a plan step that every step states, in the order the plan writes them.
_STEP_FACTS = ("name", "method", "output", "inputs", "needs")


@dataclass
class Imports:
    """Aliases of the ``_pb2`` modules a generated module refers to."""

    modules: list[str]
    alias: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        last = Counter(m.rsplit(".", 1)[-1] for m in self.modules)
        for module in self.modules:
            short = module.rsplit(".", 1)[-1]
            self.alias[module] = short if last[short] == 1 else module.replace(".", "_")

    def lines(self) -> list[str]:
        out = []
        for module in sorted(self.modules):
            package, _, short = module.rpartition(".")
            alias = self.alias[module]
            suffix = "" if alias == short else f" as {alias}"
            out.append(
                f"from {package} import {short}{suffix}" if package else f"import {short}{suffix}"
            )
        return out


def render_file(file: FileModel, messages: dict[str, MessageInfo]) -> str:
    """The module source for ``file``; deterministic for a given model."""
    used = sorted({t for g in file.graphs for t in _types_of(g)})
    imports = Imports(sorted({messages[t].module for t in used}))

    def ref(type_name: str) -> str:
        info = messages[type_name]
        return f"{imports.alias[info.module]}.{info.class_path}"

    def short(type_name: str) -> str:
        return messages[type_name].class_path.replace(".", "")

    graphs = [_graph_context(g, ref, short) for g in file.graphs]
    batches = any(g["batch_runs"] for g in graphs)
    durable_overloads = any(g["durable_overloads"] for g in graphs)
    overloads = durable_overloads or any(g["overloads"] for g in graphs)
    typing_names = {"TYPE_CHECKING", "Protocol", "TypedDict", "TypeVar", "Unpack"}
    if batches:
        typing_names.add("Literal")
    if any(g["optional_inputs"] for g in graphs):
        typing_names.add("NotRequired")
    if batches or overloads:
        typing_names.add("overload")
    abc_names = {"Awaitable", "Callable"}
    if durable_overloads:
        abc_names.add("Mapping")
    if batches or any(g["uses_sequence"] for g in graphs):
        abc_names.add("Sequence")
    source = _module_template().render(
        proto=file.name,
        imports=imports.lines(),
        graphs=graphs,
        std_imports=[
            _from_import("collections.abc", abc_names),
            _from_import("typing", typing_names),
        ],
        uses_batches=batches,
        run_params=RUN_PARAMS,
        run_options=RUN_OPTIONS,
        batch_params=batch_params('Literal["raise", "collect"] = "raise"'),
        batch_options=(*BATCH_OPTIONS, *RUN_OPTIONS),
        enqueue_params=ENQUEUE_PARAMS,
        enqueue_options=ENQUEUE_OPTIONS,
    )
    # Templates may leave runs of blank lines; ruff format allows two at most.
    return re.sub(r"\n{4,}", "\n\n\n", source)


@functools.cache
def _module_template() -> jinja2.Template:
    """The module template, compiled once per process: protoc-gen-docket renders every
    file of a run with it (compiling it took a quarter of the plugin's time)."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )
    return environment.get_template("module.py.j2")


def _from_import(module: str, names: set[str]) -> str:
    """``from module import names`` as isort writes it: constants, classes, then functions,
    one name per line when they do not fit."""
    ordered = sorted(names, key=lambda n: (not n.isupper(), not n[0].isupper(), n.lower()))
    line = f"from {module} import {', '.join(ordered)}"
    if len(line) <= pyfmt.WIDTH:
        return line
    return "\n".join([f"from {module} import (", *(f"{pyfmt.INDENT}{n}," for n in ordered), ")"])


def _types_of(graph: GraphModel) -> set[str]:
    types = set(graph.inputs)
    for step in graph.steps:
        types.add(step.spec.output)
        types.update(i.type for i in step.spec.inputs)
    return types


def docstring(text: str, depth: int) -> str:
    """A triple-quoted docstring, indented ``depth`` levels."""
    indent = pyfmt.INDENT * depth
    body = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"').strip()
    lines = body.split("\n")
    if len(lines) == 1:
        return f'{indent}"""{body}"""'
    rest = [f"{indent}{line}" if line.strip() else "" for line in lines[1:]]
    return "\n".join([f'{indent}"""{lines[0]}', *rest, f'{indent}"""'])


_ANNOTATIONS = {
    "execution_id": "str | None = None",
    "deadline": "float | None = None",
    "resume": "bool = False",
    "max_concurrency": "int | None = None",
}
RUN_PARAMS = tuple(f"{option}: {_ANNOTATIONS[option]}" for option in RUN_OPTIONS)
"""The parameters of every ``run`` after the graph inputs (names from the plan contract)."""

_ENQUEUE_ANNOTATIONS = {
    "execution_id": "str",
    "queue": "str | None = None",
    "priority": "int | None = None",
    "connection": '"_durable.Connection | None" = None',
}
ENQUEUE_PARAMS = tuple(f"{option}: {_ENQUEUE_ANNOTATIONS[option]}" for option in ENQUEUE_OPTIONS)
"""The parameters of every ``enqueue`` after the graph inputs (names from the plan contract).

The durable module needs Procrastinate: generated modules import it for type checkers only
(``_durable``), hence the quoted annotations."""
_APP = 'app: "_durable.App"'


def batch_params(on_error: str) -> tuple[str, ...]:
    """The parameters of ``run_batch`` after the shared inputs; ``on_error`` is its annotation."""
    typed = {**_ANNOTATIONS, "on_error": on_error}
    return tuple(f"{option}: {typed[option]}" for option in (*BATCH_OPTIONS, *RUN_OPTIONS))


def _graph_context(
    graph: GraphModel, ref: Callable[[str], str], short: Callable[[str], str]
) -> dict[str, object]:
    constant = snake_case(graph.name).upper() + "_PLAN"
    methods = []
    uses_sequence = False
    for step in graph.steps:
        spec = step.spec
        if spec.subgraph is not None:
            continue
        params = ["self"]
        for item in spec.inputs:
            params.append(f"{item.name}: {_input_annotation(item, ref)}")
            uses_sequence = uses_sequence or item.kind is InputKind.REPEATED
        if len(params) > 1:
            params.append("/")
        head = f"{'def' if spec.blocking else 'async def'} {spec.method}"
        doc = _step_doc(spec, step.doc)
        methods.append(
            pyfmt.signature(head, params, f" -> {ref(spec.output)}:", depth=1)
            + "\n"
            + docstring(doc, 2)
            + "\n        ..."
        )
    description = graph.description or graph.doc
    targets = _TargetVars(ref)
    if len(graph.targets) > 1:  # declared first: the other signatures share it when they can
        targets.annotation([t.type for t in graph.targets], f"_{graph.name}Target")
    sets = _input_sets(graph, short, targets)
    runs = _runs(graph, sets, ref)
    batch_runs = _batch_runs(graph, ref, targets)
    durable = _durable_entries(graph, ref, sets, targets)
    fetches = _fetches(graph, ref, targets)
    return {
        "name": graph.name,
        "full_name": graph.full_name,
        "constant": constant,
        "steps_doc": docstring(
            f"The steps of graph {graph.full_name}: implement one method per step."
            + (f"\n\n{description}" if description else ""),
            1,
        ),
        "graph_doc": docstring(
            f"Graph {graph.full_name} bound to an implementation of {graph.name}Steps."
            + (f"\n\n{description}" if description else ""),
            1,
        ),
        "methods": methods,
        "plan": pyfmt.render(_plan_node(graph, ref), 0, f"{constant} = "),
        "runs": runs,
        "batch_runs": batch_runs,
        "uses_sequence": uses_sequence or fetches.pop("uses_sequence"),
        "overloads": len(runs) > 1 or len(fetches["fetches"]) > 1,
        "optional_inputs": any(t.optional_inputs for t in graph.targets),
        **durable,
        **fetches,
        "target_vars": targets.declarations(),
    }


def _input_annotation(item: Input, ref: Callable[[str], str]) -> str:
    """How a step receives an input (``Sequence[...]`` for a repeated one)."""
    if item.kind is InputKind.OPTIONAL:
        return f"{ref(item.type)} | None"
    if item.kind is InputKind.REPEATED:
        return f"Sequence[{ref(item.type)}]"
    return ref(item.type)


def _fetches(graph: GraphModel, ref: Callable[[str], str], targets: _TargetVars) -> dict[str, Any]:
    """The typed ``fetch`` signatures, for the targets whose step keeps its result.

    One for the targets kept per execution (by ``execution_id``; a TypeVar of them when
    there are several), one per ``GLOBAL`` target (by its step's inputs, positional).
    A target whose step keeps nothing has none. With one signature, ``body`` calls the
    untyped form; with several, the template writes their implementation.
    """
    producers = graph.producers()
    per_execution: list[str] = []
    by_inputs: list[Step] = []
    for target in graph.targets:
        step = producers[target.type].spec
        scope = persisted_scope(step)
        if scope == "workflow":
            per_execution.append(target.type)
        elif scope == "global":
            by_inputs.append(step)
    found: list[dict[str, str]] = []
    if per_execution:
        kept = targets.annotation(per_execution, f"_{graph.name}CheckpointTarget")
        found.append(
            {
                "signature": pyfmt.signature(
                    "async def fetch",
                    ["self", f"target: type[{kept}]", "/", "*", "execution_id: str"],
                    f" -> {kept} | None:",
                    depth=1,
                ),
                "doc": docstring(
                    "What the step producing ``target`` kept for ``execution_id``, or ``None``.", 2
                ),
                "body": "        return await self.fetch_target(target, execution_id=execution_id)",
            }
        )
    for step in by_inputs:
        # Positional only: a step's parameter may be named like fetch's own.
        names = [f"{i.name}_" if i.name in ("self", "target") else i.name for i in step.inputs]
        params = [
            f"{n}: {_input_annotation(i, ref)}" for n, i in zip(names, step.inputs, strict=True)
        ]
        out = ref(step.output)
        found.append(
            {
                "signature": pyfmt.signature(
                    "async def fetch",
                    ["self", f"target: type[{out}]", *params, "/"],
                    f" -> {out} | None:",
                    depth=1,
                ),
                "doc": docstring(f"What step {step.name} kept for these inputs, or ``None``.", 2),
                "body": pyfmt.render(
                    Call(
                        "self.fetch_target",
                        [Raw("target")],
                        [("inputs", Tuple([Raw(n) for n in names]))],
                    ),
                    2,
                    "return await ",
                ),
            }
        )
    return {
        "fetches": found,
        "uses_sequence": any(i.kind is InputKind.REPEATED for s in by_inputs for i in s.inputs),
    }


@dataclass
class _InputSet:
    """Targets that take the same graph inputs: one ``enqueue`` and ``schedule`` signature.

    ``name`` is the TypedDict of the inputs, nested in the graph class and named after
    their messages (``OrderInputs``, ``MovieWeightInputs``, ``NoInputs``); ``target`` is
    the annotation of the targets: a TypeVar constrained to them, or the one target's type.
    """

    inputs: tuple[str, ...]
    optional: tuple[str, ...]
    targets: list[str] = field(default_factory=list)
    name: str = ""
    target: str = ""


class _TargetVars:
    """The annotations of target parameters: the one target's type, or a module-level
    TypeVar constrained to the targets a signature accepts, declared once and shared by
    every signature that accepts the same targets (one signature instead of one per
    target)."""

    def __init__(self, ref: Callable[[str], str]) -> None:
        self._ref = ref
        self._names: dict[tuple[str, ...], str] = {}

    def annotation(self, types: Sequence[str], name: str) -> str:
        """The annotation for ``types``; a new TypeVar is called ``name``."""
        if len(types) == 1:
            return self._ref(types[0])
        return self._names.setdefault(tuple(types), name)

    def declarations(self) -> list[str]:
        return [_type_var(name, list(types), self._ref) for types, name in self._names.items()]


def _input_sets(
    graph: GraphModel, short: Callable[[str], str], targets: _TargetVars
) -> list[_InputSet]:
    """The targets grouped by the graph inputs they take, each group named and annotated."""
    sets: dict[tuple[tuple[str, ...], tuple[str, ...]], _InputSet] = {}
    for target in graph.targets:
        key = (target.inputs, target.optional_inputs)
        sets.setdefault(key, _InputSet(*key)).targets.append(target.type)
    taken: Counter[str] = Counter()
    for group in sets.values():
        stem = "".join(short(t) for t in (*group.inputs, *group.optional)) or "No"
        taken[stem] += 1
        group.name = f"{stem}Inputs" if taken[stem] == 1 else f"{stem}Inputs{taken[stem]}"
        group.target = targets.annotation(group.targets, f"_{graph.name}{group.name}Target")
    return list(sets.values())


def _keywords(
    graph: GraphModel, inputs: Sequence[str], optional: Sequence[str], ref: Callable[[str], str]
) -> list[str]:
    """The keyword parameters passing graph inputs: required ones, then optional ones."""
    keywords = [f"{graph.inputs[t]}: {ref(t)}" for t in inputs]
    keywords += [f"{graph.inputs[t]}: {ref(t)} | None = None" for t in optional]
    return keywords


def _runs(graph: GraphModel, sets: list[_InputSet], ref: Callable[[str], str]) -> list[str]:
    """The typed ``run`` signatures: one per set of inputs, generic in the targets that
    take them. Several are overloads of the untyped implementation; one alone is for type
    checkers only (nested one level deeper), so that at run time any keyword reaches the
    runtime's input checks and their messages."""
    depth = 1 if len(sets) > 1 else 2
    signatures = []
    for group in sets:
        keywords = _keywords(graph, group.inputs, group.optional, ref)
        params = ["self", f"target: type[{group.target}]", "/", "*", *keywords, *RUN_PARAMS]
        signatures.append(
            pyfmt.signature("async def run", params, f" -> {group.target}:", depth=depth)
        )
    return signatures


def _durable_entries(
    graph: GraphModel,
    ref: Callable[[str], str],
    sets: list[_InputSet],
    targets: _TargetVars,
) -> dict[str, object]:
    """The typed durable entry points: ``enqueue`` and ``schedule`` per set of inputs (an
    overload each when there are several sets), ``result`` over every target."""
    result_type = targets.annotation([t.type for t in graph.targets], f"_{graph.name}Target")
    return {
        "typed_dicts": [_typed_dict(graph, group, ref) for group in sets],
        "enqueues": [
            pyfmt.signature(
                "async def enqueue",
                [
                    "self",
                    _APP,
                    f"target: type[{group.target}]",
                    "/",
                    "*",
                    *ENQUEUE_PARAMS,
                    f"**inputs: Unpack[{group.name}]",
                ],
                " -> int | None:",
                depth=1,
            )
            for group in sets
        ],
        "schedules": [
            pyfmt.signature(
                "def schedule",
                [
                    "self",
                    _APP,
                    'registry: "_durable.Registry"',
                    f"target: type[{group.target}]",
                    "/",
                    "*",
                    "cron: str",
                    f"inputs: _MakeInputs[{group.target}, {group.name}]",
                    "name: str | None = None",
                    "queue: str | None = None",
                ],
                " -> str:",
                depth=1,
            )
            for group in sets
        ],
        "durable_overloads": len(sets) > 1,
        "result": pyfmt.signature(
            "async def result",
            ["self", f"target: type[{result_type}]", "/", "execution_id: str"],
            f" -> {result_type} | None:",
            depth=1,
        ),
    }


def _type_var(name: str, types: list[str], ref: Callable[[str], str]) -> str:
    """A module-level TypeVar constrained to ``types``: a signature shared by those targets."""
    constraints = [Raw(ref(t)) for t in types]
    return pyfmt.render(Call("TypeVar", [string(name), *constraints]), 0, f"{name} = ")


def _typed_dict(graph: GraphModel, group: _InputSet, ref: Callable[[str], str]) -> str:
    fields = [f"{graph.inputs[t]}: {ref(t)}" for t in group.inputs]
    fields += [f"{graph.inputs[t]}: NotRequired[{ref(t)} | None]" for t in group.optional]
    lines = [f"    class {group.name}(TypedDict):"]
    lines += [f"        {f}" for f in fields] or ["        pass"]
    return "\n".join(lines)


def _batch_runs(graph: GraphModel, ref: Callable[[str], str], targets: _TargetVars) -> list[str]:
    """The ``run_batch`` overloads: per set of shared inputs, one that raises and one that
    collects, generic in the batch targets that take those inputs."""
    item = graph.item_type
    if item is None:
        return []
    sets: dict[tuple[tuple[str, ...], tuple[str, ...]], list[str]] = {}
    for target in graph.targets:
        if target.batch is not None:
            shared = tuple(t for t in target.inputs if t != item)
            optional = tuple(t for t in target.optional_inputs if t != item)
            sets.setdefault((shared, optional), []).append(target.type)
    signatures = []
    for number, ((shared, optional), types) in enumerate(sets.items(), start=1):
        keywords = _keywords(graph, shared, optional, ref)
        result = targets.annotation(
            types, f"_{graph.name}BatchTarget{number if number > 1 else ''}"
        )
        for policy, returns in (
            ('Literal["raise"] = "raise"', f"list[{result}]"),
            ('Literal["collect"]', f"list[{result} | _ItemError]"),
        ):
            params = [
                "self",
                f"target: type[{result}]",
                f"items: Sequence[{ref(item)}]",
                "/",
                "*",
                *keywords,
                *batch_params(policy),
            ]
            signatures.append(
                pyfmt.signature("async def run_batch", params, f" -> {returns}: ...", depth=1)
            )
    return signatures


def _step_doc(spec: Step, comment: str) -> str:
    inputs = ", ".join(
        i.type + ("" if i.kind is InputKind.REQUIRED else f" ({i.kind.value})") for i in spec.inputs
    )
    lines = [f"Step {spec.name}.", ""]
    lines += textwrap.wrap(f"Inputs: {inputs or 'none'}.", 78, break_on_hyphens=False)
    lines.append(f"Output: {spec.output}.")
    if comment:
        lines += ["", comment]
    return "\n".join(lines)


def _plan_node(graph: GraphModel, ref: Callable[[str], str]) -> Node:
    kwargs: list[tuple[str, Node]] = [
        ("name", string(graph.full_name)),
        ("steps", Tuple([_step_node(step.spec) for step in graph.steps])),
        ("targets", Tuple([_target_node(t) for t in graph.targets])),
        ("types", Dict([(string(t), Raw(ref(t))) for t in sorted(_types_of(graph))])),
    ]
    if graph.inputs:
        kwargs.append(("inputs", Dict([(string(t), string(k)) for t, k in graph.inputs.items()])))
    if graph.description:
        kwargs.append(("description", string(graph.description)))
    if graph.item_type is not None:
        kwargs.append(("items", string(graph.item_type)))
    if graph.sensitive:
        kwargs.append(("sensitive", Tuple([string(t) for t in graph.sensitive])))
    return Call("_plan.GraphPlan", kwargs=kwargs)


def _step_node(spec: Step) -> Node:
    kwargs: list[tuple[str, Node]] = [
        ("name", string(spec.name)),
        ("method", string(spec.method)),
        ("output", string(spec.output)),
    ]
    if spec.inputs:
        kwargs.append(("inputs", Tuple([_input_node(i.name, i.type, i.kind) for i in spec.inputs])))
    if spec.needs:
        kwargs.append(("needs", Tuple([string(n) for n in spec.needs])))
    kwargs += _changed(spec, _DEFAULT_STEP, skip=_STEP_FACTS)
    return Call("_plan.Step", kwargs=kwargs)


def _input_node(name: str, type_name: str, kind: InputKind) -> Node:
    args: list[Node] = [string(name), string(type_name)]
    if kind is not InputKind.REQUIRED:
        args.append(Raw(f"_plan.InputKind.{kind.name}"))
    return Call("_plan.Input", args)


def _target_node(target: Target) -> Node:
    kwargs: list[tuple[str, Node]] = [
        ("type", string(target.type)),
        ("steps", Tuple([string(s) for s in target.steps])),
        ("levels", Tuple([Tuple([string(s) for s in level]) for level in target.levels])),
    ]
    if target.inputs:
        kwargs.append(("inputs", Tuple([string(t) for t in target.inputs])))
    if target.optional_inputs:
        kwargs.append(("optional_inputs", Tuple([string(t) for t in target.optional_inputs])))
    if target.batch is not None:
        kwargs.append(("batch", _batch_node(target.batch)))
    return Call("_plan.Target", kwargs=kwargs)


def _batch_node(batch: Batch) -> Node:
    stages: list[Node] = []
    for stage in batch.stages:
        parts: list[tuple[str, Node]] = []
        if stage.once:
            parts.append(("once", Tuple([string(s) for s in stage.once])))
        if stage.each:
            parts.append(("each", Tuple([string(s) for s in stage.each])))
        stages.append(Call("_plan.Stage", kwargs=parts))
    kwargs: list[tuple[str, Node]] = [("stages", Tuple(stages))]
    if not batch.per_item:
        kwargs.append(("per_item", Raw("False")))
    return Call("_plan.Batch", kwargs=kwargs)


def _changed(value: object, default: object, skip: Collection[str] = ()) -> list[tuple[str, Node]]:
    """The fields of dataclass ``value`` that differ from ``default``'s, as keywords: a plan
    states the options a proto sets, never their defaults (new fields flow through)."""
    return [
        (f.name, _value_node(getattr(value, f.name)))
        for f in dataclasses.fields(value)  # type: ignore[arg-type]
        if f.name not in skip and getattr(value, f.name) != getattr(default, f.name)
    ]


def _value_node(value: object) -> Node:
    if isinstance(value, bool | int | float):
        return Raw(repr(value))
    if isinstance(value, str):
        return string(value)
    if isinstance(value, tuple):
        return Tuple([_value_node(v) for v in value])
    if isinstance(value, CacheScope | Delivery):
        return Raw(f"_plan.{type(value).__name__}.{value.name}")
    if isinstance(value, RetryPolicy | CachePolicy):
        return Call(f"_plan.{type(value).__name__}", kwargs=_changed(value, type(value)()))
    raise TypeError(f"cannot render option value {value!r}")
