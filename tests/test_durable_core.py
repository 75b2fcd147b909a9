"""The queue-independent core of docket_runtime.durable, with no queue at all.

An execution is recorded in a memory store (``record_execution``, the store's
half of ``enqueue``) and :func:`resume` is called directly: each test checks
the outcome it returns, which is all a queue adapter acts on, and what the
store holds afterwards. tests/test_durable_unit.py checks the Procrastinate
adapter on top of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import raw_sql
from durable_support import generated, pb
from durable_worker import MemoryEffects, build

from docket_runtime.durable import Registry
from docket_runtime.durable._record import record_execution
from docket_runtime.durable._resume import (
    STORE_RETRY_DELAY,
    Continue,
    Done,
    Failed,
    Requeue,
    StoreFailed,
    resume,
)
from docket_runtime.stores import MemoryStore, Store, StoreRejected, StoreUnavailable, open_store


@pytest.fixture(scope="module", autouse=True)
def gen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generated(tmp_path_factory)


def never_stopping() -> bool:
    return False


class Core:
    """A memory store and the registry of durabletest.orders, with no queue."""

    def __init__(self, store: Store | None = None) -> None:
        self.store = store or MemoryStore()
        self.effects = MemoryEffects()
        self.registry: Registry = build(self.store, self.effects)

    async def record(self, graph: str, target: str, execution_id: str, **inputs: Any) -> None:
        found = self.registry.get(f"durabletest.{graph}")
        assert found is not None
        row = await record_execution(
            found, getattr(pb(), target), inputs, execution_id=execution_id
        )
        assert row.status == "queued"

    async def resume(self, execution_id: str) -> Any:
        return await resume(self.registry, execution_id, stopping=never_stopping)

    async def row(self, execution_id: str) -> Any:
        found = await self.store.get_execution(execution_id)
        assert found is not None
        return found


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), 30))


def test_a_run_that_succeeds_is_done_and_an_ended_one_is_left_alone() -> None:
    async def body() -> None:
        core = Core()
        order = pb().Order(order_id="o-1", amount_cents=500)
        await core.record("Orders", "Confirmation", "o-1", order=order)
        assert await core.resume("o-1") == Done("succeeded")
        assert (await core.row("o-1")).status == "succeeded"
        assert await core.resume("o-1") == Done("already succeeded")
        assert core.effects.count("o-1", "ChargeCard") == 1
        assert await core.resume("never-enqueued") == Done("no such execution")

    run(body)


def test_a_run_that_fails_is_failed_with_the_error() -> None:
    async def body() -> None:
        core = Core()
        order = pb().Order(order_id="bad", amount_cents=0)
        await core.record("Orders", "Confirmation", "bad", order=order)
        outcome = await core.resume("bad")
        assert isinstance(outcome, Failed) and "amount must be positive" in outcome.error
        row = await core.row("bad")
        assert row.status == "failed" and "amount must be positive" in row.error
        assert await core.resume("bad") == Done("already failed")

    run(body)


def test_a_durable_retry_continues_at_its_wake_time() -> None:
    async def body() -> None:
        core = Core()
        order = pb().Order(order_id="flaky-1", amount_cents=1)
        await core.record("Orders", "Confirmation", "flaky-1", order=order)
        for attempt in (1, 2):
            outcome = await core.resume("flaky-1")
            row = await core.row("flaky-1")
            assert row.status == "waiting"
            assert isinstance(outcome, Continue)
            assert outcome.at is not None and outcome.at == row.wake_at
            assert f"'Ship' failed on attempt {attempt}" in outcome.reason
        assert await core.resume("flaky-1") == Done("succeeded")
        assert core.effects.count("flaky-1", "Ship:3") == 1
        assert core.effects.count("flaky-1", "ChargeCard") == 1

    run(body)


def test_a_hand_off_continues_at_once() -> None:
    async def body() -> None:
        core = Core()
        await core.record("Chain", "Report", "chain-1", seed=pb().Seed(value=1))
        outcomes = [await core.resume("chain-1") for _ in range(3)]
        assert [type(o) for o in outcomes] == [Continue, Continue, Done]
        assert all(o.at is None for o in outcomes[:2] if isinstance(o, Continue))
        assert outcomes[2] == Done("succeeded")

    run(body)


def test_a_succeeded_execution_keeps_its_value_even_when_its_step_keeps_nothing(
    db_url: str,
) -> None:
    async def body() -> None:
        store = await open_store(db_url, migrate=True)
        try:
            core = Core(store)
            chain = core.registry.get("durabletest.Chain")
            orders = core.registry.get("durabletest.Orders")
            assert chain is not None and orders is not None
            await core.record("Chain", "Report", "c-1", seed=pb().Seed(value=1))
            # Queued, then handed off twice: no value yet.
            assert await chain.result_target(pb().Report, "c-1") is None
            while isinstance(await core.resume("c-1"), Continue):
                assert await chain.result_target(pb().Report, "c-1") is None
            assert (await core.row("c-1")).status == "succeeded"
            assert await chain.result_target(pb().Report, "c-1") == pb().Report(value=25)
            # Step Third keeps nothing: its value is a WORKFLOW row of the execution, keyed
            # as Third's checkpoint would be, with no expiry.
            rows = raw_sql(
                db_url,
                "SELECT step, scope, output_type, expires_at FROM docket_results "
                "WHERE execution_id = ? AND step <> 'docket.inputs' ORDER BY step",
                ("c-1",),
            )
            assert [tuple(r) for r in rows] == [
                ("First", "workflow", "durabletest.Part1", None),
                ("Second", "workflow", "durabletest.Part2", None),
                ("Third", "workflow", "durabletest.Report", None),
            ]

            # A target whose step keeps its result: the checkpoint is the value.
            order = pb().Order(order_id="o-1", amount_cents=500)
            await core.record("Orders", "Confirmation", "o-1", order=order)
            assert await core.resume("o-1") == Done("succeeded")
            confirmation = await orders.result_target(pb().Confirmation, "o-1")
            assert confirmation is not None and confirmation.charge_id == "ch-o-1"

            # Asking for another execution's target, or a graph's unknown target.
            with pytest.raises(ValueError, match=r"ran durabletest\.Chain -> durabletest\.Report"):
                await orders.result_target(pb().Confirmation, "c-1")
            with pytest.raises(ValueError, match=r"not durabletest\.Chain -> durabletest\.Part1"):
                await chain.result_target(pb().Part1, "c-1")
            with pytest.raises(TypeError, match=r"cannot produce durabletest\.Total"):
                await chain.result_target(pb().Total, "c-1")
            # Failed, unknown: nothing. Forgotten by rerun_from: nothing either.
            await core.record("Orders", "Confirmation", "bad", order=pb().Order(order_id="bad"))
            assert isinstance(await core.resume("bad"), Failed)
            assert await orders.result_target(pb().Confirmation, "bad") is None
            assert await orders.result_target(pb().Confirmation, "never") is None
            assert await chain.rerun_from("Third", "c-1") == ["Third"]
            assert await chain.result_target(pb().Report, "c-1") is None

            # A run in process keeps nothing beyond the steps' own checkpoints.
            await chain.run_target(pb().Report, {"seed": pb().Seed(value=1)}, execution_id="c-2")
            assert (await core.row("c-2")).status == "succeeded"
            assert await chain.result_target(pb().Report, "c-2") is None
        finally:
            await store.close()

    run(body)


def test_an_unknown_graph_fails_the_execution() -> None:
    async def body() -> None:
        core = Core()
        order = pb().Order(order_id="o-2", amount_cents=500)
        await core.record("Orders", "Confirmation", "o-2", order=order)
        outcome = await resume(Registry(core.store), "o-2", stopping=never_stopping)
        assert isinstance(outcome, Failed)
        assert "durabletest.Orders is not in this worker's registry" in outcome.error
        assert (await core.row("o-2")).status == "failed"

    run(body)


def test_a_cancelled_run_is_requeued_only_when_the_worker_stops() -> None:
    async def cancel_mid_step(core: Core, execution_id: str, stopping: bool) -> Any:
        await core.record("Sleeper", "Woken", execution_id, nap=pb().Nap(seconds=60.0))
        task = asyncio.create_task(resume(core.registry, execution_id, stopping=lambda: stopping))
        while core.effects.count(execution_id, "Sleep:start") == 0:
            await asyncio.sleep(0.01)
        task.cancel()
        return await task

    async def body() -> None:
        core = Core()
        assert await cancel_mid_step(core, "stop", stopping=True) == Requeue()
        assert (await core.row("stop")).status == "queued"
        with pytest.raises(asyncio.CancelledError):
            await cancel_mid_step(core, "cancel", stopping=False)
        assert (await core.row("cancel")).status == "cancelled"

    run(body)


def test_a_store_failure_mid_run_resumes_later() -> None:
    class Flaky(MemoryStore):
        """A store whose database vanishes once, when a step starts."""

        failed = False

        async def step_started(self, execution_id: str, step: str, **kw: Any) -> int:
            if not self.failed:
                self.failed = True
                raise StoreUnavailable("connection lost")
            return await super().step_started(execution_id, step, **kw)

    async def body() -> None:
        core = Core(Flaky())
        await core.record("Sleeper", "Woken", "nap", nap=pb().Nap(seconds=0.0))
        before = datetime.now(UTC)
        outcome = await core.resume("nap")
        assert isinstance(outcome, StoreFailed) and isinstance(outcome.error, StoreUnavailable)
        assert before + timedelta(seconds=STORE_RETRY_DELAY) <= outcome.at
        assert outcome.at <= datetime.now(UTC) + timedelta(seconds=STORE_RETRY_DELAY)
        # Not failed: waiting for the resume, so that the sweep finds it if no job comes.
        row = await core.row("nap")
        assert (row.status, row.error) == ("waiting", "StoreUnavailable: connection lost")
        assert row.wake_at is not None
        assert abs((row.wake_at - outcome.at).total_seconds()) < 1
        assert isinstance(await core.resume("nap"), Done)
        assert (await core.row("nap")).status == "succeeded"

    run(body)


def test_a_store_rejection_mid_run_fails_the_execution_instead_of_resuming_it_for_ever() -> None:
    class Full(MemoryStore):
        """A store whose disk is full when a step starts: resuming would meet it again."""

        async def step_started(self, execution_id: str, step: str, **kw: Any) -> int:
            raise StoreRejected("database or disk is full")

    async def body() -> None:
        core = Core(Full())
        await core.record("Sleeper", "Woken", "nap", nap=pb().Nap(seconds=0.0))
        outcome = await core.resume("nap")
        assert outcome == Failed("database or disk is full")
        row = await core.row("nap")
        assert (row.status, row.error) == ("failed", "StoreRejected: database or disk is full")

    run(body)
