"""The checks around a stored payload: a checksum, and the key id of an encoded one.

Both kinds of payload go through here: a result's ``output`` column and each
entry of a durable execution's ``inputs``. Without a codec, the message's
proto bytes are followed by a trailer that is itself a proto field (number
536870911, length-delimited), so the column still parses as the message with
any protobuf library (which keeps the trailer as an unknown field)::

    proto bytes | fa ff ff ff 0f 0d | 01 | rendering stamp (8) | crc32 (4)

With a codec, the column holds an envelope instead::

    b"DK\\x01" | crc32 (4) | rendering stamp (8) | key id length (1) | key id | encoded bytes

The crc covers the message's type name and every byte before it (after it, in
the envelope), so truncated bytes,
bytes of another row and bytes of another type all fail it. The rendering
stamp checks the JSON written beside the payload: the crc32 of its text as
written, then the crc32 of a canonical form of its value. A read compares the
first (cheap); when Postgres's JSONB spelled the text otherwise, the second
(a parse: see :func:`render`, which writes JSON the way JSONB prints it, so
that this is rare). A hand-edited or damaged JSON column fails both.

No valid proto message starts with ``D`` (0x44 is an end-group tag), and none
of a Docket message type ends with the trailer's field, so a payload with
neither is one written before these checks existed: it is trusted when its
bytes parse and agree with its JSON rendering (:func:`agrees`). That also
catches a checked row whose bytes were emptied or replaced wholesale.

Measured with ``bench/payload.py``: see bench/README.md.
"""

from __future__ import annotations

import json
import zlib
from decimal import Decimal
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from .codec import CorruptPayload, MissingKey, PayloadCodec

__all__ = ["read", "render", "write"]

_MAGIC = b"DK\x01"
_START = len(_MAGIC)
# Field 536870911 (the highest number), wire type 2, 13 bytes long; then version 1.
_TRAILER = b"\xfa\xff\xff\xff\x0f\x0d\x01"
_STAMP = 8
_TRAILER_SIZE = len(_TRAILER) + 4 + _STAMP
_HEAD = 4 + _STAMP + 1  # crc, rendering stamp, key id length


def render(value: Any) -> str:
    """JSON text of a value as Postgres's JSONB prints it back: keys shorter first, then
    by bytes, ``", "`` and ``": "`` between items, non-ASCII text as it is."""
    return json.dumps(_jsonb_order(value), ensure_ascii=False)


def _jsonb_order(value: Any) -> Any:
    if isinstance(value, dict):
        order = sorted(value, key=lambda k: (len(k.encode()), k.encode()))
        return {k: _jsonb_order(value[k]) for k in order}
    if isinstance(value, list):
        return [_jsonb_order(v) for v in value]
    return value


def _parse(text: str) -> Any:
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


def _number(value: object) -> object:
    if isinstance(value, Decimal):
        # JSONB writes 1e+20 as 100000000000000000000 and has no -0: compare values.
        return ["\x00", "0" if value.is_zero() else str(value.normalize())]
    raise TypeError(f"not JSON: {type(value).__name__}")


def _plain(value: object) -> object:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def _crc32(data: bytes) -> bytes:
    return zlib.crc32(data).to_bytes(4, "big")


def _canonical_crc(text: str) -> bytes:
    canonical = json.dumps(_parse(text), sort_keys=True, separators=(",", ":"), default=_number)
    return _crc32(canonical.encode())


def _stamp(rendering: str) -> bytes:
    return _crc32(rendering.encode()) + _canonical_crc(rendering)


def _check_rendering(stamp: bytes, rendering: str, what: str) -> None:
    if _crc32(rendering.encode()) == stamp[:4]:
        return
    if _canonical_crc(rendering) != stamp[4:]:
        raise CorruptPayload(
            f"{what}: its JSON rendering does not match the checksum it was written with"
        )


_TYPE_CRCS: dict[str, int] = {}


def _crc(type_name: str, rest: bytes | memoryview) -> bytes:
    start = _TYPE_CRCS.get(type_name)
    if start is None:
        start = _TYPE_CRCS[type_name] = zlib.crc32(type_name.encode())
    return zlib.crc32(rest, start).to_bytes(4, "big")


