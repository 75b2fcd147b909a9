"""Contract tests of the stores: the same behaviour from memory, SQLite and Postgres.

The Postgres fixtures (a fresh schema per test; a failure, not a skip, under
``CI=true`` when the server is missing) are in ``conftest.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import psycopg
import pytest
from conftest import PG_URL, PgSession, Proxy, proxied, raw_sql, with_query

from docket_runtime.stores import (
    SCHEMA_VERSION,
    AttemptRecord,
    AttemptStatus,
    ExecutionStatus,
    MemoryStore,
    SchemaVersionError,
    StepEnd,
    StepRunRecord,
    StepStatus,
    Store,
    StoredResult,
    StoreError,
    StoreRejected,
    StoreUnavailable,
    StoreUrlError,
    _migrations,
    connect,
    global_key,
    open_store,
    redact_url,
    workflow_key,
)
from docket_runtime.stores._retry import retry_transient
from docket_runtime.stores.base import GlobalKeys
from docket_runtime.stores.postgres import PostgresStore
from docket_runtime.stores.postgres import _translate as postgres_translate
from docket_runtime.stores.sqlite import SqliteStore

T = TypeVar("T")

T0 = datetime(2030, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
SECOND = timedelta(seconds=1)
SAFETY_NET = 30.0


def run(coro: Awaitable[T]) -> T:
    """Run one test body; the timeout only guards against a hang."""

    async def guarded() -> T:
        return await asyncio.wait_for(coro, SAFETY_NET)

    return asyncio.run(guarded())


@pytest.fixture(params=["memory", "sqlite", "sqlite-normal", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty store of each kind (SQLite with ``synchronous=normal`` writes on
    the event loop, otherwise on its writer thread)."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'docket.db'}"
    if request.param == "sqlite-normal":
        return f"sqlite:///{tmp_path / 'docket.db'}?synchronous=normal"
    pg: PgSession = request.getfixturevalue("pg")
    return pg.fresh_url()


def stored(
    key: str,
    *,
    execution_id: str | None = None,
    step: str = "ChargeCard",
    charge_id: str = "ch_1",
    created_at: datetime = T0,
    expires_at: datetime | None = None,
) -> StoredResult:
    """A result row; ``workflow`` scope when ``execution_id`` is given."""
    return StoredResult(
        key=key,
        scope="global" if execution_id is None else "workflow",
        execution_id=execution_id,
        step=step,
        version="v1",
        output_type="shop.Charge",
        output=b"\x0a\x04" + charge_id.encode()[:4] + b"\x00\xff",
        output_json=json.dumps({"chargeId": charge_id, "amount": {"cents": 1250}}),
        created_at=created_at,
        expires_at=expires_at,
    )


def same(a: StoredResult, b: StoredResult) -> None:
    """Equal rows, comparing the JSON as data (JSONB respells it)."""
    assert json.loads(a.output_json) == json.loads(b.output_json)
    assert dataclasses.replace(a, output_json="") == dataclasses.replace(b, output_json="")


async def opened(url: str) -> Store:
    return await open_store(url, migrate=True)


# -- results ----------------------------------------------------------------


def test_put_get_roundtrip_and_upsert(url: str) -> None:
    async def body() -> None:
        async with await opened(url) as store:
            row = stored("a" * 64, expires_at=T0 + timedelta(days=1))
            wf = stored("b" * 64, execution_id="order-1", step="ReserveStock")
            await store.put_result(row)
            await store.put_result(wf)
            found = await store.get_results([row.key, wf.key], now=T0)
            same(found[row.key], row)
            same(found[wf.key], wf)
            assert isinstance(found[row.key].output, bytes)
            assert found[row.key].created_at.tzinfo is not None
            # A cache hit reads the three columns it needs of the same row, and nothing else.
            payload = await store.get_payload(row.key, now=T0)
            assert payload is not None
            output_type, output, output_json = payload
            assert (output_type, output) == (row.output_type, row.output)
            assert type(output) is bytes
            assert json.loads(output_json) == json.loads(row.output_json)
            assert await store.get_payload("f" * 64, now=T0) is None
            # Put again with the same key: replaced, not duplicated.
            newer = stored("a" * 64, charge_id="ch_2", created_at=T0 + timedelta(seconds=1))
            await store.put_result(newer)
            again = await store.get_results([row.key], now=T0)
            same(again[row.key], newer)

    run(body())


def test_batch_get_returns_only_the_keys_present(url: str) -> None:
    async def body() -> None:
        async with await opened(url) as store:
            keys = [f"{i:064x}" for i in range(1200)]
            for key in keys[:3]:
                await store.put_result(stored(key))
            assert await store.get_results([]) == {}
            found = await store.get_results([keys[0], "f" * 64, keys[2], keys[1], keys[0]])
            assert sorted(found) == sorted(keys[:3])
            # More keys than one SQLite IN (...) list holds.
            assert sorted(await store.get_results(keys)) == sorted(keys[:3])

    run(body())


def test_expiry_is_honoured_on_read_and_purge_counts(url: str) -> None:
    async def body() -> None:
        async with await opened(url) as store:
            soon = stored("1" * 64, expires_at=T0 + timedelta(seconds=10))
            later = stored("2" * 64, expires_at=T0 + timedelta(seconds=20))
            never = stored("3" * 64)
            for row in (soon, later, never):
                await store.put_result(row)
            keys = [soon.key, later.key, never.key]
            assert len(await store.get_results(keys, now=T0 + timedelta(seconds=5))) == 3
            # Expired at exactly expires_at.
            at_ten = await store.get_results(keys, now=T0 + timedelta(seconds=10))
            assert sorted(at_ten) == sorted([later.key, never.key])
            ten = T0 + timedelta(seconds=10)
            assert await store.get_payload(soon.key, now=ten) is None
            assert await store.get_payload(soon.key, now=ten - timedelta(microseconds=1))
            assert await store.get_payload(later.key, now=ten) is not None
            assert await store.purge_expired(now=T0 + timedelta(seconds=15)) == 1
            assert await store.purge_expired(now=T0 + timedelta(seconds=15)) == 0
            late = T0 + timedelta(seconds=25)
            assert sorted(await store.get_results(keys, now=late)) == [never.key]
            assert [await store.get_payload(k, now=late) is None for k in keys] == [
                True,
                True,
                False,
            ]
            assert await store.purge_expired(now=late) == 1
            # Now is "now" when not given: these expire in 2030.
            assert await store.purge_expired() == 0

    run(body())


def test_delete_results_for_a_rerun(url: str) -> None:
    async def body() -> None:
        async with await opened(url) as store:
            rows = {
                (eid, step): stored(workflow_key(eid, step), execution_id=eid, step=step)
                for eid, step in [("e1", "A"), ("e1", "B"), ("e1", "C"), ("e2", "A")]
            }
            shared = stored(global_key("shop.Orders", "A", "v1", [b"x"]), step="A")
            for row in [*rows.values(), shared]:
                await store.put_result(row)
            for step in ("A", "B"):
                await store.claim_step("e1", step, owner="w1")
            await store.claim_step("e2", "A", owner="w1")

            assert await store.delete_results("e1", ["A", "B", "missing"]) == 2
            assert await store.delete_results("e1", []) == 0
            left = await store.get_results([r.key for r in [*rows.values(), shared]])
            assert sorted(left) == sorted([rows["e1", "C"].key, rows["e2", "A"].key, shared.key])
            # The claims went with the results: the rerun may run A again.
            assert [r.step for r in await store.get_step_runs("e1")] == []
            assert (await store.claim_step("e1", "A", owner="w2")).won
            assert not (await store.claim_step("e2", "A", owner="w2")).won

    run(body())


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_output_json_is_queryable_with_plain_sql(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'docket.db'}"
    else:
        url = request.getfixturevalue("pg").fresh_url()

    async def body() -> None:
        async with await opened(url) as store:
            await store.put_result(stored("a" * 64, charge_id="ch_42"))
            await store.put_result(stored("b" * 64, step="Other", charge_id="ch_0"))

    run(body())
    if backend == "postgres":
        rows = raw_sql(
            url,
            "SELECT output_json->>'chargeId', (output_json->'amount'->>'cents')::int "
            "FROM docket_results WHERE step = 'ChargeCard'",
        )
        assert rows == [("ch_42", 1250)]
        kinds = raw_sql(url, "SELECT jsonb_typeof(output_json) FROM docket_results LIMIT 1")
        assert kinds == [("object",)]
    else:
        rows = raw_sql(
            url,
            "SELECT json_extract(output_json, '$.chargeId') FROM docket_results "
            "WHERE step = 'ChargeCard'",
        )
        assert rows == [("ch_42",)]
        if sqlite3.sqlite_version_info >= (3, 38):
            arrow = (
                "SELECT output_json ->> 'chargeId' FROM docket_results WHERE step = 'ChargeCard'"
            )
            assert raw_sql(url, arrow) == [("ch_42",)]


def test_results_name_their_graph_and_are_purged_by_filter(url: str) -> None:
    def row(key: str, graph: str | None, step: str, **kwargs: Any) -> StoredResult:
        return dataclasses.replace(stored(key * 64, step=step, **kwargs), graph=graph)

    past, future = T0 - timedelta(hours=1), T0 + timedelta(hours=1)
    rows = [
        row("1", "shop.A", "Score"),
        row("2", "shop.A", "Score", expires_at=past),
        row("3", "shop.A", "Rank"),
        row("4", "shop.B", "Score", expires_at=future),
        row("5", None, "Score"),
        row("6", "shop.A", "Score", execution_id="e1"),
        row("7", "shop.A", "Rank", execution_id="e1", expires_at=past, created_at=T0 - SECOND),
        row("8", "shop.A", "Rank", execution_id="e2"),
    ]

    async def left(store: Store) -> list[str]:
        found = await store.get_results([r.key for r in rows], now=T0 - timedelta(days=1))
        return sorted(key[0] for key in found)

    async def body() -> None:
        async with await opened(url) as store:
            for r in rows:
                await store.put_result(r)
            found = await store.get_results([rows[0].key])
            assert found[rows[0].key].graph == "shop.A"
            # An execution's checkpoints, expired ones too, oldest first.
            assert [r.key[0] for r in await store.get_execution_results("e1")] == ["7", "6"]
            assert await store.get_execution_results("nope") == []

            with pytest.raises(ValueError, match="needs a filter"):
                await store.purge_results()
            with pytest.raises(ValueError, match="scope"):
                await store.purge_results(scope="nope")  # type: ignore[arg-type]
            assert await store.purge_results(scope="global", graph="shop.C") == 0
            assert await store.purge_results(step="Rank", expired=True, now=T0) == 1  # 7
            assert await store.purge_results(scope="global", graph="shop.A", step="Score") == 2
            assert await left(store) == ["3", "4", "5", "6", "8"]
            assert await store.purge_results(expired=True, now=future) == 1  # 4, at its expiry
            assert await store.purge_results(scope="global") == 2  # 3, 5
            assert await left(store) == ["6", "8"]
            assert await store.purge_results(scope="workflow", graph="shop.A") == 2
            assert await left(store) == []

    run(body())


# -- executions and step runs ------------------------------------------------


def test_executions_are_listed_latest_first_and_filtered(url: str) -> None:
    async def body() -> None:
        async with await opened(url) as store:
            assert await store.list_executions() == []
            cases: list[tuple[str, str, int, ExecutionStatus]] = [
                ("a", "shop.A", 1, "succeeded"),
                ("b", "shop.A", 3, "failed"),
                ("c", "shop.B", 2, "running"),
                ("d", "shop.A", 4, "running"),
                ("e", "shop.B", 3, "cancelled"),
            ]
            for execution_id, graph, minute, status in cases:
                when = T0 + timedelta(minutes=minute)
                await store.start_execution(execution_id, graph=graph, target=TG, now=when)
                if status != "running":
                    await store.finish_execution(execution_id, status=status, now=when)

            async def ids(**filters: Any) -> list[str]:
                return [e.execution_id for e in await store.list_executions(**filters)]

            assert await ids() == ["d", "b", "e", "c", "a"]  # a tie on time: by id
            assert await ids(limit=2) == ["d", "b"]
            assert await ids(statuses=["running"]) == ["d", "c"]
            assert await ids(statuses=["failed", "cancelled", "succeeded"]) == ["b", "e", "a"]
            assert await ids(graph="shop.B") == ["e", "c"]
            assert await ids(since=T0 + timedelta(minutes=3)) == ["d", "b", "e"]
            assert await ids(graph="shop.A", statuses=["running", "failed"], limit=1) == ["d"]
            with pytest.raises(ValueError):
                await store.list_executions(statuses=["nope"])  # type: ignore[list-item]
            (first,) = await store.list_executions(limit=1)
            assert first == await store.get_execution("d")

    run(body())


def test_unfinished_step_runs_across_executions(url: str) -> None:
    async def body() -> None:
        async with await opened(url) as store:
            assert await store.get_unfinished_step_runs() == []
            await store.claim_step("e2", "Charge", owner="w2", now=T0 + timedelta(seconds=2))
            await store.step_started("e1", "Ship", owner="w1", now=T0 + timedelta(seconds=1))
            await store.step_started("e1", "Pack", owner="w1", now=T0)
            await store.step_finished("e1", "Pack", status="succeeded")
            await store.record_cache_hit("e3", "Score", owner="w3")
            runs = await store.get_unfinished_step_runs()
            assert [(r.execution_id, r.step, r.status, r.owner) for r in runs] == [
                ("e1", "Ship", "running", "w1"),
                ("e2", "Charge", "claimed", "w2"),
            ]

    run(body())


def test_read_checkpoints_keeps_inputs_and_starts_an_execution_only_for_a_new_id(
    url: str,
) -> None:
    async def body() -> None:
        async with await opened(url) as store:
            done = stored(workflow_key("order-1", "A"), execution_id="order-1", step="A")
            await store.put_result(done)
            keys = [done.key, "inputs-1"]
            inputs = dataclasses.replace(
                stored("inputs-1", execution_id="order-1", step="$inputs"), graph="shop.Orders"
            )
            # A new id: the rows as they were (no inputs yet), the inputs kept, the run started.
            found, inserted = await store.read_checkpoints(
                keys, inputs, target="shop.Receipt", now=T0
            )
            assert inserted and list(found) == [done.key]
            same(found[done.key], done)
            same((await store.get_results(["inputs-1"]))["inputs-1"], inputs)
            record = await store.get_execution("order-1")
            assert record is not None
            assert (record.status, record.graph, record.target, record.started_at) == (
                "running",
                "shop.Orders",
                "shop.Receipt",
                T0,
            )
            await store.finish_execution("order-1", status="succeeded", now=T0 + SECOND)
            # Again (a rerun, or the same call retried): nothing inserted, nothing started,
            # and the kept inputs are in the answer for the caller to compare.
            other = dataclasses.replace(inputs, output_json=json.dumps({"other": 1}))
            found, inserted = await store.read_checkpoints(
                keys, other, target="shop.Receipt", now=T0 + 2 * SECOND
            )
            assert not inserted and set(found) == set(keys)
            same(found["inputs-1"], inputs)
            record = await store.get_execution("order-1")
            assert record is not None and record.status == "succeeded"
            # Without a target, the inputs only: no execution is recorded.
            fresh = dataclasses.replace(inputs, key="inputs-2", execution_id="order-2")
            found, inserted = await store.read_checkpoints(["inputs-2"], fresh, now=T0)
            assert inserted and found == {}
            assert "inputs-2" in await store.get_results(["inputs-2"])
            assert await store.get_execution("order-2") is None

    run(body())


def test_a_step_end_is_recorded_with_the_next_start_or_the_execution_end(url: str) -> None:
    async def body() -> None:
        async with await opened(url) as store:
            assert await store.step_started("order-1", "A", owner="w1", now=T0) == 1
            row = stored(workflow_key("order-1", "A"), execution_id="order-1", step="A")
            attempt = AttemptRecord(
                execution_id="order-1",
                step="A",
                attempt=1,
                status="succeeded",
                started_at=T0,
                finished_at=T0 + SECOND,
                duration_ms=1000.0,
                error_type=None,
                error_message=None,
                traceback=None,
                owner="w1",
            )
            end = StepEnd("order-1", "A", "succeeded", result=row, attempt=attempt, now=T0 + SECOND)
            later = T0 + 2 * SECOND
            assert await store.step_started("order-1", "B", owner="w1", now=later, ended=end) == 1
            runs = {r.step: r for r in await store.get_step_runs("order-1")}
            assert (runs["A"].status, runs["A"].finished_at, runs["A"].duration_ms) == (
                "succeeded",
                T0 + SECOND,
                1000.0,
            )
            assert (runs["B"].status, runs["B"].started_at) == ("running", later)
            same((await store.get_results([row.key]))[row.key], row)
            assert await store.get_attempts("order-1", "A") == [attempt]
            # A claimed start that is not this owner's starts nothing; the end is written.
            await store.claim_step("order-1", "C", owner="w2", now=T0)
            b_end = StepEnd("order-1", "B", "failed", error="boom", now=later + SECOND)
            started = await store.step_started(
                "order-1", "C", owner="w1", claimed=True, now=later, ended=b_end
            )
            assert started == 0
            runs = {r.step: r for r in await store.get_step_runs("order-1")}
            assert (runs["B"].status, runs["B"].error) == ("failed", "boom")
            assert (runs["C"].status, runs["C"].owner) == ("claimed", "w2")
            # An end that does not fit is refused before anything is written.
            wrong = StepEnd(
                "order-1", "A", "succeeded", attempt=dataclasses.replace(attempt, step="Z")
            )
            with pytest.raises(ValueError, match="attempt of 'Z'"):
                await store.step_started("order-1", "D", owner="w1", ended=wrong)
            assert "D" not in {r.step for r in await store.get_step_runs("order-1")}
            # The execution's end, with its last step's end.
            await store.start_execution("order-1", graph="g", target="t", now=T0)
            c_end = StepEnd("order-1", "B", "succeeded", result=row, now=later + 2 * SECOND)
            await store.finish_execution("order-1", status="succeeded", now=later, ended=c_end)
            record = await store.get_execution("order-1")
            assert record is not None and record.status == "succeeded"
            runs = {r.step: r for r in await store.get_step_runs("order-1")}
            assert (runs["B"].status, runs["B"].finished_at) == ("succeeded", later + 2 * SECOND)
            with pytest.raises(ValueError, match="attempt of 'Z'"):
                await store.finish_execution("order-1", status="failed", ended=wrong)
            record = await store.get_execution("order-1")
            assert record is not None and record.status == "succeeded"

    run(body())


def test_executions_and_step_runs_are_recorded(url: str) -> None:
    async def body() -> None:
        async with await opened(url) as store:
            assert await store.get_execution("order-1") is None
            await store.start_execution(
                "order-1", graph="shop.Orders", target="shop.Receipt", now=T0
            )
            record = await store.get_execution("order-1")
            assert record is not None
            assert (record.status, record.graph, record.target) == (
                "running",
                "shop.Orders",
                "shop.Receipt",
            )
            assert record.started_at == T0 and record.finished_at is None

            assert await store.step_started("order-1", "A", owner="w1", now=T0) == 1
            await store.step_finished(
                "order-1", "A", status="failed", error="boom", now=T0 + timedelta(seconds=1)
            )
            later = T0 + timedelta(seconds=2)
            assert await store.step_started("order-1", "A", owner="w1", now=later) == 2
            row = stored(workflow_key("order-1", "A"), execution_id="order-1", step="A")
            await store.step_finished(
                "order-1",
                "A",
                status="succeeded",
                result=row,
                now=later + timedelta(milliseconds=1500),
            )
            assert await store.step_started("order-1", "B", owner="w2", now=T0) == 1
            await store.finish_execution(
                "order-1", status="failed", error="B: boom", now=T0 + timedelta(seconds=9)
            )

            runs = {r.step: r for r in await store.get_step_runs("order-1")}
            a, b = runs["A"], runs["B"]
            assert (a.status, a.attempts, a.error, a.owner) == ("succeeded", 2, None, "w1")
            assert a.finished and a.started_at == later
            assert a.duration_ms == pytest.approx(1500.0)
            assert (b.status, b.finished, b.finished_at, b.duration_ms) == (
                "running",
                False,
                None,
                None,
            )
            assert [r.step for r in await store.get_step_runs("order-1")] == ["B", "A"]
            assert row.key in await store.get_results([row.key])

            done = await store.get_execution("order-1")
            assert done is not None
            assert (done.status, done.error) == ("failed", "B: boom")
            assert done.finished_at == T0 + timedelta(seconds=9)
            # A resume keeps the first start and clears the outcome.
            await store.start_execution(
                "order-1", graph="shop.Orders", target="shop.Receipt", now=T0 + timedelta(hours=1)
            )
            resumed = await store.get_execution("order-1")
            assert resumed is not None
            assert (resumed.status, resumed.started_at, resumed.finished_at, resumed.error) == (
                "running",
                T0,
                None,
                None,
            )
            with pytest.raises(ValueError):
                await store.finish_execution("order-1", status="done")  # type: ignore[arg-type]

    run(body())


def test_a_second_claim_fails_and_reports_the_first(url: str) -> None:
    async def body() -> None:
        async with await opened(url) as store:
            first = await store.claim_step("order-1", "ChargeCard", owner="host:1:a", now=T0)
            assert first.won
            assert (first.run.status, first.run.owner, first.run.attempts) == (
                "claimed",
                "host:1:a",
                0,
            )
            second = await store.claim_step("order-1", "ChargeCard", owner="host:2:b")
            assert not second.won
            assert (second.run.status, second.run.owner, second.run.finished) == (
                "claimed",
                "host:1:a",
                False,
            )
            assert second.run.started_at == T0
            # Another execution, or another step, is a different claim.
            assert (await store.claim_step("order-2", "ChargeCard", owner="host:2:b")).won
            assert (await store.claim_step("order-1", "Ship", owner="host:2:b")).won

            await store.step_started("order-1", "ChargeCard", owner="host:1:a")
            await store.step_finished("order-1", "ChargeCard", status="succeeded")
            third = await store.claim_step("order-1", "ChargeCard", owner="host:3:c")
            assert not third.won
            assert (third.run.status, third.run.finished, third.run.attempts) == (
                "succeeded",
                True,
                1,
            )

    run(body())


RACE_SNIPPET = """
import asyncio, json, sys, time
from docket_runtime.stores import open_store

