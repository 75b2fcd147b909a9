"""Checking the graph inputs a caller passes by keyword, and placing them in an execution."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf.message import Message

from .tables import GraphInput


def fill_inputs(
    expected: tuple[GraphInput, ...],
    keywords: frozenset[str],
    given: Mapping[str, Message | None],
    values: list[Any],
    where: str,
) -> list[str]:
    """Put each given input in its slot; returns the keywords given that are not expected.

    Raises TypeError for a missing required input or a value of the wrong
    message type; ``where`` starts the message (``"shop.Orders: target shop.Receipt"``).
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
        return []
    return sorted(set(given) - keywords)
