"""The execution lifecycle and its records, on SQLite and Postgres.

Each test pins one promise of the records (``docket_executions``,
``docket_step_runs``, ``docket_step_attempts``) or of at-most-once claims,
and checks it with plain SQL on a connection of the test's own:

- every execution is recorded, batches and their items included;
- a cancelled attempt is recorded ``cancelled`` with its finish time, whoever
  cancelled it (the caller, an abort of a sibling, the deadline);
- a claim whose step never started is released or taken over, never left for
  a person; only a claim whose step ran without a result needs ``settle``;
- ``on_error="collect"`` collects every item failure, ``StepClaimed`` included;
- every attempt has a row, and cache hits are counted;
- ``GLOBAL`` keys belong to their graph unless a namespace is shared on purpose;
- a step's ``SystemExit`` or ``KeyboardInterrupt`` stops the execution and
  leaves nothing ``running``.

The SIGKILL test of a batch of side effects runs ``tests/persistence_worker.py``.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import raw_sql
from test_persistence import (
    SAFETY_NET,
    WORKER,
    OrderSteps,
    ScoreSteps,
    an_order,
    kill,
    migrated,
    opened,
    run,
    wait_until,
)

from docket_runtime import ItemError, ItemFailed, StepClaimed
from docket_runtime._runner import CLAIM_STALE_AFTER
from docket_runtime.stores import Store


@pytest.fixture(scope="module")
def pb(gen_dir: Path) -> Any:
    return importlib.import_module("testgraphs.orders_pb2")


@pytest.fixture(scope="module")
def dk(gen_dir: Path) -> Any:
    return importlib.import_module("testgraphs.orders_docket")


def step_runs(url: str, execution_id: str) -> dict[str, tuple[str, bool]]:
    """Each step's (status, whether it has a finish time) in one execution."""
    rows = raw_sql(
        url,
        "SELECT step, status, finished_at IS NOT NULL FROM docket_step_runs WHERE execution_id = ?",
        (execution_id,),
    )
    return {step: (status, bool(finished)) for step, status, finished in rows}


def executions(url: str) -> dict[str, str]:
    return dict(raw_sql(url, "SELECT execution_id, status FROM docket_executions"))


class FailingOn(OrderSteps):
    """Orders whose ChargeCard fails for the orders named in ``fail``."""

    def __init__(self, pb: Any, fail: set[str], tag: str = "a") -> None:
        super().__init__(pb, tag)
        self.fail = fail

    async def charge_card(self, order: Any, /) -> Any:
        if order.order_id in self.fail:
            self.calls["ChargeCard"] += 1
            raise ValueError(f"card of {order.order_id} declined")
        return await super().charge_card(order)


# 1. Every execution is recorded, batches included ---------------------------------------------


def test_a_recorded_batch_writes_the_batch_and_every_item(db_url: str, pb: Any, dk: Any) -> None:
    migrated(db_url)
    orders = [an_order(pb, f"o-{i}") for i in range(3)]

    async def body() -> None:
        async with await opened(db_url) as store:
            graph = dk.Orders(FailingOn(pb, {"o-1"}), store=store, record=True)
            results = await graph.run_batch(
                pb.Confirmation, orders, execution_id="b", on_error="collect"
            )
            assert [type(r).__name__ for r in results] == [
                "Confirmation",
                "ItemError",
                "Confirmation",
            ]
            with pytest.raises(ItemFailed):
                await graph.run_batch(pb.Confirmation, orders, execution_id="c", max_concurrency=1)

    run(body())
    assert executions(db_url) == {
        "b": "succeeded",
        "b/0": "succeeded",
        "b/1": "failed",
        "b/2": "succeeded",
        # One at a time: item 2 never started, so it has no row.
        "c": "failed",
        "c/0": "succeeded",
        "c/1": "failed",
    }
    [(error,)] = raw_sql(db_url, "SELECT error FROM docket_executions WHERE execution_id = 'b/1'")
    assert error.startswith("StepFailed: ") and "declined" in error