async def main(url, owner, start_at, steps):
    store = await open_store(url)
    async with store:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        claims = await asyncio.gather(
            *(store.claim_step("race", f"step{i}", owner=owner) for i in range(steps))
        )
    print(json.dumps([[c.won, c.run.owner] for c in claims]))

asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])))
"""


def test_two_processes_racing_never_both_win_a_claim(db_url: str) -> None:
    two_processes_race_for_claims(db_url)


def test_two_processes_racing_on_the_loop_never_both_win_a_claim(tmp_path: Path) -> None:
    # synchronous=normal: claims are written on each process's event loop, and the one
    # that finds the database locked goes to its writer thread and waits there.
    two_processes_race_for_claims(f"sqlite:///{tmp_path / 'docket.db'}?synchronous=normal")


def two_processes_race_for_claims(db_url: str) -> None:
    steps = 50
    run(_migrate_only(db_url))
    start_at = time.time() + 2.0  # both processes have connected by then
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACE_SNIPPET, db_url, owner, str(start_at), str(steps)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for owner in ("proc-a", "proc-b")
    ]
    answers: dict[str, list[list[Any]]] = {}
    for owner, proc in zip(("proc-a", "proc-b"), procs, strict=True):
        out, err = proc.communicate(timeout=SAFETY_NET)
        assert proc.returncode == 0, err
        answers[owner] = json.loads(out)
    for i in range(steps):
        (a_won, a_saw), (b_won, b_saw) = answers["proc-a"][i], answers["proc-b"][i]
        assert a_won != b_won, f"step{i}: both or neither won"
        winner = "proc-a" if a_won else "proc-b"
        # The loser is told who holds the claim.
        assert a_saw == b_saw == winner
    rows = raw_sql(db_url, "SELECT count(*) FROM docket_step_runs WHERE execution_id = 'race'")
    assert rows == [(steps,)]


async def _migrate_only(url: str) -> None:
    async with await opened(url):
        pass


# -- claims, attempts and cache hits -------------------------------------------------


def attempt_row(
    step: str,
    number: int,
    *,
    execution_id: str = "order-1",
    status: AttemptStatus = "failed",
    started_at: datetime = T0,
    owner: str = "w1",
) -> AttemptRecord:
    """An attempt row; a failed one carries an error type, message and traceback."""
    failed = status == "failed"
    return AttemptRecord(
        execution_id=execution_id,
        step=step,
        attempt=number,
        status=status,
        started_at=started_at,
        finished_at=started_at + timedelta(milliseconds=1250),
        duration_ms=1250.5,
        error_type="builtins.ValueError" if failed else None,
        error_message=f"bad card «{number}»" if failed else None,
        traceback='Traceback (most recent call last):\n  File "x.py", line 1\nValueError\n'
        if failed
        else None,
        owner=owner,
    )


async def run_of(store: Store, execution_id: str, step: str) -> StepRunRecord | None:
    runs = {r.step: r for r in await store.get_step_runs(execution_id)}
    return runs.get(step)


def test_a_claimed_step_starts_only_under_its_own_claim(url: str) -> None:
    async def body() -> None:
        async with await opened(url) as store:
            claim = await store.claim_step("order-1", "Charge", owner="w1", now=T0)
            later = T0 + timedelta(seconds=1)
            # Someone else's claim: nothing changes.
            assert await store.step_started("order-1", "Charge", owner="w2", claimed=True) == 0
            assert await run_of(store, "order-1", "Charge") == claim.run
            assert (
                await store.step_started("order-1", "Charge", owner="w1", claimed=True, now=later)
                == 1
            )
            run_ = await run_of(store, "order-1", "Charge")
            assert run_ is not None
            assert (run_.status, run_.attempts, run_.owner, run_.started_at) == (
                "running",
                1,
                "w1",
                later,
            )
            # Started already: the claim is spent, even for its owner.
            assert await store.step_started("order-1", "Charge", owner="w1", claimed=True) == 0
            assert await run_of(store, "order-1", "Charge") == run_
            # No claim at all: no row is made.
            assert await store.step_started("order-1", "Other", owner="w1", claimed=True) == 0
            assert await run_of(store, "order-1", "Other") is None
            # Without claimed=True a start is recorded whatever the row says.
            assert await store.step_started("order-1", "Charge", owner="w3") == 2

    run(body())


def test_a_step_ends_with_its_result_and_attempt_only_for_its_owner(url: str) -> None:
    async def body() -> None:
        async with await opened(url) as store:
            row = stored(workflow_key("order-1", "Charge"), execution_id="order-1", step="Charge")
            ok = attempt_row("Charge", 1, status="succeeded")
            await store.step_started("order-1", "Charge", owner="w1", now=T0)
            end = T0 + timedelta(milliseconds=1250)

            # Taken over by w2: w1's end writes nothing at all.
            assert not await store.step_finished(
                "order-1", "Charge", status="succeeded", result=row, attempt=ok, owner="w2"
            )
            run_ = await run_of(store, "order-1", "Charge")
            assert run_ is not None and (run_.status, run_.finished_at) == ("running", None)
            assert await store.get_results([row.key]) == {}
            assert await store.get_attempts("order-1") == []

            assert await store.step_finished(
                "order-1",
                "Charge",
                status="succeeded",
                result=row,
                attempt=ok,
                owner="w1",
                now=end,
            )
            run_ = await run_of(store, "order-1", "Charge")
            assert run_ is not None
            assert (run_.status, run_.finished, run_.finished_at, run_.error) == (
                "succeeded",
                True,
                end,
                None,
            )
            assert run_.duration_ms == pytest.approx(1250.0)
            same((await store.get_results([row.key]))[row.key], row)
            assert await store.get_attempts("order-1") == [ok]

            # The same attempt number again replaces its row.
            redo = dataclasses.replace(attempt_row("Charge", 1), owner="w9")
            assert await store.step_finished(
                "order-1", "Charge", status="failed", error="boom", attempt=redo
            )
            assert await store.get_attempts("order-1", "Charge") == [redo]

            # An owner but no row: nothing written. No owner, no row: written (as before).
            other = stored(workflow_key("order-1", "Ship"), execution_id="order-1", step="Ship")
            lost = attempt_row("Ship", 1)
            assert not await store.step_finished(
                "order-1", "Ship", status="failed", result=other, attempt=lost, owner="w1"
            )
            assert await store.get_results([other.key]) == {}
            assert await store.get_attempts("order-1", "Ship") == []
            assert await store.step_finished(
                "order-1", "Ship", status="failed", result=other, attempt=lost
            )
            assert other.key in await store.get_results([other.key])
            assert await store.get_attempts("order-1", "Ship") == [lost]
            assert await run_of(store, "order-1", "Ship") is None

            # Cancelled is an end; other statuses, or another step's attempt, are refused.
            await store.step_started("order-1", "Pack", owner="w1")
            assert await store.step_finished("order-1", "Pack", status="cancelled", owner="w1")
            pack = await run_of(store, "order-1", "Pack")
            assert pack is not None and (pack.status, pack.finished) == ("cancelled", True)
            with pytest.raises(ValueError):
                await store.step_finished("order-1", "Pack", status="cached")  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="attempt of 'Charge'"):
                await store.step_finished("order-1", "Pack", status="failed", attempt=ok)
            assert await store.get_attempts("order-1", "Pack") == []

    run(body())


def test_attempts_round_trip_in_the_order_their_steps_started(url: str) -> None:
    async def body() -> None:
        async with await opened(url) as store:
            at = [T0 + timedelta(seconds=s) for s in range(6)]
            b1 = attempt_row("B", 1, started_at=at[0])
            a1 = attempt_row("A", 1, started_at=at[1], owner="host:2:ab")
            a2 = attempt_row("A", 2, started_at=at[3], status="succeeded")
            b2 = attempt_row("B", 2, started_at=at[4], status="cancelled")
            elsewhere = attempt_row("A", 1, execution_id="order-2", started_at=at[2])
            # Written out of order, and through both ways an attempt is recorded.
            for row in (a2, b2, elsewhere, b1, a1):
                await store.step_finished(
                    row.execution_id, row.step, status=row.status, attempt=row
                )

            found = await store.get_attempts("order-1")
            assert found == [b1, b2, a1, a2]
            one = found[2]
            assert (one.error_type, one.error_message, one.owner) == (
                "builtins.ValueError",
                "bad card «1»",
                "host:2:ab",
            )
            assert one.traceback is not None and one.traceback.endswith("ValueError\n")
            assert one.started_at.tzinfo is not None and one.started_at == at[1]
            assert isinstance(one.attempt, int) and one.duration_ms == 1250.5
            assert (found[0].error_type, found[3].traceback) == ("builtins.ValueError", None)
            assert await store.get_attempts("order-1", "A") == [a1, a2]
            assert await store.get_attempts("order-2") == [elsewhere]
            assert await store.get_attempts("order-1", "nope") == []
            assert await store.get_attempts("nope") == []

    run(body())


def test_a_cache_hit_is_recorded_as_a_finished_run(url: str) -> None:
    async def body() -> None:
        async with await opened(url) as store:
            await store.record_cache_hit("order-1", "Score", owner="w1", now=T0)
            hit = await run_of(store, "order-1", "Score")
            assert hit is not None
            assert (hit.status, hit.attempts, hit.started_at, hit.finished_at) == (
                "cached",
                0,
                T0,
                T0,
            )
            assert (hit.duration_ms, hit.error, hit.owner, hit.finished) == (0, None, "w1", True)

            # Over a failed run: its attempts stay, the rest is the hit's.
            await store.step_started("order-1", "Rank", owner="w1", now=T0)
            await store.step_finished("order-1", "Rank", status="failed", error="boom")
            await store.step_started("order-1", "Rank", owner="w1", now=T0)
            later = T0 + timedelta(minutes=1)
            await store.record_cache_hit("order-1", "Rank", owner="w2", now=later)
            rank = await run_of(store, "order-1", "Rank")
            assert rank is not None
            assert (rank.status, rank.attempts, rank.error, rank.owner) == (
                "cached",
                2,
                None,
                "w2",
            )
            assert (rank.started_at, rank.finished_at, rank.duration_ms) == (later, later, 0)
            # A cached run is an ended one for a claimant too.
            claim = await store.claim_step("order-1", "Score", owner="w3")
            assert not claim.won and claim.run.status == "cached" and claim.run.finished

    run(body())


def test_only_an_unstarted_claim_is_released_and_only_by_its_owner(url: str) -> None:
    async def body() -> None:
        async with await opened(url) as store:
            await store.claim_step("order-1", "Charge", owner="w1", now=T0)
            assert not await store.release_claim("order-1", "Charge", owner="w2")
            assert await run_of(store, "order-1", "Charge") is not None
            assert await store.release_claim("order-1", "Charge", owner="w1")
            assert await run_of(store, "order-1", "Charge") is None
            assert not await store.release_claim("order-1", "Charge", owner="w1")
            assert (await store.claim_step("order-1", "Charge", owner="w3")).won

            # Once the body started the claim holds, for its owner too.
            assert await store.step_started("order-1", "Charge", owner="w3", claimed=True) == 1
            assert not await store.release_claim("order-1", "Charge", owner="w3")
            run_ = await run_of(store, "order-1", "Charge")
            assert run_ is not None and (run_.status, run_.owner) == ("running", "w3")
            # Unless its owner knows that the body never started (its start was cancelled).
            assert not await store.release_claim("order-1", "Charge", owner="w1", running=True)
            assert await store.release_claim("order-1", "Charge", owner="w3", running=True)
            assert await run_of(store, "order-1", "Charge") is None
            await store.step_started("order-1", "Ship", owner="w3")
            await store.step_finished("order-1", "Ship", status="succeeded")
            assert not await store.release_claim("order-1", "Ship", owner="w3", running=True)

    run(body())


def test_a_claim_is_taken_over_once(url: str) -> None:
    async def body() -> None:
        async with await opened(url) as store:
            first = await store.claim_step("order-1", "Charge", owner="w1", now=T0)
            later = T0 + timedelta(minutes=5)
            assert not await store.take_over_claim(
                "order-1", "Charge", old_owner="w9", owner="w2", now=later
            )
            assert await run_of(store, "order-1", "Charge") == first.run
            assert await store.take_over_claim(
                "order-1", "Charge", old_owner="w1", owner="w2", now=later
            )
            run_ = await run_of(store, "order-1", "Charge")
            assert run_ is not None
            assert (run_.status, run_.owner, run_.started_at, run_.attempts) == (
                "claimed",
                "w2",
                later,
                0,
            )
            # The old owner learns it lost the claim: its start, end and release do nothing.
            assert await store.step_started("order-1", "Charge", owner="w1", claimed=True) == 0
            assert not await store.release_claim("order-1", "Charge", owner="w1")
            assert await store.step_started("order-1", "Charge", owner="w2", claimed=True) == 1
            assert not await store.step_finished(
                "order-1", "Charge", status="succeeded", owner="w1"
            )
            # A started step's claim cannot be taken over.
            assert not await store.take_over_claim("order-1", "Charge", old_owner="w2", owner="w3")
            assert (
                await store.take_over_claim("order-1", "Missing", old_owner="w2", owner="w3")
                is False
            )

    run(body())


def test_racing_take_overs_have_exactly_one_winner(url: str) -> None:
    racers = 6

    async def body() -> None:
        async with await opened(url) as store:
            # Separate stores are separate connections (and writer threads, and pools),
            # except in memory, where a second store would hold other dicts.
            others = [] if url == "memory://" else [await opened(url) for _ in range(racers - 1)]
            stores = [store, *others] if others else [store] * racers
            try:
                for round_ in range(5):
                    step = f"step{round_}"
                    await store.claim_step("race", step, owner="dead")
                    won = await asyncio.gather(
                        *(
                            s.take_over_claim("race", step, old_owner="dead", owner=f"r{i}")
                            for i, s in enumerate(stores)
                        )
                    )
                    assert won.count(True) == 1, won
                    run_ = await run_of(store, "race", step)
                    assert run_ is not None and run_.owner == f"r{won.index(True)}"
            finally:
                for other in others:
                    await other.close()

    run(body())


def test_a_step_is_settled_with_a_result_it_did_not_compute(url: str) -> None:
    async def body() -> None:
        async with await opened(url) as store:
            row = stored(workflow_key("order-1", "Charge"), execution_id="order-1", step="Charge")
            later = T0 + timedelta(minutes=1)
            await store.settle_step("order-1", "Charge", result=row, owner="w1", now=T0)
            new = await run_of(store, "order-1", "Charge")
            assert new is not None
            assert (new.status, new.attempts, new.started_at, new.finished_at) == (
                "succeeded",
                0,
                T0,
                T0,
            )
            assert (new.duration_ms, new.error, new.owner) == (None, None, "w1")
            same((await store.get_results([row.key]))[row.key], row)

            # Over a run that failed: attempts, start and duration stay.
            other = stored(workflow_key("order-1", "Ship"), execution_id="order-1", step="Ship")
            await store.step_started("order-1", "Ship", owner="w1", now=T0)
            await store.step_finished(
                "order-1", "Ship", status="failed", error="boom", now=T0 + timedelta(seconds=2)
            )
            await store.settle_step("order-1", "Ship", result=other, owner="w2", now=later)
            ship = await run_of(store, "order-1", "Ship")
            assert ship is not None
            assert (ship.status, ship.attempts, ship.started_at, ship.finished_at) == (
                "succeeded",
                1,
                T0,
                later,
            )
            assert ship.duration_ms == pytest.approx(2000.0)
            assert (ship.error, ship.owner) == (None, "w2")
            assert other.key in await store.get_results([other.key])

    run(body())


def test_rerun_deletes_the_attempts_of_the_steps_it_forgets(url: str) -> None:
    async def body() -> None:
        async with await opened(url) as store:
            for eid, step in [("e1", "A"), ("e1", "B"), ("e2", "A")]:
                for number in (1, 2):
                    await store.step_started(eid, step, owner="w1")
                    row = attempt_row(step, number, execution_id=eid)
                    await store.step_finished(eid, step, status="failed", attempt=row)
            assert await store.delete_results("e1", ["A"]) == 0
            assert [(a.step, a.attempt) for a in await store.get_attempts("e1")] == [
                ("B", 1),
                ("B", 2),
            ]
            assert len(await store.get_attempts("e2")) == 2
            # The step's attempt count starts again with its run.
            assert await store.step_started("e1", "A", owner="w1") == 1

    run(body())


def test_step_run_and_attempt_rows() -> None:
    statuses: tuple[StepStatus, ...] = (
        "claimed",
        "running",
        "succeeded",
        "failed",
        "cancelled",
        "cached",
    )
    ended = {
        s for s in statuses if StepRunRecord("e", "s", s, 1, T0, None, None, None, "w").finished
    }
    assert ended == {"succeeded", "failed", "cancelled", "cached"}
    with pytest.raises(ValueError):
        dataclasses.replace(attempt_row("s", 1), status="cached")  # type: ignore[arg-type]
    naive = dataclasses.replace(attempt_row("s", 1), started_at=T0.replace(tzinfo=None))
    assert naive.started_at == T0 and naive.started_at.tzinfo is not None


# -- schema and migrations -------------------------------------------------


def test_migrate_is_idempotent_and_required(db_url: str) -> None:
    async def body() -> None:
        if db_url.startswith("sqlite:"):
            with pytest.raises(SchemaVersionError, match=r"does not exist.*docketctl db migrate"):
                await open_store(db_url)
            await (await connect(db_url)).close()  # connect() creates the file, empty
        with pytest.raises(SchemaVersionError, match=r"has no Docket tables.*docketctl db migrate"):
            await open_store(db_url)
        async with await connect(db_url) as store:
            assert await store.schema_version() == 0
            assert await store.migrate() == list(range(1, SCHEMA_VERSION + 1))
            assert await store.migrate() == []
            assert await store.schema_version() == SCHEMA_VERSION
        async with await open_store(db_url) as store:
            assert await store.get_results(["x"]) == {}

    run(body())
    rows = raw_sql(db_url, "SELECT version, name FROM docket_schema_version ORDER BY version")
    assert rows == [
        (1, "0001_initial"),
        (2, "0002_step_attempts"),
        (3, "0003_results_graph"),
        (4, "0004_trace_context"),
    ]


def test_concurrent_migrations_apply_once(db_url: str) -> None:
    async def body() -> None:
        stores = [await connect(db_url) for _ in range(3)]
        try:
            applied = await asyncio.gather(*(s.migrate() for s in stores))
        finally:
            for s in stores:
                await s.close()
        assert sorted(applied) == [[], [], list(range(1, SCHEMA_VERSION + 1))]

    run(body())


def test_a_newer_schema_is_refused(db_url: str) -> None:
    run(_migrate_only(db_url))
    raw_sql(
        db_url,
        "INSERT INTO docket_schema_version (version, name, applied_at) "
        "VALUES (999, '0999_future', '2030-01-01')",
    )

    async def body() -> None:
        for migrate in (False, True):
            with pytest.raises(SchemaVersionError) as caught:
                await open_store(db_url, migrate=migrate)
            message = str(caught.value)
            assert "version 999" in message
            assert f"up to {SCHEMA_VERSION}" in message
            assert "Upgrade docket-proto" in message

    run(body())


def test_migration_files_ship_for_every_version() -> None:
    for backend in ("sqlite", "postgres"):
        migrations = _migrations.load(backend)
        assert [m.version for m in migrations] == list(range(1, SCHEMA_VERSION + 1))
        assert "CREATE TABLE docket_schema_version" in migrations[0].sql
    statements = _migrations.sqlite_statements(_migrations.load("sqlite")[0].sql)
    assert sum("CREATE TABLE" in s for s in statements) == 4


def schema_at_version(url: str, version: int) -> None:
    """Create the schema up to ``version`` only, as a release that shipped no more would have."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            for migration in _migrations.load("sqlite")[:version]:
                for statement in _migrations.sqlite_statements(migration.sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO docket_schema_version VALUES (?, ?, '2030-01-01 00:00:00.000000')",
                    (migration.version, migration.name),
                )
            conn.execute("COMMIT")
        finally:
            conn.close()
        return
    with psycopg.connect(url, autocommit=True) as pgconn, pgconn.transaction():
        for migration in _migrations.load("postgres")[:version]:
            pgconn.execute(migration.sql.encode())
            pgconn.execute(
                "INSERT INTO docket_schema_version (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )


def put_old_result(url: str, row: StoredResult) -> None:
    """Write ``row`` with the columns of schema versions 1 and 2 (no ``graph``), by hand."""
    when = row.created_at.strftime("%Y-%m-%d %H:%M:%S.%f")
    raw_sql(
        url,
        "INSERT INTO docket_results (key, scope, execution_id, step, version, output_type, "
        "output, output_json, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            row.key,
            row.scope,
            row.execution_id,
            row.step,
            row.version,
            row.output_type,
            row.output,
            row.output_json,
            when if url.startswith("sqlite:") else row.created_at,
        ),
    )


