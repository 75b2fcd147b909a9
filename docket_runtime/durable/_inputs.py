"""The stored inputs: what ``docket_executions.inputs`` holds, written at enqueue, read at resume.

JSON text with one entry per input given::

    {"order": {"type": "shop.Order", "proto": "<base64>", "json": {...}}}

``type`` is the message's full name, ``proto`` its deterministic proto bytes in
the checked envelope of :mod:`docket_runtime._payload` (encoded by the store's
codec, if one is bound), in base64: what a resume decodes. ``json`` is the
message as JSON, for SQL: left out for a message type marked sensitive; its
checksum is in the envelope, so a damaged one fails the resume as a damaged
``proto`` does.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any, cast

from google.protobuf import json_format
from google.protobuf.message import Message

from .. import Graph, _payload
from .._reuse import HIDDEN, describe_message, short
from ..codec import PayloadCodec
from ..stores import ExecutionRecord


def encode_inputs(graph: Graph[Any], target: type[Message], inputs: Mapping[str, object]) -> str:
    """The JSON text kept in ``docket_executions.inputs``, after checking ``inputs``."""
    # Any mapping (a generated TypedDict, say) until check_inputs says what it holds.
    checked = cast(Mapping[str, Message | None], inputs)
    graph.check_inputs(target, checked)
    codec = _codec(graph)
    encoded = {
        keyword: _entry(value, graph.plan.sensitive, codec)
        for keyword, value in checked.items()
        if value is not None
    }
    return json.dumps(encoded, sort_keys=True, separators=(",", ":"))


def _entry(value: Message, sensitive: tuple[str, ...], codec: PayloadCodec | None) -> Any:
    type_name = value.DESCRIPTOR.full_name
    entry: dict[str, Any] = {"type": type_name}
    rendering = None
    if type_name not in sensitive:
        rendering = json_format.MessageToDict(value, preserving_proto_field_name=True)
        entry["json"] = rendering
    sealed = _payload.write(value, json.dumps(rendering), codec)
    entry["proto"] = base64.b64encode(sealed).decode()
    return entry


def _codec(graph: Graph[Any]) -> PayloadCodec | None:
    return None if graph.store is None else graph.store.codec


def same_inputs(stored: str | None, text: str) -> bool:
    """Whether two inputs texts hold the same JSON value (as the store compares them)."""
    return stored is not None and bool(json.loads(stored) == json.loads(text))


def same_messages(graph: Graph[Any], row: ExecutionRecord, inputs: Mapping[str, object]) -> bool:
    """Whether execution ``row`` holds ``inputs`` (checked), whatever key encoded them.

    A stored entry that is damaged is not the same; one whose key the codec
    lacks raises :class:`~docket_runtime.codec.MissingKey`.
    """
    try:
        _, stored = decode_inputs(graph, row)
    except (ValueError, TypeError, KeyError):  # damaged (CorruptPayload), or not inputs at all
        return False
    given = {k: v for k, v in inputs.items() if v is not None}
    return stored == given


def describe_inputs(graph: Graph[Any], text: str | None) -> str:
    """Stored inputs as errors show them (``order=shop.Order(order_id: "o-1" ...)``).

    An input of a sensitive type, or any input when a codec is bound, shows
    as hidden: an error message must not carry what the store keeps secret.
    An input of a type ``graph`` does not know shows its JSON rendering.
    """
    if text is None:
        return "no stored inputs"
    hide = _codec(graph) is not None
    parts = []
    for keyword, entry in sorted(json.loads(text).items()):
        cls = graph.plan.types.get(entry["type"])
        if hide or entry["type"] in graph.plan.sensitive:
            shown = HIDDEN
        elif cls is None:
            shown = json.dumps(entry.get("json"), sort_keys=True)
        else:
            blob = base64.b64decode(entry["proto"])
            what = f"input {keyword!r}"
            shown = short(_payload.read(blob, cls, json.dumps(entry.get("json")), None, what))
        parts.append(f"{keyword}={describe_message(entry['type'], shown)}")
    return ", ".join(parts) or "no inputs"


def decode_inputs(
    graph: Graph[Any], row: ExecutionRecord
) -> tuple[type[Message], dict[str, Message | None]]:
    """The target and inputs of execution ``row`` of ``graph``.

    Raises ``ValueError`` (:class:`~docket_runtime.codec.CorruptPayload` for a
    damaged entry), ``TypeError``, ``KeyError`` or protobuf's ``DecodeError``
    when the row cannot be read, and :class:`~docket_runtime.codec.MissingKey`
    when an entry is encrypted under a key the store's codec lacks.
    """
    target = graph.plan.types[row.target]
    if row.inputs is None:
        raise ValueError("it was not enqueued (no inputs recorded)")
    codec = _codec(graph)
    inputs: dict[str, Message | None] = {}
    for keyword, entry in json.loads(row.inputs).items():
        cls = graph.plan.types[entry["type"]]
        blob = base64.b64decode(entry["proto"], validate=True)
        what = f"input {keyword!r} of execution {row.execution_id!r}"
        # The JSON's own text is lost in the document: its value is checked (canonical form).
        rendering = json.dumps(entry.get("json"))
        inputs[keyword] = _payload.read(blob, cls, rendering, codec, what)
    return target, inputs
