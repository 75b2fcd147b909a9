"""The checks around a stored payload: a checksum, and the key id of an encoded one.

Both kinds of payload go through here: a result's ``output`` column and each
entry of a durable execution's ``inputs``. Without a codec, the message's
proto bytes are followed by a trailer that is itself a proto field (number
536870911, length-delimited), so the column still parses as the message with
any protobuf library (which keeps the trailer as an unknown field)::

    proto bytes | fa ff ff ff 0f 09 | 01 | crc32 (4) | rendering crc32 (4)

With a codec, the column holds an envelope instead::

    b"DK\x01" | crc32 (4) | rendering crc32 (4) | key id length (1) | key id | encoded bytes

The crc covers the message's type name and the payload, so truncated bytes,
bytes of another row and bytes of another type all fail it. The rendering crc
is the checksum of the JSON written beside the payload, canonicalised (see
:func:`rendering_crc`) because Postgres's JSONB respells it; a hand-edited or
damaged JSON column fails it.

No valid proto message starts with ``D`` (0x44 is an end-group tag), and none
of a Docket message type ends with the trailer's field, so a payload with
neither is one written before these checks existed: it is trusted when its
bytes parse and agree with its JSON rendering (:func:`agrees`). That also
catches a checked row whose bytes were emptied or replaced wholesale.
"""

from __future__ import annotations

import json
import struct
import zlib
from decimal import Decimal
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from .codec import CorruptPayload, MissingKey, PayloadCodec

__all__ = ["parse_rendering", "read", "rendering_crc", "seal", "unseal", "write"]

_MAGIC = b"DK\x01"
_HEAD = struct.Struct(">4s4sB")  # crc, rendering crc, key id length
_START = len(_MAGIC)
# Field 536870911 (the highest number), wire type 2, 9 bytes long; then version 1.
_TRAILER = b"\xfa\xff\xff\xff\x0f\x09\x01"
_TRAILER_SIZE = len(_TRAILER) + 8


def parse_rendering(text: str | None) -> Any:
    """A JSON rendering parsed with exact numbers, for :func:`rendering_crc`."""
    if text is None:
        return None
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


def rendering_crc(parsed: Any) -> bytes:
    """The checksum of a JSON rendering parsed by :func:`parse_rendering`, the same for
    every spelling of the same value."""
    canonical = json.dumps(parsed, sort_keys=True, separators=(",", ":"), default=_number)
    return zlib.crc32(canonical.encode()).to_bytes(4, "big")


def _crc(type_name: str, rest: bytes) -> bytes:
    return zlib.crc32(rest, zlib.crc32(type_name.encode())).to_bytes(4, "big")


def seal(data: bytes, type_name: str, rendering: Any, codec: PayloadCodec | None) -> bytes:
    """The stored form of ``data``, the proto bytes of a message of ``type_name``;
    ``rendering`` is the JSON stored beside it, parsed by :func:`parse_rendering`."""
    if codec is None:
        checked = data + _TRAILER[-1:] + rendering_crc(rendering)
        return data + _TRAILER + _crc(type_name, checked) + rendering_crc(rendering)
    kid, encoded = codec.encode(data, associated=type_name.encode())
    key_id = kid.encode()
    rest = rendering_crc(rendering) + bytes((len(key_id),)) + key_id + encoded
    return _MAGIC + _crc(type_name, rest) + rest


def unseal(
    blob: bytes, type_name: str, rendering: Any, codec: PayloadCodec | None, what: str
) -> bytes | None:
    """The proto bytes ``blob`` holds, or ``None`` for a payload without an envelope.

    Raises :class:`CorruptPayload` when the envelope does not hold together
    and :class:`MissingKey` when it needs a key ``codec`` lacks; ``what``
    names the row in their messages.
    """
    if not blob.startswith(_MAGIC):
        if len(blob) < _TRAILER_SIZE or blob[-_TRAILER_SIZE:-8] != _TRAILER:
            return None
        data = blob[:-_TRAILER_SIZE]
        crc, stored_rendering = blob[-8:-4], blob[-4:]
        if crc != _crc(type_name, data + _TRAILER[-1:] + stored_rendering):
            raise CorruptPayload(f"{what}: {_MISMATCH}")
        _check_rendering(stored_rendering, rendering, what)
        return data
    if len(blob) < _START + _HEAD.size:
        raise CorruptPayload(f"{what}: the stored payload is truncated")
    crc, stored_rendering, kid_len = _HEAD.unpack_from(blob, _START)
    rest = blob[_START + 4 :]
    if crc != _crc(type_name, rest):
        raise CorruptPayload(f"{what}: {_MISMATCH}")
    _check_rendering(stored_rendering, rendering, what)
    body = rest[5 + kid_len :]
    if kid_len == 0:
        return body
    key_id = rest[5 : 5 + kid_len].decode()
    if codec is None:
        raise MissingKey(key_id, None, what)
    try:
        return codec.decode(key_id, body, associated=type_name.encode())
    except MissingKey as exc:
        raise MissingKey(key_id, exc.known, what) from None


_MISMATCH = (
    "the stored payload does not match its checksum (damaged, truncated, or the bytes of "
    "another row or type)"
)


def _check_rendering(stored: bytes, rendering: Any, what: str) -> None:
    if stored != rendering_crc(rendering):
        raise CorruptPayload(
            f"{what}: its JSON rendering does not match the checksum it was written with"
        )


def agrees(data: bytes, cls: type[Message], rendering: Any, what: str) -> Message:
    """The message of a payload without an envelope, if its bytes parse and equal its JSON
    rendering (parsed by :func:`parse_rendering`); :class:`CorruptPayload` otherwise."""
    try:
        message = cls.FromString(data)
    except (DecodeError, ValueError, TypeError) as exc:
        raise CorruptPayload(f"{what}: its bytes do not parse ({exc})") from exc
    if not isinstance(rendering, dict):
        raise CorruptPayload(f"{what}: it has neither a checksum nor a JSON rendering to check")
    try:
        # Parsed back through text: json_format wants plain floats, not Decimals.
        rendered = json_format.Parse(
            json.dumps(rendering, default=_plain), cls(), ignore_unknown_fields=True
        )
    except (json_format.ParseError, ValueError, TypeError) as exc:
        raise CorruptPayload(f"{what}: its JSON column does not parse ({exc})") from exc
    if rendered != message:
        raise CorruptPayload(f"{what}: its bytes and its JSON column disagree")
    return message


def write(message: Message, rendering: Any, codec: PayloadCodec | None) -> bytes:
    """The stored form of ``message``, whose JSON stored beside it is ``rendering``
    (parsed by :func:`parse_rendering`)."""
    data = message.SerializeToString(deterministic=True)
    return seal(data, message.DESCRIPTOR.full_name, rendering, codec)


def read(
    blob: bytes, cls: type[Message], rendering: Any, codec: PayloadCodec | None, what: str
) -> Message:
    """The message of ``cls`` that :func:`write` stored as ``blob``, or that a release
    without envelopes stored as plain proto bytes.

    Raises :class:`CorruptPayload` for a payload that cannot be trusted and
    :class:`MissingKey` for one whose key ``codec`` lacks.
    """
    data = unseal(blob, cls.DESCRIPTOR.full_name, rendering, codec, what)
    if data is None:
        return agrees(blob, cls, rendering, what)
    try:
        return cls.FromString(data)
    except (DecodeError, ValueError, TypeError) as exc:
        raise CorruptPayload(f"{what}: its checked bytes do not parse ({exc})") from exc