def test_items_in_flight_when_a_batch_stops_are_recorded_cancelled(
    db_url: str, pb: Any, dk: Any
) -> None:
    migrated(db_url)
    orders = [an_order(pb, f"o-{i}") for i in range(3)]

    async def body() -> None:
        async with await opened(db_url) as store:
            steps = FailsOnceOthersShip(pb)
            steps.gates["Ship"] = asyncio.Event()  # never set: items 1 and 2 wait in Ship
            graph = dk.Orders(steps, store=store, record=True)
            with pytest.raises(ItemFailed) as caught:
                await graph.run_batch(pb.Confirmation, orders, execution_id="b")
            assert caught.value.index == 0

    run(body())
    assert executions(db_url) == {
        "b": "failed",
        "b/0": "failed",
        "b/1": "cancelled",
        "b/2": "cancelled",
    }
    for item in ("b/1", "b/2"):
        assert step_runs(db_url, item)["Ship"] == ("cancelled", True)


class FailsOnceOthersShip(OrderSteps):
    """Orders where o-0's charge fails once the two other orders are in Ship."""

    async def charge_card(self, order: Any, /) -> Any:
        if order.order_id == "o-0":
            while self.calls["Ship"] < 2:
                await asyncio.sleep(0.005)
            raise ValueError("declined")
        return await super().charge_card(order)


# 2. Cancelled attempts are recorded cancelled ---------------------------------------------------


def test_a_step_cancelled_by_the_caller_is_recorded_cancelled(
    db_url: str, pb: Any, dk: Any
) -> None:
    migrated(db_url)

    async def body() -> None:
        async with await opened(db_url) as store:
            steps = OrderSteps(pb)
            steps.gates["Ship"] = asyncio.Event()
            graph = dk.Orders(steps, store=store, record=True)
            task = asyncio.create_task(
                graph.run(pb.Confirmation, order=an_order(pb, "o-1"), execution_id="x")
            )
            await steps.entered["Ship"].wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    run(body())
    assert step_runs(db_url, "x")["Ship"] == ("cancelled", True)
    assert executions(db_url) == {"x": "cancelled"}
    assert raw_sql(
        db_url, "SELECT attempt, status FROM docket_step_attempts WHERE step = 'Ship'"
    ) == [(1, "cancelled")]


def test_a_step_cut_by_the_deadline_is_recorded_cancelled(db_url: str, pb: Any, dk: Any) -> None:
    migrated(db_url)

    async def body() -> None:
        async with await opened(db_url) as store:
            steps = OrderSteps(pb)
            steps.gates["Ship"] = asyncio.Event()
            graph = dk.Orders(steps, store=store, record=True)
            with pytest.raises(TimeoutError):
                await graph.run(
                    pb.Confirmation, order=an_order(pb, "o-1"), execution_id="x", deadline=0.3
                )

    run(body())
    assert step_runs(db_url, "x")["Ship"] == ("cancelled", True)
    assert executions(db_url) == {"x": "failed"}


class BranchSteps:
    """The Branches graph of resilience.proto: Side waits until cancelled; Main runs ``main``."""

    def __init__(self, pb: Any, main: Callable[[], Awaitable[None]]) -> None:
        self.pb = pb
        self.main_action = main
        self.side_started = asyncio.Event()

    async def main(self, ticket: Any, /) -> Any:
        await self.side_started.wait()
        await self.main_action()
        return self.pb.Core(value=1)

    async def side(self, ticket: Any, /) -> Any:
        self.side_started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def enrich(self, ticket: Any, /) -> Any:
        return self.pb.Bonus(value=3)

    async def combine(self, core: Any, aside: Any, bonus: Any, /) -> Any:
        return self.pb.Report(core=core.value, aside=aside.value)


@pytest.fixture(scope="module")
def rpb(gen_dir: Path) -> Any:
    return importlib.import_module("testgraphs.resilience_pb2")


@pytest.fixture(scope="module")
def rdk(gen_dir: Path) -> Any:
    return importlib.import_module("testgraphs.resilience_docket")


async def _abort() -> None:
    from docket_runtime import Abort

    raise Abort("fraud")


async def _exit() -> None:
    raise SystemExit(3)


