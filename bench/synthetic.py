"""A tree of synthetic Docket protos for the generator and import benchmarks.

Each file holds ``graphs`` services of ``steps`` steps over messages of its own:
step 0 takes the graph's item, step 1 the output of step 0, and every later
step the outputs of the two before it (a bundle), so that targets have
several levels. A third of the steps set options (a timeout, a retry policy,
a per-execution cache), as real graphs do.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = "synth"


def step_options(graph: int, step: int) -> str:
    """The ``(docket.step)`` option of a step, or nothing (the pattern is fixed)."""
    kind = (graph + step) % 6
    if kind == 1:
        return ' { option (docket.step) = { timeout: "5s" }; }'
    if kind == 3:
        retry = 'retry: { max_attempts: 4 initial_interval: "100ms" }'
        return f" {{ option (docket.step) = {{ {retry} }}; }}"
    if kind == 5:
        return " { option (docket.step) = { cache: { scope: WORKFLOW } }; }"
    return ";"


def proto_source(file: int, graphs: int, steps: int) -> str:
    """The source of synthetic file number ``file``."""
    lines = [
        "// Synthetic graphs for the generator benchmark.",
        'syntax = "proto3";',
        "",
        f"package {PACKAGE}.f{file:03d};",
        "",
        'import "docket_runtime/options.proto";',
        "",
    ]
    for graph in range(graphs):
        prefix = f"G{graph}"
        lines.append(f"message {prefix}Item {{ string id = 1; int32 value = 2; }}")
        for step in range(steps):
            lines.append(f"message {prefix}Out{step} {{ int64 value = 1; string note = 2; }}")
        for step in range(2, steps):
            lines += [
                f"message {prefix}In{step} {{",
                "  option (docket.bundle) = true;",
                f"  {prefix}Out{step - 2} older = 1;",
                f"  {prefix}Out{step - 1} newer = 2;",
                "}",
            ]
        lines += [
            "",
            f"// Graph {graph} of file {file}: a ladder of {steps} steps.",
            f"service Graph{graph} {{",
            f'  option (docket.graph) = {{ inputs: "{prefix}Item" }};',
        ]
        for step in range(steps):
            source = (
                f"{prefix}Item"
                if step == 0
                else f"{prefix}Out0"
                if step == 1
                else f"{prefix}In{step}"
            )
            lines.append(
                f"  rpc Step{step}({source}) returns ({prefix}Out{step})"
                + step_options(graph, step)
            )
        lines += ["}", ""]
    return "\n".join(lines)


def write_tree(root: Path, files: int, graphs: int, steps: int) -> list[Path]:
    """Write ``files`` synthetic protos under ``root``; returns their paths."""
    written = []
    for file in range(files):
        path = root / PACKAGE / f"f{file:03d}.proto"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(proto_source(file, graphs, steps))
        written.append(path)
    return written
