"""What the runtime writes to and reads from a store: result rows, keys, and resume pruning.

Only steps with a cache scope (or ``AT_MOST_ONCE`` delivery, which implies a
per-execution checkpoint) touch the store; everything else is recomputed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from . import _deps, _payload
from ._keyfields import input_bytes, selector
from ._tables import TargetTable
from .codec import CorruptPayload, PayloadCodec
from .plan import CacheScope, Delivery, GraphPlan, Step
from .stores.base import GlobalKeys, Payload, Scope, Store, StoredResult, workflow_key

__all__ = [
    "decode",
    "decode_payload",
    "encode",
    "input_key",
    "lookup",
    "persisted_scope",
    "prune",
    "read",
    "render",
    "step_keys",
    "workflow_key",
]

_log = logging.getLogger("docket.persistence")


def persisted_scope(step: Step) -> Scope | None:
    """The scope a step's result is kept in, or ``None`` when it is recomputed."""
    if step.cache.scope is CacheScope.GLOBAL:
        return "global"
    if step.cache.scope is CacheScope.WORKFLOW or step.delivery is Delivery.AT_MOST_ONCE:
        return "workflow"
    return None


def input_key(keys: GlobalKeys, args: Sequence[Any], codec: PayloadCodec | None) -> str:
    """The content address of a ``GLOBAL`` step's result, its inputs given as ``args``.

    ``keys`` digests the namespace (the graph's full name, or a cache namespace
    graphs share on purpose), the step's name and cache version; this adds the
    input bytes, or those of the fields the step's cache key names. An HMAC under the
    codec's cache secret when a codec is bound.
    """
    select = keys.select
    parts = [input_bytes(arg) for arg in args] if select is None else select(args)
    return keys(parts, None if codec is None else codec.cache_secret)


def step_keys(plan: GraphPlan, step: Step) -> GlobalKeys:
    """What :func:`input_key` makes ``step``'s keys with: under its cache namespace or the
    graph's name, from the fields its cache key names (read as :mod:`._keyfields` says)
    or its whole inputs."""
    classes = [plan.types[one.type] for one in step.inputs]
    return GlobalKeys(
        step.cache.namespace or plan.name,
        step.name,
        step.cache.version,
        paths=step.cache.key,
        select=selector(step, classes),
    )


def encode(
    step: Step,
    key: str,
    scope: Scope,
    execution_id: str | None,
    message: Message,
    *,
    graph: str,
    codec: PayloadCodec | None,
    now: datetime | None = None,
) -> StoredResult:
    """The row keeping ``message`` as ``step``'s result (its proto bytes in a checked
    envelope, encoded by ``codec`` when one is bound, plus queryable JSON: ``null`` for
    a sensitive step); ``graph`` is the full name of the graph writing it."""
    created = now or datetime.now(UTC)
    ttl = step.cache.ttl
    # Fields at their default value are written too: a query for amount = 0 or
    # approved = false must find the row, not a missing key (proto3 JSON omits them).
    rendering = "null" if step.sensitive else render(message)
    return StoredResult(
        key=key,
        scope=scope,
        execution_id=execution_id if scope == "workflow" else None,
        step=step.name,
        version=step.cache.version,
        output_type=message.DESCRIPTOR.full_name,
        output=_payload.write(message, rendering, codec),
        output_json=rendering,
        created_at=created,
        expires_at=None if ttl is None else created + timedelta(seconds=ttl),
        graph=graph,
    )


def render(message: Message) -> str:
    """The JSON text of ``message`` kept in ``docket_results.output_json``."""
    return _payload.render(
        json_format.MessageToDict(
            message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
    )


def decode(row: StoredResult, cls: type[Message], codec: PayloadCodec | None) -> Message | None:
    """The message a row holds, or ``None`` (logged) when it cannot be trusted.

    A row of another message type, or whose payload is damaged (checksum,
    envelope, bytes that disagree with the JSON column), is a miss: the step
    runs again and its new result replaces the row. A row encrypted under a key
    ``codec`` lacks raises :class:`~docket_runtime.codec.MissingKey`: it is
    not a miss, and must not be overwritten.
    """
    payload = (row.output_type, row.output, row.output_json)
    return decode_payload(payload, row.key, row.step, cls, codec)


def decode_payload(
    payload: Payload, key: str, step: str, cls: type[Message], codec: PayloadCodec | None
) -> Message | None:
    """:func:`decode` of the ``payload`` a cache hit read (:meth:`Store.get_payload`) of the
    row under ``key``, a result of ``step``."""
    output_type, output, output_json = payload
    expected = cls.DESCRIPTOR.full_name
    if output_type != expected:
        _log.warning(
            "ignoring cached result %s of step %s: it holds %s, the step returns %s",
            key[:12],
            step,
            output_type,
            expected,
        )
        return None
    try:
        return _payload.read(output, cls, output_json, codec, _what(key, step))
    except CorruptPayload as exc:
        _log.warning("ignoring a damaged cached result: %s", exc)
        return None


async def lookup(store: Store, key: str, step: str, cls: type[Message]) -> Message | None:
    """The message of ``cls`` kept under ``key`` by ``step``: ``None`` when there is none,
    it expired, or it cannot be trusted (see :func:`decode`)."""
    payload = await store.get_payload(key)
    return None if payload is None else decode_payload(payload, key, step, cls, store.codec)


def read(row: StoredResult, cls: type[Message], codec: PayloadCodec | None) -> Message:
    """The message of ``cls`` a row holds, checked; :class:`~docket_runtime.codec.CorruptPayload`
    or :class:`~docket_runtime.codec.MissingKey` when it cannot be read."""
    return _payload.read(row.output, cls, row.output_json, codec, _what(row.key, row.step))


def _what(key: str, step: str) -> str:
    return f"result {key[:12]} of step {step}"


def prune(target: TargetTable, known: set[int]) -> TargetTable:
    """``target`` without the steps that are not needed once the positions ``known`` have values
    (see :func:`~docket_runtime._deps.still_needed`). Only called on resume, when checkpoints
    were found.
    """
    needs = _deps.reverse(dict(enumerate(target.dependents)))
    order = _deps.still_needed(needs, range(len(target.steps)), known)
    schedule = _deps.schedule(needs, order)
    return TargetTable(
        type_name=target.type_name,
        slot=target.slot,
        steps=tuple(target.steps[old] for old in order),
        dep_counts=schedule.dep_counts,
        dependents=schedule.dependents,
        roots=schedule.roots,
        tolerable=tuple(target.tolerable[old] for old in order),
        chain=schedule.chain,
        inputs=target.inputs,
        keywords=target.keywords,
        where=target.where,
    )
