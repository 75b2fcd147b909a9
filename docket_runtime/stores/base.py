"""The store interface: rows, errors and the async :class:`Store` protocol.

A store keeps four tables in the user's own database (the SQL is in
``migrations/<backend>/``):

- ``docket_results``: precious step outputs of both cache scopes. ``key`` is a
  SHA-256 hex digest (:func:`workflow_key`, :func:`global_key`); each row
  holds the output's message type, its proto bytes and a JSON rendering of the
  same message so that fields are queryable with plain SQL, and the graph
  that wrote it.
- ``docket_executions``: one row per execution id (status, timings, error;
  for executions run by a durable worker also their inputs, the trace
  context they were enqueued in and, while one waits for a retry, when it is
  due).
- ``docket_step_runs``: one row per (execution id, step): the latest run's
  status, attempt count, timings, error text and owner. An at-most-once step
  *claims* its row before running (:meth:`Store.claim_step`).
- ``docket_step_attempts``: one row per attempt of a step (status, timings,
  error type, message and traceback, owner), for the history that
  ``docket_step_runs`` overwrites.

Every method that reads or writes a time takes ``now`` (an aware datetime;
``None`` means the current UTC time) so that tests control the clock.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, Protocol, Self, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

from ..codec import PayloadCodec
from ..errors import DocketError

__all__ = [
    "SCHEMA_VERSION",
    "AttemptRecord",
    "AttemptStatus",
    "Claim",
    "ExecutionRecord",
    "ExecutionStatus",
    "GlobalKeys",
    "MigrationRecord",
    "Payload",
    "SchemaVersionError",
    "Scope",
    "StepEnd",
    "StepRunRecord",
    "StepStatus",
    "Store",
    "StoreError",
    "StoreRejected",
    "StoreUnavailable",
    "StoreUrlError",
    "StoredResult",
    "default_owner",
    "global_key",
    "workflow_key",
]

SCHEMA_VERSION = 4
"""The newest schema version this release knows (the highest migration number)."""

Scope = Literal["workflow", "global"]
ExecutionStatus = Literal["queued", "running", "waiting", "succeeded", "failed", "cancelled"]
StepStatus = Literal["claimed", "running", "succeeded", "failed", "cancelled", "cached"]
AttemptStatus = Literal["succeeded", "failed", "cancelled"]

_SCOPES = frozenset({"workflow", "global"})
_EXECUTION_STATUSES = frozenset(
    {"queued", "running", "waiting", "succeeded", "failed", "cancelled"}
)
_FINISHED_STEP_STATUSES = frozenset({"succeeded", "failed", "cancelled", "cached"})
_ATTEMPT_STATUSES = frozenset({"succeeded", "failed", "cancelled"})


class StoreError(DocketError):
    """A store operation failed; the driver's exception, if any, is ``__cause__``."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or used right now: a transient failure.

    A dropped connection, a server that is down or restarting, a timeout, a
    serialization failure or deadlock, a database file busy, locked or failing
    to read or write, a full disk. The same operation may succeed later, so retrying is the
    right answer. Nothing is known about the operation that raised it except
    that it may not have happened; callers must not record a step done on the
    strength of it.
    """


class StoreRejected(StoreError):
    """The database refused the operation for a reason that retrying will not change.

    Data it does not accept (a value too large for a column or an index, a
    broken constraint, an invalid value), a disk that is full, a damaged
    database file. A person must act (fix the data, free space); a caller that
    retries on :class:`StoreUnavailable` stops on this one.
    """


class StoreUrlError(StoreError, ValueError):
    """A store URL that :func:`~docket_runtime.stores.open_store` cannot read."""


class SchemaVersionError(StoreError):
    """The database's schema version is not the one this release works with (a SQLite file
    that does not exist has none)."""


@dataclass(frozen=True, slots=True)
class StoredResult:
    """One row of ``docket_results``: a step's output in both proto and JSON form.

    ``execution_id`` is set for the ``workflow`` scope and ``None`` for
    ``global``. ``output`` is the message's proto bytes with a checksum, or
    encrypted by the store's codec (:mod:`docket_runtime._payload` writes and
    reads it; a store keeps it as it is). ``output_json`` is the JSON rendering
    of the message, ``null`` for a sensitive step (Postgres stores it as JSONB,
    which may respell it). ``expires_at`` ``None`` means never.
    ``graph`` is the full name of the graph that wrote the row (``None`` for
    rows written before schema version 3): a ``global`` key digests it, or
    the cache namespace, and cannot be read back.
    """

    key: str
    scope: Scope
    execution_id: str | None
    step: str
    version: str
    output_type: str
    output: bytes
    output_json: str
    created_at: datetime
    expires_at: datetime | None = None
    graph: str | None = None

    def __post_init__(self) -> None:
        # The database has the same CHECK; failing here names the culprit
        # before anything is sent.
        if self.scope not in _SCOPES:
            raise ValueError(f"scope must be 'workflow' or 'global', not {self.scope!r}")
        if (self.scope == "workflow") != (self.execution_id is not None):
            raise ValueError("a 'workflow' result needs an execution_id; a 'global' one has none")
        # Aware UTC everywhere, so that every backend compares and returns the same.
        object.__setattr__(self, "created_at", utc(self.created_at))
        if self.expires_at is not None:
            object.__setattr__(self, "expires_at", utc(self.expires_at))


Payload = tuple[str, bytes, str]
"""What a cache hit reads of a ``docket_results`` row: ``(output_type, output, output_json)``,
as in :class:`StoredResult`."""


@dataclass(frozen=True, slots=True)
class ExecutionRecord:
    """One row of ``docket_executions``.

    ``status``: ``running``, then ``succeeded``, ``failed`` or ``cancelled``;
    an execution run by a durable worker is first ``queued`` and may be
    ``waiting`` for a retry job due at ``wake_at`` (``error`` then holds the
    failure it retries). ``started_at`` is when the row was first written
    (enqueued or started). ``inputs`` is the JSON text of the graph inputs of
    an enqueued execution (``None`` for one run in process); ``trace_context``
    the JSON text of the trace context it was enqueued in, when traced
    (:mod:`docket_runtime.otel`).
    """

    execution_id: str
    graph: str
    target: str
    status: ExecutionStatus
    started_at: datetime
    finished_at: datetime | None
    error: str | None
    inputs: str | None = None
    wake_at: datetime | None = None
    trace_context: str | None = None


@dataclass(frozen=True, slots=True)
class StepRunRecord:
    """One row of ``docket_step_runs``: the latest run of a step in an execution.

    ``status``: ``claimed`` (an at-most-once step, not started yet),
    ``running``, then ``succeeded``, ``failed`` or ``cancelled``; ``cached``
    when the step did not run because a kept result was used. ``attempts``
    counts :meth:`Store.step_started` calls since the row was created (a claim
    alone is 0 attempts), across processes and resumes.
    """

    execution_id: str
    step: str
    status: StepStatus
    attempts: int
    started_at: datetime
    finished_at: datetime | None
    duration_ms: float | None
    error: str | None
    owner: str

    @property
    def finished(self) -> bool:
        """Whether the run ended (``succeeded``, ``failed``, ``cancelled`` or ``cached``)."""
        return self.status in _FINISHED_STEP_STATUSES


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One row of ``docket_step_attempts``: one attempt of a step in an execution.

    ``attempt`` is the count :meth:`Store.step_started` returned for it (1 for
    the first). ``error_type`` names the exception's class as
    ``module.QualName`` (``builtins.ValueError``); ``error_message`` is its
    text and ``traceback`` the formatted traceback; all three are ``None``
    for an attempt that succeeded. ``owner`` is the process that ran it.
    """

    execution_id: str
    step: str
    attempt: int
    status: AttemptStatus
    started_at: datetime
    finished_at: datetime
    duration_ms: float
    error_type: str | None
    error_message: str | None
    traceback: str | None
    owner: str

    def __post_init__(self) -> None:
        # The database has the same CHECK; failing here names the culprit
        # before anything is sent.
        if self.status not in _ATTEMPT_STATUSES:
            raise ValueError(
                f"an attempt ends 'succeeded', 'failed' or 'cancelled', not {self.status!r}"
            )
        object.__setattr__(self, "started_at", utc(self.started_at))
        object.__setattr__(self, "finished_at", utc(self.finished_at))


