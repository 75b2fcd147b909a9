"""The Procrastinate adapter's own seams, on Procrastinate's InMemoryConnector and a memory store.

No Postgres and no subprocess here: a worker drains the in-memory queue in
this process (``wait=False``). These check the adapter's decisions (what is
recorded, which job is deferred and when); tests/test_durable.py checks the
same behaviour end to end on real Postgres with real worker processes.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import procrastinate
import pytest
from durable_support import generated, pb
from durable_worker import MemoryEffects, build
from procrastinate.testing import InMemoryConnector

import docket_runtime.errors
from docket_runtime import context
from docket_runtime.durable import (
    RESUME_TASK,
    SCHEDULE_TASK,
    STORE_RETRY_DELAY,
    Registry,
    cancel,
    enqueue,
    install,
    job_states,
    lock_key,
    requeue,
    run_worker,
    schedule,
)
from docket_runtime.stores import MemoryStore, StoreUnavailable


@pytest.fixture(scope="module", autouse=True)
def gen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generated(tmp_path_factory)


class Harness:
    """An in-memory app, store and registry, with the graphs of durabletest.orders."""

    def __init__(self, *, durable_all: bool = False) -> None:
        self.store = MemoryStore()
        self.effects = MemoryEffects()
        self.registry: Registry = build(self.store, self.effects, durable_all=durable_all)
        self.connector = InMemoryConnector()
        self.app = procrastinate.App(connector=self.connector)
        install(self.app, self.registry)

    def graph(self, name: str) -> Any:
        graph = self.registry.get(f"durabletest.{name}")
        assert graph is not None
        return graph

    async def enqueue(self, graph: str, target: str, execution_id: str, **inputs: Any) -> Any:
        return await enqueue(
            self.app,
            self.graph(graph),
            getattr(pb(), target),
            inputs,
            execution_id=execution_id,
        )

    async def drain(self, until: Callable[[], Awaitable[bool]] | None = None) -> None:
        """Run the worker until the queue is empty; with ``until``, again until it holds."""
        for _ in range(100):
            await run_worker(
                self.app,
                self.registry,
                wait=False,
                install_signal_handlers=False,
                polling_interval=0.01,
                heartbeat_interval=1.0,
                stalled_timeout=5.0,
                sweep_interval=60.0,
            )
            if until is None or await until():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the condition never held")

    async def status(self, execution_id: str) -> str | None:
        row = await self.store.get_execution(execution_id)
        return None if row is None else row.status

    def ended(self, execution_id: str) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return await self.status(execution_id) in ("succeeded", "failed", "cancelled")

        return check

    def jobs(self, execution_id: str) -> list[dict[str, Any]]:
        key = lock_key(execution_id)
        return sorted(
            (j for j in self.connector.jobs.values() if j["lock"] == key), key=lambda j: j["id"]
        )


@asynccontextmanager
async def harness(**options: Any) -> AsyncIterator[Harness]:
    h = Harness(**options)
    async with h.app.open_async():
        yield h


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), 30))


# -- enqueue ----------------------------------------------------------------------------------


def test_enqueue_records_the_execution_and_defers_one_job_with_its_locks() -> None:
    async def body() -> None:
        async with harness() as h:
            order = pb().Order(order_id="o-1", amount_cents=500)
            job_id = await h.enqueue("Orders", "Confirmation", "o-1", order=order)
            assert job_id is not None
            row = await h.store.get_execution("o-1")
            assert row is not None
            assert (row.status, row.graph, row.target) == (
                "queued",
                "durabletest.Orders",
                "durabletest.Confirmation",
            )
            assert row.inputs is not None
            stored = json.loads(row.inputs)["order"]
            assert stored["type"] == "durabletest.Order"
            assert stored["json"] == {"order_id": "o-1", "amount_cents": "500"}
            (job,) = h.jobs("o-1")
            assert (job["task_name"], job["args"], job["queue_name"]) == (
                RESUME_TASK,
                {"execution_id": "o-1"},
                "docket",
            )
            assert job["lock"] == job["queueing_lock"] == "docket:o-1"

            # The id is an idempotency key: queued already, so no second job.
            assert await h.enqueue("Orders", "Confirmation", "o-1", order=order) is None
            assert len(h.jobs("o-1")) == 1
            await h.drain()
            assert await h.status("o-1") == "succeeded"
            confirmation = await h.graph("Orders").fetch(pb().Confirmation, execution_id="o-1")
            assert confirmation.charge_id == "ch-o-1"
            # Done: enqueueing it again does nothing at all.
            assert await h.enqueue("Orders", "Confirmation", "o-1", order=order) is None
            await h.drain()
            assert h.effects.count("o-1", "ChargeCard") == 1

    run(body)


def test_enqueue_checks_inputs_and_refuses_an_id_of_another_execution() -> None:
    async def body() -> None:
        async with harness() as h:
            order = pb().Order(order_id="o-2", amount_cents=1)
            with pytest.raises(TypeError, match="needs input order"):
                await h.enqueue("Orders", "Confirmation", "x")
            with pytest.raises(TypeError, match="takes no input seed"):
                await h.enqueue("Orders", "Confirmation", "x", order=order, seed=pb().Seed())
            with pytest.raises(TypeError, match=r"must be durabletest\.Order"):
                await h.enqueue("Orders", "Confirmation", "x", order=pb().Seed())
            with pytest.raises(TypeError, match=r"cannot produce durabletest\.Report"):
                await h.enqueue("Orders", "Report", "x", order=order)
            assert h.connector.jobs == {} and await h.store.get_execution("x") is None

            await h.enqueue("Orders", "Confirmation", "o-2", order=order)
            other = pb().Order(order_id="o-2", amount_cents=2)
            with pytest.raises(ValueError) as caught:
                await h.enqueue("Orders", "Confirmation", "o-2", order=other)
            assert str(caught.value) == (
                "durabletest.Orders.enqueue(): execution id 'o-2' was used with other inputs: "
                "stored durabletest.Orders -> durabletest.Confirmation with "
                'order=durabletest.Order(order_id: "o-2" amount_cents: 1); given '
                "durabletest.Orders -> durabletest.Confirmation with "
                'order=durabletest.Order(order_id: "o-2" amount_cents: 2). Use a new id'
            )
            with pytest.raises(ValueError, match="was used with other inputs: stored"):
                await h.enqueue("Orders", "Shipment", "o-2", order=order)

    run(body)


def test_enqueue_and_schedule_check_ids_before_anything_is_written() -> None:
    async def body() -> None:
        async with harness() as h:
            order = pb().Order(order_id="o-1", amount_cents=1)
            with pytest.raises(ValueError) as caught:
                await h.enqueue("Orders", "Confirmation", "x" * 256, order=order)
            assert str(caught.value) == (
                f"durabletest.Orders.enqueue(): execution id {'x' * 40 + '...'!r} is 256 bytes "
                "long in UTF-8; an execution id is a non-empty string without NUL characters, "
                "at most 255 bytes in UTF-8"
            )
            with pytest.raises(ValueError, match=r"'o\\x001' holds a NUL character"):
                await h.enqueue("Orders", "Confirmation", "o\x001", order=order)
            with pytest.raises(ValueError, match="'' is empty"):
                await h.enqueue("Orders", "Confirmation", "", order=order)
            assert h.connector.jobs == {} and await h.store.list_executions() == []
            # A schedule whose name makes ids too long is refused when it is defined.
            with pytest.raises(ValueError) as caught:
                schedule(
                    h.app,
                    h.registry,
                    h.graph("Tally"),
                    pb().Total,
                    cron="0 0 1 1 *",
                    inputs=lambda previous: {},
                    name="s" * 240,
                )
            assert str(caught.value).startswith(
                f"schedule {'s' * 40!r}: execution id {'s' * 40 + '...'!r} is 261 bytes long"
            )
            assert h.app.periodic_registry.periodic_tasks == {}
            # The longest id runs, and so does its child, whose id is longer (not checked).
            longest = "d" * 255
            await h.enqueue("Delivery", "Notice", longest, order=order)
            await h.drain(until=h.ended(longest))
            assert await h.status(longest) == "succeeded"
            assert await h.status(f"{longest}/Fulfil") == "succeeded"

    run(body)


def test_registry_refuses_graphs_that_do_not_record_into_its_store() -> None:
    async def body() -> None:
        async with harness() as h:
            dk = sys.modules["durabletest.orders_docket"]
            steps = h.graph("Orders").steps
            registry = Registry(h.store)
            with pytest.raises(ValueError, match="record=True"):
                registry.add(dk.Orders(steps, store=h.store))
            with pytest.raises(ValueError, match="record=True"):
                registry.add(dk.Orders(steps, store=MemoryStore(), record=True))
            delivery = h.graph("Delivery")
            child = dk.Fulfilment(delivery.subgraphs["durabletest.Fulfilment"].steps)
            unrecorded = dk.Delivery(
                delivery.steps,
                store=h.store,
                record=True,
                subgraphs={"durabletest.Fulfilment": child},
            )
            with pytest.raises(ValueError, match=r"durabletest.Delivery -> durabletest.Fulfilment"):
                registry.add(unrecorded)
            assert registry.names == []

    run(body)


# -- durable retries, hand-offs, children ---------------------------------------------------


def test_a_durable_retry_is_a_scheduled_job_and_attempts_count_across_jobs() -> None:
    async def body() -> None:
        async with harness() as h:
            order = pb().Order(order_id="notify-flaky-1", amount_cents=1)
            await h.enqueue("Delivery", "Notice", "notify-flaky-1", order=order)
            await h.drain()  # the first job: Notify fails, a retry job is scheduled
            row = await h.store.get_execution("notify-flaky-1")
            assert row is not None and row.status == "waiting"
            assert row.wake_at is not None and row.error is not None
            assert "'Notify' failed on attempt 1" in row.error
            first, retry = h.jobs("notify-flaky-1")
            assert first["status"] == "succeeded"  # the job ended normally
            assert retry["status"] == "todo"
            assert retry["scheduled_at"] == row.wake_at

            await h.drain(until=h.ended("notify-flaky-1"))
            assert await h.status("notify-flaky-1") == "succeeded"
            runs = {r.step: r for r in await h.store.get_step_runs("notify-flaky-1")}
            assert (runs["Notify"].status, runs["Notify"].attempts) == ("succeeded", 2)
            assert h.effects.count("notify-flaky-1", "Notify:1") == 1
            assert h.effects.count("notify-flaky-1", "Notify:2") == 1
            # The parent's retry ran its child again: the child's kept Pack was reused.
            child = "notify-flaky-1/Fulfil"
            assert h.effects.count(child, "Pack") == 1
            assert [j["status"] for j in h.jobs("notify-flaky-1")] == ["succeeded"] * 2

    run(body)


def test_a_worker_clock_off_by_n_seconds_moves_its_durable_retries_by_n_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # durable.md, Faults: wake_at is computed on the worker's clock (the queue fires it on the
    # database's), so a skewed worker moves its retries by its skew.
    skew = timedelta(hours=1)

    class Skewed(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return datetime.now(tz) + skew

    monkeypatch.setattr(docket_runtime.errors, "datetime", Skewed)

    async def body() -> None:
        async with harness() as h:
            order = pb().Order(order_id="notify-flaky-skew", amount_cents=1)
            await h.enqueue("Delivery", "Notice", "notify-flaky-skew", order=order)
            before = datetime.now(UTC)
            await h.drain()
            row = await h.store.get_execution("notify-flaky-skew")
            assert row is not None and row.status == "waiting" and row.wake_at is not None
            _, retry = h.jobs("notify-flaky-skew")
            ahead = (retry["scheduled_at"] - before).total_seconds()
            assert skew.total_seconds() < ahead < skew.total_seconds() + 5

    run(body)


def test_a_childs_durable_retry_suspends_the_parent_and_resumes_the_child() -> None:
    async def body() -> None:
        async with harness() as h:
            order = pb().Order(order_id="label-flaky-1", amount_cents=1)
            await h.enqueue("Delivery", "Notice", "label-flaky-1", order=order)
            await h.drain()
            child = "label-flaky-1/Fulfil"
            parent_row = await h.store.get_execution("label-flaky-1")
            child_row = await h.store.get_execution(child)
            assert parent_row is not None and child_row is not None
            assert (parent_row.status, child_row.status) == ("waiting", "waiting")
            assert parent_row.wake_at == child_row.wake_at

            await h.drain(until=h.ended("label-flaky-1"))
            assert await h.status("label-flaky-1") == "succeeded"
            assert await h.status(child) == "succeeded"
            assert h.effects.count(child, "Pack") == 1  # kept: not packed twice
            assert h.effects.count(child, "PrintLabel:1") == 1
            assert h.effects.count(child, "PrintLabel:2") == 1
            assert h.effects.count("label-flaky-1", "Notify:1") == 1
            assert len(h.jobs("label-flaky-1")) == 2

    run(body)


def test_durable_all_retries_every_step_through_the_queue() -> None:
    async def body() -> None:
        order = pb().Order(order_id="check-flaky-1", amount_cents=1)
        # By default Check (not durable) retries in memory: one job.
        async with harness() as h:
            await h.enqueue("Delivery", "Notice", "check-flaky-1", order=order)
            await h.drain(until=h.ended("check-flaky-1"))
            assert await h.status("check-flaky-1") == "succeeded"
            assert len(h.jobs("check-flaky-1")) == 1
        # With durable_all its retry is a job too.
        async with harness(durable_all=True) as h:
            await h.enqueue("Delivery", "Notice", "check-flaky-1", order=order)
            await h.drain(until=h.ended("check-flaky-1"))
            assert await h.status("check-flaky-1") == "succeeded"
            assert len(h.jobs("check-flaky-1")) == 2
            assert h.effects.count("check-flaky-1", "Check:2") == 1

    run(body)


def test_hand_off_continues_the_execution_in_new_jobs() -> None:
    async def body() -> None:
        async with harness() as h:
            await h.enqueue("Chain", "Report", "chain-1", seed=pb().Seed(value=1))
            await h.drain(until=h.ended("chain-1"))
            report = await h.status("chain-1")
            assert report == "succeeded"
            # First and Second each handed off after their checkpoint: three jobs in all.
            assert [j["status"] for j in h.jobs("chain-1")] == ["succeeded"] * 3
            for step in ("First", "Second", "Third"):
                assert h.effects.count("chain-1", step) == 1

    run(body)


def test_hand_off_outside_a_durable_worker_is_ignored() -> None:
    async def body() -> None:
        async with harness() as h:
            report = await h.graph("Chain").run(pb().Report, seed=pb().Seed(value=1))
            assert report.value == 25
        # A step context outside any execution accepts the call too.
        context().hand_off()

    run(body)


def test_a_failure_that_is_not_retried_fails_the_execution_not_the_job() -> None:
    async def body() -> None:
        async with harness() as h:
            order = pb().Order(order_id="bad", amount_cents=0)
            await h.enqueue("Orders", "Confirmation", "bad", order=order)
            await h.drain()
            row = await h.store.get_execution("bad")
            assert row is not None and row.status == "failed"
            assert row.error is not None and "amount must be positive" in row.error
            assert [j["status"] for j in h.jobs("bad")] == ["succeeded"]
            # Enqueueing a failed execution again queues it again (one more attempt).
            assert await h.enqueue("Orders", "Confirmation", "bad", order=order) is not None
            assert await h.status("bad") == "queued"

    run(body)


def test_a_worker_without_the_graph_fails_the_execution_with_a_reason() -> None:
    async def body() -> None:
        async with harness() as h:
            order = pb().Order(order_id="o-3", amount_cents=1)
            await h.enqueue("Orders", "Confirmation", "o-3", order=order)
            h.registry = Registry(h.store)  # a worker that knows no graph
            await h.drain()
            row = await h.store.get_execution("o-3")
            assert row is not None and row.status == "failed"
            assert row.error is not None and "not in this worker's registry" in row.error

    run(body)


# -- cancellation ----------------------------------------------------------------------------


def test_cancelling_a_queued_execution_cancels_its_job() -> None:
    async def body() -> None:
        async with harness() as h:
            nap = pb().Nap(seconds=0.0)
            await h.enqueue("Sleeper", "Woken", "nap-1", nap=nap)
            assert await cancel(h.app, h.store, "nap-1")
            assert await h.status("nap-1") == "cancelled"
            assert [j["status"] for j in h.jobs("nap-1")] == ["cancelled"]
            await h.drain()
            assert h.effects.rows == []
            assert await cancel(h.app, h.store, "nap-1")  # still cancelled: idempotent
            assert not await cancel(h.app, h.store, "no-such-execution")
            # Enqueued again, it runs.
            await h.enqueue("Sleeper", "Woken", "nap-1", nap=nap)
            await h.drain()
            assert await h.status("nap-1") == "succeeded"
            assert not await cancel(h.app, h.store, "nap-1")  # it ended: nothing to cancel

    run(body)


def test_requeue_enqueues_a_failed_or_cancelled_execution_from_its_stored_inputs() -> None:
    async def body() -> None:
        async with harness() as h:
            await h.enqueue("Orders", "Confirmation", "bad", order=pb().Order(order_id="bad"))
            await h.drain()
            assert await h.status("bad") == "failed"  # amount 0: Validate refuses it
            (first,) = h.jobs("bad")
            job = await requeue(h.app, h.store, "bad")  # no graph needed: the stored inputs
            assert job is not None and await h.status("bad") == "queued"
            assert [(j["id"], j["status"], j["queue_name"]) for j in h.jobs("bad")] == [
                (first["id"], "succeeded", "docket"),
                (job, "todo", "docket"),  # the queue of its last job
            ]
            assert await requeue(h.app, h.store, "bad") is None  # a job is pending
            (pending,) = (await job_states(h.app, ["bad"]))["bad"]
            assert (pending.id, pending.status, pending.stalled) == (job, "todo", False)
            assert await job_states(h.app, ["none"]) == {"none": []}

            await h.enqueue("Sleeper", "Woken", "nap", nap=pb().Nap(seconds=0.0))
            assert await cancel(h.app, h.store, "nap")
            assert await requeue(h.app, h.store, "nap", queue="elsewhere") is not None
            assert [j["queue_name"] for j in h.jobs("nap")] == ["docket", "elsewhere"]
            await h.drain()  # the worker takes the docket queue only
            assert await h.status("nap") == "queued"

            await h.enqueue("Tally", "Total", "t", tally_input=pb().TallyInput())
            await h.drain()
            with pytest.raises(ValueError, match="is succeeded"):
                await requeue(h.app, h.store, "t")
            with pytest.raises(LookupError):
                await requeue(h.app, h.store, "nope")
            await h.store.start_execution("local", graph="durabletest.Tally", target="x")
            await h.store.finish_execution("local", status="failed")
            with pytest.raises(ValueError, match="ran in process"):
                await requeue(h.app, h.store, "local")

    run(body)


def test_a_job_that_finds_its_execution_cancelled_runs_nothing() -> None:
    async def body() -> None:
        async with harness() as h:
            await h.enqueue("Sleeper", "Woken", "nap-2", nap=pb().Nap(seconds=0.0))
            await h.store.cancel_execution("nap-2")  # a cancel that raced with the job
            await h.drain()
            assert await h.status("nap-2") == "cancelled"
            assert h.effects.rows == []

    run(body)


# -- cron ------------------------------------------------------------------------------------


def test_a_schedule_tick_enqueues_a_run_that_reads_the_previous_output() -> None:
    async def body() -> None:
        async with harness() as h:
            seen: list[Any] = []

            def inputs(previous: Any) -> dict[str, Any]:
                seen.append(previous)
                count = 0 if previous is None else previous.count
                return {"tally_input": pb().TallyInput(previous=count)}

            # Once a year: the worker's own periodic deferrer fires nothing during the test.
            yearly = "0 0 1 1 *"
            name = schedule(
                h.app, h.registry, h.graph("Tally"), pb().Total, cron=yearly, inputs=inputs
            )
            assert name == "durabletest.Tally:durabletest.Total"
            (periodic,) = [
                p for p in h.app.periodic_registry.periodic_tasks.values() if p.periodic_id == name
            ]
            assert periodic.task.name == SCHEDULE_TASK
            tick = h.app.configure_task(SCHEDULE_TASK)
            start = int(datetime(2030, 1, 1, tzinfo=UTC).timestamp())
            for minute in range(3):
                await tick.defer_async(timestamp=start + 60 * minute, schedule=name)
                await h.drain()
            ids = [f"{name}@2030-01-01T00:0{m}:00Z" for m in range(3)]
            totals = [await h.graph("Tally").fetch(pb().Total, execution_id=i) for i in ids]
            assert [t.count for t in totals] == [1, 2, 3]
            assert seen[0] is None and [s.count for s in seen[1:]] == [1, 2]
            with pytest.raises(ValueError, match="exists already"):
                schedule(
                    h.app, h.registry, h.graph("Tally"), pb().Total, cron="* * * * *", inputs=inputs
                )

    run(body)


def test_a_schedule_reads_the_previous_output_even_when_its_step_keeps_nothing() -> None:
    async def body() -> None:
        async with harness() as h:
            seen: list[Any] = []

            def inputs(previous: Any) -> dict[str, Any]:
                seen.append(previous)
                return {"seed": pb().Seed(value=0 if previous is None else previous.value)}

            # Step Third of Chain keeps nothing: each durable run keeps its value anyway.
            # (The generated schedule method: the untyped form is tested above.)
            name = h.graph("Chain").schedule(
                h.app, h.registry, pb().Report, cron="0 0 1 1 *", inputs=inputs
            )
            tick = h.app.configure_task(SCHEDULE_TASK)
            start = int(datetime(2030, 1, 1, tzinfo=UTC).timestamp())
            for minute in range(2):
                await tick.defer_async(timestamp=start + 60 * minute, schedule=name)
                await h.drain()
            assert seen == [None, pb().Report(value=15)]
            last = await h.graph("Chain").result(pb().Report, f"{name}@2030-01-01T00:01:00Z")
            assert last == pb().Report(value=165)

    run(body)


# -- packaging --------------------------------------------------------------------------------


def test_the_runtime_imports_without_procrastinate_and_the_adapter_names_the_extra() -> None:
    script = (
        "import sys\n"
        "sys.modules['procrastinate'] = None\n"
        "import docket_runtime, docket_runtime.stores\n"
        "try:\n"
        "    import docket_runtime.durable\n"
        "except ImportError as err:\n"
        "    print(err)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "docket_runtime.durable needs Procrastinate" in done.stdout
    assert "pip install 'docket-proto[procrastinate]'" in done.stdout


def test_the_public_api_is_pinned() -> None:
    import docket_runtime.durable as durable

    assert durable.__all__ == [
        "DEFAULT_QUEUE",
        "RESUME_TASK",
        "SCHEDULE_TASK",
        "App",
        "Connection",
        "JobState",
        "Registry",
        "apply_queue_schema",
        "blueprint",
        "cancel",
        "enqueue",
        "install",
        "job_states",
        "lock_key",
        "make_blueprint",
        "requeue",
        "run_worker",
        "schedule",
        "sweep_stalled",
    ]
    assert all(hasattr(durable, name) for name in durable.__all__)


def test_retry_later_carries_what_a_worker_needs() -> None:
    from docket_runtime import RetryLater, Suspended

    before = datetime.now(UTC)
    signal = RetryLater("Ship", 2, 1.5, ConnectionError("down"))
    assert isinstance(signal, Suspended) and not isinstance(signal, ConnectionError)
    assert (signal.step, signal.attempt, signal.delay) == ("Ship", 2, 1.5)
    assert before + timedelta(seconds=1.5) <= signal.wake_at
    assert signal.wake_at <= datetime.now(UTC) + timedelta(seconds=1.5)
    assert "retrying in 1.5s" in str(signal)


def test_a_store_failure_mid_run_resumes_the_execution_later() -> None:
    class Flaky(MemoryStore):
        """A store whose database vanishes once, when a step starts."""

        failed = False

        async def step_started(self, execution_id: str, step: str, **kw: Any) -> int:
            if not self.failed:
                self.failed = True
                raise StoreUnavailable("connection lost")
            return await super().step_started(execution_id, step, **kw)

    async def body() -> None:
        async with harness() as h:
            h.store = Flaky()
            h.registry = build(h.store, h.effects)
            install(h.app, h.registry)
            nap = pb().Nap(seconds=0.0)
            await h.enqueue("Sleeper", "Woken", "nap-3", nap=nap)
            before = datetime.now(UTC)
            await h.drain()
            first, later = h.jobs("nap-3")
            assert first["status"] == "succeeded" and later["status"] == "todo"
            delay = (later["scheduled_at"] - before).total_seconds()
            assert STORE_RETRY_DELAY - 0.5 < delay < STORE_RETRY_DELAY + 1

    run(body)


def test_run_worker_wants_a_stalled_timeout_longer_than_the_heartbeat() -> None:
    async def body() -> None:
        async with harness() as h:
            with pytest.raises(ValueError, match="stalled_timeout"):
                await run_worker(h.app, h.registry, heartbeat_interval=5, stalled_timeout=5)
            # "Above", as the docs say: twice the heartbeat is refused too.
            with pytest.raises(ValueError) as caught:
                await run_worker(h.app, h.registry, heartbeat_interval=1, stalled_timeout=2)
            assert str(caught.value) == (
                "stalled_timeout (2s) must be longer than twice heartbeat_interval (1s)"
            )

    run(body)
