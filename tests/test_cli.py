"""``docketctl``, the operations command: every command against SQLite and Postgres.

Most commands run in process through click's ``CliRunner``; a few run the
installed console script in a subprocess, as an operator would. Human output
is checked on its key lines, ``--json`` exactly, against what the store holds.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from click.testing import CliRunner
from conftest import raw_sql
from test_persistence import (
    OrderSteps,
    ScoreSteps,
    an_order,
    dk,
    pb,
)

from docket_runtime._cli import docketctl
from docket_runtime.stores import SCHEMA_VERSION, open_store

__all__ = ["dk", "pb"]  # fixtures, shared with test_persistence

T = TypeVar("T")

DOCKETCTL = Path(sys.executable).parent / "docketctl"
SAFETY_NET = 60.0


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


# -- the command itself ------------------------------------------------------------------------


def test_the_console_script_is_docketctl(db_url: str) -> None:
    done = script("--version")
    assert done.code == 0 and done.out.startswith("docketctl, version "), done
    done = script("db", "migrate", env={"DOCKET_DATABASE_URL": db_url})
    assert done.code == 0, done
    assert "schema version" in done.out
    assert raw_sql(db_url, "SELECT count(*) FROM docket_executions") == [(0,)]
    done = script("--help")
    for command in ("cache", "db"):
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
    for args in (["cache", "purge", "--url", "sqlite:///x.db"],):
        done = ctl(*args)
        assert done.code == 2, (args, done)
    assert not Path("x.db").exists()


def test_a_missing_sqlite_database_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.db"
    url = f"sqlite:///{missing}"
    done = script("db", "purge", "--url", url)
    one_line_error(done, 1, f"no SQLite database at {missing}", "docketctl db migrate")
    for args in (["cache", "purge", "--expired"], ["db", "status"]):
        one_line_error(ctl(*args, "--url", url), 1, "no SQLite database")
    assert not missing.exists()


def test_a_wrong_or_unreachable_database_is_one_line(tmp_path: Path) -> None:
    one_line_error(
        ctl("cache", "purge", "--expired", "--url", "foo://x"), 1, "unknown store URL scheme"
    )
    one_line_error(
        ctl("db", "status", "--url", "postgresql://postgres@127.0.0.1:1/test"),
        1,
        "cannot connect to Postgres",
    )
    empty = tmp_path / "empty.db"
    empty.touch()
    one_line_error(
        ctl("cache", "purge", "--expired", "--url", f"sqlite:///{empty}"),
        1,
        "has no Docket tables",
        "docketctl db migrate",
    )


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
    assert "3 pending: docketctl db migrate --url" in done.out
    pending = ctl("db", "status", "--url", db_url, "--json").json()
    assert pending["applied"] == [] and pending["schema_version"] == 0
    assert pending["pending"] == [
        {"version": 1, "name": "0001_initial"},
        {"version": 2, "name": "0002_step_attempts"},
        {"version": 3, "name": "0003_results_graph"},
    ]

    done = ctl("db", "migrate", "--url", db_url)
    assert done.code == 0 and "applied migration(s) 0001, 0002, 0003" in done.out, done

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
    }
    done = ctl("db", "status", "--url", db_url)
    assert done.line("0003_results_graph", "applied")
    assert "pending" not in done.out

    done = ctl("db", "purge", "--url", db_url)
    assert done.code == 0 and done.out.startswith("purged 0 expired result(s)"), done


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
    assert kept() == []
