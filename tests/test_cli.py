"""``docketctl``, the operations command: every command against SQLite and Postgres.

Most commands run in process through click's ``CliRunner``; a few run the
installed console script in a subprocess, as an operator would. The
executions are real: run in process on the generated ``testgraphs.Orders``
(succeeded; failed after retries), recorded and resumed by the durable core
(``durabletest.Orders``: waiting for a durable retry), killed with SIGKILL
while holding an at-most-once claim (``tests/persistence_worker.py``: stuck),
settled and run again, and on Postgres enqueued to real Procrastinate workers
(``tests/durable_worker.py``), one of them killed mid-step. Human output is
checked on its key lines, ``--json`` exactly, against what the store holds.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import procrastinate
import pytest
from click.testing import CliRunner
from conftest import PgSession, raw_sql
from durable_support import generated
from durable_support import pb as durable_pb
from durable_worker import EFFECTS_TABLE, MemoryEffects, build
from test_durable import Workers
from test_persistence import (
    OrderSteps,
    ScoreSteps,
    an_order,
    dk,
    effects,
    finished,
    kill,
    pb,
    wait_until,
    worker,
)

from docket_runtime import StepFailed
from docket_runtime._cli import docketctl
from docket_runtime._runner import owner_alive
from docket_runtime.durable import enqueue, install
from docket_runtime.durable._record import record_execution
from docket_runtime.durable._resume import Continue, resume
from docket_runtime.stores import (
    SCHEMA_VERSION,
    AttemptRecord,
    ExecutionRecord,
    StepRunRecord,
    StoredResult,
    open_store,
)

__all__ = ["dk", "pb"]  # fixtures, shared with test_persistence

T = TypeVar("T")

DOCKETCTL = Path(sys.executable).parent / "docketctl"
SAFETY_NET = 60.0
ORDERS = "testgraphs.orders_docket:Orders"
HOST = socket.gethostname()


@dataclass(frozen=True)
class Done:
    """How a command ended: its exit status and what it printed."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, self
        return json.loads(self.out)

    def line(self, start: str, *words: str) -> str:
        """The one line of the output that starts with ``start`` and holds every word."""
        lines = self.out.splitlines()
        found = [ln for ln in lines if ln.startswith(start) and all(w in ln for w in words)]
        assert len(found) == 1, (words, self.out)
        return found[0]


def ctl(*args: str) -> Done:
    """Run ``docketctl ARGS`` in process."""
    result = CliRunner().invoke(
        docketctl, list(args), catch_exceptions=False, env={"DOCKET_DATABASE_URL": None}
    )
    return Done(result.exit_code, result.stdout, result.stderr)


