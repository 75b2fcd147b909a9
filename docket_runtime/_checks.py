"""Checks of an implementation when it is bound, beyond the methods' existence and kind.

- :func:`check_annotations`: the annotations of each step method against the
  plan, every mismatch in one :class:`~docket_runtime.errors.BindError`. A
  parameter must accept what the runtime passes (the message; the message or
  ``None`` for an optional input; a list of messages for a repeated one); the
  return type must admit the output message and not ``None``. An unannotated
  parameter, ``Any``, a base class such as ``Message``, a type variable or a
  form this check cannot judge is accepted: only a sure contradiction is
  reported.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

from google.protobuf.message import Message

from ._tables import StepTable
from .errors import BindError
from .plan import GraphPlan, InputKind

__all__ = ["check_annotations"]


# Annotations ---------------------------------------------------------------------------------


def check_annotations(
    plan: GraphPlan, tables: Sequence[StepTable], impl: object, protocol: str
) -> None:
    """Raise one BindError listing every step method annotation that contradicts the plan.

    ``protocol`` names the generated protocol the implementation should follow.
    """
    problems: list[str] = []
    for table in tables:
        step = table.step
        if step.subgraph is not None:
            continue
        method = getattr(impl, step.method)
        problems.extend(_method_problems(plan, table, method))
    if problems:
        lines = "\n".join(f"  {problem}" for problem in problems)
        raise BindError(
            f"{type(impl).__name__} does not match the steps of {plan.name}: "
            f"fix these to match {protocol} in the generated module\n{lines}"
        )


def _method_problems(plan: GraphPlan, table: StepTable, method: Callable[..., Any]) -> list[str]:
    step = table.step
    where = f"step {step.name} ({_method_name(method)})"
    try:
        signature = inspect.signature(method)
    except (TypeError, ValueError):
        return []  # a callable without a signature to read: nothing to compare
    positional = [
        p
        for p in signature.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    variadic = any(p.kind is p.VAR_POSITIONAL for p in signature.parameters.values())
    required = [p for p in positional if p.default is p.empty]
    keyword_only = [
        p
        for p in signature.parameters.values()
        if p.kind is p.KEYWORD_ONLY and p.default is p.empty
    ]
    count = len(step.inputs)
    if len(required) > count or (len(positional) < count and not variadic) or keyword_only:
        names = ", ".join(i.name for i in step.inputs) or "none"
        takes = f"{len(positional)} positional parameter(s)"
        if keyword_only:
            takes += f" and keyword-only {', '.join(p.name for p in keyword_only)}"
        return [f"{where}: takes {takes}, the step passes {count} input(s) ({names})"]
    try:
        hints = typing.get_type_hints(method)
    except Exception:  # a name only known to a type checker: nothing to compare
        return []
    problems = []
    for param, spec, kind in zip(positional, step.inputs, table.arg_kinds, strict=False):
        if param.name not in hints:
            continue
        cls = plan.types[spec.type]
        found = hints[param.name]
        if not _accepts(found, cls, kind):
            problems.append(
                f"{where}, parameter {param.name}: expected {_expected(cls, kind)}, "
                f"found {_show(found)}"
            )
    if "return" in hints and not _returns(hints["return"], table.out_cls):
        problems.append(
            f"{where}, return: expected {_show(table.out_cls)}, found {_show(hints['return'])}"
        )
    return problems


def _method_name(method: Callable[..., Any]) -> str:
    owner = getattr(method, "__self__", None)
    name = getattr(method, "__name__", repr(method))
    return f"{type(owner).__name__}.{name}" if owner is not None else name


def _expected(cls: type[Message], kind: InputKind) -> str:
    name = _show(cls)
    if kind is InputKind.OPTIONAL:
        return f"{name} | None"
    if kind is InputKind.REPEATED:
        return f"Sequence[{name}]"
    return name


def _members(annotation: Any) -> tuple[Any, ...] | None:
    """The members of a union annotation, or ``None`` for any other."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return None


def _open(annotation: Any) -> bool:
    """Whether ``annotation`` accepts anything or cannot be judged here."""
    if annotation is Any or annotation is object or isinstance(annotation, typing.TypeVar):
        return True
    return not (
        isinstance(annotation, type)
        or annotation is None
        or _members(annotation) is not None
        or isinstance(typing.get_origin(annotation), type)
    )


def _accepts(annotation: Any, cls: type[Message], kind: InputKind) -> bool:
    """Whether a parameter annotated ``annotation`` accepts what the runtime passes."""
    if _open(annotation):
        return True
    members = _members(annotation)
    if members is not None:
        if kind is InputKind.OPTIONAL:
            return type(None) in members and any(
                _accepts(m, cls, InputKind.REQUIRED) for m in members
            )
        return any(_accepts(m, cls, kind) for m in members)
    if kind is InputKind.OPTIONAL:
        return False  # one type, and None is not it (object and Any were accepted above)
    if kind is InputKind.REPEATED:
        # The runtime passes a list.
        origin = typing.get_origin(annotation) or annotation
        if not (isinstance(origin, type) and _subclass(list, origin)):
            return False
        args = typing.get_args(annotation)
        return not args or _accepts(args[0], cls, InputKind.REQUIRED)
    return isinstance(annotation, type) and _subclass(cls, annotation)


def _subclass(cls: type, annotation: type) -> bool:
    try:
        return issubclass(cls, annotation)
    except TypeError:  # a protocol that is not runtime_checkable: cannot be judged
        return True


def _returns(annotation: Any, cls: type[Message]) -> bool:
    """Whether a method annotated to return ``annotation`` may return the output message:
    not when the annotation admits ``None`` (which the runtime rejects), nor when it is a
    class unrelated to the message's (a base class such as ``Message`` is fine)."""
    if annotation is Any or isinstance(annotation, typing.TypeVar):
        return True
    if annotation is None or annotation is type(None):
        return False
    members = _members(annotation)
    if members is not None:
        return type(None) not in members and any(_returns(m, cls) for m in members)
    if isinstance(annotation, type):
        return _subclass(cls, annotation) or _subclass(annotation, cls)
    return _open(annotation)


def _show(annotation: Any) -> str:
    """An annotation as a user wrote it, with messages by their full proto name."""
    if annotation is None or annotation is type(None):
        return "None"
    if annotation is Any:
        return "Any"
    members = _members(annotation)
    if members is not None:
        return " | ".join(_show(m) for m in members)
    origin = typing.get_origin(annotation)
    if isinstance(origin, type):
        args = ", ".join(_show(a) for a in typing.get_args(annotation))
        return f"{origin.__qualname__}[{args}]" if args else origin.__qualname__
    if isinstance(annotation, type):
        descriptor = getattr(annotation, "DESCRIPTOR", None)
        full_name = getattr(descriptor, "full_name", None)
        return (
            str(full_name)
            if issubclass(annotation, Message) and full_name
            else annotation.__qualname__
        )
    return repr(annotation)
