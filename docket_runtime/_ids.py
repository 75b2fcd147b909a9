"""What an execution id may be: checked where a caller's id enters, the same for every store.

An execution id is a key in every table of a store and in every checkpoint's
key. A store refuses some ids (Postgres cannot index a row above about
2.7 KB, nor store a NUL character) and the memory store none, so the same
rule is checked up front for all, before anything is written: a non-empty
string, without NUL characters, of at most :data:`MAX_ID_BYTES` bytes in
UTF-8. The ids Docket derives from a caller's (``<id>/<step>`` of a
subgraph's child execution, ``<id>/<index>`` of a batch item) are not
checked again: they are a few bytes longer, far below any store's limit.
"""

from __future__ import annotations

from typing import Final

__all__ = ["MAX_ID_BYTES", "check_execution_id"]

MAX_ID_BYTES: Final = 255
"""The longest execution id, in UTF-8 bytes."""

_SHOWN: Final = 40
"""Characters of a refused id quoted in its error."""


def check_execution_id(execution_id: object, where: str) -> None:
    """Raise ``ValueError`` (``TypeError`` for a non-string) unless ``execution_id`` is a
    valid execution id; ``where`` starts the message (``"shop.Orders.run()"``)."""
    if type(execution_id) is str and execution_id.isascii():
        # The common case, in one pass: ASCII is one byte a character.
        if 0 < len(execution_id) <= MAX_ID_BYTES and "\0" not in execution_id:
            return
    elif not isinstance(execution_id, str):
        raise TypeError(f"{where}: an execution id is a str, not {type(execution_id).__qualname__}")
    rule = _broken_rule(execution_id)
    if rule is None:
        return
    shown = execution_id[:_SHOWN] + ("..." if len(execution_id) > _SHOWN else "")
    raise ValueError(
        f"{where}: execution id {shown!r} {rule}; an execution id is a non-empty string "
        f"without NUL characters, at most {MAX_ID_BYTES} bytes in UTF-8"
    )


def _broken_rule(execution_id: str) -> str | None:
    if not execution_id:
        return "is empty"
    if "\0" in execution_id:
        return f"holds a NUL character (at index {execution_id.index(chr(0))})"
    try:
        size = len(execution_id.encode())
    except UnicodeEncodeError as err:
        return f"is not valid Unicode text ({err.reason} at index {err.start})"
    if size > MAX_ID_BYTES:
        return f"is {size} bytes long in UTF-8"
    return None