def script(*args: str, env: dict[str, str] | None = None) -> Done:
    """Run the installed ``docketctl`` console script."""
    base = {k: v for k, v in os.environ.items() if k != "DOCKET_DATABASE_URL"}
    done = subprocess.run(
        [str(DOCKETCTL), *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=SAFETY_NET,
        check=False,
    )
    return Done(done.returncode, done.stdout, done.stderr)


def one_line_error(done: Done, code: int, *needles: str) -> None:
    """``done`` failed with ``code`` and one ``docketctl: error:`` line holding ``needles``."""
    assert done.code == code, done
    assert "Traceback" not in done.err
    lines = done.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("docketctl: error: "), done.err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def run(body: Awaitable[T]) -> T:
    async def guarded() -> T:
        return await asyncio.wait_for(body, SAFETY_NET)

    return asyncio.run(guarded())


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


async def records(url: str, execution_id: str) -> tuple[Any, list[StepRunRecord], list[Any]]:
    """What the store holds of an execution: its row, step runs and attempts."""
    async with await open_store(url) as store:
        return (
            await store.get_execution(execution_id),
            await store.get_step_runs(execution_id),
            await store.get_attempts(execution_id),
        )


# The JSON documents, as docs/operations.md describes them.


def execution_json(
    row: ExecutionRecord | None, execution_id: str = "", stuck: list[str] | None = None
) -> dict[str, Any]:
    return {
        "execution_id": row.execution_id if row else execution_id,
        "recorded": row is not None,
        "graph": row and row.graph,
        "target": row and row.target,
        "status": row and row.status,
        "started_at": row and iso(row.started_at),
        "finished_at": row and iso(row.finished_at),
        "wake_at": row and iso(row.wake_at),
        "error": row and row.error,
        "durable": row is not None and row.inputs is not None,
        "stuck": stuck or [],
    }


def step_json(r: StepRunRecord, alive: bool | None) -> dict[str, Any]:
    return {
        "step": r.step,
        "status": r.status,
        "attempts": r.attempts,
        "started_at": iso(r.started_at),
        "finished_at": iso(r.finished_at),
        "duration_ms": r.duration_ms,
        "owner": r.owner,
        "owner_alive": alive,
        "error": r.error,
    }


def attempt_json(a: AttemptRecord) -> dict[str, Any]:
    return {
        "step": a.step,
        "attempt": a.attempt,
        "status": a.status,
        "started_at": iso(a.started_at),
        "finished_at": iso(a.finished_at),
        "duration_ms": a.duration_ms,
        "owner": a.owner,
        "error_type": a.error_type,
        "error_message": a.error_message,
        "traceback": a.traceback,
    }


def result_json(r: StoredResult) -> dict[str, Any]:
    return {
        "step": r.step,
        "version": r.version,
        "output_type": r.output_type,
        "output": json.loads(r.output_json),
        "damaged": None,
        "created_at": iso(r.created_at),
        "expires_at": iso(r.expires_at),
    }


@pytest.fixture(scope="module")
def durable_gen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tests/protos_durable`` generated and importable (``durabletest``)."""
    return generated(tmp_path_factory)


# -- the command itself ------------------------------------------------------------------------


def test_the_console_script_is_docketctl(db_url: str) -> None:
    done = script("--version")
    assert done.code == 0 and done.out.startswith("docketctl, version "), done
    done = script("db", "migrate", env={"DOCKET_DATABASE_URL": db_url})
    assert done.code == 0, done
    assert "schema version" in done.out
    assert raw_sql(db_url, "SELECT count(*) FROM docket_executions") == [(0,)]
    done = script("--help")
    for command in ("executions", "rerun-from", "settle", "cancel", "retry", "cache", "db"):
        assert f"  {command} " in done.out, command


def test_without_click_it_says_what_to_install() -> None:
    code = "import sys; sys.modules['click'] = None; import runpy; "
    code += "sys.argv = ['docketctl', 'db', 'purge']; runpy.run_module("
    code += "'docket_runtime.cli', run_name='__main__')"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=SAFETY_NET
    )
    assert done.returncode == 1
    assert done.stderr == (
        "docketctl needs click, which is not installed: pip install 'docket-proto[cli]'\n"
    )


def test_usage_errors_exit_2() -> None:
    done = script("db", "purge")
    assert done.code == 2 and "--url" in done.err and "Traceback" not in done.err
    done = script("executions-typo")
    assert done.code == 2 and "No such command" in done.err
    for args in (
        ["executions", "list", "--url", "sqlite:///x.db", "--since", "yesterday"],
        ["executions", "list", "--url", "sqlite:///x.db", "--status", "lost"],
        ["cache", "purge", "--url", "sqlite:///x.db"],
        ["settle", "x", "Step", "--url", "sqlite:///x.db", "--graph", "m:G"],
    ):
        done = ctl(*args)
        assert done.code == 2, (args, done)
    assert not Path("x.db").exists()


def test_a_missing_sqlite_database_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.db"
    url = f"sqlite:///{missing}"
    done = script("db", "purge", "--url", url)
    one_line_error(done, 1, f"no SQLite database at {missing}", "docketctl db migrate")
    for args in (["executions", "list"], ["executions", "show", "x"], ["db", "status"]):
        one_line_error(ctl(*args, "--url", url), 1, "no SQLite database")
    assert not missing.exists()


def test_a_wrong_or_unreachable_database_is_one_line(tmp_path: Path) -> None:
    one_line_error(ctl("executions", "list", "--url", "foo://x"), 1, "unknown store URL scheme")
    one_line_error(
        ctl("db", "status", "--url", "postgresql://postgres@127.0.0.1:1/test"),
        1,
        "cannot connect to Postgres",
    )
    empty = tmp_path / "empty.db"
    empty.touch()
    one_line_error(
        ctl("executions", "list", "--url", f"sqlite:///{empty}"),
        1,
        "has no Docket tables",
        "docketctl db migrate",
    )


def test_an_owner_is_alive_dead_or_unknown() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    owner = f"{HOST}:{proc.pid}:abcd1234"
    try:
        assert owner_alive(owner) is True
        proc.kill()
        deadline = time.monotonic() + SAFETY_NET
        while owner_alive(owner):  # a zombie until reaped: dead already
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert Path(f"/proc/{proc.pid}").exists()  # not reaped yet
    finally:
        proc.kill()
        proc.wait()
    assert owner_alive(owner) is False
    assert owner_alive(f"{HOST}:{os.getpid()}:me") is True
    assert owner_alive(f"elsewhere.example:{os.getpid()}:x") is None  # another host
    assert owner_alive("Graph(owner=...)") is None  # given by hand


# -- db ------------------------------------------------------------------------------------------


def test_db_status_migrate_and_purge(db_url: str, tmp_path: Path) -> None:
    if db_url.startswith("sqlite:"):
        raw_sql(db_url, "SELECT 1")  # an empty file: no tables yet
    done = ctl("db", "status", "--url", db_url)
    assert done.code == 0, done
    assert done.line("schema", "version 0").split() == [
        "schema",
        "version",
        "0",
        "(this",
        "docketctl",
        "knows",
        "up",
        "to",
        f"{SCHEMA_VERSION})",
    ]
    assert done.line("0001_initial").split() == ["0001_initial", "pending"]
    assert "4 pending: docketctl db migrate --url" in done.out
    pending = ctl("db", "status", "--url", db_url, "--json").json()
    assert pending["applied"] == [] and pending["schema_version"] == 0
    assert pending["pending"] == [
        {"version": 1, "name": "0001_initial"},
        {"version": 2, "name": "0002_step_attempts"},
        {"version": 3, "name": "0003_results_graph"},
        {"version": 4, "name": "0004_trace_context"},
    ]

    done = ctl("db", "migrate", "--url", db_url)
    assert done.code == 0 and "applied migration(s) 0001, 0002, 0003, 0004" in done.out, done

    async def migrations() -> Any:
        async with await open_store(db_url) as store:
            return store.url, await store.get_migrations()

    where, applied = run(migrations())
    assert ctl("db", "status", "--url", db_url, "--json").json() == {
        "url": where,
        "schema_version": SCHEMA_VERSION,
        "supported_version": SCHEMA_VERSION,
        "applied": [
            {"version": m.version, "name": m.name, "applied_at": iso(m.applied_at)} for m in applied
        ],
        "pending": [],
        "queue": None if db_url.startswith("sqlite:") else False,  # Postgres, but no queue
    }
    done = ctl("db", "status", "--url", db_url)
    assert done.line("0003_results_graph", "applied")
    assert "pending" not in done.out
    if db_url.startswith("postgresql:"):
        assert done.line("queue", "Procrastinate's tables absent")
    if db_url.startswith("postgresql:"):
        assert done.line("queue", "Procrastinate's tables absent")

    done = ctl("db", "purge", "--url", db_url)
    assert done.code == 0 and done.out.startswith("purged 0 expired result(s)"), done


# -- executions in every state -----------------------------------------------------------------


def test_executions_in_every_state(
    db_url: str, gen_dir: Path, durable_gen: Path, pb: Any, dk: Any
) -> None:
    """Succeeded, failed after retries, waiting for a durable retry, cancelled; list,
    show, cancel, retry and rerun-from on them."""
    steps = OrderSteps(pb)

    async def setup() -> None:
        async with await open_store(db_url, migrate=True) as store:
            graph = dk.Orders(steps, store=store, record=True)
            await graph.run(pb.Confirmation, order=an_order(pb, "ok-1"), execution_id="ok-1")
            steps.ship_failures = 3
            with pytest.raises(StepFailed):
                await graph.run(pb.Confirmation, order=an_order(pb, "bad-1"), execution_id="bad-1")
            # The durable core's own path: recorded as enqueue does, resumed as a worker
            # does; Ship fails and is retried by a job due in 1 s: the execution waits.
            registry = build(store, MemoryEffects())
            durable = registry.get("durabletest.Orders")
            for execution_id in ("flaky-1", "flaky-2"):
                order = durable_pb().Order(order_id=execution_id, amount_cents=500)
                inputs = {"order": order}
                target = durable_pb().Confirmation
                row = await record_execution(durable, target, inputs, execution_id=execution_id)
                assert row.status == "queued"
                outcome = await resume(registry, execution_id, stopping=lambda: False)
                assert isinstance(outcome, Continue)

    run(setup())
    rows = {i: run(records(db_url, i)) for i in ("ok-1", "bad-1", "flaky-1", "flaky-2")}

    # list: the latest first, exactly what the rows hold.
    assert ctl("executions", "list", "--url", db_url, "--json").json() == [
        execution_json(rows[i][0]) for i in ("flaky-2", "flaky-1", "bad-1", "ok-1")
    ]
    done = ctl("executions", "list", "--url", db_url)
    assert done.out.splitlines()[0].split() == [
        "EXECUTION",
        "GRAPH",
        "STATUS",
        "STARTED",
        "TIME",
        "NOTE",
    ]
    assert done.line("ok-1", "testgraphs.Orders", "succeeded")
    assert "Ship" in done.line("bad-1", "failed", "carrier timed out")
    assert done.line("flaky-1", "durabletest.Orders", "waiting", "retry ")  # in 1 s, or ago

    def ids(*args: str) -> list[str]:
        listed = ctl("executions", "list", "--url", db_url, "--json", *args).json()
        return [e["execution_id"] for e in listed]

    assert ids("--status", "failed") == ["bad-1"]
    assert ids("--status", "succeeded", "--status", "waiting") == ["flaky-2", "flaky-1", "ok-1"]
    assert ids("--graph", "durabletest.Orders") == ["flaky-2", "flaky-1"]
    assert ids("--limit", "1") == ["flaky-2"]
    assert ids("--since", "1h") == ["flaky-2", "flaky-1", "bad-1", "ok-1"]
    assert ids("--since", "2999-01-01T00:00:00") == []
    assert ctl("executions", "list", "--url", db_url, "--since", "2999-01-01").out == (
        "no executions\n"
    )
    # Waiting for a retry due in a second is not stuck; 5 minutes late it would be.
    assert ids("--stuck") == []
    assert ctl("executions", "list", "--url", db_url, "--stuck").out == "no stuck executions\n"

    # show: a failed execution and the error of each attempt.
    bad, bad_runs, bad_attempts = rows["bad-1"]
    done = ctl("executions", "show", "bad-1", "--url", db_url, "--attempts")
    assert done.code == 0, done
    assert done.line("status", "failed").split() == ["status", "failed"]
    assert done.line("error", "carrier timed out").startswith("error      StepFailed: step 'Ship'")
    assert done.line("run", "in process")
    ship, *attempts = [line for line in done.out.splitlines() if line.startswith("Ship ")]
    assert ship.split()[:3] == ["Ship", "failed", "3"]
    assert ship.endswith("yes    ConnectionError: carrier timed out")
    assert [line.split()[:3] for line in attempts] == [
        ["Ship", "1", "failed"],
        ["Ship", "2", "failed"],
        ["Ship", "3", "failed"],
    ]
    assert all(line.endswith("builtins.ConnectionError: carrier timed out") for line in attempts)
    me = True  # the steps ran in this very process, which is alive
    assert ctl("executions", "show", "bad-1", "--url", db_url, "--json", "--attempts").json() == {
        "execution": execution_json(bad),
        "jobs": None,
        "steps": [step_json(r, me) for r in bad_runs],
        "attempts": [attempt_json(a) for a in bad_attempts],
    }

    # show: waiting for a durable retry (the queue cannot be seen: no Procrastinate here).
    flaky, flaky_runs, _ = rows["flaky-1"]
    assert flaky.status == "waiting" and flaky.wake_at is not None
    done = ctl("executions", "show", "flaky-1", "--url", db_url)
    assert done.line("status", "waiting").split() == ["status", "waiting"]
    assert done.line("retry at", f"{flaky.wake_at:%Y-%m-%d %H:%M:%S}Z (")
    assert done.line("error", "carrier API unreachable")
    assert done.line("run", "by durable workers (the queue cannot be seen from here)")
    assert done.line("Ship", "failed", "1", "carrier API unreachable")
    assert ctl("executions", "show", "flaky-1", "--url", db_url, "--json").json() == {
        "execution": execution_json(flaky),
        "jobs": None,
        "steps": [step_json(r, me) for r in flaky_runs],
    }
    # Its retry 5 minutes late: stuck. With no grace, once the second has passed.
    last_wake = max(flaky.wake_at, rows["flaky-2"][0].wake_at)
    time.sleep(max(0.0, (last_wake - datetime.now(UTC)).total_seconds()) + 0.05)
    stuck = ctl("executions", "list", "--url", db_url, "--stuck", "--grace", "0s", "--json").json()
    assert [(e["execution_id"], e["stuck"][0].split(" (")[0]) for e in stuck] == [
        ("flaky-2", f"its retry was due at {rows['flaky-2'][0].wake_at:%Y-%m-%d %H:%M:%S}Z"),
        ("flaky-1", f"its retry was due at {flaky.wake_at:%Y-%m-%d %H:%M:%S}Z"),
    ]

    # show: a succeeded execution, with its kept results.
    ok, ok_runs, _ = rows["ok-1"]

    async def kept() -> list[StoredResult]:
        async with await open_store(db_url) as store:
            return await store.get_execution_results("ok-1")

    results = run(kept())
    assert [r.step for r in results] == ["docket.inputs", "ChargeCard", "Ship"]
    done = ctl("executions", "show", "ok-1", "--url", db_url, "--results")
    assert done.line("status", "succeeded")
    assert done.line("ChargeCard: testgraphs.Charge (kept")
    charge = json.loads(results[1].output_json)
    assert done.line("  " + json.dumps(charge, sort_keys=True))
    assert ctl("executions", "show", "ok-1", "--url", db_url, "--json", "--results").json() == {
        "execution": execution_json(ok),
        "jobs": None,
        "steps": [step_json(r, me) for r in ok_runs],
        "results": [result_json(r) for r in results],
    }
    one_line_error(ctl("executions", "show", "nope", "--url", db_url), 1, "no execution 'nope'")

    # cancel: ended ones are refused; a durable one with no queue here, in the store only.
    one_line_error(ctl("cancel", "ok-1", "--url", db_url), 1, "already succeeded")
    one_line_error(ctl("cancel", "nope", "--url", db_url), 1, "no execution 'nope'")
    done = ctl("cancel", "flaky-2", "--url", db_url)
    assert done.code == 0, done
    assert done.out.splitlines() == [
        "marked execution flaky-2 cancelled in the database only",
        "there is no queue here: a job that starts later finds it cancelled",
    ]
    cancelled = run(records(db_url, "flaky-2"))[0]
    assert cancelled.status == "cancelled"
    assert ctl("executions", "list", "--url", db_url, "--status", "cancelled", "--json").json() == [
        execution_json(cancelled)
    ]
    one_line_error(ctl("cancel", "flaky-2", "--url", db_url), 1, "already cancelled")

    # retry: needs the queue; an execution run in process was never enqueued.
    no_queue = "Procrastinate"
    one_line_error(ctl("retry", "flaky-2", "--url", db_url), 1, no_queue)
    one_line_error(ctl("retry", "bad-1", "--url", db_url), 1, "ran in process, not enqueued")
    one_line_error(ctl("retry", "nope", "--url", db_url), 1, "no execution 'nope'")

    # rerun-from: Ship and what follows it are forgotten, then computed again.
    path = ["--path", str(gen_dir)]
    one_line_error(
        ctl("rerun-from", "ok-1", "Ship", "--url", db_url, "--graph", "no.such_docket"),
        1,
        "cannot import no.such_docket",
    )
    one_line_error(
        ctl("rerun-from", "ok-1", "Ship", "--url", db_url, *path, "--graph", f"{ORDERS}x"),
        1,
        "has no graph 'Ordersx'",
    )
    scoring = "testgraphs.orders_docket:Scoring"
    one_line_error(
        ctl("rerun-from", "ok-1", "Ship", "--url", db_url, *path, "--graph", scoring),
        1,
        "ran graph testgraphs.Orders, not testgraphs.Scoring",
    )
    one_line_error(
        ctl("rerun-from", "ok-1", "Pack", "--url", db_url, *path, "--graph", ORDERS),
        1,
        "has no step 'Pack'; its steps: Validate, ChargeCard, Ship, Confirm",
    )
    one_line_error(
        ctl("rerun-from", "nope", "Ship", "--url", db_url, *path, "--graph", ORDERS),
        1,
        "no execution 'nope'",
    )
    done = ctl("rerun-from", "ok-1", "Ship", "--url", db_url, *path, "--graph", ORDERS, "--json")
    assert done.json() == {
        "execution_id": "ok-1",
        "forgotten": ["Ship", "Confirm"],
        "results_deleted": 1,
    }
    left = run(records(db_url, "ok-1"))[1]
    assert [r.step for r in left] == ["Validate", "ChargeCard"]
    # The module alone names the graph when the execution says which one it ran.
    done = ctl(
        "rerun-from",
        "ok-1",
        "Confirm",
        "--url",
        db_url,
        *path,
        "--graph",
        "testgraphs.orders_docket",
    )
    assert done.out.splitlines() == [
        "forgot Confirm of execution ok-1 (0 kept result(s) deleted)",
        "the next run with this execution id computes them again",
    ]
    before = steps.calls.copy()

    async def again() -> Any:
        async with await open_store(db_url) as store:
            graph = dk.Orders(steps, store=store, record=True)
            return await graph.run(pb.Confirmation, order=an_order(pb, "ok-1"), execution_id="ok-1")

    run(again())
    # Validate is cheap and not kept: it runs again for Ship; the charge does not.
    assert steps.calls - before == {"Validate": 1, "Ship": 1, "Confirm": 1}


# -- stuck after SIGKILL, settled, run again --------------------------------------------------


def test_a_killed_claim_is_stuck_then_settled_and_the_execution_completes(
    db_url: str, gen_dir: Path, tmp_path: Path, pb: Any, dk: Any
) -> None:
    assert ctl("db", "migrate", "--url", db_url).code == 0
    # owner "": the default, host:pid:token, so that a dead process can be told.
    config = {"url": db_url, "gen_dir": str(gen_dir), "workdir": str(tmp_path), "owner": ""}
    config["execution_id"] = "x-1"
    first = worker("order", block="ChargeCard", **config)
    try:
        wait_until(lambda: effects(tmp_path)["start ChargeCard"] == 1, first)
        # Alive: not stuck, and settling would race with it.
        assert ctl("executions", "list", "--url", db_url, "--stuck", "--json").json() == []
        done = ctl("executions", "show", "x-1", "--url", db_url)
        owner = f"{HOST}:{first.pid}:"
        assert done.line("ChargeCard", "running", owner).split()[-1] == "yes"
        settle = ["settle", "x-1", "ChargeCard", "--url", db_url, "--path", str(gen_dir)]
        settle += ["--graph", ORDERS]
        one_line_error(
            ctl(*settle, "--release"),
            1,
            f"execution 'x-1' is running (step ChargeCard runs in {owner}",
            "--force",
        )
    finally:
        kill(first)  # SIGKILL while the charge is in flight: did it go through?

    row, runs, _ = run(records(db_url, "x-1"))
    (charge,) = [r for r in runs if r.step == "ChargeCard"]
    why = f"step ChargeCard is running by {charge.owner}, which is dead"
    assert ctl("executions", "list", "--url", db_url, "--stuck", "--json").json() == [
        execution_json(row, stuck=[why])
    ]
    done = ctl("executions", "list", "--url", db_url, "--stuck")
    assert done.line("x-1", "running", f"STUCK: {why}")
    done = ctl("executions", "show", "x-1", "--url", db_url)
    assert done.line("status", "running").split(maxsplit=1) == ["status", f"running (stuck: {why})"]
    cells = done.line("ChargeCard", "running").split()
    assert cells[:3] == ["ChargeCard", "running", "1"] and cells[-2:] == [charge.owner, "no"]
    assert done.line("Validate", "succeeded").split()[-1] == "no"
    assert ctl("executions", "show", "x-1", "--url", db_url, "--json").json() == {
        "execution": execution_json(row, stuck=[why]),
        "jobs": None,
        "steps": [step_json(r, False) for r in runs],
    }

    # The charge went through (checked with the provider): settle it with its result.
    result = '{"charge_id": "ch-by-hand", "amount_cents": "1250"}'
    done = ctl(*settle, "--result-json", '{"charge": 1}')
    assert done.code == 2 and "not a testgraphs.Charge" in done.err
    one_line_error(
        ctl(*settle[:2], "Ship", *settle[3:], "--release"),
        1,
        "step 'Ship' of testgraphs.Orders is not AT_MOST_ONCE",
        "docketctl rerun-from x-1 Ship",
    )
    done = ctl(*settle, "--result-json", result, "--json")
    assert done.json() == {
        "execution_id": "x-1",
        "step": "ChargeCard",
        "settled": "result",
        "result": {"charge_id": "ch-by-hand", "amount_cents": "1250"},
    }
    one_line_error(ctl(*settle, "--release"), 1, "succeeded already")
    assert ctl("executions", "list", "--url", db_url, "--stuck", "--json").json() == []

    second = worker("order", **config)
    (line,) = finished(second)
    assert line["confirmation"]["charge_id"] == "ch-by-hand"
    assert effects(tmp_path)["start ChargeCard"] == 1  # never charged again
    row, runs, _ = run(records(db_url, "x-1"))
    assert row.status == "succeeded"
    done = ctl("executions", "show", "x-1", "--url", db_url)
    assert done.line("status", "succeeded").split() == ["status", "succeeded"]
    assert done.line("ChargeCard", "succeeded", "settled:docketctl:")


def test_a_killed_claim_released_runs_the_step_again(
    db_url: str, gen_dir: Path, tmp_path: Path
) -> None:
    assert ctl("db", "migrate", "--url", db_url).code == 0
    config = {"url": db_url, "gen_dir": str(gen_dir), "workdir": str(tmp_path), "owner": ""}
    config["execution_id"] = "x-2"
    first = worker("order", block="ChargeCard", **config)
    wait_until(lambda: effects(tmp_path)["start ChargeCard"] == 1, first)
    kill(first)
    done = ctl(
        "settle",
        "x-2",
        "ChargeCard",
        "--release",
        "--url",
        db_url,
        "--path",
        str(gen_dir),
        "--graph",
        "testgraphs.orders_docket",
    )
    assert done.out == "released ChargeCard of execution x-2: the next run with this id runs it\n"
    (line,) = finished(worker("order", **config))
    assert "confirmation" in line
    assert effects(tmp_path)["start ChargeCard"] == 2  # it did not happen: charged now


def test_a_claim_of_an_unrecorded_execution_held_by_a_dead_process(db_url: str) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    owner = f"{HOST}:{gone.pid}:deadbeef"

    async def claim() -> StepRunRecord:
        async with await open_store(db_url, migrate=True) as store:
            assert (await store.claim_step("u-1", "ChargeCard", owner=owner)).won
            (run,) = await store.get_step_runs("u-1")
            return run

    claimed = run(claim())
    why = f"step ChargeCard is claimed by {owner}, which is dead"
    assert ctl("executions", "list", "--url", db_url, "--json").json() == []  # not recorded
    stuck = ctl("executions", "list", "--url", db_url, "--stuck", "--json").json()
    assert stuck == [execution_json(None, "u-1", stuck=[why])]
    assert ctl("executions", "list", "--url", db_url, "--stuck", "--graph", "x.Y").out == (
        "no stuck executions\n"
    )
    done = ctl("executions", "list", "--url", db_url, "--stuck")
    assert done.line("u-1", "unrecorded", f"STUCK: {why}")
    done = ctl("executions", "show", "u-1", "--url", db_url)
    assert done.line("status", "not recorded")
    assert done.line("stuck", why)
    assert done.line("ChargeCard", "claimed", "0", owner).split()[-1] == "no"
    assert ctl("executions", "show", "u-1", "--url", db_url, "--json").json() == {
        "execution": execution_json(None, "u-1", stuck=[why]),
        "jobs": None,
        "steps": [step_json(claimed, False)],
    }


# -- cache ---------------------------------------------------------------------------------------


def test_cache_purge_by_step_graph_and_expiry(db_url: str, pb: Any, dk: Any) -> None:
    review, model = pb.Review(text="fine"), pb.Model(name="m1")

    async def fill() -> None:
        async with await open_store(db_url, migrate=True) as store:
            for graph in (dk.Scoring, dk.ScoringElsewhere, dk.SharedScoringA):
                await graph(ScoreSteps(pb), store=store).run(
                    pb.RiskScore, review=review, model=model
                )
            await dk.Orders(OrderSteps(pb), store=store).run(
                pb.Charge, order=an_order(pb, "o-1"), execution_id="o-1"
            )

    def kept() -> list[tuple[str, str, str | None]]:
        return sorted(raw_sql(db_url, "SELECT scope, step, graph FROM docket_results"))

    run(fill())
    assert kept() == [
        ("global", "Score", "testgraphs.Scoring"),
        ("global", "Score", "testgraphs.ScoringElsewhere"),
        ("global", "Score", "testgraphs.SharedScoringA"),
        ("workflow", "ChargeCard", "testgraphs.Orders"),
        ("workflow", "docket.inputs", "testgraphs.Orders"),
    ]
    done = ctl("cache", "purge", "--url", db_url, "--graph", "testgraphs.Scoring")
    assert done.out == "deleted 1 GLOBAL result(s) of graph testgraphs.Scoring\n"
    # No GLOBAL result of ChargeCard: its checkpoint belongs to its execution.
    assert ctl("cache", "purge", "--url", db_url, "--step", "ChargeCard", "--json").json() == {
        "deleted": 0
    }
    raw_sql(db_url, "UPDATE docket_results SET expires_at = created_at WHERE step = 'ChargeCard'")
    assert ctl("cache", "purge", "--url", db_url, "--expired", "--json").json() == {"deleted": 1}
    assert ctl("cache", "purge", "--url", db_url, "--step", "Score", "--json").json() == {
        "deleted": 2
    }
    assert kept() == [("workflow", "docket.inputs", "testgraphs.Orders")]  # the inputs of o-1


# -- durable executions on a real queue ---------------------------------------------------------


def test_durable_executions_through_the_queue(
    pg: PgSession, durable_gen: Path, tmp_path: Path
) -> None:
    url = pg.fresh_url()
    done = ctl("db", "migrate", "--url", url, "--with-queue")
    assert done.code == 0 and "created Procrastinate's tables" in done.out, done
    assert ctl("db", "status", "--url", url, "--json").json()["queue"] is True
    pg.sql(url, EFFECTS_TABLE)
    workers = Workers(url, durable_gen, tmp_path)

    async def enqueued(execution_id: str) -> None:
        async with await open_store(url) as store:
            registry = build(store, MemoryEffects())
            app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))
            install(app, registry)
            async with app.open_async():
                order = durable_pb().Order(order_id=execution_id, amount_cents=500)
                graph = registry.get("durabletest.Orders")
                target = durable_pb().Confirmation
                assert await enqueue(
                    app, graph, target, {"order": order}, execution_id=execution_id
                )

    def jobs(execution_id: str) -> list[tuple[int, str]]:
        rows = pg.sql(
            url,
            "SELECT id, status::text FROM procrastinate_jobs WHERE lock = %s ORDER BY id",
            (f"docket:{execution_id}",),
        )
        return [(int(i), str(s)) for i, s in rows]

    def effect_count(what: str) -> int:
        return int(
            pg.sql(url, "SELECT count(*) FROM durable_effects WHERE what = %s", (what,))[0][0]
        )

    try:
        # Queued, no worker yet: its job waits.
        run(enqueued("k-1"))
        ((job_1, _),) = jobs("k-1")
        show = ctl("executions", "show", "k-1", "--url", url, "--json").json()
        assert show["execution"]["status"] == "queued" and show["execution"]["stuck"] == []
        assert show["jobs"] == [
            {
                "id": job_1,
                "status": "todo",
                "queue": "docket",
                "scheduled_at": None,
                "worker_id": None,
                "stalled": False,
            }
        ]
        done = ctl("executions", "show", "k-1", "--url", url)
        assert done.line("run", f"jobs: #{job_1} waiting to run now, queue docket")

        # A worker takes it and blocks in Ship; it is alive.
        first = workers.start(block=["Ship"])
        deadline = time.monotonic() + SAFETY_NET
        while effect_count("Ship:blocked") == 0:
            assert time.monotonic() < deadline and first.poll() is None, workers.output()
            time.sleep(0.05)
        done = ctl("executions", "show", "k-1", "--url", url)
        assert done.line("status", "running").split() == ["status", "running"]
        assert "running on worker #" in done.line("run", f"#{job_1}")
        assert done.line("Ship", "running", f"{HOST}:{first.pid}:").split()[-1] == "yes"
        rerun = ["rerun-from", "k-1", "Ship", "--url", url, "--path", str(durable_gen)]
        rerun += ["--graph", "durabletest.orders_docket:Orders"]
        one_line_error(ctl(*rerun), 1, "is running", "--force")

        # SIGKILL: its step and its job are stuck, once its heartbeat is older than 1 s.
        first.kill()
        first.wait()
        time.sleep(1.2)
        row, runs, _ = run(records(url, "k-1"))
        (ship,) = [r for r in runs if r.step == "Ship"]
        why = [
            f"step Ship is running by {ship.owner}, which is dead",
            f"the worker of its job #{job_1} sent no heartbeat for 1s",
        ]
        listed = ctl(
            "executions", "list", "--url", url, "--stuck", "--stalled-timeout", "1", "--json"
        ).json()
        assert listed == [execution_json(row, stuck=why)]
        show = ctl("executions", "show", "k-1", "--url", url, "--stalled-timeout", "1", "--json")
        assert show.json()["jobs"][0]["stalled"] is True

        # Cancelled through the queue (its job aborted), then enqueued again.
        done = ctl("cancel", "k-1", "--url", url)
        assert done.out == "cancelled execution k-1 (its jobs cancelled or aborted)\n", done
        assert run(records(url, "k-1"))[0].status == "cancelled"
        done = ctl("retry", "k-1", "--url", url, "--json")
        retried = done.json()
        assert retried["execution_id"] == "k-1" and retried["queue"] == "docket"
        assert (retried["job_id"], "todo") in jobs("k-1")
        assert run(records(url, "k-1"))[0].status == "queued"
        # Again: its job is pending, so nothing happens (as enqueue's idempotency).
        done = ctl("retry", "k-1", "--url", url)
        assert done.code == 0 and done.out == (
            "execution k-1 has a job pending already: nothing to do\n"
        )
        # A new worker: the stalled job is swept, the new one completes the execution.
        workers.start()
        deadline = time.monotonic() + SAFETY_NET
        while run(records(url, "k-1"))[0].status != "succeeded":
            assert time.monotonic() < deadline, workers.output()
            time.sleep(0.1)
        assert effect_count("ChargeCard") == 1  # checkpointed before the kill: not again
        show = ctl("executions", "show", "k-1", "--url", url, "--json").json()
        assert show["execution"]["status"] == "succeeded" and show["jobs"] == []
        one_line_error(ctl("retry", "k-1", "--url", url), 1, "is succeeded")
    finally:
        workers.stop()
