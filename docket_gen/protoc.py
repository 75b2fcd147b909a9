"""Running grpcio-tools' protoc with the protobuf, mypy-protobuf and Docket outputs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2

from .plugin import empty_response, generate
from .reader import OPTIONS_FILE
from .resources import options_include_dir

_PLUGINS = {
    "mypy": ("protoc-gen-mypy", "mypy_protobuf.main"),
}
_REQUEST = "request.pb"
_LOCATED = re.compile(r"^(?P<file>[^\s:]+\.proto):(?P<rest>\d+:\d+:.*)$")
# A location quoted inside a message: "... both produce X (shop/a.proto:12:7) ...".
_QUOTED = re.compile(r"\((?P<file>[^\s:()]+\.proto)(?P<rest>:\d+:\d+)\)")
# protoc's error for each use of an option whose proto the file does not import.
_UNKNOWN_OPTION = re.compile(
    r'^(?P<file>[^\s:]+\.proto):(?P<line>\d+):(?P<col>\d+): Option "(?P<option>\(docket\.\w+\))"'
    r" unknown\."
)
_IMPORT_LINE = f'import "{OPTIONS_FILE}";'
_IMPORTS_OPTIONS = re.compile(
    r'^[ \t]*import[ \t]+(?:(?:public|weak|option)[ \t]+)?"docket_runtime/options\.proto"', re.M
)
_HEAD_STATEMENT = re.compile(r"^[ \t]*(?:syntax|edition|package)\b[^;\n]*;", re.M)


@dataclass(frozen=True)
class ProtocRun:
    """The outcome of one protoc run.

    ``errors``: readable error lines. ``check_errors``: how many of them come from
    Docket's checks (protoc-gen-docket's response); 0 when protoc itself, or a
    plugin of it, failed the run. ``files``: the descriptors of the compiled files
    (after a successful run).
    """

    returncode: int
    errors: list[str]
    check_errors: int = 0
    files: list[descriptor_pb2.FileDescriptorProto] = field(default_factory=list)


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


def import_roots(roots: Sequence[Path], includes: Sequence[Path]) -> list[Path]:
    """protoc's import roots, in order: the proto folders, ``-I`` folders, the folder of
    Docket's options proto and grpcio-tools' well-known types; each once."""
    wkt = Path(str(resources.files("grpc_tools") / "_proto"))
    found: list[Path] = []
    for folder in [*roots, *includes, options_include_dir(), wkt]:
        if folder.resolve() not in {d.resolve() for d in found}:
            found.append(folder)
    return found


def run_protoc(
    roots: Sequence[Path],
    includes: Sequence[Path],
    files: Sequence[Path],
    out: Path,
    scratch: Path,
    docket_parameters: Sequence[str] = (),
) -> ProtocRun:
    """Compile ``files`` (under ``roots``) into ``out``: protoc's and mypy-protobuf's
    modules, and Docket's.

    One protoc run. Its first output is a stand-in plugin that only saves the
    CodeGeneratorRequest protoc sends it (to ``scratch``); protoc-gen-docket's
    generator runs on it in this process, as protoc would have run the plugin,
    while protoc goes on writing the ``_pb2`` modules: no Python process for
    Docket's plugin, its output not passing through protoc.
    ``docket_parameters`` are protoc-gen-docket's (``diagrams``, ``views``).
    """
    request_file, stderr_file = scratch / _REQUEST, scratch / "protoc.stderr"
    with stderr_file.open("w") as stderr:
        modules = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                *(f"-I{d}" for d in import_roots(roots, includes)),
                f"--plugin=protoc-gen-dockethandoff={_handoff_plugin(request_file, scratch)}",
                f"--dockethandoff_out={scratch}",
                f"--plugin=protoc-gen-mypy={plugin_path('mypy', scratch)}",
                f"--python_out={out}",
                f"--mypy_out=quiet:{out}",
                *(str(f) for f in files),
            ],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            # protoc runs its outputs in order: the request comes once every file is parsed.
            while not request_file.exists() and modules.poll() is None:
                time.sleep(0.002)
            response = None
            if request_file.exists():
                request = plugin_pb2.CodeGeneratorRequest.FromString(request_file.read_bytes())
                request.parameter = ",".join(docket_parameters)
                response = generate(request)
        finally:
            modules.wait()
    errors = readable_errors(stderr_file.read_text(), roots)
    if modules.returncode != 0 or response is None:
        return ProtocRun(modules.returncode or 1, errors)
    if response.error:
        checks = readable_errors(response.error, roots)
        return ProtocRun(1, [*errors, *checks], len(checks))
    for generated in response.file:
        path = out / generated.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(generated.content.encode())
    wanted = set(request.file_to_generate)
    return ProtocRun(0, errors, files=[f for f in request.proto_file if f.name in wanted])


def _handoff_plugin(request_file: Path, scratch: Path) -> Path:
    """A protoc plugin that saves its request to ``request_file`` (whole, by a rename) and
    answers with no files, declaring what protoc-gen-docket supports."""
    partial = request_file.with_suffix(".partial")
    script = scratch / "protoc-gen-dockethandoff"
    script.write_text(
        f"#!{sys.executable} -IS\n"
        "import os, sys\n"
        f"with open({str(partial)!r}, 'wb') as saved:\n"
        "    saved.write(sys.stdin.buffer.read())\n"
        f"os.replace({str(partial)!r}, {str(request_file)!r})\n"
        f"sys.stdout.buffer.write({empty_response().SerializeToString()!r})\n"
    )
    script.chmod(0o755)
    return script


def readable_errors(stderr: str, roots: Sequence[Path]) -> list[str]:
    """protoc's stderr as ``path:line:col: message`` lines, paths as the user can open them."""

    def requote(found: re.Match[str]) -> str:
        return f"({user_path(found['file'], roots)}{found['rest']})"

    lines = []
    for line in stderr.splitlines():
        match = _LOCATED.match(line)
        if match:
            rest = _QUOTED.sub(requote, match["rest"])
            line = f"{user_path(match['file'], roots)}:{rest}"
        if line.strip():
            lines.append(line)
    return _merge_unknown_options(lines)