@dataclass(frozen=True, slots=True)
class StepEnd:
    """A step's end as :meth:`Store.step_finished` records it (the same fields), to be sent
    with the start of the next step of its execution (:meth:`Store.step_started`)."""

    execution_id: str
    step: str
    status: AttemptStatus
    error: str | None = None
    result: StoredResult | None = None
    attempt: AttemptRecord | None = None
    owner: str | None = None
    now: datetime | None = None


@dataclass(frozen=True, slots=True)
class MigrationRecord:
    """One schema migration, as :meth:`Store.get_migrations` reports it.

    ``name`` is the migration file's stem (``0002_step_attempts``);
    ``applied_at`` is when it was applied to the database, ``None`` while it
    is pending.
    """

    version: int
    name: str
    applied_at: datetime | None

    def __post_init__(self) -> None:
        if self.applied_at is not None:
            object.__setattr__(self, "applied_at", utc(self.applied_at))


@dataclass(frozen=True, slots=True)
class Claim:
    """What :meth:`Store.claim_step` found.

    ``won`` is true for exactly one caller per (execution id, step), until the
    row is deleted by :meth:`Store.delete_results`. ``run`` is the row as it
    stands: the fresh claim when won, otherwise the other claimant's row:
    ``run.finished`` with ``run.status == "succeeded"`` means its result was
    recorded; unfinished means ``run.owner`` claimed it and has not reported
    back (still running, or it died: a human or a policy must decide).
    """

    won: bool
    run: StepRunRecord


