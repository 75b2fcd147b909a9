"""The worker's wake-ups (docket_runtime/durable/_wake.py), on real Postgres and Procrastinate.

Each worker here polls every 30 s and each test ends within 20 s, so a poll
cannot be what found the job: the notification guard, the due-job timer or
the lock-release wake did. The notification race is forced, not hoped for:
the worker's fetch that finds nothing holds its answer until a job inserted
after its snapshot has been notified.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from durable_support import pb, wait_for
from test_durable import Harness, gen, harness, run, url  # noqa: F401 (gen, url: fixtures)

from docket_runtime.durable import enqueue, run_worker
from docket_runtime.durable._wake import NewJobFlag, attach
from docket_runtime.stores import ExecutionRecord

POLL = 30.0
"""The workers' polling interval: longer than any test here may take."""


@asynccontextmanager
async def slow_polling_worker(
    h: Harness, queue: str, *, concurrency: int = 1, middleware: Any = None
) -> AsyncIterator[None]:
    """A worker of ``queue`` in this event loop, polling every 30 s, LISTENing once this yields."""
    task = asyncio.create_task(
        run_worker(
            h.app,
            h.registry,
            queues=[queue],
            concurrency=concurrency,
            polling_interval=POLL,
            install_signal_handlers=False,
            worker_middleware=[] if middleware is None else [middleware],
        )
    )

    async def listening() -> bool | None:
        rows = await h.sql(
            "SELECT 1 FROM pg_stat_activity WHERE query = %s",
            f'LISTEN "procrastinate_queue_v1#{queue}";',
        )
        return True if rows else None

    try:
        await wait_for(listening, timeout=10)
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def enqueue_in(h: Harness, queue: str, graph: str, execution_id: str, **inputs: Any) -> None:
    target = {"Orders": "Confirmation", "Chain": "Report"}[graph]
    await enqueue(
        h.app,
        h.graph(graph),
        getattr(pb(), target),
        inputs,
        execution_id=execution_id,
        queue=queue,
    )


async def succeeded(h: Harness, execution_id: str) -> ExecutionRecord:
    done = await wait_for(lambda: h.ended(execution_id), timeout=20)
    assert done.status == "succeeded", done.error
    return done


def test_a_durable_retry_starts_at_its_due_time_not_at_the_next_poll(url: str) -> None:  # noqa: F811
    async def body() -> None:
        async with harness(url) as h:
            queue = f"wake-{uuid.uuid4().hex[:8]}"
            async with slow_polling_worker(h, queue):
                order = pb().Order(order_id="flaky-wake", amount_cents=100)
                await enqueue_in(h, queue, "Orders", "flaky-wake", order=order)
                await succeeded(h, "flaky-wake")
            # Ship failed twice: two jobs scheduled 1 s later, each found by the timer.
            jobs = await h.jobs("flaky-wake")
            assert [job[2] is not None for job in jobs] == [False, True, True]

    run(body)


def test_a_job_notified_while_a_fetch_is_in_flight_is_not_left_to_the_poll(
    url: str,  # noqa: F811
) -> None:
    async def body() -> None:
        async with harness(url) as h:
            queue = f"wake-{uuid.uuid4().hex[:8]}"
            manager = h.app.job_manager
            notified = asyncio.Event()
            raced: list[str] = []
            real_listen, real_fetch = manager.listen_for_jobs, manager.fetch_job

            async def listen(*, on_notification: Any, queues: Any = None) -> None:
                async def noted(**notification: Any) -> None:
                    await on_notification(**notification)
                    notified.set()

                await real_listen(on_notification=noted, queues=queues)

            async def fetch(queues: Any, worker_id: int) -> Any:
                job = await real_fetch(queues=queues, worker_id=worker_id)
                if job is None and raced == ["armed"]:
                    raced[:] = ["raced"]
                    # Inserted after this fetch's snapshot; notified before it returns.
                    notified.clear()
                    order = pb().Order(order_id="second", amount_cents=100)
                    await enqueue_in(h, queue, "Orders", "second", order=order)
                    await notified.wait()
                return job

            manager.listen_for_jobs = listen  # type: ignore[method-assign]
            manager.fetch_job = fetch  # type: ignore[method-assign]
            async with slow_polling_worker(h, queue):
                raced.append("armed")
                order = pb().Order(order_id="first", amount_cents=100)
                await enqueue_in(h, queue, "Orders", "first", order=order)
                await succeeded(h, "first")
                await succeeded(h, "second")
            assert raced == ["raced"]

    run(body)


def test_a_hand_off_behind_its_running_job_starts_when_that_job_ends(url: str) -> None:  # noqa: F811
    async def body() -> None:
        async with harness(url) as h:
            queue = f"wake-{uuid.uuid4().hex[:8]}"
            manager = h.app.job_manager
            real_fetch = manager.fetch_job
            dry = asyncio.Event()
            held: list[int] = []

            async def fetch(queues: Any, worker_id: int) -> Any:
                job = await real_fetch(queues=queues, worker_id=worker_id)
                if job is None:
                    dry.set()
                return job

            async def hold_first(call_next: Any, context: Any, worker: Any) -> Any:
                # The first job has handed off (its successor is deferred, behind its lock):
                # it ends only once a fetch missed the successor and the loop went idle.
                result = await call_next()
                if not held:
                    held.append(context.job.id)
                    dry.clear()
                    await dry.wait()
                    while worker._new_job_event.is_set():
                        await asyncio.sleep(0.01)
                return result

            manager.fetch_job = fetch  # type: ignore[method-assign]
            # Two slots: the loop is idle (not waiting for a slot) when a hand-off's job ends.
            async with slow_polling_worker(h, queue, concurrency=2, middleware=hold_first):
                await enqueue_in(h, queue, "Chain", "chain-wake", seed=pb().Seed(value=1))
                await succeeded(h, "chain-wake")
            jobs = await h.jobs("chain-wake")
            assert [job[1] for job in jobs] == ["succeeded"] * 3
            assert held == [jobs[0][0]]

    run(body)


# -- the seams, alone ------------------------------------------------------------------------


def test_the_flag_keeps_a_set_made_since_the_last_clear_for_one_more_fetch() -> None:
    async def body() -> None:
        flag = NewJobFlag()
        flag.set()  # a notification: the loop fetches
        flag.clear()  # after that fetch: it may have raced with the fetch, so kept
        assert flag.is_set()
        flag.clear()  # after the next fetch, with no notification meanwhile
        assert not flag.is_set()
        flag.clear()
        assert not flag.is_set()

    asyncio.run(body())


def test_a_worker_without_the_known_internals_is_left_polling(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Other:
        queues = None

    with caplog.at_level(logging.WARNING, logger="docket.durable"):
        assert attach(Other()) is None  # type: ignore[arg-type]
    assert "wait for the next poll" in caplog.text
