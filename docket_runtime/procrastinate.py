"""Durable execution on Procrastinate: resume by id, durable retries, crash recovery, cron.

Needs ``pip install 'docket-proto[procrastinate]'``. Durable work runs on
Procrastinate, a Postgres job queue; Docket adds what the queue does not know:
that a job is an execution with steps, and which results are precious. One
generic task, ``docket:resume_execution(execution_id)``, resumes an execution:
it loads the execution's row, finds its graph in a :class:`Registry`, reads
the checkpoints from the store in one query, and computes what is missing.
Job arguments carry the execution id only; inputs and checkpoints stay in
Docket's tables.

Wiring (the app, the store and the registry are built the same way in the
service that enqueues and in the worker)::

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=URL))
    store = await open_store(URL)
    registry = Registry(store)
    orders = registry.bind(orders_docket.Orders, OrderSteps())
    install(app, registry)

    async with app.open_async():            # in the service
        await enqueue(app, orders, Confirmation, {"order": order}, execution_id="order-42")

    async with app.open_async():            # in a worker process
        await run_worker(app, registry)

What the worker does with an execution:

- a step that fails and may be retried, if it is ``durable: true`` (or every
  step, for a graph added with ``durable_all=True``), ends the job instead of
  sleeping: the execution is recorded ``waiting`` with ``wake_at``, and a new
  resume job is scheduled at ``wake_at``. Attempts are counted in the store
  (``docket_step_runs.attempts``), so ``max_attempts`` spans jobs;
- a step that calls ``docket_runtime.context().hand_off()`` ends the job once
  its result is checkpointed; a new job continues at once;
- a failure that is not retried marks the execution ``failed``; the job itself
  ends normally. Procrastinate's own retry is never used (``retry=False``: a
  retry of a job that re-deferred itself under its queueing lock would hit the
  queue's unique index and stay ``doing`` forever);
- a worker killed mid-execution leaves its job ``doing``: :func:`run_worker`
  sweeps such stalled jobs (:func:`sweep_stalled`) back to ``todo``, and the
  resume computes only what was not checkpointed; an ``AT_MOST_ONCE`` step
  that had finished is not run again.

At most one resume job per execution is queued (Procrastinate's queueing lock
``docket:<execution id>``) and at most one runs (the lock of the same name).
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypedDict, TypeVar, cast

try:
    import procrastinate
    import psycopg
    from procrastinate import exceptions as queue_errors
    from procrastinate.app import WorkerOptions
    from procrastinate.job_context import AbortReason, JobContext
    from procrastinate.jobs import Status
    from procrastinate.schema import SchemaManager
except ImportError as err:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "docket_runtime.procrastinate needs Procrastinate and psycopg: "
        "pip install 'docket-proto[procrastinate]'"
    ) from err

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from typing_extensions import Unpack

from .context import _durable
from .errors import RetryLater, Suspended
from .graph import Graph
from .plan import CacheScope, Delivery
from .stores.base import ExecutionRecord, Store, StoreError
from .stores.postgres import PostgresStore

__all__ = [
    "DEFAULT_QUEUE",
    "RESUME_TASK",
    "SCHEDULE_TASK",
    "Registry",
    "apply_queue_schema",
    "blueprint",
    "cancel",
    "enqueue",
    "install",
    "lock_key",
    "make_blueprint",
    "run_worker",
    "schedule",
    "sweep_stalled",
]

_log = logging.getLogger("docket.procrastinate")

M = TypeVar("M", bound=Message)
G = TypeVar("G", bound=Graph[Any])

NAMESPACE: Final = "docket"
DEFAULT_QUEUE: Final = "docket"
"""The queue Docket's jobs go to unless told otherwise."""
RESUME_TASK: Final = f"{NAMESPACE}:resume_execution"
"""The name of the generic resume task once installed on an app."""
SCHEDULE_TASK: Final = f"{NAMESPACE}:run_schedule"
"""The name of the task that starts one run of a schedule."""
CONTEXT_KEY: Final = "docket_registry"
"""The ``additional_context`` key under which :func:`run_worker` passes the registry."""

