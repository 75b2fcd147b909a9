"""Generating bench/protos with the real docket-gen, shared by the benchmarks."""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

PROTOS = Path(__file__).resolve().parent / "protos"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"


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


def add_store_options(
    parser: argparse.ArgumentParser, hits: int, executions: int, rounds: int
) -> None:
    """The options the store benchmarks share: sizes, rounds, and where Postgres is."""
    parser.add_argument("--hits", type=int, default=hits, help=f"cache hits per round ({hits})")
    parser.add_argument(
        "--executions", type=int, default=executions, help=f"executions per round ({executions})"
    )
    parser.add_argument("--rounds", type=int, default=rounds, help=f"rounds per variant ({rounds})")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("DOCKET_BENCH_POSTGRES_URL", DEFAULT_PG),
        help="Postgres URL (default: $DOCKET_BENCH_POSTGRES_URL or the local test database)",
    )
    parser.add_argument("--no-postgres", action="store_true", help="measure without Postgres")


def check_store_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject sizes below 1; ``--no-postgres`` sets ``args.postgres`` to ``None``."""
    if min(args.hits, args.executions, args.rounds) < 1:
        parser.error("--hits, --executions and --rounds must be at least 1")
    if args.no_postgres:
        args.postgres = None
