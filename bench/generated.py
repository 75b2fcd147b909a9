"""Generating bench/protos with the real docket-gen, shared by the benchmarks."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from typing import Any

PROTOS = Path(__file__).resolve().parent / "protos"


def generate(out: Path, name: str) -> tuple[Any, Any]:
    """Run docket-gen on bench/protos into ``out``; return ``benchgraphs.<name>``'s
    (pb2, docket) modules."""
    done = subprocess.run(
        [sys.executable, "-m", "docket_gen", str(PROTOS), "-o", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"docket-gen failed:\n{done.stderr}")
    sys.path.insert(0, str(out))
    pb2 = importlib.import_module(f"benchgraphs.{name}_pb2")
    docket = importlib.import_module(f"benchgraphs.{name}_docket")
    return pb2, docket
