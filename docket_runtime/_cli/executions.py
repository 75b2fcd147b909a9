"""``docketctl executions``: list recorded executions, show one with its steps."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Final, get_args

import click

from .. import _persistence
from ..codec import CorruptPayload, PayloadCodec
from ..plan import GraphPlan
from ..stores import AttemptRecord, ExecutionRecord, ExecutionStatus, StepRunRecord, StoredResult
from ._common import Failure, emit_json, json_option, open_existing, run, url_option
from ._graphs import codec_option, graph_options, load_codec, load_plan
from ._health import ACTIVE, Health, describe_jobs, health_of
from ._render import DASH, duration, fields, iso, relative, span, summary, table, when

_UNITS: Final = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SPAN: Final = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_span(text: str) -> timedelta:
    """``90s``, ``5m``, ``1h30m``, ``2d``: a length of time (ValueError otherwise)."""
    parts = _SPAN.findall(text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise ValueError(f"not a duration: {text!r} (write 90s, 5m, 1h30m, 2d)")
    return timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in parts))


def _span_option(ctx: click.Context, param: click.Parameter, value: str) -> timedelta:
    try:
        return parse_span(value)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None


def _since_option(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """A point in time: a duration back from now (``1h``), or an ISO time (UTC if naive)."""
    if value is None:
        return None
    text = value.strip()
    try:
        return datetime.now(UTC) - parse_span(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is neither a duration (1h, 30m) nor an ISO time"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def health_options(command: Any) -> Any:
    """``--grace`` and ``--stalled-timeout``: what "stuck" means."""
    command = click.option(
        "--stalled-timeout",
        type=float,
        default=5.0,
        show_default=True,
        metavar="SECONDS",
        help="A durable worker with no heartbeat for this long is dead (as run_worker's).",
    )(command)
    return click.option(
        "--grace",
        callback=_span_option,
        default="5m",
        metavar="DURATION",
        show_default=True,
        help="How late a waiting execution's retry may be before it counts as stuck.",
    )(command)


@click.group()
def executions() -> None:
    """Recorded executions: list them, show one."""


@executions.command("list")
@url_option
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(get_args(ExecutionStatus)),
    help="Only executions with this status (repeat for several).",
)
@click.option("--graph", metavar="GRAPH", help="Only executions of this graph (its full name).")
@click.option(
    "--since",
    callback=_since_option,
    metavar="WHEN",
    help="Only executions started since then: 1h, 2d (ago), or an ISO time (UTC if naive).",
)
@click.option(
    "--stuck",
    is_flag=True,
    help="Only executions that will not end on their own: a dead owner, a lost job, "
    "a retry long overdue.",
)
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@health_options
@json_option
def list_(
    url: str,
    statuses: tuple[ExecutionStatus, ...],
    graph: str | None,
    since: datetime | None,
    stuck: bool,
    limit: int,
    grace: timedelta,
    stalled_timeout: float,
    as_json: bool,
) -> None:
    """List executions, the latest started first.

    Executions that have not ended are checked: the note says when one is stuck.
    """
    now = datetime.now(UTC)
    found = run(_list(url, statuses, graph, since, stuck, limit, now, grace, stalled_timeout))
    if as_json:
        emit_json([_execution_json(h) for h in found])
        return
    if not found:
        click.echo("no stuck executions" if stuck else "no executions")
        return
    rows = []
    for health in found:
        row = health.execution
        if row is None:
            cells = [health.execution_id, DASH, "unrecorded", DASH, DASH]
        else:
            cells = [row.execution_id, row.graph, row.status, when(row.started_at), _took(row, now)]
        note = "STUCK: " + "; ".join(health.stuck) if health.stuck else _error(row)
        rows.append([*cells, note])
    click.echo(table(["EXECUTION", "GRAPH", "STATUS", "STARTED", "TIME", "NOTE"], rows))


async def _list(
    url: str,
    statuses: tuple[ExecutionStatus, ...],
    graph: str | None,
    since: datetime | None,
    stuck: bool,
    limit: int,
    now: datetime,
    grace: timedelta,
    stalled_timeout: float,
) -> list[Health]:
    async with open_existing(url) as store:
        if not stuck:
            rows = await store.list_executions(
                statuses=statuses, graph=graph, since=since, limit=limit
            )
            active = [(r.execution_id, r) for r in rows if r.status in ACTIVE]
            checked = {
                h.execution_id: h
                for h in await health_of(
                    store, url, active, now=now, grace=grace, stalled_timeout=stalled_timeout
                )
            }
            return [
                checked.get(r.execution_id) or Health(r.execution_id, r, [], None, {}, [])
                for r in rows
            ]
        # Stuck: every execution that has not ended, and every one with a step in flight.
        wanted = [s for s in ACTIVE if not statuses or s in statuses]
        rows = await store.list_executions(statuses=wanted, graph=graph, since=since)
        candidates: dict[str, ExecutionRecord | None] = {r.execution_id: r for r in rows}
        for step_run in await store.get_unfinished_step_runs():
            if step_run.execution_id in candidates:
                continue
            row = await store.get_execution(step_run.execution_id)
            if _matches(row, step_run, statuses, graph, since):
                candidates[step_run.execution_id] = row
        assessed = await health_of(
            store,
            url,
            list(candidates.items()),
            now=now,
            grace=grace,
            stalled_timeout=stalled_timeout,
        )
        found = [h for h in assessed if h.stuck]
        found.sort(key=lambda h: h.execution_id)
        found.sort(key=_started, reverse=True)
        return found[:limit]


def _matches(
    row: ExecutionRecord | None,
    step_run: StepRunRecord,
    statuses: tuple[ExecutionStatus, ...],
    graph: str | None,
    since: datetime | None,
) -> bool:
    """Whether the execution of an unfinished step run passes the list's filters."""
    if row is None:  # not recorded: only the time can be told
        return not statuses and graph is None and (since is None or step_run.started_at >= since)
    return (
        (not statuses or row.status in statuses)
        and (graph is None or row.graph == graph)
        and (since is None or row.started_at >= since)
    )