def test_migrating_from_version_1(db_url: str) -> None:
    schema_at_version(db_url, 1)
    sqlite = db_url.startswith("sqlite:")
    if sqlite:
        # A view of the user's over the table that version 2 rebuilds.
        raw_sql(db_url, "CREATE VIEW steps AS SELECT step, status FROM docket_step_runs")
    checkpoint = stored(workflow_key("order-1", "A"), execution_id="order-1", step="A")
    shared = stored(global_key("shop.Orders", "B", "v1", [b"x"]), step="B")

    put_old_result(db_url, shared)
    put_old_result(db_url, checkpoint)

    async def body() -> None:
        # connect(): the version 1 tables have the columns these writes use.
        async with await connect(db_url) as store:
            assert await store.schema_version() == 1
            await store.step_started("order-1", "A", owner="w1", now=T0)
            await store.step_started("order-1", "A", owner="w1", now=T0)
            await store.step_finished(
                "order-1", "A", status="succeeded", now=T0 + timedelta(seconds=1)
            )
            await store.step_started("order-1", "C", owner="w1", now=T0)
            before = await store.get_step_runs("order-1")

            assert await store.migrate() == [2, 3, 4]
            assert await store.schema_version() == SCHEMA_VERSION == 4
            assert await store.get_step_runs("order-1") == before
            kept = await store.get_results([checkpoint.key, shared.key])
            assert list(kept) == [checkpoint.key]

            # The new statuses and the attempts table work.
            assert await store.step_finished("order-1", "C", status="cancelled", owner="w1")
            await store.record_cache_hit("order-1", "B", owner="w1", now=T0)
            statuses = {r.step: r.status for r in await store.get_step_runs("order-1")}
            assert statuses == {"A": "succeeded", "B": "cached", "C": "cancelled"}
            attempt = attempt_row("A", 2)
            await store.step_finished("order-1", "A", status="failed", attempt=attempt)
            assert await store.get_attempts("order-1") == [attempt]
            # Version 3: an enqueued execution keeps its trace context.
            queued = await store.queue_execution(
                "e-3", graph=G, target=TG, inputs="{}", trace_context=TRACE_A
            )
            assert json.loads(queued.trace_context or "null") == json.loads(TRACE_A)

    run(body())
    with pytest.raises((sqlite3.IntegrityError, psycopg.IntegrityError)):
        raw_sql(
            db_url,
            "INSERT INTO docket_step_runs (execution_id, step, status, started_at, owner) "
            "VALUES ('e', 's', 'bogus', '2030-01-01 00:00:00', 'w')",
        )
    if sqlite:
        indexes = raw_sql(
            db_url,
            "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
            "AND tbl_name = 'docket_step_runs'",
        )
        assert sorted(raw_sql(db_url, "SELECT step, status FROM steps")) == [
            ("A", "failed"),
            ("B", "cached"),
            ("C", "cancelled"),
        ]
        assert raw_sql(db_url, "PRAGMA integrity_check") == [("ok",)]
    else:
        indexes = raw_sql(
            db_url,
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
            "AND tablename = 'docket_step_runs' AND position('WHERE' IN indexdef) > 0",
        )
    assert indexes == [("docket_step_runs_unfinished",)]


