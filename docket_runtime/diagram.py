"""Diagrams of a graph's plan: plain text, Mermaid flowcharts and Graphviz DOT.

Every format draws the same picture, read from the :class:`~docket_runtime.plan.GraphPlan`
alone (no import beyond the plan): one node per step, labelled with its name, the type it
returns and its options (timeout, retry, cache scope and ttl, delivery, durable,
max_concurrency, blocking, subgraph); one node per graph input; one edge per step input,
drawn by kind:

============  ===================  =====================================
input kind    Mermaid              DOT
============  ===================  =====================================
required      ``A --> B``          solid
optional      ``A -.-> B``         dashed
repeated      ``A ==>|"[]"| B``    bold, labelled ``[]``
============  ===================  =====================================

::

    from docket_runtime import diagram
    print(diagram.render(users_docket.USER_GRAPH_PLAN, "mermaid"))
    print(diagram.render(plan, "dot", target="parallel.EnrichedUser"))  # only its steps

``docketctl plan MODULE:Graph --format mermaid`` prints the same from the command line.
Type names are written relative to the graph's package. The output is deterministic.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, Literal

from .plan import CacheScope, Delivery, GraphPlan, InputKind, RetryPolicy, Step

__all__ = ["FORMATS", "Format", "dot", "mermaid", "options_of", "render", "text"]

Format = Literal["text", "mermaid", "dot"]
FORMATS: Final[tuple[Format, ...]] = ("text", "mermaid", "dot")
"""The formats :func:`render` knows."""

_DEFAULT_RETRY = RetryPolicy()


def render(plan: GraphPlan, format: str = "text", *, target: str | None = None) -> str:
    """``plan`` drawn in ``format`` (one of :data:`FORMATS`), ending with a newline.

    With ``target`` (a type's full name, or its name relative to the graph's
    package) only the steps that produce it are drawn. Raises ``KeyError`` for a
    type the graph cannot produce and ``ValueError`` for an unknown format.
    """
    renderers: dict[str, Callable[[GraphPlan, str | None], str]] = {
        "text": text,
        "mermaid": mermaid,
        "dot": dot,
    }
    if format not in renderers:
        raise ValueError(f"unknown diagram format {format!r}: use {', '.join(FORMATS)}")
    return renderers[format](plan, target)


def options_of(step: Step) -> list[str]:
    """The options of ``step`` that differ from the defaults, one phrase each."""
    found: list[str] = []
    if step.subgraph is not None:
        found.append(f"subgraph {step.subgraph}")
    if step.blocking:
        found.append("blocking (in a thread)")
    if step.timeout is not None:
        found.append(f"timeout {_duration(step.timeout)}")
    if step.retry is not None:
        found.append(_retry(step.retry))
    if step.cache.scope is not CacheScope.NONE:
        cache = f"cache {step.cache.scope.value}"
        if step.cache.ttl is not None:
            cache += f", ttl {_duration(step.cache.ttl)}"
        if step.cache.version:
            cache += f", version {step.cache.version}"
        if step.cache.namespace:
            cache += f", namespace {step.cache.namespace}"
        found.append(cache)
    if step.delivery is Delivery.AT_MOST_ONCE:
        found.append("at most once")
    if step.durable:
        found.append("durable")
    if step.max_concurrency:
        found.append(f"at most {step.max_concurrency} at once")
    return found


def _duration(seconds: float) -> str:
    """``0.1`` -> ``100ms``, ``5.0`` -> ``5s``, ``86400.0`` -> ``24h``, ``90.0`` -> ``90s``."""
    for unit, size in (("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{int(seconds / size)}{unit}"
    if seconds < 1 and (seconds * 1000).is_integer():
        return f"{int(seconds * 1000)}ms"
    return f"{seconds:g}s"


def _retry(retry: RetryPolicy) -> str:
    words = f"retry {retry.max_attempts} attempts, {_duration(retry.initial_interval)}"
    if retry.backoff_coefficient != 1:
        words += f" x{retry.backoff_coefficient:g}"
    words += f" up to {_duration(retry.maximum_interval)}"
    if retry.jitter != _DEFAULT_RETRY.jitter:
        words += f", jitter {retry.jitter:g}"
    if retry.non_retryable_errors:
        words += f", not on {', '.join(retry.non_retryable_errors)}"
    return words


# The picture ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    """A graph input drawn as a node: its type and the keyword that passes it."""

    type: str
    keyword: str | None


@dataclass(frozen=True)
class _Edge:
    source: str  # a step's name, or a graph input's type
    step: str
    kind: InputKind
    from_input: bool


@dataclass(frozen=True)
class _Picture:
    plan: GraphPlan
    steps: tuple[Step, ...]
    sources: tuple[_Source, ...]
    edges: tuple[_Edge, ...]
    target: str | None

    def short(self, type_name: str) -> str:
        """``type_name`` relative to the graph's package."""
        package = self.plan.name.rpartition(".")[0]
        if package and type_name.startswith(package + "."):
            return type_name[len(package) + 1 :]
        return type_name


