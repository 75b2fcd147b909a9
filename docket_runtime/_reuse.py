"""An execution id used again with other inputs: what a run was given, kept, and the refusal.

A run under a caller's id reads the checkpoints kept under that id: computed
from the inputs of the run that wrote them. Run with other inputs, it would
return results of the first inputs. So a run that may read checkpoints keeps,
at its first run, what it was given: one ``workflow`` row of the execution in
``docket_results``, step :data:`INPUTS_STEP`, whose JSON holds per graph input
its message type, the SHA-256 of its deterministic bytes and a short text
rendering (``null`` for an optional input not given). A later run compares the
inputs both runs take; a difference is a ``ValueError`` naming both, unless
the caller asked to resume (``resume=True``). An input that the first run's
target did not take is added to the row. Enqueueing compares the stored
inputs itself (:func:`docket_runtime.durable.enqueue`) and refuses with the
same message (:func:`reused_id`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from google.protobuf import text_format
from google.protobuf.message import Message

from ._tables import GraphInput
from .stores.base import Store, StoredResult, workflow_key

__all__ = [
    "HIDDEN",
    "INPUTS_STEP",
    "Given",
    "Input",
    "Secrecy",
    "describe_message",
    "given",
    "given_items",
    "inputs_key",
    "keep_inputs",
    "reused_id",
    "secrecy",
    "settle_inputs",
    "short",
]

INPUTS_STEP: Final = "docket.inputs"
"""The step name of the row keeping an execution's inputs (no proto step can have a dot)."""

_INPUTS_TYPE: Final = "docket.Inputs"
_SHORT: Final = 60
"""Characters of a message's text rendering kept and shown."""

HIDDEN: Final = "hidden"
"""What is kept and shown instead of an input's text when it is secret."""


@dataclass(frozen=True, slots=True)
class Secrecy:
    """What the inputs row must not reveal: with a codec bound (``secret``: its
    ``cache_secret``), digests are HMACs under it and no input is rendered; the
    message types in ``sensitive`` are never rendered. ``by`` says what the digests
    are made by: ``""`` (plain SHA-256) or ``hmac:`` and a short fingerprint of the
    secret, so that digests made otherwise are not compared."""

    secret: bytes | None = None
    sensitive: frozenset[str] = frozenset()
    by: str = ""

    def digest(self) -> Any:
        """A new digest object: SHA-256, or its HMAC under the secret."""
        if self.secret is None:
            return hashlib.sha256()
        return hmac.new(self.secret, digestmod=hashlib.sha256)

    def hides(self, type_name: str) -> bool:
        """Whether an input of ``type_name`` is kept and shown without its text."""
        return self.secret is not None or type_name in self.sensitive


def secrecy(store: Store, sensitive: Sequence[str]) -> Secrecy:
    """The secrecy of the inputs row in ``store``, for a graph with these ``sensitive`` types."""
    codec = store.codec
    if codec is None:
        return Secrecy(None, frozenset(sensitive))
    secret = codec.cache_secret
    mark = hmac.new(secret, INPUTS_STEP.encode(), hashlib.sha256).hexdigest()
    return Secrecy(secret, frozenset(sensitive), f"hmac:{mark[:8]}")


@dataclass(frozen=True, slots=True)
class Input:
    """One graph input as kept: its message type and the SHA-256 of its deterministic bytes;
    its text rendering as kept (``text``), or made from ``message`` when needed."""

    type: str
    sha256: str
    text: str | None = None
    message: Message | None = None
    by: str = ""

    def shown(self) -> str:
        """Its text rendering, cut at 60 characters."""
        if self.text is not None:
            return self.text
        return "" if self.message is None else short(self.message)

    def kept(self) -> dict[str, str]:
        """What the row keeps of it."""
        kept = {"type": self.type, "sha256": self.sha256, "text": self.shown()}
        return kept | {"by": self.by} if self.by else kept


Given = dict[str, Input | None]
"""Per input keyword: the input, or ``None`` when not given."""


def short(message: Message) -> str:
    """``message`` as one line of text format, cut at 60 characters."""
    text = text_format.MessageToString(message, as_one_line=True)
    return text if len(text) <= _SHORT else text[: _SHORT - 3] + "..."


def given(inputs: Sequence[GraphInput], values: Sequence[Any], secrecy: Secrecy) -> Given:
    """What a run was given, for the graph inputs ``inputs`` of its target (rendered as text
    only if it is kept or shown, and not hidden by ``secrecy``)."""
    found: Given = {}
    for graph_input in inputs:
        value = values[graph_input.slot]
        if value is None:
            found[graph_input.keyword] = None
            continue
        digest = secrecy.digest()
        digest.update(value.SerializeToString(deterministic=True))
        type_name = value.DESCRIPTOR.full_name
        if secrecy.hides(type_name):
            found[graph_input.keyword] = Input(
                type_name, digest.hexdigest(), text=HIDDEN, by=secrecy.by
            )
        else:
            found[graph_input.keyword] = Input(
                type_name, digest.hexdigest(), message=value, by=secrecy.by
            )
    return found


