"""Duration strings of the options proto: ``"250ms"``, ``"5s"``, ``"24h"``, ``"1m30s"``."""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

EXAMPLES = '"250ms", "5s", "2m", "24h" or "1m30s"'


class DurationError(ValueError):
    """A duration string that cannot be read."""


def parse_duration(text: str) -> float:
    """Return the duration in seconds; raises DurationError with what is wrong."""
    position = 0
    total = 0.0
    stripped = text.strip()
    if not stripped:
        raise DurationError(f"empty duration: write a number and a unit, e.g. {EXAMPLES}")
    while position < len(stripped):
        match = _PART.match(stripped, position)
        if match is None:
            raise DurationError(
                f"bad duration {text!r}: write a number and a unit (ms, s, m, h, d), "
                f"e.g. {EXAMPLES}"
            )
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if total <= 0:
        raise DurationError(f"bad duration {text!r}: it must be longer than zero")
    return total