STORE_RETRY_DELAY: Final = 5.0
"""Seconds before a resume is tried again after the store was unreachable."""

_ENDED: Final = frozenset({"succeeded", "failed", "cancelled"})
_SCHEMA_LOCK: Final = int.from_bytes(b"dkqueue", "big")

_registries: weakref.WeakKeyDictionary[procrastinate.App, Registry] = weakref.WeakKeyDictionary()


def lock_key(execution_id: str) -> str:
    """The queueing lock and lock of an execution's resume jobs: ``docket:<execution id>``."""
    return f"{NAMESPACE}:{execution_id}"


# -- the registry ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Entry:
    graph: Graph[Any]
    durable_all: bool


@dataclass(frozen=True, slots=True)
class _Schedule:
    name: str
    graph: Graph[Any]
    target: type[Message]
    inputs: Callable[[Any], Mapping[str, Message | None] | Awaitable[Mapping[str, Message | None]]]
    keeps_output: bool


class Registry:
    """The graphs a worker can resume, by full name, all bound to one store.

    ``store`` holds the executions, checkpoints and step runs; in production
    it is a Postgres store, in the database that holds Procrastinate's tables
    (then ``enqueue(..., connection=...)`` records an execution and defers its
    job in one transaction). Every graph, and every graph its ``subgraph``
    steps run, must be bound to this store with ``record=True`` (a durable run
    always records: attempts are counted in ``docket_step_runs``).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._entries: dict[str, _Entry] = {}
        self._schedules: dict[str, _Schedule] = {}

    def add(self, graph: G, *, durable_all: bool = False) -> G:
        """Register ``graph`` (a bound graph) under its full name; returns it.

        ``durable_all=True`` puts every run of the graph in durable mode: each
        retryable failure of any step (not only ``durable: true`` ones) is
        retried by a scheduled job rather than a sleep in the worker.
        """
        _check_bound(graph, self.store, path=graph.plan.name)
        name = graph.plan.name
        old = self._entries.get(name)
        if old is not None and old.graph is not graph:
            raise ValueError(f"graph {name} is already registered (with another bound instance)")
        self._entries[name] = _Entry(graph, durable_all)
        return graph

    def bind(
        self, graph_cls: type[G], steps: Any, *, durable_all: bool = False, **options: Any
    ) -> G:
        """Bind ``graph_cls`` to ``steps`` with this registry's store and ``record=True``,
        then :meth:`add` it. ``options`` are the other ``Graph`` arguments."""
        graph = graph_cls(steps, store=self.store, record=True, **options)
        return self.add(graph, durable_all=durable_all)

    def get(self, name: str) -> Graph[Any] | None:
        """The graph registered under the full name ``name``, or ``None``."""
        entry = self._entries.get(name)
        return None if entry is None else entry.graph

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    @property
    def names(self) -> list[str]:
        """The full names of the registered graphs, sorted."""
        return sorted(self._entries)


def _check_bound(graph: Graph[Any], store: Store, *, path: str) -> None:
    if graph.store is not store or not graph.record:
        raise ValueError(
            f"graph {path} must be bound with the registry's store and record=True "
            "(Graph(steps, store=registry.store, record=True), or registry.bind(...))"
        )
    for name, child in graph.subgraphs.items():
        _check_bound(child, store, path=f"{path} -> {name}")


# -- the tasks ------------------------------------------------------------------------------


def make_blueprint() -> procrastinate.Blueprint:
    """A new blueprint holding Docket's two tasks (``resume_execution``, ``run_schedule``).

    Register it with ``app.add_tasks_from(bp, namespace="docket")``, or let
    :func:`install` do it. Both tasks go to the ``docket`` queue by default,
    never retry on their own (Docket owns retries), and receive the job
    context.
    """
    bp = procrastinate.Blueprint()

    @bp.task(name="resume_execution", queue=DEFAULT_QUEUE, retry=False, pass_context=True)
    async def resume_execution(context: JobContext, execution_id: str) -> str:
        """Resume execution ``execution_id``: compute what its checkpoints lack."""
        return await _resume(context, execution_id)

    @bp.task(name="run_schedule", queue=DEFAULT_QUEUE, retry=False, pass_context=True)
    async def run_schedule(context: JobContext, timestamp: int, schedule: str) -> str:
        """Start the run of schedule ``schedule`` due at ``timestamp`` (Unix seconds)."""
        return await _tick(context, timestamp, schedule)

    return bp


blueprint: Final = make_blueprint()
"""Docket's tasks, for ``app.add_tasks_from(blueprint, namespace="docket")``.