async def _interrupt() -> None:
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("action", "raised", "main_status", "error"),
    [
        (_abort, "ExecutionAborted", "failed", "ExecutionAborted: "),
        (_exit, "SystemExit", "failed", "SystemExit: 3"),
        (_interrupt, "KeyboardInterrupt", "failed", "KeyboardInterrupt: "),
    ],
)
def test_a_sibling_stopping_the_execution_leaves_nothing_running(
    db_url: str,
    rpb: Any,
    rdk: Any,
    action: Callable[[], Awaitable[None]],
    raised: str,
    main_status: str,
    error: str,
) -> None:
    """Abort, SystemExit and KeyboardInterrupt in Main: Side is cancelled, all is recorded.

    ``SystemExit`` and ``KeyboardInterrupt`` reach the caller unwrapped (the
    process is asked to stop); the records are written first.
    """
    migrated(db_url)

    async def body() -> None:
        async with await opened(db_url) as store:
            graph = rdk.Branches(BranchSteps(rpb, action), store=store, record=True)
            try:
                await graph.run(rpb.Report, ticket=rpb.Ticket(id=1), execution_id="x")
            except BaseException as exc:
                assert type(exc).__name__ == raised
            else:
                raise AssertionError("the run did not stop")

    run(body())
    runs = step_runs(db_url, "x")
    assert runs["Main"] == (main_status, True)
    assert runs["Side"] == ("cancelled", True)
    assert all(finished for _, finished in runs.values()), runs
    [(status, text)] = raw_sql(db_url, "SELECT status, error FROM docket_executions")
    assert status == "failed" and text.startswith(error)


def test_a_system_exit_in_a_batch_item_stops_the_batch_and_is_recorded(
    db_url: str, pb: Any, dk: Any
) -> None:
    migrated(db_url)

    async def body() -> None:
        async with await opened(db_url) as store:
            steps = OrderSteps(pb)
            steps.charge_error = SystemExit(2)  # type: ignore[assignment]
            graph = dk.Orders(steps, store=store, record=True)
            with pytest.raises(SystemExit):
                await graph.run_batch(pb.Charge, [an_order(pb, "o-0")], execution_id="b")

    run(body())
    assert executions(db_url) == {"b": "failed", "b/0": "failed"}
    assert step_runs(db_url, "b/0")["ChargeCard"] == ("failed", True)


# 3, 4. Claims of a batch rerun, and collect ---------------------------------------------------


class SlowClaims:
    """A real store whose claims take ``delay`` seconds before they are sent, for the
    orders not in ``fast``: a cancellation then lands while the claim is in flight."""

    def __init__(self, store: Store, delay: float) -> None:
        self._store = store
        self.delay = delay

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def claim_step(self, execution_id: str, step: str, **kwargs: Any) -> Any:
        if not execution_id.endswith("/2"):
            await asyncio.sleep(self.delay)
        return await self._store.claim_step(execution_id, step, **kwargs)


def test_a_batch_rerun_stopped_by_a_claim_leaves_no_claim_of_its_own(
    db_url: str, pb: Any, dk: Any
) -> None:
    migrated(db_url)
    orders = [an_order(pb, f"o-{i}") for i in range(8)]

    async def body() -> None:
        async with await opened(db_url) as store:
            # First run, one at a time: o-2's charge fails, the batch stops there.
            first = dk.Orders(FailingOn(pb, {"o-2"}), store=store)
            with pytest.raises(ItemFailed):
                await first.run_batch(pb.Charge, orders, execution_id="b", max_concurrency=1)
            # The rerun meets o-2's failed claim while the others' claims are in flight.
            steps = OrderSteps(pb, tag="r")
            rerun = dk.Orders(steps, store=SlowClaims(store, 0.2))
            with pytest.raises(ItemFailed) as caught:
                await rerun.run_batch(pb.Charge, orders, execution_id="b", max_concurrency=4)
            assert isinstance(caught.value.error, StepClaimed)
            assert steps.calls["ChargeCard"] == 0

    run(body())
    claims = dict(
        raw_sql(
            db_url, "SELECT execution_id, status FROM docket_step_runs WHERE step = 'ChargeCard'"
        )
    )
    # Only the first run's claims: o-0 and o-1 charged, o-2 failed; nothing of the rerun's.
    assert claims == {"b/0": "succeeded", "b/1": "succeeded", "b/2": "failed"}


