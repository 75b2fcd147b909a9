"""Commands that change one execution: ``rerun-from``, ``settle``, ``cancel``, ``retry``.

``rerun-from`` and ``settle`` refuse to touch an execution that something is
known to be running right now (a live owner of one of its steps, or a
durable worker with a heartbeat), unless ``--force``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import click
from google.protobuf import json_format
from google.protobuf.message import Message

from .. import _amend, _deps
from ..codec import PayloadCodec
from ..plan import GraphPlan
from ..stores import Store, default_owner
from ._common import Failure, emit_json, json_option, open_existing, run, url_option
from ._graphs import codec_option, graph_options, load_codec, load_plan
from ._health import Health, health_of, queue_app

_FORCE = click.option(
    "--force", is_flag=True, help="Even if something is running the execution right now."
)


async def _health(store: Store, url: str, execution_id: str) -> Health:
    row = await store.get_execution(execution_id)
    (health,) = await health_of(
        store,
        url,
        [(execution_id, row)],
        now=datetime.now(UTC),
        grace=timedelta(minutes=5),
        stalled_timeout=30.0,
    )
    return health


def _refuse_if_running(health: Health, steps: list[str], force: bool) -> None:
    """Stop unless nothing is known to run the execution (or ``force``)."""
    if force or not health.alive:
        return
    busy = [r for r in health.runs if not r.finished and health.owners[r.owner]]
    who = f"step {busy[0].step} runs in {busy[0].owner}" if busy else "a durable worker runs it"
    raise Failure(
        f"execution {health.execution_id!r} is running ({who}): changing {', '.join(steps)} "
        "now would race with it; wait for it to end, or give --force"
    )


# -- rerun-from ----------------------------------------------------------------------------------


@click.command("rerun-from")
@url_option
@click.argument("execution_id")
@click.argument("step")
@graph_options
@_FORCE
@json_option
def rerun_from(
    url: str,
    execution_id: str,
    step: str,
    graph_spec: str,
    paths: tuple[str, ...],
    force: bool,
    as_json: bool,
) -> None:
    """Forget STEP and every step after it in an execution, so that they run again.

    Their checkpoints, step runs and attempts are deleted (an AT_MOST_ONCE
    claim is released): the next run with this execution id computes them
    again, from the checkpoints of the steps before. GLOBAL results are
    shared by executions and stay. The steps after STEP come from the graph's
    plan: --graph names the generated module.
    """
    forgotten, deleted, durable = run(
        _rerun_from(url, execution_id, step, graph_spec, paths, force)
    )
    if as_json:
        emit_json(
            {"execution_id": execution_id, "forgotten": forgotten, "results_deleted": deleted}
        )
        return
    click.echo(
        f"forgot {', '.join(forgotten)} of execution {execution_id} "
        f"({deleted} kept result(s) deleted)"
    )
    if durable:
        click.echo(f"run it again: docketctl retry {execution_id} (if it failed or was cancelled)")
    else:
        click.echo("the next run with this execution id computes them again")


async def _rerun_from(
    url: str, execution_id: str, step: str, spec: str, paths: tuple[str, ...], force: bool
) -> tuple[list[str], int, bool]:
    async with open_existing(url) as store:
        health = await _health(store, url, execution_id)
        row = health.execution
        if row is None and not health.runs and not await store.get_execution_results(execution_id):
            raise Failure(f"no execution {execution_id!r} in {store.url}")
        plan = load_plan(spec, paths, None if row is None else row.graph)
        _check_step(plan, step)
        _refuse_if_running(health, _deps.downstream(_deps.needs_of(plan.steps), (step,)), force)
        forgotten, deleted = await _amend.rerun_from(plan, store, step, execution_id)
        return forgotten, deleted, health.durable


def _check_step(plan: GraphPlan, step: str) -> None:
    if step not in {s.name for s in plan.steps}:
        raise Failure(
            f"graph {plan.name} has no step {step!r}; "
            f"its steps: {', '.join(s.name for s in plan.steps)}"
        )


# -- settle --------------------------------------------------------------------------------------


@click.command()
@url_option
@click.argument("execution_id")
@click.argument("step")
@click.option(
    "--result-json",
    metavar="JSON",
    help="The step's result as it turned out, as JSON of its output message "
    "(proto field names or their JSON names).",
)
@click.option("--release", is_flag=True, help="It did not happen: the next run runs the step.")
@graph_options
@codec_option
@_FORCE
@json_option
def settle(
    url: str,
    execution_id: str,
    step: str,
    result_json: str | None,
    release: bool,
    graph_spec: str,
    paths: tuple[str, ...],
    codec_spec: str | None,
    force: bool,
    as_json: bool,
) -> None:
    """Decide an AT_MOST_ONCE step whose claim has no result, once its effect is checked.

    With --result-json, the message becomes the step's checkpoint and the
    next run with this execution id continues from it; with --release, the
    claim is dropped and the next run runs the step again. The output
    message type comes from the graph: --graph names the generated module.
    A store whose graphs write through a payload codec needs it here too
    (--codec), or the result is kept without encryption.
    """
    if (result_json is None) == (not release):
        raise click.UsageError("give --result-json JSON or --release, one of them")
    codec = load_codec(codec_spec, paths)
    settled = run(_settle(url, execution_id, step, result_json, (graph_spec, paths), codec, force))
    if as_json:
        emit_json(
            {
                "execution_id": execution_id,
                "step": step,
                "settled": "released" if settled is None else "result",
                "result": settled,
            }
        )
        return
    if settled is None:
        click.echo(
            f"released {step} of execution {execution_id}: the next run with this id runs it"
        )
    else:
        click.echo(
            f"settled {step} of execution {execution_id} with its result: "
            "the next run with this id continues from it"
        )


async def _settle(
    url: str,
    execution_id: str,
    step: str,
    result_json: str | None,
    graph: tuple[str, tuple[str, ...]],
    codec: PayloadCodec | None,
    force: bool,
) -> dict[str, Any] | None:
    spec, paths = graph
    async with open_existing(url, codec=codec) as store:
        health = await _health(store, url, execution_id)
        row = health.execution
        if row is None and not health.runs:
            raise Failure(f"no execution {execution_id!r} in {store.url}")
        plan = load_plan(spec, paths, None if row is None else row.graph)
        _check_step(plan, step)
        result = None if result_json is None else _parse(plan, step, result_json)
        _refuse_if_running(health, [step], force)
        owner = f"settled:docketctl:{default_owner()}"
        try:
            await _amend.settle(
                plan,
                store,
                step,
                execution_id,
                result,
                release=result is None,
                owner=owner,
                rerun=f"docketctl rerun-from {{execution_id}} {{step}} --graph {spec}",
            )
        except ValueError as err:
            raise Failure(str(err)) from err
        if result is None:
            return None
        return json_format.MessageToDict(result, preserving_proto_field_name=True)


def _parse(plan: GraphPlan, step: str, text: str) -> Message:
    cls = plan.types[plan.step(step).output]
    try:
        return json_format.Parse(text, cls())
    except json_format.ParseError as err:
        raise click.BadParameter(
            f"not a {cls.DESCRIPTOR.full_name} in JSON: {err}", param_hint="--result-json"
        ) from err


# -- cancel --------------------------------------------------------------------------------------


@click.command()
@url_option
@click.argument("execution_id")
@json_option
def cancel(url: str, execution_id: str, as_json: bool) -> None:
    """Cancel an execution that has not ended.

    A durable one (enqueued for workers) is cancelled through the queue: a
    pending job is cancelled, a running one aborted (its steps in flight are
    cancelled). One run in process is only marked cancelled in the database,
    if it is still running: a process cannot be stopped from here (if it is
    alive, it goes on and records how it ends).
    """
    how, owners = run(_cancel(url, execution_id))
    if as_json:
        emit_json({"execution_id": execution_id, "status": "cancelled", "through": how})
        return
    if how == "queue":
        click.echo(f"cancelled execution {execution_id} (its jobs cancelled or aborted)")
        return
    click.echo(f"marked execution {execution_id} cancelled in the database only")
    if how == "store":
        who = f" ({', '.join(owners)})" if owners else ""
        click.echo(
            f"it ran in process{who}: docketctl cannot stop a process; if it is alive, it "
            "goes on and records how it ends"
        )
    else:
        click.echo("there is no queue here: a job that starts later finds it cancelled")


async def _cancel(url: str, execution_id: str) -> tuple[str, list[str]]:
    async with open_existing(url) as store:
        row = await store.get_execution(execution_id)
        if row is None:
            raise Failure(f"no execution {execution_id!r} in {store.url}")
        if row.status in ("succeeded", "failed", "cancelled"):
            raise Failure(f"execution {execution_id!r} already {row.status}: nothing to cancel")
        if row.inputs is not None:
            async with queue_app(url) as app:
                if app is not None:
                    from ..durable import cancel as cancel_durable

                    if not await cancel_durable(app, store, execution_id):
                        now = await store.get_execution(execution_id)
                        ended = "ended" if now is None else now.status
                        raise Failure(f"execution {execution_id!r} {ended} meanwhile")
                    return "queue", []
            how = "store-no-queue"
        else:
            how = "store"
        cancelled = await store.cancel_execution(execution_id)
        if cancelled is None or cancelled.status != "cancelled":
            ended = "ended" if cancelled is None else cancelled.status
            raise Failure(f"execution {execution_id!r} {ended} meanwhile")
        owners = sorted({r.owner for r in await store.get_step_runs(execution_id)})
        return how, owners


# -- retry ---------------------------------------------------------------------------------------


@click.command()
@url_option
@click.argument("execution_id")
@click.option("--queue", metavar="QUEUE", help="The queue (default: that of its last job).")
@json_option
def retry(url: str, execution_id: str, queue: str | None, as_json: bool) -> None:
    """Enqueue a failed or cancelled durable execution again, from its stored inputs.

    Its checkpoints stay: the resume computes only what is missing. A step
    that ran out of attempts gets one more (rerun-from gives it all back). A
    queued or waiting execution that lost its job gets a new one.
    """
    job_id, queue_name = run(_retry(url, execution_id, queue))
    if as_json:
        emit_json({"execution_id": execution_id, "job_id": job_id, "queue": queue_name})
        return
    if job_id is None:
        click.echo(f"execution {execution_id} has a job pending already: nothing to do")
    else:
        click.echo(f"enqueued execution {execution_id} again: job #{job_id} on queue {queue_name}")


async def _retry(url: str, execution_id: str, queue: str | None) -> tuple[int | None, str | None]:
    async with open_existing(url) as store:
        row = await store.get_execution(execution_id)
        if row is None:
            raise Failure(f"no execution {execution_id!r} in {store.url}")
        if row.inputs is None:
            raise Failure(
                f"execution {execution_id!r} ran in process, not enqueued: run it again from "
                "your code with the same execution_id"
            )
        async with queue_app(url, required=True) as app:
            assert app is not None
            from ..durable import lock_key, requeue

            try:
                job_id = await requeue(app, store, execution_id, queue=queue)
            except (LookupError, ValueError) as err:
                raise Failure(str(err).strip("'\"")) from err
            if job_id is None:
                return None, None
            jobs = await app.job_manager.list_jobs_async(id=job_id)
            found = [j.queue for j in jobs if j.lock == lock_key(execution_id)]
            return job_id, found[0] if found else queue
