"""Checks ``(docket.step).cache.key``: the fields of a step's input its GLOBAL key is made of.

A path names fields of the step's input joined by dots (``chunk.text``); for a
step whose input is a bundle, its first name is the bundle's field naming the
input. The plan carries each path rooted at the step's parameter: its first
name is always the input's keyword (:class:`~docket_runtime.plan.Input` ``name``),
so that the runtime needs no knowledge of bundles.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from google.protobuf import descriptor_pb2

from docket_runtime.plan import CacheScope, Input

from .names import python_name

if TYPE_CHECKING:
    from .reader import Request

__all__ = ["read_key"]

_F = descriptor_pb2.FieldDescriptorProto
_EXAMPLE = 'write field names joined by dots, e.g. "text" or "chunk.text"'


def read_key(
    index: Request,
    input_type: str,
    inputs: Sequence[Input],
    paths: Sequence[str],
    scope: CacheScope,
    error: Callable[[str], None],
) -> tuple[str, ...]:
    """The plan's form of ``paths`` (the option as written); each problem goes to ``error``."""
    if not paths:
        return ()
    if scope is not CacheScope.GLOBAL:
        error(
            f"only GLOBAL keys are made from the input, and the scope is {scope.name}; "
            "set scope to GLOBAL or remove the key"
        )
        return ()
    bundle = index.messages[input_type].bundle
    planned: list[str] = []
    seen: set[str] = set()
    for path in paths:
        names = path.split(".")
        if "" in names or any(c.isspace() for c in path):
            error(f"{path!r} is not a field path: {_EXAMPLE}")
        elif path in seen:
            error(f"{path!r} is listed twice; list each path once")
        elif not inputs:
            error(f"{path!r}: the step takes no input, so there is no field to key on")
        elif _check_path(index, input_type, path, names, error):
            seen.add(path)
            rooted = [python_name(names[0]), *names[1:]] if bundle else [inputs[0].name, *names]
            planned.append(".".join(rooted))
    return tuple(planned)


def _check_path(
    index: Request, message: str, path: str, names: Sequence[str], error: Callable[[str], None]
) -> bool:
    for position, name in enumerate(names):
        fields = index.message_protos[message].field
        field = next((f for f in fields if f.name == name), None)
        if field is None:
            known = ", ".join(f.name for f in fields) or "none"
            error(f"{path!r}: {message} has no field {name!r} (fields: {known})")
            return False
        target = field.type_name.lstrip(".")
        is_message = field.type == _F.TYPE_MESSAGE
        is_map = is_message and index.message_protos[target].options.map_entry
        if position < len(names) - 1:
            kind = _not_traversable(field, is_message, is_map)
            if kind is not None:
                error(
                    f"{path!r}: field {name} of {message} is {kind}, so the path cannot go "
                    "through it; a path goes through singular message fields only"
                )
                return False
            message = target
            continue
        found = f"{message}.{name}" if is_map else None
        if found is None and is_message:
            found = _map_within(index, target, set())
        if found is not None:
            error(
                f"{path!r}: the selected value holds map field {found}; the serialization "
                "order of a map is not deterministic across implementations, so it cannot "
                "make a cache key: key on other fields"
            )
            return False
    return True


def _not_traversable(
    field: descriptor_pb2.FieldDescriptorProto, is_message: bool, is_map: bool
) -> str | None:
    """What keeps a path from going through ``field``, or ``None`` when it can."""
    if is_map:
        return "a map"
    if field.label == _F.LABEL_REPEATED:
        return "repeated"
    return None if is_message else "not a message"


def _map_within(index: Request, message: str, seen: set[str]) -> str | None:
    """The full name of a map field anywhere within ``message``, or ``None``."""
    if message in seen:
        return None
    seen.add(message)
    for field in index.message_protos[message].field:
        if field.type != _F.TYPE_MESSAGE:
            continue
        target = field.type_name.lstrip(".")
        if index.message_protos[target].options.map_entry:
            return f"{message}.{field.name}"
        found = _map_within(index, target, seen)
        if found is not None:
            return found
    return None