def test_collect_collects_a_claimed_item_and_runs_the_others(db_url: str, pb: Any, dk: Any) -> None:
    migrated(db_url)
    orders = [an_order(pb, f"o-{i}") for i in range(4)]

    async def body() -> None:
        async with await opened(db_url) as store:
            first = dk.Orders(FailingOn(pb, {"o-1"}), store=store)
            await first.run_batch(pb.Charge, orders, execution_id="b", on_error="collect")
            steps = OrderSteps(pb, tag="r")
            again = dk.Orders(steps, store=store)
            results = await again.run_batch(pb.Charge, orders, execution_id="b", on_error="collect")
            assert isinstance(results[1], ItemError)
            assert isinstance(results[1].error, StepClaimed)
            assert results[1].error.status == "failed"
            # Each order's charge from the first run, read back.
            charged = [r.charge_id.rpartition("-")[0] for i, r in enumerate(results) if i != 1]
            assert charged == ["ch-a-o-0", "ch-a-o-2", "ch-a-o-3"]
            assert steps.calls["ChargeCard"] == 0  # the others were read back, not charged

    run(body())


# Settling a claim ------------------------------------------------------------------------------


def test_a_claimed_claim_is_taken_over_only_once_stale(db_url: str, pb: Any, dk: Any) -> None:
    """A claim of another host whose step never started: left alone while fresh (its owner
    may be about to start it), taken over once older than CLAIM_STALE_AFTER."""
    migrated(db_url)
    stale = datetime.now(UTC) - timedelta(seconds=CLAIM_STALE_AFTER + 5)

    async def body() -> None:
        async with await opened(db_url) as store:
            await store.claim_step("fresh", "ChargeCard", owner="elsewhere:1:aa")
            await store.claim_step("stale", "ChargeCard", owner="elsewhere:1:bb", now=stale)
            steps = OrderSteps(pb, tag="t")
            graph = dk.Orders(steps, store=store)
            with pytest.raises(StepClaimed) as caught:
                await graph.run(pb.Charge, order=an_order(pb, "o-1"), execution_id="fresh")
            assert (caught.value.status, caught.value.owner) == ("claimed", "elsewhere:1:aa")
            charge = await graph.run(pb.Charge, order=an_order(pb, "o-2"), execution_id="stale")
            assert charge.charge_id == "ch-t-o-2-1" and steps.charges == 1

    run(body())
    assert step_runs(db_url, "stale")["ChargeCard"] == ("succeeded", True)
    assert step_runs(db_url, "fresh")["ChargeCard"] == ("claimed", False)


def test_settle_with_a_result_or_release(db_url: str, pb: Any, dk: Any) -> None:
    migrated(db_url)

    async def body() -> None:
        async with await opened(db_url) as store:
            for execution_id in ("x", "y"):
                failing = dk.Orders(FailingOn(pb, {"o-1"}), store=store, record=True)
                with pytest.raises(Exception, match="declined"):
                    await failing.run(
                        pb.Confirmation, order=an_order(pb, "o-1"), execution_id=execution_id
                    )
            steps = OrderSteps(pb, tag="s")
            graph = dk.Orders(steps, store=store, record=True)
            with pytest.raises(TypeError, match=r"returns testgraphs\.Charge, not Shipment"):
                await graph.settle("ChargeCard", "x", pb.Shipment(tracking="t"))
            with pytest.raises(ValueError, match="not AT_MOST_ONCE"):
                await graph.settle("Ship", "x", release=True)
            with pytest.raises(ValueError, match="result message, or release=True"):
                await graph.settle("ChargeCard", "x")
            with pytest.raises(ValueError, match="has no claim"):
                await graph.settle("ChargeCard", "nope", release=True)
            with pytest.raises(KeyError):
                await graph.settle("Nope", "x", release=True)
            # x: the charge went through after all; its id is known from the provider.
            await graph.settle("ChargeCard", "x", pb.Charge(charge_id="ch-real", amount_cents=1))
            done = await graph.run(pb.Confirmation, order=an_order(pb, "o-1"), execution_id="x")
            assert done.charge_id == "ch-real"
            # y: it did not: release it, and the next run charges.
            await graph.settle("ChargeCard", "y", release=True)
            done = await graph.run(pb.Confirmation, order=an_order(pb, "o-1"), execution_id="y")
            assert done.charge_id == "ch-s-o-1-1"
            assert steps.charges == 1
            with pytest.raises(ValueError, match="succeeded already"):
                await graph.settle("ChargeCard", "y", release=True)

    run(body())
    assert step_runs(db_url, "x")["ChargeCard"] == ("succeeded", True)