def test_migrating_from_version_2(db_url: str) -> None:
    schema_at_version(db_url, 2)
    old = stored(workflow_key("order-1", "A"), execution_id="order-1", step="A")
    put_old_result(db_url, old)

    async def body() -> None:
        async with await connect(db_url) as store:
            migrations = await store.get_migrations()
            assert [(m.version, m.name, m.applied_at is None) for m in migrations] == [
                (1, "0001_initial", False),
                (2, "0002_step_attempts", False),
                (3, "0003_results_graph", True),
                (4, "0004_trace_context", True),
            ]
            assert await store.migrate() == [3, 4]
            (kept,) = (await store.get_results([old.key])).values()
            assert kept.graph is None  # written before the column existed
            same(kept, old)
            new = dataclasses.replace(stored("n" * 64), graph="shop.Orders")
            await store.put_result(new)
            same((await store.get_results([new.key]))[new.key], new)
            applied = await store.get_migrations()
            assert [m.version for m in applied] == [1, 2, 3, 4]
            assert all(m.applied_at is not None for m in applied)

    run(body())


def test_the_migrations_of_a_database(url: str) -> None:
    async def body() -> None:
        store = await connect(url)
        async with store:
            before = await store.get_migrations()
            await store.migrate()
            after = await store.get_migrations()
        if url == "memory://":
            assert before == after == []
            return
        names = ["0001_initial", "0002_step_attempts", "0003_results_graph", "0004_trace_context"]
        assert [(m.version, m.name, m.applied_at) for m in before] == [
            (n + 1, name, None) for n, name in enumerate(names)
        ]
        assert [(m.version, m.name) for m in after] == [(n + 1, nm) for n, nm in enumerate(names)]
        for m in after:
            assert m.applied_at is not None
            assert abs((m.applied_at - datetime.now(UTC)).total_seconds()) < 60

    run(body())


