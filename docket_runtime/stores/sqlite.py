"""The SQLite store: one database file, no server (``sqlite:///path.db``).

Threading, decided by measurement (``bench/store_hits.py`` repeats it on the
machine at hand). On the development VM (2 vCPU) a cache hit, one primary-key
SELECT of a 200-byte row, took about 5 µs as a bare query on the event loop
and 17 µs for the whole ``get_results`` call (row decoding included), against
50-100 µs for the bare query sent through ``run_in_executor`` or
``asyncio.to_thread``: the thread hop alone costs 10-20 times the query. So:

- reads run directly on the loop, on their own connection. In WAL mode a
  reader never waits for a writer, so a read cannot block the loop on a lock;
- writes run on a single writer thread with a second connection. A write may
  wait for another process's write lock (up to ``busy_timeout``) and, with
  ``synchronous=FULL``, for an fsync: milliseconds on real disks, which must
  not stall every other step on the loop. One thread because SQLite has one
  writer at a time anyway;
- except with ``synchronous=normal`` (in WAL mode), where a commit syncs
  nothing and costs microseconds, so the hop would cost more than the write
  (``bench/store_floors.py``: writing on the loop took three kept steps from
  about 0.3x to 0.6-0.8x the executions per second of bare sqlite3). There a
  third connection writes on the loop with a ``busy_timeout`` of 0: when
  another connection holds the write lock, a single statement, or the
  ``BEGIN IMMEDIATE`` of a transaction, fails at once before anything is
  written, and the write goes to the thread, which waits for the lock as
  above. That connection never checkpoints the WAL (a checkpoint syncs the
  database file); every few hundred loop commits the thread runs a PASSIVE
  one. Purges and migrations, which may touch many rows, always go to the
  thread. A commit on the loop is as durable as on
  the thread: in the WAL, safe from a killed process, not from a power cut.

Durability: WAL with ``synchronous=FULL`` by default, so a committed claim or
checkpoint survives a power cut, not only a killed process; an at-most-once
payment must not run twice because the OS lost its claim. ``synchronous=normal``
in the URL trades that for cheaper commits.

A database file that is deleted or replaced while open keeps working on
Linux (the open descriptors still point at the unlinked inode), silently
losing every later write. Each operation therefore checks, with one ``stat``
(about 1-2 µs), that the path still names the file that was opened, and raises
:class:`~docket_runtime.stores.StoreUnavailable` if not.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

from . import _migrations
from ._retry import retry_transient
from .base import (
    AttemptRecord,
    AttemptStatus,
    Claim,
    ExecutionRecord,
    ExecutionStatus,
    MigrationRecord,
    Payload,
    SchemaVersionError,
    Scope,
    StepEnd,
    StepRunRecord,
    StoreBase,
    StoredResult,
    StoreError,
    StoreRejected,
    StoreUnavailable,
    attempt_from_row,
    check_end,
    check_execution_status,
    check_purge_filters,
    execution_from_row,
    read_then_insert,
    result_from_row,
    step_run_from_row,
    utc,
)

__all__ = ["SqliteStore"]

_log = logging.getLogger("docket.store")

T = TypeVar("T")

# SQLite result codes (primary, and extended ones' primary part) that mean the
# database cannot be used right now, but may be later: StoreUnavailable.
_UNAVAILABLE: Final = frozenset(
    {
        "SQLITE_BUSY",
        "SQLITE_LOCKED",
        "SQLITE_IOERR",
        "SQLITE_CANTOPEN",
        "SQLITE_READONLY",
        "SQLITE_PROTOCOL",
        "SQLITE_PERM",
        "SQLITE_FULL",  # a full disk: over once space is freed
    }
)
# Those that retrying will not change: the data is refused, the file is damaged:
# StoreRejected.
_REJECTED: Final = frozenset(
    {
        "SQLITE_TOOBIG",
        "SQLITE_CONSTRAINT",
        "SQLITE_MISMATCH",
        "SQLITE_RANGE",
        "SQLITE_CORRUPT",
        "SQLITE_NOTADB",
    }
)

# A damaged file: never over by itself, whether met on opening or later.
_DAMAGED: Final = frozenset({"SQLITE_CORRUPT", "SQLITE_NOTADB"})

# Written by another connection right now: on the loop, the write goes to the thread,
# which waits up to busy_timeout.
_RETRY_ON_THREAD: Final = frozenset({"SQLITE_BUSY", "SQLITE_LOCKED"})

# Loop commits between two checkpoints on the writer thread: a few pages each, so about
# SQLite's own autocheckpoint of 1,000 pages.
_CHECKPOINT_EVERY: Final = 300


class _Busy(Exception):
    """A write on the loop found the database locked; nothing of it was written."""


# RETURNING came with SQLite 3.35; some supported systems ship an older one.
_RETURNING: Final = sqlite3.sqlite_version_info >= (3, 35)

# Bound parameters per IN (...) list; far below SQLite's limit (32766 since 3.32,
# 999 before), and the statement cache keeps one statement per length.
_CHUNK: Final = 500

_RESULT_COLUMNS: Final = (
    "key, scope, execution_id, step, version, output_type, output, output_json, "
    "created_at, expires_at, graph"
)
_GET_MANY: Final = f"SELECT {_RESULT_COLUMNS} FROM docket_results WHERE key IN"
_GET_ONE: Final = f"{_GET_MANY} (?)"
_GET_PAYLOAD: Final = (
    "SELECT output_type, output, output_json, expires_at FROM docket_results WHERE key = ?"
)

_RUN_COLUMNS: Final = (
    "execution_id, step, status, attempts, started_at, finished_at, duration_ms, error, owner"
)
_EXECUTION_COLUMNS: Final = (
    "execution_id, graph, target, status, started_at, finished_at, error, inputs, wake_at, "
    "trace_context"
)
_ATTEMPT_COLUMNS: Final = (
    "execution_id, step, attempt, status, started_at, finished_at, duration_ms, "
    "error_type, error_message, traceback, owner"
)


def _ts(dt: datetime) -> str:
    # Fixed-width UTC text: sorts and compares correctly as text. (isoformat with
    # the timespec keeps the microseconds even when 0, in half strftime's time.)
    return utc(dt).replace(tzinfo=None).isoformat(" ", "microseconds")


def _dt(text: str) -> datetime:
    # With the offset spelled out, fromisoformat takes about a tenth of the time of
    # parsing without it and a replace() (0.1 against 1 µs; a cache hit reads one).
    try:
        return datetime.fromisoformat(text + "+00:00")
    except ValueError:  # written with an offset of its own
        return datetime.fromisoformat(text).astimezone(UTC)


def _ms_between(start: str | None, end: str | None) -> float | None:
    # Registered as an SQL function: julianday() only keeps milliseconds.
    if start is None or end is None:
        return None
    return (_dt(end) - _dt(start)).total_seconds() * 1000.0


def _same_json(a: str | None, b: str | None) -> bool:
    """Whether two JSON texts hold the same value (Postgres compares jsonb the same way)."""
    if a is None or b is None:
        return a is b
    try:
        return bool(json.loads(a) == json.loads(b))
    except ValueError:
        return a == b


def _payload_of(conn: sqlite3.Connection, key: str, now: datetime | None) -> Payload | None:
    row = conn.execute(_GET_PAYLOAD, (key,)).fetchone()
    if row is None or (row[3] is not None and row[3] <= _ts(utc(now))):
        return None
    return row[0], row[1], row[2]


def _finish(conn: sqlite3.Connection, end: StepEnd) -> bool:
    """Write a step's end (see ``Store.step_finished``); ``False`` when the owner given
    no longer holds the row, and then nothing is written."""
    when = _ts(utc(end.now))
    changed = conn.execute(
        "UPDATE docket_step_runs SET status = ?, finished_at = ?, "
        "duration_ms = docket_ms_between(started_at, ?), error = ? "
        "WHERE execution_id = ? AND step = ? AND (? IS NULL OR owner = ?)",
        (end.status, when, when, end.error, end.execution_id, end.step, end.owner, end.owner),
    ).rowcount
    if end.owner is not None and changed == 0:
        return False  # nothing was written: the transaction commits nothing
    if end.result is not None:
        _upsert_result(conn, end.result)
    if end.attempt is not None:
        _upsert_attempt(conn, end.attempt)
    return True


def _upsert_result(conn: sqlite3.Connection, r: StoredResult) -> None:
    conn.execute(
        f"INSERT INTO docket_results ({_RESULT_COLUMNS}) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (key) DO UPDATE SET scope = excluded.scope, "
        "execution_id = excluded.execution_id, step = excluded.step, "
        "version = excluded.version, output_type = excluded.output_type, "
        "output = excluded.output, output_json = excluded.output_json, "
        "created_at = excluded.created_at, expires_at = excluded.expires_at, "
        "graph = excluded.graph",
        (
            r.key,
            r.scope,
            r.execution_id,
            r.step,
            r.version,
            r.output_type,
            r.output,
            r.output_json,
            _ts(r.created_at),
            None if r.expires_at is None else _ts(r.expires_at),
            r.graph,
        ),
    )


def _upsert_attempt(conn: sqlite3.Connection, a: AttemptRecord) -> None:
    conn.execute(
        f"INSERT INTO docket_step_attempts ({_ATTEMPT_COLUMNS}) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (execution_id, step, attempt) DO UPDATE SET status = excluded.status, "
        "started_at = excluded.started_at, finished_at = excluded.finished_at, "
        "duration_ms = excluded.duration_ms, error_type = excluded.error_type, "
        "error_message = excluded.error_message, traceback = excluded.traceback, "
        "owner = excluded.owner",
        (
            a.execution_id,
            a.step,
            a.attempt,
            a.status,
            _ts(a.started_at),
            _ts(a.finished_at),
            a.duration_ms,
            a.error_type,
            a.error_message,
            a.traceback,
            a.owner,
        ),
    )


class SqliteStore(StoreBase):
    """A :class:`~docket_runtime.stores.Store` in a SQLite file. Open it with :meth:`open`."""

    def __init__(
        self,
        path: Path,
        reader: sqlite3.Connection,
        writer: sqlite3.Connection,
        executor: ThreadPoolExecutor,
        *,
        reads_on_loop: bool = True,
        loop_writer: sqlite3.Connection | None = None,
    ) -> None:
        """Use :meth:`open`; this takes connections it has already set up.

        ``loop_writer``, given for ``synchronous=normal`` in WAL mode, is a third
        connection that writes on the event loop (see the module docstring); it must
        have ``busy_timeout`` 0 and ``wal_autocheckpoint`` 0.
        """
        self.path = path
        self.url = f"sqlite:///{path}"
        self._reader = reader
        self._writer = writer
        self._loop_writer = loop_writer
        self._loop_commits = 0
        self._executor = executor
        # Only in WAL mode can a read never wait for a lock; otherwise reads
        # take the writer thread too.
        self._reads_on_loop = reads_on_loop
        self._closed = False
        self._where = str(path)  # os.stat of a str skips Path's conversion on every call
        stat = os.stat(self._where)
        self._identity = (stat.st_dev, stat.st_ino)

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        busy_timeout_ms: int = 5000,
        synchronous: Literal["normal", "full", "extra"] = "full",
        create: bool = True,
    ) -> SqliteStore:
        """Open the database file at ``path``, creating it if missing unless ``create`` is
        false: then a missing file is a :class:`SchemaVersionError` saying how to create it.

        ``busy_timeout_ms`` bounds how long an operation waits for another
        process's lock before raising :class:`StoreUnavailable`.
        """
        if synchronous not in ("normal", "full", "extra"):
            raise ValueError(f"synchronous must be normal, full or extra, not {synchronous!r}")
        target = Path(os.path.abspath(path))
        if not create and not target.exists():
            raise SchemaVersionError(
                f"SQLite database {target} does not exist; create it with "
                f"`docketctl db migrate --url sqlite:///{target}`, or open it with migrate=True"
            )
        # Without create, SQLite's read-write mode never makes the file, even in a race.
        where = target if create else f"{target.as_uri()}?mode=rw"
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="docket-sqlite")

        def connect() -> tuple[
            sqlite3.Connection, sqlite3.Connection, bool, sqlite3.Connection | None
        ]:
            writer = reader = hot = None
            try:
                # isolation_level=None: no implicit BEGIN; transactions are explicit.
                writer = sqlite3.connect(
                    where, isolation_level=None, check_same_thread=False, uri=not create
                )
                writer.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
                # Some file systems (network mounts) cannot do WAL; SQLite then
                # silently keeps a rollback journal, where readers wait for writers.
                (mode,) = writer.execute("PRAGMA journal_mode = WAL").fetchone()
                writer.execute(f"PRAGMA synchronous = {synchronous.upper()}")
                writer.create_function("docket_ms_between", 2, _ms_between, deterministic=True)
                reader = sqlite3.connect(
                    where, isolation_level=None, check_same_thread=False, uri=not create
                )
                reader.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
                wal = str(mode).lower() == "wal"
                if wal and synchronous == "normal":
                    hot = sqlite3.connect(
                        where, isolation_level=None, check_same_thread=False, uri=not create
                    )
                    # Never wait for a lock on the loop: a busy database goes to the thread.
                    hot.execute("PRAGMA busy_timeout = 0")
                    hot.execute("PRAGMA synchronous = NORMAL")
                    # A checkpoint writes and syncs the database file: the thread does it.
                    hot.execute("PRAGMA wal_autocheckpoint = 0")
                    hot.create_function("docket_ms_between", 2, _ms_between, deterministic=True)
                return reader, writer, wal, hot
            except BaseException:
                for conn in (reader, writer, hot):
                    if conn is not None:
                        conn.close()
                raise

        try:
            reader, writer, wal, hot = await asyncio.get_running_loop().run_in_executor(
                executor, connect
            )
        except sqlite3.Error as err:
            executor.shutdown(wait=False)
            raise _translate(err, target, opening=True) from err
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(target, reader, writer, executor, reads_on_loop=wal, loop_writer=hot)

    # -- plumbing ---------------------------------------------------------

    def _check_file(self) -> None:
        try:
            stat = os.stat(self._where)
        except OSError as err:
            raise StoreUnavailable(
                f"SQLite database {self.path} was removed while open ({err.strerror}); "
                "writes to it would be lost"
            ) from err
        if (stat.st_dev, stat.st_ino) != self._identity:
            raise StoreUnavailable(
                f"SQLite database {self.path} was replaced by another file while open"
            )

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if not self._reads_on_loop:
            return await self._write(fn)
        return self._read_now(fn)

    def _read_now(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        # Directly on the loop: see the module docstring.
        self._check_file()
        try:
            return fn(self._reader)
        except sqlite3.Error as err:
            raise _translate(err, self.path) from err

    async def _write(
        self,
        fn: Callable[[sqlite3.Connection], T],
        *,
        transaction: bool = False,
        idempotent: bool = False,
        bulk: bool = False,
    ) -> T:
        """Run ``fn`` as one write: on the loop when it can be (``synchronous=normal``, the
        database not locked, not ``bulk``), otherwise on the writer thread; ``idempotent``
        writes are tried again through transient failures (see ``stores._retry``)."""
        if idempotent:
            return await retry_transient(
                lambda: self._write(fn, transaction=transaction, bulk=bulk)
            )
        hot = self._loop_writer
        if hot is not None and not bulk:
            try:
                # A locked database fails a single statement, or a transaction's BEGIN
                # IMMEDIATE, before anything was written: the thread can redo it all.
                value = self._write_sync(fn, transaction, hot)
            except _Busy:
                pass
            else:
                self._loop_commits += 1
                if self._loop_commits % _CHECKPOINT_EVERY == 0:
                    self._checkpoint()
                return value
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self._write_sync, fn, transaction, self._writer
        )

    def _checkpoint(self) -> None:
        """Move the WAL into the database file on the writer thread, not awaited.

        The loop's connection never checkpoints (that syncs the file); a PASSIVE
        checkpoint waits for no lock and is redone later if readers hold frames back.
        """

        def passive() -> None:
            try:
                self._writer.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error:
                _log.warning("WAL checkpoint of %s failed", self.path, exc_info=True)

        self._executor.submit(passive)

    def _write_sync(
        self, fn: Callable[[sqlite3.Connection], T], transaction: bool, conn: sqlite3.Connection
    ) -> T:
        self._check_file()
        try:
            if not transaction:
                # A single statement is atomic in autocommit mode.
                return fn(conn)
            # IMMEDIATE takes the write lock up front, so a transaction that
            # reads before it writes cannot fail half-way on a lock upgrade.
            conn.execute("BEGIN IMMEDIATE")
            try:
                value = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return value
        except sqlite3.Error as err:
            if conn is self._loop_writer and _primary(err) in _RETRY_ON_THREAD:
                raise _Busy from err
            raise _translate(err, self.path) from err

    # -- schema -------------------------------------------------------------

    async def schema_version(self) -> int:
        """The database's schema version (0: no Docket tables)."""
        return await self._read(_version)

    async def migrate(self) -> list[int]:
        """Apply the missing migrations in one ``BEGIN IMMEDIATE`` transaction."""
        migrations = _migrations.load("sqlite")
        url = self.url

        def apply(conn: sqlite3.Connection) -> list[int]:
            # Read the version under the write lock, so that two processes
            # migrating at once apply each migration exactly once.
            current = _version(conn)
            if current > migrations[-1].version:
                raise _migrations.too_new(current, url)
            applied: list[int] = []
            for migration in migrations:
                if migration.version <= current:
                    continue
                for statement in _migrations.sqlite_statements(migration.sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO docket_schema_version (version, name, applied_at) "
                    "VALUES (?, ?, ?)",
                    (migration.version, migration.name, _ts(datetime.now(UTC))),
                )
                applied.append(migration.version)
            return applied

        return await self._write(apply, transaction=True, bulk=True)

    async def get_migrations(self) -> list[MigrationRecord]:
        """The migrations applied (``docket_schema_version``) and those pending."""

        def query(conn: sqlite3.Connection) -> list[tuple[int, str, datetime]]:
            if _version(conn) == 0:
                return []
            rows = conn.execute("SELECT version, name, applied_at FROM docket_schema_version")
            return [(int(v), str(name), _dt(at)) for v, name, at in rows]

        return _migrations.records(_migrations.load("sqlite"), await self._read(query))

    # -- results ------------------------------------------------------------

    async def get_results(
        self, keys: Collection[str], *, now: datetime | None = None
    ) -> dict[str, StoredResult]:
        """The unexpired results among ``keys``."""
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}

        def query(conn: sqlite3.Connection) -> dict[str, StoredResult]:
            rows: list[tuple[Any, ...]] = []
            if len(wanted) == 1:  # a cache hit: one statement text, no list to build
                rows = conn.execute(_GET_ONE, wanted).fetchall()
            else:
                for start in range(0, len(wanted), _CHUNK):
                    chunk = wanted[start : start + _CHUNK]
                    marks = ", ".join("?" * len(chunk))
                    rows += conn.execute(f"{_GET_MANY} ({marks})", chunk).fetchall()
            # Expiry is compared here, and the bound made only when a row has one.
            when: str | None = None
            found: dict[str, StoredResult] = {}
            for row in rows:
                if row[9] is not None:
                    when = when or _ts(utc(now))
                    if row[9] <= when:
                        continue
                found[row[0]] = result_from_row(row, _dt)
            return found

        return await self._read(query)

    async def get_payload(self, key: str, *, now: datetime | None = None) -> Payload | None:
        """The payload of the unexpired result under ``key``."""
        if not self._reads_on_loop:
            return await self._write(lambda conn: _payload_of(conn, key, now))
        # _read_now's work, without a function made and called per cache hit.
        self._check_file()
        try:
            return _payload_of(self._reader, key, now)
        except sqlite3.Error as err:
            raise _translate(err, self.path) from err

    async def put_result(self, result: StoredResult) -> None:
        """Insert or replace ``result``."""
        await self._write(lambda conn: _upsert_result(conn, result), idempotent=True)

    async def read_checkpoints(
        self,
        keys: Collection[str],
        inputs: StoredResult,
        *,
        target: str | None = None,
        now: datetime | None = None,
    ) -> tuple[dict[str, StoredResult], bool]:
        """The rows among ``keys``, then ``inputs`` (and the execution's start, with
        ``target``) kept if no row had its key: see the protocol. Two operations:
        a read costs no round trip here."""
        return await read_then_insert(self, keys, inputs, target, now)

    async def delete_results(self, execution_id: str, steps: Collection[str]) -> int:
        """Forget ``steps`` of ``execution_id``: results, step runs and attempts, atomically."""
        names = list(dict.fromkeys(steps))
        if not names:
            return 0

        def delete(conn: sqlite3.Connection) -> int:
            deleted = 0
            for start in range(0, len(names), _CHUNK):
                chunk = names[start : start + _CHUNK]
                marks = ", ".join("?" * len(chunk))
                deleted += conn.execute(
                    "DELETE FROM docket_results WHERE scope = 'workflow' "
                    f"AND execution_id = ? AND step IN ({marks})",
                    (execution_id, *chunk),
                ).rowcount
                for table in ("docket_step_runs", "docket_step_attempts"):
                    conn.execute(
                        f"DELETE FROM {table} WHERE execution_id = ? AND step IN ({marks})",
                        (execution_id, *chunk),
                    )
            return deleted

        return await self._write(delete, transaction=True)

    async def purge_expired(self, *, now: datetime | None = None) -> int:
        """Delete the results expired at ``now``; return how many."""
        when = _ts(utc(now))
        return await self._write(
            lambda conn: (
                conn.execute(
                    "DELETE FROM docket_results WHERE expires_at IS NOT NULL AND expires_at <= ?",
                    (when,),
                ).rowcount
            ),
            bulk=True,
        )

    async def purge_results(
        self,
        *,
        scope: Scope | None = None,
        step: str | None = None,
        graph: str | None = None,
        expired: bool = False,
        now: datetime | None = None,
    ) -> int:
        """Delete the results that match every filter given; return how many."""
        check_purge_filters(scope, step, graph, expired)
        args = (scope, scope, step, step, graph, graph, expired, _ts(utc(now)))
        return await self._write(
            lambda conn: (
                conn.execute(
                    "DELETE FROM docket_results WHERE (? IS NULL OR scope = ?) "
                    "AND (? IS NULL OR step = ?) AND (? IS NULL OR graph = ?) "
                    "AND (NOT ? OR (expires_at IS NOT NULL AND expires_at <= ?))",
                    args,
                ).rowcount
            ),
            bulk=True,
        )

    async def get_execution_results(self, execution_id: str) -> list[StoredResult]:
        """The execution's checkpoints, expired ones too, oldest first."""
        rows = await self._read(
            lambda conn: conn.execute(
                f"SELECT {_RESULT_COLUMNS} FROM docket_results "
                "WHERE execution_id = ? AND scope = 'workflow' ORDER BY created_at, step",
                (execution_id,),
            ).fetchall()
        )
        return [result_from_row(row, _dt) for row in rows]

    # -- executions -----------------------------------------------------------

    async def start_execution(
        self, execution_id: str, *, graph: str, target: str, now: datetime | None = None
    ) -> None:
        """Record ``execution_id`` as running (a resume keeps the first start time)."""
        args = (execution_id, graph, target, _ts(utc(now)))
        await self._write(
            lambda conn: conn.execute(
                "INSERT INTO docket_executions (execution_id, graph, target, status, started_at) "
                "VALUES (?, ?, ?, 'running', ?) "
                "ON CONFLICT (execution_id) DO UPDATE SET graph = excluded.graph, "
                "target = excluded.target, status = 'running', finished_at = NULL, error = NULL, "
                "wake_at = NULL",
                args,
            )
        )

    async def finish_execution(
        self,
        execution_id: str,
        *,
        status: ExecutionStatus,
        error: str | None = None,
        now: datetime | None = None,
        ended: StepEnd | None = None,
    ) -> None:
        """Record how ``execution_id`` ended."""
        check_execution_status(status)
        if ended is not None:
            check_end(ended)
        args = (status, _ts(utc(now)), error, execution_id)

        def finish(conn: sqlite3.Connection) -> None:
            if ended is not None:
                _finish(conn, ended)
            conn.execute(
                "UPDATE docket_executions SET status = ?, finished_at = ?, error = ?, "
                "wake_at = NULL WHERE execution_id = ?",
                args,
            )

        # Idempotent, with the step's end too: the same values again.
        await self._write(finish, transaction=ended is not None, idempotent=True)

    async def get_execution(self, execution_id: str) -> ExecutionRecord | None:
        """The execution's row, or ``None``."""
        row = await self._read(
            lambda conn: conn.execute(
                f"SELECT {_EXECUTION_COLUMNS} FROM docket_executions WHERE execution_id = ?",
                (execution_id,),
            ).fetchone()
        )
        return None if row is None else execution_from_row(row, _dt)

    async def list_executions(
        self,
        *,
        statuses: Collection[ExecutionStatus] = (),
        graph: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[ExecutionRecord]:
        """Recorded executions, the latest started first, filtered."""
        wanted = sorted(set(statuses))
        for status in wanted:
            check_execution_status(status)
        marks = ", ".join("?" * len(wanted))
        where = [f"status IN ({marks})"] if wanted else []
        args: list[object] = list(wanted)
        if graph is not None:
            where.append("graph = ?")
            args.append(graph)
        if since is not None:
            where.append("started_at >= ?")
            args.append(_ts(since))
        query = f"SELECT {_EXECUTION_COLUMNS} FROM docket_executions"
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY started_at DESC, execution_id"
        if limit is not None:
            query += " LIMIT ?"
            args.append(int(limit))
        rows = await self._read(lambda conn: conn.execute(query, args).fetchall())
        return [execution_from_row(row, _dt) for row in rows]

    async def queue_execution(
        self,
        execution_id: str,
        *,
        graph: str,
        target: str,
        inputs: str,
        trace_context: str | None = None,
        now: datetime | None = None,
    ) -> ExecutionRecord:
        """Record ``execution_id`` as queued (see the Store protocol), under the write lock."""
        when = _ts(utc(now))

        def queue(conn: sqlite3.Connection) -> ExecutionRecord:
            select = f"SELECT {_EXECUTION_COLUMNS} FROM docket_executions WHERE execution_id = ?"
            row = conn.execute(select, (execution_id,)).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO docket_executions "
                    "(execution_id, graph, target, status, started_at, inputs, trace_context) "
                    "VALUES (?, ?, ?, 'queued', ?, ?, ?)",
                    (execution_id, graph, target, when, inputs, trace_context),
                )
            elif (
                row[3] in ("failed", "cancelled")
                and (row[1], row[2]) == (graph, target)
                and _same_json(row[7], inputs)
            ):
                conn.execute(
                    "UPDATE docket_executions SET status = 'queued', finished_at = NULL, "
                    "error = NULL, wake_at = NULL, trace_context = ? WHERE execution_id = ?",
                    (trace_context, execution_id),
                )
            else:
                return execution_from_row(row, _dt)
            return execution_from_row(conn.execute(select, (execution_id,)).fetchone(), _dt)

        return await self._write(queue, transaction=True)

    async def suspend_execution(
        self,
        execution_id: str,
        *,
        status: Literal["queued", "waiting"],
        wake_at: datetime | None = None,
        error: str | None = None,
        now: datetime | None = None,
    ) -> None:
        """Record a durable run continuing in a new job (a cancelled one stays cancelled)."""
        if status not in ("queued", "waiting"):
            raise ValueError(f"a suspended execution is 'queued' or 'waiting', not {status!r}")
        args = (status, None if wake_at is None else _ts(wake_at), error, execution_id)
        await self._write(
            lambda conn: conn.execute(
                "UPDATE docket_executions SET status = ?, wake_at = ?, error = ?, "
                "finished_at = NULL WHERE execution_id = ? AND status <> 'cancelled'",
                args,
            ),
            idempotent=True,
        )

    async def cancel_execution(
        self, execution_id: str, *, now: datetime | None = None
    ) -> ExecutionRecord | None:
        """Mark ``execution_id`` cancelled unless it ended; return the row as it stands."""
        when = _ts(utc(now))

        def cancel(conn: sqlite3.Connection) -> ExecutionRecord | None:
            conn.execute(
                "UPDATE docket_executions SET status = 'cancelled', finished_at = ?, "
                "wake_at = NULL WHERE execution_id = ? "
                "AND status IN ('queued', 'running', 'waiting')",
                (when, execution_id),
            )
            row = conn.execute(
                f"SELECT {_EXECUTION_COLUMNS} FROM docket_executions WHERE execution_id = ?",
                (execution_id,),
            ).fetchone()
            return None if row is None else execution_from_row(row, _dt)

        return await self._write(cancel, transaction=True)

    async def last_succeeded_execution(
        self, graph: str, target: str, *, id_prefix: str | None = None
    ) -> ExecutionRecord | None:
        """The succeeded execution of ``target`` in ``graph`` that finished last."""
        row = await self._read(
            lambda conn: conn.execute(
                f"SELECT {_EXECUTION_COLUMNS} FROM docket_executions "
                "WHERE graph = ? AND target = ? AND status = 'succeeded' "
                "AND (? IS NULL OR substr(execution_id, 1, length(?)) = ?) "
                "ORDER BY finished_at DESC, started_at DESC LIMIT 1",
                (graph, target, id_prefix, id_prefix, id_prefix),
            ).fetchone()
        )
        return None if row is None else execution_from_row(row, _dt)

    async def get_step_runs(self, execution_id: str) -> list[StepRunRecord]:
        """The execution's step runs, oldest start first."""
        rows = await self._read(
            lambda conn: conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM docket_step_runs WHERE execution_id = ? "
                "ORDER BY started_at, step",
                (execution_id,),
            ).fetchall()
        )
        return [step_run_from_row(row, _dt) for row in rows]

    async def get_unfinished_step_runs(self) -> list[StepRunRecord]:
        """Every step run still ``claimed`` or ``running``, oldest start first."""
        rows = await self._read(
            lambda conn: conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM docket_step_runs WHERE finished_at IS NULL "
                "ORDER BY started_at, execution_id, step"
            ).fetchall()
        )
        return [step_run_from_row(row, _dt) for row in rows]

    # -- step runs ------------------------------------------------------------

    async def claim_step(
        self, execution_id: str, step: str, *, owner: str, now: datetime | None = None
    ) -> Claim:
        """Claim (execution id, step): insert-if-absent and read back, under the write lock."""
        args = (execution_id, step, _ts(utc(now)), owner)

        def claim(conn: sqlite3.Connection) -> Claim:
            won = (
                conn.execute(
                    f"INSERT INTO docket_step_runs ({_RUN_COLUMNS}) "
                    "VALUES (?, ?, 'claimed', 0, ?, NULL, NULL, NULL, ?) "
                    "ON CONFLICT (execution_id, step) DO NOTHING",
                    args,
                ).rowcount
                == 1
            )
            row = conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM docket_step_runs WHERE execution_id = ? AND step = ?",
                (execution_id, step),
            ).fetchone()
            return Claim(won=won, run=step_run_from_row(row, _dt))

        return await self._write(claim, transaction=True)

    async def step_started(
        self,
        execution_id: str,
        step: str,
        *,
        owner: str,
        claimed: bool = False,
        now: datetime | None = None,
        ended: StepEnd | None = None,
    ) -> int:
        """Record an attempt starting (after ``ended``, in the same transaction); return the
        attempt count (0: the claim is not ours)."""
        if ended is not None:
            check_end(ended)
        args = (execution_id, step, _ts(utc(now)), owner)

        if claimed:
            query = (
                "UPDATE docket_step_runs SET status = 'running', attempts = attempts + 1, "
                "started_at = ?, finished_at = NULL, duration_ms = NULL, error = NULL "
                "WHERE execution_id = ? AND step = ? AND status = 'claimed' AND owner = ?"
            )
            values = (args[2], execution_id, step, owner)
        else:
            query = (
                f"INSERT INTO docket_step_runs ({_RUN_COLUMNS}) "
                "VALUES (?, ?, 'running', 1, ?, NULL, NULL, NULL, ?) "
                "ON CONFLICT (execution_id, step) DO UPDATE SET status = 'running', "
                "attempts = docket_step_runs.attempts + 1, "
                "started_at = excluded.started_at, finished_at = NULL, duration_ms = NULL, "
                "error = NULL, owner = excluded.owner"
            )
            values = args

        def start(conn: sqlite3.Connection) -> int:
            if ended is not None:
                _finish(conn, ended)
            if _RETURNING:
                # fetchall: the statement runs to its end, so autocommit commits it now.
                rows = conn.execute(f"{query} RETURNING attempts", values).fetchall()
                return int(rows[0][0]) if rows else 0
            if conn.execute(query, values).rowcount == 0:
                return 0  # the claimed UPDATE: not ours
            row = conn.execute(
                "SELECT attempts FROM docket_step_runs WHERE execution_id = ? AND step = ?",
                args[:2],
            ).fetchone()
            return int(row[0])

        # One statement with RETURNING; else a transaction, so that the read sees the write.
        return await self._write(start, transaction=ended is not None or not _RETURNING)

    async def step_finished(
        self,
        execution_id: str,
        step: str,
        *,
        status: AttemptStatus,
        error: str | None = None,
        result: StoredResult | None = None,
        attempt: AttemptRecord | None = None,
        owner: str | None = None,
        now: datetime | None = None,
    ) -> bool:
        """Record a step's end with its result and attempt, in one transaction."""
        end = StepEnd(execution_id, step, status, error, result, attempt, owner, now)
        check_end(end)
        single = result is None and attempt is None
        # Idempotent: the same values again, and the owner test matches again.
        return await self._write(
            lambda conn: _finish(conn, end), transaction=not single, idempotent=True
        )

    async def record_cache_hit(
        self, execution_id: str, step: str, *, owner: str, now: datetime | None = None
    ) -> None:
        """Record the step ``cached``: it used a kept result instead of running."""
        when = _ts(utc(now))
        await self._write(
            lambda conn: conn.execute(
                f"INSERT INTO docket_step_runs ({_RUN_COLUMNS}) "
                "VALUES (?, ?, 'cached', 0, ?, ?, 0, NULL, ?) "
                "ON CONFLICT (execution_id, step) DO UPDATE SET status = 'cached', "
                "started_at = excluded.started_at, finished_at = excluded.finished_at, "
                "duration_ms = 0, error = NULL, owner = excluded.owner",
                (execution_id, step, when, when, owner),
            ),
            idempotent=True,
        )

    async def release_claim(
        self, execution_id: str, step: str, *, owner: str, running: bool = False
    ) -> bool:
        """Delete the step's row if it is still ``claimed`` (or ``running``) by ``owner``."""
        statuses = "('claimed', 'running')" if running else "('claimed')"
        deleted = await self._write(
            lambda conn: (
                conn.execute(
                    "DELETE FROM docket_step_runs WHERE execution_id = ? AND step = ? "
                    f"AND status IN {statuses} AND owner = ?",
                    (execution_id, step, owner),
                ).rowcount
            )
        )
        return deleted == 1

    async def take_over_claim(
        self,
        execution_id: str,
        step: str,
        *,
        old_owner: str,
        owner: str,
        now: datetime | None = None,
    ) -> bool:
        """Move a ``claimed`` row from ``old_owner`` to ``owner`` in one UPDATE."""
        args = (owner, _ts(utc(now)), execution_id, step, old_owner)
        changed = await self._write(
            lambda conn: (
                conn.execute(
                    "UPDATE docket_step_runs SET owner = ?, started_at = ? "
                    "WHERE execution_id = ? AND step = ? AND status = 'claimed' AND owner = ?",
                    args,
                ).rowcount
            )
        )
        return changed == 1

    async def settle_step(
        self,
        execution_id: str,
        step: str,
        *,
        result: StoredResult,
        owner: str,
        now: datetime | None = None,
    ) -> None:
        """Store ``result`` and record the step ``succeeded``, in one transaction."""
        when = _ts(utc(now))

        def settle(conn: sqlite3.Connection) -> None:
            _upsert_result(conn, result)
            conn.execute(
                f"INSERT INTO docket_step_runs ({_RUN_COLUMNS}) "
                "VALUES (?, ?, 'succeeded', 0, ?, ?, NULL, NULL, ?) "
                "ON CONFLICT (execution_id, step) DO UPDATE SET status = 'succeeded', "
                "finished_at = excluded.finished_at, error = NULL, owner = excluded.owner",
                (execution_id, step, when, when, owner),
            )

        await self._write(settle, transaction=True, idempotent=True)

    async def get_attempts(self, execution_id: str, step: str | None = None) -> list[AttemptRecord]:
        """The execution's attempts, by step (first started first), then by number."""
        columns = ", ".join(f"a.{c}" for c in _ATTEMPT_COLUMNS.split(", "))
        rows = await self._read(
            lambda conn: conn.execute(
                f"SELECT {columns} FROM docket_step_attempts a JOIN "
                "(SELECT step, min(started_at) AS first FROM docket_step_attempts "
                "WHERE execution_id = ? GROUP BY step) f ON f.step = a.step "
                "WHERE a.execution_id = ? AND (? IS NULL OR a.step = ?) "
                "ORDER BY f.first, a.step, a.attempt",
                (execution_id, execution_id, step, step),
            ).fetchall()
        )
        return [attempt_from_row(row, _dt) for row in rows]

    async def close(self) -> None:
        """Close both connections and stop the writer thread (again: no-op)."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._writer.close)
        finally:
            self._reader.close()
            if self._loop_writer is not None:
                self._loop_writer.close()
            self._executor.shutdown(wait=False)


def _version(conn: sqlite3.Connection) -> int:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'docket_schema_version'"
    ).fetchone()
    if exists is None:
        return 0
    row = conn.execute("SELECT max(version) FROM docket_schema_version").fetchone()
    return int(row[0] or 0)


def _primary(err: sqlite3.Error) -> str:
    """The primary result code's name of a driver error (SQLITE_IOERR_WRITE -> SQLITE_IOERR)."""
    name = getattr(err, "sqlite_errorname", "") or ""
    return "_".join(name.split("_")[:2])


def _translate(err: sqlite3.Error, path: Path, *, opening: bool = False) -> StoreError:
    """Our exception for a driver error (the caller chains ``err`` as the cause)."""
    primary = _primary(err)
    if primary in _DAMAGED:
        return StoreRejected(f"SQLite database {path} is damaged: {err}")
    if opening:
        hint = " (does its directory exist, and may this process write there?)"
        return StoreUnavailable(f"cannot open SQLite database {path}: {err}{hint}")
    if primary in _UNAVAILABLE:
        return StoreUnavailable(f"SQLite database {path} is unavailable: {err}")
    if primary in _REJECTED or isinstance(err, sqlite3.DataError | sqlite3.IntegrityError):
        return StoreRejected(f"SQLite database {path} refused the operation: {err}")
    return StoreError(f"SQLite database {path}: {err}")
