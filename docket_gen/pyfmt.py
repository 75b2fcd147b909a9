"""Python source for nested literals, laid out the way ruff format lays them out.

A node is printed on one line when it fits in the line width; otherwise it is
exploded one item per line with a trailing comma, which ruff keeps as is. So
the generated modules are stable under ``ruff format`` without running it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

WIDTH = 88
INDENT = "    "


@dataclass(frozen=True)
class Raw:
    """Source text used verbatim (a name, a number)."""

    text: str


@dataclass(frozen=True)
class Call:
    """``func(arg, ..., key=value, ...)``."""

    func: str
    args: Sequence[Node] = ()
    kwargs: Sequence[tuple[str, Node]] = ()


@dataclass(frozen=True)
class Tuple:
    """``(a, b)``; one item prints as ``(a,)``."""

    items: Sequence[Node]


@dataclass(frozen=True)
class Dict:
    """``{key: value, ...}``."""

    items: Sequence[tuple[Node, Node]]


Node = Raw | Call | Tuple | Dict


def string(text: str) -> Raw:
    """A double-quoted string literal."""
    return Raw(json.dumps(text, ensure_ascii=False))


def flat(node: Node) -> str:
    """``node`` on one line."""
    if isinstance(node, Raw):
        return node.text
    if isinstance(node, Call):
        parts = [flat(a) for a in node.args] + [f"{k}={flat(v)}" for k, v in node.kwargs]
        return f"{node.func}({', '.join(parts)})"
    if isinstance(node, Tuple):
        if len(node.items) == 1:
            return f"({flat(node.items[0])},)"
        return f"({', '.join(flat(i) for i in node.items)})"
    return "{" + ", ".join(f"{flat(k)}: {flat(v)}" for k, v in node.items) + "}"


def render(node: Node, depth: int = 0, prefix: str = "", suffix: str = "") -> str:
    """``prefix + node + suffix`` indented ``depth`` levels, exploded where it does not fit."""
    indent = INDENT * depth
    one_line = f"{indent}{prefix}{flat(node)}{suffix}"
    if len(one_line) <= WIDTH or isinstance(node, Raw) or not _items(node):
        return one_line
    opener, closer = _brackets(node)
    lines = [f"{indent}{prefix}{opener}"]
    for item_prefix, item in _items(node):
        lines.append(render(item, depth + 1, item_prefix, ","))
    lines.append(f"{indent}{closer}{suffix}")
    return "\n".join(lines)


def signature(head: str, params: Sequence[str], tail: str, depth: int = 0) -> str:
    """A ``def`` line: ``head(params)tail`` on one line, or one parameter per line."""
    indent = INDENT * depth
    one_line = f"{indent}{head}({', '.join(params)}){tail}"
    if len(one_line) <= WIDTH:
        return one_line
    inner = INDENT * (depth + 1)
    return "\n".join([f"{indent}{head}(", *(f"{inner}{p}," for p in params), f"{indent}){tail}"])


def _brackets(node: Node) -> tuple[str, str]:
    if isinstance(node, Call):
        return f"{node.func}(", ")"
    if isinstance(node, Tuple):
        return "(", ")"
    return "{", "}"


def _items(node: Node) -> list[tuple[str, Node]]:
    if isinstance(node, Call):
        return [("", a) for a in node.args] + [(f"{k}=", v) for k, v in node.kwargs]
    if isinstance(node, Tuple):
        return [("", i) for i in node.items]
    if isinstance(node, Dict):
        return [(f"{flat(k)}: ", v) for k, v in node.items]
    return []