def _picture(plan: GraphPlan, target: str | None) -> _Picture:
    steps = plan.steps
    target_type = None
    if target is not None:
        target_type = _resolve_target(plan, target)
        wanted = set(plan.target(target_type).steps)
        steps = tuple(step for step in plan.steps if step.name in wanted)
    drawn = {step.name for step in steps}
    producers = {step.output: step.name for step in plan.steps}
    sources: dict[str, _Source] = {}
    edges: list[_Edge] = []
    for step in steps:
        for item in step.inputs:
            producer = producers.get(item.type)
            if producer is not None:
                if producer in drawn:
                    edges.append(_Edge(producer, step.name, item.kind, False))
                continue
            if item.type not in sources:
                sources[item.type] = _Source(item.type, plan.inputs.get(item.type))
            edges.append(_Edge(item.type, step.name, item.kind, True))
    order = {name: number for number, name in enumerate(plan.inputs)}
    ordered = sorted(sources.values(), key=lambda s: (order.get(s.type, len(order)), s.type))
    return _Picture(plan, steps, tuple(ordered), tuple(edges), target_type)


def _resolve_target(plan: GraphPlan, name: str) -> str:
    package = plan.name.rpartition(".")[0]
    for candidate in (name, f"{package}.{name}" if package else name):
        if any(t.type == candidate for t in plan.targets):
            return candidate
    known = ", ".join(t.type for t in plan.targets) or "none"
    raise KeyError(f"graph {plan.name} cannot produce {name!r} (targets: {known})")


def _source_lines(picture: _Picture, source: _Source) -> list[str]:
    role = "not produced" if source.keyword is None else f"input {source.keyword}"
    return [picture.short(source.type), role]


def _step_lines(picture: _Picture, step: Step) -> list[str]:
    return [step.name, f"→ {picture.short(step.output)}", *options_of(step)]


# Text -----------------------------------------------------------------------------------------


def text(plan: GraphPlan, target: str | None = None) -> str:
    """The plan as indented text: inputs, steps with their inputs and options, targets."""
    picture = _picture(plan, target)
    head = f"graph {plan.name}"
    if picture.target is not None:
        head += f", target {picture.short(picture.target)}"
    lines = [head]
    if plan.description:
        lines.append(f"  {plan.description}")
    if picture.sources:
        lines += ["", "inputs"]
        for source in picture.sources:
            if source.keyword is None:
                lines.append(f"  {picture.short(source.type)} (not produced, not a graph input)")
            else:
                lines.append(f"  {source.keyword}: {picture.short(source.type)}")
    lines += ["", "steps"]
    for step in picture.steps:
        params = ", ".join(f"{i.name}: {_typed(picture, i.type, i.kind)}" for i in step.inputs)
        lines.append(f"  {step.name}({params}) -> {picture.short(step.output)}")
        lines += [f"    {option}" for option in options_of(step)]
    targets = [t for t in plan.targets if picture.target in (None, t.type)]
    if targets:
        lines += ["", "targets"]
        for found in targets:
            levels = ", then ".join(", ".join(level) for level in found.levels)
            lines.append(f"  {picture.short(found.type)}: {levels}")
    return "\n".join(lines) + "\n"


