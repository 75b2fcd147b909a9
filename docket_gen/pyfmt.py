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
    if text.isprintable() and '"' not in text and "\\" not in text:
        return Raw(f'"{text}"')  # nothing to escape: most names, and far cheaper than json
    return Raw(json.dumps(text, ensure_ascii=False))


def flat(node: Node) -> str:
    """``node`` on one line."""
    return _lay_out(node).flat


def render(node: Node, depth: int = 0, prefix: str = "", suffix: str = "") -> str:
    """``prefix + node + suffix`` indented ``depth`` levels, exploded where it does not fit."""
    lines: list[str] = []
    _emit(_lay_out(node), depth, prefix, suffix, lines)
    return "\n".join(lines)


@dataclass(frozen=True)
class _Laid:
    """A node with its one-line text, computed once for the whole tree.

    Flattening each subtree again at every level where it is tried made a plan's
    rendering quadratic in its depth (most of the generator's time on large plans).
    """

    flat: str
    opener: str = ""
    closer: str = ""
    items: tuple[tuple[str, _Laid], ...] = ()


def _lay_out(node: Node) -> _Laid:
    if isinstance(node, Raw):
        return _Laid(node.text)
    if isinstance(node, Call):
        items = [("", _lay_out(a)) for a in node.args]
        items += [(f"{k}=", _lay_out(v)) for k, v in node.kwargs]
        opener, closer = f"{node.func}(", ")"
        inner = ", ".join(p + laid.flat for p, laid in items)
    elif isinstance(node, Tuple):
        items = [("", _lay_out(i)) for i in node.items]
        opener, closer = "(", ")"
        inner = items[0][1].flat + "," if len(items) == 1 else ", ".join(i.flat for _, i in items)
    else:
        items = [(f"{_lay_out(k).flat}: ", _lay_out(v)) for k, v in node.items]
        opener, closer = "{", "}"
        inner = ", ".join(p + laid.flat for p, laid in items)
    return _Laid(opener + inner + closer, opener, closer, tuple(items))


def _emit(laid: _Laid, depth: int, prefix: str, suffix: str, lines: list[str]) -> None:
    indent = INDENT * depth
    one_line = f"{indent}{prefix}{laid.flat}{suffix}"
    if len(one_line) <= WIDTH or not laid.items:
        lines.append(one_line)
        return
    lines.append(f"{indent}{prefix}{laid.opener}")
    for item_prefix, item in laid.items:
        _emit(item, depth + 1, item_prefix, ",", lines)
    lines.append(f"{indent}{laid.closer}{suffix}")


def signature(head: str, params: Sequence[str], tail: str, depth: int = 0) -> str:
    """A ``def`` line: ``head(params)tail`` on one line, or one parameter per line."""
    indent = INDENT * depth
    one_line = f"{indent}{head}({', '.join(params)}){tail}"
    if len(one_line) <= WIDTH:
        return one_line
    inner = INDENT * (depth + 1)
    return "\n".join([f"{indent}{head}(", *(f"{inner}{p}," for p in params), f"{indent}){tail}"])
