"""What importing generated modules costs, against ``python -c pass``.

    python bench/imports.py [--rounds 20] [--quick]

Generates one synthetic proto (synthetic.py: 5 graphs of 10 steps), and the same
messages without Docket's options, with the real docket-gen into a temp folder, then
starts a new interpreter per import, in turn: ``pass``, the plain ``_pb2`` (protobuf's
own cost), the annotated ``_pb2``, its ``_docket`` module, and ``docket_runtime.durable``.
Prints the median milliseconds of each, what it adds to ``pass``, and how many of
docket_runtime's modules it loaded. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from synthetic import PACKAGE, proto_source, write_tree

_LOADED = "import sys; print(sum(m.startswith('docket_runtime') for m in sys.modules))"


def plain_source() -> str:
    """The messages of synthetic file 0 without Docket: the cost of protobuf alone."""
    kept = []
    in_service = False
    for line in proto_source(0, 5, 10).splitlines():
        in_service = in_service or line.startswith("service ")
        if not in_service and "docket" not in line:
            kept.append(line.replace(f"package {PACKAGE}.f000;", f"package {PACKAGE}.plain;"))
        in_service = in_service and line != "}"
    return "\n".join(kept) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="8 rounds (~10 s)")
    args = parser.parse_args()
    if args.quick:
        args.rounds = 8
    with tempfile.TemporaryDirectory(prefix="docket-bench-imports-") as tmp:
        work = Path(tmp)
        write_tree(work / "protos", 1, 5, 10)
        (work / "protos" / PACKAGE / "plain.proto").write_text(plain_source())
        done = subprocess.run(
            [sys.executable, "-m", "docket_gen", work / "protos", "-o", work / "gen"],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            sys.exit(f"docket-gen failed:\n{done.stderr}")
        env = {**os.environ, "PYTHONPATH": str(work / "gen")}
        cases = {
            "pass": "pass",
            f"import {PACKAGE}.plain_pb2 (no Docket)": f"import {PACKAGE}.plain_pb2",
            f"import {PACKAGE}.f000_pb2": f"import {PACKAGE}.f000_pb2",
            f"import {PACKAGE}.f000_docket": f"import {PACKAGE}.f000_docket",
            "import docket_runtime.durable": "import docket_runtime.durable",
        }
        times: dict[str, list[float]] = {case: [] for case in cases}
        for _ in range(args.rounds):
            for case, code in cases.items():
                start = time.perf_counter()
                subprocess.run([sys.executable, "-c", code], env=env, check=True)
                times[case].append(time.perf_counter() - start)
        loaded = {
            case: subprocess.run(
                [sys.executable, "-c", f"{code}\n{_LOADED}"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            for case, code in cases.items()
        }
    print(
        f"Python {platform.python_version()}, {args.rounds} rounds, a new interpreter per "
        "import; median ms"
    )
    print(f"{'':34}{'ms':>8}{'+ pass':>9}  docket_runtime modules")
    floor = statistics.median(times["pass"])
    for case, found in times.items():
        median = statistics.median(found)
        print(f"{case:34}{median * 1000:8.1f}{(median - floor) * 1000:9.1f}  {loaded[case]}")


if __name__ == "__main__":
    main()