# -- URLs and the command line -------------------------------------------------


def test_open_store_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    async def body() -> None:
        async with await open_store("memory://") as store:
            assert isinstance(store, MemoryStore)
        async with await open_store("sqlite:///rel/../plain.db", migrate=True) as store:
            assert isinstance(store, SqliteStore)
            assert store.path == tmp_path / "plain.db"
        async with await open_store(str(tmp_path / "plain.db")) as store:
            assert isinstance(store, SqliteStore)
        absolute = f"sqlite:///{tmp_path / 'abs.db'}?busy_timeout=100&synchronous=normal"
        async with await open_store(absolute, migrate=True) as store:
            assert isinstance(store, SqliteStore)
        for bad in ("", "redis://x", "sqlite://host/x.db", "sqlite:///", "sqlite:///a.db?x=1"):
            with pytest.raises(StoreUrlError):
                await open_store(bad)
        with pytest.raises(StoreUrlError, match="busy_timeout"):
            await open_store("sqlite:///a.db?busy_timeout=soon")

    run(body())


def test_postgres_without_the_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # As if psycopg were not installed: importing it fails.
    monkeypatch.setitem(sys.modules, "psycopg", None)
    monkeypatch.delitem(sys.modules, "docket_runtime.stores.postgres")
    with pytest.raises(StoreError, match=r"docket-proto\[postgres\]"):
        run(open_store("postgresql://nobody@127.0.0.1/none"))


def test_the_runtime_imports_without_psycopg() -> None:
    code = (
        "import sys\n"
        "sys.modules['psycopg'] = None\n"
        "import docket_runtime, docket_runtime.stores, docket_runtime.cli\n"
        "assert 'psycopg_pool' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def docket_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DOCKET_DATABASE_URL"}
    return subprocess.run(
        [sys.executable, "-m", "docket_runtime.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=SAFETY_NET,
    )


def test_reading_a_missing_sqlite_file_does_not_create_it(tmp_path: Path) -> None:
    done = docket_cli("db", "purge", "--url", "sqlite:///missing.db", cwd=tmp_path)
    missing = tmp_path / "missing.db"
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        f"docketctl: error: no SQLite database at {missing}: check --url "
        "(`docketctl db migrate --url sqlite:///missing.db` creates one)\n"
    )
    assert list(tmp_path.iterdir()) == []

    folder = tmp_path / "my state"
    folder.mkdir()
    path = folder / "docket db.db"

    async def body() -> None:
        for url in (f"sqlite:///{path}", str(path)):
            with pytest.raises(SchemaVersionError) as caught:
                await open_store(url)
            assert str(caught.value) == (
                f"SQLite database {path} does not exist; create it with "
                f"`docketctl db migrate --url sqlite:///{path}`, or open it with migrate=True"
            )
            assert not path.exists()
        # An existing file opens without being created (read-write mode, its name as a URI).
        sqlite3.connect(path).close()
        with pytest.raises(SchemaVersionError, match="has no Docket tables"):
            await open_store(f"sqlite:///{path}")
        async with await open_store(f"sqlite:///{path}", migrate=True) as store:
            assert await store.schema_version() == SCHEMA_VERSION
        async with await open_store(f"sqlite:///{path}") as store:
            assert await store.get_results(["x"]) == {}

    run(body())