@runtime_checkable
class Store(Protocol):
    """Where Docket keeps precious results, executions and step runs.

    Implementations: :class:`~docket_runtime.stores.memory.MemoryStore`,
    :class:`~docket_runtime.stores.sqlite.SqliteStore` and
    :class:`~docket_runtime.stores.postgres.PostgresStore`; open one with
    :func:`~docket_runtime.stores.open_store`. Driver errors surface as
    :class:`StoreError`: :class:`StoreUnavailable` when the failure is transient
    (the database is gone, busy or locked, the disk full), :class:`StoreRejected`
    when it is permanent (the data is refused, the file damaged), with the driver's
    exception as ``__cause__``.
    """

    url: str
    """Where the store points, with any password removed (for messages)."""

    codec: PayloadCodec | None
    """What encodes the payloads written through the store (``None``: none, payloads are
    kept as checked proto bytes); see :mod:`docket_runtime.codec`."""

    async def migrate(self) -> list[int]:
        """Apply the schema migrations the database lacks; return the versions applied.

        Idempotent and safe when several processes migrate at once. Raises
        :class:`SchemaVersionError` if the database is newer than this release.
        """
        ...

    async def schema_version(self) -> int:
        """The database's schema version: 0 when it has no Docket tables yet."""
        ...

    async def get_migrations(self) -> list[MigrationRecord]:
        """Every migration applied to the database or shipped by this release, by version.

        A pending one has ``applied_at`` ``None``; one applied by a newer
        release is listed with the name the database recorded.
        """
        ...

    async def get_results(
        self, keys: Collection[str], *, now: datetime | None = None
    ) -> dict[str, StoredResult]:
        """The unexpired results among ``keys``, by key, in one round trip.

        A key that is absent or whose ``expires_at`` is at or before ``now`` is
        left out of the answer.
        """
        ...

    async def get_payload(self, key: str, *, now: datetime | None = None) -> Payload | None:
        """The payload of the unexpired result under ``key`` (``None`` as
        :meth:`get_results` would leave it out), in one round trip: only the
        columns a cache hit reads, without making a :class:`StoredResult`.
        """
        ...

    async def put_result(self, result: StoredResult) -> None:
        """Insert ``result``, or replace the row that has its key."""
        ...

    async def read_checkpoints(
        self,
        keys: Collection[str],
        inputs: StoredResult,
        *,
        target: str | None = None,
        now: datetime | None = None,
    ) -> tuple[dict[str, StoredResult], bool]:
        """Read a run's checkpoints and keep its inputs, in one round trip where the store can.

        Returns the unexpired rows among ``keys`` as :meth:`get_results` does,
        as they were before this call, and whether ``inputs`` (the inputs row of
        the run under its execution id) was inserted: it is when no row had its
        key yet. With ``target``, that insert also records the execution
        running, as :meth:`start_execution` would (under the inputs row's
        ``execution_id`` and ``graph``): an id never used before cannot be
        refused for other inputs, so nothing is left to check first. Running
        this twice is harmless: the second call inserts nothing and finds the
        row the first one wrote.
        """
        ...

    async def delete_results(self, execution_id: str, steps: Collection[str]) -> int:
        """Forget ``steps`` of ``execution_id`` so that a rerun computes them again.

        Deletes their ``workflow``-scoped results, their step-run rows (which
        releases at-most-once claims) and their attempt rows (attempt numbers
        start again with the step run) in one transaction; returns how many
        results were deleted. ``global`` results are content-addressed and
        shared by executions, so they are left alone.
        """
        ...

    async def purge_expired(self, *, now: datetime | None = None) -> int:
        """Delete the results that expired at or before ``now``; return how many."""
        ...

    async def purge_results(
        self,
        *,
        scope: Scope | None = None,
        step: str | None = None,
        graph: str | None = None,
        expired: bool = False,
        now: datetime | None = None,
    ) -> int:
        """Delete the results that match every filter given; return how many.

        ``scope``, ``step`` and ``graph`` (the graph that wrote the row) select
        by column; ``expired`` only the rows that expired at or before
        ``now``. At least one filter is required (a ``ValueError`` otherwise):
        this is a tool for an operator, not a way to empty the table by mistake.
        """
        ...

    async def get_execution_results(self, execution_id: str) -> list[StoredResult]:
        """The ``workflow`` results (checkpoints) of ``execution_id``, expired ones too,
        oldest first."""
        ...

    async def start_execution(
        self, execution_id: str, *, graph: str, target: str, now: datetime | None = None
    ) -> None:
        """Record that ``execution_id`` is running.

        A resumed execution keeps its first ``started_at``; its status goes back
        to ``running`` and its finish time and error are cleared.
        """
        ...

    async def finish_execution(
        self,
        execution_id: str,
        *,
        status: ExecutionStatus,
        error: str | None = None,
        now: datetime | None = None,
        ended: StepEnd | None = None,
    ) -> None:
        """Record how ``execution_id`` ended (``error`` is the error text, if any).

        ``ended``, the end of its last step, is recorded with it in the same
        statement or transaction, as :meth:`step_finished` records it.
        """
        ...

    async def get_execution(self, execution_id: str) -> ExecutionRecord | None:
        """The execution's row, or ``None``."""
        ...

    async def list_executions(
        self,
        *,
        statuses: Collection[ExecutionStatus] = (),
        graph: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[ExecutionRecord]:
        """Recorded executions, the latest started first.

        Only those with one of ``statuses`` (any status when empty), of
        ``graph`` (its full name), started at or after ``since``; at most
        ``limit`` of them.
        """
        ...

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
        """Record ``execution_id`` as ``queued`` for a durable worker, with its ``inputs``.

        A new id is inserted. An execution that ``failed`` or was ``cancelled``
        with the same graph, target and inputs goes back to ``queued`` (error,
        finish time and wake time cleared; its checkpoints stay). Any other row
        is left alone. Returns the row as it stands afterwards, so that the
        caller can tell which of these happened. ``inputs`` is JSON text (a
        JSON object), compared by value. ``trace_context`` (JSON text, or
        ``None``) is stored with a new or re-queued row and never compared.
        """
        ...

    async def suspend_execution(
        self,
        execution_id: str,
        *,
        status: Literal["queued", "waiting"],
        wake_at: datetime | None = None,
        error: str | None = None,
        now: datetime | None = None,
    ) -> None:
        """Record that a durable run stopped to continue in a new job.

        ``waiting``: a retry is due at ``wake_at`` (``error`` is the failure it
        retries); ``queued``: it continues at once (a hand-off, a worker shutting
        down). A ``cancelled`` execution stays cancelled.
        """
        ...

    async def cancel_execution(
        self, execution_id: str, *, now: datetime | None = None
    ) -> ExecutionRecord | None:
        """Mark ``execution_id`` ``cancelled`` unless it already ended.

        ``queued``, ``running`` and ``waiting`` executions become ``cancelled``
        (finish time ``now``); ``succeeded`` and ``failed`` ones are left alone.
        Returns the row as it stands afterwards, or ``None`` if there is none.
        """
        ...

    async def last_succeeded_execution(
        self, graph: str, target: str, *, id_prefix: str | None = None
    ) -> ExecutionRecord | None:
        """The ``succeeded`` execution of ``target`` in ``graph`` that finished last.

        With ``id_prefix``, only among execution ids that start with it (the
        runs of one schedule, say). ``None`` when there is none.
        """
        ...

    async def get_step_runs(self, execution_id: str) -> list[StepRunRecord]:
        """The execution's step runs, oldest start first."""
        ...

    async def get_unfinished_step_runs(self) -> list[StepRunRecord]:
        """The step runs of every execution that have not ended (``claimed`` or
        ``running``), oldest start first: running now, or left by a dead process."""
        ...

    async def claim_step(
        self, execution_id: str, step: str, *, owner: str, now: datetime | None = None
    ) -> Claim:
        """Atomically claim (execution id, step) for an at-most-once run.

        Inserts a ``claimed`` step-run row unless one exists. Of any number of
        callers racing, in any number of processes, exactly one wins; the
        others get the existing row to report.
        """
        ...

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
        """Record an attempt of a step starting; return the attempt count now recorded.

        The row becomes ``running`` with one more attempt, started at ``now``,
        owned by ``owner``, its finish time, duration and error cleared; a
        missing row is inserted. With ``claimed=True`` (an at-most-once step
        starting under its claim) that happens only if the row is ``claimed``
        by ``owner``; otherwise nothing changes and the answer is 0: the claim
        was taken over or released meanwhile, and the step must not run.

        ``ended``, the end of another step of the execution, is recorded first
        in the same statement or transaction, as :meth:`step_finished` records
        it: both are written, or neither.
        """
        ...

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
        """Record a step's end, with its ``result`` and ``attempt`` row, in one transaction.

        Writing them at once means a step is never recorded ``succeeded``
        without its checkpoint, nor checkpointed while its run still reads
        ``running``. ``duration_ms`` is computed from the recorded start. An
        ``attempt`` replaces the row with its number, if there is one.

        With ``owner``, all of it is written only if the step-run row is owned
        by ``owner``; otherwise nothing is, and the answer is ``False`` (another
        process took the step over: its outcome is the one that counts).
        Without ``owner`` the answer is always ``True``, and ``result`` and
        ``attempt`` are written even when there is no step-run row.
        """
        ...

    async def record_cache_hit(
        self, execution_id: str, step: str, *, owner: str, now: datetime | None = None
    ) -> None:
        """Record that a step did not run because a kept result was used.

        The step-run row becomes ``cached``, started and finished at ``now``,
        0 ms, no error, owned by ``owner``; its attempt count is kept (0 for a
        new row).
        """
        ...

    async def release_claim(
        self, execution_id: str, step: str, *, owner: str, running: bool = False
    ) -> bool:
        """Give up a claim whose step never started: delete its row.

        Only a ``claimed`` row owned by ``owner`` is deleted, so a step that
        started (or a claim taken over) is never released. With ``running``,
        a ``running`` row of ``owner`` is deleted too: the caller knows that
        the step's body never started (its start was cancelled after the row
        was marked). Returns whether a row was deleted.
        """
        ...

    async def take_over_claim(
        self,
        execution_id: str,
        step: str,
        *,
        old_owner: str,
        owner: str,
        now: datetime | None = None,
    ) -> bool:
        """Atomically move a ``claimed`` row from ``old_owner`` to ``owner``.

        Its start time becomes ``now``. Of several callers racing to take over
        the same claim exactly one gets ``True``; the others, and any caller
        once the step started or the claim changed hands, get ``False``.
        """
        ...

    async def settle_step(
        self,
        execution_id: str,
        step: str,
        *,
        result: StoredResult,
        owner: str,
        now: datetime | None = None,
    ) -> None:
        """Store ``result`` and record the step ``succeeded``, in one transaction.

        For a step whose result is known without running it here (its claim's
        holder recorded one): the step-run row becomes ``succeeded``, finished
        at ``now``, no error, owned by ``owner``, its attempt count, start time
        and duration kept. A new row gets 0 attempts, starts at ``now`` and has
        no duration.
        """
        ...

    async def get_attempts(self, execution_id: str, step: str | None = None) -> list[AttemptRecord]:
        """The execution's attempt rows (only ``step``'s, when given).

        Grouped by step, the step whose first attempt started first first,
        each step's attempts in order.
        """
        ...

    async def close(self) -> None:
        """Release connections and threads. The store is unusable afterwards."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class StoreBase:
    """``async with`` support shared by the implementations, and the bound codec."""

    codec: PayloadCodec | None = None

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def utc(now: datetime | None) -> datetime:
    """``now`` as an aware UTC datetime; ``None`` is the current time, naive is taken as UTC."""
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is UTC:
        return now  # the common case, and astimezone would make a copy
    if now.tzinfo is None:
        return now.replace(tzinfo=UTC)
    return now.astimezone(UTC)


def check_purge_filters(
    scope: str | None, step: str | None, graph: str | None, expired: bool
) -> None:
    """Reject a purge without a filter, or of an unknown scope."""
    if scope is None and step is None and graph is None and not expired:
        raise ValueError("purge_results needs a filter: scope, step, graph or expired")
    if scope is not None and scope not in _SCOPES:
        raise ValueError(f"scope must be 'workflow' or 'global', not {scope!r}")


def check_execution_status(status: str) -> None:
    """Reject a status the ``docket_executions`` CHECK would reject, with a clearer message."""
    if status not in _EXECUTION_STATUSES:
        raise ValueError(f"execution status must be one of {sorted(_EXECUTION_STATUSES)}")


def check_finish_status(status: str) -> None:
    """Reject a step finish status other than ``succeeded`` / ``failed`` / ``cancelled``."""
    if status not in _ATTEMPT_STATUSES:
        raise ValueError(f"a step finishes 'succeeded', 'failed' or 'cancelled', not {status!r}")


def check_attempt(attempt: AttemptRecord | None, execution_id: str, step: str) -> None:
    """Reject an attempt row that belongs to another step than the one finishing."""
    if attempt is not None and (attempt.execution_id, attempt.step) != (execution_id, step):
        raise ValueError(
            f"attempt of {attempt.step!r} in {attempt.execution_id!r} "
            f"given when finishing {step!r} in {execution_id!r}"
        )


Time = Callable[[Any], datetime]
"""Turns a backend's timestamp value into an aware UTC datetime."""


def _maybe(when: Time, value: Any) -> datetime | None:
    return None if value is None else when(value)


def result_from_row(row: Sequence[Any], when: Time) -> StoredResult:
    """A ``docket_results`` row, columns in the migrations' order."""
    return StoredResult(
        key=row[0],
        scope=row[1],
        execution_id=row[2],
        step=row[3],
        version=row[4],
        output_type=row[5],
        output=bytes(row[6]),
        output_json=row[7],
        created_at=when(row[8]),
        expires_at=_maybe(when, row[9]),
        graph=row[10],
    )


def step_run_from_row(row: Sequence[Any], when: Time) -> StepRunRecord:
    """A ``docket_step_runs`` row, columns in the migrations' order."""
    return StepRunRecord(
        execution_id=row[0],
        step=row[1],
        status=row[2],
        attempts=row[3],
        started_at=when(row[4]),
        finished_at=_maybe(when, row[5]),
        duration_ms=row[6],
        error=row[7],
        owner=row[8],
    )


def attempt_from_row(row: Sequence[Any], when: Time) -> AttemptRecord:
    """A ``docket_step_attempts`` row, columns in the migrations' order."""
    return AttemptRecord(
        execution_id=row[0],
        step=row[1],
        attempt=row[2],
        status=row[3],
        started_at=when(row[4]),
        finished_at=when(row[5]),
        duration_ms=row[6],
        error_type=row[7],
        error_message=row[8],
        traceback=row[9],
        owner=row[10],
    )


def execution_from_row(row: Sequence[Any], when: Time) -> ExecutionRecord:
    """A ``docket_executions`` row, columns in the migrations' order."""
    return ExecutionRecord(
        execution_id=row[0],
        graph=row[1],
        target=row[2],
        status=row[3],
        started_at=when(row[4]),
        finished_at=_maybe(when, row[5]),
        error=row[6],
        inputs=row[7],
        wake_at=_maybe(when, row[8]),
        trace_context=row[9],
    )


def _hasher(secret: bytes | None) -> Any:
    return hashlib.sha256() if secret is None else hmac.new(secret, digestmod=hashlib.sha256)


def _feed(h: Any, part: bytes) -> None:
    # Length-prefix every part so that ("ab", "c") and ("a", "bc") differ.
    h.update(len(part).to_bytes(8, "big") + part)


def _digest(*parts: bytes, secret: bytes | None = None) -> str:
    h = _hasher(secret)
    for part in parts:
        _feed(h, part)
    return str(h.hexdigest())


def workflow_key(execution_id: str, step: str, version: str = "") -> str:
    """The ``docket_results`` key of a ``workflow``-scoped checkpoint.

    One per (execution id, step, cache version): bumping a step's version makes
    its old checkpoints misses.
    """
    return _digest(b"workflow", execution_id.encode(), step.encode(), version.encode())


def global_key(
    namespace: str,
    step: str,
    version: str,
    inputs: Sequence[bytes | None],
    *,
    secret: bytes | None = None,
) -> str:
    """The ``docket_results`` key of a ``global`` (content-addressed) result.

    ``namespace`` is the graph's full name (``shop.OrderGraph``), or a cache
    namespace that graphs share on purpose: two graphs with a step of the same
    name and version, fed the same inputs, only share results within one
    namespace. ``inputs`` are the step's inputs in parameter order, each
    serialised with ``SerializeToString(deterministic=True)``; ``None`` stands
    for an absent optional input and differs from an empty message. With a
    ``secret`` (a bound codec's), the key is an HMAC-SHA256 under it, so that
    it reveals nothing of the inputs to whoever lacks the secret.
    """
    return GlobalKeys(namespace, step, version)(inputs, secret)


class GlobalKeys:
    """:func:`global_key` of one step, its namespace, name and version hashed once.

    A runner makes one when the graph is bound: a key then costs a copy of
    the hasher fed with that prefix, and the step's inputs.

    ``paths`` are the fields of the inputs a step's cache key names
    (``(docket.step).cache.key``), digested in the prefix after a ``fields``
    marker so that such a key never equals the whole-input key of the same
    step; ``select`` (made once per step) reads the bytes of those fields
    from the step's arguments, one part per path, in order.
    """

    __slots__ = ("_prefix", "_prefixed", "_secret", "select")

    def __init__(
        self,
        namespace: str,
        step: str,
        version: str,
        *,
        paths: Sequence[str] = (),
        select: Callable[[Sequence[Any]], Sequence[bytes | None]] | None = None,
    ) -> None:
        fields = (b"fields", *(path.encode() for path in paths)) if paths else ()
        self._prefix = (b"global", namespace.encode(), step.encode(), version.encode(), *fields)
        self.select = select
        self._secret: bytes | None = None
        self._prefixed = self._feed_prefix(None)

    def _feed_prefix(self, secret: bytes | None) -> Any:
        h = _hasher(secret)
        for part in self._prefix:
            _feed(h, part)
        return h

    def __call__(self, inputs: Sequence[bytes | None], secret: bytes | None = None) -> str:
        """The key of ``inputs``, as :func:`global_key` documents it."""
        if secret != self._secret:
            # Another codec's secret (the store's codec is a settable attribute).
            self._prefixed, self._secret = self._feed_prefix(secret), secret
        h = self._prefixed.copy()
        for data in inputs:
            part = b"\x00" if data is None else b"\x01" + data
            h.update(len(part).to_bytes(8, "big") + part)  # as _feed does, without a call
        key: str = h.hexdigest()
        return key


def default_owner() -> str:
    """A claim owner naming this process: ``host:pid:random``, unique per call."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, for messages and ``Store.url``."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        netloc = f"{parts.username or ''}:***@{host}"
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return url


async def read_then_insert(
    store: Store,
    keys: Collection[str],
    inputs: StoredResult,
    target: str | None,
    now: datetime | None,
) -> tuple[dict[str, StoredResult], bool]:
    """:meth:`Store.read_checkpoints` in separate operations, for stores where a read costs
    no round trip: the rows, then the inputs and the execution's start when none had the key."""
    found = await store.get_results(keys, now=now)
    if inputs.key in found:
        return found, False
    await store.put_result(inputs)
    if target is not None:
        assert inputs.execution_id is not None and inputs.graph is not None
        await store.start_execution(inputs.execution_id, graph=inputs.graph, target=target, now=now)
    return found, True


def ended_fields(end: StepEnd) -> dict[str, Any]:
    """``end`` as the arguments of :meth:`Store.step_finished`."""
    return {
        "execution_id": end.execution_id,
        "step": end.step,
        "status": end.status,
        "error": end.error,
        "result": end.result,
        "attempt": end.attempt,
        "owner": end.owner,
        "now": end.now,
    }


def check_end(end: StepEnd) -> None:
    """Refuse a step's end with a status or an attempt row that does not fit it."""
    check_finish_status(end.status)
    check_attempt(end.attempt, end.execution_id, end.step)
