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
        await orders.enqueue(app, Confirmation, order=order, execution_id="order-42")
        confirmation = await orders.result(Confirmation, "order-42")  # once it succeeded

    async with app.open_async():            # in a worker process
        await run_worker(app, registry)

The generated graph classes type those calls per target (``enqueue``,
``schedule``, ``result``); :func:`enqueue` and :func:`schedule` here are their
untyped forms.

The modules, by role. Apart from the queue: the registry (``_registry``),
the stored inputs (``_inputs``), recording an execution (``_record``),
resuming one and what the queue must do next (``_resume``), schedules
(``_schedule``). Procrastinate's side: the jobs' names and locks (``_jobs``),
the tasks (``_tasks``), enqueue, cancel, requeue and the jobs of an execution
(``_client``), the worker, its restarts and its stalled-jobs sweep
(``_worker``), its heartbeat (``_heartbeat``), the sweep of executions left
without a job (``_sweep``), cron (``_cron``), the queue's tables
(``_schema``).
"""

from __future__ import annotations

try:
    import procrastinate  # noqa: F401
    import psycopg  # noqa: F401
except ImportError as err:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "docket_runtime.durable needs Procrastinate and psycopg: "
        "pip install 'docket-proto[procrastinate]'"
    ) from err

from .._lifecycle import STORE_RETRY_DELAY as STORE_RETRY_DELAY  # importable; not in __all__
from ._client import App, Connection, JobState, cancel, enqueue, job_states, requeue
from ._cron import schedule
from ._jobs import DEFAULT_QUEUE, RESUME_TASK, SCHEDULE_TASK, lock_key
from ._registry import Registry
from ._schema import apply_queue_schema
from ._tasks import blueprint, install, make_blueprint
from ._worker import run_worker, sweep_stalled

__all__ = [
    "DEFAULT_QUEUE",
    "RESUME_TASK",
    "SCHEDULE_TASK",
    "App",
    "Connection",
    "JobState",
    "Registry",
    "apply_queue_schema",
    "blueprint",
    "cancel",
    "enqueue",
    "install",
    "job_states",
    "lock_key",
    "make_blueprint",
    "requeue",
    "run_worker",
    "schedule",
    "sweep_stalled",
]
