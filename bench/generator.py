"""docket-gen's time against protoc writing the same ``_pb2`` modules without Docket.

    python bench/generator.py [--files 50] [--graphs 5] [--steps 10] [--rounds 5] [--quick]

Writes ``--files`` synthetic protos (``--graphs`` graphs of ``--steps`` steps each, see
synthetic.py) to a temp folder, then times three commands in turn, each a whole
process, once per round:

- **protoc**: ``python -m grpc_tools.protoc --python_out --mypy_out`` over the files (the
  baseline: what any project using protobuf and mypy runs);
- **docket-gen**: ``docket-gen PROTOS -o OUT`` into an empty folder (the same two
  outputs plus ``_docket.py``);
- **docket-gen --check**: on the up-to-date folder.

Prints the median wall and CPU seconds (user + system, of the process and its children) and
the median of the per-round ratios to protoc. See bench/README.md.
"""

from __future__ import annotations

import argparse
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from synthetic import write_tree

from docket_gen.protoc import plugin_path
from docket_gen.resources import options_include_dir


def timed(command: Sequence[str | Path]) -> tuple[float, float]:
    """Run ``command`` to its end; its wall and CPU seconds (children included)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{' '.join(map(str, command))} failed:\n{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def lines_of(folder: Path, pattern: str) -> int:
    return sum(p.read_text().count("\n") for p in folder.rglob(pattern))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=50)
    parser.add_argument("--graphs", type=int, default=5, help="graphs per file")
    parser.add_argument("--steps", type=int, default=10, help="steps per graph")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="20 files, 3 rounds (~20 s)")
    args = parser.parse_args()
    if args.quick:
        args.files, args.rounds = 20, 3
    with tempfile.TemporaryDirectory(prefix="docket-bench-gen-") as tmp:
        work = Path(tmp)
        protos = work / "protos"
        files = write_tree(protos, args.files, args.graphs, args.steps)
        baseline_out, fresh, checked = work / "protoc", work / "fresh", work / "checked"
        protoc: list[str | Path] = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{protos}",
            f"-I{options_include_dir()}",
            f"--plugin=protoc-gen-mypy={plugin_path('mypy', work)}",
            f"--python_out={baseline_out}",
            f"--mypy_out=quiet:{baseline_out}",
            *files,
        ]
        generate: list[str | Path] = [sys.executable, "-m", "docket_gen", protos, "-o", fresh]
        check: list[str | Path] = [
            sys.executable,
            "-m",
            "docket_gen",
            protos,
            "-o",
            checked,
            "--check",
        ]
        timed([sys.executable, "-m", "docket_gen", protos, "-o", checked])  # what --check reads
        figures: dict[str, list[tuple[float, float]]] = {"protoc": [], "gen": [], "check": []}
        for _ in range(args.rounds):
            for folder in (baseline_out, fresh):
                shutil.rmtree(folder, ignore_errors=True)
            baseline_out.mkdir()
            figures["protoc"].append(timed(protoc))
            figures["gen"].append(timed(generate))
            figures["check"].append(timed(check))
        docket_lines = lines_of(fresh, "*_docket.py")
        pb2_lines = lines_of(fresh, "*_pb2.py") + lines_of(fresh, "*_pb2.pyi")

    graphs = args.files * args.graphs
    print(
        f"Python {platform.python_version()}, {args.files} files, {graphs} graphs of "
        f"{args.steps} steps, {args.rounds} rounds; median seconds, ratio = median of the "
        "per-round ratios to protoc"
    )
    print(f"{'':38}{'wall':>8}{'cpu':>8}{'wall x':>9}{'cpu x':>8}")
    rows = [
        ("protoc --python_out --mypy_out", "protoc"),
        ("docket-gen", "gen"),
        ("docket-gen --check (up to date)", "check"),
    ]
    for label, key in rows:
        walls = [w for w, _ in figures[key]]
        cpus = [c for _, c in figures[key]]
        wall_ratio = statistics.median(
            w / b for (w, _), (b, _) in zip(figures[key], figures["protoc"], strict=True)
        )
        cpu_ratio = statistics.median(
            c / b for (_, c), (_, b) in zip(figures[key], figures["protoc"], strict=True)
        )
        print(
            f"{label:38}{statistics.median(walls):8.2f}{statistics.median(cpus):8.2f}"
            f"{wall_ratio:8.2f}x{cpu_ratio:7.2f}x"
        )
    print(
        f"lines written: _docket.py {docket_lines:,} ({docket_lines // graphs} per graph); "
        f"_pb2.py + _pb2.pyi {pb2_lines:,}"
    )


if __name__ == "__main__":
    main()
