"""Payload codecs: what encrypts stored step results and durable inputs.

Bind one to a store (``open_store(url, codec=...)``) and every payload written
through it is encoded by the codec, under the codec's newest key; a payload
records the id of its key, so rows written under an older key stay readable
as long as the codec still has that key. With a codec bound, the keys of
``GLOBAL`` results are HMACs under :attr:`PayloadCodec.cache_secret`, so that
they do not reveal the inputs they were computed from.

:class:`AesGcmCodec` is the one Docket ships (the ``crypto`` extra installs
``cryptography``); any object with the methods of :class:`PayloadCodec` is a
codec too. A codec sees only the bytes of a message and the message's type
name (authenticated, not encrypted): step names, execution ids, type names,
timings and error texts stay in clear text in their columns.

Errors: :class:`MissingKey` when a payload's key id is not one the codec has
(the row is left as it is); :class:`CorruptPayload` when a payload does not
match its checksum or does not authenticate.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Collection, Mapping
from typing import Protocol, runtime_checkable

from .errors import DocketError

__all__ = ["AesGcmCodec", "CorruptPayload", "MissingKey", "PayloadCodec"]

_NONCE = 12


class CorruptPayload(DocketError, ValueError):
    """A stored payload is damaged: its checksum, its envelope or its encryption does not hold."""


class MissingKey(DocketError, LookupError):
    """A stored payload is encoded under a key this process does not have; ``key_id`` names it.

    ``known`` lists the key ids the codec has (``None``: no codec is bound);
    ``what`` names the row.
    """

    def __init__(self, key_id: str, known: Collection[str] | None = None, what: str = "") -> None:
        self.key_id = key_id
        self.known = None if known is None else sorted(known)
        self.what = what
        lacking = (
            "no payload codec is bound to the store"
            if self.known is None
            else f"the store's codec has only {', '.join(map(repr, self.known))}"
        )
        where = f"{what}: " if what else ""
        super().__init__(
            f"{where}the stored payload is encrypted with key id {key_id!r}, and {lacking}; "
            f"give the store a codec holding key {key_id!r} (the row is left as it is)"
        )


@runtime_checkable
class PayloadCodec(Protocol):
    """Encodes and decodes stored payloads; bound to a store with ``open_store(..., codec=)``.

    ``associated`` is data the encoding must authenticate without hiding (the
    message's type name), so that a payload moved to a row of another type
    does not decode.
    """

    @property
    def cache_secret(self) -> bytes:
        """The secret that ``GLOBAL`` cache keys are HMACs under."""
        ...

    def encode(self, data: bytes, *, associated: bytes) -> tuple[str, bytes]:
        """``data`` encoded under the newest key: ``(key id, encoded bytes)``."""
        ...

    def decode(self, key_id: str, data: bytes, *, associated: bytes) -> bytes:
        """What :meth:`encode` was given; :class:`MissingKey` for an unknown ``key_id``,
        :class:`CorruptPayload` when ``data`` does not authenticate."""
        ...


class AesGcmCodec:
    """AES-GCM under a set of keys, the newest used for new payloads.

    ``keys`` maps a key id (1 to 255 bytes of UTF-8) to a 16, 24 or 32 byte
    AES key; the last entry is the newest. Rotate by appending a new key:
    rows written under older ids stay readable while their key is kept.
    ``cache_secret`` (16 bytes or more) keys the HMAC of ``GLOBAL`` cache
    keys; changing it makes every ``GLOBAL`` result a miss.

    The nonce is derived from the key and the payload (a synthetic IV), so the
    same payload under the same key encodes to the same bytes: the store can
    compare the inputs of two enqueues of one execution id, and a nonce never
    repeats for two different payloads. What it reveals is that two rows under
    one key hold the same message.

    Needs the ``cryptography`` package (``pip install 'docket-proto[crypto]'``).
    """

    def __init__(self, keys: Mapping[str, bytes], *, cache_secret: bytes) -> None:
        try:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError as exc:
            raise ImportError(
                "AesGcmCodec needs the cryptography package: pip install 'docket-proto[crypto]'"
            ) from exc
        if not keys:
            raise ValueError("AesGcmCodec needs at least one key")
        if len(cache_secret) < 16:
            raise ValueError("cache_secret must be at least 16 bytes")
        self._ciphers: dict[str, tuple[AESGCM, bytes]] = {}
        for key_id, key in keys.items():
            if not 0 < len(key_id.encode()) <= 255:
                raise ValueError(f"key id {key_id!r} must be 1 to 255 bytes of UTF-8")
            if len(key) not in (16, 24, 32):
                raise ValueError(f"key {key_id!r} must be 16, 24 or 32 bytes, not {len(key)}")
            nonce_key = hmac.digest(key, b"docket payload nonce", "sha256")
            self._ciphers[key_id] = (AESGCM(key), nonce_key)
        self.key_id = list(keys)[-1]
        """The id of the newest key, which new payloads are encoded under."""
        self._secret = bytes(cache_secret)

    @property
    def cache_secret(self) -> bytes:
        """The secret that ``GLOBAL`` cache keys are HMACs under."""
        return self._secret

    def encode(self, data: bytes, *, associated: bytes) -> tuple[str, bytes]:
        """``data`` encrypted under the newest key: ``(key id, nonce + ciphertext + tag)``."""
        cipher, nonce_key = self._ciphers[self.key_id]
        mac = hmac.new(nonce_key, len(associated).to_bytes(8, "big"), hashlib.sha256)
        mac.update(associated)
        mac.update(data)
        nonce = mac.digest()[:_NONCE]
        return self.key_id, nonce + cipher.encrypt(nonce, data, associated)

    def decode(self, key_id: str, data: bytes, *, associated: bytes) -> bytes:
        """The plaintext of a payload encrypted under ``key_id``."""
        from cryptography.exceptions import InvalidTag

        found = self._ciphers.get(key_id)
        if found is None:
            raise MissingKey(key_id, self._ciphers)
        try:
            return found[0].decrypt(data[:_NONCE], data[_NONCE:], associated)
        except (InvalidTag, ValueError) as exc:
            raise CorruptPayload(
                f"the stored payload does not authenticate under key {key_id!r}"
            ) from exc
