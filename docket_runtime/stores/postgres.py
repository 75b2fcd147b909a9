"""The Postgres store: psycopg 3, async, with a connection pool (``postgresql://...``).

Needs the ``docket-proto[postgres]`` extra. Every operation is one SQL
statement on an autocommit connection, so one network round trip: in
autocommit mode a statement is its own transaction, with no ``BEGIN`` /
``COMMIT`` round trips around it, and operations that touch two tables do it
in one statement with a data-modifying CTE. Only :meth:`PostgresStore.migrate`
uses an explicit transaction. psycopg prepares a statement after a few
executions, so a hot cache lookup is a bind-execute of a prepared statement.

Operations run one at a time (the common case: one execution's statements)
share one connection kept out of the pool between them, which saves the
pool's checkout and return; as soon as two run at once, the others use the
pool. The pool does not ping connections when handing them out (that would be a
second round trip per operation). A connection the server dropped (restart,
``pg_terminate_backend``) therefore fails once: the pool is then checked (its
dead connections replaced) and a read is tried again once. A write is tried
again only if running it twice is harmless (:mod:`docket_runtime.stores._retry`);
any other raises :class:`~docket_runtime.stores.StoreUnavailable`, since
whether it happened is unknown. Errors are told apart by SQLSTATE:
:class:`~docket_runtime.stores.StoreUnavailable` for the transient ones,
:class:`~docket_runtime.stores.StoreRejected` for the permanent ones.

A server that goes away altogether is told apart from one dropped
connection by one plain connection attempt, made when a pooled connection
turns out dead (or no connection comes within the pool's timeout). If it
fails, the store is *down*: it logs one warning (logger ``docket.store``),
closes its pool (no background reconnection loop, whose every attempt
psycopg-pool would log, and no caller left waiting for the pool's timeout),
and every operation raises :class:`~docket_runtime.stores.StoreUnavailable`
at once, naming the URL (password hidden). At most once per
:data:`RECHECK_AFTER` seconds an operation tries to connect again; when it
succeeds, a new pool takes over and the operation goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from datetime import datetime
from typing import Any, Final, Literal, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import TransactionStatus
from psycopg.rows import TupleRow, tuple_row
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

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
    Scope,
    StepEnd,
    StepRunRecord,
    StoreBase,
    StoredResult,
    StoreError,
    StoreRejected,
    StoreUnavailable,
    StoreUrlError,
    attempt_from_row,
    check_end,
    check_execution_status,
    check_purge_filters,
    ended_fields,
    execution_from_row,
    redact_url,
    result_from_row,
    step_run_from_row,
    utc,
)

__all__ = ["RECHECK_AFTER", "PostgresStore"]

T = TypeVar("T")
Conn = psycopg.AsyncConnection[TupleRow]

_log = logging.getLogger("docket.store")

RECHECK_AFTER: Final = 1.0
"""Seconds between two attempts to connect while the server is down (see the module
docstring); the operations in between fail at once."""

# pg_advisory_xact_lock key serialising migrations: the bytes of "docket".
_MIGRATE_LOCK: Final = int.from_bytes(b"docket", "big")

_RESULT_COLUMNS: Final = (
    "key, scope, execution_id, step, version, output_type, output, output_json::text, "
    "created_at, expires_at, graph"
)
_GET_PAYLOAD: Final = (
    "SELECT output_type, output, output_json::text, expires_at FROM docket_results WHERE key = %s"
)
_RUN_COLUMNS: Final = (
    "execution_id, step, status, attempts, started_at, finished_at, duration_ms, error, owner"
)
_EXECUTION_COLUMNS: Final = (
    "execution_id, graph, target, status, started_at, finished_at, error, inputs::text, "
    "wake_at, trace_context::text"
)
_ATTEMPT_COLUMNS: Final = (
    "execution_id, step, attempt, status, started_at, finished_at, duration_ms, "
    "error_type, error_message, traceback, owner"
)
# Insert a queued execution, or send a failed/cancelled one with the same graph, target
# and inputs back to the queue; either way report the row as it stands. As in _CLAIM, a
# row committed by another transaction after this statement's snapshot yields nothing:
# the row is then read again.
_QUEUE: Final = (
    "WITH queued AS ("
    " INSERT INTO docket_executions"
    " (execution_id, graph, target, status, started_at, inputs, trace_context)"
    " VALUES (%(execution_id)s, %(graph)s, %(target)s, 'queued', %(now)s, %(inputs)s::jsonb,"
    " %(trace_context)s::jsonb)"
    " ON CONFLICT (execution_id) DO UPDATE SET status = 'queued', finished_at = NULL,"
    " error = NULL, wake_at = NULL, trace_context = EXCLUDED.trace_context"
    " WHERE docket_executions.status IN ('failed', 'cancelled')"
    " AND docket_executions.graph = EXCLUDED.graph"
    " AND docket_executions.target = EXCLUDED.target"
    " AND docket_executions.inputs = EXCLUDED.inputs"
    f" RETURNING {_EXECUTION_COLUMNS})"
    f" SELECT {_EXECUTION_COLUMNS} FROM queued"
    f" UNION ALL SELECT {_EXECUTION_COLUMNS} FROM docket_executions"
    " WHERE execution_id = %(execution_id)s AND NOT EXISTS (SELECT FROM queued)"
)
_RESULT_INSERT: Final = (
    "INSERT INTO docket_results (key, scope, execution_id, step, version, output_type, "
    "output, output_json, created_at, expires_at, graph) "
)
# Typed, so that the same values also work as a SELECT list (where an untyped
# NULL would be text).
_RESULT_VALUES: Final = (
    "%(r_key)s::text, %(r_scope)s::text, %(r_execution_id)s::text, %(r_step)s::text, "
    "%(r_version)s::text, %(r_output_type)s::text, %(r_output)s::bytea, "
    "%(r_output_json)s::jsonb, %(r_created_at)s::timestamptz, %(r_expires_at)s::timestamptz, "
    "%(r_graph)s::text"
)
_RESULT_CONFLICT: Final = (
    " ON CONFLICT (key) DO UPDATE SET scope = EXCLUDED.scope, "
    "execution_id = EXCLUDED.execution_id, step = EXCLUDED.step, version = EXCLUDED.version, "
    "output_type = EXCLUDED.output_type, output = EXCLUDED.output, "
    "output_json = EXCLUDED.output_json, created_at = EXCLUDED.created_at, "
    "expires_at = EXCLUDED.expires_at, graph = EXCLUDED.graph"
)
_UPSERT_RESULT: Final = f"{_RESULT_INSERT}VALUES ({_RESULT_VALUES}){_RESULT_CONFLICT}"
# A run that starts again under its id: running again, its first start time kept.
_START_CONFLICT: Final = (
    " ON CONFLICT (execution_id) DO UPDATE SET graph = EXCLUDED.graph, "
    "target = EXCLUDED.target, status = 'running', finished_at = NULL, error = NULL, "
    "wake_at = NULL"
)
# read_checkpoints: the inputs row inserted unless its key exists, and (with a target)
# the execution started when it was; then the rows found, as the statement's snapshot
# saw them (before the insert), behind one row that says whether the insert happened.
_READ_CHECKPOINTS: Final = (
    f"WITH put AS ({_RESULT_INSERT}VALUES ({_RESULT_VALUES})"
    " ON CONFLICT (key) DO NOTHING RETURNING key),"
    " started AS (INSERT INTO docket_executions"
    " (execution_id, graph, target, status, started_at)"
    " SELECT %(r_execution_id)s::text, %(r_graph)s::text, %(target)s::text, 'running',"
    " %(now)s::timestamptz FROM put WHERE %(target)s::text IS NOT NULL"
    f"{_START_CONFLICT})"
    " SELECT (SELECT count(*) FROM put), found.* FROM (SELECT 1) AS one LEFT JOIN"
    f" (SELECT {_RESULT_COLUMNS} FROM docket_results WHERE key = ANY(%(keys)s::text[])"
    " AND (expires_at IS NULL OR expires_at > %(now)s::timestamptz)) AS found ON true"
)
_ATTEMPT_VALUES: Final = (
    "%(a_execution_id)s::text, %(a_step)s::text, %(a_attempt)s::integer, %(a_status)s::text, "
    "%(a_started_at)s::timestamptz, %(a_finished_at)s::timestamptz, "
    "%(a_duration_ms)s::double precision, %(a_error_type)s::text, %(a_error_message)s::text, "
    "%(a_traceback)s::text, %(a_owner)s::text"
)
_ATTEMPT_CONFLICT: Final = (
    " ON CONFLICT (execution_id, step, attempt) DO UPDATE SET status = EXCLUDED.status, "
    "started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at, "
    "duration_ms = EXCLUDED.duration_ms, error_type = EXCLUDED.error_type, "
    "error_message = EXCLUDED.error_message, traceback = EXCLUDED.traceback, "
    "owner = EXCLUDED.owner"
)
# A step's end: the step-run row, and with it (CTEs appended by step_finished)
# the result and the attempt row, in one statement. With an owner, the run's
# UPDATE matches only that owner's row, and the inserts read its RETURNING
# (the only way one CTE sees another's effect) to write nothing without it.
_FINISH_RUN: Final = (
    "WITH run AS (UPDATE docket_step_runs SET status = %(status)s, finished_at = %(now)s, "
    "duration_ms = extract(epoch FROM %(now)s - started_at) * 1000, error = %(error)s "
    "WHERE execution_id = %(execution_id)s AND step = %(step)s "
    "AND (%(owner)s::text IS NULL OR owner = %(owner)s) RETURNING 1)"
)
_OWNED: Final = "(%(owner)s::text IS NULL OR EXISTS (SELECT FROM run))"
_FINISH_RESULT: Final = (
    f", result AS ({_RESULT_INSERT}SELECT {_RESULT_VALUES} WHERE {_OWNED}{_RESULT_CONFLICT})"
)
_FINISH_ATTEMPT: Final = (
    ", attempt AS (INSERT INTO docket_step_attempts "
    f"({_ATTEMPT_COLUMNS}) SELECT {_ATTEMPT_VALUES} WHERE {_OWNED}{_ATTEMPT_CONFLICT})"
)
# Insert the claim, or report the row that is there. Inside one statement the
# CTE's insert is invisible to the outer SELECT, so exactly one branch yields a
# row, except in one race: a claim committed by another transaction after this
# statement's snapshot makes ON CONFLICT skip, yet is not in the snapshot for
# the SELECT. Then nothing comes back and the row is read again (fresh snapshot).
_CLAIM: Final = (
    "WITH claimed AS ("
    f" INSERT INTO docket_step_runs ({_RUN_COLUMNS})"
    " VALUES (%(execution_id)s, %(step)s, 'claimed', 0, %(now)s, NULL, NULL, NULL, %(owner)s)"
    " ON CONFLICT (execution_id, step) DO NOTHING"
    f" RETURNING {_RUN_COLUMNS})"
    f" SELECT true, {_RUN_COLUMNS} FROM claimed"
    f" UNION ALL SELECT false, {_RUN_COLUMNS} FROM docket_step_runs"
    " WHERE execution_id = %(execution_id)s AND step = %(step)s"
)


def _ending(end: StepEnd) -> tuple[str, dict[str, Any]]:
    """The CTEs that record a step's end (``WITH run AS ...``: the run, its result and
    its attempt), and their parameters."""
    params = ended_fields(end)
    del params["result"], params["attempt"]
    params["now"] = utc(end.now)
    query = _FINISH_RUN
    if end.result is not None:
        params.update(_result_params(end.result))
        query += _FINISH_RESULT
    if end.attempt is not None:
        params.update(_attempt_params(end.attempt))
        query += _FINISH_ATTEMPT
    return query, params


def _attempt_params(a: AttemptRecord) -> dict[str, Any]:
    # Prefixed so that they can share a statement with _FINISH_RUN's parameters.
    return {
        "a_execution_id": a.execution_id,
        "a_step": a.step,
        "a_attempt": a.attempt,
        "a_status": a.status,
        "a_started_at": a.started_at,
        "a_finished_at": a.finished_at,
        "a_duration_ms": a.duration_ms,
        "a_error_type": a.error_type,
        "a_error_message": a.error_message,
        "a_traceback": a.traceback,
        "a_owner": a.owner,
    }


def _result_params(r: StoredResult) -> dict[str, Any]:
    # Prefixed so that they can share a statement with _FINISH_RUN's parameters.
    return {
        "r_key": r.key,
        "r_scope": r.scope,
        "r_execution_id": r.execution_id,
        "r_step": r.step,
        "r_version": r.version,
        "r_output_type": r.output_type,
        "r_output": r.output,
        "r_output_json": r.output_json,
        "r_created_at": utc(r.created_at),
        "r_expires_at": None if r.expires_at is None else utc(r.expires_at),
        "r_graph": r.graph,
    }


class PostgresStore(StoreBase):
    """A :class:`~docket_runtime.stores.Store` in Postgres. Open it with :meth:`open`.

    The tables live in the first schema of the connection's ``search_path``.
    """

    def __init__(
        self,
        pool: AsyncConnectionPool[Conn],
        url: str,
        *,
        conninfo: str | None = None,
        max_size: int = 10,
        timeout: float = 10.0,
    ) -> None:
        """Use :meth:`open`; this takes an open pool of autocommit connections.

        With the ``conninfo`` of the pool's connections the store can tell a server
        that is down from a dropped connection, and replace its pool when the server
        is back (see the module docstring); ``max_size`` and ``timeout`` are the pool's.
        """
        self.url = url
        self._pool = pool
        self._conninfo = conninfo
        self._max_size = max_size
        self._timeout = timeout
        self._min_size = pool.min_size
        self._down: str | None = None
        self._recheck_at = 0.0
        self._answered_at = float("-inf")
        self._probing = asyncio.Lock()
        # One connection kept out of the pool between operations (see _checkout).
        self._spare: Conn | None = None
        self._spare_pool: AsyncConnectionPool[Conn] | None = None
        self._running = 0

    @classmethod
    async def open(
        cls,
        conninfo: str,
        *,
        min_size: int = 2,
        max_size: int = 10,
        timeout: float = 10.0,
        connect_timeout: int = 5,
    ) -> PostgresStore:
        """Connect to ``conninfo`` (a ``postgresql://`` URL or ``key=value`` string).

        ``min_size`` and ``max_size`` bound the pool's connections; ``timeout``
        bounds the wait for a pooled connection, ``connect_timeout`` (unless the
        conninfo sets one) each connection attempt: an unreachable server is an
        error within seconds, never a hang.
        """
        url = redact_url(conninfo)
        try:
            params = conninfo_to_dict(conninfo)
        except psycopg.Error as err:
            raise StoreUrlError(f"not a valid Postgres URL {url!r}: {err}") from err
        if not 0 <= min_size <= max_size or max_size < 1:
            raise StoreUrlError(
                f"pool sizes must satisfy 0 <= min_size <= max_size and max_size >= 1, "
                f"not min_size={min_size}, max_size={max_size}, for {url}"
            )
        if not timeout > 0:
            raise StoreUrlError(f"the pool timeout must be positive, not {timeout!r}, for {url}")
        if "connect_timeout" not in params:
            conninfo = make_conninfo(conninfo, connect_timeout=connect_timeout)
        # One plain connection first: when the server cannot be reached, the
        # pool would only say it timed out, while this says why.
        try:
            probe = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
        except psycopg.Error as err:
            raise StoreUnavailable(f"cannot connect to Postgres at {url}: {err}") from err
        await probe.close()
        pool = _new_pool(conninfo, min_size, max_size, timeout)
        try:
            await pool.open(wait=True, timeout=timeout)
        except PoolTimeout as err:
            await pool.close()
            raise StoreUnavailable(f"cannot connect to Postgres at {url}: {err}") from err
        return cls(pool, url, conninfo=conninfo, max_size=max_size, timeout=timeout)

    # -- plumbing ---------------------------------------------------------

    async def _run(
        self, fn: Callable[[Conn], Awaitable[T]], *, read: bool = False, idempotent: bool = False
    ) -> T:
        # See docket_runtime.stores._retry; a store that knows the server is down fails at once.
        if idempotent and self._down is None:
            return await retry_transient(lambda: self._run(fn))
        if self._down is not None:
            await self._reconnect()
        retried = False
        while True:
            pool = self._pool
            try:
                conn = await self._checkout(pool)
            except PoolClosed as err:
                # Closed by a probe that found the server gone, while this one waited.
                raise self._unavailable(err) from err
            except PoolTimeout as err:
                if await self._server_up(pool):
                    raise StoreUnavailable(
                        f"Postgres at {self.url}: no pooled connection came free within "
                        f"{self._timeout:g}s (all {self._max_size} busy); raise pool_max_size "
                        "or pool_timeout in the URL, or run fewer executions at once"
                    ) from err
                raise self._unavailable(err) from err
            except psycopg.OperationalError as err:
                raise self._unavailable(err) from err
            try:
                if read:
                    # A SELECT on an autocommit connection is its own transaction: there
                    # is none to end (the connection's exit would take its lock to see so).
                    return await fn(conn)
                async with conn:
                    return await fn(conn)
            except psycopg.Error as err:
                if not conn.closed:
                    raise _translate(err, self.url) from err
                if not await self._server_up(pool):
                    raise self._unavailable(err) from err
                # A pooled connection the server dropped: let the pool discard the dead
                # ones, so that a read again (once, here) or a write retried (by
                # docket_runtime.stores._retry) gets a live one.
                with contextlib.suppress(psycopg.Error):
                    await pool.check()
                if read and not retried:
                    retried = True
                    continue
                raise StoreUnavailable(f"Postgres at {self.url} is unavailable: {err}") from err
            finally:
                await self._give_back(pool, conn)

    async def _checkout(self, pool: AsyncConnectionPool[Conn]) -> Conn:
        """A connection for one operation: the spare one when it is free, else the pool's.

        Run one at a time, operations use the spare and cost no pool checkout and
        return: measured, those took 40% of the client's CPU for a ``SELECT 1``
        (about 83 against 50 µs). It is kept only while no other operation runs
        (:meth:`_give_back`), so none ever waits in the pool for a connection held here.
        """
        self._running += 1
        spare, self._spare = self._spare, None
        if spare is not None and self._spare_pool is pool:
            return spare
        try:
            if spare is not None:
                await self._spare_pool_put(spare)  # the pool was replaced: the old one closes it
            return await pool.getconn()
        except BaseException:
            self._running -= 1
            raise

    async def _give_back(self, pool: AsyncConnectionPool[Conn], conn: Conn) -> None:
        self._running -= 1
        if (
            self._running == 0
            and self._spare is None
            and pool is self._pool
            and self._down is None
            and not conn.closed
            and conn.pgconn.transaction_status == TransactionStatus.IDLE
        ):
            self._spare, self._spare_pool = conn, pool
            return
        # Into a pool closed meanwhile, a connection is closed quietly.
        await pool.putconn(conn)

    async def _spare_pool_put(self, conn: Conn) -> None:
        pool, self._spare_pool = self._spare_pool, None
        if pool is not None:
            await pool.putconn(conn)

    def _unavailable(self, err: BaseException) -> StoreUnavailable:
        return StoreUnavailable(self._down or f"Postgres at {self.url} is unavailable: {err}")

    async def _server_up(self, pool: AsyncConnectionPool[Conn]) -> bool:
        """Whether the server answers, after a pooled connection was found dead.

        One connection attempt answers it for every operation failing at the same
        time. When it fails, the store is down: one warning, and the pool is closed.
        """
        if self._conninfo is None:
            return True  # built by hand, without the means to tell
        async with self._probing:
            if self._down is not None or pool is not self._pool:
                return self._down is None
            if time.monotonic() - self._answered_at < RECHECK_AFTER:
                return True
            try:
                probe = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
            except psycopg.Error as err:
                self._down = (
                    f"Postgres at {self.url} is unavailable: cannot connect "
                    f"({_first_line(err)}); check that the server is running and reachable. "
                    "Until it answers, every operation of this store fails at once; "
                    f"it tries to connect again at most every {RECHECK_AFTER:g}s"
                )
                self._recheck_at = time.monotonic() + RECHECK_AFTER
                _log.warning("%s", self._down)
                # Waiting operations fail now; connections given back are closed quietly.
                await pool.close()
                return False
            await probe.close()
            self._answered_at = time.monotonic()
            return True

    async def _reconnect(self) -> None:
        """While down: raise at once, unless it is time to try again and the server answers;
        then a new pool replaces the closed one."""
        down = self._down
        assert down is not None and self._conninfo is not None
        if time.monotonic() < self._recheck_at or self._probing.locked():
            raise StoreUnavailable(down)
        async with self._probing:
            if self._down is None:
                return  # another operation reconnected meanwhile
            self._recheck_at = time.monotonic() + RECHECK_AFTER
            try:
                probe = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
            except psycopg.Error as err:
                raise StoreUnavailable(down) from err
            await probe.close()
            pool = _new_pool(self._conninfo, self._min_size, self._max_size, self._timeout)
            await pool.open(wait=False)
            self._pool = pool
            self._down = None
            self._answered_at = time.monotonic()
            _log.info("Postgres at %s answers again; the store reconnected", self.url)

    # -- schema -------------------------------------------------------------

    async def schema_version(self) -> int:
        """The database's schema version (0: no Docket tables in the search path)."""
        return await self._run(_version, read=True)

    async def migrate(self) -> list[int]:
        """Apply the missing migrations in one transaction, under an advisory lock."""
        migrations = _migrations.load("postgres")

        async def apply(conn: Conn) -> list[int]:
            async with conn.transaction():
                # Held until commit: a second migrator waits here, then sees
                # the version the first one committed.
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
                current = await _version(conn)
                if current > migrations[-1].version:
                    raise _migrations.too_new(current, self.url)
                applied: list[int] = []
                for migration in migrations:
                    if migration.version <= current:
                        continue
                    # No parameters: psycopg uses the simple query protocol,
                    # which runs a whole script.
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO docket_schema_version (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )
                    applied.append(migration.version)
                return applied

        return await self._run(apply)

    async def get_migrations(self) -> list[MigrationRecord]:
        """The migrations applied (``docket_schema_version``) and those pending."""

        async def query(conn: Conn) -> list[tuple[int, str, datetime]]:
            if await _version(conn) == 0:
                return []
            cur = await conn.execute("SELECT version, name, applied_at FROM docket_schema_version")
            return [(int(v), str(name), utc(at)) for v, name, at in await cur.fetchall()]

        return _migrations.records(_migrations.load("postgres"), await self._run(query, read=True))

    # -- results ------------------------------------------------------------

    async def get_results(
        self, keys: Collection[str], *, now: datetime | None = None
    ) -> dict[str, StoredResult]:
        """The unexpired results among ``keys``, in one query (``key = ANY(...)``)."""
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        # One key (a cache hit on the hot path) skips the array parameter: measured
        # about 80 µs cheaper per lookup than `= ANY(array)`.
        single = len(wanted) == 1
        params = (wanted[0] if single else wanted, utc(now))
        match = "key = %s" if single else "key = ANY(%s)"

        async def query(conn: Conn) -> dict[str, StoredResult]:
            # Binary results: bytea arrives as raw bytes instead of hex text.
            async with conn.cursor(binary=True) as cur:
                await cur.execute(
                    f"SELECT {_RESULT_COLUMNS} FROM docket_results WHERE {match} "
                    "AND (expires_at IS NULL OR expires_at > %s)",
                    params,
                )
                return {row[0]: result_from_row(row, utc) for row in await cur.fetchall()}

        return await self._run(query, read=True)

    async def get_payload(self, key: str, *, now: datetime | None = None) -> Payload | None:
        """The payload of the unexpired result under ``key``: one key and no timestamp to
        send (the expiry is compared here), so a prepared statement's bind is all."""

        async def query(conn: Conn) -> Payload | None:
            # Binary results: bytea arrives as raw bytes instead of hex text.
            cur = await conn.execute(_GET_PAYLOAD, (key,), binary=True)
            row = await cur.fetchone()
            if row is None or (row[3] is not None and row[3] <= utc(now)):
                return None
            return row[0], bytes(row[1]), row[2]

        return await self._run(query, read=True)

    async def put_result(self, result: StoredResult) -> None:
        """Insert or replace ``result``."""
        params = _result_params(result)

        async def put(conn: Conn) -> None:
            await conn.execute(_UPSERT_RESULT, params)

        await self._run(put, idempotent=True)

    async def read_checkpoints(
        self,
        keys: Collection[str],
        inputs: StoredResult,
        *,
        target: str | None = None,
        now: datetime | None = None,
    ) -> tuple[dict[str, StoredResult], bool]:
        """The rows among ``keys``, and ``inputs`` (and the execution's start, with
        ``target``) kept if no row had its key, in one statement: see the protocol."""
        params = _result_params(inputs)
        params.update(keys=list(dict.fromkeys(keys)), target=target, now=utc(now))

        async def query(conn: Conn) -> tuple[dict[str, StoredResult], bool]:
            async with conn.cursor(binary=True) as cur:
                await cur.execute(_READ_CHECKPOINTS, params)
                rows = await cur.fetchall()
            found = {row[1]: result_from_row(row[1:], utc) for row in rows if row[1] is not None}
            return found, bool(rows[0][0])

        # Harmless twice (it inserts nothing and finds the row it wrote), so tried again once
        # on a dropped connection, as the read it replaces was; it is the first operation of
        # a run, so a store found down fails it at once instead of retrying for seconds.
        return await self._run(query, read=True)

    async def delete_results(self, execution_id: str, steps: Collection[str]) -> int:
        """Forget ``steps`` of ``execution_id``: results, step runs and attempts, atomically."""
        names = list(dict.fromkeys(steps))
        if not names:
            return 0
        params = {"execution_id": execution_id, "steps": names}

        async def delete(conn: Conn) -> int:
            cur = await conn.execute(
                "WITH runs AS (DELETE FROM docket_step_runs"
                " WHERE execution_id = %(execution_id)s AND step = ANY(%(steps)s)),"
                " attempts AS (DELETE FROM docket_step_attempts"
                " WHERE execution_id = %(execution_id)s AND step = ANY(%(steps)s))"
                " DELETE FROM docket_results WHERE scope = 'workflow'"
                " AND execution_id = %(execution_id)s AND step = ANY(%(steps)s)",
                params,
            )
            return cur.rowcount

        return await self._run(delete)

    async def purge_expired(self, *, now: datetime | None = None) -> int:
        """Delete the results expired at ``now``; return how many."""
        when = utc(now)

        async def purge(conn: Conn) -> int:
            cur = await conn.execute("DELETE FROM docket_results WHERE expires_at <= %s", (when,))
            return cur.rowcount

        return await self._run(purge)

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
        params = {
            "scope": scope,
            "step": step,
            "graph": graph,
            "expired": expired,
            "now": utc(now),
        }

        async def purge(conn: Conn) -> int:
            cur = await conn.execute(
                "DELETE FROM docket_results WHERE (%(scope)s::text IS NULL OR scope = %(scope)s) "
                "AND (%(step)s::text IS NULL OR step = %(step)s) "
                "AND (%(graph)s::text IS NULL OR graph = %(graph)s) "
                "AND (NOT %(expired)s OR expires_at <= %(now)s)",
                params,
            )
            return cur.rowcount

        return await self._run(purge)

    async def get_execution_results(self, execution_id: str) -> list[StoredResult]:
        """The execution's checkpoints, expired ones too, oldest first."""

        async def query(conn: Conn) -> list[StoredResult]:
            async with conn.cursor(binary=True) as cur:
                await cur.execute(
                    f"SELECT {_RESULT_COLUMNS} FROM docket_results "
                    "WHERE execution_id = %s AND scope = 'workflow' ORDER BY created_at, step",
                    (execution_id,),
                )
                return [result_from_row(row, utc) for row in await cur.fetchall()]

        return await self._run(query, read=True)

    # -- executions -----------------------------------------------------------

    async def start_execution(
        self, execution_id: str, *, graph: str, target: str, now: datetime | None = None
    ) -> None:
        """Record ``execution_id`` as running (a resume keeps the first start time)."""
        params = (execution_id, graph, target, utc(now))

        async def start(conn: Conn) -> None:
            await conn.execute(
                "INSERT INTO docket_executions (execution_id, graph, target, status, started_at) "
                f"VALUES (%s, %s, %s, 'running', %s){_START_CONFLICT}",
                params,
            )

        await self._run(start)

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
        params: dict[str, Any] = {
            "x_status": status,
            "x_now": utc(now),
            "x_error": error,
            "x_execution_id": execution_id,
        }
        first = ""
        if ended is not None:
            check_end(ended)
            first, ending = _ending(ended)  # the last step's end, in the same statement
            params.update(ending)
            first += " "
        query = (
            f"{first}UPDATE docket_executions SET status = %(x_status)s, "
            "finished_at = %(x_now)s, error = %(x_error)s, wake_at = NULL "
            "WHERE execution_id = %(x_execution_id)s"
        )

        async def finish(conn: Conn) -> None:
            await conn.execute(query, params)

        await self._run(finish, idempotent=True)

    async def get_execution(self, execution_id: str) -> ExecutionRecord | None:
        """The execution's row, or ``None``."""

        async def get(conn: Conn) -> ExecutionRecord | None:
            cur = await conn.execute(
                f"SELECT {_EXECUTION_COLUMNS} FROM docket_executions WHERE execution_id = %s",
                (execution_id,),
            )
            row = await cur.fetchone()
            return None if row is None else execution_from_row(row, utc)

        return await self._run(get, read=True)

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
        params = {
            "statuses": wanted or None,
            "graph": graph,
            "since": None if since is None else utc(since),
            "limit": limit,
        }

        async def query(conn: Conn) -> list[ExecutionRecord]:
            cur = await conn.execute(
                f"SELECT {_EXECUTION_COLUMNS} FROM docket_executions "
                "WHERE (%(statuses)s::text[] IS NULL OR status = ANY(%(statuses)s)) "
                "AND (%(graph)s::text IS NULL OR graph = %(graph)s) "
                "AND (%(since)s::timestamptz IS NULL OR started_at >= %(since)s) "
                "ORDER BY started_at DESC, execution_id LIMIT %(limit)s",
                params,
            )
            return [execution_from_row(row, utc) for row in await cur.fetchall()]

        return await self._run(query, read=True)

    async def queue_execution(
        self,
        execution_id: str,
        *,
        graph: str,
        target: str,
        inputs: str,
        trace_context: str | None = None,
        now: datetime | None = None,
        connection: psycopg.AsyncConnection[Any] | None = None,
    ) -> ExecutionRecord:
        """Record ``execution_id`` as queued (see the Store protocol), in one statement.

        With ``connection`` (an open psycopg async connection to the same
        database) the statement runs there, inside whatever transaction the
        caller has open, and the caller commits: recording the execution and
        deferring its job can then be one transaction.
        """
        params = {
            "execution_id": execution_id,
            "graph": graph,
            "target": target,
            "inputs": inputs,
            "trace_context": trace_context,
            "now": utc(now),
        }

        async def queue(conn: psycopg.AsyncConnection[Any]) -> ExecutionRecord:
            # A tuple cursor: a caller's connection may have another row factory.
            async with conn.cursor(row_factory=tuple_row) as cur:
                await cur.execute(_QUEUE, params)
                row = await cur.fetchone()
                if row is None:  # the race described at _QUEUE
                    await cur.execute(
                        f"SELECT {_EXECUTION_COLUMNS} FROM docket_executions "
                        "WHERE execution_id = %(execution_id)s",
                        params,
                    )
                    row = await cur.fetchone()
            if row is None:
                raise StoreError(f"execution {execution_id!r} vanished while queued; retry")
            return execution_from_row(row, utc)

        if connection is not None:
            try:
                return await queue(connection)
            except psycopg.Error as err:
                raise _translate(err, self.url) from err
        return await self._run(queue)

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
        params = (status, None if wake_at is None else utc(wake_at), error, execution_id)

        async def suspend(conn: Conn) -> None:
            await conn.execute(
                "UPDATE docket_executions SET status = %s, wake_at = %s, error = %s, "
                "finished_at = NULL WHERE execution_id = %s AND status <> 'cancelled'",
                params,
            )

        await self._run(suspend, idempotent=True)

    async def cancel_execution(
        self, execution_id: str, *, now: datetime | None = None
    ) -> ExecutionRecord | None:
        """Mark ``execution_id`` cancelled unless it ended; return the row as it stands."""
        params = {"execution_id": execution_id, "now": utc(now)}

        async def cancel(conn: Conn) -> ExecutionRecord | None:
            cur = await conn.execute(
                "WITH cancelled AS (UPDATE docket_executions SET status = 'cancelled', "
                "finished_at = %(now)s, wake_at = NULL WHERE execution_id = %(execution_id)s "
                f"AND status IN ('queued', 'running', 'waiting') RETURNING {_EXECUTION_COLUMNS}) "
                f"SELECT {_EXECUTION_COLUMNS} FROM cancelled UNION ALL "
                f"SELECT {_EXECUTION_COLUMNS} FROM docket_executions "
                "WHERE execution_id = %(execution_id)s AND NOT EXISTS (SELECT FROM cancelled)",
                params,
            )
            row = await cur.fetchone()
            return None if row is None else execution_from_row(row, utc)

        return await self._run(cancel)

    async def last_succeeded_execution(
        self, graph: str, target: str, *, id_prefix: str | None = None
    ) -> ExecutionRecord | None:
        """The succeeded execution of ``target`` in ``graph`` that finished last."""
        params = (graph, target, id_prefix, id_prefix)

        async def last(conn: Conn) -> ExecutionRecord | None:
            cur = await conn.execute(
                f"SELECT {_EXECUTION_COLUMNS} FROM docket_executions "
                "WHERE graph = %s AND target = %s AND status = 'succeeded' "
                "AND (%s::text IS NULL OR starts_with(execution_id, %s::text)) "
                "ORDER BY finished_at DESC, started_at DESC LIMIT 1",
                params,
            )
            row = await cur.fetchone()
            return None if row is None else execution_from_row(row, utc)

        return await self._run(last, read=True)

    async def get_step_runs(self, execution_id: str) -> list[StepRunRecord]:
        """The execution's step runs, oldest start first."""

        async def get(conn: Conn) -> list[StepRunRecord]:
            cur = await conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM docket_step_runs WHERE execution_id = %s "
                "ORDER BY started_at, step",
                (execution_id,),
            )
            return [step_run_from_row(row, utc) for row in await cur.fetchall()]

        return await self._run(get, read=True)

    async def get_unfinished_step_runs(self) -> list[StepRunRecord]:
        """Every step run still ``claimed`` or ``running``, oldest start first."""

        async def get(conn: Conn) -> list[StepRunRecord]:
            cur = await conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM docket_step_runs WHERE finished_at IS NULL "
                "ORDER BY started_at, execution_id, step"
            )
            return [step_run_from_row(row, utc) for row in await cur.fetchall()]

        return await self._run(get, read=True)

    # -- step runs ------------------------------------------------------------

    async def claim_step(
        self, execution_id: str, step: str, *, owner: str, now: datetime | None = None
    ) -> Claim:
        """Claim (execution id, step): ``INSERT ... ON CONFLICT DO NOTHING``, one statement."""
        params = {"execution_id": execution_id, "step": step, "now": utc(now), "owner": owner}

        async def claim(conn: Conn) -> Claim:
            cur = await conn.execute(_CLAIM, params)
            row = await cur.fetchone()
            if row is None:
                # The race described at _CLAIM: the winner's row exists now.
                cur = await conn.execute(
                    f"SELECT false, {_RUN_COLUMNS} FROM docket_step_runs "
                    "WHERE execution_id = %(execution_id)s AND step = %(step)s",
                    params,
                )
                row = await cur.fetchone()
                if row is None:  # deleted again in between: a rerun reset it
                    raise StoreError(f"claim of {step!r} in {execution_id!r} vanished; retry")
            return Claim(won=bool(row[0]), run=step_run_from_row(row[1:], utc))

        return await self._run(claim)

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
        """Record an attempt starting (after ``ended``, in the same statement); return the
        attempt count (0: the claim is not ours)."""
        params = {"execution_id": execution_id, "step": step, "now": utc(now), "owner": owner}
        first = ""
        if ended is not None:
            check_end(ended)
            # The end's CTEs, their parameters renamed apart from the start's.
            query, ending = _ending(ended)
            first = query.replace("%(", "%(e_") + " "
            params.update({f"e_{name}": value for name, value in ending.items()})
        if claimed:
            query = (
                "UPDATE docket_step_runs SET status = 'running', attempts = attempts + 1, "
                "started_at = %(now)s, finished_at = NULL, duration_ms = NULL, error = NULL "
                "WHERE execution_id = %(execution_id)s AND step = %(step)s "
                "AND status = 'claimed' AND owner = %(owner)s RETURNING attempts"
            )
        else:
            query = (
                f"INSERT INTO docket_step_runs ({_RUN_COLUMNS}) "
                "VALUES (%(execution_id)s, %(step)s, 'running', 1, %(now)s, NULL, NULL, NULL, "
                "%(owner)s) "
                "ON CONFLICT (execution_id, step) DO UPDATE SET status = 'running', "
                "attempts = docket_step_runs.attempts + 1, started_at = EXCLUDED.started_at, "
                "finished_at = NULL, duration_ms = NULL, error = NULL, owner = EXCLUDED.owner "
                "RETURNING attempts"
            )

        async def start(conn: Conn) -> int:
            cur = await conn.execute(first + query, params)
            row = await cur.fetchone()
            # An upsert always returns its row; the claimed UPDATE none when not ours.
            return 0 if row is None else int(row[0])

        return await self._run(start)

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
        """Record a step's end with its result and attempt, in the same statement."""
        end = StepEnd(execution_id, step, status, error, result, attempt, owner, now)
        check_end(end)
        query, params = _ending(end)
        query += f" SELECT {_OWNED}"

        async def finish(conn: Conn) -> bool:
            cur = await conn.execute(query, params)
            row = await cur.fetchone()
            return row is not None and bool(row[0])

        return await self._run(finish, idempotent=True)

    async def record_cache_hit(
        self, execution_id: str, step: str, *, owner: str, now: datetime | None = None
    ) -> None:
        """Record the step ``cached``: it used a kept result instead of running."""
        params = {"execution_id": execution_id, "step": step, "now": utc(now), "owner": owner}

        async def record(conn: Conn) -> None:
            await conn.execute(
                f"INSERT INTO docket_step_runs ({_RUN_COLUMNS}) "
                "VALUES (%(execution_id)s, %(step)s, 'cached', 0, %(now)s, %(now)s, 0, NULL, "
                "%(owner)s) "
                "ON CONFLICT (execution_id, step) DO UPDATE SET status = 'cached', "
                "started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at, "
                "duration_ms = 0, error = NULL, owner = EXCLUDED.owner",
                params,
            )

        await self._run(record, idempotent=True)

    async def release_claim(
        self, execution_id: str, step: str, *, owner: str, running: bool = False
    ) -> bool:
        """Delete the step's row if it is still ``claimed`` (or ``running``) by ``owner``."""

        async def release(conn: Conn) -> bool:
            cur = await conn.execute(
                "DELETE FROM docket_step_runs WHERE execution_id = %s AND step = %s "
                "AND (status = 'claimed' OR (status = 'running' AND %s)) AND owner = %s",
                (execution_id, step, running, owner),
            )
            return cur.rowcount == 1

        return await self._run(release)

    async def take_over_claim(
        self,
        execution_id: str,
        step: str,
        *,
        old_owner: str,
        owner: str,
        now: datetime | None = None,
    ) -> bool:
        """Move a ``claimed`` row from ``old_owner`` to ``owner`` in one UPDATE.

        A racing UPDATE waits for the first one's row lock, then finds the
        owner changed and matches nothing.
        """
        params = (owner, utc(now), execution_id, step, old_owner)

        async def take_over(conn: Conn) -> bool:
            cur = await conn.execute(
                "UPDATE docket_step_runs SET owner = %s, started_at = %s "
                "WHERE execution_id = %s AND step = %s AND status = 'claimed' AND owner = %s",
                params,
            )
            return cur.rowcount == 1

        return await self._run(take_over)

    async def settle_step(
        self,
        execution_id: str,
        step: str,
        *,
        result: StoredResult,
        owner: str,
        now: datetime | None = None,
    ) -> None:
        """Store ``result`` and record the step ``succeeded``, in one statement."""
        params = {
            "execution_id": execution_id,
            "step": step,
            "now": utc(now),
            "owner": owner,
            **_result_params(result),
        }

        async def settle(conn: Conn) -> None:
            await conn.execute(
                f"WITH result AS ({_UPSERT_RESULT}) "
                f"INSERT INTO docket_step_runs ({_RUN_COLUMNS}) "
                "VALUES (%(execution_id)s, %(step)s, 'succeeded', 0, %(now)s, %(now)s, NULL, "
                "NULL, %(owner)s) "
                "ON CONFLICT (execution_id, step) DO UPDATE SET status = 'succeeded', "
                "finished_at = EXCLUDED.finished_at, error = NULL, owner = EXCLUDED.owner",
                params,
            )

        await self._run(settle, idempotent=True)

    async def get_attempts(self, execution_id: str, step: str | None = None) -> list[AttemptRecord]:
        """The execution's attempts, by step (first started first), then by number."""
        columns = ", ".join(f"a.{c}" for c in _ATTEMPT_COLUMNS.split(", "))
        params = {"execution_id": execution_id, "step": step}

        async def get(conn: Conn) -> list[AttemptRecord]:
            cur = await conn.execute(
                f"SELECT {columns} FROM docket_step_attempts a JOIN "
                "(SELECT step, min(started_at) AS first FROM docket_step_attempts "
                "WHERE execution_id = %(execution_id)s GROUP BY step) f ON f.step = a.step "
                "WHERE a.execution_id = %(execution_id)s "
                "AND (%(step)s::text IS NULL OR a.step = %(step)s) "
                "ORDER BY f.first, a.step, a.attempt",
                params,
            )
            return [attempt_from_row(row, utc) for row in await cur.fetchall()]

        return await self._run(get, read=True)

    async def close(self) -> None:
        """Close the pool (and the spare connection)."""
        spare, self._spare = self._spare, None
        if spare is not None:
            await self._spare_pool_put(spare)
        await self._pool.close()


