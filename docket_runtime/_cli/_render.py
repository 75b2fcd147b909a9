"""Text for people: aligned tables, times, durations; and the JSON forms of times."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

DASH = "-"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """``rows`` under ``headers``, each column as wide as its widest cell, two spaces apart."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = [headers, *rows]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def fields(pairs: Sequence[tuple[str, str]]) -> str:
    """``name  value`` lines, the values aligned."""
    width = max(len(name) for name, _ in pairs)
    return "\n".join(f"{name.ljust(width)}  {value}".rstrip() for name, value in pairs)


def when(moment: datetime | None, *, precise: bool = False) -> str:
    """A UTC time to the second, ``2030-01-02 03:04:05Z`` (``precise``: to the
    millisecond, ``03:04:05.123Z``), or ``-``."""
    if moment is None:
        return DASH
    if precise:
        return f"{moment:%Y-%m-%d %H:%M:%S}.{moment.microsecond // 1000:03d}Z"
    return f"{moment:%Y-%m-%d %H:%M:%S}Z"


def iso(moment: datetime | None) -> str | None:
    """A time in ISO 8601 for JSON (``None`` stays ``null``)."""
    return None if moment is None else moment.isoformat()


def span(seconds: float) -> str:
    """A length of time for people: ``850 ms``, ``4.2 s``, ``3m 05s``, ``2h 10m``, ``3d 4h``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def duration(ms: float | None) -> str:
    """A recorded duration in milliseconds, for people; ``-`` when unknown."""
    if ms is None:
        return DASH
    if ms < 1:
        return f"{ms:.2f} ms"
    if ms < 1000:
        return f"{ms:.1f} ms"
    return span(ms / 1000)


def relative(moment: datetime, now: datetime) -> str:
    """``3m 05s ago`` or ``in 4.2 s``."""
    seconds = (now - moment).total_seconds()
    return f"{span(seconds)} ago" if seconds >= 0 else f"in {span(-seconds)}"


def summary(text: str | None) -> str:
    """The last non-empty line of an error or traceback (where Python puts the error
    itself); ``-`` for none."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else DASH