A blueprint's tasks can be added to one app only; :func:`install` uses a new
one each time, so prefer it when a process has several apps (tests)."""


def install(app: procrastinate.App, registry: Registry | None = None) -> None:
    """Add Docket's tasks to ``app`` (namespace ``docket``) and bind ``registry`` to it.

    With a registry bound here, any worker of ``app`` can resume executions,
    even one started with ``app.run_worker_async`` rather than
    :func:`run_worker`. Installing twice only rebinds the registry.
    """
    if RESUME_TASK not in app.tasks:
        app.add_tasks_from(make_blueprint(), namespace=NAMESPACE)
    if registry is not None:
        _registries[app] = registry


def _registry_for(context: JobContext) -> Registry:
    found = context.additional_context.get(CONTEXT_KEY) or _registries.get(context.app)
    if not isinstance(found, Registry):
        raise RuntimeError(
            "no Docket registry in this worker: start it with "
            "docket_runtime.procrastinate.run_worker(app, registry), or install(app, registry)"
        )
    return found


async def _resume(context: JobContext, execution_id: str) -> str:
    """The body of ``resume_execution``; returns what happened (Procrastinate logs it)."""
    registry = _registry_for(context)
    store = registry.store
    row = await store.get_execution(execution_id)
    if row is None:
        _log.warning("no execution %r to resume (never enqueued, or purged)", execution_id)
        return "no such execution"
    if row.status in _ENDED:
        return f"already {row.status}"
    entry = registry._entries.get(row.graph)
    if entry is None:
        error = (
            f"graph {row.graph} is not in this worker's registry (it has "
            f"{', '.join(registry.names) or 'none'}); enqueue again once a worker has it"
        )
        await store.finish_execution(execution_id, status="failed", error=error)
        _log.error("execution %s failed: %s", execution_id, error)
        return f"failed: {error}"
    graph = entry.graph
    try:
        target, inputs = _decode_inputs(graph, row)
    except (ValueError, TypeError, KeyError, DecodeError) as err:
        error = f"cannot read the inputs of execution {execution_id!r}: {err}"
        await store.finish_execution(execution_id, status="failed", error=error)
        _log.error("%s", error)
        return f"failed: {error}"
    job = context.job
    token = _durable.set("all" if entry.durable_all else "steps")
    try:
        await graph.run_target(target, inputs, execution_id=execution_id)
    except Suspended as signal:
        return await _continue(context.app, store, row, signal, job.queue, job.priority)
    except asyncio.CancelledError:
        if context.abort_reason() is not AbortReason.USER_REQUEST:
            # The worker is shutting down (or was cancelled): nothing is lost, the
            # checkpoints stay; the execution goes back to the queue.
            _log.info("worker stopping: execution %s goes back to the queue", execution_id)
            await _requeue(context.app, store, row, job.queue, job.priority)
        raise
    except StoreError as err:
        # The store failed mid-run: what was recorded is unknown. Try again later.
        _log.warning(
            "execution %s: store error (%s); resuming in %gs", execution_id, err, STORE_RETRY_DELAY
        )
        await _defer(
            context.app,
            execution_id,
            schedule_at=datetime.now(UTC) + timedelta(seconds=STORE_RETRY_DELAY),
            queue=job.queue,
            priority=job.priority,
        )
        return f"store error, resuming later: {err}"
    except Exception as err:
        # Recorded 'failed' by the run itself; the job is done.
        _log.warning("execution %s failed: %s", execution_id, err)
        return f"failed: {err}"
    finally:
        _durable.reset(token)
    return "succeeded"


async def _continue(
    app: procrastinate.App,
    store: Store,
    row: ExecutionRecord,
    signal: Suspended,
    queue: str | None,
    priority: int | None,
) -> str:
    """After a durable retry or a hand-off: defer the job that goes on (unless cancelled)."""
    now = await store.get_execution(row.execution_id)
    if now is None or now.status == "cancelled":
        return "cancelled"
    at = signal.wake_at if isinstance(signal, RetryLater) else None
    await _defer(app, row.execution_id, schedule_at=at, queue=queue, priority=priority)
    return str(signal)


async def _requeue(
    app: procrastinate.App,
    store: Store,
    row: ExecutionRecord,
    queue: str | None,
    priority: int | None,
) -> None:
    # The run recorded itself 'cancelled' on its way out; queue_execution puts back
    # a cancelled execution with the same graph, target and inputs.
    assert row.inputs is not None
    await store.queue_execution(
        row.execution_id, graph=row.graph, target=row.target, inputs=row.inputs
    )
    await _defer(app, row.execution_id, queue=queue, priority=priority)


async def _defer(
    app: procrastinate.App,
    execution_id: str,
    *,
    schedule_at: datetime | None = None,
    queue: str | None = None,
    priority: int | None = None,
    connection: Any = None,
) -> int | None:
    """Defer a resume job of ``execution_id``; ``None`` if one is already queued."""
    key = lock_key(execution_id)
    try:
        deferrer = app.configure_task(
            RESUME_TASK,
            allow_unknown=False,
            lock=key,
            queueing_lock=key,
            schedule_at=schedule_at,
            queue=queue,
            priority=priority,
            connection=connection,
        )
    except queue_errors.TaskNotFound:
        raise RuntimeError(
            "Docket's tasks are not installed on this app: call "
            "docket_runtime.procrastinate.install(app, registry) first"
        ) from None
    try:
        if connection is not None:
            # A savepoint: a queueing-lock conflict must not abort the caller's transaction.
            async with connection.transaction():
                return await deferrer.defer_async(execution_id=execution_id)
        return await deferrer.defer_async(execution_id=execution_id)
    except queue_errors.AlreadyEnqueued:
        return None


# -- enqueue and cancel ---------------------------------------------------------------------


async def enqueue(
    app: procrastinate.App,
    graph: Graph[Any],
    target: type[Message],
    inputs: Mapping[str, Message | None],
    *,
    execution_id: str,
    connection: psycopg.AsyncConnection[Any] | None = None,
    queue: str | None = None,
    priority: int | None = None,
) -> int | None:
    """Record execution ``execution_id`` of ``target`` and defer the job that runs it.

    ``graph`` is a bound graph (the one a worker's registry has under the
    same name); ``inputs`` are the graph inputs by keyword, as for
    ``run_target``, and are checked here. The execution id is an idempotency
    key: enqueueing an id again does nothing while it is queued, running or
    waiting, or once it succeeded; one that failed or was cancelled is queued
    again (its checkpoints kept; the steps that ran out of attempts get one
    more). The same id with another graph, target or inputs is a
    ``ValueError``.

    ``connection`` (an open psycopg connection to the database of the store
    and the queue) joins the caller's transaction: the execution row and its
    job are written there and appear when the caller commits.

    Returns the id of the job deferred, or ``None`` when none was needed.
    """
    store = graph.store
    if store is None or not graph.record:
        raise ValueError(
            f"graph {graph.plan.name} must be bound with a store and record=True to be enqueued"
        )
    text = encode_inputs(graph, target, inputs)
    target_name = target.DESCRIPTOR.full_name
    if connection is not None:
        if not isinstance(store, PostgresStore):
            raise TypeError(
                "connection= needs the graph bound to a Postgres store in the same database"
            )
        row = await store.queue_execution(
            execution_id,
            graph=graph.plan.name,
            target=target_name,
            inputs=text,
            connection=connection,
        )
    else:
        row = await store.queue_execution(
            execution_id, graph=graph.plan.name, target=target_name, inputs=text
        )
    if (row.graph, row.target) != (graph.plan.name, target_name) or not _same_inputs(
        row.inputs, text
    ):
        raise ValueError(
            f"execution id {execution_id!r} already names another execution "
            f"({row.graph} -> {row.target}, with other inputs); use a new id"
        )
    if row.status != "queued":
        return None
    return await _defer(app, execution_id, queue=queue, priority=priority, connection=connection)


async def cancel(app: procrastinate.App, store: Store, execution_id: str) -> bool:
    """Cancel execution ``execution_id``; ``True`` if it is cancelled now.

    A queued or waiting execution is marked ``cancelled`` and its pending job
    cancelled; a running one is marked too, and its job aborted: the worker
    cancels the steps in flight (asyncio cancellation), and no new step
    starts. A job that starts later finds the execution cancelled and does
    nothing. ``False`` when the execution already succeeded or failed, or
    does not exist. Enqueueing the same id again resumes it from its
    checkpoints.
    """
    row = await store.cancel_execution(execution_id)
    if row is None or row.status != "cancelled":
        return False
    key = lock_key(execution_id)
    manager = app.job_manager
    for job in await manager.list_jobs_async(queueing_lock=key, status="todo"):
        assert job.id is not None
        await manager.cancel_job_by_id_async(job.id)
    # Listed after the pending ones: a job that started in between is caught here.
    for job in await manager.list_jobs_async(lock=key, status="doing"):
        assert job.id is not None
        await manager.cancel_job_by_id_async(job.id, abort=True)
    return True


# -- inputs ---------------------------------------------------------------------------------


def encode_inputs(
    graph: Graph[Any], target: type[Message], inputs: Mapping[str, Message | None]
) -> str:
    """The JSON text kept in ``docket_executions.inputs``, after checking ``inputs``.

    One entry per input given: ``{"type": full name, "proto": base64 of the
    deterministic proto bytes, "json": the message as JSON (for SQL)}``.
    """
    graph.check_inputs(target, inputs)
    encoded = {
        keyword: {
            "type": value.DESCRIPTOR.full_name,
            "proto": base64.b64encode(value.SerializeToString(deterministic=True)).decode(),
            "json": json_format.MessageToDict(value, preserving_proto_field_name=True),
        }
        for keyword, value in inputs.items()
        if value is not None
    }
    return json.dumps(encoded, sort_keys=True, separators=(",", ":"))


def _same_inputs(stored: str | None, text: str) -> bool:
    """Whether two inputs texts hold the same JSON value (as the store compares them)."""
    return stored is not None and bool(json.loads(stored) == json.loads(text))


def _decode_inputs(
    graph: Graph[Any], row: ExecutionRecord
) -> tuple[type[Message], dict[str, Message | None]]:
    target = graph.plan.types[row.target]
    if row.inputs is None:
        raise ValueError("it was not enqueued (no inputs recorded)")
    inputs: dict[str, Message | None] = {}
    for keyword, entry in json.loads(row.inputs).items():
        cls = graph.plan.types[entry["type"]]
        inputs[keyword] = cls.FromString(base64.b64decode(entry["proto"]))
    return target, inputs


# -- cron -----------------------------------------------------------------------------------


def schedule(
    app: procrastinate.App,
    registry: Registry,
    graph: Graph[Any],
    target: type[M],
    *,
    cron: str,
    inputs: Callable[
        [M | None], Mapping[str, Message | None] | Awaitable[Mapping[str, Message | None]]
    ],
    name: str | None = None,
    queue: str | None = None,
) -> str:
    """Run ``target`` of ``graph`` on a cron schedule, through Procrastinate's periodic tasks.

    ``cron`` has 5 fields, or 6 with seconds last (``"*/10 * * * * *"``).
    Each tick starts a new execution, ``<name>@<UTC time of the tick>``
    (``name`` defaults to ``<graph>:<target>``), enqueued like any other.
    ``inputs(previous)`` builds its inputs (sync or async); ``previous`` is the
    output of the schedule's last *succeeded* run, or ``None`` for the first.
    The previous output can be read only if the step producing ``target``
    keeps its result per execution (``cache: { scope: WORKFLOW }``); otherwise
    ``previous`` is always ``None`` (a warning says so here).

    Call it where the worker is set up (a tick runs in a worker, which needs
    the ``inputs`` function), after :func:`install`, before the worker starts.
    A tick fires only while some worker runs; Procrastinate defers each tick
    once across all workers and skips ticks more than 10 minutes late.
    Returns the schedule's name.
    """
    if RESUME_TASK not in app.tasks:
        raise RuntimeError("call install(app, registry) before schedule(...)")
    if graph.plan.name not in registry:
        registry.add(graph)
    label = name or f"{graph.plan.name}:{target.DESCRIPTOR.full_name}"
    if label in registry._schedules:
        raise ValueError(f"a schedule named {label!r} exists already")
    producer = graph.producer(target)
    keeps = producer.cache.scope is CacheScope.WORKFLOW or (
        producer.delivery is Delivery.AT_MOST_ONCE and producer.cache.scope is CacheScope.NONE
    )
    if not keeps:
        _log.warning(
            "schedule %s: step %s keeps no result per execution, so inputs() will always "
            "receive None as the previous output (give it cache: { scope: WORKFLOW })",
            label,
            producer.name,
        )
    registry._schedules[label] = _Schedule(label, graph, target, inputs, keeps)
    task = cast(Any, app.tasks[SCHEDULE_TASK])
    app.periodic_registry.register_task(
        task=task,
        cron=cron,
        periodic_id=label,
        configure_kwargs={"task_kwargs": {"schedule": label}, "queue": queue or DEFAULT_QUEUE},
    )
    return label


def _run_id(schedule_name: str, timestamp: int) -> str:
    return f"{schedule_name}@{datetime.fromtimestamp(timestamp, UTC):%Y-%m-%dT%H:%M:%SZ}"


async def _tick(context: JobContext, timestamp: int, schedule_name: str) -> str:
    """The body of ``run_schedule``: build the inputs, enqueue the run of this tick."""
    registry = _registry_for(context)
    found = registry._schedules.get(schedule_name)
    if found is None:
        _log.error("schedule %r is not defined in this worker", schedule_name)
        return f"unknown schedule {schedule_name!r}"
    previous: Message | None = None
    if found.keeps_output:
        last = await registry.store.last_succeeded_execution(
            found.graph.plan.name,
            found.target.DESCRIPTOR.full_name,
            id_prefix=f"{schedule_name}@",
        )
        if last is not None:
            previous = await found.graph.fetch(found.target, execution_id=last.execution_id)
    made = found.inputs(previous)
    given = await made if inspect.isawaitable(made) else made
    execution_id = _run_id(schedule_name, timestamp)
    await enqueue(
        context.app,
        found.graph,
        found.target,
        given,
        execution_id=execution_id,
        queue=context.job.queue,
    )
    return f"enqueued {execution_id}"


# -- the worker -----------------------------------------------------------------------------


class WorkerExtras(TypedDict, total=False):
    """The options of ``App.run_worker_async`` that :func:`run_worker` passes through."""

    name: str
    wait: bool
    shutdown_graceful_timeout: float
    listen_notify: bool
    delete_jobs: str
    additional_context: dict[str, Any]
    task_middleware: list[Any]
    worker_middleware: list[Any]


async def run_worker(
    app: procrastinate.App,
    registry: Registry,
    *,
    queues: Iterable[str] | None = (DEFAULT_QUEUE,),
    concurrency: int = 1,
    polling_interval: float = 0.5,
    heartbeat_interval: float = 10.0,
    stalled_timeout: float = 30.0,
    sweep_interval: float = 30.0,
    install_signal_handlers: bool = True,
    **options: Unpack[WorkerExtras],
) -> None:
    """Run a Procrastinate worker that resumes Docket executions (``app`` must be open).

    - ``polling_interval`` (seconds) bounds how late a scheduled job starts:
      a durable retry fires at the first poll after its ``wake_at``, so it is
      the shortest backoff worth promising (Procrastinate's default, 5 s,
      would delay a 1 s retry to 5 s). New jobs still wake the worker at once
      through LISTEN/NOTIFY; each idle worker costs one cheap query per poll.
    - every ``sweep_interval`` seconds (and at start), jobs left ``doing`` by
      a worker whose heartbeat is older than ``stalled_timeout`` (a killed
      process) go back to the queue (:func:`sweep_stalled`). The heartbeat is
      written every ``heartbeat_interval`` seconds; keep ``stalled_timeout``
      several times larger, and keep the event loop free (blocking steps run
      in threads): a worker that misses its heartbeats looks dead.
    - ``queues``: the queues to take jobs from (``None``: all).
    - ``install_signal_handlers``: stop gracefully on SIGINT/SIGTERM (running
      executions finish; pass ``shutdown_graceful_timeout`` to cancel them
      after a while: they go back to the queue). ``False`` when embedding.

    Other keyword arguments go to ``app.run_worker_async``.
    """
    if stalled_timeout <= heartbeat_interval:
        raise ValueError("stalled_timeout must be longer than heartbeat_interval")
    install(app)
    fixed: WorkerOptions = {
        "concurrency": concurrency,
        "fetch_job_polling_interval": polling_interval,
        "abort_job_polling_interval": max(polling_interval, 1.0),
        "update_heartbeat_interval": heartbeat_interval,
        "stalled_worker_timeout": stalled_timeout,
        "install_signal_handlers": install_signal_handlers,
    }
    settings = cast(WorkerOptions, {**fixed, **options})
    if queues is not None:
        settings["queues"] = list(queues)
    settings["additional_context"] = {
        **options.get("additional_context", {}),
        CONTEXT_KEY: registry,
    }
    sweeper = asyncio.create_task(
        _sweep_forever(app, stalled_timeout, sweep_interval), name="docket stalled-jobs sweep"
    )
    try:
        await app.run_worker_async(**settings)
    finally:
        sweeper.cancel()
        await asyncio.gather(sweeper, return_exceptions=True)


async def _sweep_forever(app: procrastinate.App, stalled_timeout: float, every: float) -> None:
    while True:
        try:
            await sweep_stalled(app, stalled_timeout=stalled_timeout)
        except Exception:
            _log.exception("the stalled-jobs sweep failed; trying again in %gs", every)
        await asyncio.sleep(every)


async def sweep_stalled(app: procrastinate.App, *, stalled_timeout: float = 30.0) -> list[int]:
    """Put Docket's jobs stuck in ``doing`` by dead workers back to ``todo``; return their ids.

    A job is stalled when the worker that took it sent no heartbeat for
    ``stalled_timeout`` seconds (or was pruned). When another resume job of
    the same execution is already queued, the stalled one is marked
    ``failed`` instead (the queued one resumes the execution). Only Docket's
    tasks are touched: other tasks may not be safe to run twice.
    """
    manager = app.job_manager
    retried: list[int] = []
    for job in await manager.get_stalled_jobs(seconds_since_heartbeat=stalled_timeout):
        if job.task_name not in (RESUME_TASK, SCHEDULE_TASK) or job.id is None:
            continue
        try:
            await manager.retry_job(job)
        except queue_errors.UniqueViolation:
            _log.info("stalled job %s superseded by a queued resume; marked failed", job.id)
            await manager.finish_job_by_id_async(job.id, Status.FAILED, delete_job=False)
        except queue_errors.ConnectorException as err:
            # Another worker's sweep got there first, or the job moved on.
            _log.debug("stalled job %s not retried: %s", job.id, err)
        else:
            _log.warning("job %s of a dead worker goes back to the queue", job.id)
            retried.append(job.id)
    return retried


# -- schema ---------------------------------------------------------------------------------


async def apply_queue_schema(url: str) -> bool:
    """Create Procrastinate's tables at ``url`` unless ``procrastinate_jobs`` exists.

    Procrastinate's ``schema --apply`` cannot run twice; this can. It runs in
    one transaction under an advisory lock, in the first schema of the
    connection's ``search_path`` (as Docket's own tables). ``True`` if it
    created them. An existing schema is not upgraded: apply Procrastinate's
    migrations for that (``procrastinate schema --migrations-path``).
    """
    connect = psycopg.AsyncConnection.connect(url, autocommit=True)
    async with await connect as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        cur = await conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")
        row = await cur.fetchone()
        if row is not None and row[0]:
            return False
        await conn.execute(SchemaManager.get_schema())
    return True