def _started(health: Health) -> datetime:
    if health.execution is not None:
        return health.execution.started_at
    return min(run.started_at for run in health.runs)


def _took(row: ExecutionRecord, now: datetime) -> str:
    if row.finished_at is not None:
        return span((row.finished_at - row.started_at).total_seconds())
    if row.status == "waiting" and row.wake_at is not None:
        return f"retry {relative(row.wake_at, now)}"
    return f"{span((now - row.started_at).total_seconds())} so far"


def _error(row: ExecutionRecord | None) -> str:
    return "" if row is None or not row.error else summary(row.error)


# -- show ----------------------------------------------------------------------------------------


@executions.command()
@url_option
@click.argument("execution_id")
@click.option("--attempts", is_flag=True, help="Also every attempt of every step, with its error.")
@click.option("--results", is_flag=True, help="Also the execution's kept results, as JSON.")
@health_options
@partial(graph_options, required=False)
@codec_option
@json_option
def show(
    url: str,
    execution_id: str,
    attempts: bool,
    results: bool,
    grace: timedelta,
    stalled_timeout: float,
    graph_spec: str | None,
    paths: tuple[str, ...],
    codec_spec: str | None,
    as_json: bool,
) -> None:
    """Show an execution: its record, each step run and whether its owner is alive.

    With --results and --graph, each kept result is decoded from its checked
    bytes (with --codec when the store encrypts them) and shown as JSON;
    without --graph, the JSON column is shown as stored (null for a step
    marked sensitive).
    """
    now = datetime.now(UTC)
    codec = load_codec(codec_spec, paths)
    health, tries, kept = run(
        _show(url, execution_id, now, grace, stalled_timeout, (graph_spec, paths), codec)
    )
    if as_json:
        document: dict[str, Any] = {
            "execution": _execution_json(health),
            "jobs": None if health.jobs is None else [_job_json(j) for j in health.jobs],
            "steps": [_step_json(r, health.owners[r.owner]) for r in health.runs],
        }
        if attempts:
            document["attempts"] = [_attempt_json(a) for a in tries]
        if results:
            document["results"] = [_result_json(r) for r in kept]
        emit_json(document)
        return
    click.echo(_describe(health, now))
    if health.runs:
        click.echo("")
        click.echo(_steps_table(health))
    if attempts:
        click.echo("")
        click.echo(_attempts_table(tries) if tries else "no attempts recorded")
    if results:
        click.echo("")
        click.echo(_results_text(kept) if kept else "no kept results")


async def _show(
    url: str,
    execution_id: str,
    now: datetime,
    grace: timedelta,
    stalled_timeout: float,
    graph: tuple[str | None, tuple[str, ...]],
    codec: PayloadCodec | None,
) -> tuple[Health, list[AttemptRecord], list[Kept]]:
    async with open_existing(url, codec=codec) as store:
        row = await store.get_execution(execution_id)
        (health,) = await health_of(
            store,
            url,
            [(execution_id, row)],
            now=now,
            grace=grace,
            stalled_timeout=stalled_timeout,
        )
        tries = await store.get_attempts(execution_id)
        kept = await store.get_execution_results(execution_id)
        if row is None and not health.runs and not tries and not kept:
            raise Failure(f"no execution {execution_id!r} in {store.url}")
        spec, paths = graph
        plan = None if spec is None else load_plan(spec, paths, None if row is None else row.graph)
        return health, tries, [_kept(r, plan, codec) for r in kept]


