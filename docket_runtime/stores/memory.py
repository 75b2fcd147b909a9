"""An in-process store: plain dicts, for tests and for runs that persist nothing.

Every method completes without awaiting anything, so on one event loop each
call is atomic, which is all :meth:`MemoryStore.claim_step` needs. Nothing
survives the process.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection
from datetime import datetime
from typing import Literal

from .base import (
    SCHEMA_VERSION,
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
    check_attempt,
    check_execution_status,
    check_finish_status,
    check_purge_filters,
    ended_fields,
    read_then_insert,
    utc,
)

__all__ = ["MemoryStore"]


class MemoryStore(StoreBase):
    """A :class:`~docket_runtime.stores.Store` in dicts (``memory://``)."""

    def __init__(self) -> None:
        self.url = "memory://"
        self._results: dict[str, StoredResult] = {}
        self._executions: dict[str, ExecutionRecord] = {}
        self._runs: dict[tuple[str, str], StepRunRecord] = {}
        self._attempts: dict[tuple[str, str, int], AttemptRecord] = {}

    async def migrate(self) -> list[int]:
        """Nothing to migrate: the dicts are always at the current version."""
        return []

    async def schema_version(self) -> int:
        """Always the current version."""
        return SCHEMA_VERSION

    async def get_migrations(self) -> list[MigrationRecord]:
        """None: there are no tables to migrate."""
        return []

    async def get_results(
        self, keys: Collection[str], *, now: datetime | None = None
    ) -> dict[str, StoredResult]:
        """The unexpired results among ``keys``."""
        now = utc(now)
        found: dict[str, StoredResult] = {}
        for key in keys:
            row = self._results.get(key)
            if row is not None and (row.expires_at is None or row.expires_at > now):
                found[key] = row
        return found

    async def get_payload(self, key: str, *, now: datetime | None = None) -> Payload | None:
        """The payload of the unexpired result under ``key``."""
        row = self._results.get(key)
        if row is None or (row.expires_at is not None and row.expires_at <= utc(now)):
            return None
        return row.output_type, row.output, row.output_json

    async def put_result(self, result: StoredResult) -> None:
        """Insert or replace ``result``."""
        self._results[result.key] = result

    async def read_checkpoints(
        self,
        keys: Collection[str],
        inputs: StoredResult,
        *,
        target: str | None = None,
        now: datetime | None = None,
    ) -> tuple[dict[str, StoredResult], bool]:
        """The rows among ``keys``, then ``inputs`` (and the execution's start, with
        ``target``) kept if no row had its key: see the protocol."""
        return await read_then_insert(self, keys, inputs, target, now)

    async def delete_results(self, execution_id: str, steps: Collection[str]) -> int:
        """Forget ``steps`` of ``execution_id``: workflow results, step runs and attempts."""
        wanted = set(steps)
        doomed = [
            key
            for key, row in self._results.items()
            if row.execution_id == execution_id and row.step in wanted
        ]
        for key in doomed:
            del self._results[key]
        for step in wanted:
            self._runs.pop((execution_id, step), None)
        for eid, step, number in list(self._attempts):
            if eid == execution_id and step in wanted:
                del self._attempts[eid, step, number]
        return len(doomed)

    async def purge_expired(self, *, now: datetime | None = None) -> int:
        """Delete the results expired at ``now``."""
        now = utc(now)
        doomed = [
            key
            for key, row in self._results.items()
            if row.expires_at is not None and row.expires_at <= now
        ]
        for key in doomed:
            del self._results[key]
        return len(doomed)

    async def purge_results(
        self,
        *,
        scope: Scope | None = None,
        step: str | None = None,
        graph: str | None = None,
        expired: bool = False,
        now: datetime | None = None,
    ) -> int:
        """Delete the results that match every filter given."""
        check_purge_filters(scope, step, graph, expired)
        now = utc(now)
        doomed = [
            key
            for key, row in self._results.items()
            if (scope is None or row.scope == scope)
            and (step is None or row.step == step)
            and (graph is None or row.graph == graph)
            and (not expired or (row.expires_at is not None and row.expires_at <= now))
        ]
        for key in doomed:
            del self._results[key]
        return len(doomed)

    async def get_execution_results(self, execution_id: str) -> list[StoredResult]:
        """The execution's checkpoints, oldest first."""
        found = [row for row in self._results.values() if row.execution_id == execution_id]
        return sorted(found, key=lambda row: (row.created_at, row.step))

    async def start_execution(
        self, execution_id: str, *, graph: str, target: str, now: datetime | None = None
    ) -> None:
        """Record ``execution_id`` as running (a resume keeps the first start time)."""
        old = self._executions.get(execution_id)
        self._executions[execution_id] = ExecutionRecord(
            execution_id=execution_id,
            graph=graph,
            target=target,
            status="running",
            started_at=old.started_at if old else utc(now),
            finished_at=None,
            error=None,
            inputs=old.inputs if old else None,
            trace_context=old.trace_context if old else None,
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
            await self.step_finished(**ended_fields(ended))
        old = self._executions.get(execution_id)
        if old is not None:
            self._executions[execution_id] = dataclasses.replace(
                old, status=status, finished_at=utc(now), error=error, wake_at=None
            )

    async def get_execution(self, execution_id: str) -> ExecutionRecord | None:
        """The execution's row, or ``None``."""
        return self._executions.get(execution_id)

    async def list_executions(
        self,
        *,
        statuses: Collection[ExecutionStatus] = (),
        graph: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[ExecutionRecord]:
        """Recorded executions, the latest started first, filtered."""
        for status in statuses:
            check_execution_status(status)
        start = None if since is None else utc(since)
        found = [
            e
            for e in self._executions.values()
            if (not statuses or e.status in statuses)
            and (graph is None or e.graph == graph)
            and (start is None or e.started_at >= start)
        ]
        found.sort(key=lambda e: e.execution_id)
        found.sort(key=lambda e: e.started_at, reverse=True)
        return found if limit is None else found[:limit]

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
        """Record ``execution_id`` as queued (see the Store protocol)."""
        old = self._executions.get(execution_id)
        if old is None:
            new = ExecutionRecord(
                execution_id=execution_id,
                graph=graph,
                target=target,
                status="queued",
                started_at=utc(now),
                finished_at=None,
                error=None,
                inputs=inputs,
                trace_context=trace_context,
            )
        elif (
            old.status in ("failed", "cancelled")
            and (old.graph, old.target) == (graph, target)
            and old.inputs is not None
            and json.loads(old.inputs) == json.loads(inputs)
        ):
            new = dataclasses.replace(
                old,
                status="queued",
                finished_at=None,
                error=None,
                wake_at=None,
                trace_context=trace_context,
            )
        else:
            return old
        self._executions[execution_id] = new
        return new

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
        old = self._executions.get(execution_id)
        if old is not None and old.status != "cancelled":
            self._executions[execution_id] = dataclasses.replace(
                old,
                status=status,
                wake_at=None if wake_at is None else utc(wake_at),
                error=error,
                finished_at=None,
            )

    async def cancel_execution(
        self, execution_id: str, *, now: datetime | None = None
    ) -> ExecutionRecord | None:
        """Mark ``execution_id`` cancelled unless it ended; return the row as it stands."""
        old = self._executions.get(execution_id)
        if old is None or old.status not in ("queued", "running", "waiting"):
            return old
        new = self._executions[execution_id] = dataclasses.replace(
            old, status="cancelled", finished_at=utc(now), wake_at=None
        )
        return new

    async def last_succeeded_execution(
        self, graph: str, target: str, *, id_prefix: str | None = None
    ) -> ExecutionRecord | None:
        """The succeeded execution of ``target`` in ``graph`` that finished last."""
        found = [
            e
            for e in self._executions.values()
            if (e.graph, e.target, e.status) == (graph, target, "succeeded")
            and e.finished_at is not None
            and (id_prefix is None or e.execution_id.startswith(id_prefix))
        ]
        if not found:
            return None
        return max(found, key=lambda e: (e.finished_at, e.started_at))

    async def get_step_runs(self, execution_id: str) -> list[StepRunRecord]:
        """The execution's step runs, oldest start first."""
        runs = [run for (eid, _), run in self._runs.items() if eid == execution_id]
        return sorted(runs, key=lambda run: (run.started_at, run.step))

    async def get_unfinished_step_runs(self) -> list[StepRunRecord]:
        """Every step run still ``claimed`` or ``running``, oldest start first."""
        runs = [run for run in self._runs.values() if run.finished_at is None]
        return sorted(runs, key=lambda run: (run.started_at, run.execution_id, run.step))

    async def claim_step(
        self, execution_id: str, step: str, *, owner: str, now: datetime | None = None
    ) -> Claim:
        """Claim (execution id, step) unless someone already has."""
        existing = self._runs.get((execution_id, step))
        if existing is not None:
            return Claim(won=False, run=existing)
        run = self._runs[(execution_id, step)] = StepRunRecord(
            execution_id=execution_id,
            step=step,
            status="claimed",
            attempts=0,
            started_at=utc(now),
            finished_at=None,
            duration_ms=None,
            error=None,
            owner=owner,
        )
        return Claim(won=True, run=run)

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
        """Record an attempt starting (after ``ended``); return the attempt count (0: the
        claim is not ours)."""
        if ended is not None:
            await self.step_finished(**ended_fields(ended))
        old = self._runs.get((execution_id, step))
        if claimed and (old is None or old.status != "claimed" or old.owner != owner):
            return 0
        attempts = (old.attempts if old else 0) + 1
        self._runs[(execution_id, step)] = StepRunRecord(
            execution_id=execution_id,
            step=step,
            status="running",
            attempts=attempts,
            started_at=utc(now),
            finished_at=None,
            duration_ms=None,
            error=None,
            owner=owner,
        )
        return attempts

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
        """Record a step's end with its result and attempt (see the Store protocol)."""
        check_finish_status(status)
        check_attempt(attempt, execution_id, step)
        now = utc(now)
        old = self._runs.get((execution_id, step))
        if owner is not None and (old is None or old.owner != owner):
            return False
        if result is not None:
            self._results[result.key] = result
        if attempt is not None:
            self._attempts[(execution_id, step, attempt.attempt)] = attempt
        if old is not None:
            self._runs[(execution_id, step)] = dataclasses.replace(
                old,
                status=status,
                finished_at=now,
                duration_ms=(now - old.started_at).total_seconds() * 1000.0,
                error=error,
            )
        return True

    async def record_cache_hit(
        self, execution_id: str, step: str, *, owner: str, now: datetime | None = None
    ) -> None:
        """Record the step ``cached``: it used a kept result instead of running."""
        now = utc(now)
        old = self._runs.get((execution_id, step))
        self._runs[(execution_id, step)] = StepRunRecord(
            execution_id=execution_id,
            step=step,
            status="cached",
            attempts=old.attempts if old else 0,
            started_at=now,
            finished_at=now,
            duration_ms=0.0,
            error=None,
            owner=owner,
        )

    async def release_claim(
        self, execution_id: str, step: str, *, owner: str, running: bool = False
    ) -> bool:
        """Delete the step's row if it is still ``claimed`` (or ``running``) by ``owner``."""
        old = self._runs.get((execution_id, step))
        statuses = ("claimed", "running") if running else ("claimed",)
        if old is None or old.status not in statuses or old.owner != owner:
            return False
        del self._runs[(execution_id, step)]
        return True

    async def take_over_claim(
        self,
        execution_id: str,
        step: str,
        *,
        old_owner: str,
        owner: str,
        now: datetime | None = None,
    ) -> bool:
        """Move a ``claimed`` row from ``old_owner`` to ``owner``; whether it moved."""
        old = self._runs.get((execution_id, step))
        if old is None or old.status != "claimed" or old.owner != old_owner:
            return False
        self._runs[(execution_id, step)] = dataclasses.replace(
            old, owner=owner, started_at=utc(now)
        )
        return True

    async def settle_step(
        self,
        execution_id: str,
        step: str,
        *,
        result: StoredResult,
        owner: str,
        now: datetime | None = None,
    ) -> None:
        """Store ``result`` and record the step ``succeeded`` without a run of its own."""
        now = utc(now)
        self._results[result.key] = result
        old = self._runs.get((execution_id, step))
        self._runs[(execution_id, step)] = StepRunRecord(
            execution_id=execution_id,
            step=step,
            status="succeeded",
            attempts=old.attempts if old else 0,
            started_at=old.started_at if old else now,
            finished_at=now,
            duration_ms=old.duration_ms if old else None,
            error=None,
            owner=owner,
        )

    async def get_attempts(self, execution_id: str, step: str | None = None) -> list[AttemptRecord]:
        """The execution's attempts, by step (first started first), then by number."""
        found = [
            row
            for (eid, name, _), row in self._attempts.items()
            if eid == execution_id and (step is None or name == step)
        ]
        first: dict[str, datetime] = {}
        for row in found:
            if row.step not in first or row.started_at < first[row.step]:
                first[row.step] = row.started_at
        return sorted(found, key=lambda row: (first[row.step], row.step, row.attempt))

    async def close(self) -> None:
        """Nothing to release."""
