"""What a docket-gen run's output is generated from, as one digest.

``docket-gen --check`` compares the output folder with what a run would write. A run
compiles every proto; the digest lets ``--check`` skip it when nothing it reads has
changed since the files were written: the ``.proto`` files under each import root (by
their place and content), the generators (grpcio-tools' and mypy-protobuf's versions,
the source of docket_gen, its templates and docket_runtime, which the generator
imports) and the options that change the output. The manifest records it
(:mod:`docket_gen.output`); when it differs, ``--check`` compiles and compares as before.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path

import docket_runtime

from .resources import templates_dir

_FORMAT = b"docket-gen inputs 1"
_GENERATOR = (
    Path(__file__).resolve().parent,
    Path(docket_runtime.__file__).resolve().parent,
)


def inputs_digest(import_roots: Sequence[Path], options: Iterable[str]) -> str:
    """The SHA-256 of everything the output of a run over ``import_roots`` depends on.

    ``options`` are the command-line options that change the output. Paths enter by
    their place under their root, so the digest is the same in another checkout.
    """
    digest = hashlib.sha256(_FORMAT)

    def add(*parts: str | bytes) -> None:
        for part in parts:
            data = part.encode() if isinstance(part, str) else part
            digest.update(len(data).to_bytes(8, "big"))
            digest.update(data)

    for option in options:
        add("option", option)
    for tool in ("grpcio-tools", "mypy-protobuf"):
        add("tool", tool, metadata.version(tool))
    for folder in (*_GENERATOR, templates_dir()):
        for path, relative in _files(folder, ("*.py", "*.j2")):
            add("generator", relative, path.read_bytes())
    for number, root in enumerate(import_roots):
        for path, relative in _files(root, ("*.proto",)):
            add("proto", str(number), relative, path.read_bytes())
    return digest.hexdigest()


def _files(folder: Path, patterns: Sequence[str]) -> list[tuple[Path, str]]:
    found = {p for pattern in patterns for p in folder.rglob(pattern) if p.is_file()}
    return sorted((p, p.relative_to(folder).as_posix()) for p in found)
