"""``file:line:col`` locations from a FileDescriptorProto's SourceCodeInfo."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf import descriptor_pb2


@dataclass(frozen=True, order=True)
class Location:
    """A 1-based position in a proto file, with columns as protoc counts them (tab = 8)."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class Locator:
    """Looks up the location of a descriptor path, falling back to its longest known prefix.

    protoc records an aggregate option only down to the option itself, not to
    its sub-fields; the prefix fallback points at the option then.
    """

    def __init__(self, file: descriptor_pb2.FileDescriptorProto) -> None:
        self.file = file.name
        self._info = file.source_code_info

    # Indexed on first use: most files of a request are imports nobody asks about, and
    # reading every location of one (descriptor.proto has thousands) is slow.
    @functools.cached_property
    def _spans(self) -> dict[tuple[int, ...], tuple[int, int]]:
        return {tuple(loc.path): (loc.span[0], loc.span[1]) for loc in self._info.location}

    @functools.cached_property
    def _comments(self) -> dict[tuple[int, ...], str]:
        return {
            tuple(loc.path): loc.leading_comments
            for loc in self._info.location
            if loc.leading_comments
        }

    def find(self, path: Sequence[int]) -> Location:
        """The location of ``path`` or of its longest prefix that has one."""
        key = tuple(path)
        while key:
            span = self._spans.get(key)
            if span is not None:
                return Location(self.file, span[0] + 1, span[1] + 1)
            key = key[:-1]
        return Location(self.file, 1, 1)

    def comment(self, path: Sequence[int]) -> str:
        """The leading comment of ``path``, dedented, or an empty string."""
        text = self._comments.get(tuple(path), "")
        lines = [
            line[1:] if line.startswith(" ") else line for line in text.strip("\n").split("\n")
        ]
        return "\n".join(lines).strip()
