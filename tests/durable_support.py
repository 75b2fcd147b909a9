"""Shared by the durable tests: the generated ``durabletest`` package and small helpers.

Not a test module. ``tests/protos_durable`` is generated once per test session
with the real docket-gen and put on ``sys.path`` (and handed to the worker
subprocesses through their config).
"""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROTOS = ROOT / "tests" / "protos_durable"
WORKER = ROOT / "tests" / "durable_worker.py"

T = TypeVar("T")

_generated: list[Path] = []


def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generate ``tests/protos_durable`` once per session; its folder is on ``sys.path``."""
    if not _generated:
        out = tmp_path_factory.mktemp("durable_gen")
        done = subprocess.run(
            [sys.executable, "-m", "docket_gen", str(PROTOS), "-o", str(out)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        sys.path.insert(0, str(out))
        importlib.invalidate_caches()
        _generated.append(out)
    return _generated[0]


def queue_schema(pg: Any) -> str:
    """A fresh schema (``pg``: conftest's ``PgSession``) with Docket's and Procrastinate's
    tables, and ``durable_effects``; its URL."""
    from durable_worker import EFFECTS_TABLE

    from docket_runtime.cli import main as docket_cli

    fresh: str = pg.fresh_url()
    assert docket_cli(["db", "migrate", "--url", fresh, "--with-queue"]) == 0
    pg.sql(fresh, EFFECTS_TABLE)
    return fresh


def pb() -> Any:
    """The generated ``durabletest.orders_pb2``."""
    return importlib.import_module("durabletest.orders_pb2")


async def wait_for(
    probe: Callable[[], Awaitable[T | None]], *, timeout: float = 10.0, every: float = 0.02
) -> T:
    """Poll ``probe`` until it returns something other than ``None``; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        found = await probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting after {timeout}s")
        await asyncio.sleep(every)