def test_cli_migrate_and_purge(db_url: str) -> None:
    done = docket_cli("db", "purge", "--url", db_url)
    assert done.returncode == 1
    assert "docketctl db migrate" in done.stderr and "Traceback" not in done.stderr

    done = docket_cli("db", "migrate", "--url", db_url)
    assert done.returncode == 0, done.stderr
    assert "applied migration(s) 0001, 0002, 0003, 0004" in done.stdout
    done = docket_cli("db", "migrate", "--url", db_url)
    assert done.returncode == 0, done.stderr
    assert "up to date (schema version 4)" in done.stdout

    async def fill() -> None:
        async with await open_store(db_url) as store:
            past = datetime.now(UTC) - timedelta(minutes=1)
            await store.put_result(stored("1" * 64, expires_at=past))
            await store.put_result(stored("2" * 64, expires_at=past))
            await store.put_result(stored("3" * 64, expires_at=past + timedelta(days=1)))

    run(fill())
    done = docket_cli("db", "purge", "--url", db_url)
    assert done.returncode == 0, done.stderr
    assert "purged 2 expired result(s)" in done.stdout
    assert raw_sql(db_url, "SELECT count(*) FROM docket_results") == [(1,)]


def test_cli_errors_are_clear(tmp_path: Path) -> None:
    cases = [
        ("foo://x", "unknown store URL scheme"),
        (f"sqlite:///{tmp_path / 'missing' / 'x.db'}", "cannot open SQLite database"),
        ("postgresql://postgres@127.0.0.1:1/test", "cannot connect to Postgres"),
    ]
    for url, expected in cases:
        done = docket_cli("db", "migrate", "--url", url)
        assert done.returncode == 1, (url, done.stdout)
        assert expected in done.stderr
        assert "Traceback" not in done.stderr
    done = docket_cli("db", "migrate")
    assert done.returncode == 2 and "--url" in done.stderr


# -- a database that goes away ---------------------------------------------------


def test_sqlite_file_removed_mid_use(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    folder.mkdir()

    async def body() -> None:
        async with await open_store(f"sqlite:///{folder / 'docket.db'}", migrate=True) as store:
            await store.put_result(stored("a" * 64))
            shutil.rmtree(folder)
            # SQLite itself would keep writing to the unlinked file and lose it all.
            with pytest.raises(StoreUnavailable, match="removed while open") as caught:
                await store.put_result(stored("b" * 64))
            assert isinstance(caught.value.__cause__, FileNotFoundError)
            with pytest.raises(StoreUnavailable):
                await store.get_results(["a" * 64])
            with pytest.raises(StoreUnavailable, match="removed while open"):
                await store.get_payload("a" * 64)  # a cache hit's read checks it too
            with pytest.raises(StoreUnavailable):
                await store.claim_step("e", "s", owner="w")

    run(body())


def test_sqlite_file_replaced_mid_use_fails_a_cache_hit(tmp_path: Path) -> None:
    path = tmp_path / "docket.db"

    async def body() -> None:
        async with await open_store(f"sqlite:///{path}", migrate=True) as store:
            await store.put_result(stored("a" * 64))
            assert await store.get_payload("a" * 64) is not None
            other = tmp_path / "other.db"
            sqlite3.connect(other).close()
            os.replace(other, path)
            # The open connection still reads the old file's row: a hit from it would be
            # served from a database nobody else sees any more.
            with pytest.raises(StoreUnavailable, match="replaced by another file"):
                await store.get_payload("a" * 64)

    run(body())


def test_sqlite_locked_by_another_process_is_an_error_not_a_hang(tmp_path: Path) -> None:
    path = tmp_path / "docket.db"

    async def body() -> None:
        url = f"sqlite:///{path}?busy_timeout=200"
        async with await open_store(url, migrate=True) as store:
            await store.put_result(stored("a" * 64))
            blocker = sqlite3.connect(path, isolation_level=None)
            blocker.execute("BEGIN EXCLUSIVE")
            try:
                started = time.monotonic()
                with pytest.raises(StoreUnavailable, match="locked") as caught:
                    await store.claim_step("e", "s", owner="w")
                assert time.monotonic() - started < 5
                assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
                # WAL readers are not blocked by the writer.
                assert "a" * 64 in await store.get_results(["a" * 64])
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()
            assert (await store.claim_step("e", "s", owner="w")).won

    run(body())


def test_postgres_connection_terminated_mid_use(pg: PgSession) -> None:
    url = pg.fresh_url()

    async def body() -> None:
        async with await opened(url) as store:
            await store.put_result(stored("a" * 64))
            pg.terminate(url)
            # A write that is not idempotent may or may not have happened: reported.
            with pytest.raises(StoreUnavailable) as caught:
                await store.step_started("e", "s", owner="w")
            assert isinstance(caught.value.__cause__, psycopg.OperationalError)
            # A read retries once on a fresh connection; then writes work again.
            assert "a" * 64 in await store.get_results(["a" * 64])
            assert await store.step_started("e", "s", owner="w") in (1, 2)

    run(body())


def test_postgres_idempotent_writes_are_retried_through_dropped_connections(
    pg: PgSession,
) -> None:
    # Once every write on a dropped connection failed, even the upsert of a result.
    url = pg.fresh_url()

    def terminate() -> None:
        pg.terminate(url)

    async def body() -> None:
        async with await opened(url) as store:
            await store.start_execution("e", graph="g.G", target="g.T")
            assert (await store.claim_step("e", "s", owner="w")).won
            assert await store.step_started("e", "s", owner="w", claimed=True) == 1
            terminate()
            await store.put_result(stored("a" * 64))
            terminate()
            finished = await store.step_finished(
                "e",
                "s",
                status="succeeded",
                result=stored("b" * 64, execution_id="e", step="s"),
                attempt=AttemptRecord("e", "s", 1, "succeeded", T0, T0, 1.0, None, None, None, "w"),
                owner="w",
            )
            assert finished
            terminate()
            await store.record_cache_hit("e", "hit", owner="w")
            terminate()
            await store.settle_step(
                "e", "settled", result=stored("c" * 64, execution_id="e", step="settled"), owner="w"
            )
            terminate()
            await store.finish_execution("e", status="succeeded")
            kept = await store.get_results(["a" * 64, "b" * 64, "c" * 64])
            assert set(kept) == {"a" * 64, "b" * 64, "c" * 64}
            runs = {r.step: (r.status, r.attempts) for r in await store.get_step_runs("e")}
            assert runs == {
                "s": ("succeeded", 1),
                "hit": ("cached", 0),
                "settled": ("succeeded", 0),
            }
            assert [a.attempt for a in await store.get_attempts("e")] == [1]
            execution = await store.get_execution("e")
            assert execution is not None and execution.status == "succeeded"

    run(body())


def test_retry_transient_retries_unavailable_only_and_says_when_it_gave_up() -> None:
    calls: list[str] = []

    async def flaky(errors: list[StoreUnavailable] | list[StoreRejected]) -> str:
        calls.append("call")
        if errors:
            raise errors.pop(0)
        return "done"

    async def body() -> None:
        down = [StoreUnavailable("gone"), StoreUnavailable("gone again")]
        assert await retry_transient(lambda: flaky(down), delays=(0, 0.01)) == "done"
        assert len(calls) == 3
        calls.clear()
        with pytest.raises(StoreRejected, match="too large"):
            await retry_transient(lambda: flaky([StoreRejected("too large")]), delays=(0, 0.01))
        assert len(calls) == 1
        calls.clear()
        cause = OSError("connection reset")
        failing = StoreUnavailable("gone")
        failing.__cause__ = cause
        with pytest.raises(StoreUnavailable) as caught:
            await retry_transient(lambda: flaky([failing] * 5), delays=(0, 0.01))
        assert len(calls) == 3
        assert str(caught.value).startswith("gone (an idempotent write, tried 3 times over 0.")
        assert caught.value.__cause__ is cause
        # The budget stops it before the delays run out.
        calls.clear()
        with pytest.raises(StoreUnavailable):
            await retry_transient(lambda: flaky([failing] * 5), delays=(0.05, 1.0), budget=0.5)
        assert len(calls) == 2

    run(body())


def test_sqlite_idempotent_writes_wait_out_a_lock_others_do_not(tmp_path: Path) -> None:
    path = tmp_path / "docket.db"

    async def body() -> None:
        async with await open_store(f"sqlite:///{path}?busy_timeout=50", migrate=True) as store:
            blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            blocker.execute("BEGIN EXCLUSIVE")
            loop = asyncio.get_running_loop()

            def release() -> None:
                blocker.execute("ROLLBACK")
                blocker.close()

            # A claim run twice would find its own row and report it lost: not retried,
            # nor any other write whose answer would change.
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="locked"):
                await store.claim_step("e", "s", owner="w")
            with pytest.raises(StoreUnavailable, match="locked"):
                await store.step_started("e", "s", owner="w")
            with pytest.raises(StoreUnavailable, match="locked"):
                await store.take_over_claim("e", "s", old_owner="v", owner="w")
            with pytest.raises(StoreUnavailable, match="locked"):
                await store.release_claim("e", "s", owner="w")
            with pytest.raises(StoreUnavailable, match="locked"):
                await store.delete_results("e", ["s"])
            with pytest.raises(StoreUnavailable, match="locked"):
                await store.purge_results(scope="global")
            assert time.monotonic() - started < 0.4  # each waited busy_timeout once
            loop.call_later(0.3, release)
            started = time.monotonic()
            await store.put_result(stored("a" * 64))  # retried until the lock is gone
            assert 0.2 < time.monotonic() - started < 3
            assert "a" * 64 in await store.get_results(["a" * 64])

    run(body())


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (psycopg.errors.SerializationFailure, StoreUnavailable),
        (psycopg.errors.DeadlockDetected, StoreUnavailable),
        (psycopg.errors.QueryCanceled, StoreUnavailable),  # a statement timeout
        (psycopg.errors.AdminShutdown, StoreUnavailable),
        (psycopg.errors.ConnectionFailure, StoreUnavailable),
        (psycopg.errors.LockNotAvailable, StoreUnavailable),
        (psycopg.errors.TooManyConnections, StoreUnavailable),
        (psycopg.errors.ProgramLimitExceeded, StoreRejected),  # an index row too large
        (psycopg.errors.InvalidTextRepresentation, StoreRejected),
        (psycopg.errors.UniqueViolation, StoreRejected),
        (psycopg.errors.DiskFull, StoreUnavailable),  # over once space is freed
        (psycopg.errors.ConfigurationLimitExceeded, StoreRejected),
        (psycopg.errors.DataCorrupted, StoreRejected),  # a damaged file
        (psycopg.errors.UndefinedTable, StoreError),  # a schema problem: neither
    ],
)
def test_postgres_errors_are_told_apart_by_sqlstate(
    error: type[psycopg.Error], kind: type[StoreError]
) -> None:
    translated = postgres_translate(error("message"), "postgresql://db")
    assert type(translated) is kind