def given_items(keyword: str, items: Sequence[Message], secrecy: Secrecy) -> Given:
    """What a batch run was given as its items, under the items' keyword: one digest of all."""
    digest = secrecy.digest()
    for item in items:
        data = item.SerializeToString(deterministic=True)
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    text = ""
    if items:
        type_name = items[0].DESCRIPTOR.full_name
        first = HIDDEN if secrecy.hides(type_name) else short(items[0])
        text = f"of {type_name}, the first {first}"
    return {keyword: Input(f"{len(items)} items", digest.hexdigest(), text=text, by=secrecy.by)}


async def keep_inputs(
    store: Store, execution_id: str, graph: str, now_given: Given, *, resume: bool, where: str
) -> None:
    """Compare ``now_given`` with the inputs kept under ``execution_id`` and keep them
    (:func:`settle_inputs`), in a query of its own (a batch run's, once per batch)."""
    key = inputs_key(execution_id)
    row = (await store.get_results((key,))).get(key)
    write = settle_inputs(execution_id, graph, now_given, row, resume=resume, where=where)
    if write is not None:
        await store.put_result(write)


def inputs_key(execution_id: str) -> str:
    """The ``docket_results`` key of the row keeping the inputs of ``execution_id``."""
    return workflow_key(execution_id, INPUTS_STEP)


def settle_inputs(
    execution_id: str,
    graph: str,
    now_given: Given,
    row: StoredResult | None,
    *,
    resume: bool,
    where: str,
) -> StoredResult | None:
    """Compare ``now_given`` with the inputs kept in ``row``; return the row to write, if any.

    Raises the :func:`reused_id` ``ValueError`` when an input both runs take
    differs, unless ``resume``. The row to write is a new one (none was kept),
    or the kept one with the inputs it lacked.
    """
    if row is None:
        return _row(execution_id, graph, now_given)
    kept: Given = {
        keyword: None
        if entry is None
        else Input(entry["type"], entry["sha256"], entry["text"], by=entry.get("by", ""))
        for keyword, entry in json.loads(row.output_json).items()
    }
    differ = [k for k in now_given if k in kept and not _same(kept[k], now_given[k])]
    if differ and not resume:
        raise reused_id(
            execution_id,
            _describe({k: kept[k] for k in differ}),
            _describe({k: now_given[k] for k in differ}),
            where,
            "pass resume=True to continue it from its checkpoints anyway",
        )
    added = {k: v for k, v in now_given.items() if k not in kept}
    return _row(execution_id, graph, {**kept, **added}) if added else None


def reused_id(
    execution_id: str, stored: str, now: str, where: str, resume: str | None = None
) -> ValueError:
    """The error of an execution id already used with other inputs (``stored``, ``now``:
    their renderings); ``resume`` says how to continue the stored execution anyway."""
    anyway = "" if resume is None else f", or {resume}"
    return ValueError(
        f"{where}: execution id {execution_id!r} was used with other inputs: "
        f"stored {stored}; given {now}. Use a new id{anyway}"
    )


def describe_message(type_name: str, text: str) -> str:
    """One input as errors show it: ``shop.Order(order_id: "o-1" ...)``."""
    return f"{type_name}({text})"


def _describe(entries: Mapping[str, Input | None]) -> str:
    parts = []
    for keyword, entry in entries.items():
        shown = "None" if entry is None else describe_message(entry.type, entry.shown())
        parts.append(f"{keyword}={shown}")
    return ", ".join(parts)


def _same(a: Input | None, b: Input | None) -> bool:
    if a is None or b is None:
        return a is b
    if a.by != b.by:
        # Digested under another codec secret, or without one: they cannot be compared; the
        # checkpoints' own reading (a missing key) says what is wrong, if anything is.
        return True
    return (a.type, a.sha256) == (b.type, b.sha256)


def _row(execution_id: str, graph: str, inputs: Given) -> StoredResult:
    kept = {k: None if v is None else v.kept() for k, v in inputs.items()}
    text = json.dumps(kept, sort_keys=True, separators=(",", ":"))
    return StoredResult(
        key=inputs_key(execution_id),
        scope="workflow",
        execution_id=execution_id,
        step=INPUTS_STEP,
        version="",
        output_type=_INPUTS_TYPE,
        output=text.encode(),
        output_json=text,
        created_at=datetime.now(UTC),
        graph=graph,
    )