# 6. Every attempt recorded; cache hits counted --------------------------------------------------


PERSISTENCE_DOC = Path(__file__).resolve().parent.parent / "docs" / "persistence.md"


def documented_query(title: str) -> str:
    """docs/persistence.md's SQL query under the comment line starting with ``-- <title>``."""
    text = PERSISTENCE_DOC.read_text()
    start = text.index(f"-- {title}")
    end = text.index(";", start)
    return text[start : end + 1]


def test_every_attempt_has_a_row_and_hits_are_counted(db_url: str, pb: Any, dk: Any) -> None:
    migrated(db_url)

    async def body() -> None:
        async with await opened(db_url) as store:
            steps = OrderSteps(pb)
            steps.ship_failures = 2
            graph = dk.Orders(steps, store=store, record=True)
            await graph.run(pb.Confirmation, order=an_order(pb, "o-2"), execution_id="order-2")
            scoring = dk.Scoring(ScoreSteps(pb), store=store, record=True)
            for text in ("good", "good", "bad", "good"):
                await scoring.run(
                    pb.RiskScore, review=pb.Review(text=text), model=pb.Model(name="m")
                )

    run(body())
    rows = raw_sql(db_url, documented_query("Every attempt of one step"))
    assert [tuple(r[:4]) for r in rows] == [
        (1, "failed", "builtins.ConnectionError", "carrier timed out"),
        (2, "failed", "builtins.ConnectionError", "carrier timed out"),
        (3, "succeeded", None, None),
    ]
    assert all(ms is not None and ms >= 0 for *_, ms in rows)
    [(traceback,)] = raw_sql(
        db_url,
        "SELECT traceback FROM docket_step_attempts WHERE step = 'Ship' AND attempt = 1",
    )
    assert "ConnectionError: carrier timed out" in traceback
    assert step_runs(db_url, "order-2")["Ship"] == ("succeeded", True)
    [(step, hits, runs, rate)] = raw_sql(
        db_url, documented_query("The hit rate of each cached step")
    )
    assert (step, hits, runs, float(rate)) == ("Score", 2, 4, 0.5)


# 7. GLOBAL keys carry the graph's identity -----------------------------------------------------


def test_a_step_of_the_same_name_in_another_graph_gets_no_hit(
    db_url: str, pb: Any, dk: Any
) -> None:
    migrated(db_url)

    async def body() -> None:
        async with await opened(db_url) as store:
            inputs = {"review": pb.Review(text="great"), "model": pb.Model(name="m")}
            first, other = ScoreSteps(pb), ScoreSteps(pb)
            a = await dk.Scoring(first, store=store).run(pb.RiskScore, **inputs)
            b = await dk.ScoringElsewhere(other, store=store).run(pb.RiskScore, **inputs)
            assert (first.calls, other.calls) == (1, 1)
            assert a != b
            again = await dk.ScoringElsewhere(other, store=store).run(pb.RiskScore, **inputs)
            assert (again, other.calls) == (b, 1)

    run(body())


def test_graphs_sharing_a_cache_namespace_share_results(db_url: str, pb: Any, dk: Any) -> None:
    migrated(db_url)

    async def body() -> None:
        async with await opened(db_url) as store:
            inputs = {"review": pb.Review(text="great"), "model": pb.Model(name="m")}
            first, second = ScoreSteps(pb), ScoreSteps(pb)
            a = await dk.SharedScoringA(first, store=store).run(pb.RiskScore, **inputs)
            b = await dk.SharedScoringB(second, store=store).run(pb.RiskScore, **inputs)
            assert (a, first.calls, second.calls) == (b, 1, 0)
            fetched = await dk.SharedScoringB(second, store=store).fetch(
                pb.RiskScore, inputs["review"], inputs["model"]
            )
            assert fetched == a

    run(body())


# 5. SIGKILL of a batch of at-most-once side effects ---------------------------------------------


def effect_rows(url: str) -> Counter[str]:
    return Counter(order_id for (order_id,) in raw_sql(url, "SELECT order_id FROM batch_effects"))


