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


@dataclass(slots=True)
class Raw:
    """Source text used verbatim (a name, a number)."""

    text: str


@dataclass(slots=True)
class Call:
    """``func(arg, ..., key=value, ...)``."""

    func: str
    args: Sequence[Node] = ()
    kwargs: Sequence[tuple[str, Node]] = ()


@dataclass(slots=True)
class Tuple:
    """``(a, b)``; one item prints as ``(a,)``."""

    items: Sequence[Node]


@dataclass(slots=True)
class Dict:
    """``{key: value, ...}``."""

    items: Sequence[tuple[Node, Node]]


Node = Raw | Call | Tuple | Dict


def string(text: str) -> Raw:
    """A double-quoted string literal."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return Raw(f'"{text}"')  # nothing to escape: most names, and far cheaper than json
    return Raw(json.dumps(text, ensure_ascii=False))


def flat(node: Node) -> str:
    """``node`` on one line."""
    return _lay_out(node)[0]


def render(node: Node, depth: int = 0, prefix: str = "", suffix: str = "") -> str:
    """``prefix + node + suffix`` indented ``depth`` levels, exploded where it does not fit."""
    lines: list[str] = []
    _emit(_lay_out(node), depth, prefix, suffix, lines)
    return "\n".join(lines)


# A node laid out: its one-line text, then for exploding it its opener, closer and items
# (prefix, laid out item). Computed once for the whole tree: flattening each subtree again
# at every level where it was tried made a plan's rendering quadratic in its depth.
_Laid = tuple[str, str, str, tuple[tuple[str, "_Laid"], ...]]


def _lay_out(node: Node) -> _Laid:
    if type(node) is Raw:
        return (node.text, "", "", ())
    if isinstance(node, Call):
        items = [("", _lay_out(a)) for a in node.args]
        items += [(f"{k}=", _lay_out(v)) for k, v in node.kwargs]
        opener, closer = f"{node.func}(", ")"
        inner = ", ".join(p + laid[0] for p, laid in items)
    elif isinstance(node, Tuple):
        items = [("", _lay_out(i)) for i in node.items]
        opener, closer = "(", ")"
        inner = items[0][1][0] + "," if len(items) == 1 else ", ".join(i[0] for _, i in items)
    else:
        assert isinstance(node, Dict)
        items = [(f"{_lay_out(k)[0]}: ", _lay_out(v)) for k, v in node.items]
        opener, closer = "{", "}"
        inner = ", ".join(p + laid[0] for p, laid in items)
    return (opener + inner + closer, opener, closer, tuple(items))


def _emit(laid: _Laid, depth: int, prefix: str, suffix: str, lines: list[str]) -> None:
    flat, opener, closer, items = laid
    indent = INDENT * depth
    one_line = f"{indent}{prefix}{flat}{suffix}"
    if len(one_line) <= WIDTH or not items:
        lines.append(one_line)
        return
    lines.append(f"{indent}{prefix}{opener}")
    for item_prefix, item in items:
        _emit(item, depth + 1, item_prefix, ",", lines)
    lines.append(f"{indent}{closer}{suffix}")


def signature(head: str, params: Sequence[str], tail: str, depth: int = 0) -> str:
    """A ``def`` line: ``head(params)tail`` on one line, or one parameter per line."""
    indent = INDENT * depth
    one_line = f"{indent}{head}({', '.join(params)}){tail}"
    if len(one_line) <= WIDTH:
        return one_line
    inner = INDENT * (depth + 1)
    return "\n".join([f"{indent}{head}(", *(f"{inner}{p}," for p in params), f"{indent}){tail}"])
