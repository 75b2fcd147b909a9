"""Checking what a caller passes: the target class, and the graph inputs by keyword, which
are placed in an execution."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf.message import Message

from ._tables import GraphInput


def fill_inputs(
    expected: tuple[GraphInput, ...],
    keywords: frozenset[str],
    given: Mapping[str, Message | None],
    values: list[Any],
    where: str,
    *,
    items: GraphInput | None = None,
) -> None:
    """Check the graph inputs a caller passed by keyword and put each in its slot.

    The one input check of every entry point (``run``, ``run_batch``,
    ``enqueue``). Raises TypeError for a missing required input, a value of
    the wrong message type, or a keyword the target does not take; ``where``
    starts the message (``"shop.Orders: target shop.Receipt"``). ``items`` is
    the item input of a batch run, which is passed as a list, not by keyword.
    """
    for graph_input in expected:
        value = given.get(graph_input.keyword)
        if value is None:
            if graph_input.required:
                raise TypeError(
                    f"{where} needs input "
                    f"{graph_input.keyword}={graph_input.cls.DESCRIPTOR.full_name}(...)"
                )
            continue
        if type(value) is not graph_input.cls:
            raise TypeError(
                f"{where}: input {graph_input.keyword} must be "
                f"{graph_input.cls.DESCRIPTOR.full_name}, got {type(value).__qualname__}"
            )
        values[graph_input.slot] = value
    if len(given) <= len(expected) and keywords.issuperset(given):
        return
    unknown = sorted(set(given) - keywords)
    if items is not None and items.keyword in unknown:
        raise TypeError(
            f"{where.partition(':')[0]}: the items of a batch are its second argument, "
            f"not {items.keyword}= (a sequence of {items.cls.DESCRIPTOR.full_name})"
        )
    takes = ", ".join(sorted(keywords)) or ("none besides the items" if items else "none")
    raise TypeError(f"{where} takes no input {', '.join(unknown)}; it takes {takes}")


def not_a_class(entry: str, target: object, example: str) -> TypeError | None:
    """The error for a ``target`` that is not a class (a message instance, most likely), or
    ``None``; ``entry`` names the method called (``"shop.Orders.run()"``), ``example`` a
    class it takes."""
    if isinstance(target, type):
        return None
    if isinstance(target, Message):
        name = type(target).__qualname__
        return TypeError(f"{entry} takes the message class as target: pass {name}, not {name}()")
    return TypeError(f"{entry} takes the message class as target (e.g. {example}), not {target!r}")