def _new_pool(
    conninfo: str, min_size: int, max_size: int, timeout: float
) -> AsyncConnectionPool[Conn]:
    return AsyncConnectionPool(
        conninfo,
        min_size=min_size,
        max_size=max_size,
        timeout=timeout,
        kwargs={"autocommit": True},
        open=False,
        name="docket",
    )


# SQLSTATE classes and codes (see "PostgreSQL Error Codes" in its manual) after which
# the same statement may succeed later: StoreUnavailable. Connection exceptions,
# transaction rollbacks (serialization failure, deadlock), operator intervention
# (statement timeout, shutdown), system errors (I/O), a lock not available, and the
# lacks of resources that pass (memory, connections, disk space: a full disk is an
# outage of the infrastructure, over once space is freed).
_TRANSIENT_CLASSES: Final = frozenset({"08", "40", "57", "58"})
_TRANSIENT_CODES: Final = frozenset({"55P03", "53000", "53100", "53200", "53300"})
# Those that retrying will not change: data exceptions, integrity constraints, program
# limits (an index row too large), a configured limit, damaged data: StoreRejected.
_REJECTED_CLASSES: Final = frozenset({"22", "23", "54", "XX"})
_REJECTED_CODES: Final = frozenset({"53400"})


def _translate(err: psycopg.Error, url: str) -> StoreError:
    """Our exception for a driver error on a live connection (the caller chains ``err``)."""
    state = err.sqlstate
    if state is None:
        # Raised by the client, not the server: a protocol or connection failure.
        if isinstance(err, psycopg.OperationalError | psycopg.InterfaceError):
            return StoreUnavailable(f"Postgres at {url} is unavailable: {err}")
        return StoreError(f"Postgres at {url}: {err}")
    if state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_CODES:
        return StoreUnavailable(f"Postgres at {url} is unavailable: {err}")
    if state[:2] in _REJECTED_CLASSES or state in _REJECTED_CODES:
        return StoreRejected(f"Postgres at {url} refused the operation: {err}")
    return StoreError(f"Postgres at {url}: {err}")


def _first_line(err: BaseException) -> str:
    """The gist of a libpq error: its first line, without psycopg's prefix."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text.removeprefix("connection failed: ")


async def _version(conn: Conn) -> int:
    cur = await conn.execute("SELECT to_regclass('docket_schema_version') IS NOT NULL")
    row = await cur.fetchone()
    if row is None or not row[0]:
        return 0
    cur = await conn.execute("SELECT coalesce(max(version), 0) FROM docket_schema_version")
    row = await cur.fetchone()
    return 0 if row is None else int(row[0])