@dataclass(frozen=True, slots=True)
class Kept:
    """A kept result and what to show of it: its message as a JSON value, or why not."""

    row: StoredResult
    output: Any
    damaged: str | None = None


def _kept(row: StoredResult, plan: GraphPlan | None, codec: PayloadCodec | None) -> Kept:
    cls = None if plan is None else plan.types.get(row.output_type)
    if cls is None:
        return Kept(row, json.loads(row.output_json))
    try:
        message = _persistence.read(row, cls, codec)
    except CorruptPayload as err:
        return Kept(row, None, str(err))
    return Kept(row, json.loads(_persistence.render(message)))


def _describe(health: Health, now: datetime) -> str:
    row = health.execution
    if row is None:
        status = "not recorded (its steps were, below)"
        pairs = [("execution", health.execution_id), ("status", status)]
    else:
        status = row.status + (f" (stuck: {'; '.join(health.stuck)})" if health.stuck else "")
        pairs = [
            ("execution", row.execution_id),
            ("graph", row.graph),
            ("target", row.target),
            ("status", status),
            ("started", f"{when(row.started_at)} ({relative(row.started_at, now)})"),
            ("finished", when(row.finished_at)),
        ]
        if row.wake_at is not None:
            pairs.append(("retry at", f"{when(row.wake_at)} ({relative(row.wake_at, now)})"))
        pairs.append(("error", row.error or DASH))
        if row.inputs is None:
            pairs.append(("run", "in process"))
        elif health.jobs is None:
            pairs.append(("run", "by durable workers (the queue cannot be seen from here)"))
        else:
            pairs.append(("run", "by durable workers; jobs: " + describe_jobs(health.jobs, now)))
    if row is None and health.stuck:
        pairs.append(("stuck", "; ".join(health.stuck)))
    return fields(pairs)


def _alive(value: bool | None) -> str:
    return "?" if value is None else "yes" if value else "no"


def _steps_table(health: Health) -> str:
    rows = [
        [
            r.step,
            r.status,
            str(r.attempts),
            when(r.started_at, precise=True),
            duration(r.duration_ms),
            r.owner,
            _alive(health.owners[r.owner]),
            summary(r.error) if r.error else "",
        ]
        for r in health.runs
    ]
    headers = ["STEP", "STATUS", "ATTEMPTS", "STARTED", "TOOK", "OWNER", "ALIVE", "ERROR"]
    return table(headers, rows)


def _attempts_table(tries: list[AttemptRecord]) -> str:
    rows = [
        [
            a.step,
            str(a.attempt),
            a.status,
            when(a.started_at, precise=True),
            duration(a.duration_ms),
            a.owner,
            f"{a.error_type}: {a.error_message}" if a.error_type else "",
        ]
        for a in tries
    ]
    return table(["STEP", "ATTEMPT", "STATUS", "STARTED", "TOOK", "OWNER", "ERROR"], rows)


def _results_text(kept: list[Kept]) -> str:
    blocks = []
    for k in kept:
        r = k.row
        expiry = "" if r.expires_at is None else f", expires {when(r.expires_at)}"
        head = f"{r.step}: {r.output_type} (kept {when(r.created_at)}{expiry})"
        if k.damaged is not None:
            body = f"damaged: {k.damaged}"
        elif k.output is None:
            body = "sensitive: not rendered (give --graph, and --codec if encrypted, to decode)"
        else:
            body = json.dumps(k.output, sort_keys=True)
        blocks.append(f"{head}\n  {body}")
    return "\n".join(blocks)


# -- JSON ----------------------------------------------------------------------------------------


def _execution_json(health: Health) -> dict[str, Any]:
    row = health.execution
    return {
        "execution_id": health.execution_id,
        "recorded": row is not None,
        "graph": None if row is None else row.graph,
        "target": None if row is None else row.target,
        "status": None if row is None else row.status,
        "started_at": None if row is None else iso(row.started_at),
        "finished_at": None if row is None else iso(row.finished_at),
        "wake_at": None if row is None else iso(row.wake_at),
        "error": None if row is None else row.error,
        "durable": health.durable,
        "stuck": health.stuck,
    }


def _job_json(job: Any) -> dict[str, Any]:
    return {
        "id": job.id,
        "status": job.status,
        "queue": job.queue,
        "scheduled_at": iso(job.scheduled_at),
        "worker_id": job.worker_id,
        "stalled": job.stalled,
    }


def _step_json(r: StepRunRecord, alive: bool | None) -> dict[str, Any]:
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


def _attempt_json(a: AttemptRecord) -> dict[str, Any]:
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


def _result_json(k: Kept) -> dict[str, Any]:
    r = k.row
    return {
        "step": r.step,
        "version": r.version,
        "output_type": r.output_type,
        "output": k.output,
        "damaged": k.damaged,
        "created_at": iso(r.created_at),
        "expires_at": iso(r.expires_at),
    }