def _merge_unknown_options(lines: list[str]) -> list[str]:
    """protoc's one error per use of a Docket option in a file that does not import them,
    replaced by one error per file, at the first use, saying which line to add."""
    uses: dict[str, list[tuple[int, int, str]]] = {}
    for line in lines:
        found = _UNKNOWN_OPTION.match(line)
        if found and not _imports_options(found["file"]):
            place = (int(found["line"]), int(found["col"]), found["option"])
            uses.setdefault(found["file"], []).append(place)
    merged: list[str] = []
    for line in lines:
        found = _UNKNOWN_OPTION.match(line)
        if not found or found["file"] not in uses:
            merged.append(line)
        elif uses[found["file"]]:  # the first use in the file: say it once, emptied after
            merged.append(_missing_import(found["file"], uses[found["file"]]))
            uses[found["file"]] = []
    return merged


def _missing_import(path: str, uses: list[tuple[int, int, str]]) -> str:
    line, col, _ = min(uses)
    options = list(dict.fromkeys(option for _, _, option in sorted(uses)))
    named = options[0] if len(options) == 1 else f"{', '.join(options[:-1])} and {options[-1]}"
    source = Path(path).read_text()
    head = list(_HEAD_STATEMENT.finditer(source))
    if head:
        last = head[-1]
        number = source.count("\n", 0, last.start()) + 1
        where = f"after line {number} ({last[0].strip()})"
    else:
        where = "at its top"
    return (
        f"{path}:{line}:{col}: {named} {'is' if len(options) == 1 else 'are'} unknown: "
        f"this file does not import Docket's options; add the line {_IMPORT_LINE} {where}"
    )


def _imports_options(path: str) -> bool:
    try:
        return bool(_IMPORTS_OPTIONS.search(Path(path).read_text()))
    except OSError:
        return True  # cannot tell: leave protoc's errors as they are


def user_path(name: str, roots: Sequence[Path]) -> str:
    """A root-relative proto name as the user can open it: joined with its root."""
    for root in roots:
        if not Path(name).exists() and (root / name).is_file():
            return (root / name).as_posix()
    return name
