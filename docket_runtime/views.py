"""Applying the typed SQL views that ``docket-gen --views`` writes, next to Docket's tables.

``docket-gen protos -o gen --views`` writes, per proto file with steps whose
results are kept, ``<file>_views.postgres.sql`` and ``<file>_views.sqlite.sql``:
one view per kept step over ``docket_results``, with a typed column per field
of the step's output (see ``docs/diagrams-and-views.md``). Apply them with::

    docketctl views apply gen/shop/v1/checkout_views.postgres.sql --url postgresql://...

or from Python::

    names = await apply_views("sqlite:///docket.db", ["gen/shop/v1/checkout_views.sqlite.sql"])

Every file is applied in one transaction: all its views or none. The database
must hold Docket's tables at the current schema version (``docketctl db migrate``).
On Postgres a view is replaced in place (``CREATE OR REPLACE VIEW``, which keeps
the grants on it); when its columns changed (a field renamed or removed, a
type changed), Postgres refuses that, and the view is dropped and created
again instead: grants on it must then be given again, and a view of yours
built on it must be dropped first. On SQLite each view is dropped and created.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Literal

from .stores import MemoryStore, Store, StoreError, open_store, redact_url

__all__ = ["apply_views", "split_statements"]

Dialect = Literal["postgres", "sqlite"]
_VIEW = re.compile(
    r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?VIEW\s+(?P<name>\"(?:[^\"]|\"\")+\"|[\w.]+)",
    re.IGNORECASE,
)
# Postgres refuses CREATE OR REPLACE VIEW with other columns: invalid_table_definition
# (a column dropped or renamed) and datatype_mismatch (a column's type changed).
_COLUMNS_CHANGED = frozenset({"42P16", "42804"})


def split_statements(sql: str) -> list[str]:
    """The statements of a SQL script, without their ``;`` (comments and quotes respected)."""
    statements: list[str] = []
    current: list[str] = []
    position = 0
    quote: str | None = None
    while position < len(sql):
        char = sql[position]
        if quote is not None:
            current.append(char)
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
            current.append(char)
        elif sql.startswith("--", position):
            end = sql.find("\n", position)
            position = len(sql) if end < 0 else end
            continue
        elif sql.startswith("/*", position):
            end = sql.find("*/", position + 2)
            position = len(sql) if end < 0 else end + 2
            continue
        elif char == ";":
            statement = "".join(current).strip()
            if statement:
                statements.append(statement)
            current = []
        else:
            current.append(char)
        position += 1
    statement = "".join(current).strip()
    if statement:
        statements.append(statement)
    return statements


async def apply_views(url: str, files: Sequence[str | PathLike[str]]) -> list[str]:
    """Apply the view files to the database at ``url``; return the views created, in order.

    Each file is applied in one transaction. Raises :class:`StoreError` when
    the database cannot be used (no Docket tables, a memory store, a file
    written for the other dialect) or refuses a statement.
    """
    scripts: list[tuple[Path, list[str]]] = []
    for file in files:
        path = Path(file)
        try:
            scripts.append((path, split_statements(path.read_text(encoding="utf-8"))))
        except OSError as err:
            raise StoreError(f"cannot read {path}: {err.strerror or err}") from err
    store = await open_store(url)
    try:
        dialect, where = _dialect(store)
    finally:
        await store.close()
    for path, _ in scripts:
        other = "sqlite" if dialect == "postgres" else "postgres"
        if path.name.endswith(f".{other}.sql"):
            raise StoreError(
                f"{path} is written for {_NAMES[other]}, and {store.url} is {_NAMES[dialect]}: "
                f"apply the .{dialect}.sql file"
            )
    applied: list[str] = []
    for path, statements in scripts:
        if dialect == "sqlite":
            applied += _apply_sqlite(where, path, statements)
        else:
            applied += await _apply_postgres(url, path, statements)
    return applied


_NAMES = {"postgres": "Postgres", "sqlite": "SQLite"}


def _dialect(store: Store) -> tuple[Dialect, Path]:
    from .stores.sqlite import SqliteStore

    if isinstance(store, SqliteStore):
        return "sqlite", store.path
    if isinstance(store, MemoryStore):
        raise StoreError(f"{store.url} keeps nothing in SQL: views need SQLite or Postgres")
    return "postgres", Path()


def _view_name(statement: str) -> str | None:
    found = _VIEW.match(statement)
    return found["name"] if found else None


def _apply_sqlite(path: Path, script: Path, statements: list[str]) -> list[str]:
    names = []
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in statements:
                name = _view_name(statement)
                try:
                    conn.execute(statement)
                    if name is not None:
                        # SQLite checks a view's tables and functions only when it is read.
                        conn.execute(f"SELECT * FROM {name} LIMIT 0")
                except sqlite3.Error as err:
                    raise StoreError(f"{script}: {err}; in:\n{statement}") from err
                if name is not None:
                    names.append(name)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as err:
        raise StoreError(f"cannot apply {script} to sqlite:///{path}: {err}") from err
    finally:
        conn.close()
    return names


async def _apply_postgres(url: str, script: Path, statements: list[str]) -> list[str]:
    import psycopg

    names = []
    try:
        async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
            for statement in statements:
                name = _view_name(statement)
                try:
                    async with conn.transaction():  # a savepoint
                        await conn.execute(statement.encode())
                except psycopg.Error as err:
                    if name is None or err.sqlstate not in _COLUMNS_CHANGED:
                        raise StoreError(f"{script}: {err}; in:\n{statement}") from err
                    # The view's columns changed: CREATE OR REPLACE cannot do that.
                    await conn.execute(f"DROP VIEW IF EXISTS {name}".encode())
                    await conn.execute(statement.encode())
                if name is not None:
                    names.append(name)
    except psycopg.Error as err:
        raise StoreError(f"cannot apply {script} to {redact_url(url)}: {err}") from err
    return names
