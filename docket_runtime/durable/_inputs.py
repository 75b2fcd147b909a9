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