def test_sqlite_a_full_disk_is_unavailable_and_a_write_goes_through_once_space_is_freed(
    tmp_path: Path,
) -> None:
    # A full disk is an outage of the infrastructure: a durable run waits it out rather than
    # failing, and an idempotent write tried again goes through once space is freed.
    path = tmp_path / "docket.db"

    async def body() -> None:
        async with await open_store(f"sqlite:///{path}", migrate=True) as store:
            assert isinstance(store, SqliteStore)
            # As a full disk does: the database cannot grow by one more page.
            (pages,) = store._writer.execute("PRAGMA page_count").fetchone()
            store._writer.execute(f"PRAGMA max_page_count = {pages}")
            big = dataclasses.replace(stored("a" * 64), output=b"x" * 99999)
            with pytest.raises(StoreUnavailable, match="database or disk is full") as caught:
                # Queueing is not tried again (see stores._retry): the error comes at once.
                inputs = json.dumps({"x": "y" * 99999})
                await store.queue_execution("e-1", graph="g.G", target="g.T", inputs=inputs)
            assert isinstance(caught.value.__cause__, sqlite3.OperationalError)

            async def free_space() -> None:
                await asyncio.sleep(0.3)
                store._writer.execute(f"PRAGMA max_page_count = {pages * 100}")

            freeing = asyncio.create_task(free_space())
            await store.put_result(big)  # tried again until the disk has room
            await freeing
            assert "a" * 64 in await store.get_results(["a" * 64])

    run(body())


@pytest.mark.parametrize("damage", ["not a database", "pages overwritten"])
def test_sqlite_a_damaged_file_is_rejected_not_unavailable(tmp_path: Path, damage: str) -> None:
    # Once "cannot open SQLite database ...: file is not a database (does its directory
    # exist ...)", a StoreUnavailable: a durable worker would have waited for it for ever.
    path = tmp_path / "docket.db"

    async def body() -> None:
        async with await open_store(f"sqlite:///{path}", migrate=True) as store:
            await store.put_result(stored("a" * 64))
        data = path.read_bytes()
        if damage == "not a database":
            path.write_bytes(b"not a database " * 1000)
        else:  # the header stays, every page after it is garbage
            path.write_bytes(data[:100] + b"\xab" * (len(data) - 100))
        with pytest.raises(StoreRejected, match="is damaged") as caught:
            await open_store(f"sqlite:///{path}")
        assert not isinstance(caught.value, StoreUnavailable)
        assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)

    run(body())


def test_postgres_a_too_large_key_is_rejected_not_unavailable(pg: PgSession) -> None:
    # Once "StoreUnavailable: index row requires 10256 bytes": a caller retrying on
    # unavailable looped for ever.
    async def body() -> None:
        async with await opened(pg.fresh_url()) as store:
            started = time.monotonic()
            with pytest.raises(StoreRejected, match="index row requires") as caught:
                # 10 KB that do not compress, as a random id does not.
                await store.start_execution(secrets.token_urlsafe(7500), graph="g.G", target="g.T")
            assert time.monotonic() - started < 1  # not retried
            assert not isinstance(caught.value, StoreUnavailable)
            assert isinstance(caught.value.__cause__, psycopg.errors.ProgramLimitExceeded)
            # A value the column refuses: rejected too.
            with pytest.raises(StoreRejected, match="invalid input syntax for type json"):
                await store.queue_execution("e", graph="g.G", target="g.T", inputs="{not json")

    run(body())


def test_postgres_server_gone_is_an_error_not_a_hang(pg: PgSession) -> None:
    url = pg.fresh_url()
    parts = urlsplit(PG_URL)
    proxy = Proxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    via_proxy = proxied(url, proxy)

    async def body() -> None:
        run_migrate = await connect(via_proxy)
        await run_migrate.migrate()
        await run_migrate.close()
        store = await PostgresStore.open(via_proxy, timeout=1.0, connect_timeout=1)
        try:
            await store.put_result(stored("a" * 64))
            proxy.cut()
            started = time.monotonic()
            with pytest.raises(StoreUnavailable) as caught:
                await store.get_results(["a" * 64])
            with pytest.raises(StoreUnavailable):
                await store.step_started("e", "s", owner="w")
            assert time.monotonic() - started < 10
            assert isinstance(caught.value.__cause__, psycopg.OperationalError)
        finally:
            await store.close()

    run(body())


def test_postgres_operations_one_at_a_time_share_a_connection_never_withheld(
    pg: PgSession,
) -> None:
    url = with_query(pg.fresh_url(), pool_max_size="1", pool_timeout="2")

    async def pid(conn: psycopg.AsyncConnection[Any]) -> int:
        cur = await conn.execute("SELECT pg_backend_pid()")
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    async def body() -> None:
        async with await open_store(url, migrate=True) as store:
            assert isinstance(store, PostgresStore)
            first = await store._run(pid)
            await store.put_result(stored("a" * 64))
            assert await store._run(pid) == first  # kept out of the pool, used again
            # Many at once on a pool of one: the kept connection goes back to the pool
            # while others wait there, so none of them times out.
            keys = [f"{i:064d}" for i in range(20)]
            await asyncio.gather(
                *(store.put_result(stored(k)) for k in keys),
                *(store.get_results([k]) for k in keys),
            )
            assert set(await store.get_results(keys)) == set(keys)
            # A kept connection the server dropped: a read retries, an idempotent write is
            # tried again (stores._retry), another write says so and the next one works.
            pg.sql(PG_URL, "SELECT pg_terminate_backend(%s)", (await store._run(pid),))
            assert "a" * 64 in await store.get_results(["a" * 64])
            pg.sql(PG_URL, "SELECT pg_terminate_backend(%s)", (await store._run(pid),))
            await store.put_result(stored("b" * 64))
            assert "b" * 64 in await store.get_results(["b" * 64])
            pg.sql(PG_URL, "SELECT pg_terminate_backend(%s)", (await store._run(pid),))
            with pytest.raises(StoreUnavailable):
                await store.start_execution("e-1", graph="g.G", target="g.T")
            await store.start_execution("e-1", graph="g.G", target="g.T")
            last = await store._run(pid)
        # Closing the store closes the kept connection too.
        left = pg.sql(PG_URL, "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (last,))
        assert left == [(0,)]

    run(body())


def test_postgres_pool_options_come_from_the_url(pg: PgSession) -> None:
    url = with_query(pg.fresh_url(), pool_max_size="1", pool_timeout="0.2")

    async def body() -> None:
        async with await open_store(url, migrate=True) as store:
            assert isinstance(store, PostgresStore)
            pool = store._pool
            # A max_size below the default min_size (2) brings min_size down to it.
            assert (pool.min_size, pool.max_size, pool.timeout) == (1, 1, 0.2)
            assert "pool_" not in store.url  # libpq would refuse them: they are taken out
            holding = asyncio.Event()

            async def hold(conn: psycopg.AsyncConnection[Any]) -> None:
                holding.set()
                await conn.execute("SELECT pg_sleep(1)")

            held = asyncio.create_task(store._run(hold))
            await holding.wait()
            # The one connection is busy: the next operation waits pool_timeout and says why.
            with pytest.raises(StoreUnavailable) as caught:
                await store.get_results(["k"])
            assert str(caught.value) == (
                f"Postgres at {store.url}: no pooled connection came free within 0.2s "
                "(all 1 busy); raise pool_max_size or pool_timeout in the URL, or run fewer "
                "executions at once"
            )
            await held
            assert await store.get_results(["k"]) == {}

    run(body())


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            "pool_max_size=0",
            "pool_max_size must be a whole number of connections, 1 or more, not '0'",
        ),
        (
            "pool_min_size=-1",
            "pool_min_size must be a whole number of connections, 0 or more, not '-1'",
        ),
        ("pool_timeout=soon", "pool_timeout must be a number of seconds above 0, not 'soon'"),
        ("pool_timeout=0", "pool_timeout must be a number of seconds above 0, not '0'"),
        ("pool_min_size=5&pool_max_size=2", "pool_min_size (5) is above pool_max_size (2)"),
    ],
)
def test_bad_postgres_pool_options_are_url_errors(query: str, message: str) -> None:
    url = f"postgresql://u:secret@127.0.0.1:1/x?sslmode=disable&{query}"
    with pytest.raises(StoreUrlError) as caught:
        run(open_store(url))
    assert str(caught.value) == f"{message}, in {redact_url(url)!r}"
    assert "secret" not in str(caught.value)


# -- keys and rows -------------------------------------------------------------


def test_keys() -> None:
    assert len(workflow_key("e", "s")) == 64
    assert workflow_key("e", "s") != workflow_key("e", "s", "2")
    assert workflow_key("ab", "c") != workflow_key("a", "bc")
    assert global_key("g.G", "S", "", [b""]) != global_key("g.G", "S", "", [None])
    assert global_key("g.G", "S", "", [b"a", b"b"]) != global_key("g.G", "S", "", [b"ab"])
    assert global_key("g.G", "S", "1", [b"a"]) != global_key("g.G", "S", "2", [b"a"])
    assert global_key("g.G", "S", "1", [b"a"]) == global_key("g.G", "S", "1", [b"a"])
    # The same step in another graph (namespace) has keys of its own.
    assert global_key("g.G", "S", "1", [b"a"]) != global_key("g.H", "S", "1", [b"a"])
    assert global_key("g.GS", "", "1", [b"a"]) != global_key("g.G", "S", "1", [b"a"])