_MISMATCH = (
    "the stored payload does not match its checksum (damaged, truncated, or the bytes of "
    "another row or type)"
)


def write(message: Message, rendering: str, codec: PayloadCodec | None) -> bytes:
    """The stored form of ``message``, whose JSON text stored beside it is ``rendering``
    (``"null"`` when there is none)."""
    data = message.SerializeToString(deterministic=True)
    type_name = message.DESCRIPTOR.full_name
    stamp = _stamp(rendering)
    if codec is None:
        checked = data + _TRAILER + stamp
        return checked + _crc(type_name, checked)
    kid, encoded = codec.encode(data, associated=type_name.encode())
    key_id = kid.encode()
    rest = stamp + bytes((len(key_id),)) + key_id + encoded
    return _MAGIC + _crc(type_name, rest) + rest


def read(
    blob: bytes, cls: type[Message], rendering: str, codec: PayloadCodec | None, what: str
) -> Message:
    """The message of ``cls`` that :func:`write` stored as ``blob`` beside the JSON text
    ``rendering``, or that a release without checks stored as plain proto bytes.

    Raises :class:`CorruptPayload` for a payload that cannot be trusted and
    :class:`MissingKey` for one whose key ``codec`` lacks; ``what`` names the
    row in their messages.
    """
    data = _unseal(blob, cls.DESCRIPTOR.full_name, rendering, codec, what)
    if data is None:
        return agrees(blob, cls, rendering, what)
    try:
        return cls.FromString(data)
    except (DecodeError, ValueError, TypeError) as exc:
        raise CorruptPayload(f"{what}: its checked bytes do not parse ({exc})") from exc


def _unseal(
    blob: bytes, type_name: str, rendering: str, codec: PayloadCodec | None, what: str
) -> bytes | None:
    """The proto bytes ``blob`` holds, or ``None`` for a payload without checks."""
    if not blob.startswith(_MAGIC):
        if len(blob) < _TRAILER_SIZE or blob[-_TRAILER_SIZE : -_STAMP - 4] != _TRAILER:
            return None
        if blob[-4:] != _crc(type_name, memoryview(blob)[:-4]):
            raise CorruptPayload(f"{what}: {_MISMATCH}")
        _check_rendering(blob[-_STAMP - 4 : -4], rendering, what)
        return blob[:-_TRAILER_SIZE]
    if len(blob) < _START + _HEAD:
        raise CorruptPayload(f"{what}: the stored payload is truncated")
    rest = blob[_START + 4 :]
    if blob[_START : _START + 4] != _crc(type_name, memoryview(blob)[_START + 4 :]):
        raise CorruptPayload(f"{what}: {_MISMATCH}")
    _check_rendering(rest[:_STAMP], rendering, what)
    kid_len = rest[_STAMP]
    body = rest[_STAMP + 1 + kid_len :]
    if kid_len == 0:
        return body
    key_id = rest[_STAMP + 1 : _STAMP + 1 + kid_len].decode()
    if codec is None:
        raise MissingKey(key_id, None, what)
    try:
        return codec.decode(key_id, body, associated=type_name.encode())
    except MissingKey as exc:
        raise MissingKey(key_id, exc.known, what) from None


def agrees(data: bytes, cls: type[Message], rendering: str, what: str) -> Message:
    """The message of a payload without checks, if its bytes parse and equal its JSON
    rendering; :class:`CorruptPayload` otherwise."""
    try:
        message = cls.FromString(data)
    except (DecodeError, ValueError, TypeError) as exc:
        raise CorruptPayload(f"{what}: its bytes do not parse ({exc})") from exc
    try:
        value = _parse(rendering)
        if not isinstance(value, dict):
            raise CorruptPayload(f"{what}: it has neither a checksum nor a JSON rendering to check")
        # Parsed back through text: json_format wants plain numbers, not Decimals.
        text = json.dumps(value, default=_plain)
        rendered = json_format.Parse(text, cls(), ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError) as exc:
        raise CorruptPayload(f"{what}: its JSON column does not parse ({exc})") from exc
    if rendered != message:
        raise CorruptPayload(f"{what}: its bytes and its JSON column disagree")
    return message
