"""The bytes of the fields a ``GLOBAL`` key is made of (``(docket.step).cache.key``).

Everything that depends on the plan (which input, which fields, how each value
is encoded) is resolved once, when the graph is bound: a key then costs the
attribute reads of each path and the encoding of the values.

Encodings, each stable across processes and protobuf implementations:

- a message: its deterministic serialization (``SerializeToString(deterministic=True)``);
- ``string``: UTF-8; ``bytes``: as is; ``bool``: one byte, 1 or 0;
- integers and enums: the decimal digits of the number;
- ``float`` and ``double``: the 8 bytes of the value as a big-endian IEEE double;
- a repeated field: each element's encoding, prefixed with its 8-byte length.

A field with presence (a message, or an ``optional`` scalar) that is not set,
and a path through an absent optional input or an unset message, give ``None``,
which differs from any set value (an empty message included). The paths
themselves are digested in the key's prefix (see
:class:`~docket_runtime.stores.base.GlobalKeys`), in order, so each part is tagged
by its position.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Callable, Sequence
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from .plan import Step

__all__ = ["Selector", "input_bytes", "selector"]

Selector = Callable[[Sequence[Any]], list[bytes | None]]
"""The key parts of a step's arguments (its inputs in parameter order), one per path."""

_Encode = Callable[[Any], bytes]
_Part = Callable[[Sequence[Any]], bytes | None]
_FD = FieldDescriptor
_INTEGERS = frozenset(
    {
        _FD.TYPE_INT32,
        _FD.TYPE_INT64,
        _FD.TYPE_UINT32,
        _FD.TYPE_UINT64,
        _FD.TYPE_SINT32,
        _FD.TYPE_SINT64,
        _FD.TYPE_FIXED32,
        _FD.TYPE_FIXED64,
        _FD.TYPE_SFIXED32,
        _FD.TYPE_SFIXED64,
        _FD.TYPE_ENUM,
    }
)
_DOUBLE = struct.Struct(">d")


def selector(step: Step, classes: Sequence[type[Message]]) -> Selector | None:
    """How ``step``'s key parts are read from its arguments, ``classes`` being its input
    classes in parameter order; ``None`` when the step keys on its whole inputs.
    ``ValueError`` for a path the plan should not hold (a hand-edited module)."""
    if not step.cache.key:
        return None
    positions = {one.name: index for index, one in enumerate(step.inputs)}
    parts = [_part(step.name, path, positions, classes) for path in step.cache.key]

    def select(args: Sequence[Any]) -> list[bytes | None]:
        return [part(args) for part in parts]

    return select


def _part(
    step: str, path: str, positions: dict[str, int], classes: Sequence[type[Message]]
) -> _Part:
    first, *names = path.split(".")
    if first not in positions:
        raise ValueError(f"step {step}: cache key {path!r} names no input of the step")
    position = positions[first]
    if not names:
        return _whole_input(position)
    # The stubs type DESCRIPTOR as the union of the upb and pure-Python classes.
    descriptor: Descriptor = classes[position].DESCRIPTOR  # type: ignore[assignment]
    through: list[str] = []
    for name in names[:-1]:
        field = _field(step, path, descriptor, name)
        if field.message_type is None or _repeated(field):
            raise ValueError(f"step {step}: cache key {path!r} goes through a non-message field")
        through.append(name)
        descriptor = field.message_type
    last = _field(step, path, descriptor, names[-1])
    encode = _encoder(last)
    if _repeated(last):
        encode = _repeated_encoder(encode)
    presence = last.has_presence and not _repeated(last)
    # Each message on the way must be set: an unset one reads as its defaults.
    steps = [(name, operator.attrgetter(name)) for name in through]
    leaf, read = last.name, operator.attrgetter(last.name)

    def part(args: Sequence[Any]) -> bytes | None:
        value = args[position]
        if value is None:
            return None
        for name, get in steps:
            if not value.HasField(name):
                return None
            value = get(value)
        if presence and not value.HasField(leaf):
            return None
        return encode(read(value))

    return part


def input_bytes(value: Message | Sequence[Message] | None) -> bytes | None:
    """The key bytes of a whole input: a message, ``None`` for an absent optional input,
    or a repeated input's messages."""
    if value is None:
        return None
    if isinstance(value, Message):
        return value.SerializeToString(deterministic=True)
    return _join(m.SerializeToString(deterministic=True) for m in value)


def _whole_input(position: int) -> _Part:
    def part(args: Sequence[Any]) -> bytes | None:
        return input_bytes(args[position])

    return part


def _field(step: str, path: str, descriptor: Descriptor, name: str) -> FieldDescriptor:
    field = descriptor.fields_by_name.get(name)
    if field is None:
        raise ValueError(
            f"step {step}: cache key {path!r}: {descriptor.full_name} has no field {name!r}"
        )
    return field


def _repeated(field: FieldDescriptor) -> bool:
    repeated: bool = field.is_repeated
    return repeated


def _encoder(field: FieldDescriptor) -> _Encode:
    kind = field.type
    if field.message_type is not None:
        return _message
    if kind == _FD.TYPE_STRING:
        return str.encode
    if kind == _FD.TYPE_BYTES:
        return bytes
    if kind == _FD.TYPE_BOOL:
        return _bool
    if kind in _INTEGERS:
        return _integer
    return _DOUBLE.pack  # TYPE_FLOAT and TYPE_DOUBLE


def _message(value: Message) -> bytes:
    return value.SerializeToString(deterministic=True)


def _bool(value: bool) -> bytes:
    return b"\x01" if value else b"\x00"


def _integer(value: int) -> bytes:
    return str(value).encode()


def _repeated_encoder(encode: _Encode) -> _Encode:
    def encode_all(values: Sequence[Any]) -> bytes:
        return _join(encode(v) for v in values)

    return encode_all


def _join(chunks: Any) -> bytes:
    return b"".join(len(c).to_bytes(8, "big") + c for c in chunks)
