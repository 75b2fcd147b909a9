"""The stored inputs: what ``docket_executions.inputs`` holds, written at enqueue, read at resume.

JSON text with one entry per input given::

    {"order": {"type": "shop.Order", "proto": "<base64>", "json": {...}}}

``type`` is the message's full name, ``proto`` its deterministic proto bytes
in base64 (what a resume decodes), ``json`` the message as JSON (for SQL; never
read back).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any, cast

from google.protobuf import json_format
from google.protobuf.message import Message

from .. import Graph
from .._reuse import describe_message, short
from ..stores import ExecutionRecord


def encode_inputs(graph: Graph[Any], target: type[Message], inputs: Mapping[str, object]) -> str:
    """The JSON text kept in ``docket_executions.inputs``, after checking ``inputs``."""
    # Any mapping (a generated TypedDict, say) until check_inputs says what it holds.
    checked = cast(Mapping[str, Message | None], inputs)
    graph.check_inputs(target, checked)
    encoded = {
        keyword: {
            "type": value.DESCRIPTOR.full_name,
            "proto": base64.b64encode(value.SerializeToString(deterministic=True)).decode(),
            "json": json_format.MessageToDict(value, preserving_proto_field_name=True),
        }
        for keyword, value in checked.items()
        if value is not None
    }
    return json.dumps(encoded, sort_keys=True, separators=(",", ":"))


def same_inputs(stored: str | None, text: str) -> bool:
    """Whether two inputs texts hold the same JSON value (as the store compares them)."""
    return stored is not None and bool(json.loads(stored) == json.loads(text))


def describe_inputs(graph: Graph[Any], text: str | None) -> str:
    """Stored inputs as errors show them (``order=shop.Order(order_id: "o-1" ...)``); an
    input of a type ``graph`` does not know shows its JSON rendering."""
    if text is None:
        return "no stored inputs"
    parts = []
    for keyword, entry in sorted(json.loads(text).items()):
        cls = graph.plan.types.get(entry["type"])
        if cls is None:
            shown = json.dumps(entry["json"], sort_keys=True)
        else:
            shown = short(cls.FromString(base64.b64decode(entry["proto"])))
        parts.append(f"{keyword}={describe_message(entry['type'], shown)}")
    return ", ".join(parts) or "no inputs"


def decode_inputs(
    graph: Graph[Any], row: ExecutionRecord
) -> tuple[type[Message], dict[str, Message | None]]:
    """The target and inputs of execution ``row`` of ``graph``.

    Raises ``ValueError``, ``TypeError``, ``KeyError`` or protobuf's
    ``DecodeError`` when the row cannot be read.
    """
    target = graph.plan.types[row.target]
    if row.inputs is None:
        raise ValueError("it was not enqueued (no inputs recorded)")
    inputs: dict[str, Message | None] = {}
    for keyword, entry in json.loads(row.inputs).items():
        cls = graph.plan.types[entry["type"]]
        inputs[keyword] = cls.FromString(base64.b64decode(entry["proto"]))
    return target, inputs
