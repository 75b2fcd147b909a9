"""docket_runtime.testing: the fake clock a test passes as ``Graph(steps, sleep=clock.sleep)``.

Its use with a generated graph is in docs/testing.md, whose samples run in test_docs.py.
"""

from __future__ import annotations

import asyncio
import time

import pytest

import docket_runtime.testing
from docket_runtime.testing import FakeClock


def test_the_module_exports_the_clock() -> None:
    assert docket_runtime.testing.__all__ == ["FakeClock"]


def test_sleep_records_each_delay_and_moves_the_clock_without_waiting() -> None:
    clock = FakeClock()
    began = time.monotonic()

    async def body() -> None:
        await clock.sleep(3600.0)
        await clock.sleep(0.25)

    asyncio.run(body())

    assert time.monotonic() - began < 5.0
    assert clock.delays == [3600.0, 0.25]
    assert clock.now == 3600.25


def test_the_clock_starts_where_it_is_told_and_never_goes_back() -> None:
    clock = FakeClock(start=100.0)
    asyncio.run(clock.sleep(-1.0))
    assert clock.delays == [-1.0]
    assert clock.now == 100.0


def test_a_sleeping_task_lets_the_others_run() -> None:
    clock = FakeClock()
    order: list[str] = []

    async def sleeper() -> None:
        await clock.sleep(10.0)
        order.append("slept")

    async def other() -> None:
        order.append("other")

    async def body() -> None:
        await asyncio.gather(sleeper(), other())

    asyncio.run(body())
    assert order == ["other", "slept"]


def test_a_sleeping_task_can_be_cancelled() -> None:
    clock = FakeClock()

    async def body() -> None:
        task = asyncio.ensure_future(clock.sleep(10.0))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(body())
    assert clock.delays == [10.0]
