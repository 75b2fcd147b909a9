"""Generated code inside a package: every import of a generated module gets a prefix.

protoc and mypy-protobuf import another generated module by its proto path
(``from shop.v1 import orders_pb2``), which works only with the output folder
itself on ``sys.path``; neither has an option to change that. With
``--import-prefix myapp.gen`` docket-gen rewrites, in every ``_pb2.py``,
``_pb2.pyi`` and ``_docket.py`` it produced, exactly the import statements
whose target is a module of the same run (found with :mod:`ast`, so the
layout of the line does not matter), and the module name protoc passes to
``BuildTopDescriptorsAndMessages`` (it becomes the messages' ``__module__``).
Imports of ``google.protobuf``, ``docket_runtime`` and of protos from ``-I``
roots (generated elsewhere) are left as they are.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath

from .names import is_dotted_name


@dataclass(frozen=True)
class _Edit:
    start: int  # byte offsets into the source
    end: int
    text: str


def check_prefix(prefix: str) -> str | None:
    """Why ``prefix`` cannot be an import prefix, or None when it can."""
    if not is_dotted_name(prefix):
        return "it must be a dotted Python module name, such as myapp.gen"
    return None


def module_name(path: PurePosixPath) -> str:
    """``shop/v1/orders_pb2.pyi`` -> ``shop.v1.orders_pb2``."""
    return ".".join(path.with_suffix("").parts)


def add_prefix(source: bytes, prefix: str, generated: Iterable[str], own: str) -> bytes:
    """``source`` (the module ``own``) importing the ``generated`` modules under ``prefix``."""
    modules = frozenset(generated)
    tree = ast.parse(source)
    offsets = _line_offsets(source)
    edits: list[_Edit] = []

    def edit(node: ast.expr | ast.stmt, text: str) -> None:
        assert node.end_lineno is not None and node.end_col_offset is not None
        start = offsets[node.lineno - 1] + node.col_offset
        edits.append(_Edit(start, offsets[node.end_lineno - 1] + node.end_col_offset, text))

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            if any(t in modules for t in targets):
                names = ", ".join(_alias(a) for a in node.names)
                edit(node, f"from {prefix}.{node.module} import {names}")
        elif isinstance(node, ast.Import) and any(a.name in modules for a in node.names):
            edit(node, _import(node, prefix))
        elif isinstance(node, ast.Call) and _is_build_call(node, own):
            edit(node.args[1], repr(f"{prefix}.{own}"))
    out = source
    for e in sorted(edits, key=lambda e: e.start, reverse=True):
        out = out[: e.start] + e.text.encode() + out[e.end :]
    return out


def _import(node: ast.Import, prefix: str) -> str:
    if len(node.names) != 1:
        raise ValueError(f"cannot prefix an import of several modules: {ast.unparse(node)}")
    (alias,) = node.names
    if alias.asname:
        return f"import {prefix}.{alias.name} as {alias.asname}"
    if "." in alias.name:
        raise ValueError(f"cannot prefix a dotted import without an alias: {ast.unparse(node)}")
    # ``import orders_pb2`` binds orders_pb2; so does this.
    return f"from {prefix} import {alias.name}"


def _alias(alias: ast.alias) -> str:
    return f"{alias.name} as {alias.asname}" if alias.asname else alias.name


def _is_build_call(node: ast.Call, own: str) -> bool:
    """``_builder.BuildTopDescriptorsAndMessages(DESCRIPTOR, '<own>', _globals)``."""
    func = node.func
    return (
        isinstance(func, ast.Attribute)
        and func.attr == "BuildTopDescriptorsAndMessages"
        and len(node.args) >= 2
        and isinstance(node.args[1], ast.Constant)
        and node.args[1].value == own
    )


def _line_offsets(source: bytes) -> list[int]:
    """The byte offset of the start of each line (ast columns are UTF-8 byte offsets)."""
    offsets = [0]
    for line in source.splitlines(keepends=True):
        offsets.append(offsets[-1] + len(line))
    return offsets
