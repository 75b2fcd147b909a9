"""Running grpcio-tools' protoc with the protobuf, mypy-protobuf and Docket outputs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .reader import OPTIONS_FILE
from .resources import options_include_dir

_PLUGINS = {
    "docket": ("protoc-gen-docket", "docket_gen.plugin"),
    "mypy": ("protoc-gen-mypy", "mypy_protobuf.main"),
}
_LOCATED = re.compile(r"^(?P<file>[^\s:]+\.proto):(?P<rest>\d+:\d+:.*)$")
# A location quoted inside a message: "... both produce X (shop/a.proto:12:7) ...".
_QUOTED = re.compile(r"\((?P<file>[^\s:()]+\.proto)(?P<rest>:\d+:\d+)\)")


@dataclass(frozen=True)
class ProtocRun:
    """The outcome of one protoc run: its exit code and its readable error lines."""

    returncode: int
    errors: list[str]


def collect_protos(root: Path) -> list[Path]:
    """Every ``.proto`` under ``root``, sorted, except Docket's own options proto."""
    found = sorted(p for p in root.rglob("*.proto") if p.is_file())
    return [p for p in found if p.relative_to(root).as_posix() != OPTIONS_FILE]


def plugin_path(name: str, scratch: Path) -> Path:
    """The executable of plugin ``name``: the installed console script, or a shim next to it.

    protoc only finds plugins on PATH, so docket-gen always passes their path.
    """
    script, module = _PLUGINS[name]
    candidates = [Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))]
    for folder in candidates:
        for suffix in ("", ".exe"):
            path = folder / f"{script}{suffix}"
            if path.is_file() and os.access(path, os.X_OK):
                return path
    found = shutil.which(script)
    if found:
        return Path(found)
    shim = scratch / script
    shim.write_text(f"#!{sys.executable}\nfrom {module} import main\nmain()\n")
    shim.chmod(0o755)
    return shim


def run_protoc(
    roots: Sequence[Path],
    includes: Sequence[Path],
    files: Sequence[Path],
    out: Path,
    scratch: Path,
    docket_parameters: Sequence[str] = (),
) -> ProtocRun:
    """Compile ``files`` (under ``roots``) into ``out`` with the three generators at once.

    ``docket_parameters`` are protoc-gen-docket's (``diagrams``, ``views``).
    """
    docket_out = f"{','.join(docket_parameters)}:{out}" if docket_parameters else str(out)
    wkt = Path(str(resources.files("grpc_tools") / "_proto"))
    include_dirs: list[Path] = []
    for folder in [*roots, *includes, options_include_dir(), wkt]:
        if folder.resolve() not in {d.resolve() for d in include_dirs}:
            include_dirs.append(folder)
    args = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        *(f"-I{folder}" for folder in include_dirs),
        f"--plugin=protoc-gen-docket={plugin_path('docket', scratch)}",
        f"--plugin=protoc-gen-mypy={plugin_path('mypy', scratch)}",
        f"--python_out={out}",
        f"--mypy_out=quiet:{out}",
        f"--docket_out={docket_out}",
        *(str(f) for f in files),
    ]
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    return ProtocRun(done.returncode, readable_errors(done.stderr, roots))


def readable_errors(stderr: str, roots: Sequence[Path]) -> list[str]:
    """protoc's stderr as ``path:line:col: message`` lines, paths as the user can open them."""

    def requote(found: re.Match[str]) -> str:
        return f"({_user_path(found['file'], roots)}{found['rest']})"

    lines = []
    for line in stderr.splitlines():
        line = line.removeprefix("--docket_out: ")
        match = _LOCATED.match(line)
        if match:
            rest = _QUOTED.sub(requote, match["rest"])
            line = f"{_user_path(match['file'], roots)}:{rest}"
        if line.strip():
            lines.append(line)
    return lines


def _user_path(name: str, roots: Sequence[Path]) -> str:
    """A root-relative proto name as the user can open it: joined with its root."""
    for root in roots:
        if not Path(name).exists() and (root / name).is_file():
            return (root / name).as_posix()
    return name