def test_sigkill_of_a_batch_of_side_effects_then_rerun(
    db_url: str, gen_dir: Path, tmp_path: Path, pb: Any, dk: Any
) -> None:
    """90 charges, each an INSERT under a UNIQUE key; the process is killed at about 40.

    Items 40-42 are killed after their effect, before their result is saved
    (``running`` claims: a person settles each); items 43-49 are killed
    between their claim and their step (``claimed``: taken over with no
    manual step); items 50-89 never started. The rerun completes every item
    but the three to settle, one settle call each, and never repeats an effect.
    """
    migrated(db_url)
    create_effects_table(db_url)
    after_effect = [f"o-{i}" for i in (40, 41, 42)]
    config = {
        "url": db_url,
        "gen_dir": str(gen_dir),
        "workdir": str(tmp_path),
        "items": 90,
        "hold_after_effect": after_effect,
        "hold_claims_from": 43,
        "concurrency": 10,
    }
    first = subprocess.Popen(
        [sys.executable, str(WORKER), "batch", json.dumps(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def stuck() -> bool:
        claimed = raw_sql(db_url, "SELECT count(*) FROM docket_step_runs WHERE status = 'claimed'")
        return sum(effect_rows(db_url).values()) == 43 and claimed == [(7,)]

    wait_until(stuck, first)
    kill(first)
    statuses = Counter(
        status
        for (status,) in raw_sql(
            db_url, "SELECT status FROM docket_step_runs WHERE step = 'ChargeCard'"
        )
    )
    assert statuses == {"succeeded": 40, "running": 3, "claimed": 7}

    orders = [an_order(pb, f"o-{i}") for i in range(90)]

    async def rerun(steps: Any) -> list[Any]:
        async with await opened(db_url) as store:
            graph = dk.Orders(steps, store=store, record=True)
            results: list[Any] = await graph.run_batch(
                pb.Charge, orders, execution_id="b", on_error="collect", max_concurrency=10
            )
            return results

    async def settle(ids: list[str]) -> None:
        async with await opened(db_url) as store:
            graph = dk.Orders(EffectSteps(pb, db_url), store=store, record=True)
            for index in ids:
                # The effect is there: its charge id is what the provider would say.
                charge = pb.Charge(charge_id=f"ch-{index}", amount_cents=1250)
                await graph.settle("ChargeCard", f"b/{index.removeprefix('o-')}", charge)

    steps = EffectSteps(pb, db_url)
    results = asyncio.run(asyncio.wait_for(rerun(steps), SAFETY_NET))
    errors = {r.index: r.error for r in results if isinstance(r, ItemError)}
    assert sorted(errors) == [40, 41, 42]
    assert all(isinstance(e, StepClaimed) and e.status == "running" for e in errors.values())
    assert sorted(steps.charged) == sorted(f"o-{i}" for i in range(43, 90))
    asyncio.run(asyncio.wait_for(settle(after_effect), SAFETY_NET))
    final = EffectSteps(pb, db_url)
    results = asyncio.run(asyncio.wait_for(rerun(final), SAFETY_NET))
    assert [r.charge_id for r in results] == [f"ch-o-{i}" for i in range(90)]
    assert final.charged == []
    effects = effect_rows(db_url)
    assert len(effects) == 90 and set(effects.values()) == {1}
    assert executions(db_url)["b"] == "succeeded"


class EffectSteps(OrderSteps):
    """Orders whose charge is an INSERT into ``batch_effects`` (UNIQUE order id)."""

    def __init__(self, pb: Any, url: str) -> None:
        super().__init__(pb)
        self.url = url
        self.charged: list[str] = []

    async def charge_card(self, order: Any, /) -> Any:
        insert_effect(self.url, order.order_id)
        self.charged.append(order.order_id)
        return self.pb.Charge(charge_id=f"ch-{order.order_id}", amount_cents=order.amount_cents)


def insert_effect(url: str, order_id: str) -> None:
    """The side effect: a second INSERT of one order raises the database's UNIQUE error."""
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///"), timeout=10) as conn:
            conn.execute("INSERT INTO batch_effects (order_id) VALUES (?)", (order_id,))
    else:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("INSERT INTO batch_effects (order_id) VALUES (%s)", (order_id,))


def create_effects_table(url: str) -> None:
    raw_sql(url, "CREATE TABLE batch_effects (order_id TEXT PRIMARY KEY)")