def _typed(picture: _Picture, type_name: str, kind: InputKind) -> str:
    short = picture.short(type_name)
    if kind is InputKind.OPTIONAL:
        return f"{short} | None"
    if kind is InputKind.REPEATED:
        return f"list[{short}]"
    return short


# Mermaid --------------------------------------------------------------------------------------

_MERMAID_ARROWS = {
    InputKind.REQUIRED: "-->",
    InputKind.OPTIONAL: "-.->",
    InputKind.REPEATED: '==>|"[]"|',
}
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_]")


def mermaid(plan: GraphPlan, target: str | None = None) -> str:
    """The plan as a Mermaid flowchart (``flowchart TD``)."""
    picture = _picture(plan, target)
    ids = _ids(picture)
    lines = ["flowchart TD"]
    for source in picture.sources:
        lines.append(
            f'    {ids[source.type]}[/"{_mermaid_label(_source_lines(picture, source))}"/]'
        )
    for step in picture.steps:
        lines.append(f'    {ids[step.name]}["{_mermaid_label(_step_lines(picture, step))}"]')
    for edge in picture.edges:
        arrow = _MERMAID_ARROWS[edge.kind]
        lines.append(f"    {ids[edge.source]} {arrow} {ids[edge.step]}")
    return "\n".join(lines) + "\n"


def _ids(picture: _Picture) -> dict[str, str]:
    """Node ids: ``s_<step>`` for steps, ``in_<type>`` for graph inputs (types by full name)."""
    ids = {step.name: f"s_{step.name}" for step in picture.steps}
    shorts = [picture.short(source.type) for source in picture.sources]
    for source, short in zip(picture.sources, shorts, strict=True):
        name = short if shorts.count(short) == 1 else source.type
        ids[source.type] = "in_" + _UNSAFE_ID.sub("_", name)
    return ids


def _mermaid_label(lines: Iterable[str]) -> str:
    return "<br/>".join(_mermaid_escape(line) for line in lines)


def _mermaid_escape(value: str) -> str:
    # Mermaid's entity codes (#quot;) keep a quote, a '#' or markup inside a quoted label.
    escaped = value.replace("#", "#35;")
    for char, code in (('"', "#quot;"), ("<", "#lt;"), (">", "#gt;")):
        escaped = escaped.replace(char, code)
    return escaped


# DOT ------------------------------------------------------------------------------------------

_DOT_EDGES = {
    InputKind.REQUIRED: "",
    InputKind.OPTIONAL: " [style=dashed]",
    InputKind.REPEATED: ' [style=bold, penwidth=2, label="[]"]',
}


def dot(plan: GraphPlan, target: str | None = None) -> str:
    """The plan as a Graphviz ``digraph`` (render with ``dot -Tsvg``)."""
    picture = _picture(plan, target)
    title = plan.name if picture.target is None else f"{plan.name} → {picture.target}"
    lines = [
        f"digraph {_dot_string(plan.name)} {{",
        f"    label={_dot_string(title)};",
        "    labelloc=t;",
        "    node [shape=box, style=rounded, fontname=Helvetica, fontsize=11];",
        "    edge [fontname=Helvetica, fontsize=10];",
    ]
    for source in picture.sources:
        label = _dot_string("\n".join(_source_lines(picture, source)))
        lines.append(
            f"    {_dot_string('input:' + source.type)} [label={label}, shape=parallelogram];"
        )
    for step in picture.steps:
        label = _dot_string("\n".join(_step_lines(picture, step)))
        lines.append(f"    {_dot_string(step.name)} [label={label}];")
    for edge in picture.edges:
        tail = _dot_string(("input:" if edge.from_input else "") + edge.source)
        lines.append(f"    {tail} -> {_dot_string(edge.step)}{_DOT_EDGES[edge.kind]};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'
