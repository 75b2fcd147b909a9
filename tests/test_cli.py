"""``docketctl``, the operations command: every command against SQLite and Postgres.

Most commands run in process through click's ``CliRunner``; a few run the
installed console script in a subprocess, as an operator would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner
from conftest import raw_sql

from docket_runtime._cli import docketctl

DOCKETCTL = Path(sys.executable).parent / "docketctl"
SAFETY_NET = 60.0


@dataclass(frozen=True)
class Done:
    """How a command ended: its exit status and what it printed."""

    code: int
    out: str
    err: str


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


# -- the command itself ------------------------------------------------------------------------


def test_the_console_script_is_docketctl(db_url: str) -> None:
    done = script("--version")
    assert done.code == 0 and done.out.startswith("docketctl, version "), done
    done = script("db", "migrate", env={"DOCKET_DATABASE_URL": db_url})
    assert done.code == 0, done
    assert "schema version" in done.out
    assert raw_sql(db_url, "SELECT count(*) FROM docket_executions") == [(0,)]


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


def test_a_missing_sqlite_database_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.db"
    done = script("db", "purge", "--url", f"sqlite:///{missing}")
    one_line_error(done, 1, f"no SQLite database at {missing}", "docketctl db migrate")
    assert not missing.exists()


def test_an_unreachable_or_wrong_database_is_one_line() -> None:
    one_line_error(ctl("db", "purge", "--url", "foo://x"), 1, "unknown store URL scheme")
    one_line_error(
        ctl("db", "purge", "--url", "postgresql://postgres@127.0.0.1:1/test"),
        1,
        "cannot connect to Postgres",
    )