def test_global_keys_are_those_rows_were_written_under() -> None:
    # Digests of the release before keys were made from a prefix hashed once: a change
    # of the key's bytes would make every GLOBAL row already kept a miss.
    inputs = [b"\x08\x01", None, b""]
    before = "2bec1ae43d8af1e15bf3937d7cd481a74a4a9ffa4456876dbd9dc9723eb73cad"
    hmac_before = "09aebe7e1dced66889561f0f0bb386295edf300877facc418cb59b853522ce5d"
    assert global_key("shop.Orders", "Quote", "v2", inputs) == before
    assert global_key("shop.Orders", "Quote", "v2", inputs, secret=b"k" * 16) == hmac_before
    keys = GlobalKeys("shop.Orders", "Quote", "v2")
    # Used again, and across secrets in either order, the prefix hashed once stays intact.
    for _ in range(2):
        assert keys(inputs) == before
        assert keys(inputs, b"k" * 16) == hmac_before
    assert keys([]) == global_key("shop.Orders", "Quote", "v2", [])


def test_a_result_row_checks_its_scope() -> None:
    with pytest.raises(ValueError):
        StoredResult("k", "workflow", None, "s", "", "t", b"", "{}", T0)
    with pytest.raises(ValueError):
        StoredResult("k", "global", "e", "s", "", "t", b"", "{}", T0)
    with pytest.raises(ValueError):
        StoredResult("k", "forever", None, "s", "", "t", b"", "{}", T0)  # type: ignore[arg-type]


def test_passwords_stay_out_of_messages() -> None:
    assert redact_url("postgresql://u:secret@db:5432/x?sslmode=require") == (
        "postgresql://u:***@db:5432/x?sslmode=require"
    )
    assert redact_url("postgresql://u@db/x") == "postgresql://u@db/x"
    with pytest.raises(StoreUnavailable) as caught:
        run(open_store("postgresql://u:secret@127.0.0.1:1/x"))
    assert "secret" not in str(caught.value)


def test_sqlite_reads_go_to_the_writer_thread_without_wal(tmp_path: Path) -> None:
    async def body() -> None:
        async with await open_store(f"sqlite:///{tmp_path / 'x.db'}", migrate=True) as store:
            assert isinstance(store, SqliteStore)
            # As on a file system where journal_mode=WAL does not take.
            store._reads_on_loop = False
            await store.put_result(stored("a" * 64))
            assert "a" * 64 in await store.get_results(["a" * 64])
            assert await store.schema_version() == SCHEMA_VERSION

    run(body())


def test_sqlite_normal_writes_on_the_loop_and_waits_for_a_lock_on_the_thread(
    tmp_path: Path,
) -> None:
    path = tmp_path / "x.db"

    async def body() -> None:
        url = f"sqlite:///{path}?synchronous=normal&busy_timeout=5000"
        async with await open_store(url, migrate=True) as store:
            assert isinstance(store, SqliteStore)
            loop = asyncio.get_running_loop()
            # On the loop: the write is done before the coroutine first yields.
            put = store.put_result(stored("a" * 64))
            with pytest.raises(StopIteration):
                put.send(None)
            assert "a" * 64 in await store.get_results(["a" * 64])
            # Another process holds the write lock: the write waits on the thread, then lands.
            other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            other.execute("BEGIN IMMEDIATE")
            waiting = asyncio.ensure_future(store.put_result(stored("b" * 64)))
            await asyncio.sleep(0.2)
            assert not waiting.done()
            await loop.run_in_executor(None, other.execute, "COMMIT")
            await waiting
            other.close()
            assert "b" * 64 in await store.get_results(["b" * 64])
            # A transaction on the loop that fails half-way writes nothing.
            with pytest.raises(ValueError):
                await store.step_finished(
                    "e",
                    "s",
                    status="succeeded",
                    result=stored("c" * 64, execution_id="e"),
                    attempt=AttemptRecord(
                        "e", "other", 1, "succeeded", T0, T0, 1.0, None, None, None, "me"
                    ),
                )
            assert await store.get_results(["c" * 64]) == {}

    run(body())


def test_sqlite_normal_checkpoints_the_wal_from_the_thread(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    from docket_runtime.stores import sqlite as sqlite_module

    async def body() -> None:
        url = f"sqlite:///{path}?synchronous=normal"
        async with await open_store(url, migrate=True) as store:
            assert isinstance(store, SqliteStore)
            for i in range(sqlite_module._CHECKPOINT_EVERY):
                await store.put_result(stored(f"{i:064d}"))
            # The checkpoint was handed to the writer thread: a write there runs after it.
            await store.purge_expired()
            # What the database file holds, without the WAL: every row checkpointed.
            main = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
            (count,) = main.execute("SELECT count(*) FROM docket_results").fetchone()
            main.close()
            assert count == sqlite_module._CHECKPOINT_EVERY

    run(body())


# -- executions run by a durable worker (docket_runtime.durable) -----------------------------

G, TG = "shop.Orders", "shop.Receipt"
TRACE_A = '{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}'
TRACE_B = '{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}'


def test_queued_waiting_and_cancelled_executions(url: str) -> None:
    order = '{"order": {"json": {"id": "1"}, "proto": "CgEx", "type": "shop.Order"}}'
    other = '{"order": {"json": {"id": "2"}, "proto": "CgEy", "type": "shop.Order"}}'
    spelled_otherwise = json.dumps(json.loads(order), indent=2)

    async def body() -> None:
        async with await opened(url) as store:
            queued = await store.queue_execution(
                "e1", graph=G, target=TG, inputs=order, trace_context=TRACE_A, now=T0
            )
            assert (queued.status, queued.started_at, queued.wake_at, queued.error) == (
                "queued",
                T0,
                None,
                None,
            )
            assert json.loads(queued.trace_context or "null") == json.loads(TRACE_A)
            assert queued.inputs is not None and json.loads(queued.inputs) == json.loads(order)
            # Queued, running or waiting: left alone (the caller sees the row as it is).
            later = T0 + timedelta(hours=1)
            again = await store.queue_execution("e1", graph=G, target=TG, inputs=other, now=later)
            assert (again.status, again.started_at) == ("queued", T0)
            assert again.inputs is not None and json.loads(again.inputs) == json.loads(order)
            await store.start_execution("e1", graph=G, target=TG, now=later)
            running = await store.queue_execution(
                "e1", graph=G, target=TG, inputs=order, trace_context=TRACE_B
            )
            assert (running.status, running.started_at) == ("running", T0)
            assert running.inputs is not None  # a resume keeps the inputs
            # ... and the trace context it was enqueued in (never compared, kept as it is).
            assert json.loads(running.trace_context or "null") == json.loads(TRACE_A)

            wake = T0 + timedelta(seconds=30)
            await store.suspend_execution("e1", status="waiting", wake_at=wake, error="retry A")
            waiting = await store.get_execution("e1")
            assert waiting is not None
            assert (waiting.status, waiting.wake_at, waiting.error) == ("waiting", wake, "retry A")
            await store.start_execution("e1", graph=G, target=TG)  # the retry job resumes it
            resumed = await store.get_execution("e1")
            assert resumed is not None
            assert (resumed.status, resumed.wake_at, resumed.error) == ("running", None, None)
            await store.suspend_execution("e1", status="queued")  # a hand-off
            handed = await store.get_execution("e1")
            assert handed is not None and (handed.status, handed.wake_at) == ("queued", None)
            with pytest.raises(ValueError):
                await store.suspend_execution("e1", status="running")  # type: ignore[arg-type]

            # Failed: queued again only with the same graph, target and inputs.
            await store.finish_execution("e1", status="failed", error="B: boom", now=later)
            assert (
                await store.queue_execution("e1", graph=G, target=TG, inputs=other)
            ).status == "failed"
            assert (
                await store.queue_execution("e1", graph="shop.Orders", target="x", inputs=order)
            ).status == "failed"
            requeued = await store.queue_execution(
                "e1", graph=G, target=TG, inputs=spelled_otherwise, trace_context=TRACE_B
            )
            assert (requeued.status, requeued.error, requeued.finished_at) == (
                "queued",
                None,
                None,
            )
            assert requeued.started_at == T0
            # Queued again from another trace: its jobs join the new one.
            assert json.loads(requeued.trace_context or "null") == json.loads(TRACE_B)

            # Cancelled: from queued, running or waiting; an ended execution stays as it is.
            cancelled = await store.cancel_execution("e1", now=later)
            assert cancelled is not None
            assert (cancelled.status, cancelled.finished_at) == ("cancelled", later)
            await store.suspend_execution("e1", status="waiting", wake_at=wake)
            still = await store.get_execution("e1")
            assert still is not None and still.status == "cancelled"
            assert await store.cancel_execution("nope") is None
            await store.start_execution("e2", graph=G, target=TG)
            await store.finish_execution("e2", status="succeeded")
            ended = await store.cancel_execution("e2")
            assert ended is not None and ended.status == "succeeded"
            assert (
                await store.queue_execution("e1", graph=G, target=TG, inputs=order)
            ).status == "queued"

    run(body())


def test_the_last_succeeded_execution_of_a_target(url: str) -> None:
    async def body() -> None:
        async with await opened(url) as store:
            assert await store.last_succeeded_execution(graph=G, target=TG) is None
            cases: list[tuple[str, int, ExecutionStatus]] = [
                ("a", 1, "succeeded"),
                ("cron@b", 3, "succeeded"),
                ("cron@c", 2, "succeeded"),
                ("cron@d", 9, "failed"),
                ("e", 5, "succeeded"),
            ]
            for execution_id, seconds, status in cases:
                await store.start_execution(execution_id, graph=G, target=TG, now=T0)
                await store.finish_execution(
                    execution_id, status=status, now=T0 + timedelta(seconds=seconds)
                )
            await store.start_execution("f", graph="shop.Orders", target="shop.Other", now=T0)
            await store.finish_execution("f", status="succeeded", now=T0 + timedelta(hours=1))
            last = await store.last_succeeded_execution(graph=G, target=TG)
            assert last is not None and last.execution_id == "e"
            last = await store.last_succeeded_execution(graph=G, target=TG, id_prefix="cron@")
            assert last is not None and last.execution_id == "cron@b"
            assert await store.last_succeeded_execution(graph=G, target=TG, id_prefix="x") is None
            assert await store.last_succeeded_execution("shop.Other", "shop.Receipt") is None

    run(body())
