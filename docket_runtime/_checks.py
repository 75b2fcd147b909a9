"""Checks of an implementation when it is bound, beyond the methods' existence and kind.

- :func:`check_annotations`: the annotations of each step method against the
  plan, every mismatch in one :class:`~docket_runtime.errors.BindError`. A
  parameter must accept what the runtime passes (the message; the message or
  ``None`` for an optional input; a list of messages for a repeated one); the
  return type must admit the output message and not ``None``. An unannotated
  parameter, ``Any``, a base class such as ``Message``, a type variable or a
  form this check cannot judge is accepted: only a sure contradiction is
  reported.
- :func:`unknown_error_names`: the ``non_retryable_errors`` names that match
  no exception class the implementation can see, which would never stop a
  retry (a typo, most likely).
"""

from __future__ import annotations

import builtins
import importlib
import inspect
import sys
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from google.protobuf.message import Message

from ._tables import StepTable
from .errors import BindError
from .plan import Delivery, GraphPlan, InputKind, RetryPolicy

__all__ = ["check_annotations", "unknown_error_names"]


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


# non_retryable_errors names -----------------------------------------------------------------


def unknown_error_names(
    plan: GraphPlan, impl: object, default_retry: RetryPolicy | None
) -> tuple[list[str], list[str]]:
    """The ``non_retryable_errors`` names of the graph's retry policies that match no
    exception class reachable from the implementation, grouped by where they are set
    (``"'X', 'Y' (step S)"``, ``"'Z' (default_retry)"``), and the modules searched.

    Reachable: the builtins; the modules of the implementation's class and step methods,
    their globals that are exception classes (with their bases and nested classes) or
    modules (with theirs); and a dotted ``module.Qualname`` that imports.
    """
    wanted: dict[str, list[str]] = {}
    for step in plan.steps:
        if step.delivery is Delivery.AT_MOST_ONCE:
            continue  # never retried: its names do not matter
        policy = step.retry or default_retry
        if policy is None or not policy.non_retryable_errors:
            continue
        where = f"step {step.name}" if step.retry is not None else "default_retry"
        for name in policy.non_retryable_errors:
            places = wanted.setdefault(name, [])
            if where not in places:
                places.append(where)
    if not wanted:
        return [], []
    modules = _impl_modules(plan, impl)
    known = _names(_reachable(modules))
    unknown: dict[str, list[str]] = {}
    for name, places in wanted.items():
        if name not in known and not _imports(name):
            for place in places:
                unknown.setdefault(place, []).append(repr(name))
    listed = [f"{', '.join(names)} ({place})" for place, names in unknown.items()]
    return listed, [m.__name__ for m in modules]


def _impl_modules(plan: GraphPlan, impl: object) -> list[types.ModuleType]:
    names = [type(impl).__module__]
    for step in plan.steps:
        method = getattr(impl, step.method, None)
        function = getattr(method, "__func__", method)
        module = getattr(function, "__module__", None)
        if isinstance(module, str):
            names.append(module)
    found: dict[str, types.ModuleType] = {}
    for name in names:
        module = sys.modules.get(name)
        if module is not None and name not in found and name != "builtins":
            found[name] = module
    return list(found.values())


def _reachable(modules: Sequence[types.ModuleType]) -> Iterator[type[BaseException]]:
    yield from _exceptions(vars(builtins))
    for module in modules:
        space = vars(module)
        yield from _exceptions(space)
        for value in list(space.values()):
            if isinstance(value, types.ModuleType):
                yield from _exceptions(vars(value))
            elif isinstance(value, type):
                yield from _exceptions(vars(value))  # nested classes


def _exceptions(space: Mapping[str, Any]) -> Iterator[type[BaseException]]:
    for value in list(space.values()):
        if isinstance(value, type) and issubclass(value, BaseException):
            yield from (c for c in value.__mro__ if issubclass(c, BaseException))


def _names(classes: Iterator[type[BaseException]]) -> set[str]:
    """Every name ``retry.is_listed`` matches these classes by."""
    names: set[str] = set()
    for cls in classes:
        names.update((cls.__name__, cls.__qualname__, f"{cls.__module__}.{cls.__qualname__}"))
    return names


def _imports(name: str) -> bool:
    """Whether ``name`` is ``module.Qualname`` of an exception class that imports."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            value: Any = importlib.import_module(".".join(parts[:cut]))
        except Exception:  # not a module (or one that fails to import): try a shorter one
            continue
        for part in parts[cut:]:
            value = getattr(value, part, None)
        return isinstance(value, type) and issubclass(value, BaseException)
    return False
